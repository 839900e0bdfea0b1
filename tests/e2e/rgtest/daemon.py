"""The relayguard daemon under test: started from the build tree with a
config written for the test, stopped with SIGTERM, and checked for a clean
exit (a sanitizer report or a crash fails the test)."""

import os
import re
import signal
import subprocess
import tempfile
import time

from .fixtures import FixtureError, free_port, wait_port


SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|runtime error:|LeakSanitizer|WARNING: ThreadSanitizer")


def under_thread_sanitizer(binary):
    """Whether the program is a ThreadSanitizer build (it links libtsan)."""
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return "libtsan" in ldd.stdout


def stop_process(proc, out, logfile):
    """SIGTERM, then SIGKILL after 20 s. Answers the exit code (-9 when it had
    to be killed), or 99 when a sanitizer reported in its log."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            out.close()
            return -9
    out.close()
    with open(logfile, errors="replace") as f:
        reported = SANITIZER_REPORT.search(f.read())
    return (proc.returncode or 99) if reported else proc.returncode


class Relayguard:
    def __init__(self, config_body, milter_port=None, policy_port=None, log_settings="", admin=None,
                 listen_extra="", stage_timeout="5s", milter=True):
        """admin: the admin socket's path (default: none); listen_extra: more
        [listen] lines, e.g. admin_group; stage_timeout: listen.stage_timeout;
        milter=False: no milter socket, so libmilter's threads stay out of a
        test of the policy service alone."""
        self.with_milter = milter
        self.milter_port = milter_port or free_port()
        self.policy_port = policy_port or free_port()
        self.binary = os.environ["RELAYGUARD_BIN"]
        self.dir = tempfile.mkdtemp(prefix="rgtest-relayguard-")
        self.config = os.path.join(self.dir, "relayguard.toml")
        self.logfile = os.path.join(self.dir, "relayguard.log")
        with open(self.config, "w") as f:
            milter_socket = f"inet:127.0.0.1:{self.milter_port}" if milter else ""
            f.write(f'[listen]\nmilter = "{milter_socket}"\n'
                    f'policy = "inet:127.0.0.1:{self.policy_port}"\n'
                    f'admin = "{"unix:" + admin if admin else ""}"\n{listen_extra}\n'
                    f'stage_timeout = "{stage_timeout}"\n'
                    f'[log]\nlevel = "debug"\n{log_settings}\n')
            f.write(config_body)
        # The daemon refuses a file that others can read once it holds a password.
        os.chmod(self.config, 0o600)
        self.proc = None

    @property
    def milter(self):
        return f"inet:127.0.0.1:{self.milter_port}"

    @property
    def policy(self):
        return f"inet:127.0.0.1:{self.policy_port}"

    @property
    def sendmail_milter(self):
        return f"inet:{self.milter_port}@127.0.0.1"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        if exc_type is None and rc != 0:
            raise FixtureError(f"relayguard exited with {rc}:\n{self.log()[-3000:]}")
        return False

    def start(self):
        self.out = open(self.logfile, "w")
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        if self.with_milter:
            wait_port("127.0.0.1", self.milter_port, timeout=15, proc=self.proc, what="relayguard milter")
        wait_port("127.0.0.1", self.policy_port, timeout=15, proc=self.proc, what="relayguard policy")

    def stop(self):
        if self.proc is None:
            return 0
        rc = stop_process(self.proc, self.out, self.logfile)
        self.proc = None
        return rc

    def kill(self, sig=signal.SIGKILL):
        """Kills the daemon as a crash would: nothing closed, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()
        self.out.close()
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def refusals(self, **fields):
        """Security-log lines 'refused ...' whose key=value pairs match."""
        out = []
        for line in self.log().splitlines():
            if " refused " not in line:
                continue
            if all(re.search(rf'\b{k}="?{re.escape(str(v))}\b', line) for k, v in fields.items()):
                out.append(line)
        return out

    def wait_for(self, pattern, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return True
            time.sleep(0.05)
        return False
