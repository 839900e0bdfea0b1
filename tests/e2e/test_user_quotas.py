#!/usr/bin/python3
"""Per-account sending quotas through a real Postfix whose SMTP AUTH goes
through a real Dovecot: u1 over its hourly quota is refused with the quota's
reply, from any address, while u2 is not; a larger quota for u1 in the
overrides file applies after `relayguardctl reload`; a broken overrides file
is refused by the reload, naming its line, and the running quotas stay.
Once through the milter, once through the policy service alone."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

work = tempfile.mkdtemp(prefix="rgtest-quota-")
ADMIN = os.path.join(work, "admin.sock")
OVERRIDES = os.path.join(work, "quotas")


def ctl(*args):
    return subprocess.run([os.environ["RELAYGUARDCTL"], "--socket", ADMIN, *args], capture_output=True, text=True,
                          timeout=10)


def send(pf, user, source="127.0.0.90", rcpts=1):
    return send_message("127.0.0.1", pf.port, source=source, sender=f"{user}@example.test",
                        rcpts=[f"friend{i}@foreign.example" for i in range(rcpts)], auth=(user, "pw-" + user))


def refused_by_quota(r, text):
    replies = ([r.mail] if r.mail is not None else []) + [reply for _, reply in r.rcpts]
    return not r.delivered and any(x.code == 450 and text in str(x) for x in replies)


CONFIG = f"""
[relay]
local_domains = ["example.test"]
[limits.user_quotas]
messages_per_hour = 3
overrides_file = "{OVERRIDES}"
"""

for front_end in ("milter", "policy"):
    with open(OVERRIDES, "w") as f:
        f.write("# no overrides yet\n")
    with Relayguard(CONFIG, admin=ADMIN, milter=(front_end == "milter")) as rg, \
            DovecotInstance(pop3_port=free_port(), auth_port=free_port(),
                            users={"u1": "pw-u1", "u2": "pw-u2"}) as dov, \
            PostfixInstance(port=free_port(), sasl_path=dov.sasl_path,
                            **({"milter": rg.milter} if front_end == "milter"
                               else {"policy": rg.policy, "policy_at": ("rcpt",)})) as pf:
        sent = [send(pf, "u1", source=f"127.0.0.{91 + i}").delivered for i in range(3)]
        check(f"{front_end}: u1 sends 3 messages, from three addresses", all(sent), sent)
        r = send(pf, "u1")
        check(f"{front_end}: the 4th is refused with the quota's reply, naming the quota",
              refused_by_quota(r, "Sending quota exceeded: 3 messages per hour"), r.summary())
        check(f"{front_end}: the security log names the account and the quota",
              len(rg.refusals(rule="user_quota")) >= 1 and "user=u1 quota=messages_per_hour count=3 limit=3" in rg.log(),
              rg.log()[-1200:])
        r = send(pf, "u2")
        check(f"{front_end}: u2 is unaffected", r.delivered, r.summary())

        with open(OVERRIDES, "w") as f:
            f.write("u1 messages_per_hour=5\n")
        p = ctl("reload")
        check(f"{front_end}: relayguardctl reload takes the new overrides file", p.returncode == 0, p.stdout + p.stderr)
        sent = [send(pf, "u1").delivered for _ in range(2)]
        check(f"{front_end}: u1 now sends 2 more (5 an hour)", all(sent), sent)
        r = send(pf, "u1")
        check(f"{front_end}: and the 6th is refused, naming the new quota",
              refused_by_quota(r, "Sending quota exceeded: 5 messages per hour"), r.summary())

        with open(OVERRIDES, "w") as f:
            f.write("u1 messages_per_hour=5\nu2 messages_per_hour=many\n")
        p = ctl("reload")
        check(f"{front_end}: a broken overrides file is refused by the reload, naming its line",
              p.returncode != 0 and f"{OVERRIDES}:2" in p.stdout + p.stderr, p.stdout + p.stderr)
        r = send(pf, "u1")
        check(f"{front_end}: and the running quotas stay", refused_by_quota(r, "5 messages per hour"), r.summary())

subprocess.run(["rm", "-rf", work])
sys.exit(finish())
