#!/usr/bin/python3
"""Failed logins from two more places, through real servers:

- Two MTA nodes sharing Redis: Dovecot reports to node A; 5 wrong passwords
  by SMTP AUTH through node A's Postfix block the address at connect on
  node A and on node B, whose Postfix never saw a failure; Dovecot refuses
  it at AUTH; another address still logs in and relays on both nodes.
- The MTA's log, for set-ups without Dovecot's auth policy (Cyrus SASL):
  relayguard follows Postfix's maillog; 5 wrong passwords logged by Postfix
  as "SASL PLAIN authentication failed" block the address at connect.
  Hostile lines in a followed log (another program, a forged address inside
  a user name, an overlong line) count nothing."""

import base64
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.pop3 import pop3_login  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

SECRET = "Basic " + base64.b64encode(b"dovecot:rgtest-sources").decode()

BASE = """
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.auth_failures]
max = 5
"""


def send(pf, source, auth=None):
    return send_message("127.0.0.1", pf.port, source=source, sender="u1@example.test", rcpts=["friend@foreign.example"],
                        auth=auth)


def refused_at_connect(r):
    first = r.ehlo if r.ehlo is not None and r.ehlo.code != 250 else r.mail
    return not r.delivered and first is not None and first.code == 450 and "failed logins" in str(first)


# -- two nodes sharing Redis ---------------------------------------------
policy_port = free_port()
with RedisServer() as redis:
    store = store_config("single", [redis.address])
    dovecot_events = (f'[auth_events]\ndovecot_policy = "127.0.0.1:{policy_port}"\n'
                      f'dovecot_api_header = "Authorization: {SECRET}"\n')
    dovecot_conf = (f"auth_policy_server_url = http://127.0.0.1:{policy_port}/\n"
                    f"auth_policy_server_api_header = Authorization: {SECRET}\n"
                    "auth_policy_hash_nonce = rgtest-two-nodes\n")
    with Relayguard(BASE + store + dovecot_events) as rg_a, Relayguard(BASE + store) as rg_b, \
            DovecotInstance(pop3_port=free_port(), auth_port=free_port(), users={"u1": "secret1"},
                            extra_conf=dovecot_conf) as dov, \
            PostfixInstance(port=free_port(), milter=rg_a.milter, sasl_path=dov.sasl_path) as pf_a, \
            PostfixInstance(port=free_port(), milter=rg_b.milter, sasl_path=dov.sasl_path) as pf_b:
        r = send(pf_b, "127.0.0.61", auth=("u1", "secret1"))
        check("two nodes: u1 relays through node B before anything happened", r.delivered, r.summary())
        for i in range(5):
            r = send(pf_a, "127.0.0.61", auth=("u1", f"wrong{i}"))
            check(f"two nodes: wrong password {i + 1} through node A is refused (535)",
                  r.auth is not None and r.auth.code == 535, r.summary())
        check("two nodes: node A set the block",
              rg_a.wait_for(r"refused client=127\.0\.0\.61 rule=auth_failures stage=auth"), rg_a.log()[-1200:])
        r = send(pf_a, "127.0.0.61")
        check("two nodes: 127.0.0.61 is refused at connect on node A", refused_at_connect(r), r.summary())
        deadline = time.monotonic() + 3
        r = send(pf_b, "127.0.0.61")
        while not refused_at_connect(r) and time.monotonic() < deadline:
            time.sleep(0.2)
            r = send(pf_b, "127.0.0.61")
        check("two nodes: and on node B, which never saw a failure", refused_at_connect(r), r.summary())
        check("two nodes: node B logs it as its own refusal at connect",
              len(rg_b.refusals(rule="auth_failures", client="127.0.0.61", stage="connect")) >= 1, rg_b.log()[-1200:])
        check("two nodes: Dovecot refuses 127.0.0.61 at its next login",
              not pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.61"))
        check("two nodes: a correct login from 127.0.0.62 works",
              pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.62"))
        for name, pf in (("A", pf_a), ("B", pf_b)):
            r = send(pf, "127.0.0.62", auth=("u1", "secret1"))
            check(f"two nodes: and 127.0.0.62 relays with AUTH through node {name}", r.delivered, r.summary())

# -- Postfix's log as the source ------------------------------------------
hostile_dir = tempfile.mkdtemp(prefix="rgtest-authlog-")
hostile = os.path.join(hostile_dir, "hostile.log")
open(hostile, "w").close()
with DovecotInstance(pop3_port=free_port(), auth_port=free_port(), users={"u1": "secret1"}) as dov:
    # Postfix decides relay itself here (permit_sasl_authenticated); the
    # milter, added once relayguard runs, refuses blocked clients at connect.
    with PostfixInstance(port=free_port(), sasl_path=dov.sasl_path) as pf:
        maillog = pf.path("maillog")
        config = BASE + f'[auth_events]\nlog_files = ["{maillog}", "{hostile}"]\n'
        with Relayguard(config) as rg:
            pf.postconf("smtpd_milters", rg.milter)
            pf.reload()
            check("log source: relayguard follows the two files",
                  rg.wait_for(r"auth-events: following 2 log file\(s\) for failed SMTP AUTH"), rg.log()[-800:])
            time.sleep(0.5)  # the followers start at the end of each file
            for i in range(4):
                r = send(pf, "127.0.0.71", auth=("u1", f"wrong{i}"))
                check(f"log source: wrong password {i + 1} refused by Postfix (535)",
                      r.auth is not None and r.auth.code == 535, r.summary())
            check("log source: Postfix logged the failures the default pattern reads",
                  "warning: unknown[127.0.0.71]: SASL PLAIN authentication failed" in pf.maillog(), pf.maillog()[-800:])
            check("log source: each one counted",
                  rg.wait_for(r'(?s)(auth-failure client=127\.0\.0\.71 user="[^"]*" protocol="smtp" counted=yes via=log.*){4}'),
                  rg.log()[-1500:])
            r = send(pf, "127.0.0.71")
            check("log source: after 4 failures 127.0.0.71 may still connect", not refused_at_connect(r), r.summary())
            send(pf, "127.0.0.71", auth=("u1", "wrong5"))
            check("log source: the 5th blocks it",
                  rg.wait_for(r"refused client=127\.0\.0\.71 rule=auth_failures stage=auth .*via=log"), rg.log()[-1500:])
            r = send(pf, "127.0.0.71")
            check("log source: 127.0.0.71 is refused at connect", refused_at_connect(r), r.summary())
            r = send(pf, "127.0.0.72", auth=("u1", "secret1"))
            check("log source: u1 still relays from 127.0.0.72", r.delivered, r.summary())

            with open(hostile, "a") as f:
                f.write("Dec  4 08:00:00 mx evil: postfix/smtpd[1]: warning: unknown[127.0.0.80]: "
                        "SASL LOGIN authentication failed: x\n")
                f.write("Dec  4 08:00:00 mx postfix/smtpd[1]: warning: unknown[127.0.0.81]: "
                        "SASL LOGIN authentication succeeded: x, sasl_username=warning: unknown[127.0.0.82]: "
                        "SASL LOGIN authentication failed: y\n")
                f.write("Dec  4 08:00:00 mx postfix/smtpd[1]: warning: unknown[127.0.0.83]: SASL LOGIN "
                        "authentication failed: " + "A" * 20000 + "\n")
                f.write("Dec  4 08:00:00 mx postfix/smtpd[1]: warning: unknown[127.0.0.84]: SASL LOGIN "
                        "authentication failed: UGFzc3dvcmQ6, sasl_username=bob\n")
            check("log source: a well-formed line after the hostile ones counts, with its user",
                  rg.wait_for(r'auth-failure client=127\.0\.0\.84 user="bob" protocol="smtp" counted=yes via=log'),
                  rg.log()[-1500:])
            log = rg.log()
            check("log source: another program, a forged line inside a user name and an overlong line count nothing",
                  all(f"auth-failure client=127.0.0.{n} " not in log for n in (80, 81, 82, 83)), log[-1500:])
shutil.rmtree(hostile_dir, ignore_errors=True)

sys.exit(finish())
