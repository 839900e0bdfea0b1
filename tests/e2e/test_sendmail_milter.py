#!/usr/bin/python3
"""The milter through Sendmail (Debian's sendmail-bin unpacked, not
installed): relay control and the message rate limit, with Sendmail's own
relay check off so that relayguard decides."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Sendmail, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

CONFIG = """
[ip_groups]
trusted = ["127.0.0.10/32"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["trusted"]
[limits.message_rate]
max = 2
"""

with Relayguard(CONFIG) as rg:
    port = free_port()
    with Sendmail(port=port, milter=rg.sendmail_milter):
        def msg(source, rcpts):
            return send_message("127.0.0.1", port, source=source, sender="sender@example.test", rcpts=rcpts)
        r = msg("127.0.0.2", ["user1@example.test", "victim@foreign.example"])
        c = r.rcpt("victim@foreign.example")
        check("sendmail: relay refused for an unknown client with 554 5.7.1",
              c.code == 554 and c.enhanced == "5.7.1" and "Relay access denied" in c.text, c)
        check("sendmail: the local recipient is accepted", r.delivered, r.summary())
        r = msg("127.0.0.10", ["victim@foreign.example"])
        check("sendmail: a trusted group may relay", r.delivered, r.summary())
        ok = [msg("127.0.0.4", ["user1@example.test"]).delivered for _ in range(2)]
        check("sendmail: 2 messages accepted (limit 2)", all(ok), ok)
        r = msg("127.0.0.4", ["user1@example.test"])
        check("sendmail: the 3rd refused at MAIL FROM with 450 4.7.1",
              r.mail is not None and r.mail.code == 450 and r.mail.enhanced == "4.7.1", r.summary())
        check("sendmail: refusals are in the security log", bool(rg.refusals(client="127.0.0.4", rule="message_rate")))
    check("relayguard is still running", rg.alive())
finish()
