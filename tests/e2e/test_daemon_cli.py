#!/usr/bin/python3
"""The daemon as an admin first meets it: it starts on the embedded default,
logs its effective settings, stops cleanly on SIGTERM, and refuses a config
with a typo, naming the file, the line and the key, with a non-zero exit."""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

binary, source_dir = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class Running:
    """The daemon from start ("started" logged, 30 s at most) to SIGTERM.

    A thread reads its stderr, so a slow start never meets a read with
    nothing to read yet; the daemon is never left behind holding ctest's
    output. After the block: rc, and log with the stop's lines."""

    def __init__(self, argv, **popen):
        self.argv, self.popen, self.lines, self.rc = argv, popen, [], None

    @property
    def log(self):
        return "".join(self.lines)

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stderr=subprocess.PIPE, text=True, **self.popen)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()
        deadline = time.time() + 30
        while time.time() < deadline and not any("started" in line for line in self.lines):
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.rc = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)


# 1. Starts on the embedded default and stops on SIGTERM.
with Running([binary]) as daemon:
    log = daemon.log
    check("embedded default" in log, "no --config runs on the embedded default")
    check("relay: mode=restricted" in log, "effective relay settings are logged")
    check("store=memory" in log, "the default store is in memory")
check(daemon.rc == 0, f"SIGTERM stops it with exit code 0 (got {daemon.rc})")
check("stopped" in daemon.log, "the stop is logged")

# 2. A config with a typo is refused with file, line and key.
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "bad.toml")
    with open(path, "w") as f:
        f.write('[relay]\nlocal_domains = ["example.test"]\n\n[limits.message_rate]\nmax = 10\nwindw = "1h"\n')
    r = subprocess.run([binary, "--config", path], capture_output=True, text=True, timeout=10)
    check(r.returncode != 0, f"a bad config exits non-zero (got {r.returncode})")
    check(f"{path}:6: key 'limits.message_rate.windw': unknown key" in r.stderr,
          "the error names file:line and key: " + r.stderr.strip())
    r = subprocess.run([binary, "--check-config", path], capture_output=True, text=True, timeout=10)
    check(r.returncode != 0 and f"{path}:6:" in r.stderr, "--check-config refuses it the same way")

    # 3. --check-config prints the effective settings of a good file.
    good = os.path.join(source_dir, "conf", "relayguard.toml")
    r = subprocess.run([binary, "--check-config", good], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0, "--check-config accepts the example config")
    check("local_domains = [ 'example.test' ]" in r.stdout or "local_domains = [ \"example.test\" ]" in r.stdout,
          "--check-config prints the effective settings")

    # 4. Open relay mode warns at start.
    path = os.path.join(d, "open.toml")
    with open(path, "w") as f:
        f.write('[relay]\nmode = "open"\n[listen]\nmilter = ""\npolicy = ""\nadmin = ""\n')
    p = subprocess.Popen([binary, "--config", path], stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    check("open relay" in err and "warn" in err, "open relay mode warns loudly at start")

    # 5. A missing file is an error naming it.
    r = subprocess.run([binary, "--config", os.path.join(d, "missing.toml")], capture_output=True, text=True)
    check(r.returncode != 0 and "missing.toml" in r.stderr, "a missing config file is named")

    # 6. daemon.pid_file holds the pid while the daemon runs, mode 0644 even
    # under a strict umask, and is gone after SIGTERM; a path that cannot be
    # written stops the start with the key named.
    import socket
    import stat
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pid_path = os.path.join(d, "relayguard.pid")
    path = os.path.join(d, "pid.toml")

    def pid_config(pid_file):
        with open(path, "w") as f:
            f.write(f'[listen]\nmilter = ""\npolicy = "inet:127.0.0.1:{port}"\nadmin = ""\n'
                    f'[daemon]\npid_file = "{pid_file}"\n[relay]\nlocal_domains = ["example.test"]\n')

    pid_config(pid_path)
    with Running([binary, "--config", path], preexec_fn=lambda: os.umask(0o077)) as daemon:
        text = open(pid_path).read() if os.path.exists(pid_path) else None
        check(text == f"{daemon.proc.pid}\n", f"daemon.pid_file holds the daemon's pid and a newline (got {text!r})")
        mode = stat.S_IMODE(os.stat(pid_path).st_mode) if text is not None else None
        check(mode == 0o644, f"the pid file is mode 0644 whatever the umask (got {mode and oct(mode)})")
    check(daemon.rc == 0 and not os.path.exists(pid_path), f"after SIGTERM (exit {daemon.rc}) the pid file is gone")

    pid_config(os.path.join(d, "no-such-dir", "relayguard.pid"))
    r = subprocess.run([binary, "--config", path], capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "daemon.pid_file: cannot create" in r.stderr and "no-such-dir" in r.stderr,
          f"a pid file that cannot be written stops the start, naming key and path (exit {r.returncode}): "
          + r.stderr.strip()[-300:])


print(f"\n{'PASSED' if not failures else 'FAILED: ' + '; '.join(failures)}")
sys.exit(1 if failures else 0)
