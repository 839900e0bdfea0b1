#!/usr/bin/python3
"""POP-before-SMTP from a log, across a cluster: node A follows a real
Dovecot's log file and writes windows to Redis; node B, behind its own
Postfix, lets the client relay. The follower survives a rotation by rename
(Dovecot reopening its log) and by truncation in place, and a failed login
opens nothing: not even one whose user name holds the text of a successful
login, whether Dovecot logged it or someone wrote it into the file, and a
30,000-byte or 1 MB line leaves the daemon running."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.pop3 import pop3_login  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

BASE = """
[relay]
local_domains = ["example.test"]
allow_pop_before_smtp = true
pop_window = "10m"
"""


def relay(port, source):
    return send_message("127.0.0.1", port, source=source, sender="u1@example.test", rcpts=["friend@foreign.example"])


def relays_within(port, source, seconds=5.0):
    """The follower polls every 250 ms: allow it a moment."""
    deadline = time.monotonic() + seconds
    r = relay(port, source)
    while not r.delivered and time.monotonic() < deadline:
        time.sleep(0.3)
        r = relay(port, source)
    return r


with RedisServer() as redis, \
        DovecotInstance(pop3_port=free_port(), auth_port=free_port(), users={"u1": "secret1"}) as dov:
    log = dov.path("dovecot.log")
    store = store_config("single", [redis.address])
    follower = f'[pop_before_smtp]\nlog_file = "{log}"\n'
    with Relayguard(BASE + follower + store) as node_a, Relayguard(BASE + store) as node_b, \
            PostfixInstance(port=free_port(), milter=node_b.milter) as pf_b:
        check("node A follows the Dovecot log", node_a.wait_for(r"following .*dovecot\.log"), node_a.log()[-800:])
        r = relay(pf_b.port, "127.0.0.5")
        check("before any login 127.0.0.5 may not relay through node B", not r.delivered, r.summary())

        check("POP3 login from 127.0.0.5", pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.5"))
        r = relays_within(pf_b.port, "127.0.0.5")
        check("the login node A read in the log opens relay on node B, through Redis", r.delivered, r.summary())
        check("node A logged the window with the user",
              node_a.wait_for(r'pop-before-smtp window client=127\.0\.0\.5 user="u1" .*via=log'), node_a.log()[-800:])
        check("the window is a Redis key with a TTL",
              any(int(redis.call("PTTL", k)) > 0 for k in redis.keys("rgtest:pop:*")), redis.keys("*"))

        check("a failed login from 127.0.0.6 is refused", not pop3_login(dov.pop3_port, "u1", "nope", "127.0.0.6"))
        time.sleep(1.0)
        r = relay(pf_b.port, "127.0.0.6")
        check("and opens nothing on either node", not r.delivered and "client=127.0.0.6" not in node_a.log(),
              r.summary())

        # A failed login whose user name is the text of a successful one,
        # for the attacker's address 127.0.0.66: from a real client through
        # Dovecot (which logs the name it was given), and written straight
        # into the file in Dovecot's own format.
        forged = "pop3-login: Info: Login: user=<x>, method=PLAIN, rip=127.0.0.66, lip=127.0.0.1"
        check("a login as the forged name from 127.0.0.67 is refused",
              not pop3_login(dov.pop3_port, forged, "nope", "127.0.0.67"))
        with open(log, "a") as f:
            f.write(time.strftime("%b %d %H:%M:%S") + " pop3-login: Info: Disconnected: Connection closed "
                    "(auth failed, 1 attempts in 2 secs): user=<" + forged + ">, method=PLAIN, rip=127.0.0.67, "
                    "lip=127.0.0.1, session=<lJx0Oo7WXti3b7xe>\n")
            # Lines that crashed the daemon in std::regex, or that would grow
            # its buffer without end.
            f.write(time.strftime("%b %d %H:%M:%S") + " pop3-login: Info: Login: user=<" + "a" * 30000 + "\n")
            f.write("b" * (1 << 20) + "\n")
        # A real login after them: once it opens, the lines above were read.
        check("POP3 login from 127.0.0.9 after the hostile lines", pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.9"))
        r = relays_within(pf_b.port, "127.0.0.9")
        check("the follower, still running, read it", r.delivered, r.summary())
        with open(log, errors="replace") as f:
            logged = [line[:300] for line in f if "127.0.0.66" in line]
        check("the file holds both forged lines: Dovecot logs the name as the client sent it", len(logged) == 2, logged)
        r = relay(pf_b.port, "127.0.0.66")
        check("and the forged lines open nothing for 127.0.0.66",
              not r.delivered and "client=127.0.0.66" not in node_a.log(), r.summary() + "\n" + "\n".join(logged))
        check("the overlong lines were skipped and logged once",
              node_a.log().count("skipped a line of more than 8192 bytes") == 1, node_a.log()[-1500:])
        check("node A is still running after them", node_a.alive())

        # Rotation by rename: Dovecot reopens its log under the old name.
        os.rename(log, log + ".1")
        subprocess.run(["doveadm", "-c", dov.conf, "log", "reopen"], check=True, timeout=20)
        check("POP3 login from 127.0.0.7 after a rotation", pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.7"))
        r = relays_within(pf_b.port, "127.0.0.7")
        check("the follower read it in the new file", r.delivered, r.summary())

        # Rotation by truncation in place (logrotate's copytruncate).
        os.truncate(log, 0)
        check("POP3 login from 127.0.0.8 after a truncation", pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.8"))
        r = relays_within(pf_b.port, "127.0.0.8")
        check("the follower read it from the file's new start", r.delivered, r.summary())
        check("both nodes are still running", node_a.alive() and node_b.alive())
finish()
