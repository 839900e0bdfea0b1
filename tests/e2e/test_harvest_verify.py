#!/usr/bin/python3
"""No false harvest blocks: a gateway whose backend is down answers valid
users with 450 4.1.1 (reject_unverified_recipient); those are not guesses at
mailboxes, so they never block the sender. Real unknown users (550 5.1.1)
still do.

A private Postfix relays backend.test to a backend that is not there (a
closed loopback port) and checks its recipients with
reject_unverified_recipient; example.test is its own domain, with Postfix's
550 5.1.1 for unknown users. relayguard is its milter and sees both kinds
of refusal through SMFIP_RCPT_REJ."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

BLOCK_AT = 5
CONFIG = f"""
[relay]
local_domains = ["example.test", "backend.test"]
[limits.unknown_recipients]
max = {BLOCK_AT}
block_time = "1h"
"""

dead_backend = free_port()  # nothing listens here: the backend is down
with Relayguard(CONFIG) as rg:
    PF = free_port()
    extra = {
        "relay_domains": "backend.test",
        "relay_transport": f"smtp:[127.0.0.1]:{dead_backend}",
        "address_verify_poll_count": "1",  # answer at once, do not wait for the probe
        "smtp_connect_timeout": "2s",
    }
    with PostfixInstance(port=PF, milter=rg.milter, extra_main_cf=extra,
                         recipient_restrictions="check_recipient_access inline:{ backend.test=reject_unverified_recipient }") as pf:
        with SmtpSession("127.0.0.1", PF, source="127.0.0.31") as s:
            s.ehlo("gateway-client.example")
            s.mail("s@example.org")
            replies = [s.rcpt(f"staff{i}@backend.test") for i in range(20)]
            codes = [(r.code, r.enhanced) for r in replies]
            check("Postfix answers 450 4.1.1 for 20 recipients of the unreachable backend",
                  codes == [(450, "4.1.1")] * 20, [str(r) for r in replies[:3]])
            r = s.rcpt("user1@example.test")
            check("after 20 temporary 4.1.1 refusals a valid recipient is still accepted", r.code == 250, r)
            d = s.data("Subject: during the backend outage\r\n\r\nhello\r\n")
            check("and the message is taken", d.code == 250, d)
            s.quit()
        with SmtpSession("127.0.0.1", PF, source="127.0.0.31") as s:
            check("a new connection from the sender is not blocked", s.greeting.code == 220, s.greeting)
            s.ehlo("gateway-client.example")
            m = s.mail("s@example.org")
            r = s.rcpt("user1@example.test")
            check("and its valid recipient is accepted", m.code == 250 and r.code == 250, (m, r))
            s.quit()
        check("relayguard set no harvest block for temporary refusals",
              "rule=unknown_recipients" not in rg.log(), rg.log()[-1500:])

        # Real unknown users: Postfix's 550 5.1.1 still counts.
        with SmtpSession("127.0.0.1", PF, source="127.0.0.31") as s:
            s.ehlo("harvester.example")
            s.mail("s@example.org")
            guesses = [s.rcpt(f"nobody{i}@example.test") for i in range(BLOCK_AT)]
            check(f"Postfix refuses {BLOCK_AT} unknown local users with 550 5.1.1",
                  [(g.code, g.enhanced) for g in guesses] == [(550, "5.1.1")] * BLOCK_AT, [str(g) for g in guesses])
            r = s.rcpt("user1@example.test")
            check(f"after {BLOCK_AT} permanent 5.1.1 refusals the client is blocked: a valid recipient gets 450 4.7.1",
                  r.code == 450 and r.enhanced == "4.7.1", r)
            s.close()
        check("the block is in relayguard's security log",
              rg.wait_for(r"rule=unknown_recipients"), rg.log()[-1500:])
    check("relayguard is still running", rg.alive())
finish()
