#!/usr/bin/python3
"""Stolen and guessed passwords through real servers: a private Dovecot
whose auth policy client (auth_policy_server_url) talks to relayguard, and a
private Postfix whose SMTP AUTH goes through that Dovecot (Dovecot SASL)
and whose milter is relayguard.

- 5 wrong passwords by SMTP AUTH from one address block it: refused at
  connect by the milter, and refused by Dovecot at its next login (a POP3
  login with the right password); a login from another address still works;
  relayguardctl shows and lifts the block.
- Kerio's rule: a trusted-group client relays on its address; after a failed
  AUTH it may not, in that session and in the next, until the window ends.
- A successful POP3 login opens the POP-before-SMTP window (no login hook).
- Hostile requests (no secret, bad JSON, oversized, a forged login name)
  change nothing and are logged."""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.pop3 import pop3_login  # noqa: E402
from rgtest.smtp import SmtpSession  # noqa: E402

SECRET = "Basic " + base64.b64encode(b"dovecot:rgtest-policy-secret").decode()
POLICY_PORT = free_port()
METRICS_PORT = free_port()
WINDOW = 6  # relay.auth_failure_window, seconds
admin_dir = tempfile.mkdtemp(prefix="rgtest-auth-")
ADMIN = os.path.join(admin_dir, "admin.sock")

CONFIG = f"""
[ip_groups]
office = ["127.0.0.20/32"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["office"]
allow_pop_before_smtp = true
pop_window = "1m"
auth_failure_window = "{WINDOW}s"
[limits]
exempt_group = ""
[limits.auth_failures]
max = 5
block_time = "1h"
[auth_events]
dovecot_policy = "127.0.0.1:{POLICY_PORT}"
dovecot_api_header = "Authorization: {SECRET}"
"""

# The shipped snippet, with this test's port and secret.
with open(os.path.join(os.environ["RELAYGUARD_SOURCE_DIR"], "contrib/dovecot/relayguard-auth-policy.conf")) as f:
    DOVECOT_POLICY = (f.read().replace("127.0.0.1:10036", f"127.0.0.1:{POLICY_PORT}")
                      .replace("Basic ZG92ZWNvdDpjaGFuZ2UtbWU=", SECRET))


def ctl(*args):
    return subprocess.run([os.environ["RELAYGUARDCTL"], "--socket", ADMIN, *args], capture_output=True, text=True,
                          timeout=10)


def post(command, body, header=SECRET):
    req = urllib.request.Request(f"http://127.0.0.1:{POLICY_PORT}/?command={command}", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    if header is not None:
        req.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def relay(port, source, auth=None):
    return send_message("127.0.0.1", port, source=source, sender="u1@example.test", rcpts=["friend@foreign.example"],
                        auth=auth)


def auth_then_relay(port, source, password):
    """AUTH with `password`, then try to relay in the same session: what an
    intruder on a trusted host does after a failed guess."""
    s = SmtpSession("127.0.0.1", port, source=source)
    try:
        s.ehlo()
        a = s.auth_plain("u1", password)
        m = s.mail("u1@example.test")
        r = s.rcpt("friend@foreign.example")
        s.quit()
        return a, m, r
    finally:
        s.close()


try:
    with Relayguard(CONFIG, admin=ADMIN, listen_extra=f'metrics = "127.0.0.1:{METRICS_PORT}"') as rg, \
            DovecotInstance(pop3_port=free_port(), auth_port=free_port(), users={"u1": "secret1", "u2": "secret2"},
                            extra_conf=DOVECOT_POLICY) as dov, \
            PostfixInstance(port=free_port(), milter=rg.milter, sasl_path=dov.sasl_path) as pf:
        check("relayguard says it serves Dovecot's auth policy",
              rg.wait_for(rf"auth-events: Dovecot's auth policy requests on 127\.0\.0\.1:{POLICY_PORT}"), rg.log()[-800:])

        # -- brute force -------------------------------------------------
        r = relay(pf.port, "127.0.0.30", auth=("u1", "secret1"))
        check("u1 with its password relays through Postfix + Dovecot SASL", r.delivered, r.summary())
        for i in range(4):
            r = relay(pf.port, "127.0.0.31", auth=("u1", f"guess{i}"))
            check(f"wrong password {i + 1} from 127.0.0.31 is refused by Dovecot (535)",
                  r.auth is not None and r.auth.code == 535, r.summary())
        check("each failure reached relayguard through Dovecot's report",
              rg.wait_for(r'(?s)(auth-failure client=127\.0\.0\.31 user="u1" protocol="smtp".*){4}'), rg.log()[-1500:])
        r = relay(pf.port, "127.0.0.31")
        check("after 4 failures 127.0.0.31 may still connect", r.greeting is not None and r.greeting.code == 220,
              r.summary())
        r = relay(pf.port, "127.0.0.31", auth=("u2", "guess4"))
        check("the 5th wrong password is refused too", r.auth is not None and r.auth.code == 535, r.summary())
        check("and blocks 127.0.0.31: a security-log refusal fail2ban can read",
              rg.wait_for(r"refused client=127\.0\.0\.31 rule=auth_failures stage=auth verdict=tempfail "
                          r'reply="450 4\.7\.1 Client blocked: too many failed logins; try again later" via=dovecot '
                          r'detail="failed_logins=5 limit=5 blocked_for=3600s"'), rg.log()[-1500:])
        r = relay(pf.port, "127.0.0.31")
        blocked_reply = r.ehlo if r.ehlo is not None and r.ehlo.code != 250 else r.mail
        check("127.0.0.31 is now refused by the milter with 450 4.7.1",
              not r.delivered and blocked_reply is not None and blocked_reply.code == 450
              and "failed logins" in str(blocked_reply), r.summary())
        check("logged as a refusal at connect", len(rg.refusals(rule="auth_failures", client="127.0.0.31",
                                                                stage="connect")) >= 1, rg.log()[-1500:])
        check("Dovecot refuses 127.0.0.31 even the right password (asked before the login)",
              not pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.31"))
        check("relayguard answered Dovecot's question with a refusal",
              len(rg.refusals(rule="auth_failures", client="127.0.0.31", stage="login")) >= 1, rg.log()[-1500:])
        check("a correct login from another address still works",
              pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.32"))
        r = relay(pf.port, "127.0.0.32", auth=("u1", "secret1"))
        check("and u1 still relays by SMTP AUTH from there: the account is not locked", r.delivered, r.summary())

        p = ctl("ip", "show", "127.0.0.31")
        check("relayguardctl ip show names the block and its cause",
              p.returncode == 0 and "blocked (failed logins)" in p.stdout, p.stdout + p.stderr)
        p = ctl("--json", "ip", "show", "127.0.0.31")
        shown = json.loads(p.stdout) if p.returncode == 0 else {}
        check("its JSON gives the rule", (shown.get("blocked") or {}).get("rule") == "auth_failures", p.stdout)
        p = ctl("ip", "unblock", "127.0.0.31")
        check("relayguardctl ip unblock lifts it", p.returncode == 0 and "block lifted" in p.stdout, p.stdout + p.stderr)
        check("after the lift Dovecot lets 127.0.0.31 log in again",
              pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.31"))

        # -- one stale password is one failure ------------------------------
        for _ in range(8):
            pop3_login(dov.pop3_port, "u2", "old-password", "127.0.0.33")
        check("8 retries of one stale password count as one: 127.0.0.33 is not blocked",
              pop3_login(dov.pop3_port, "u2", "secret2", "127.0.0.33"))

        # -- Kerio's rule ------------------------------------------------
        r = relay(pf.port, "127.0.0.20")
        check("the trusted-group client 127.0.0.20 relays on its address", r.delivered, r.summary())
        a, m, rc = auth_then_relay(pf.port, "127.0.0.20", "wrong")
        check("it fails AUTH (535) ...", a.code == 535, (a, m, rc))
        check("... and may no longer relay in that session (554 5.7.1)", rc.code == 554, (a, m, rc))
        check("the refusal says why", len(rg.refusals(rule="relay", client="127.0.0.20")) >= 1
              and "failed AUTH disables trusted group office" in rg.log(), rg.log()[-1500:])
        r = relay(pf.port, "127.0.0.20")
        check("nor in its next session, within relay.auth_failure_window", not r.delivered
              and r.rcpts and r.rcpts[0][1].code == 554, r.summary())
        r = relay(pf.port, "127.0.0.20", auth=("u1", "secret1"))
        check("with a correct AUTH it relays as an SMTP-AUTH user", r.delivered, r.summary())
        r = relay(pf.port, "127.0.0.30")
        check("a client outside the group was never allowed to relay without AUTH",
              not r.delivered and r.rcpts and r.rcpts[0][1].code == 554, r.summary())
        p = ctl("ip", "show", "127.0.0.20")
        check("relayguardctl ip show says the group is barred", "trusted groups barred after a failed AUTH" in p.stdout,
              p.stdout + p.stderr)
        check("a trusted client is never blocked for failed logins",
              "not blocked" in p.stdout and "failed logins:      0" in p.stdout, p.stdout)
        time.sleep(WINDOW + 0.5)
        r = relay(pf.port, "127.0.0.20")
        check(f"{WINDOW} s later the group relays again", r.delivered, r.summary())

        # -- POP-before-SMTP without the hook ------------------------------
        r = relay(pf.port, "127.0.0.40")
        check("127.0.0.40 may not relay before a POP3 login", not r.delivered, r.summary())
        check("u2 logs in by POP3 from 127.0.0.40", pop3_login(dov.pop3_port, "u2", "secret2", "127.0.0.40"))
        check("Dovecot's report opened the window",
              rg.wait_for(r'pop-before-smtp window client=127\.0\.0\.40 user="u2" .*via=dovecot'), rg.log()[-1500:])
        r = relay(pf.port, "127.0.0.40")
        check("and 127.0.0.40 relays", r.delivered, r.summary())

        # -- metrics -------------------------------------------------------
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as m:
            metrics = m.read().decode()
        failures = re.search(r'relayguard_auth_reports_total\{via="dovecot",outcome="failure"\} (\d+)', metrics)
        check("the metrics count Dovecot's reported failures", failures and int(failures.group(1)) >= 6,
              [line for line in metrics.splitlines() if "auth" in line])
        check("and the blocks among the decisions",
              all(f'relayguard_decisions_total{{stage="{stage}",rule="auth_failures",verdict="tempfail"}}' in metrics
                  for stage in ("auth", "connect", "login")),
              [line for line in metrics.splitlines() if "auth_failures" in line])

        # -- hostile requests ----------------------------------------------
        before = rg.log()
        status, _ = post("report", b'{"remote":"127.0.0.50","login":"x","success":false}', header=None)
        check("a report without the secret header is refused with 401", status == 401, status)
        status, _ = post("report", b'{"remote":"127.0.0.50","login":"x","success":false}', header="Basic d3Jvbmc=")
        check("and with a wrong one", status == 401, status)
        check("the refusal is logged, without the secret",
              "request without the configured Authorization header refused" in rg.log()
              and SECRET not in rg.log(), rg.log()[len(before):][-800:])
        status, _ = post("report", b'{"remote": "127.0.0.50", "login": ')
        check("truncated JSON is answered 400", status == 400, status)
        status, _ = post("report", b'{"remote":"not-an-ip","login":"x","success":false}')
        check("a remote that is no address is answered 400", status == 400, status)
        status, _ = post("report", json.dumps({"remote": "127.0.0.50", "login": "a\nrefused client=9.9.9.9 rule=x",
                                               "success": False}).encode())
        check("a login with a line break (a forged log line) is answered 400", status == 400, status)
        status, _ = post("report", json.dumps({"remote": "127.0.0.50", "login": 'evil" client=9.9.9.9',
                                               "success": False}).encode())
        check("a login with a quote is counted with the quote escaped in the log",
              status == 200 and rg.wait_for(r'auth-failure client=127\.0\.0\.50 user="evil\\" client=9\.9\.9\.9"'),
              rg.log()[-800:])
        status, _ = post("report", b'{"remote":"127.0.0.50","login":"' + b"x" * 40000 + b'","success":false}')
        check("an oversized request is refused (413)", status == 413, status)
        status, _ = post("explode", b'{"remote":"127.0.0.50"}')
        check("an unknown command is answered 400", status == 400, status)
        p = ctl("ip", "show", "127.0.0.50")
        check("only the one well-formed report counted", "failed logins:      1 of 5" in p.stdout, p.stdout)
        check("relayguard is still serving", rg.alive() and ctl("ping").returncode == 0)
        status, body = post("allow", b'{"remote":"127.0.0.51","login":"u1","protocol":"imap"}')
        check("and answers a good request", status == 200 and json.loads(body).get("status") == 0, (status, body))
finally:
    import shutil
    shutil.rmtree(admin_dir, ignore_errors=True)

sys.exit(finish())
