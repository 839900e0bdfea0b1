#!/usr/bin/python3
"""A queue that survives kill -9: 1,000 messages are queued in the relay
client while its smart host (smtp-sink) is down; the sink comes up, and
while the backlog is delivering the client is killed with SIGKILL and
restarted. Every message acknowledged with 250 must reach the sink at least
once. Duplicates (a message sent but killed before its state was recorded)
are allowed, as SMTP allows them, and counted."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import SmtpSession  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

TOTAL = 1000
SENDERS = 4

acknowledged = set()
lock = threading.Lock()


def submit(relayd_port, numbers):
    """Sends each numbered message; retries one the daemon did not acknowledge."""
    for n in numbers:
        for _ in range(60):
            try:
                s = SmtpSession("127.0.0.1", relayd_port, source="127.0.0.2", timeout=10)
                s.ehlo("loadgen.test")
                if s.mail("load@example.test").code != 250 or s.rcpt(f"rcpt{n % 7}@remote.example").code != 250:
                    raise RuntimeError("refused")
                reply = s.data(f"Subject: msg-{n}\r\nMessage-Id: <{n}@loadgen.test>\r\n\r\nnumber {n}\r\n")
                s.quit()
                if reply.code == 250:
                    with lock:
                        acknowledged.add(n)
                    break
            except Exception:
                time.sleep(0.2)  # the daemon is being killed or restarted: try again


with SmtpSink() as sink:
    settings = ('route = "smarthost"\n' f'smarthosts = ["{sink.address}"]\n'
                'retry_interval = "1s"\nmax_retry_interval = "2s"\nthreads = 8\n')
    relayd = Relayd(settings)
    relayd.start()
    try:
        sink.stop()
        chunks = [list(range(i, TOTAL, SENDERS)) for i in range(SENDERS)]
        threads = [threading.Thread(target=submit, args=(relayd.port, c)) for c in chunks]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        intake_took = time.monotonic() - started
        check("1,000 messages acknowledged while the smart host is down", len(acknowledged) == TOTAL,
              TOTAL - len(acknowledged))
        check("all of them wait in the queue", len(relayd.queued()) == TOTAL, len(relayd.queued()))
        sink.start()
        relayd.queue("flush")
        # Kill it once delivery is well under way but far from done.
        deadline = time.monotonic() + 60
        while sink.count() < 150 and time.monotonic() < deadline:
            time.sleep(0.02)
        at_kill = sink.count()
        queued_at_kill = len(relayd.queued())
        relayd.kill()
        check(f"killed with SIGKILL while delivering ({at_kill} delivered, {queued_at_kill} still queued)",
              0 < at_kill < TOTAL and queued_at_kill > 0, (at_kill, queued_at_kill))
        relayd.start()
        restarted = time.monotonic()
        deadline = time.monotonic() + 120
        while len(set(sink.numbered())) < TOTAL and time.monotonic() < deadline:
            time.sleep(0.2)
        after_restart = time.monotonic() - restarted
        seen = sink.numbered()
        missing = acknowledged - set(seen)
        check("every acknowledged message reached the sink at least once", not missing, sorted(missing)[:20])
        duplicates = len(seen) - len(set(seen))
        check(f"duplicates only from the kill, far fewer than the messages in flight ({duplicates})",
              duplicates <= 8 * 2, duplicates)
        check("the queue is empty at the end", not relayd.queued() or
              (time.sleep(2) or not relayd.queued()), relayd.queued()[:5])
        check("the restart's recovery pass ran", "messages to deliver" in relayd.log())
        print(f"   (intake of {TOTAL}: {intake_took:.1f} s, {TOTAL / intake_took:.0f} msg/s with fsync; "
              f"the {TOTAL - at_kill} left after the kill delivered in {after_restart:.1f} s)")
    finally:
        relayd.stop()
finish()
