#!/usr/bin/python3
"""contrib/postfix/main.cf.snippet exactly as shipped (only its ports changed to the
test's): applied to a private Postfix, it lets relayguard decide relay and limits, and
with relayguard stopped it never opens the relay: every recipient gets a 4xx, so clients
keep their mail and retry."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.snippet import read_main_cf  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

SNIPPET = os.path.join(os.environ["RELAYGUARD_SOURCE_DIR"], "contrib/postfix/main.cf.snippet")


CONFIG = """
[ip_groups]
office = ["127.0.0.71/32"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["office"]
[limits]
exempt_group = ""
[limits.message_rate]
max = 2
"""

rg = Relayguard(CONFIG)
cf = read_main_cf(SNIPPET, rg.milter_port, rg.policy_port)
check("the snippet sets the milter, its default action and the policy service",
      cf.get("milter_default_action") == "tempfail" and "check_policy_service" in cf.get("smtpd_relay_restrictions", "")
      and cf.get("smtpd_milters") == rg.milter, cf)
with rg, PostfixInstance(port=free_port(), extra_main_cf=cf,
                         relay_restrictions=cf["smtpd_relay_restrictions"]) as pf:
    def msg(source, rcpt):
        return send_message("127.0.0.1", pf.port, source=source, sender="s@example.org", rcpts=[rcpt])
    r = msg("127.0.0.71", "friend@foreign.example")
    check("the trusted office relays", r.delivered, r.summary())
    r = msg("127.0.0.72", "friend@foreign.example")
    check("anyone else may not relay (554 5.7.1)", r.rcpts and r.rcpts[0][1].code == 554, r.summary())
    sent = [msg("127.0.0.73", "user1@example.test").delivered for _ in range(3)]
    check("the message rate (2) holds, counted once though both front ends see the mail",
          sent == [True, True, False], sent)
    r = msg("127.0.0.74", "nobody@example.test")
    check("Postfix itself refuses unknown local users (reject_unlisted_recipient)",
          r.rcpts and r.rcpts[0][1].code == 550, r.summary())

    rg.stop()
    r = msg("127.0.0.72", "friend@foreign.example")
    check("relayguard down: relaying is NOT opened (4xx, the client keeps the mail)",
          not r.delivered and any(x is not None and 400 <= x.code < 500
                                  for x in [r.greeting, r.mail] + [rr for _, rr in r.rcpts]), r.summary())
    r = msg("127.0.0.71", "user1@example.test")
    check("and local mail is deferred, not lost (4xx)", not r.delivered and any(
        x is not None and 400 <= x.code < 500 for x in [r.greeting, r.mail, r.data] + [rr for _, rr in r.rcpts]),
          r.summary())
finish()
