#!/usr/bin/python3
"""Alerts from the policy daemon, end to end: a private Postfix with relayguard as its
milter (counters in a real Redis) refuses a client that guesses recipients, and the alert
travels by SMTP into the relay client (relayguard-relayd), out of its queue and into an
smtp-sink that stands for the admin's mailbox. Then: a client over its message rate,
the same client refused again (no second alert), more clients than max_per_hour (held
back, counted in the next alert), and Redis killed (the store_lost alert, never capped)."""

import email
import email.policy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

LOCAL = "user1@example.test"


def alerts(sink):
    out = []
    for m in sink.messages():
        msg = email.message_from_bytes(m["data"], policy=email.policy.default)
        out.append({"sender": m["sender"], "recipients": m["recipients"], "subject": str(msg["Subject"]),
                    "from": str(msg["From"]), "auto": msg["Auto-Submitted"], "body": msg.get_content()})
    return out


def wait_alerts(sink, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sink.count() >= n:
            break
        time.sleep(0.1)
    return alerts(sink)


def harvest(port, source):
    s = SmtpSession("127.0.0.1", port, source=source, closed_ok=True)
    s.ehlo("harvester.example")
    s.mail("s@example.org")
    codes = [s.rcpt(f"guess{i}@example.test").code for i in range(3)]
    last = s.rcpt(LOCAL)
    s.close()
    return codes, last


with SmtpSink() as mailbox, RedisServer() as redis:
    with Relayd(f'route = "smarthost"\nsmarthosts = ["{mailbox.address}"]\nretry_interval = "1s"\n') as relayd:
        config = f"""
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.message_rate]
max = 2
[limits.unknown_recipients]
max = 3
[alerts]
recipients = ["postmaster@example.test", "oncall@example.test"]
sender = "relayguard@mx.example.test"
submit = "{relayd.address}"
max_per_hour = 3
per_client_interval = "1h"
""" + store_config("single", [redis.address], fail_mode="tempfail")
        with Relayguard(config) as rg, PostfixInstance(port=free_port(), milter=rg.milter) as pf:
            codes, last = harvest(pf.port, "127.0.0.21")
            check("the harvesting client is blocked after 3 unknown recipients",
                  codes == [550, 550, 550] and last.code == 450, (codes, last))
            got = wait_alerts(mailbox, 1)
            check("an alert mail reaches the admin's mailbox through the relay client", len(got) == 1,
                  rg.log()[-2000:] + relayd.log()[-1500:])
            a = got[0] if got else {}
            check("from the configured sender to both recipients",
                  a.get("sender") == "relayguard@mx.example.test"
                  and sorted(a.get("recipients", [])) == ["oncall@example.test", "postmaster@example.test"], a)
            check("its subject names the event and the client",
                  a.get("subject", "").startswith("[relayguard] harvest_block: 127.0.0.21 on "), a.get("subject"))
            check("its body says what happened in words and as key=value",
                  "the client 127.0.0.21 was blocked for trying unknown recipients" in a.get("body", "")
                  and "event=harvest_block client=127.0.0.21" in a.get("body", "")
                  and "rule=unknown_recipients" in a.get("body", "") and 'reply="450 4.7.1' in a.get("body", ""),
                  a.get("body"))
            check("it is marked Auto-Submitted: auto-generated", a.get("auto") == "auto-generated", a)
            check("the daemon logged the hand-over",
                  rg.wait_for(r"alert: harvest_block sent to 2 recipient\(s\) via 127\.0\.0\.1:\d+ \(250"),
                  rg.log()[-1500:])

            # The same client again: refused, but the admin already knows.
            r = send_message("127.0.0.1", pf.port, source="127.0.0.21", sender="s@example.org", rcpts=[LOCAL])
            check("the blocked client is still refused", not r.delivered, r.summary())

            # Message rate: the third message from 127.0.0.22 is refused.
            sent = [send_message("127.0.0.1", pf.port, source="127.0.0.22", sender="s@example.org",
                                 rcpts=[LOCAL]).delivered for _ in range(3)]
            check("a client over its message rate is refused", sent == [True, True, False], sent)
            got = wait_alerts(mailbox, 2)
            check("a rate_limit alert follows",
                  len(got) == 2 and got[1]["subject"].startswith("[relayguard] rate_limit: 127.0.0.22")
                  and "rule=message_rate" in got[1]["body"], [g["subject"] for g in got])

            # A third client uses up max_per_hour = 3; the fourth and fifth are held back.
            for source in ("127.0.0.23", "127.0.0.24", "127.0.0.25"):
                harvest(pf.port, source)
            time.sleep(2)
            got = alerts(mailbox)
            subjects = [g["subject"] for g in got]
            check("at most 3 alerts about clients in the hour: 127.0.0.23 told, .24 and .25 held back",
                  len(got) == 3 and "127.0.0.23" in subjects[2], subjects)
            check("the repeated refusal of 127.0.0.21 raised no second alert",
                  sum("127.0.0.21" in s for s in subjects) == 1, subjects)

            # Redis lost: told at once, whatever the hourly cap, with the count held back.
            redis.kill()
            r = send_message("127.0.0.1", pf.port, source="127.0.0.26", sender="s@example.org", rcpts=[LOCAL])
            check("with Redis gone the daemon tempfails (fail_mode = tempfail)",
                  not r.delivered and any(x is not None and x.code == 451 for x in [r.mail] + [rr for _, rr in r.rcpts]),
                  r.summary())
            got = wait_alerts(mailbox, 4)
            lost = [g for g in got if "store_lost" in g["subject"]]
            check("a store_lost alert reaches the admin", len(lost) == 1 and "unreachable" in lost[0]["subject"],
                  [g["subject"] for g in got])
            check("it tells how many client alerts were held back",
                  lost and "2 more alert(s) were held back" in lost[0]["body"], lost and lost[0]["body"])
            redis.restart()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if send_message("127.0.0.1", pf.port, source="127.0.0.27", sender="s@example.org",
                                rcpts=[LOCAL]).delivered:
                    break
                time.sleep(0.5)
            got = wait_alerts(mailbox, 5)
            check("and one when it is back",
                  any("store_lost" in g["subject"] and g["subject"].find(" back ") > 0 for g in got),
                  [g["subject"] for g in got])
finish()
