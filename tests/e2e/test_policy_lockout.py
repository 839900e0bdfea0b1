#!/usr/bin/python3
"""The policy service cannot be locked out. Any local user can connect to its loopback
socket, and a Postfix may run more smtpd processes than relayguard has serving threads;
neither may ever leave Postfix without an answer (every message would get a 4xx). One
relayguard with listen.workers = 2 and test-short timeouts, behind a real Postfix that
delivers to a sink:

  lockout        300 idle connections and 300 that sent half a request are held open;
                 a message through check_policy_service is still accepted at once and
                 delivered, the daemon gains no thread for them, and it closes the
                 half-sent ones after policy_read_timeout, the idle ones after
                 policy_idle_timeout
  out of fds     with RLIMIT_NOFILE lowered under the daemon, connections past it wait
                 in the listen queue: one warning, no busy loop, and service resumes by
                 itself once descriptors are free
  many smtpd     20 SMTP sessions at once (20 smtpd processes, each with its own policy
                 connection) all get through, and Postfix logs no policy service trouble"""

import os
import re
import resource
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

READ_TIMEOUT = 3.0
IDLE_TIMEOUT = 6.0
LISTEN = f'workers = 2\npolicy_read_timeout = "{READ_TIMEOUT:g}s"\npolicy_idle_timeout = "{IDLE_TIMEOUT:g}s"'
CONFIG = """
[relay]
local_domains = ["example.test"]
"""
LOCAL = "user1@example.test"
HALF_REQUEST = b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
FULL_REQUEST = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n"
                b"client_port=1\nrecipient=u@example.test\nsender=a@b.example\ninstance=x\n\n")
# How late relayguard may close a connection past its timeout, and how early (clock
# granularity): generous for the sanitizer builds on a shared machine.
LATE, EARLY = 4.0, 0.3


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_connections(port, n, send=b""):
    """n connections to the policy socket, each with `send` written: [(socket, when)]."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if send:
            s.sendall(send)
        out.append((s, time.monotonic()))
    return out


def still_open(conns):
    """How many of the connections the server has neither closed nor written to."""
    poller = select.poll()
    for s, _ in conns:
        poller.register(s.fileno(), select.POLLIN)
    return len(conns) - len(poller.poll(0))


def wait_closed(conns, timeout):
    """Waits until the server has closed every connection or the time is up. Answers
    {socket: (seconds from its start until closed, bytes received)}."""
    poller = select.poll()
    pending = {s.fileno(): (s, t) for s, t in conns}
    for fd in pending:
        poller.register(fd, select.POLLIN)
    closed = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            s, started = pending.pop(fd)
            poller.unregister(fd)
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            closed[s] = (time.monotonic() - started, data)
    return closed


def closed_as_timed(name, conns, closed, timeout):
    times = [closed[s][0] for s, _ in conns if s in closed]
    check(f"lockout: relayguard closed all {len(conns)} {name} connections", len(times) == len(conns),
          f"{len(times)} closed")
    check("lockout: ... without a reply", all(closed[s][1] == b"" for s, _ in conns if s in closed))
    if times:
        check(f"lockout: ... {timeout:g}s after they began (took {min(times):.1f}..{max(times):.1f}s)",
              timeout - EARLY <= min(times) and max(times) <= timeout + LATE)


def close_all(conns):
    for s, _ in conns:
        s.close()


def lockout():
    pid = rg.proc.pid
    threads = threads_of(pid)
    idle = open_connections(rg.policy_port, 300)
    half = open_connections(rg.policy_port, 300, send=HALF_REQUEST)
    try:
        check("lockout: 600 connections cost the daemon no thread", threads_of(pid) == threads,
              f"{threads} threads before, {threads_of(pid)} with them open")
        started = time.monotonic()
        r = send_message("127.0.0.1", PF, source="127.0.0.2", sender="s@example.org", rcpts=[LOCAL], timeout=30)
        took = time.monotonic() - started
        check("lockout: a message through check_policy_service is accepted", r.delivered, r.summary())
        check(f"lockout: ... in normal time ({took:.1f}s)", took < 10)
        # Only those still within their timeout: on a slow (sanitizer) build the first
        # half-sent ones may rightly be closed by now.
        now = time.monotonic()
        young = [(s, t) for s, t in half if now - t < READ_TIMEOUT - EARLY] + idle
        check(f"lockout: ... while all {len(young)} connections within their timeout are still open",
              len(young) > 300 and still_open(young) == len(young), f"{still_open(young)} open")
        check("lockout: ... and delivered to the sink", sink.wait_count(1, timeout=20) == 1, sink.count())
        closed = wait_closed(idle + half, IDLE_TIMEOUT + LATE + 2)
        closed_as_timed("half-sent", half, closed, READ_TIMEOUT)
        closed_as_timed("idle", idle, closed, IDLE_TIMEOUT)
    finally:
        close_all(idle + half)
    log = rg.log()
    read_closes = re.findall(rf"closed: request not complete after {READ_TIMEOUT:g}s", log)
    check("lockout: the read timeouts are logged", len(read_closes) == 300, len(read_closes))
    # Postfix's own connection, idle after the message, is closed too.
    idle_closes = re.findall(rf"closed: idle for {IDLE_TIMEOUT:g}s", log)
    check("lockout: the idle timeouts are logged", len(idle_closes) >= 300, len(idle_closes))
    check("lockout: relayguard is still running", rg.alive())


def out_of_fds():
    pid = rg.proc.pid
    open_fds = len(os.listdir(f"/proc/{pid}/fd"))
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds + 10, limits[1]))
    waiting = []
    try:
        waiting = open_connections(rg.policy_port, 40)
        check("out of fds: accept failures are logged", rg.wait_for(r"cannot accept connections", timeout=5))
        cpu = cpu_seconds(pid)
        time.sleep(2)
        spent = cpu_seconds(pid) - cpu
        check(f"out of fds: the daemon rests meanwhile, no busy loop ({spent:.2f}s CPU in 2s)", spent < 0.5)
        check("out of fds: ... warned about once", len(re.findall(r"cannot accept connections", rg.log())) == 1)
        close_all(waiting)
        waiting = []
        with socket.create_connection(("127.0.0.1", rg.policy_port), timeout=10) as s:
            s.sendall(FULL_REQUEST)
            answer = s.recv(100)
        check("out of fds: service resumes once descriptors are free", answer == b"action=DUNNO\n\n", answer)
        check("out of fds: ... and says so", rg.wait_for(r"accepting connections again"))
    finally:
        close_all(waiting)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
    check("out of fds: relayguard is still running", rg.alive())


def session(n, barrier, results):
    try:
        with SmtpSession("127.0.0.1", PF, source=f"127.0.0.{100 + n}", timeout=30) as s:
            # Every session is open before any asks: 20 smtpd processes at once.
            barrier.wait(timeout=30)
            s.ehlo("client.example.test")
            replies = [s.mail("s@example.org"), s.rcpt(LOCAL)]
            if replies[-1].code == 250:
                replies.append(s.data(f"Subject: parallel {n}\r\n\r\nbody {n}\r\n"))
            results[n] = replies
    except Exception as e:  # a reset or a timeout: that client got no answer
        results[n] = [f"{type(e).__name__}: {e}"]


def many_smtpd():
    mark = pf.log_mark()
    rg_mark = len(rg.log())
    before = sink.count()
    results = {}
    barrier = threading.Barrier(20)
    threads = [threading.Thread(target=session, args=(n, barrier, results)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    accepted = [n for n, replies in results.items()
                if len(replies) == 3 and all(getattr(r, "code", 0) == 250 for r in replies)]
    check("many smtpd: all 20 parallel sessions got their message accepted", len(accepted) == 20,
          {n: [str(r) for r in replies] for n, replies in results.items() if n not in accepted})
    # The "connection from" lines are debug lines, written out with the next info line
    # (at the latest the idle closes, listen.policy_idle_timeout later).
    deadline = time.monotonic() + IDLE_TIMEOUT + LATE
    while True:
        connections = len(re.findall(r"policy: connection \d+ from \S+$", rg.log()[rg_mark:], re.M))
        if connections >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(f"many smtpd: ... over {connections} policy connections (listen.workers = 2)", connections >= 20)
    check("many smtpd: ... and delivered", sink.wait_count(before + 20, timeout=30) == before + 20, sink.count())
    trouble = [line for line in pf.log(since=mark).splitlines()
               if re.search(r"warning:.*(policy|problem talking to server|premature end-of-input|"
                            rf"127\.0\.0\.1:{rg.policy_port})", line)]
    check("many smtpd: Postfix logs no policy service warning", not trouble, trouble[:5])
    check("many smtpd: relayguard is still running", rg.alive())


# No milter: this is the policy service alone, and libmilter's own threads stay out of it.
with Relayguard(CONFIG, listen_extra=LISTEN, milter=False) as rg, SmtpSink() as sink:
    PF = free_port()
    deliver = f"smtp:[127.0.0.1]:{sink.port}"
    with PostfixInstance(port=PF, policy=rg.policy,
                         extra_main_cf={"local_transport": deliver, "default_transport": deliver}) as pf:
        for part in (lockout, out_of_fds, many_smtpd):
            print(f"--- {part.__name__}")
            try:
                part()
            except Exception as e:
                check(f"{part.__name__} ran without an exception", False, repr(e))
finish()
