#!/usr/bin/python3
"""Smoke test of the rgtest fixtures themselves (no relayguard involved).

Starts each real server once and checks the behaviour later tests rely on:
Postfix's default restrictions, Dovecot SASL and POP3 logins, dnsmasq answers,
Sendmail acceptance and its fail-closed milter setting, and clean teardown.
Run as root: /usr/bin/python3 tests/e2e/test_fixture_smoke.py  (exit 0 = all passed)
"""

import os
import poplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import (ConnectionClosed, DovecotInstance, Dnsmasq, PostfixInstance,  # noqa: E402
                    Sendmail, SmtpSession, free_port, port_in_use, send_message)
from rgtest.fixtures import _alive  # noqa: E402

failures = []


def check(what, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f"  [{detail}]" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def postfix_and_dovecot():
    dv_pop3, dv_auth, pf_port = free_port(), free_port(), free_port()
    hook = 'echo "user=$USER ip=$IP" >> "$RG_POSTLOGIN_LOG"'
    with DovecotInstance(pop3_port=dv_pop3, auth_port=dv_auth, postlogin_script=hook) as dv, \
            PostfixInstance(port=pf_port, sasl_path=dv.sasl_path) as pf:
        print(f"     dovecot started in {dv.start_seconds:.2f}s, postfix in {pf.start_seconds:.2f}s")
        relay = pf.restrictions()[0]
        check("default relay list = reject_unlisted_recipient, permit_sasl_authenticated, "
              "reject_unauth_destination", relay == "reject_unlisted_recipient, "
              "permit_sasl_authenticated, reject_unauth_destination", relay)

        r = send_message("127.0.0.1", pf_port, source="127.0.0.2", sender="s@example.org",
                         rcpts=["user1@example.test", "nosuchuser@example.test", "x@foreign.test"])
        c = r.rcpt("user1@example.test")
        check("local user accepted (250 2.1.5)", c.code == 250 and c.enhanced == "2.1.5", c)
        c = r.rcpt("nosuchuser@example.test")
        check("unknown local user refused (550 5.1.1)", c.code == 550 and c.enhanced == "5.1.1", c)
        c = r.rcpt("x@foreign.test")
        check("unauthenticated relay refused by Postfix (554 5.7.1)",
              c.code == 554 and c.enhanced == "5.7.1" and "Relay access denied" in c.text, c)
        check("message accepted after DATA (250)", r.delivered, r.data)

        with SmtpSession("127.0.0.1", pf_port, source="127.0.0.3") as s:
            s.ehlo("client3.example.test")
            check("AUTH advertised", "PLAIN" in s.features.get("AUTH", ""), s.features)
            c = s.auth_plain("u1", "wrong")
            check("AUTH PLAIN with a wrong password refused (535)", c.code == 535, c)
            t0 = time.monotonic()
            c = s.auth_plain("u1", "secret1")
            check("AUTH PLAIN u1/secret1 accepted (235), no Dovecot penalty delay",
                  c.code == 235 and time.monotonic() - t0 < 1.5, c)
            c = s.mail("u1@example.test", size=200 * 1024 * 1024)
            check("MAIL FROM with SIZE= above message_size_limit refused (552 5.3.4)",
                  c.code == 552 and c.enhanced == "5.3.4", c)
            c = s.mail("u1@example.test", size=1000)
            check("MAIL FROM with SIZE=1000 accepted", c.code == 250, c)
            c = s.rcpt("x@foreign.test")
            check("authenticated relay permitted in the Postfix-decides default", c.code == 250, c)
            c = s.data("Subject: dots\n\n.line starting with a dot\n..two\nend\n")
            check("DATA with dot-stuffed lines accepted", c.code == 250, c)
            c = s.quit()
            check("QUIT answered 221", c.code == 221, c)
            try:
                s.noop()
                check("command after close raises ConnectionClosed", False, "no exception")
            except ConnectionClosed:
                check("command after close raises ConnectionClosed", True)

        pf.wait_log(r"connect from unknown\[127\.0\.0\.2\]")
        check("maillog shows client 127.0.0.2 (source binding works)", True)

        mark = pf.log_mark()
        pf.postconf("smtpd_banner", "$myhostname ESMTP reloaded")
        pf.reload()
        with SmtpSession("127.0.0.1", pf_port, source="127.0.0.4") as s:
            check("postconf + reload applied", "reloaded" in s.greeting.text, s.greeting)
        check("log(since=mark) sees only new lines", "reload" in pf.maillog(since=mark)
              and "starting the Postfix" not in pf.maillog(since=mark))

        p = poplib.POP3("127.0.0.1", dv_pop3, timeout=5)
        p.user("u1")
        resp = p.pass_("secret1")
        p.quit()
        check("POP3 login u1/secret1", resp.startswith(b"+OK"), resp)
        dv.wait_log(r"Login: user=<u1>")
        deadline = time.monotonic() + 5
        while "user=u1 ip=127.0.0.1" not in open(dv.postlogin_log).read() and time.monotonic() < deadline:
            time.sleep(0.1)
        check("post-login hook ran with $USER and $IP", "user=u1 ip=127.0.0.1" in open(dv.postlogin_log).read())
        masters = [pf.master_pid, dv.master_pid]
        dirs = [pf.dir, dv.dir]
    print(f"     postfix stopped in {pf.stop_seconds:.2f}s, dovecot in {dv.stop_seconds:.2f}s")
    check("no Postfix/Dovecot master left", not any(_alive(p) for p in masters), masters)
    check("ports released", not port_in_use("127.0.0.1", pf_port) and not port_in_use("127.0.0.1", dv_pop3))
    check("temp dirs removed", os.environ.get("RGTEST_KEEP") or not any(os.path.exists(d) for d in dirs))


def dnsmasq():
    port = free_port()
    with Dnsmasq(port=port, hosts={"mx.example.test": "192.0.2.10"},
                 ptrs={"127.0.0.2": "client2.example.test"}, mx={"example.test": "mx.example.test"},
                 txt={"example.test": "v=spf1 ip4:192.0.2.10, -all"},
                 dnsbl={"zen.bl.test": {"127.0.0.9": "127.0.0.2"}}) as d:
        print(f"     dnsmasq started in {d.start_seconds:.2f}s")
        check("dns A", d.query("mx.example.test") == ("NOERROR", ["192.0.2.10"]))
        check("dns PTR", d.query("2.0.0.127.in-addr.arpa", "PTR") == ("NOERROR", ["client2.example.test"]))
        check("dns MX", d.query("example.test", "MX") == ("NOERROR", ["10 mx.example.test"]))
        check("dns TXT with a comma", d.query("example.test", "TXT")
              == ("NOERROR", ["v=spf1 ip4:192.0.2.10, -all"]))
        check("dns unknown name under .test is NXDOMAIN", d.query("nope.example.test")[0] == "NXDOMAIN")
        check("dns unknown PTR is NXDOMAIN", d.query("3.0.0.127.in-addr.arpa", "PTR")[0] == "NXDOMAIN")
        check("dnsbl listed / unlisted", d.query("9.0.0.127.zen.bl.test") == ("NOERROR", ["127.0.0.2"])
              and d.query("8.0.0.127.zen.bl.test")[0] == "NXDOMAIN")
        check("dns over TCP", d.query("mx.example.test", tcp=True) == ("NOERROR", ["192.0.2.10"]))


def sendmail():
    port = free_port()
    with Sendmail(port=port, milter=None) as sm:
        print(f"     sendmail started in {sm.start_seconds:.2f}s")
        r = send_message("127.0.0.1", port, sender="s@example.org", rcpts=["user1@example.test"])
        check("sendmail accepts and queues a message", r.delivered and any(
            f.startswith("qf") for f in sm.queue_files()), r.data)
    dead = free_port()  # nothing listens there: F=T must turn that into a 4xx
    with Sendmail(port=port, milter=f"inet:{dead}@127.0.0.1") as sm:
        r = send_message("127.0.0.1", port, sender="s@example.org", rcpts=["user1@example.test"])
        check("sendmail with an unreachable milter tempfails (F=T)", r.mail is not None
              and r.mail.code == 451, r.mail)


def main():
    t0 = time.monotonic()
    for part in (postfix_and_dovecot, dnsmasq, sendmail):
        print(f"== {part.__name__}")
        try:
            part()
        except Exception as e:  # report and carry on with the other fixtures
            check(f"{part.__name__} ran without exception", False, f"{type(e).__name__}: {e}")
    print(f"{len(failures)} failure(s), {time.monotonic() - t0:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (private Postfix/Dovecot/Sendmail instances)")
    sys.exit(main())
