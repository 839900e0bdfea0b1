#!/usr/bin/python3
"""Faults at the relay client, all real, and no acknowledged message lost:

  the queue's disk filling (a 3 MB tmpfs)  -> 452 4.3.1 at MAIL while less than
      queue_min_free (+ SIZE) is free; with that guard off, a write that meets ENOSPC
      answers 451 4.3.0 after DATA and leaves no half-written file
  the smart host dropping the connection in the middle of DATA -> deferred, retried,
      delivered once, no bounce
  SIGHUP x3 and SIGKILL while clients submit and the queue delivers -> reloads unnoticed;
      after the kill every message answered 250 reaches the smart host

The smart host is smtp-sink, or a small server here that cuts DATA short."""

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import SmtpSession  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.fixtures import free_port  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

FAST = 'retry_interval = "1s"\nmax_retry_interval = "1s"\nthreads = 4\n'
BODY_100K = ("x" * 998 + "\r\n") * 100


def submit(port, n, body="number {n}\r\n", size=None, timeout=20):
    """One message numbered n: (stage, reply) of the first non-2xx/3xx answer, or
    ("done", the 250)."""
    s = SmtpSession("127.0.0.1", port, source="127.0.0.2", timeout=timeout)
    try:
        s.ehlo("client.test")
        r = s.mail("s@example.test", size=size)
        if r.code != 250:
            return "mail", r
        r = s.rcpt(f"r{n % 5}@remote.example")
        if r.code != 250:
            return "rcpt", r
        r = s.data(f"Subject: msg-{n}\r\n\r\n" + body.format(n=n))
        return ("done" if r.code == 250 else "data"), r
    finally:
        s.close()


def wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


# --- 1. The queue's disk fills up ---
def disk_full():
    sink = SmtpSink()
    relayd = Relayd(f'route = "smarthost"\nsmarthosts = ["{sink.address}"]\n' + FAST +
                    'queue_min_free = "1MB"\nmax_message_size = "10MB"\n')
    os.makedirs(relayd.queue_dir)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", relayd.queue_dir],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        # A container without CAP_SYS_ADMIN cannot mount; say so loudly rather than pass.
        check("disk full: a 3 MB tmpfs could be mounted for the queue (needs root and CAP_SYS_ADMIN)",
              False, mounted.stderr.strip())
        return
    acked = set()
    try:
        with relayd:   # the smart host is down: everything stays queued
            stage, r = submit(relayd.port, 0, size=3_000_000)
            check("SIZE=3000000 on a 3 MB disk: 452 4.3.1 at MAIL, before any data is sent",
                  (stage, r.code, r.enhanced) == ("mail", 452, "4.3.1"), (stage, str(r)))
            outcomes = []
            for n in range(1, 40):
                stage, r = submit(relayd.port, n, body=BODY_100K)
                outcomes.append((stage, r.code))
                if stage == "done":
                    acked.add(n)
                else:
                    break
            check(f"queue_min_free: {len(acked)} messages of 100 KB taken, then 452 4.3.1 at MAIL",
                  len(acked) >= 10 and outcomes[-1] == ("mail", 452) and r.enhanced == "4.3.1", outcomes[-3:])
            check("queue_min_free: the refusal is logged with the free space and the setting",
                  relayd.wait_for(r"MAIL refused with 452 4\.3\.1: .* free in .*queue_min_free"), relayd.log()[-800:])

            # Guard off: the next writes run into the full disk itself.
            relayd.write_config(f'route = "smarthost"\nsmarthosts = ["{sink.address}"]\n' + FAST +
                                'queue_min_free = "0"\nmax_message_size = "10MB"\n')
            relayd.reload()
            relayd.wait_for(r"reload: configuration .* applied")
            failed = None
            for n in range(100, 140):
                stage, r = submit(relayd.port, n, body=BODY_100K)
                if stage == "done":
                    acked.add(n)
                else:
                    failed = (stage, r)
                    break
            check("ENOSPC: the message that does not fit gets 451 4.3.0 after DATA, not a 250",
                  failed is not None and failed[0] == "data" and (failed[1].code, failed[1].enhanced) == (451, "4.3.0"),
                  failed and (failed[0], str(failed[1])))
            check("ENOSPC: the error is logged with its cause",
                  relayd.wait_for(r"could not queue a message .*No space left on device"), relayd.log()[-800:])
            check("ENOSPC: no half-written file is left in tmp/", os.listdir(os.path.join(relayd.queue_dir, "tmp")) == [],
                  os.listdir(os.path.join(relayd.queue_dir, "tmp")))
            check("every acknowledged message is in the queue", len(relayd.queued()) == len(acked),
                  (len(relayd.queued()), len(acked)))
            check("relayd is still running", relayd.alive())

            # Room again: the smart host comes up and the queue drains by itself.
            sink.start()
            relayd.queue("flush")
            wait(lambda: set(sink.numbered()) >= acked, 60)
            seen = sink.numbered()
            check(f"disk full, then the smart host back: all {len(acked)} acknowledged messages delivered, once each",
                  sorted(seen) == sorted(acked), sorted(set(acked) - set(seen))[:10])
            wait(lambda: not relayd.queued(), 10)
            stage, r = submit(relayd.port, 999)
            check("after the queue drained, new mail is taken again", stage == "done", str(r))
    finally:
        sink.close()
        subprocess.run(["umount", "-l", relayd.queue_dir], capture_output=True)


# --- 2. The smart host drops the connection in the middle of DATA ---
class DataDropper:
    """Greets, takes the envelope, answers 354, reads a little of the message and closes
    the connection without a word. Counts the sessions it cut."""

    def __init__(self, port):
        self.listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.cut = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rb")
                conn.sendall(b"220 dropper.test ESMTP\r\n")
                for line in f:
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        conn.sendall(b"250-dropper.test\r\n250 8BITMIME\r\n")
                    elif verb == b"DATA":
                        conn.sendall(b"354 go ahead\r\n")
                        f.read(64)            # part of the message, then gone
                        self.cut += 1
                        conn.shutdown(socket.SHUT_RDWR)
                        break
                    elif verb == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        break
                    else:
                        conn.sendall(b"250 ok\r\n")
                f.close()

    def close(self):
        # shutdown wakes the thread blocked in accept(); close alone would leave it listening
        self.listener.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.listener.close()


def smart_host_drops_mid_data():
    port = free_port()
    dropper = DataDropper(port)
    with Relayd(f'route = "smarthost"\nsmarthosts = ["127.0.0.1:{port}"]\n' + FAST) as relayd:
        stage, r = submit(relayd.port, 7, body=BODY_100K)
        check("mid-DATA drop: the message is taken (250)", stage == "done", str(r))
        wait(lambda: dropper.cut >= 2, 15)
        check(f"mid-DATA drop: the relay client retried after the cut ({dropper.cut} cut sessions)",
              dropper.cut >= 2)
        check("mid-DATA drop: each attempt is logged as deferred", relayd.wait_for(r"status=deferred"),
              relayd.log()[-800:])
        check("mid-DATA drop: the message waits in the queue", len(relayd.queued()) == 1, relayd.queued())
        dropper.close()
        with SmtpSink(port=port) as sink:
            wait(lambda: sink.count() >= 1 and not relayd.queued(), 15)
            time.sleep(1.5)  # a duplicate or a bounce would come within one retry interval
            seen = sink.numbered()
            check("mid-DATA drop: delivered once the smart host is whole, exactly once", seen == [7], seen)
            # a bounce to s@example.test would go through the same smart host
            check("mid-DATA drop: nothing else reached the smart host (no bounce, no warning)",
                  sink.count() == 1, [m["data"][:80] for m in sink.messages()])
        check("relayd is still running", relayd.alive())


# --- 3. SIGHUP and SIGKILL while clients submit and the queue delivers ---
def signals_under_load():
    with SmtpSink() as sink, Relayd(f'route = "smarthost"\nsmarthosts = ["{sink.address}"]\n' + FAST) as relayd:
        acked, refused, lock = set(), [], threading.Lock()
        phase = {"name": "reloads"}
        stop = threading.Event()

        def client(first):
            n = first
            while not stop.is_set():
                try:
                    stage, r = submit(relayd.port, n, timeout=10)
                    with lock:
                        if stage == "done":
                            acked.add(n)
                        else:
                            refused.append((phase["name"], stage, str(r)))
                except Exception as e:  # killed mid-session: the client keeps its copy
                    with lock:
                        refused.append((phase["name"], "connection", type(e).__name__))
                    time.sleep(0.1)
                n += 4
                time.sleep(0.01)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        for _ in range(3):
            time.sleep(1)
            relayd.reload()
        time.sleep(1)
        with lock:
            during_reloads = [x for x in refused if x[0] == "reloads"]
            before_kill = len(acked)
        check(f"SIGHUP x3 under load: no submission failed ({before_kill} taken)",
              before_kill > 20 and not during_reloads, during_reloads[:5])
        phase["name"] = "kill"
        relayd.kill()
        time.sleep(0.5)
        phase["name"] = "restart"
        relayd.start()
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(30)
        wait(lambda: set(sink.numbered()) >= acked, 60)
        seen = sink.numbered()
        missing = acked - set(seen)
        check(f"SIGKILL under load: every one of the {len(acked)} messages answered 250 was delivered",
              not missing, sorted(missing)[:10])
        duplicates = len(seen) - len(set(seen))
        check(f"SIGKILL under load: duplicates only from deliveries cut by the kill ({duplicates}, at most "
              "one per delivery thread)", duplicates <= 4, duplicates)
        after_restart = [x for x in refused if x[0] == "restart" and x[1] != "connection"]
        check("after the restart no submission was refused", not after_restart, after_restart[:5])
        check("relayd is running after the restart", relayd.alive())


disk_full()
smart_host_drops_mid_data()
signals_under_load()
finish()
