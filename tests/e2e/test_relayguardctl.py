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
from rgtest.relayd import Relayd, wait  # noqa: E402
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

        # A client at its message rate: ip show says when the count drops, ip reset lets it send.
        sent = [send_message("127.0.0.1", pf.port, source="127.0.0.45", sender="s@example.org", rcpts=[LOCAL])
                for _ in range(5)]
        r = send_message("127.0.0.1", pf.port, source="127.0.0.45", sender="s@example.org", rcpts=[LOCAL])
        check("a client sends 5 messages, its limit, and the 6th is refused (450)",
              all(x.delivered for x in sent) and not r.delivered and r.mail is not None and r.mail.code == 450,
              r.summary())
        shown = ctl_json(sock_b, "ip", "show", "127.0.0.45")
        left = shown.get("messages", {}).get("oldest_leaves_in_seconds")
        check("ip show --json: when its oldest message leaves the 3600 s window",
              isinstance(left, int) and 3500 < left <= 3600, shown)
        p = ctl(sock_b, "ip", "show", "127.0.0.45")
        check("for people: '5 of 5 in 3600 s, the oldest leaves the window in N s'",
              re.search(r"messages: +5 of 5 in 3600 s, the oldest leaves the window in (35\d\d|3600) s", p.stdout),
              p.stdout + p.stderr)
        p = ctl(sock_b, "ip", "reset", "127.0.0.45")
        check("ip reset on node B: exit 0, saying the counts start again",
              p.returncode == 0 and "start again from 0" in p.stdout, p.stdout + p.stderr)
        check("the security log records who reset it", b.wait_for(r"reset client=127\.0\.0\.45 by=admin"))
        r = send_message("127.0.0.1", pf.port, source="127.0.0.45", sender="s@example.org", rcpts=[LOCAL])
        check("and the client may send again through node A", r.delivered, r.summary())
        check("ip show after it: 1 message counted",
              ctl_json(sock_b, "ip", "show", "127.0.0.45").get("messages", {}).get("count") == 1)

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
    check("queue show: the recipient's state in words, and the last attempt's problem",
          p.returncode == 0 and "to: <a@remote.example>  to go\n" in p.stdout and "last attempt: " in p.stdout,
          p.stdout + p.stderr)
    head = p.stdout.split("\n\n", 1)[-1]
    check("queue show: the headers as text, no '?' for the line ends",
          "Subject: rgtest\n" in head and not re.search(r"\?$", head, re.M), head)
    p = qctl("queue", "show", "nosuchid")
    check("queue show of an id not in the queue says so (exit 1)",
          p.returncode == 1 and "no message nosuchid in the queue" in p.stderr, p.stdout + p.stderr)
    p = qctl("queue", "delete", "nosuchid")
    check("queue delete of an id not in the queue says so (exit 1)",
          p.returncode == 1 and "no message nosuchid in the queue" in p.stderr, p.stdout + p.stderr)
    gone = ids.get("b@remote.example", "x")
    p = qctl("queue", "delete", gone)
    check("queue delete removes one", p.returncode == 0 and gone not in relayd.queued(), p.stdout + p.stderr)
    check("and the relay client logs it with the queue id",
          relayd.wait_for(re.escape(gone) + r": removed \(queue delete by the administrator"), relayd.log()[-800:])
    bounced = ids.get("c@remote.example", "x")
    p = qctl("queue", "bounce", bounced)
    check("queue bounce gives one up and queues the bounce", p.returncode == 0 and "status=bounced" in p.stdout,
          p.stdout + p.stderr)
    check("and the relay client logs the bounced recipient, the report and the removal",
          relayd.wait_for(re.escape(bounced) + r": to=<c@remote\.example> status=bounced") and
          relayd.wait_for(re.escape(bounced) + r": sender notified: failure report \S+ to <s@example\.test>") and
          relayd.wait_for(re.escape(bounced) + r": removed \(queue bounce\)"), relayd.log()[-1200:])
    sink.restart(soft_reject=())
    p = qctl("queue", "flush")
    check("queue flush makes the rest due now", p.returncode == 0 and "due now" in p.stdout, p.stdout + p.stderr)
    check("and they go out (the message and the bounce)", sink.wait_count(2, 20) == 2, relayd.log()[-1500:])
    p = qctl("queue", "show", "../../etc/passwd")
    check("a queue id with a path in it is refused", p.returncode == 1 and "not a queue id" in p.stderr,
          p.stdout + p.stderr)
    p = qctl("reload", "relayd")
    check("reload relayd with nothing changed: exit 0, saying so",
          p.returncode == 0 and "configuration reloaded: nothing changed" in p.stdout and
          relayd.wait_for(r"reload: configuration \S+ applied: nothing changed"), p.stdout + p.stderr)
    with open(relayd.config) as f:
        text = f.read()
    with open(relayd.config, "w") as f:
        f.write(text.replace('retry_interval = "1h"', 'retry_interval = "30m"')
                .replace(f'listen = "inet:127.0.0.1:{relayd.port}"', f'listen = "inet:127.0.0.1:{relayd.port + 1}"'))
    p = qctl("--json", "reload", "relayd")
    answer = json.loads(p.stdout or "{}")
    check("a reload changing delivery.listen and retry_interval: exit 2, one applied, one needing a restart",
          p.returncode == 2 and answer.get("applied") == ["delivery.retry_interval"] and
          answer.get("needs_restart") == ["delivery.listen"], (p.returncode, p.stdout, p.stderr))
    check("the log says the same, not that the new listener is in effect",
          relayd.wait_for(r"NOT applied, needs a restart \(the running values stay\): delivery\.listen"),
          relayd.log()[-800:])
    r = send_message("127.0.0.1", relayd.port, sender="s@example.test", rcpts=["d@remote.example"])
    check("and relayd still takes mail on its old port", r.delivered, r.summary())
# A smart host down: its rest after the failure (an hour here) is ended by queue flush,
# as postqueue -f does, and the mail goes out once it is back.
down_port = free_port()
with Relayd(f'route = "smarthost"\nsmarthosts = ["127.0.0.1:{down_port}"]\nretry_interval = "1h"\n'
            'connect_timeout = "2s"\n') as relayd:
    def qctl(*args):
        return subprocess.run([CTL, "--relayd-socket", relayd.admin_socket, *args], capture_output=True, text=True,
                              timeout=10)
    send_message("127.0.0.1", relayd.port, sender="s@example.test", rcpts=["e@remote.example"])
    check("a smart host that refuses connections: the destination rests",
          relayd.wait_for(r"destination smarthost unreachable .*resting until it is due again in 3600 s"),
          relayd.log()[-800:])
    with SmtpSink(port=down_port) as sink:
        p = qctl("queue", "flush")
        check("queue flush says the message is due and the smart host's rest is ended",
              p.returncode == 0 and "1 message(s) due now" in p.stdout and
              "smarthost: its rest after failures" in p.stdout and "is ended" in p.stdout, p.stdout + p.stderr)
        check("and the mail goes out at once, not after the hour", sink.wait_count(1, 15) == 1, relayd.log()[-1200:])
        check("the relay client logs the flush's end of the rest",
              relayd.wait_for(r"queue flush: the rest of destination smarthost is ended by the administrator"))
        # The same with the command postqueue -f's users reach for: relayd's own CLI,
        # a process apart from the running relayd.
        sink.stop()
        send_message("127.0.0.1", relayd.port, sender="s@example.test", rcpts=["f@remote.example"])
        check("down again: the destination rests again",
              wait(lambda: relayd.log().count("resting until it is due again in 3600 s") >= 2), relayd.log()[-800:])
        sink.start()
        p = relayd.queue("flush")
        check("relayguard-relayd queue flush ends that rest too",
              p.returncode == 0 and "smarthost: its rest after failures" in p.stdout, p.stdout + p.stderr)
        check("and the running relayd delivers at once", sink.wait_count(2, 15) == 2, relayd.log()[-1200:])
p = subprocess.run([CTL, "--relayd-socket", os.path.join(sockets, "none.sock"), "queue", "list"],
                   capture_output=True, text=True, timeout=10)
check("no relay client: exit 69 naming relayguard-relayd",
      p.returncode == 69 and "relayguard-relayd" in p.stderr, p.stderr)
finish()
