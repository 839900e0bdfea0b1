#!/usr/bin/python3
"""Every rule of the engine through a real Postfix with relayguard attached as
a milter (smtpd_milters). Each check uses its own loopback source address as
its own client, so limits of one check never touch another."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import (ConnectionClosed, DovecotInstance, PostfixInstance, SmtpSession,  # noqa: E402
                    free_port, send_message)
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

CONFIG = """
[ip_groups]
trusted = ["127.0.0.10/32"]
exempt = ["127.0.0.20/32"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["trusted"]
[limits]
exempt_group = "exempt"
[limits.message_rate]
max = 3
[limits.connections]
max = 2
[limits.unknown_recipients]
max = 3
block_time = "4s"
[limits.recipients]
max = 3
[limits.failed_commands]
max = 5
[limits.message_size]
max = "4KB"
[limits.hops]
max = 5
"""

LOCAL = "user1@example.test"


def msg(source, rcpts, **kw):
    return send_message("127.0.0.1", PF, source=source, sender="sender@example.org", rcpts=rcpts, **kw)


def relay_control():
    r = msg("127.0.0.2", [LOCAL, "victim@foreign.example"])
    c = r.rcpt("victim@foreign.example")
    check("relay to a foreign domain refused for an unknown client: 554 5.7.1",
          c.code == 554 and c.enhanced == "5.7.1" and "Relay access denied" in c.text, c)
    check("the local recipient of the same message is accepted", r.rcpt(LOCAL).code == 250 and r.delivered, r.summary())
    check("the refusal is in the security log with client, rule and recipient",
          bool(rg.refusals(client="127.0.0.2", rule="relay", to="victim@foreign.example")))
    r = msg("127.0.0.10", ["victim@foreign.example"])
    check("a trusted group may relay", r.rcpt("victim@foreign.example").code == 250 and r.delivered, r.summary())
    r = msg("127.0.0.3", ["victim@foreign.example"], auth=("u1", "secret1"))
    check("an SMTP-AUTH user may relay", r.rcpt("victim@foreign.example").code == 250 and r.delivered, r.summary())
    r = msg("127.0.0.3", ["victim@foreign.example"])
    check("the same address without AUTH may not", r.rcpt("victim@foreign.example").code == 554, r.summary())
    r = msg("127.0.0.2", ["victim%foreign.example@example.test"])
    check("a percent-hack recipient through a local domain is relaying",
          r.rcpt("victim%foreign.example@example.test").code == 554, r.summary())


def message_rate():
    codes = [msg("127.0.0.4", [LOCAL]).delivered for _ in range(3)]
    check("3 messages within the hour accepted (limit 3)", all(codes), codes)
    r = msg("127.0.0.4", [LOCAL])
    check("the 4th refused at MAIL FROM with 450 4.7.1", r.mail.code == 450 and r.mail.enhanced == "4.7.1", r.summary())
    check("the rate refusal is logged with its count and limit",
          any("count=3 limit=3" in l for l in rg.refusals(client="127.0.0.4", rule="message_rate")))
    ok = [msg("127.0.0.20", [LOCAL]).delivered for _ in range(6)]
    check("the exempt group is never refused (6 messages, limit 3)", all(ok), ok)


def connections():
    held = [SmtpSession("127.0.0.1", PF, source="127.0.0.5") for _ in range(2)]
    for s in held:
        s.ehlo("held.example")
    third = SmtpSession("127.0.0.1", PF, source="127.0.0.5", closed_ok=True)
    # Postfix answers a milter's refusal at connect with its own 421 greeting
    # and closes; a later command would see the milter's own text.
    c = third.greeting
    if c.code == 220:
        c = third.ehlo("third.example")
    check("the 3rd concurrent connection from one IP is refused with 421 (limit 2)", c.code == 421,
          f"{c} greeting={third.greeting}")
    check("the connection refusal is logged with the count", any(
        "concurrent=3 limit=2" in l for l in rg.refusals(client="127.0.0.5", rule="connections")))
    third.close()
    time.sleep(0.3)
    held[0].quit()
    held[0].close()
    time.sleep(0.5)
    r = msg("127.0.0.5", [LOCAL])
    check("after one closes, a new connection is accepted", r.delivered, r.summary())
    for s in held[1:]:
        s.quit()
        s.close()


def harvest():
    s = SmtpSession("127.0.0.1", PF, source="127.0.0.6", closed_ok=True)
    s.ehlo("harvester.example")
    s.mail("s@example.org")
    codes = [s.rcpt(f"guess{i}@example.test").code for i in range(3)]
    check("Postfix itself refuses 3 unknown recipients with 550", codes == [550, 550, 550], codes)
    c = s.rcpt(LOCAL)
    check("after 3 distinct unknown recipients the client is blocked, valid recipients included: 450 4.7.1",
          c.code == 450 and c.enhanced == "4.7.1", c)
    s.close()
    r = msg("127.0.0.6", [LOCAL])
    check("the block holds on a new connection", not r.delivered, r.summary())
    time.sleep(4.5)
    r = msg("127.0.0.6", [LOCAL])
    check("after the block time the client is accepted again", r.delivered, r.summary())
    # One address retried is one guess, not many.
    s = SmtpSession("127.0.0.1", PF, source="127.0.0.16")
    s.ehlo("retry.example")
    s.mail("s@example.org")
    for _ in range(5):
        s.rcpt("typo@example.test")
    c = s.rcpt(LOCAL)
    check("one unknown address retried 5 times does not block", c.code == 250, c)
    s.close()


def recipients():
    r = msg("127.0.0.7", ["user1@example.test", "user2@example.test", "user1@example.test", "user2@example.test"])
    codes = [rep.code for _, rep in r.rcpts]
    check("recipients per message: 3 accepted, the 4th refused with 452 4.5.3",
          codes == [250, 250, 250, 452] and r.rcpts[3][1].enhanced == "4.5.3", r.summary())


def failed_commands():
    s = SmtpSession("127.0.0.1", PF, source="127.0.0.8", closed_ok=True)
    s.ehlo("failing.example")
    s.mail("s@example.org")
    codes = [s.rcpt(f"x{i}@foreign.example").code for i in range(5)]
    c = s.rcpt("x5@foreign.example")
    check("5 failed commands allowed, the 6th closes the session with 421", codes == [554] * 5 and c.code == 421,
          f"{codes} {c}")
    after = s.noop()
    check("the session is closed after the 421", after.code in (0, 421), after)
    s.close()


def message_size():
    s = SmtpSession("127.0.0.1", PF, source="127.0.0.9")
    s.ehlo("big.example")
    c = s.mail("s@example.org", size=5000)
    check("declared SIZE above the limit refused at MAIL FROM: 552 5.3.4", c.code == 552 and c.enhanced == "5.3.4", c)
    s.close()
    r = msg("127.0.0.9", [LOCAL], body="x" * 70 + "\r\n" + ("y" * 78 + "\r\n") * 60)
    check("an undeclared body above the limit refused at end of data: 552 5.3.4",
          r.data is not None and r.data.code == 552 and r.data.enhanced == "5.3.4", r.summary())
    r = msg("127.0.0.9", [LOCAL], body="small\r\n")
    check("a small message from the same client is accepted", r.delivered, r.summary())


def hops():
    headers = [("Received", f"from hop{i}.example by mx{i}.example; Sun, 22 Nov 2026 20:00:0{i} +0000")
               for i in range(6)]
    r = msg("127.0.0.11", [LOCAL], headers=headers)
    check("6 Received headers (limit 5) refused as a loop: 554 5.4.6",
          r.data is not None and r.data.code == 554 and r.data.enhanced == "5.4.6", r.summary())
    r = msg("127.0.0.11", [LOCAL], headers=headers[:5])
    check("5 Received headers accepted", r.delivered, r.summary())


with Relayguard(CONFIG) as rg:
    dv_pop, dv_auth, PF = free_port(), free_port(), free_port()
    with DovecotInstance(pop3_port=dv_pop, auth_port=dv_auth) as dv, \
            PostfixInstance(port=PF, milter=rg.milter, sasl_path=dv.sasl_path) as pf:
        for part in (relay_control, message_rate, connections, harvest, recipients, failed_commands,
                     message_size, hops):
            print(f"--- {part.__name__}")
            try:
                part()
            except Exception as e:  # a crashed check is a failed check, and the rest still run
                check(f"{part.__name__} ran without an exception", False, repr(e))
        check("relayguard is still running after every check", rg.alive())
finish()
