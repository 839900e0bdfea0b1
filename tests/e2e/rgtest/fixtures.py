"""Real servers for relayguard's end-to-end tests, each a private instance on loopback.

Every fixture is a context manager: ``__enter__`` starts the server in its own
temporary directory and waits until it listens on its TCP port; ``__exit__`` stops it,
waits until its processes are gone, kills whatever is left and removes the
directory (set RGTEST_KEEP=1 to keep directories for debugging).  A start that
fails raises FixtureError carrying the tail of the server's log.

Recipes and pitfalls: /work/shared/notes/integration-on-debian12.md.
Run with /usr/bin/python3 (standard library only); needs root.
"""

import fcntl
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

__all__ = [
    "FixtureError", "free_port", "port_in_use", "wait_port", "wait_port_closed",
    "PostfixInstance", "DovecotInstance", "Dnsmasq", "Sendmail",
    "dns_query", "SENDMAIL_CACHE",
]

LOOPBACK = "127.0.0.1"
SENDMAIL_CACHE = os.environ.get("RGTEST_SENDMAIL_CACHE", "/var/cache/relayguard-tests/sendmail")


class FixtureError(RuntimeError):
    """A server could not be started, configured or stopped."""


# --------------------------------------------------------------------------
# ports

def free_port(host=LOOPBACK):
    """A TCP port that nothing listens on right now (racy by nature; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _listening(host, port):
    """True when a TCP socket listens on host:port (or on 0.0.0.0:port).

    Read from /proc/net/tcp rather than by connecting: a probe connection would be a real
    SMTP session, seen by the milter and policy service under test (and logged as one).
    """
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return None
    want = {f"{socket.inet_aton(h)[::-1].hex().upper()}:{port:04X}" for h in (host, "0.0.0.0")}
    for row in rows:
        fields = row.split()
        if len(fields) > 3 and fields[3] == "0A" and fields[1] in want:  # 0A = LISTEN
            return True
    return False


def port_in_use(host, port):
    """True when something listens on TCP host:port."""
    state = _listening(host, port)
    if state is not None:
        return state
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(host, port, timeout=10.0, proc=None, what=None):
    """Poll until something listens on TCP host:port; raise TimeoutError otherwise.

    proc: an optional subprocess.Popen; if it exits while we wait we fail at once
    instead of sitting out the whole timeout.
    """
    deadline = time.monotonic() + timeout
    label = what or f"{host}:{port}"
    while True:
        if port_in_use(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise TimeoutError(f"{label}: process exited with status {proc.returncode} "
                               f"before listening on {host}:{port}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{label}: nothing listening on {host}:{port} after {timeout:.0f}s")
        time.sleep(0.05)


def terminate(proc, timeout):
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds;
    returns once it has ended."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port_closed(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while port_in_use(host, port):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} still accepts connections after {timeout:.0f}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------
# processes: daemonizing servers (Postfix, Dovecot) leave our process tree, so
# they are tracked by pid file and session id instead of by Popen.

def _proc_stat(pid):
    """(state, ppid, pgrp, session) of pid, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3])


def _alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] != "Z"


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _session_pids(sid, zombies=False):
    out = []
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is not None and st[3] == sid and (zombies or st[0] != "Z"):
            out.append(pid)
    return out


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper():
    """Adopt the orphans of daemonizing servers (Postfix and Dovecot masters fork away).

    On this test VM, pid 1 does not reap, so every exited daemon would stay a <defunct>
    entry in ps.  As subreaper, this process inherits them and _reap() collects them.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap(pids):
    """waitpid() those of pids that are our exited children.  Only for pids we did not start
    with Popen (Popen reaps its own)."""
    me = os.getpid()
    for pid in pids:
        st = _proc_stat(pid)
        if st is not None and st[1] == me and st[0] == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _env_pids(key, value):
    """Processes whose environment holds key=value (Postfix passes MAIL_CONFIG to its daemons)."""
    needle = f"{key}={value}".encode() + b"\0"
    out = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read() + b"\0"
        except OSError:
            continue
        if (b"\0" + needle) in (b"\0" + env) and _alive(pid):
            out.append(pid)
    return out


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if _alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _kill(pids, sig=signal.SIGKILL):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _read_pidfile(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log at {path}: {e.strerror})"
    return "\n".join(data.splitlines()[-lines:])


_helper_sids = set()


def _reap_helpers(timeout=3.0):
    """Wait a little for background leftovers of commands run by _run(), and reap them.
    Nothing is killed here: a server that did not detach into its own session would
    otherwise die with another fixture's stop."""
    deadline = time.monotonic() + timeout
    for sid in sorted(_helper_sids):
        _wait_gone(_session_pids(sid), max(0.0, deadline - time.monotonic()))
        _reap(_session_pids(sid, zombies=True))
        if not _session_pids(sid, zombies=True):
            _helper_sids.discard(sid)


def _run(argv, timeout=60, check=True, **kw):
    """Run a command, output captured in p.stdout.

    Output goes through a file, not a pipe: a server that daemonizes keeps the inherited
    descriptor open, and reading a pipe to EOF would wait for the server to exit.
    """
    with tempfile.TemporaryFile() as out:
        try:
            # Own session, so that what it leaves in the background (postfix-script starts
            # postsuper with &) can be found and reaped later: _reap_helpers().
            with subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, **kw) as proc:
                _helper_sids.add(proc.pid)
                try:
                    rc = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise
            p = subprocess.CompletedProcess(argv, rc)
        except subprocess.TimeoutExpired:
            out.seek(0)
            raise FixtureError(f"{' '.join(argv)} still running after {timeout}s:\n"
                               + out.read().decode("utf-8", "replace"))
        out.seek(0)
        p.stdout = out.read().decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise FixtureError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}")
    return p


# --------------------------------------------------------------------------

class _Fixture:
    """Temp dir + start/stop lifecycle shared by the fixtures."""

    name = "fixture"

    def __init__(self):
        self.dir = None
        self._started = False

    # subclasses implement _start(), _stop(), _logfile()
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not os.environ.get("RGTEST_QUIET"):
            # The server's complaints are usually the explanation of a failed test.
            bad = [ln for ln in self.log().splitlines()
                   if re.search(r"fatal:|panic:|error:|warning:|Fatal|Error", ln)]
            if bad:
                import sys
                print(f"--- {self.name} log, problems (last 20) ---", *bad[-20:], sep="\n",
                      file=sys.stderr)
        self.stop()
        return False

    def start(self):
        if self._started:
            return self
        _become_subreaper()
        self.dir = tempfile.mkdtemp(prefix=f"rgtest-{self.name}-")
        # Servers drop privileges (postfix, dovecot, nobody); mkdtemp's 0700 would lock them out.
        os.chmod(self.dir, 0o755)
        self._started = True
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self):
        if not self._started:
            return
        t0 = time.monotonic()
        try:
            self._stop()
            _reap_helpers()
        finally:
            self._started = False
            self.stop_seconds = time.monotonic() - t0
            if self.dir and not os.environ.get("RGTEST_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def _logfile(self):
        raise NotImplementedError

    def log(self, since=0):
        """The server's log as text; since: an offset from log_mark()."""
        try:
            with open(self._logfile(), "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_mark(self):
        """Current end of the log, to read only what a test caused: log(since=mark)."""
        try:
            return os.path.getsize(self._logfile())
        except OSError:
            return 0

    def wait_log(self, pattern, timeout=10.0, since=0):
        """Wait until a regex matches the log (logs are written asynchronously); return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log(since))
            if m:
                return m
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: /{pattern}/ not in log after {timeout:.0f}s; tail:\n"
                                   + "\n".join(self.log(since).splitlines()[-20:]))
            time.sleep(0.1)

    def _fail(self, msg):
        raise FixtureError(f"{self.name}: {msg}\n--- tail of {self._logfile()} ---\n"
                           f"{_tail(self._logfile())}")

    def _check_port_free(self, port):
        # A leftover server on our port would make the readiness poll succeed against the wrong process.
        if port_in_use(LOOPBACK, port):
            raise FixtureError(f"{self.name}: 127.0.0.1:{port} is already in use (leftover instance?)")


# --------------------------------------------------------------------------
# Postfix

_MASTER_CF = """\
# minimal master.cf: Debian's services, nothing chrooted (the instance dir has no chroot setup)
{port:<9} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _join(items):
    return ", ".join(i for i in items if i)


class PostfixInstance(_Fixture):
    """A private Postfix (config, queue, data and maillog under its own temp dir).

    Who decides relay (see relay_restrictions to override):
      * policy given and "rcpt" in policy_at: the policy service.
            smtpd_relay_restrictions = reject_unlisted_recipient, check_policy_service P,
                                       [permit_sasl_authenticated if permit_sasl,] reject_unauth_destination
        Postfix permits nothing itself; only the policy's OK opens relay.
      * else a milter given: the milter.  smtpd_relay_restrictions = reject_unlisted_recipient,
        check_recipient_access static:OK, reject_unauth_destination  (= permit; a plain "permit"
        list makes smtpd exit fatally as an open relay)
      * else Postfix: reject_unlisted_recipient, [permit_mynetworks,] [permit_sasl_authenticated,]
        reject_unauth_destination (relay to foreign domains -> 554 5.7.1 Relay access denied).
    reject_unlisted_recipient always comes first in the relay list, because that list is
    evaluated before smtpd_recipient_restrictions: unknown local users get Postfix's 550 5.1.1
    and never reach the policy service.  smtpd_recipient_restrictions stays empty so the policy
    is queried once per RCPT only.  "eom" in policy_at adds
    smtpd_end_of_data_restrictions = check_policy_service P; "data" likewise for DATA.

    mynetworks is empty by default (nothing trusted); it is only used in the Postfix-decides
    mode above, or by restrictions you pass yourself.
    """

    name = "postfix"

    def __init__(self, port=2525, milter=None, policy=None, policy_at=("rcpt", "eom"),
                 sasl_path=None, extra_main_cf=None,
                 local_users=("user1@example.test", "user2@example.test"),
                 mydestination="example.test", relay_restrictions=None,
                 recipient_restrictions=None, mynetworks=None, permit_sasl=False,
                 myhostname="mx.example.test", start_timeout=30.0, extra_master_cf=""):
        super().__init__()
        self.port = port
        self.milter = milter
        self.policy = policy
        self.policy_at = tuple(policy_at or ())
        unknown = set(self.policy_at) - {"rcpt", "data", "eom"}
        if unknown:
            raise ValueError(f"policy_at: unknown stage(s) {sorted(unknown)}; use rcpt, data, eom")
        self.sasl_path = sasl_path
        self.extra_main_cf = dict(extra_main_cf or {})
        self.local_users = list(local_users)
        self.mydestination = mydestination
        self.relay_restrictions = relay_restrictions
        self.recipient_restrictions = recipient_restrictions
        self.mynetworks = mynetworks
        self.permit_sasl = permit_sasl
        self.myhostname = myhostname
        self.start_timeout = start_timeout
        self.extra_master_cf = extra_master_cf  # more master.cf lines, e.g. an smtps service
        self.master_pid = None

    # paths
    @property
    def etc(self):
        return self.path("etc")

    @property
    def queue(self):
        return self.path("queue")

    def _logfile(self):
        return self.path("maillog")

    def maillog(self, since=0):
        return self.log(since)

    # configuration -----------------------------------------------------
    def restrictions(self):
        """The (relay, recipient, data, end_of_data) restriction lists this instance uses."""
        def as_str(v):
            return v if isinstance(v, str) else _join(v)

        pol = f"check_policy_service {self.policy}" if self.policy else None
        if self.relay_restrictions is not None:
            relay = as_str(self.relay_restrictions)
        elif pol and "rcpt" in self.policy_at:
            relay = _join(["reject_unlisted_recipient", pol,
                           "permit_sasl_authenticated" if self.permit_sasl else None,
                           "reject_unauth_destination"])
        elif self.milter:
            # smtpd is fatal unless the relay lists hold a reachable reject_unauth_destination (or
            # similar), and it knows that nothing after "permit" is reachable; a table that
            # answers OK for every recipient opens relay just as well and passes that check.
            relay = "reject_unlisted_recipient, check_recipient_access static:OK, reject_unauth_destination"
        else:
            relay = _join(["reject_unlisted_recipient",
                           "permit_mynetworks" if self.mynetworks else None,
                           "permit_sasl_authenticated" if self.sasl_path else None,
                           "reject_unauth_destination"])
        rcpt = as_str(self.recipient_restrictions) if self.recipient_restrictions is not None else ""
        data = pol if pol and "data" in self.policy_at else ""
        eod = pol if pol and "eom" in self.policy_at else ""
        return relay, rcpt, data, eod

    def main_cf(self):
        relay, rcpt, data, eod = self.restrictions()
        tmproot = os.path.dirname(self.dir)
        users = ", ".join(f"{u}=ok" for u in self.local_users)
        cf = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.path("data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self._logfile(),
            "maillog_file_prefixes": _join(["/var", "/dev/stdout", "/tmp", tmproot]),
            "myhostname": self.myhostname,
            "mydomain": "example.test",
            "myorigin": "$myhostname",
            "mydestination": self.mydestination,
            "mynetworks": self.mynetworks or "",
            "inet_interfaces": LOOPBACK,
            "inet_protocols": "ipv4",
            "smtpd_banner": "$myhostname ESMTP Postfix (rgtest)",
            # An empty inline map ({ }) is a syntax error; a never-matching key keeps "no users" valid.
            "local_recipient_maps": "inline:{ " + (users or "nobody@invalid=ok") + " }",
            "alias_maps": "",
            "alias_database": "",
            # Tests judge by SMTP replies; accepted mail is thrown away.
            "local_transport": "discard:",
            "default_transport": "discard:",
            "relay_transport": "discard:",
            "virtual_transport": "discard:",
            "append_dot_mydomain": "no",
            "biff": "no",
            # No DNS on the test machine: reverse lookups would stall every connection.
            "smtpd_peername_lookup": "no",
            "smtpd_tls_security_level": "none",
            # Postfix's own throttles off, so relayguard's limits are what tests observe.
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "100",
            "smtpd_junk_command_limit": "1000",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "smtpd_client_recipient_rate_limit": "0",
            "smtpd_client_new_tls_session_rate_limit": "0",
            "smtpd_client_auth_rate_limit": "0",
            "message_size_limit": "104857600",
            "mailbox_size_limit": "0",
            "virtual_mailbox_limit": "0",
            "smtpd_delay_reject": "yes",
            "smtpd_relay_restrictions": relay,
            "smtpd_recipient_restrictions": rcpt,
            "smtpd_data_restrictions": data,
            "smtpd_end_of_data_restrictions": eod,
            "smtpd_milters": self.milter or "",
            "non_smtpd_milters": "",
            # A dead milter must fail closed (4xx), and quickly.
            "milter_default_action": "tempfail",
            "milter_connect_timeout": "5s",
            "milter_command_timeout": "10s",
            "milter_content_timeout": "10s",
            "smtpd_policy_service_timeout": "10s",
        }
        if self.sasl_path:
            cf.update({
                "smtpd_sasl_auth_enable": "yes",
                "smtpd_sasl_type": "dovecot",
                "smtpd_sasl_path": self.sasl_path,
                "smtpd_sasl_security_options": "noanonymous",
                "smtpd_tls_auth_only": "no",
                "broken_sasl_auth_clients": "no",
            })
        cf.update(self.extra_main_cf)
        return cf

    # lifecycle -----------------------------------------------------------
    def _start(self):
        self._check_port_free(self.port)
        for d in ("etc", "queue", "data"):
            os.makedirs(self.path(d))
        # master.lock lives in data_directory and is opened by the unprivileged master child.
        shutil.chown(self.path("data"), "postfix")
        with open(self.path("etc", "main.cf"), "w") as f:
            for k, v in self.main_cf().items():
                f.write(f"{k} = {v}\n")
        with open(self.path("etc", "master.cf"), "w") as f:
            f.write(_MASTER_CF.format(port=f"{LOOPBACK}:{self.port}"))
            if self.extra_master_cf:
                f.write(self.extra_master_cf.rstrip("\n") + "\n")
        self._age_config()
        self._launch()

    def _age_config(self):
        # Postfix re-reads a config file whose mtime is within the last second ("let it settle
        # down"), pausing each time: a fresh main.cf cost ~2 s per start.  Backdate them.
        past = time.time() - 10
        for name in ("main.cf", "master.cf"):
            os.utime(self.path("etc", name), (past, past))

    def _launch(self):
        p = _run(["postfix", "-c", self.etc, "start"], timeout=self.start_timeout, check=False)
        if p.returncode != 0:
            self._fail(f"postfix start exited {p.returncode}:\n{p.stdout}")
        self.master_pid = _read_pidfile(self.path("queue", "pid", "master.pid"))
        if not self.master_pid:
            self._fail("postfix start returned but master.pid is missing")
        try:
            wait_port(LOOPBACK, self.port, self.start_timeout, what="postfix smtpd")
        except TimeoutError as e:
            self._fail(str(e))

    def _our_pids(self):
        pids = set(_env_pids("MAIL_CONFIG", self.etc)) if self.dir else set()
        if self.master_pid:
            pids.update(_session_pids(self.master_pid))
            if _alive(self.master_pid):
                pids.add(self.master_pid)
        return sorted(pids)

    def _stop(self):
        if os.path.exists(self.path("etc", "main.cf")):
            _run(["postfix", "-c", self.etc, "stop"], timeout=30, check=False)
        # "postfix stop" only signals the master; a start before it is gone silently does nothing.
        if self.master_pid:
            _wait_gone([self.master_pid], 15)
        ours = self._our_pids()
        left = _wait_gone(ours, 5)
        if left:
            _kill(left)
            _wait_gone(left, 5)
        if self.master_pid:
            _reap(_session_pids(self.master_pid, zombies=True))
        self.master_pid = None

    # runtime changes ------------------------------------------------------
    def postconf(self, key, value=None):
        """Set key = value in main.cf (call reload() to apply); with value None, return the value."""
        if value is None:
            return _run(["postconf", "-c", self.etc, "-h", key]).stdout.rstrip("\n")
        _run(["postconf", "-c", self.etc, "-e", f"{key} = {value}"])
        self._age_config()
        return value

    def reload(self, timeout=10.0):
        """postfix reload, returning once the master has re-read its configuration."""
        mark = self.log_mark()
        _run(["postfix", "-c", self.etc, "reload"])
        self.wait_log(r"reload -- version", timeout=timeout, since=mark)
        # Idle smtpd processes of the old generation exit after the reload; give them a moment
        # so the next connection is served with the new settings.
        time.sleep(0.5)

    def restart(self):
        """Stop and start again with the current configuration (postconf changes kept),
        same directory and maillog.  For settings that reload does not apply."""
        self._stop()
        self._check_port_free(self.port)
        self._launch()


# --------------------------------------------------------------------------
# Dovecot

# The auth process cannot connect to this socket, and then it skips the penalty (Dovecot's
# documented way to turn the penalty off).
NO_PENALTY = """\
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
"""


class DovecotInstance(_Fixture):
    """A private Dovecot: POP3 logins on pop3_port, and an inet auth listener on auth_port
    usable as Postfix's smtpd_sasl_path (sasl_path property).

    users: {name: password}; each gets a maildir home owned by uid 65534.
    postlogin_script: shell snippet run after every successful POP3 login (Dovecot's
    post-login hook); it sees $USER, $IP, $LOCAL_IP and $RG_POSTLOGIN_LOG (a file it may
    append to: self.postlogin_log).  It runs as user dovecot.  The fixture adds the
    `exec "$@"` that hands the session back to pop3.
    auth_failure_delay: Dovecot's default is 2 s per failed login; tests want it short.
    auth_penalty: Dovecot's per-IP penalty delays every auth request after a failure from
    the same client IP (2 s, doubling up to 15 s; Postfix passes the SMTP client's IP), which
    would distort relayguard's own failed-AUTH tests; off unless asked for.
    """

    name = "dovecot"
    MAIL_UID = 65534

    def __init__(self, pop3_port=1110, auth_port=12345, users=None, postlogin_script=None,
                 auth_failure_delay="0", auth_penalty=False, extra_conf="", start_timeout=20.0):
        super().__init__()
        self.pop3_port = pop3_port
        self.auth_port = auth_port
        self.users = dict(users if users is not None else {"u1": "secret1"})
        self.postlogin_script = postlogin_script
        self.auth_failure_delay = auth_failure_delay
        self.auth_penalty = auth_penalty
        self.extra_conf = extra_conf
        self.start_timeout = start_timeout
        self.master_pid = None

    @property
    def sasl_path(self):
        return f"inet:{LOOPBACK}:{self.auth_port}"

    @property
    def conf(self):
        return self.path("dovecot.conf")

    @property
    def postlogin_log(self):
        return self.path("postlogin.log")

    def _logfile(self):
        return self.path("dovecot.log")

    def _write_config(self):
        d = self.dir
        for sub in ("run", "state", "mail"):
            os.makedirs(self.path(sub))
        with open(self.path("passwd"), "w") as f:
            for user, pw in self.users.items():
                home = self.path("mail", user)
                os.makedirs(home)
                os.chown(home, self.MAIL_UID, self.MAIL_UID)
                f.write(f"{user}:{{PLAIN}}{pw}:{self.MAIL_UID}:{self.MAIL_UID}::{home}::\n")
        os.chmod(self.path("passwd"), 0o644)
        # the log file must exist before dovecot drops privileges for its log process
        open(self._logfile(), "a").close()

        postlogin = ""
        if self.postlogin_script is not None:
            script = self.path("post-login.sh")
            with open(script, "w") as f:
                f.write("#!/bin/sh\nRG_POSTLOGIN_LOG=%s\nexport RG_POSTLOGIN_LOG\n%s\nexec \"$@\"\n"
                        % (self.postlogin_log, self.postlogin_script))
            os.chmod(script, 0o755)
            open(self.postlogin_log, "a").close()
            # script-login runs the hook as the postlogin service user (dovecot, measured),
            # not as the mail user; any user may append.
            os.chmod(self.postlogin_log, 0o666)
            postlogin = f"""
service pop3 {{
  executable = pop3 postlogin
}}
service postlogin {{
  executable = script-login {script}
  user = $default_internal_user
  unix_listener postlogin {{
  }}
}}
"""
        conf = f"""\
base_dir = {d}/run
state_dir = {d}/state
instance_name = rgtest-{os.path.basename(d)}
protocols = pop3
listen = {LOOPBACK}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = {self.auth_failure_delay}
log_path = {self._logfile()}
info_log_path = {self._logfile()}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {LOOPBACK}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service auth {{
  inet_listener {{
    address = {LOOPBACK}
    port = {self.auth_port}
  }}
}}
{postlogin}
{"" if self.auth_penalty else NO_PENALTY}
{self.extra_conf}
"""
        with open(self.conf, "w") as f:
            f.write(conf)

    def _start(self):
        self._check_port_free(self.pop3_port)
        self._check_port_free(self.auth_port)
        self._write_config()
        p = _run(["dovecot", "-c", self.conf], timeout=self.start_timeout, check=False)
        if p.returncode != 0:
            self._fail(f"dovecot exited {p.returncode}:\n{p.stdout}")
        deadline = time.monotonic() + self.start_timeout
        while self.master_pid is None and time.monotonic() < deadline:
            self.master_pid = _read_pidfile(self.path("run", "master.pid"))
            if self.master_pid is None:
                time.sleep(0.05)
        try:
            wait_port(LOOPBACK, self.pop3_port, max(1.0, deadline - time.monotonic()), what="dovecot pop3")
            wait_port(LOOPBACK, self.auth_port, max(1.0, deadline - time.monotonic()), what="dovecot auth")
        except TimeoutError as e:
            self._fail(str(e))

    def _stop(self):
        if self.master_pid is None:
            self.master_pid = _read_pidfile(self.path("run", "master.pid"))
        if self.master_pid and _alive(self.master_pid):
            # What "doveadm stop" does (SIGTERM to the master), without its polling, which
            # costs 3 s against 1.1 s.
            _kill([self.master_pid], signal.SIGTERM)
        elif os.path.exists(self.conf):
            _run(["doveadm", "-c", self.conf, "stop"], timeout=20, check=False)
        if self.master_pid:
            _wait_gone([self.master_pid], 10)
            left = _wait_gone(_session_pids(self.master_pid) + [self.master_pid], 3)
            if left:
                _kill(left)
                _wait_gone(left, 5)
            _reap(_session_pids(self.master_pid, zombies=True))
        self.master_pid = None


# --------------------------------------------------------------------------
# dnsmasq

def _reverse_name(ip):
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def _aslist(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


class Dnsmasq(_Fixture):
    """A private authoritative-only dnsmasq on 127.0.0.1:port (UDP and TCP).

    hosts:     {name: ip | [ip, ...]}    A records, plus the matching PTR (dnsmasq host-record;
                                          AAAA queries get NOERROR/no data)
    ptrs:      {ip: name}                PTR records; for an IP listed here this PTR replaces
                                          the automatic one from hosts (checked)
    mx:        {domain: host | [host, ...]}  preferences 10, 20, ...
    txt:       {name: text | [text, ...]}   text may contain commas and spaces
    dnsbl:     {zone: {listed_ip: answer_ip}}  e.g. {"zen.bl.test": {"127.0.0.5": "127.0.0.2"}}
                                          gives 5.0.0.127.zen.bl.test A 127.0.0.2, with no PTR
                                          side effect (unlisted IPs: NXDOMAIN)
    wildcards: {domain: ip}              A for the domain and every name below it
    local_zones: zones answered only from the data above: unknown names there get NXDOMAIN.
    Names outside local_zones get REFUSED (there is no upstream).
    extra_conf: more dnsmasq.conf lines.
    """

    name = "dnsmasq"

    def __init__(self, port=5353, hosts=None, ptrs=None, mx=None, txt=None, dnsbl=None,
                 wildcards=None, local_zones=("test", "in-addr.arpa"), extra_conf=(),
                 start_timeout=10.0):
        super().__init__()
        self.port = port
        self.hosts = dict(hosts or {})
        self.ptrs = dict(ptrs or {})
        self.mx = dict(mx or {})
        self.txt = dict(txt or {})
        self.dnsbl = dict(dnsbl or {})
        self.wildcards = dict(wildcards or {})
        self.local_zones = list(local_zones)
        self.extra_conf = list(extra_conf)
        self.start_timeout = start_timeout
        self.proc = None

    @property
    def server(self):
        """'127.0.0.1:PORT', the form c-ares' ares_set_servers_ports_csv takes."""
        return f"{LOOPBACK}:{self.port}"

    def _logfile(self):
        return self.path("dnsmasq.log")

    def conf_lines(self):
        # A config file rather than arguments: only its parser honours quotes, which TXT
        # data with commas needs.
        c = [f"port={self.port}", f"listen-address={LOOPBACK}", "bind-interfaces",
             "no-resolv", "no-hosts", "no-poll", "user=nobody", "group=nogroup",
             f"log-facility={self._logfile()}", "log-queries"]
        c += [f"local=/{z}/" for z in self.local_zones]
        for name, ips in self.hosts.items():
            c += [f"host-record={name},{ip}" for ip in _aslist(ips)]
        c += [f"ptr-record={_reverse_name(ip)},{name}" for ip, name in self.ptrs.items()]
        for dom, hosts in self.mx.items():
            c += [f"mx-host={dom},{h},{10 * (i + 1)}" for i, h in enumerate(_aslist(hosts))]
        for name, texts in self.txt.items():
            for t in _aslist(texts):
                t = t.replace("\\", "\\\\").replace('"', '\\"')
                c.append(f'txt-record={name},"{t}"')
        for zone, listed in self.dnsbl.items():
            for ip, answer in listed.items():
                # a raw type-1 RR: the A record alone, without host-record's PTR
                rev = ".".join(reversed(ip.split(".")))
                c.append(f"dns-rr={rev}.{zone},1,{socket.inet_aton(answer).hex()}")
        c += [f"address=/{dom}/{ip}" for dom, ip in self.wildcards.items()]
        return c + self.extra_conf

    def _start(self):
        self._check_port_free(self.port)
        open(self._logfile(), "a").close()
        # dnsmasq reopens its log after dropping to nobody
        shutil.chown(self._logfile(), "nobody")
        with open(self.path("dnsmasq.conf"), "w") as f:
            f.write("\n".join(self.conf_lines()) + "\n")
        argv = ["dnsmasq", "--keep-in-foreground", "--pid-file=", f"--conf-file={self.path('dnsmasq.conf')}"]
        self.proc = subprocess.Popen(argv, stdout=open(self.path("stdout"), "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(LOOPBACK, self.port, self.start_timeout, proc=self.proc, what="dnsmasq")
        except TimeoutError as e:
            self._fail(f"{e}\n--- stdout ---\n{_tail(self.path('stdout'))}")

    def _stop(self):
        if self.proc is None:
            return
        sid = self.proc.pid
        terminate(self.proc, 5)
        # dnsmasq forks a child per TCP query
        left = _session_pids(sid)
        if left:
            _kill(left)
            _wait_gone(left, 5)
        _reap(_session_pids(sid, zombies=True))
        self.proc = None

    def query(self, name, qtype="A", tcp=False):
        return dns_query(name, qtype, LOOPBACK, self.port, tcp=tcp)


_QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _read_name(msg, off):
    labels = []
    jumped_end = None
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if jumped_end is None:
                jumped_end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (jumped_end if jumped_end is not None else off)


def dns_query(name, qtype="A", host=LOOPBACK, port=53, tcp=False, timeout=3.0):
    """Minimal stub resolver for checking the DNS fixture: returns (rcode_name, [answer strings]).

    Answers are '1.2.3.4' (A), 'host' (PTR/CNAME), '10 host' (MX), 'text' (TXT).
    """
    qid = int.from_bytes(os.urandom(2), "big")
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode("ascii")
    q += b"\0" + struct.pack(">HH", _QTYPES[qtype], 1)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">H", len(q)) + q)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    break
                buf += chunk
            msg = buf[2:]
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(q, (host, port))
            msg, _ = s.recvfrom(65535)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    if rid != qid:
        raise FixtureError("DNS reply id mismatch")
    off = 12
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    answers = []
    for _ in range(an):
        _, off = _read_name(msg, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        rd = msg[off:off + rdlen]
        if rtype == 1:
            answers.append(socket.inet_ntoa(rd))
        elif rtype in (2, 5, 12):
            answers.append(_read_name(msg, off)[0])
        elif rtype == 15:
            answers.append(f"{struct.unpack('>H', rd[:2])[0]} {_read_name(msg, off + 2)[0]}")
        elif rtype == 16:
            parts, i = [], 0
            while i < len(rd):
                parts.append(rd[i + 1:i + 1 + rd[i]].decode("utf-8", "replace"))
                i += 1 + rd[i]
            answers.append("".join(parts))
        else:
            answers.append(rd.hex())
        off += rdlen
    return RCODES.get(flags & 0xF, str(flags & 0xF)), answers


# --------------------------------------------------------------------------
# Sendmail (from the Debian archive via dpkg -x: the package conflicts with postfix)

_SENDMAIL_DEBS = ("sendmail-bin", "sendmail-base", "sendmail-cf", "m4")


def ensure_sendmail_root(cache=SENDMAIL_CACHE):
    """Download and unpack Sendmail once into cache/root; later runs reuse it."""
    root = os.path.join(cache, "root")
    stamp = os.path.join(cache, ".unpacked")
    if os.path.exists(stamp):
        return root
    debdir = os.path.join(cache, "deb")
    os.makedirs(debdir, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        # parallel test runs: one unpacks, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(stamp):
            return root
        have = os.listdir(debdir)
        missing = [p for p in _SENDMAIL_DEBS if not any(f.startswith(p + "_") for f in have)]
        if missing:
            _run(["apt-get", "download", *missing], timeout=300, cwd=debdir)
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        for f in sorted(os.listdir(debdir)):
            if f.endswith(".deb"):
                _run(["dpkg", "-x", os.path.join(debdir, f), root])
        open(stamp, "w").close()
    return root


class Sendmail(_Fixture):
    """A private Sendmail 8.17 daemon (-bD, foreground) on 127.0.0.1:port, queue-only (nothing
    is delivered), calling one milter with F=T (tempfail when the milter is unreachable).

    It runs in its own UTS and mount namespace (unshare): the hostname there is an FQDN
    (hostname), which avoids Sendmail's 60 s "unqualified host name; sleeping for retry"
    at startup, and /etc/hosts and /etc/resolv.conf are private copies so it never waits on
    an unreachable name server.  Sender domains need not resolve (accept_unresolvable_domains).
    Sendmail logs only to syslog (absent here); log() returns the SMTP transcript (-X).

    promiscuous_relay (default, like PostfixInstance with only a milter): Sendmail relays for
    anyone, so relay decisions are the milter's.  Sendmail's own relay check runs before the
    milter sees the RCPT; with it on (False), relaying from 127.0.0.2 gets
    "450 4.4.0 Relaying temporarily denied. Cannot resolve PTR record" (there is no DNS).
    Local users are not checked: any user@<local_domains> is accepted at RCPT.
    """

    name = "sendmail"

    def __init__(self, port=2527, milter="inet:8893@127.0.0.1", milter_flags="T",
                 milter_timeouts="C:5s;S:5s;R:10s;E:20s", hostname="sm.example.test",
                 local_domains=("example.test",), promiscuous_relay=True, extra_mc="",
                 start_timeout=90.0,
                 cache=SENDMAIL_CACHE):
        super().__init__()
        self.port = port
        self.milter = milter
        self.milter_flags = milter_flags
        self.milter_timeouts = milter_timeouts
        self.hostname = hostname
        self.local_domains = list(local_domains)
        self.promiscuous_relay = promiscuous_relay
        self.extra_mc = extra_mc
        self.start_timeout = start_timeout
        self.cache = cache
        self.proc = None

    def _logfile(self):
        return self.path("transcript.log")

    def mc(self, root):
        d = self.dir
        m = [
            f"include(`{root}/usr/share/sendmail/cf/m4/cf.m4')dnl",
            "VERSIONID(`relayguard rgtest')dnl",
            "OSTYPE(`linux')dnl",
            "define(`confDONT_PROBE_INTERFACES', `True')dnl",
            f"define(`confDOMAIN_NAME', `{self.hostname}')dnl",
            f"define(`QUEUE_DIR', `{d}/q')dnl",
            f"define(`STATUS_FILE', `{d}/statistics')dnl",
            f"define(`confPID_FILE', `{d}/sendmail.pid')dnl",
            "define(`ALIAS_FILE', `')dnl",
            f"define(`confSERVICE_SWITCH_FILE', `{d}/service.switch')dnl",
            f"define(`confHOSTS_FILE', `{d}/hosts')dnl",
            "define(`confDELIVERY_MODE', `queueonly')dnl",
            "define(`confTO_IDENT', `0s')dnl",
            "define(`confDONT_BLAME_SENDMAIL', "
            "`GroupWritableDirPathSafe,GroupReadableKeyFile,NonRootSafeAddr')dnl",
            "define(`confMILTER_MACROS_CONNECT', "
            "`j, _, {daemon_name}, {if_name}, {if_addr}, {client_addr}, {client_ptr}')dnl",
            f"DAEMON_OPTIONS(`Port={self.port}, Addr={LOOPBACK}, Name=MTA-test')dnl",
            "FEATURE(`no_default_msa')dnl",
            "FEATURE(`accept_unresolvable_domains')dnl",
        ]
        if self.promiscuous_relay:
            m.append("FEATURE(`promiscuous_relay')dnl")
        if self.local_domains:
            m.append(f"LOCAL_DOMAIN(`{' '.join(self.local_domains)}')dnl")
        if self.milter:
            m.append(f"INPUT_MAIL_FILTER(`rg', `S={self.milter}, F={self.milter_flags}, "
                     f"T={self.milter_timeouts}')dnl")
        m += [self.extra_mc, "MAILER(`local')dnl", "MAILER(`smtp')dnl", ""]
        return "\n".join(m)

    def _start(self):
        self._check_port_free(self.port)
        root = ensure_sendmail_root(self.cache)
        d = self.dir
        os.makedirs(self.path("q"), mode=0o700)
        with open(self.path("service.switch"), "w") as f:
            f.write("hosts files\naliases files\n")
        with open(self.path("hosts"), "w") as f:
            f.write(f"127.0.0.1 localhost {self.hostname}\n")
        with open(self.path("resolv.conf"), "w") as f:
            # nothing listens on 127.0.0.1:53 here: lookups fail fast instead of timing out
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        with open(self.path("test.mc"), "w") as f:
            f.write(self.mc(root))
        # stderr apart: m4 warns there (e.g. about promiscuous_relay), and that text in the .cf
        # would make sendmail exit
        with open(self.path("test.cf"), "w") as cf:
            p = subprocess.run([f"{root}/usr/bin/m4", self.path("test.mc")], stdout=cf,
                               stderr=subprocess.PIPE, text=True, timeout=60)
        if p.returncode != 0:
            raise FixtureError(f"sendmail: m4 failed:\n{p.stderr}")
        open(self._logfile(), "a").close()
        binary = f"{root}/usr/libexec/sendmail/sendmail"
        cmd = (f"hostname {self.hostname} && "
               f"mount --bind {d}/hosts /etc/hosts && mount --bind {d}/resolv.conf /etc/resolv.conf && "
               f"exec {binary} -bD -C {d}/test.cf -X {self._logfile()}")
        argv = ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", cmd]
        if not shutil.which("unshare"):
            # Without namespaces Sendmail sleeps 60 s on a non-FQDN hostname; start_timeout covers it.
            argv = [binary, "-bD", "-C", f"{d}/test.cf", "-X", self._logfile()]
        self.proc = subprocess.Popen(argv, stdout=open(self.path("stdout"), "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=d)
        try:
            wait_port(LOOPBACK, self.port, self.start_timeout, proc=self.proc, what="sendmail")
        except TimeoutError as e:
            raise FixtureError(f"sendmail: {e}\n--- output ---\n{_tail(self.path('stdout'))}")

    def _stop(self):
        if self.proc is None:
            return
        sid = self.proc.pid  # start_new_session: the daemon leads its own session
        terminate(self.proc, 10)
        left = _wait_gone(_session_pids(sid), 3)  # per-connection children
        if left:
            _kill(left)
            _wait_gone(left, 5)
        _reap([p for p in _session_pids(sid, zombies=True) if p != sid])
        self.proc = None

    def queue_files(self):
        """Names of queued message files (df*/qf*): accepted mail stays here."""
        try:
            return sorted(os.listdir(self.path("q")))
        except OSError:
            return []
