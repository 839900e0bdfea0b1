#!/usr/bin/python3
"""relayguardctl against running daemons: status, ip show and ip unblock, pop grant,
show and list, for people and with --json. Two daemons share one real Redis: a client
that harvests through node A's Postfix shows as blocked on node B (the counters are
the cluster's), and unblocking it on B lets it back in through A."""

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

CTL = os.environ["RELAYGUARDCTL"]
LOCAL = "user1@example.test"
RULES = """
[relay]
local_domains = ["example.test"]
allow_pop_before_smtp = true
[limits]
exempt_group = ""
[limits.message_rate]
max = 5
[limits.unknown_recipients]
max = 3
"""
sockets = tempfile.mkdtemp(prefix="rgtest-ctl-")
sock_a, sock_b = os.path.join(sockets, "a.sock"), os.path.join(sockets, "b.sock")


def ctl(sock, *args):
    return subprocess.run([CTL, "--socket", sock, *args], capture_output=True, text=True, timeout=10)


def ctl_json(sock, *args):
    p = ctl(sock, "--json", *args)
    try:
        return json.loads(p.stdout if p.returncode == 0 else p.stderr)
    except ValueError:
        return {"unparsed": p.stdout + p.stderr}


with RedisServer() as redis:
    store = store_config("single", [redis.address])
    with Relayguard(RULES + store, admin=sock_a) as a, Relayguard(RULES + store, admin=sock_b) as b, \
            PostfixInstance(port=free_port(), milter=a.milter) as pf:
        r = send_message("127.0.0.1", pf.port, source="127.0.0.41", sender="s@example.org", rcpts=[LOCAL])
        check("a message from 127.0.0.41 goes through node A", r.delivered, r.summary())
        s = SmtpSession("127.0.0.1", pf.port, source="127.0.0.41", closed_ok=True)
        s.ehlo("harvester.example")
        s.mail("s@example.org")
        codes = [s.rcpt(f"guess{i}@example.test").code for i in range(3)]
        check("then it guesses 3 unknown recipients and is blocked", s.rcpt(LOCAL).code == 450, codes)
        s.close()

        shown = ctl_json(sock_b, "ip", "show", "127.0.0.41")
        check("ip show on node B sees the block node A set (shared in Redis), with the time left",
              shown.get("ok") and shown.get("blocked") and 3500 < shown["blocked"]["seconds_left"] <= 3600, shown)
        check("and the message counted through A (1 of 5)",
              shown.get("messages", {}).get("count") == 1 and shown["messages"]["limit"] == 5, shown)
        p = ctl(sock_b, "ip", "show", "127.0.0.41")
        check("for people: one line per counter",
              p.returncode == 0 and "messages:           1 of 5 in 3600 s" in p.stdout
              and "blocked (directory harvest) until" in p.stdout, p.stdout + p.stderr)

        p = ctl(sock_b, "ip", "unblock", "127.0.0.41")
        check("ip unblock on node B lifts it", p.returncode == 0 and "block lifted for 127.0.0.41" in p.stdout,
              p.stdout + p.stderr)
        check("the security log records who lifted it", b.wait_for(r"unblocked client=127\.0\.0\.41 by=admin"))
        r = send_message("127.0.0.1", pf.port, source="127.0.0.41", sender="s@example.org", rcpts=[LOCAL])
        check("and the client is let in again through node A", r.delivered, r.summary())

        ctl(sock_a, "pop", "grant", "127.0.0.42", "--user", "carol", "--minutes", "5")
        ctl(sock_a, "pop", "grant", "127.0.0.43", "--user", "dave")
        windows = ctl_json(sock_b, "pop", "list").get("windows", [])
        check("pop list on node B shows both windows granted on A",
              [(w["client"], w["user"]) for w in windows] == [("127.0.0.42", "carol"), ("127.0.0.43", "dave")]
              and 290 < windows[0]["seconds_left"] <= 300, windows)

        st = ctl_json(sock_a, "status")
        decisions = {(d["stage"], d["rule"], d["verdict"]): d["count"] for d in st.get("decisions", [])}
        check("status: the Redis store, reachable, and the uptime",
              st.get("store", {}).get("type") == "redis" and st["store"]["reachable"] is True
              and st.get("uptime_seconds", -1) >= 0, st)
        check("status counts decisions by stage, rule and verdict (the 450 at RCPT included)",
              decisions.get(("rcpt", "unknown_recipients", "tempfail"), 0) >= 1, decisions)
        p = ctl(sock_a, "status")
        check("status for people", p.returncode == 0 and "store: redis" in p.stdout and "decisions since start" in p.stdout,
              p.stdout)
        with open(os.path.join(os.environ["RELAYGUARD_SOURCE_DIR"], "CMakeLists.txt")) as f:
            declared = re.search(r"project\(relayguard VERSION (\S+)", f.read()).group(1)
        check(f"status: the version CMake declares ({declared})",
              st.get("version") == declared and f"relayguard {declared}," in p.stdout, (st.get("version"), p.stdout[:40]))

        bad = ctl_json(sock_a, "ip", "show", "not-an-ip")
        check("a malformed address: exit 1 and a JSON error with --json",
              bad.get("ok") is False and "not an IP address" in bad.get("error", ""), bad)
        redis.kill()
        p = ctl(sock_b, "ip", "show", "127.0.0.41")
        check("with Redis gone, ip show says the store cannot be reached (exit 1)",
              p.returncode == 1 and "cannot be reached" in p.stderr, p.stdout + p.stderr)

with Relayguard(RULES, admin=sock_a) as m:
    st = ctl_json(sock_a, "status")
    check("status of a daemon on the memory store", st.get("store", {}).get("type") == "memory", st)
p = ctl(sock_a, "status")
check("a daemon that is gone: exit 69", p.returncode == 69, p.stdout + p.stderr)

# The relay client's queue, through its own admin socket.
with SmtpSink(soft_reject=["RCPT"]) as sink, \
        Relayd(f'route = "smarthost"\nsmarthosts = ["{sink.address}"]\nretry_interval = "1h"\n') as relayd:
    def qctl(*args):
        return subprocess.run([CTL, "--relayd-socket", relayd.admin_socket, *args], capture_output=True, text=True,
                              timeout=10)
    ids = []
    for rcpt in ("a@remote.example", "b@remote.example", "c@remote.example"):
        send_message("127.0.0.1", relayd.port, sender="s@example.test", rcpts=[rcpt])
    relayd.wait_for(r"to=<c@remote\.example> .*status=deferred")
    listed = qctl("--json", "queue", "list")
    messages = json.loads(listed.stdout).get("messages", []) if listed.returncode == 0 else []
    check("queue list --json: the three deferred messages with their recipients",
          sorted(m["pending"][0] for m in messages) == ["a@remote.example", "b@remote.example", "c@remote.example"],
          listed.stdout + listed.stderr)
    ids = {m["pending"][0]: m["id"] for m in messages}
    p = qctl("queue", "show", ids.get("a@remote.example", "x"))
    check("queue show: envelope and headers", p.returncode == 0 and "to: <a@remote.example> P" in p.stdout,
          p.stdout + p.stderr)
    p = qctl("queue", "delete", ids.get("b@remote.example", "x"))
    check("queue delete removes one", p.returncode == 0 and ids.get("b@remote.example", "x") not in relayd.queued(),
          p.stdout + p.stderr)
    p = qctl("queue", "bounce", ids.get("c@remote.example", "x"))
    check("queue bounce gives one up and queues the bounce", p.returncode == 0 and "status=bounced" in p.stdout,
          p.stdout + p.stderr)
    sink.restart(soft_reject=())
    p = qctl("queue", "flush")
    check("queue flush makes the rest due now", p.returncode == 0 and "due now" in p.stdout, p.stdout + p.stderr)
    check("and they go out (the message and the bounce)", sink.wait_count(2, 20) == 2, relayd.log()[-1500:])
    p = qctl("queue", "show", "../../etc/passwd")
    check("a queue id with a path in it is refused", p.returncode == 1 and "not a queue id" in p.stderr,
          p.stdout + p.stderr)
    p = qctl("reload", "relayd")
    check("reload relayd reloads the relay client", p.returncode == 0 and relayd.wait_for(r"reloaded "),
          p.stdout + p.stderr)
p = subprocess.run([CTL, "--relayd-socket", os.path.join(sockets, "none.sock"), "queue", "list"],
                   capture_output=True, text=True, timeout=10)
check("no relay client: exit 69 naming relayguard-relayd",
      p.returncode == 69 and "relayguard-relayd" in p.stderr, p.stderr)
finish()
