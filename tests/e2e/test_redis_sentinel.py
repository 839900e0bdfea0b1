#!/usr/bin/python3
"""Two MTA nodes on a Sentinel-managed Redis (3 sentinels, one replica):
the master is found by name, killed mid-test and failed over, and the
nodes follow the new master by themselves. While there is no master they
tempfail (nothing wrongly accepted); after the failover the shared count
carries on where it was, so the limit still holds across both nodes."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.nodes import store_config, two_nodes  # noqa: E402
from rgtest.redis import RedisSentinel  # noqa: E402

PASSWORD = "pw-sentinel-41c2"
SOURCE = "127.0.0.4"

with RedisSentinel(replicas=1, sentinels=3, password=PASSWORD) as sentinel:
    extra = f'sentinel_master = "{sentinel.master_name}"\npassword = "{PASSWORD}"\n'
    with two_nodes(store_config("sentinel", sentinel.sentinels, extra=extra)) as (a, b):
        first = [node.send(SOURCE).delivered for node in (a, b, a, b, a, b)]
        check("before the failover: 6 messages through both nodes accepted", all(first), first)
        old = sentinel.master
        check("the nodes found the master through the sentinels",
              a.daemon.wait_for(rf"sentinel master 'mymaster' is 127\.0\.0\.1:{old.port}") and
              b.daemon.wait_for(rf"sentinel master 'mymaster' is 127\.0\.0\.1:{old.port}"))
        # The counts must be on the replica before the master dies, the
        # sessions' closed connection slots too (the nodes send those in the
        # background, a few milliseconds after each session ends).
        slots = f"rgtest:{{{SOURCE}}}:conn"
        deadline = time.monotonic() + 5
        while old.call("ZCARD", slots) != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        check("every session's connection slot is given back", old.call("ZCARD", slots) == 0, old.call("ZCARD", slots))
        acked = old.call("WAIT", 1, 2000)
        check("the replica has every write", acked == 1, acked)

        sentinel.kill_master()
        killed = time.monotonic()
        during = [node.send(SOURCE) for node in (a, b)]
        check("master dead: both nodes tempfail with 451 rather than accept uncounted",
              all(r.mail is not None and r.mail.code == 451 for r in during), [r.summary() for r in during])
        new_port = sentinel.wait_failover(old.port)
        check("the sentinels promoted the replica", new_port != old.port, new_port)

        accepted, refused, tempfailed = 0, None, 0
        deadline = time.monotonic() + 30
        nodes = [a, b]
        i = 0
        while refused is None and time.monotonic() < deadline:
            r = nodes[i % 2].send(SOURCE)
            i += 1
            if r.delivered:
                accepted += 1
            elif r.mail is not None and r.mail.code == 450:
                refused = r
            else:
                tempfailed += 1
                time.sleep(0.2)
        back_after = time.monotonic() - killed
        check("after the failover: exactly 4 more accepted, so 10 in all across both nodes",
              accepted == 4, f"accepted={accepted} tempfailed={tempfailed}")
        check("after the failover: the 11th refused by the rate limit", refused is not None,
              f"accepted={accepted} tempfailed={tempfailed}")
        for node in (a, b):
            check(f"node {node.name} logs that it follows the new master",
                  node.daemon.wait_for(rf"sentinel master 'mymaster' is now 127\.0\.0\.1:{new_port} "
                                       rf"\(was 127\.0\.0\.1:{old.port}\)"), node.daemon.log()[-1500:])
        print(f"   (counting again {back_after:.1f} s after the master was killed; "
              f"{tempfailed} sends tempfailed meanwhile)")
        other = b if i % 2 else a
        # As before the kill: the sessions' connection slots are given back in
        # the background, and one whose give-back met the dead master lapses
        # only with its lease (5 s). The next session must meet the rate
        # limit, not connections = 2 still counting sessions already over.
        new_master = sentinel.master
        deadline = time.monotonic() + 7
        while new_master.call("ZCARD", slots) != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = other.send(SOURCE)
        check("and the other node refuses too", r.mail is not None and r.mail.code == 450,
              r.summary() + "\n" + other.daemon.log()[-2500:])
        check("the master's password is in no log line", PASSWORD not in a.daemon.log() + b.daemon.log())
        check("both nodes are still running", a.daemon.alive() and b.daemon.alive())
finish()
