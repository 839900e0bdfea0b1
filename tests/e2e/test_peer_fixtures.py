#!/usr/bin/python3
"""Check of the SMTP peers that relay-client tests use (no relayguard involved):

- rgtest.sink.SmtpSink (smtp-sink): recording, parsing, 4xx/5xx/disconnect options,
  restart on the same port, down/up, in-flight transactions, parallel sessions;
- rgtest.tls.make_test_cert and rgtest.smarthost: a private Postfix smart host that
  offers STARTTLS, allows AUTH (Dovecot SASL) only after STARTTLS, accepts local users,
  answers 550 for unknown ones, relays nothing without AUTH, and whose deliveries a test
  can count;
- and that no smtp-sink, Postfix master or Dovecot process is left behind.

Run as root: /usr/bin/python3 tests/e2e/test_peer_fixtures.py   (exit 0 = all passed)
"""

import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, free_port, port_in_use  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.fixtures import _alive, _env_pids  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402
from rgtest.smarthost import (delivered_count, mailbox, sasl_logins, smarthost_postfix,  # noqa: E402
                              tls_sessions, wait_delivered)
from rgtest.tls import make_test_cert  # noqa: E402


def pgrep(name):
    p = subprocess.run(["pgrep", "-a", "-x", name], stdout=subprocess.PIPE, text=True)
    return set(p.stdout.splitlines())


def swaks(port, *args, host="127.0.0.1"):
    p = subprocess.run(["swaks", "--server", host, "--port", str(port), "--timeout", "10",
                        "--helo", "client.example.test", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    return p.returncode, p.stdout


def refused_lines(out):
    return [ln for ln in out.splitlines() if ln.startswith("<** ")]


def connection_refused(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------

def sink_part(leftovers):
    with SmtpSink() as sink:
        leftovers.append(("smtp-sink", sink.proc.pid, sink.dir))
        port = sink.port
        print(f"     smtp-sink on {sink.address} started in {sink.start_seconds:.2f}s")
        check("address is host:port", sink.address == f"127.0.0.1:{port}" and port_in_use("127.0.0.1", port))

        # three transactions with swaks
        rc1, out1 = swaks(port, "--from", "alice@example.org", "--to", "r1@example.net",
                          "--h-Subject", "one", "--body", "first\n.leading dot\nend")
        rc2, out2 = swaks(port, "--from", "bob@example.org",
                          "--to", "r2@example.net,r3@example.net", "--h-Subject", "two")
        rc3, _ = swaks(port, "--from", "<>", "--to", "postmaster@example.net", "--h-Subject", "three")
        check("swaks delivered 3 messages to the sink", (rc1, rc2, rc3) == (0, 0, 0), out1 + out2)
        n = sink.wait_count(3, 5)
        check("count() == 3", n == 3 and sink.count() == 3, n)
        msgs = sink.messages()
        check("messages() returns 3 in order", [m["sender"] for m in msgs]
              == ["alice@example.org", "bob@example.org", ""], [m["sender"] for m in msgs])
        if len(msgs) == 3:
            m1, m2 = msgs[0], msgs[1]
            check("recipients parsed", m1["recipients"] == ["r1@example.net"]
                  and m2["recipients"] == ["r2@example.net", "r3@example.net"], (m1, m2))
            check("data: headers and body, dot-stuffing undone, LF line ends",
                  isinstance(m1["data"], bytes) and b"Subject: one\n" in m1["data"]
                  and b"\n\nfirst\n.leading dot\nend\n" in m1["data"]
                  and b"\r" not in m1["data"] and "Subject: one" in m1["text"], m1["data"])
            check("helo and client address recorded", m1["helo"] == "client.example.test"
                  and m1["client_addr"] == "127.0.0.1" and m1["proto"] == "ESMTP", m1)

        # smtplib: EHLO features; a transaction in flight is not counted
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo("client.example.test")
            check("sink offers no STARTTLS and (auth=False) no AUTH",
                  not c.has_extn("starttls") and not c.has_extn("auth"), c.esmtp_features)
            c.mail("carol@example.org")
            c.rcpt("r4@example.net")
            code, _ = c.docmd("DATA")
            c.send(b"Subject: in flight\r\n\r\n" + b"x" * 20000 + b"\r\n")
            time.sleep(0.3)
            check("transaction in DATA is not counted", code == 354 and sink.count() == 3, sink.count())
            c.send(b".\r\n")
            code, _ = c.getreply()
            check("after the final dot it is (file closed before the 250)",
                  code == 250 and sink.count() == 4, (code, sink.count()))
            c.rset()
            c.mail("dave@example.org")
            c.rcpt("r5@example.net")
            c.rset()
            check("RSET after RCPT leaves nothing", sink.count() == 4)
        # stop in the middle of DATA: cut off, not counted
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        f = s.makefile("rb")
        f.readline()
        for cmd in (b"HELO h", b"MAIL FROM:<eve@example.org>", b"RCPT TO:<r6@example.net>", b"DATA"):
            s.sendall(cmd + b"\r\n")
            f.readline()
        s.sendall(b"Subject: cut\r\n\r\n" + b"y" * 20000 + b"\r\n")
        time.sleep(0.2)
        sink.stop()
        s.close()
        check("stop() mid-DATA: transaction marked partial, count unchanged",
              sink.partial_count() == 1 and sink.count() == 4, (sink.partial_count(), sink.count()))
        check("stopped: port closed (connection refused)",
              not port_in_use("127.0.0.1", port) and connection_refused("127.0.0.1", port))
        sink.start()
        check("start() again: same port, old messages kept",
              sink.port == port and port_in_use("127.0.0.1", port) and sink.count() == 4)

        # soft reject (-r RCPT)
        sink.restart(soft_reject=["RCPT"])
        rc, out = swaks(port, "--from", "a@example.org", "--to", "r@example.net")
        bad = refused_lines(out)
        check("soft_reject=RCPT: swaks gets 450 on RCPT",
              rc != 0 and any(ln.startswith("<** 450 4.3.0") for ln in bad), out)
        check("nothing recorded for it", sink.count() == 4)

        # hard reject (-f MAIL), custom reply text (-B)
        sink.restart(soft_reject=(), hard_reject=["MAIL"], hard_reply="554 5.7.1 go away")
        rc, out = swaks(port, "--from", "a@example.org", "--to", "r@example.net")
        check("hard_reject=MAIL with hard_reply: swaks gets 554 5.7.1 go away",
              rc != 0 and any("554 5.7.1 go away" in ln for ln in refused_lines(out)), out)

        # disconnect (-q DATA)
        sink.restart(hard_reject=(), hard_reply=None, disconnect=["DATA"])
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                c.sendmail("a@example.org", ["r@example.net"], "Subject: x\r\n\r\nx\r\n")
            dropped = False
        except smtplib.SMTPServerDisconnected:
            dropped = True
        check("disconnect=DATA: connection dropped without a reply", dropped)

        # 421 and disconnect (-Q RCPT); custom soft reply (-b) on MAIL
        sink.restart(disconnect=(), tempfail_disconnect=["RCPT"])
        rc, out = swaks(port, "--from", "a@example.org", "--to", "r@example.net")
        check("tempfail_disconnect=RCPT: swaks gets 421", rc != 0
              and any(ln.startswith("<** 421") for ln in refused_lines(out)), out)
        sink.restart(tempfail_disconnect=(), soft_reject="MAIL", soft_reply="451 4.3.5 try later")
        rc, out = swaks(port, "--from", "a@example.org", "--to", "r@example.net")
        check("soft_reject=MAIL with soft_reply: swaks gets 451 4.3.5 try later", rc != 0
              and any("451 4.3.5 try later" in ln for ln in refused_lines(out)), out)

        # "." refused: smtp-sink still writes the file; the fixture does not count it
        sink.restart(soft_reply=None, soft_reject=["."])
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                c.sendmail("a@example.org", ["r@example.net"], "Subject: refused\r\n\r\nx\r\n")
            code = 250
        except smtplib.SMTPDataError as e:
            code = e.smtp_code
        all_msgs = sink.messages(include_refused=True)
        check("soft_reject='.': client gets 450, message not counted, visible with include_refused",
              code == 450 and sink.count() == 4 and len(all_msgs) == 5 and not all_msgs[-1]["accepted"],
              (code, sink.count(), len(all_msgs)))

        # back to accepting; many parallel sessions
        sink.restart(soft_reject=())
        errors = []

        def one(i):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as c:
                    c.sendmail(f"p{i}@example.org", [f"q{i}@example.net"], f"Subject: p{i}\r\n\r\nx\r\n")
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        n = sink.wait_count(64, 10)
        check("60 parallel sessions all received", not errors and n == 64, (errors[:3], n))
        check("clean log (no fatal/warning)", "fatal" not in sink.log() and "warning" not in sink.log(),
              sink.log()[-500:])
        sink_dir = sink.dir
        pid = sink.proc.pid
    check("closed: process gone, port closed, directory removed",
          not _alive(pid) and not port_in_use("127.0.0.1", port)
          and (os.environ.get("RGTEST_KEEP") or not os.path.exists(sink_dir)))

    # another loopback address
    host = "127.0.0.5"
    with SmtpSink(host=host) as sink:
        leftovers.append(("smtp-sink", sink.proc.pid, sink.dir))
        with smtplib.SMTP(host, sink.port, timeout=10) as c:
            c.sendmail("a@example.org", ["b@example.net"], "Subject: x\r\n\r\nx\r\n")
        check(f"sink on {host}: address and delivery", sink.address == f"{host}:{sink.port}"
              and sink.wait_count(1, 5) == 1)


# --------------------------------------------------------------------------

def smarthost_part(leftovers):
    certdir = tempfile.mkdtemp(prefix="rgtest-cert-")
    try:
        cert, key = make_test_cert(certdir)
        check("make_test_cert wrote cert and key", os.path.exists(cert) and os.path.exists(key))
        with DovecotInstance(pop3_port=free_port(), auth_port=free_port()) as dv, \
                smarthost_postfix(dv, cert, key, free_port()) as sh:
            leftovers.append(("postfix", sh.master_pid, sh.dir))
            leftovers.append(("dovecot", dv.master_pid, dv.dir))
            print(f"     dovecot started in {dv.start_seconds:.2f}s, smart host in {sh.start_seconds:.2f}s")
            port = sh.port
            ctx = ssl.create_default_context(cafile=cert)   # verifies chain and IP SAN 127.0.0.1

            # before STARTTLS
            with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0)) as c:
                c.ehlo("client.example.test")
                check("EHLO before STARTTLS: STARTTLS offered, AUTH not",
                      c.has_extn("starttls") and not c.has_extn("auth"), c.esmtp_features)
                code, msg = c.docmd("AUTH", "PLAIN AHUxAHNlY3JldDE=")
                check("AUTH before STARTTLS refused (503)", code == 503, (code, msg))
                c.mail("s@example.org")
                code, msg = c.rcpt("user1@example.test")
                check("unauthenticated RCPT to a local user refused (require_auth: 554 5.7.1)",
                      code == 554 and b"Access denied" in msg, (code, msg))
                code, msg = c.rcpt("x@foreign.example")
                check("unauthenticated relay to foreign.example refused (554)", code == 554, (code, msg))

            # STARTTLS + AUTH
            with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0)) as c:
                c.ehlo("client.example.test")
                code, _ = c.starttls(context=ctx)
                check("STARTTLS accepted, certificate verified (CA = the cert, IP SAN)",
                      code == 220 and c.sock.version() in ("TLSv1.2", "TLSv1.3"), c.sock.version())
                c.ehlo("client.example.test")
                check("EHLO after STARTTLS offers AUTH PLAIN LOGIN",
                      "PLAIN" in c.esmtp_features.get("auth", ""), c.esmtp_features)
                try:
                    c.login("u1", "wrong")
                    bad = None
                except smtplib.SMTPAuthenticationError as e:
                    bad = e.smtp_code
                check("wrong password refused (535)", bad == 535, bad)
                code, _ = c.login("u1", "secret1")
                check("login u1/secret1 (235)", code == 235, code)
                mark = sh.log_mark()
                refused = c.sendmail("s@example.org",
                                     ["user1@example.test", "user2@example.test", "nobody@example.test"],
                                     "Subject: via smart host\r\n\r\nhello\r\n.dot\r\n")
                check("user1 and user2 accepted, nobody@example.test 550 5.1.1",
                      list(refused) == ["nobody@example.test"]
                      and refused["nobody@example.test"][0] == 550
                      and refused["nobody@example.test"][1].startswith(b"5.1.1"), refused)
            n = wait_delivered(sh, 1, 10, since=mark)
            check("delivered_count: 1 message, 2 recipients", n == 1
                  and delivered_count(sh, since=mark, per="recipient") == 2,
                  (n, delivered_count(sh, since=mark, per="recipient")))
            box = mailbox(sh, "user1@example.test")
            check("mailbox(user1): the message, received with ESMTPSA (TLS + AUTH)",
                  len(box) == 1 and b"with ESMTPSA" in box[0] and box[0].endswith(b"\nhello\n.dot\n"),
                  box)
            check("mailbox(user2) has it too", len(mailbox(sh, "user2@example.test")) == 1)
            check("maillog: sasl_username=u1 and one TLS session",
                  [x[2] for x in sasl_logins(sh)] == ["u1"] and len(tls_sessions(sh)) == 1,
                  (sasl_logins(sh), tls_sessions(sh)))

            # TLS without AUTH still relays nothing
            with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.3", 0)) as c:
                c.starttls(context=ctx)
                c.ehlo("client.example.test")
                c.mail("s@example.org")
                code, msg = c.rcpt("x@foreign.example")
                check("TLS without AUTH: relay to foreign.example refused (554)", code == 554, (code, msg))

            # require_auth=False (same instance, relay list as smarthost_postfix would set it)
            sh.postconf("smtpd_relay_restrictions",
                        "reject_unlisted_recipient, permit_sasl_authenticated, reject_unauth_destination")
            sh.reload()
            with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=("127.0.0.4", 0)) as c:
                c.ehlo("client.example.test")
                c.mail("s@example.org")
                code1, _ = c.rcpt("user1@example.test")
                code2, msg2 = c.rcpt("x@foreign.example")
                code3, _ = c.rcpt("nobody@example.test")
                c.data("Subject: unauthenticated\r\n\r\nx\r\n")
            check("require_auth=False: local user 250, foreign 554 Relay access denied, unknown 550",
                  (code1, code2, code3) == (250, 554, 550) and b"Relay access denied" in msg2,
                  (code1, code2, msg2, code3))
            check("wait_delivered sees the second message", wait_delivered(sh, 2, 10) == 2,
                  delivered_count(sh))
    finally:
        shutil.rmtree(certdir, ignore_errors=True)


# --------------------------------------------------------------------------

def main():
    if os.geteuid() != 0:
        sys.exit("needs root (smtp-sink -u postfix, private Postfix and Dovecot)")
    t0 = time.monotonic()
    before = {n: pgrep(n) for n in ("smtp-sink", "master", "dovecot")}
    leftovers = []
    for part in (sink_part, smarthost_part):
        print(f"== {part.__name__}")
        try:
            part(leftovers)
        except Exception as e:  # report and carry on
            import traceback
            traceback.print_exc()
            check(f"{part.__name__} ran without exception", False, f"{type(e).__name__}: {e}")
    time.sleep(0.2)
    after = {n: pgrep(n) for n in ("smtp-sink", "master", "dovecot")}
    new = {n: sorted(after[n] - before[n]) for n in after if after[n] - before[n]}
    ours = [(what, pid) for what, pid, _ in leftovers if pid and _alive(pid)]
    ours += [("postfix", p) for what, _, d in leftovers if what == "postfix"
             for p in _env_pids("MAIL_CONFIG", os.path.join(d, "etc"))]
    check("no process of ours left (sink, Postfix, Dovecot)", not ours, ours)
    # other test runs may start servers meanwhile: only report, unless one is ours
    if new:
        print(f"     note: processes that appeared during the run: {new}")
    check("no new smtp-sink process at all", "smtp-sink" not in new, new)
    elapsed = time.monotonic() - t0
    check(f"took {elapsed:.1f}s (< 30 s)", elapsed < 30)
    finish()


if __name__ == "__main__":
    main()
