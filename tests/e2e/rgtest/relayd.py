"""The relay client under test (relayguard-relayd): started from the build
tree with a config written for the test, its queue in its own directory;
stopped with SIGTERM, or killed as a crash would."""

import os
import re
import signal
import subprocess
import tempfile
import time

from .daemon import stop_process
from .fixtures import FixtureError, free_port, wait_port

# [delivery] lines that make a test's retries quick and its dead peers cheap.
FAST = 'retry_interval = "1s"\nmax_retry_interval = "2s"\nconnect_timeout = "2s"\ncommand_timeout = "10s"\n'


def smarthosts(*addresses):
    """[delivery] lines routing every message through these smart hosts, in order."""
    return 'route = "smarthost"\nsmarthosts = [' + ", ".join(f'"{a}"' for a in addresses) + ']\n'


def wait(predicate, timeout=15.0):
    """Polls predicate until it holds or timeout seconds pass; answers its last value."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


class Relayd:
    def __init__(self, delivery_settings, port=None, extra_config=""):
        """delivery_settings: lines for [delivery] besides listen and queue_dir."""
        self.port = port or free_port()
        self.binary = os.environ["RELAYGUARD_RELAYD"]
        self.sendmail_binary = os.environ.get("RELAYGUARD_SENDMAIL")
        self.dir = tempfile.mkdtemp(prefix="rgtest-relayd-")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.config = os.path.join(self.dir, "relayguard.toml")
        self.logfile = os.path.join(self.dir, "relayd.log")
        self.admin_socket = os.path.join(self.dir, "relayd.sock")
        self.write_config(delivery_settings, extra_config)
        self.proc = None
        self.out = None

    def write_config(self, delivery_settings, extra_config=""):
        with open(self.config, "w") as f:
            f.write(f'[listen]\nadmin = ""\n[log]\nlevel = "debug"\n'
                    f'[relay]\nlocal_domains = ["example.test"]\n{extra_config}\n'
                    f'[delivery]\nlisten = "inet:127.0.0.1:{self.port}"\nqueue_dir = "{self.queue_dir}"\n'
                    f'admin = "unix:{self.admin_socket}"\n'
                    f'{delivery_settings}\n')
        # The daemon refuses a file that others can read once it holds a password.
        os.chmod(self.config, 0o600)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        if exc_type is None and rc not in (0, None):
            raise FixtureError(f"relayguard-relayd exited with {rc}:\n{self.log()[-3000:]}")
        return False

    def start(self):
        self.out = open(self.logfile, "a")
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        wait_port("127.0.0.1", self.port, timeout=15, proc=self.proc, what="relayguard-relayd")

    def stop(self):
        if self.proc is None:
            return None
        rc = stop_process(self.proc, self.out, self.logfile)
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL: nothing flushed, nothing closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.out:
            self.out.close()
        self.proc = None

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def wait_for(self, pattern, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return True
            time.sleep(0.05)
        return False

    def queue(self, *args):
        return subprocess.run([self.binary, "--config", self.config, "queue", *args], capture_output=True,
                              text=True, timeout=30)

    def queued(self):
        """Ids of the messages in the queue."""
        return sorted(os.listdir(os.path.join(self.queue_dir, "active"))) \
            if os.path.isdir(os.path.join(self.queue_dir, "active")) else []

    def sendmail(self, args, message):
        return subprocess.run([self.sendmail_binary, "--config", self.config, *args], input=message,
                              capture_output=True, text=True, timeout=30)
