#!/usr/bin/python3
"""One message is counted once, whatever stages Postfix asks relayguard at.

Admins wire relayguard as the README says (milter plus the policy service at
RCPT), as postfwd and policyd-rate-limit document it (the policy service at
RCPT and at END-OF-MESSAGE), or both at once. With a limit of 3 messages an
hour, a client gets exactly 3 messages through in every wiring and with both
counting rules: two of them in one SMTP session (two transactions), each with
two recipients (the policy service is asked twice per message), and the 4th
is refused."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

RCPTS = ["user1@example.test", "user2@example.test"]

# (name, milter, policy stages)
WIRINGS = [
    ("milter only", True, ()),
    ("policy at RCPT", False, ("rcpt",)),
    ("policy at RCPT and END-OF-MESSAGE", False, ("rcpt", "eom")),
    ("milter + policy at RCPT (the README's wiring)", True, ("rcpt",)),
    ("milter + policy at RCPT and END-OF-MESSAGE", True, ("rcpt", "eom")),
]


def two_in_one_session(port, source):
    """Two whole transactions in one SMTP session; answers the two final replies."""
    finals = []
    with SmtpSession("127.0.0.1", port, source=source) as s:
        s.ehlo("client.example.test")
        for n in range(2):
            m = s.mail("s@example.org")
            if m.code != 250:
                finals.append(m)
                s.rset()
                continue
            ok = [s.rcpt(r).code == 250 for r in RCPTS]
            if not any(ok):
                finals.append("no recipient accepted")
                s.rset()
                continue
            finals.append(s.data(f"Subject: message {n}\r\n\r\nbody {n}\r\n"))
        s.quit()
    return finals


def sent_count(pf, want, timeout=10.0):
    """Recipients Postfix logged as delivered, once `want` are there or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        n = len(re.findall(r"status=sent", pf.maillog()))
        if n >= want or time.monotonic() > deadline:
            time.sleep(0.3)  # a 7th would show up now
            return len(re.findall(r"status=sent", pf.maillog()))
        time.sleep(0.1)


source_octet = 20
for count in ("accepted", "attempts"):
    config = f"""
[relay]
local_domains = ["example.test"]
[limits.message_rate]
max = 3
count = "{count}"
"""
    with Relayguard(config) as rg:
        for name, milter, stages in WIRINGS:
            source_octet += 1
            source = f"127.0.0.{source_octet}"
            port = free_port()
            with PostfixInstance(port=port, milter=rg.milter if milter else None,
                                 policy=rg.policy if stages else None, policy_at=stages) as pf:
                label = f"{name}, count={count}"
                finals = two_in_one_session(port, source)
                check(f"{label}: two messages in one session accepted",
                      all(getattr(f, "code", 0) == 250 for f in finals), finals)
                r = send_message("127.0.0.1", port, source=source, sender="s@example.org", rcpts=RCPTS)
                check(f"{label}: the 3rd message accepted (none counted twice)", r.delivered, r.summary())
                r = send_message("127.0.0.1", port, source=source, sender="s@example.org", rcpts=RCPTS)
                refused = [x for x in [r.mail] + [rr for _, rr in r.rcpts] if x is not None and x.code == 450]
                check(f"{label}: the 4th refused with 450 by the rate limit",
                      not r.delivered and refused and "4.7.1" in str(refused[0]), r.summary())
                check(f"{label}: Postfix passed on exactly the 3 accepted messages (6 recipients)",
                      sent_count(pf, 6) == 6, pf.maillog()[-1500:])
        check(f"count={count}: relayguard is still running", rg.alive())
finish()
