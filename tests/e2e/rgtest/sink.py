"""SmtpSink: a scriptable SMTP peer (Postfix's /usr/sbin/smtp-sink) that records what it got.

For tests of an SMTP *client* (relayguard's relay forwarding queued mail to smart hosts):
the sink accepts, soft-rejects (4xx), hard-rejects (5xx) or drops chosen commands, can be
taken down and brought back on the same port, and keeps every received transaction.

    with SmtpSink() as sink:                       # listens on 127.0.0.1:<free port>
        ... relay client delivers to sink.address ...
        sink.wait_count(3, timeout=10)
        sink.messages()[0]["recipients"]
        sink.restart(soft_reject=["RCPT"])           # same port, same dump directory
        sink.stop(); ...; sink.start()               # down, then up again

How smtp-sink records mail (checked with postfix 3.7.11, see also its source):
- `-d TEMPLATE` writes one file per transaction: strftime(TEMPLATE) + 8 random hex digits.
  The file is created at MAIL, gets a line per accepted RCPT, then the message; it is
  closed *before* the reply to the final "." is sent.  Until then it may hold part of the
  message (stdio buffering).  RSET, HELO/EHLO, a disconnect or an unfinished DATA unlink it.
- A rejected (-r/-f) or dropped (-q) RCPT is not written; MAIL rejected: no file.
- A "." that is rejected (-r .), dropped (-q .) or answered 421 (-Q .) still leaves a
  complete file: the file is finished before the reply is chosen.  This fixture therefore
  runs each start() in its own subdirectory and marks the runs whose "." was not answered
  with 250; their messages are not counted (messages(include_refused=True) shows them).
- A file still open by the sink process (seen in /proc/PID/fd) is an unfinished
  transaction and is not counted.  stop() freezes the process, notes its open dump files,
  kills it, and renames those to *.partial.
- Format: "X-Client-Addr:", "X-Client-Proto:", optional "X-Helo-Args:", "X-Mail-Args:",
  one "X-Rcpt-Args:" per accepted RCPT (the text after the colon of the command, with
  ESMTP parameters), a three-line "Received:" header, then the message with dot-stuffing
  undone, every CR dropped (lines end in LF), and one empty line appended.

Other smtp-sink behaviour worth knowing: it must run with -u USER when started as root
(fatal otherwise); it has no TLS (no STARTTLS in EHLO); it announces AUTH PLAIN LOGIN and
answers any AUTH with "250 2.0.0 Ok" (not 235), so auth=False (default) passes -a and the
sink does not offer AUTH at all; any -r/-f turns PIPELINING off; replies are
"450 4.3.0 Error: command failed" and "500 5.3.0 Error: command failed" unless
soft_reply/hard_reply (-b/-B) say otherwise.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from .fixtures import (FixtureError, _Fixture, _become_subreaper, _proc_stat, free_port,
                       port_in_use, wait_port, wait_port_closed)

__all__ = ["SmtpSink", "parse_dump"]

SMTP_SINK = "/usr/sbin/smtp-sink"

_HEX_NAME = re.compile(r"^[0-9a-f]{8}$")


def _cmds(v):
    """A command list (list/tuple or 'RCPT,DATA' string) as smtp-sink wants it, upper case."""
    if v is None:
        return []
    if isinstance(v, str):
        v = re.split(r"[\s,]+", v)
    return [c.strip().upper() for c in v if c and c.strip()]


def _addr(args):
    """'<a@b> SIZE=10' -> 'a@b' (the path of a MAIL/RCPT argument, without brackets)."""
    args = args.strip()
    if args.startswith("<"):
        end = args.find(">")
        return args[1:end] if end >= 0 else args[1:]
    return args.split()[0] if args else ""


def parse_dump(raw):
    """Parse one smtp-sink -d dump file (bytes) into a dict:
    client_addr, proto, helo (or None), mail_args, sender, rcpt_args (list), recipients (list),
    id (the hex id from the Received header), received (the Received header, 3 lines),
    data (bytes: the message as received, dot-stuffing undone, LF line ends) and text
    (data decoded as UTF-8 with replacement)."""
    lines = raw.split(b"\n")
    msg = {"client_addr": None, "proto": None, "helo": None, "mail_args": None, "sender": None,
           "rcpt_args": [], "recipients": [], "id": None, "received": None}
    i = 0
    fields = {b"X-Client-Addr: ": "client_addr", b"X-Client-Proto: ": "proto",
              b"X-Helo-Args: ": "helo", b"X-Mail-Args: ": "mail_args"}
    while i < len(lines):
        line = lines[i]
        for prefix, key in fields.items():
            if line.startswith(prefix):
                msg[key] = line[len(prefix):].decode("utf-8", "replace")
                break
        else:
            if line.startswith(b"X-Rcpt-Args: "):
                msg["rcpt_args"].append(line[len(b"X-Rcpt-Args: "):].decode("utf-8", "replace"))
            elif line.startswith(b"Received: ") and i + 2 < len(lines):
                hdr = lines[i:i + 3]
                msg["received"] = b"\n".join(hdr).decode("utf-8", "replace")
                m = re.search(rb" id ([0-9a-f]+);", hdr[1])
                msg["id"] = m.group(1).decode() if m else None
                i += 3
                break
            else:
                raise ValueError(f"not an smtp-sink dump: unexpected line {line[:80]!r}")
        i += 1
    else:
        raise ValueError("not an smtp-sink dump: no Received header")
    data = b"\n".join(lines[i:])
    # smtp-sink appends one empty line after the message (it is the LF after the final ".")
    if data.endswith(b"\n"):
        data = data[:-1]
    msg["data"] = data
    msg["text"] = data.decode("utf-8", "replace")
    msg["sender"] = _addr(msg["mail_args"] or "")
    msg["recipients"] = [_addr(a) for a in msg["rcpt_args"]]
    return msg


class SmtpSink(_Fixture):
    """smtp-sink on host:port that dumps every transaction into self.dump_dir.

    soft_reject / hard_reject / disconnect: SMTP commands (CONNECT, HELO, EHLO, MAIL, RCPT,
    DATA, ".", RSET, NOOP, VRFY, QUIT, AUTH) answered 4xx (-r), 5xx (-f), or dropped without
    a reply (-q).  tempfail_disconnect: commands answered "421" and then dropped (-Q).
    soft_reply / hard_reply: the text of those replies (-b / -B), e.g. "451 4.3.5 try later".
    auth: announce AUTH (smtp-sink answers any AUTH with 250, not 235).
    backlog: listen(2) queue; max_clients: sessions served at once (-m; smtp-sink's
    default is 256, more connections wait in the backlog).
    extra_args: more smtp-sink options, e.g. ["-w", "5"] (delay the DATA reply).

    Lifecycle: `with SmtpSink() as s` (or start()) creates the fixture directory; stop()
    only takes the server down (port closed, dumps kept); start() brings it up again on the
    same port; restart(**options) = stop + new options + start; close() (or leaving the with
    block) stops it and removes the directory (kept with RGTEST_KEEP=1).
    """

    name = "smtp-sink"

    def __init__(self, port=None, host="127.0.0.1", soft_reject=(), hard_reject=(),
                 disconnect=(), extra_args=(), tempfail_disconnect=(), soft_reply=None,
                 hard_reply=None, auth=False, hostname="smtp-sink.test", backlog=512,
                 max_clients=None, user="postfix", start_timeout=10.0):
        super().__init__()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.user = user
        self.backlog = backlog
        self.start_timeout = start_timeout
        self.proc = None
        self.run = 0            # number of the current/last start()
        self._runs = {}         # run number -> True if "." was answered 250 in that run
        self._options = {}
        self.configure(soft_reject=soft_reject, hard_reject=hard_reject, disconnect=disconnect,
                       extra_args=extra_args, tempfail_disconnect=tempfail_disconnect,
                       soft_reply=soft_reply, hard_reply=hard_reply, auth=auth,
                       hostname=hostname, max_clients=max_clients)

    # configuration -------------------------------------------------------
    _OPTION_NAMES = ("soft_reject", "hard_reject", "disconnect", "extra_args",
                     "tempfail_disconnect", "soft_reply", "hard_reply", "auth", "hostname",
                     "max_clients")

    def configure(self, **options):
        """Change options for the next start() (restart() calls this)."""
        unknown = set(options) - set(self._OPTION_NAMES)
        if unknown:
            raise TypeError(f"SmtpSink: unknown option(s) {sorted(unknown)}")
        self._options.update(options)
        for key in ("soft_reject", "hard_reject", "disconnect", "tempfail_disconnect"):
            self._options[key] = _cmds(self._options.get(key))
        self._options["extra_args"] = list(self._options.get("extra_args") or ())
        return self

    def __getattr__(self, name):
        # sink.soft_reject etc. read the current options
        if name in SmtpSink._OPTION_NAMES and "_options" in self.__dict__:
            return self.__dict__["_options"][name]
        raise AttributeError(name)

    @property
    def address(self):
        """'host:port'."""
        return f"{self.host}:{self.port}"

    @property
    def dump_dir(self):
        return self.path("dump") if self.dir else None

    def _run_dir(self, run):
        return os.path.join(self.dump_dir, f"run{run:03d}")

    def _dot_accepted(self):
        o = self._options
        refused = set(o["soft_reject"]) | set(o["hard_reject"]) | set(o["disconnect"]) \
            | set(o["tempfail_disconnect"])
        # the same options given through extra_args
        args = o["extra_args"]
        for flag, val in zip(args, args[1:]):
            if flag in ("-r", "-f", "-q", "-Q"):
                refused |= set(_cmds(val))
        if "-A" in args:  # premature 550 after DATA: no message is ever finished
            refused.add(".")
        return "." not in refused

    def argv(self, run_dir):
        o = self._options
        # strftime template: a literal % in the path must be doubled
        template = run_dir.replace("%", "%%") + "/"
        a = [SMTP_SINK, "-u", self.user, "-d", template, "-h", o["hostname"]]
        if not o["auth"]:
            a.append("-a")
        if o["max_clients"]:
            a += ["-m", str(o["max_clients"])]
        if o["soft_reply"]:
            a += ["-b", o["soft_reply"]]
        if o["hard_reply"]:
            a += ["-B", o["hard_reply"]]
        for flag, key in (("-r", "soft_reject"), ("-f", "hard_reject"), ("-q", "disconnect"),
                          ("-Q", "tempfail_disconnect")):
            if o[key]:
                a += [flag, ",".join(o[key])]
        a += o["extra_args"]
        a += [f"inet:{self.host}:{self.port}", str(self.backlog)]
        return a

    # lifecycle -----------------------------------------------------------
    def _logfile(self):
        return self.path("smtp-sink.log")

    def start(self):
        """Start (again): first call creates the directory; later calls reuse it and port."""
        if self._started:
            return self
        _become_subreaper()
        fresh = self.dir is None
        if fresh:
            self.dir = tempfile.mkdtemp(prefix=f"rgtest-{self.name}-")
            os.chmod(self.dir, 0o755)
            os.makedirs(self.dump_dir)
        self._started = True
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self._started = False
            self._stop()
            if fresh:
                self.close()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _start(self):
        if port_in_use(self.host, self.port):
            raise FixtureError(f"{self.name}: {self.address} is already in use (leftover instance?)")
        self.run += 1
        run_dir = self._run_dir(self.run)
        os.makedirs(run_dir)
        shutil.chown(run_dir, self.user)   # smtp-sink writes as -u USER
        self._runs[self.run] = self._dot_accepted()
        argv = self.argv(run_dir)
        with open(self._logfile(), "ab") as log:
            log.write(("--- run %d: %s\n" % (self.run, " ".join(argv))).encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(self.host, self.port, self.start_timeout, proc=self.proc, what="smtp-sink")
        except TimeoutError as e:
            self._fail(str(e))

    def _open_dump_files(self):
        """Dump files the sink process holds open: transactions still in progress."""
        if self.proc is None:
            return set()
        fd_dir = f"/proc/{self.proc.pid}/fd"
        out = set()
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return out
        prefix = self.dump_dir + "/"
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith(prefix):
                out.add(target)
        return out

    def _stop(self):
        if self.proc is None:
            return
        partial = set()
        if self.proc.poll() is None:
            # Freeze it, note the transactions in flight, then kill: what was open when it
            # froze can never have been acknowledged with 250.
            try:
                os.kill(self.proc.pid, signal.SIGSTOP)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:   # kill() returns before it has stopped
                    st = _proc_stat(self.proc.pid)
                    if st is None or st[0] in "TtZ":
                        break
                    time.sleep(0.005)
                partial = self._open_dump_files()
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for path in partial:
            try:
                os.rename(path, path + ".partial")
            except OSError:
                pass
        self.proc = None
        try:
            wait_port_closed(self.host, self.port, 5)
        except TimeoutError:
            pass

    def stop(self):
        """Take the sink down (port closed); dumps, port and directory are kept."""
        if not self._started:
            return
        t0 = time.monotonic()
        try:
            self._stop()
        finally:
            self._started = False
            self.stop_seconds = time.monotonic() - t0

    def restart(self, **options):
        """stop(), change options (soft_reject=..., hard_reject=..., disconnect=..., ...;
        options not named keep their values), start() on the same port and dump dir."""
        self.stop()
        self.configure(**options)
        return self.start()

    def close(self):
        """Stop and remove the directory (unless RGTEST_KEEP is set)."""
        self.stop()
        if self.dir and not os.environ.get("RGTEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __exit__(self, exc_type, exc, tb):
        try:
            super().__exit__(exc_type, exc, tb)   # prints log problems, stop()
        finally:
            self.close()
        return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # received mail -------------------------------------------------------
    def _files(self):
        """[(run, path)] of finished dump files, oldest first."""
        if not self.dump_dir or not os.path.isdir(self.dump_dir):
            return []
        found = []
        for run in sorted(self._runs):
            d = self._run_dir(run)
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for n in names:
                if _HEX_NAME.match(n):
                    found.append((run, os.path.join(d, n)))
        # listed first, then the open set: a file closed in between is finished anyway
        busy = self._open_dump_files()
        out = []
        for run, p in found:
            if p in busy:
                continue
            try:
                mtime = os.stat(p).st_mtime_ns
            except OSError:
                continue   # unlinked meanwhile (RSET, disconnect)
            out.append((mtime, run, p))
        out.sort()
        return [(run, p) for _, run, p in out]

    def messages(self, include_refused=False):
        """Completely received transactions, oldest first, as dicts (see parse_dump) plus
        "file", "run" (1 = first start) and "accepted" (False: "." was refused in that run;
        such messages appear only with include_refused=True)."""
        out = []
        for run, p in self._files():
            accepted = self._runs.get(run, True)
            if not accepted and not include_refused:
                continue
            try:
                with open(p, "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            m = parse_dump(raw)
            m.update(file=p, run=run, accepted=accepted)
            out.append(m)
        return out

    def numbered(self, prefix=b"msg-"):
        """N of each message received whose Subject is "<prefix>N", in arrival order
        (a number twice is a duplicate delivery)."""
        pattern = re.compile(rb"Subject: " + re.escape(prefix) + rb"(\d+)")
        return [int(found.group(1)) for m in self.messages() if (found := pattern.search(m["data"]))]

    def count(self):
        """Number of transactions received completely and answered 250 (see messages())."""
        return sum(1 for run, _ in self._files() if self._runs.get(run, True))

    def wait_count(self, n, timeout=10.0):
        """Wait until count() >= n; return count() (so `== n` checks there are no extras;
        less than n means the timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.count()
            if c >= n or time.monotonic() >= deadline:
                return c
            time.sleep(0.05)

    def partial_count(self):
        """Transactions cut off by stop() in the middle of DATA (files renamed *.partial)."""
        if not self.dump_dir:
            return 0
        return sum(1 for _, _, names in os.walk(self.dump_dir)
                   for n in names if n.endswith(".partial"))

    def clear(self):
        """Forget everything received so far (deletes finished dump files)."""
        for _, p in self._files():
            try:
                os.unlink(p)
            except OSError:
                pass
