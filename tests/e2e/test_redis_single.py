#!/usr/bin/python3
"""Two MTA nodes share one Redis: one message-rate limit across both, keys
that carry the prefix and expire, Redis stopped and hung mid-stream (node A
fails closed with 4xx, node B counts alone), and a killed node whose
connections stop counting after the lease while a live node's keep counting."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.fixtures import free_port  # noqa: E402
from rgtest.nodes import shared_limit_checks, store_config, two_nodes  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

PASSWORD = "pw-relay-7f3a9c"

# Redis not there at all when the daemon starts: it starts anyway and says so.
nowhere = store_config("single", [f"127.0.0.1:{free_port()}"])
with Relayguard('[relay]\nlocal_domains = ["example.test"]\n' + nowhere) as lonely:
    check("redis absent at start: the daemon starts and logs it, naming the fail mode",
          lonely.wait_for(r"unreachable \(.*Connection refused.*fail_mode = tempfail"), lonely.log()[-1500:])

with RedisServer(unixsocket=True, acl_users={"relay": PASSWORD}) as redis:
    credentials = f'username = "relay"\npassword = "{PASSWORD}"\n'
    # A over TCP and fail-closed; B over the unix socket and fail-open.
    store_a = store_config("single", [redis.address], fail_mode="tempfail", extra=credentials)
    store_b = store_config("single", [f"unix:{redis.socket_path}"], fail_mode="open", extra=credentials)
    with two_nodes(store_a, store_b) as (a, b):
        shared_limit_checks(check, a, b, "127.0.0.4")

        keys = redis.keys("*")
        check("keys: every key carries the prefix and the client's hash tag",
              keys and all(k.startswith("rgtest:{127.0.0.4}:") for k in keys), keys)
        # -2: the key went away between KEYS and PTTL (a connection's slot
        # set empties when its close arrives, sent in the background); -1
        # would be a key that never expires.
        ttls = [int(redis.call("PTTL", k)) for k in keys]
        live = [t for t in ttls if t != -2]
        check("keys: every key expires by itself (PTTL within the hour)",
              live and all(0 < t <= 3600_000 for t in live), ttls)
        logs = a.daemon.log() + b.daemon.log()
        check("the ACL user's password is in no log line", PASSWORD not in logs)
        check("both nodes report Redis answering at start",
              "counting in Redis" in a.daemon.log() and "counting in Redis" in b.daemon.log())

        # --- Redis stopped mid-stream ---
        redis.kill()
        r = a.send("127.0.0.5")
        check("redis down: node A (fail_mode tempfail) answers MAIL with 451 4.3.0",
              r.mail is not None and r.mail.code == 451 and r.mail.enhanced == "4.3.0", r.summary())
        check("redis down: node A logs that it fails closed",
              a.daemon.wait_for(r"unreachable .*fail_mode = tempfail"), a.daemon.log()[-1500:])
        local = [b.send("127.0.0.5").delivered for _ in range(10)]
        r = b.send("127.0.0.5")
        check("redis down: node B (fail_mode open) accepts 10 counting alone",
              all(local), local)
        check("redis down: and refuses the 11th by its own count",
              not r.delivered and r.mail is not None and r.mail.code == 450, r.summary())
        check("redis down: node B logs that the cluster view is lost",
              b.daemon.wait_for(r"unreachable .*counting on this node alone"), b.daemon.log()[-1500:])

        redis.restart()
        deadline = time.monotonic() + 10
        r = a.send("127.0.0.6")
        while not r.delivered and time.monotonic() < deadline:
            time.sleep(0.2)
            r = a.send("127.0.0.6")
        check("redis back: node A accepts again by itself", r.delivered, r.summary())
        check("redis back: node A logs the return", a.daemon.wait_for(r"reachable again"), a.daemon.log()[-800:])
        # Node B tries Redis again only when a call comes, and not during its
        # back-off (up to 1 s after its last failure): keep sending for a while.
        deadline = time.monotonic() + 10
        back = False
        while not back and time.monotonic() < deadline:
            b.send("127.0.0.6")
            back = b.daemon.wait_for(r"reachable again .*counting in Redis", timeout=0.5)
        check("redis back: node B logs the return to shared counting", back, b.daemon.log()[-800:])

        # --- Redis hung (stopped, not dead): calls time out ---
        redis.kill(signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = a.send("127.0.0.6")
            took = time.monotonic() - started
        finally:
            redis.kill(signal.SIGCONT)
        check("redis hung: node A still answers, with 451", r.mail is not None and r.mail.code == 451, r.summary())
        # connect_timeout + command_timeout is 400 ms per stage; the whole
        # SMTP session must not wait for Redis beyond a few of them.
        check("redis hung: the whole session took under 3 s", took < 3.0, f"{took:.2f} s")

        # --- a killed node's connections, and a live node's, across the lease (5 s) ---
        held_a = [a.session("127.0.0.7") for _ in range(2)]
        check("lease: node A admits 2 connections from 127.0.0.7", all(s.greeting.code == 220 for s in held_a),
              [str(s.greeting) for s in held_a])
        time.sleep(6)  # longer than the lease: only A's renewals keep them counted
        third = b.session("127.0.0.7")
        third.close()
        check("lease: 6 s later node B still counts A's 2 live connections and refuses a 3rd",
              b.daemon.wait_for(r"refused client=127\.0\.0\.7 rule=connections", timeout=5), b.daemon.log()[-1500:])
        a.daemon.kill()
        killed_at = time.monotonic()
        admitted = None
        while time.monotonic() - killed_at < 12:
            s = b.session("127.0.0.7")
            ok = s.greeting.code == 220
            s.close()
            if ok:
                admitted = time.monotonic() - killed_at
                break
            time.sleep(0.5)
        check("lease: after node A is killed, B admits the client again once the lease ends",
              admitted is not None, b.daemon.log()[-1500:])
        check("lease: but not before the lease could have ended (> 2 s after the kill)",
              admitted is not None and admitted > 2.0, admitted)
        for s in held_a:
            s.close()
        check("node B is still running", b.daemon.alive())
finish()
