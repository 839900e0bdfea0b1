#!/usr/bin/python3
"""The relay client through a smart host that takes OAuth2 tokens instead of passwords
(issue 22), with real servers: a private Postfix submission service whose Dovecot SASL
checks XOAUTH2 and OAUTHBEARER tokens against a local identity provider (rgtest.idp:
HTTPS token and device endpoints, rotating refresh tokens, revocation).

- No token yet: the mail waits, `queue list` says why, one alert.
- `relayguardctl oauth login` as an admin runs it: the code printed, approved at the
  provider, the tokens stored; `oauth status` shows them; the mail goes out (OAUTHBEARER).
- An access token past its end is renewed before use: no failed delivery.
- A rotated refresh token survives kill -9 of relayd right after the rotation.
- A revoked refresh token defers the mail with one alert, the provider asked once, the
  reason in `queue list`, a metric; a new login ends it.
- XOAUTH2 where only it is offered; a smart host offering only PLAIN defers with a reason;
  one offering OAUTHBEARER without STARTTLS never sees the token.
- A hostile token endpoint (huge, bad JSON, missing fields, slow drip, HTML) defers with a
  clear line and never crashes relayd.
- No token ever reaches a log line."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.idp import IdentityProvider  # noqa: E402
from rgtest.relayd import FAST, Relayd, smarthosts, wait  # noqa: E402
from rgtest.smarthost import deliveries, sasl_logins, smarthost_postfix, smarthost_settings, wait_delivered  # noqa: E402
from rgtest.tls import make_test_cert  # noqa: E402

CTL = os.environ["RELAYGUARDCTL"]
ACCOUNT = "relay@example.test"
LIFETIME = 6  # seconds an access token lives at the provider


def ctl(relayd, *args, timeout=30):
    return subprocess.run([CTL, "--relayd-socket", relayd.admin_socket, *args], capture_output=True, text=True,
                          timeout=timeout)


def oauth_settings(idp, store, cert, extra="", smarthost_ca=None):
    # The smart hosts' certificate is the test one: the token goes only where it checks out.
    return (f'auth = "oauth2"\nusername = "{ACCOUNT}"\ntls_ca_file = "{smarthost_ca or cert}"\n' + FAST +
            f'[delivery.oauth2]\ntoken_endpoint = "{idp.token_url}"\ndevice_endpoint = "{idp.device_url}"\n'
            f'client_id = "{idp.client_id}"\nscope = "smtp"\ntoken_store = "{store}"\nca_file = "{cert}"\n'
            f'refresh_margin = "1s"\ntimeout = "2s"\n{extra}')


def login(relayd, idp):
    """What an admin does: run the login, read the code, approve it at the provider."""
    p = subprocess.Popen([CTL, "--relayd-socket", relayd.admin_socket, "oauth", "login"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    shown = ""
    code = None
    deadline = time.monotonic() + 20
    while code is None and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        shown += line
        m = re.search(r"enter the code (\S+) ", line)
        if m:
            code = m.group(1)
    approved = code is not None and idp.approve(code, ACCOUNT)
    out, err = p.communicate(timeout=30)
    return p.returncode, shown + out, err, approved


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^([a-z_]+) ([0-9.e+]+)$", text, re.M)}


def delivered_to(sh, rcpt):
    return sum(1 for d in deliveries(sh) if d["to"] == rcpt)


def send(relayd, rcpt):
    return send_message("127.0.0.1", relayd.port, sender="app@example.test", rcpts=[rcpt])


tmp = tempfile.mkdtemp(prefix="rgtest-oauth-")
cert, key = make_test_cert(tmp, common_name="idp.test")
logs = []  # every relayd log, checked for tokens at the end

with IdentityProvider(cert, key, access_lifetime=LIFETIME, rotate=True) as idp, \
        DovecotInstance(pop3_port=free_port(), auth_port=free_port(), extra_conf=idp.dovecot_conf(tmp)) as dv, \
        smarthost_postfix(dv, cert, key, free_port()) as sh:
    store = os.path.join(tmp, "tokens.json")
    mport = free_port()
    # (the metrics line goes into [delivery], before the [delivery.oauth2] table)
    settings = smarthosts(f"127.0.0.1:{sh.port}") + f'metrics = "127.0.0.1:{mport}"\n' + oauth_settings(idp, store, cert)
    relayd = Relayd(settings)
    relayd.start()
    try:
        # --- no token yet ---
        r = send(relayd, "user1@example.test")
        check("the relay client queues the mail while it has no token", r.delivered, r.summary())
        check("and defers it: no refresh token, the login named",
              relayd.wait_for(r"status=deferred \(.*OAuth2: no refresh token in \S+ yet: run relayguardctl oauth login"),
              relayd.log()[-1500:])
        listed = ctl(relayd, "queue", "list")
        check("queue list shows the reason under the message",
              listed.returncode == 0 and "(127.0.0.1" in listed.stdout and "run relayguardctl oauth login" in listed.stdout,
              listed.stdout + listed.stderr)
        time.sleep(3)  # more attempts
        check("one alert for the outage, not one per attempt",
              len(re.findall(r"error: alert: oauth2", relayd.log())) == 1, relayd.log()[-2000:])

        # --- the device login, as an admin runs it ---
        rc, out, err, approved = login(relayd, idp)
        check("oauth login prints where to go and the code", "To authorise relayguard-relayd to send as "
              f"{ACCOUNT}, open https://127.0.0.1:{idp.https_port}/activate and enter the code" in out, out + err)
        check("the code is approved at the provider", approved, out)
        check("oauth login waits for the approval and says the tokens are stored",
              rc == 0 and f"Authorised: relayguard-relayd holds tokens for {ACCOUNT}" in out, (rc, out, err))
        st = oauth = ctl(relayd, "oauth", "status")
        check("oauth status shows the account, scope, token expiry, last use, and that it works",
              st.returncode == 0 and f"account: {ACCOUNT}" in st.stdout and "scope: smtp" in st.stdout and
              re.search(r"access token: expires .* \(in \d+ s\)", st.stdout) and
              re.search(r"refresh token: last used .* \(\d+ s ago\)", st.stdout) and "state: working" in st.stdout,
              st.stdout + st.stderr)
        stored = json.load(open(store))
        check("the token store is 0600 and holds a refresh token the provider knows",
              oct(os.stat(store).st_mode & 0o777) == "0o600" and stored["refresh_token"] in idp.valid_refresh_tokens(),
              (oct(os.stat(store).st_mode), stored.keys()))
        ctl(relayd, "queue", "flush")
        check("the waiting mail goes out through the smart host", wait_delivered(sh, 1, 20) >= 1, relayd.log()[-1500:])
        logins = sasl_logins(sh)
        check("authenticated with OAUTHBEARER as the mailbox", logins and logins[-1][1:] == ("OAUTHBEARER", ACCOUNT),
              logins)
        check("the end of the outage is said", relayd.wait_for(r"alert over: oauth2"), relayd.log()[-1500:])

        # --- an access token past its end: renewed before use, no failed delivery ---
        refreshes = idp.grants("refresh_token")
        time.sleep(LIFETIME)
        deferred_before = relayd.log().count("status=deferred")
        r = send(relayd, "user2@example.test")
        # Counted by recipient: a count of messages would also be met by a duplicate of the first.
        check("after the access token's end, the next mail goes out at the first attempt",
              r.delivered and wait(lambda: delivered_to(sh, "user2@example.test") >= 1, 20) and
              relayd.log().count("status=deferred") == deferred_before,
              relayd.log()[-1500:])
        check("the first mail reached the smart host once", delivered_to(sh, "user1@example.test") == 1,
              f"{delivered_to(sh, 'user1@example.test')} deliveries; " + sh.maillog()[-2500:])
        check("the relay client asked for one new token", idp.grants("refresh_token") == refreshes + 1,
              f"{idp.grants('refresh_token')} refresh grants, {refreshes} before")

        # --- rotation survives kill -9 right after it ---
        time.sleep(LIFETIME)
        mark = len(relayd.log())
        send(relayd, "user1@example.test")
        rotated = relayd.wait_for(r"the refresh token was rotated and the new one stored", 15)
        relayd.kill()
        logs.append(relayd.log())
        check("the refresh token was rotated", rotated, relayd.log()[mark:])
        stored = json.load(open(store))
        check("after kill -9, the store holds the rotated refresh token, the only one the provider still takes",
              idp.valid_refresh_tokens() == {stored["refresh_token"]}, (stored.get("account"),))
        relayd.start()
        time.sleep(LIFETIME)
        delivered = wait_delivered(sh, 3, 1)
        r = send(relayd, "user2@example.test")
        check("restarted, the relay client renews with the rotated token and delivers",
              r.delivered and wait_delivered(sh, delivered + 1, 20) >= delivered + 1, relayd.log()[-2000:])

        # --- a revoked refresh token ---
        # A session authenticated before the revocation may still carry mail until it has
        # been idle 10 s (the relay client's session cache, as Postfix's): wait it out.
        time.sleep(11)
        idp.revoke()
        asked = idp.grants("refresh_token")
        mark = len(relayd.log())
        r = send(relayd, "user1@example.test")
        check("with the refresh token revoked, the mail is taken and deferred, naming invalid_grant",
              r.delivered and relayd.wait_for(r"status=deferred \(.*invalid_grant .*run relayguardctl oauth login"),
              relayd.log()[mark:])
        time.sleep(4)  # several more attempts
        tail = relayd.log()[mark:]
        check("one alert for the outage", len(re.findall(r"error: alert: oauth2", tail)) == 1, tail[-2000:])
        check("the provider is asked once, not at every attempt", idp.grants("refresh_token") == asked + 1,
              idp.grants("refresh_token") - asked)
        check("the mail stays queued", len(relayd.queued()) == 1, relayd.queued())
        listed = ctl(relayd, "queue", "list")
        check("queue list gives invalid_grant as the reason", "invalid_grant" in listed.stdout, listed.stdout)
        st = ctl(relayd, "oauth", "status")
        check("oauth status says an admin is needed", "state: needs an admin: " in st.stdout, st.stdout)
        check("the metrics show the outage", scrape(mport).get("relayguard_oauth_outage") == 1)
        metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        check("relayguard_oauth_token_requests_total{result=\"failed\"} counts it",
              re.search(r'relayguard_oauth_token_requests_total\{result="failed"\} [1-9]', metrics_text), metrics_text[-800:])
        idp.access_lifetime = 60  # from here on: tokens that outlive the waits below
        rc, out, err, approved = login(relayd, idp)
        check("a new login ends it", rc == 0 and approved, out + err)
        ctl(relayd, "queue", "flush")
        check("and the deferred mail goes out", wait(lambda: not relayd.queued(), 20), relayd.log()[-1500:])
        check("the metrics show the outage over", scrape(mport).get("relayguard_oauth_outage") == 0)

        # --- the smart host refuses a token the relay client still thinks good (535) ---
        time.sleep(11)  # no session authenticated before is left to reuse; the token is still good
        idp.expire_access_tokens()  # ...by the relay client's reckoning, not the provider's
        mark = len(relayd.log())
        delivered = wait_delivered(sh, 1, 0.1)
        send(relayd, "user2@example.test")
        check("a token the smart host refuses defers the mail with its 535, never bounces it",
              relayd.wait_for(r"status=deferred \(.*AUTH: 535 ", 15), relayd.log()[mark:][-1500:])
        check("and raises one alert", relayd.wait_for(r"error: alert: smart host 127\.0\.0\.1:\d+ refused the OAuth2 "
                                                      r"token for relay@example\.test: 535 "), relayd.log()[mark:])
        check("the next attempt gets a new token and delivers", wait(lambda: not relayd.queued(), 20) and
              wait_delivered(sh, delivered + 1, 10) >= delivered + 1, relayd.log()[mark:][-1500:])
        check("which ends that alert", relayd.wait_for(r"alert over: smart host .* takes the OAuth2 token"))
        check("counted in relayguard_oauth_auth_refused_total", scrape(mport).get("relayguard_oauth_auth_refused_total") == 1)
    finally:
        relayd.stop()
        logs.append(relayd.log())

    # --- OAUTHBEARER offered without STARTTLS (stripped on the way): the token never sent ---
    with smarthost_postfix(dv, cert, key, free_port(), myhostname="plain.test",
                           extra_main_cf={"smtpd_tls_security_level": "none", "smtpd_tls_auth_only": "no"}) as bare:
        store_bare = os.path.join(tmp, "tokens-bare.json")
        idp.write_store(store_bare, ACCOUNT, idp.issue_refresh_token(ACCOUNT))
        asked = len(idp.requests)
        with Relayd(smarthosts(f"127.0.0.1:{bare.port}") + oauth_settings(idp, store_bare, cert)) as relayd:
            send(relayd, "user1@example.test")
            check("a smart host offering OAUTHBEARER without STARTTLS gets no token: deferred, saying why",
                  relayd.wait_for(r"status=deferred \(.*not encrypted \(STARTTLS not offered\); the OAuth2 token not "
                                  r"sent: a token is sent over TLS only\)"), relayd.log()[-1500:])
            check("one alert for it", relayd.wait_for(r"error: alert: no encrypted session with smart host"))
            time.sleep(2)
            check("the smart host saw no authentication at all",
                  not re.search(r"sasl_method|authentication failed|auth=[1-9]", bare.maillog()) and not sasl_logins(bare),
                  bare.maillog()[-1500:])
            check("nor was the token endpoint asked for a token to withhold", len(idp.requests) == asked)
            logs.append(relayd.log())

    # --- a smart host whose certificate does not check out: no token ---
    other_cert, _ = make_test_cert(os.path.join(tmp, "other"), common_name="other.test")
    store_v = os.path.join(tmp, "tokens-verify.json")
    idp.write_store(store_v, ACCOUNT, idp.issue_refresh_token(ACCOUNT))
    asked = len(idp.requests)
    with Relayd(smarthosts(f"127.0.0.1:{sh.port}") + oauth_settings(idp, store_v, cert, smarthost_ca=other_cert)) as relayd:
        send(relayd, "user1@example.test")
        check("a smart host whose certificate does not check out (a man in the middle) gets no token: deferred",
              relayd.wait_for(r"status=deferred \(.*not encrypted \(STARTTLS failed: .*certificate.*\); the OAuth2 token "
                              r"not sent"), relayd.log()[-1500:])
        check("and no token was even fetched for it", len(idp.requests) == asked)
        logs.append(relayd.log())

    # --- a smart host that refuses every token: no new token at every attempt ---
    with DovecotInstance(pop3_port=free_port(), auth_port=free_port(),
                         extra_conf=idp.dovecot_conf(tmp, introspect_url=f"http://127.0.0.1:{free_port()}/x")) as dv4, \
            smarthost_postfix(dv4, cert, key, free_port()) as sh4:
        store4 = os.path.join(tmp, "tokens-refusing.json")
        idp.write_store(store4, ACCOUNT, idp.issue_refresh_token(ACCOUNT))
        asked = idp.grants("refresh_token")
        with Relayd(smarthosts(f"127.0.0.1:{sh4.port}") + oauth_settings(idp, store4, cert)) as relayd:
            send(relayd, "user1@example.test")
            check("a smart host refusing every token defers the mail with its reply",
                  relayd.wait_for(r"status=deferred \(.*AUTH: (454|535) ", 15), relayd.log()[-1500:])
            time.sleep(5)  # several more attempts
            check("the relay client does not fetch a new token at every attempt",
                  idp.grants("refresh_token") - asked == 1 and relayd.log().count("status=deferred") >= 3,
                  (idp.grants("refresh_token") - asked, relayd.log().count("status=deferred")))
            logs.append(relayd.log())

    # --- a token endpoint that cannot be reached ---
    store_d = os.path.join(tmp, "tokens-down.json")
    idp.write_store(store_d, ACCOUNT, idp.issue_refresh_token(ACCOUNT))
    down = oauth_settings(idp, store_d, cert).replace(idp.token_url, f"https://127.0.0.1:{free_port()}/token")
    with Relayd(smarthosts(f"127.0.0.1:{sh.port}") + down) as relayd:
        send(relayd, "user1@example.test")
        check("a token endpoint that cannot be reached defers the mail, saying so",
              relayd.wait_for(r"status=deferred \(.*OAuth2: token endpoint 127\.0\.0\.1:\d+: .*(refused|connect)", 20),
              relayd.log()[-1500:])
        check("with one alert", relayd.wait_for(r"error: alert: oauth2: .*mail is deferred and the endpoint asked again"))
        logs.append(relayd.log())

    # --- a hostile token endpoint ---
    for how, said in [("huge", "the answer is larger than 64 KiB"),
                      ("bad_json", "but the answer is not valid JSON"),
                      ("missing_fields", "but the answer has neither an access token nor an error"),
                      ("slow_drip", "no complete answer within 2 s"),
                      ("html", r'but the answer is not JSON \(Content-Type "text/html"\)')]:
        store_h = os.path.join(tmp, f"tokens-{how}.json")
        idp.write_store(store_h, ACCOUNT, idp.issue_refresh_token(ACCOUNT))
        idp.hostile = how
        with Relayd(smarthosts(f"127.0.0.1:{sh.port}") + oauth_settings(idp, store_h, cert)) as relayd:
            started = time.monotonic()
            send(relayd, "user1@example.test")
            check(f"a token endpoint answering {how}: the mail deferred with a clear line",
                  relayd.wait_for(r"status=deferred \(.*OAuth2: token endpoint 127\.0\.0\.1:\d+:? .*" + said, 20),
                  relayd.log()[-1500:])
            check(f"({how}) relayd keeps running and answers its admin",
                  relayd.alive() and ctl(relayd, "oauth", "status").returncode == 0)
            if how == "slow_drip":
                check("the slow drip is cut off at the timeout, not waited out", time.monotonic() - started < 15)
            logs.append(relayd.log())
        idp.hostile = None

    # --- XOAUTH2 where only it is offered ---
    with DovecotInstance(pop3_port=free_port(), auth_port=free_port(),
                         extra_conf=idp.dovecot_conf(tmp, "xoauth2")) as dv2, \
            smarthost_postfix(dv2, cert, key, free_port()) as sh2:
        store2 = os.path.join(tmp, "tokens-xoauth2.json")
        idp.write_store(store2, ACCOUNT, idp.issue_refresh_token(ACCOUNT))
        with Relayd(smarthosts(f"127.0.0.1:{sh2.port}") + oauth_settings(idp, store2, cert)) as relayd:
            send(relayd, "user1@example.test")
            check("a smart host offering only XOAUTH2 gets XOAUTH2", wait_delivered(sh2, 1, 20) == 1 and
                  sasl_logins(sh2)[-1][1:] == ("XOAUTH2", ACCOUNT), (relayd.log()[-1500:], sasl_logins(sh2)))
            logs.append(relayd.log())

    # --- a smart host offering only PLAIN over TLS ---
    with DovecotInstance(pop3_port=free_port(), auth_port=free_port()) as dv3, \
            smarthost_postfix(dv3, cert, key, free_port()) as sh3:
        store3 = os.path.join(tmp, "tokens-plain.json")
        idp.write_store(store3, ACCOUNT, idp.issue_refresh_token(ACCOUNT))
        with Relayd(smarthosts(f"127.0.0.1:{sh3.port}") + oauth_settings(idp, store3, cert)) as relayd:
            send(relayd, "user1@example.test")
            check("auth = oauth2 against a server offering only PLAIN defers, saying so",
                  relayd.wait_for(r"status=deferred \(.*AUTH: the server offers neither XOAUTH2 nor OAUTHBEARER "
                                  r"\(AUTH LOGIN PLAIN\)"), relayd.log()[-1500:])
            check("and the mail stays queued", len(relayd.queued()) == 1)
            logs.append(relayd.log())

leaked = [t for t in idp.issued if any(t in log for log in logs)]
check("no token the provider issued appears in any relayd log", not leaked and len(idp.issued) > 5,
      f"{len(leaked)} of {len(idp.issued)} tokens logged")
finish()
