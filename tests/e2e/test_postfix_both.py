#!/usr/bin/python3
"""Both front ends on one Postfix, as contrib/postfix/main.cf.snippet sets
them up (policy service at RCPT for the relay decision, milter for the
rest): one engine, one state, and no message counted twice."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

CONFIG = """
[ip_groups]
trusted = ["127.0.0.10/32"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["trusted"]
[limits.message_rate]
max = 3
[limits.unknown_recipients]
max = 2
block_time = "1h"
"""

with Relayguard(CONFIG) as rg:
    PF = free_port()
    with PostfixInstance(port=PF, milter=rg.milter, policy=rg.policy, policy_at=("rcpt",)):
        def msg(source, rcpts):
            return send_message("127.0.0.1", PF, source=source, sender="s@example.org", rcpts=rcpts)
        ok = [msg("127.0.0.4", ["user1@example.test"]).delivered for _ in range(3)]
        check("both front ends: 3 messages accepted with a limit of 3 (none counted twice)", all(ok), ok)
        r = msg("127.0.0.4", ["user1@example.test"])
        check("both front ends: the 4th refused", not r.delivered and r.mail.code == 450, r.summary())
        r = msg("127.0.0.10", ["victim@foreign.example"])
        check("both front ends: the policy service's OK lets a trusted client relay", r.delivered, r.summary())
        r = msg("127.0.0.2", ["victim@foreign.example"])
        check("both front ends: an unknown client may not relay", r.rcpt("victim@foreign.example").code == 554,
              r.summary())
        # The milter sees Postfix's own refusals and blocks; the policy
        # service, which never sees them, honours the same block.
        s = SmtpSession("127.0.0.1", PF, source="127.0.0.6")
        s.ehlo("harvester.example")
        s.mail("s@example.org")
        s.rcpt("guess1@example.test")
        s.rcpt("guess2@example.test")
        c = s.rcpt("user1@example.test")
        check("both front ends: a harvest block set through the milter refuses valid recipients", c.code == 450, c)
        s.close()
    check("relayguard is still running", rg.alive())
finish()
