#!/usr/bin/python3
"""Credentials never cross the wire in the clear (issue 17, section 1), with real
servers: a Postfix smart host that offers AUTH but no STARTTLS gets no AUTH from the
relay client, the mail stays queued, the log says why in one line and the admin is
alerted once per outage; a STARTTLS that is answered 220 and then broken (a proxy in
front of that Postfix) is not followed by AUTH in plaintext; TLS turned on at the smart
host ends the outage and delivers; delivery.allow_plaintext_auth = true sends AUTH
anyway and warns at start. The same for POP-before-SMTP: a Dovecot without STLS never
sees USER/PASS; with STLS the login goes over TLS and the mail goes out."""

import os
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.relayd import FAST, Relayd, smarthosts, wait  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402
from rgtest.smarthost import mailbox, sasl_logins, smarthost_postfix, wait_delivered  # noqa: E402
from rgtest.tls import make_test_cert  # noqa: E402

AUTH = 'auth = "smtp-auth"\nusername = "u1"\npassword = "secret1"\n'
WITHHELD = (r"status=deferred \(\S+: not encrypted \({why}\); AUTH not sent: "
            r"delivery\.allow_plaintext_auth is false\)")
ALERT = r"error: alert: no encrypted session with smart host {host}"


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^([a-z_]+) ([0-9.e+]+)$", text, re.M)}


def sessions(pf, since=0):
    """The command statistics Postfix logs at each disconnect ("ehlo=1 quit=1 commands=2")."""
    return re.findall(r"postfix/smtpd\[\d+\]: disconnect from \S+ (.*)", pf.maillog(since))


def auth_seen(pf, since=0):
    """Any AUTH the smart host was sent: counted at disconnect, or a SASL login or failure."""
    log = pf.maillog(since)
    return [s for s in sessions(pf, since) if "auth=" in s] + re.findall(r".*sasl_(?:method|username)=.*", log) + \
        re.findall(r".*SASL \w+ authentication failed.*", log)


class BrokenStartTls:
    """A proxy in front of an SMTP (or POP3) server that, when the client sends STARTTLS
    (STLS), answers it positively and then sends bytes that are no TLS at all and closes:
    what an attacker on the path, or a broken TLS stack, does mid-handshake. For SMTP it
    adds STARTTLS to the EHLO reply (the Postfix behind it offers none). Everything else
    passes through, so a client that retries in plaintext reaches the real server."""

    def __init__(self, upstream_port, command=b"STARTTLS", reply=b"220 2.0.0 Ready to start TLS\r\n",
                 add_to_ehlo=True):
        self.upstream_port = upstream_port
        self.command = command
        self.reply = reply
        self.add_to_ehlo = add_to_ehlo
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.starttls_taken = 0
        self.client_lines = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        closed = threading.Event()

        def downstream():  # server -> client, STARTTLS put into the EHLO reply
            f = server.makefile("rb")
            first_of_reply = True
            try:
                for line in f:
                    client.sendall(line)
                    if self.add_to_ehlo and first_of_reply and line.startswith(b"250-"):
                        client.sendall(b"250-STARTTLS\r\n")
                    first_of_reply = line[3:4] == b" "
            except OSError:
                pass
            closed.set()

        threading.Thread(target=downstream, daemon=True).start()
        f = client.makefile("rb")
        try:
            for line in f:
                self.client_lines.append(line.rstrip(b"\r\n"))
                if line.strip().upper() == self.command:
                    self.starttls_taken += 1
                    client.sendall(self.reply)
                    # After the client has read the 220 and begun its handshake: bytes
                    # sent with the 220 would be caught as an injection before it.
                    time.sleep(0.3)
                    client.sendall(b"\x15\x03\x03\x00\x02\x02\x50garbage, not TLS\r\n")
                    break
                server.sendall(line)
        except OSError:
            pass
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()


certs = tempfile.mkdtemp(prefix="rgtest-certs-")
cert, key = make_test_cert(certs, ips=("127.0.0.1",))
NO_TLS = {"smtpd_tls_security_level": "none", "smtpd_tls_auth_only": "no"}

# --- (a) a smart host that offers AUTH without STARTTLS ---
with DovecotInstance(pop3_port=free_port(), auth_port=free_port()) as dov, \
        smarthost_postfix(dov, cert, key, free_port(), extra_main_cf=NO_TLS) as sh:
    probe = socket.create_connection(("127.0.0.1", sh.port), timeout=5)
    pf = probe.makefile("rb")
    pf.readline()
    probe.sendall(b"EHLO probe.test\r\n")
    ehlo = []
    while True:
        line = pf.readline()
        ehlo.append(line.decode().strip())
        if line[3:4] == b" ":
            break
    probe.sendall(b"QUIT\r\n")
    probe.close()
    check("the smart host offers AUTH PLAIN LOGIN and no STARTTLS (the setting under test)",
          any(e.startswith("250-AUTH") and "PLAIN" in e for e in ehlo) and not any("STARTTLS" in e for e in ehlo),
          ehlo)

    mport = free_port()
    plain = smarthosts(f"127.0.0.1:{sh.port}") + FAST + AUTH + f'metrics = "127.0.0.1:{mport}"\n'
    mark = sh.log_mark()
    with Relayd(plain) as relayd:
        r = send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["user1@example.test"],
                         headers={"Subject": "no tls"})
        check("the relay client takes the message", r.delivered, r.summary())
        check("the attempt is deferred and the log says why in one line",
              relayd.wait_for(r"to=<user1@example\.test> relay=none " + WITHHELD.format(why="STARTTLS not offered")),
              relayd.log()[-2000:])
        check("more attempts follow (retry_interval 1s) and are deferred the same way",
              wait(lambda: len(re.findall(WITHHELD.format(why="STARTTLS not offered"), relayd.log())) >= 3, 20),
              relayd.log()[-2000:])
        alerts = re.findall(ALERT.format(host=rf"127\.0\.0\.1:{sh.port}") + r".*", relayd.log())
        check("the admin is alerted once for the outage, in one error line starting 'alert:'",
              len(alerts) == 1 and "credentials withheld" in alerts[0], alerts)
        check("the message stays queued", len(relayd.queued()) == 1, relayd.queued())
        samples = scrape(mport)
        check("the metrics count the withheld sessions and the outage",
              samples.get("relayguard_credentials_withheld_total", 0) >= 3 and
              samples.get("relayguard_credential_outages") == 1, samples)
        check("the smart host saw the relay client's sessions", wait(lambda: len(sessions(sh, mark)) >= 3),
              sh.maillog(mark)[-1500:])
        check("and not one AUTH command in them: no auth= count, no SASL login, no SASL failure",
              not auth_seen(sh, mark), auth_seen(sh, mark) or sessions(sh, mark))
        check("nothing was delivered", not mailbox(sh, "user1@example.test"))
        check("the password is in no log line", "secret1" not in relayd.log())

        # --- (c) the smart host offers TLS again: the outage ends, the mail goes out ---
        sh.postconf("smtpd_tls_security_level", "may")
        sh.postconf("smtpd_tls_auth_only", "yes")
        sh.reload()
        relayd.queue("flush")
        check("once the smart host offers STARTTLS, the queued message is delivered over TLS with AUTH",
              wait_delivered(sh, 1, 20) >= 1 and wait(lambda: mailbox(sh, "user1@example.test")) and
              b"with ESMTPSA" in mailbox(sh, "user1@example.test")[0], relayd.log()[-1500:])
        check("and one info line says the outage is over",
              len(re.findall(r"info: alert over: credentials sent to smart host 127\.0\.0\.1:\d+ again over an "
                             r"encrypted session", relayd.log())) == 1, relayd.log()[-1500:])
        check("the queue is empty", wait(lambda: not relayd.queued()), relayd.queued())
        check("the outage gauge is back to 0", scrape(mport).get("relayguard_credential_outages") == 0)

    # --- (d) allow_plaintext_auth = true: the old behaviour, and a warning at start ---
    sh.postconf("smtpd_tls_security_level", "none")
    sh.postconf("smtpd_tls_auth_only", "no")
    sh.reload()
    mark = sh.log_mark()
    with Relayd(smarthosts(f"127.0.0.1:{sh.port}") + FAST + AUTH + "allow_plaintext_auth = true\n") as relayd:
        check("a start with allow_plaintext_auth = true logs a warning",
              relayd.wait_for(r"warning: delivery\.allow_plaintext_auth is true: the smart host's AUTH PLAIN/LOGIN "
                              r"password is sent over sessions that are not encrypted"), relayd.log()[-1500:])
        before = len(mailbox(sh, "user2@example.test"))
        send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["user2@example.test"])
        check("AUTH goes in plaintext and the message is delivered (Received: with ESMTPA, no S)",
              wait(lambda: len(mailbox(sh, "user2@example.test")) > before, 20) and
              b"with ESMTPA" in mailbox(sh, "user2@example.test")[-1], relayd.log()[-1500:])
        check("the smart host logged the SASL login", any(u == "u1" for _, _, u in sasl_logins(sh, mark)),
              sh.maillog(mark)[-1500:])
        check("no alert", "alert:" not in relayd.log())

    # --- (b) STARTTLS answered 220, then the handshake broken ---
    proxy = BrokenStartTls(sh.port)
    mark = sh.log_mark()
    with Relayd(smarthosts(f"127.0.0.1:{proxy.port}") + FAST + AUTH) as relayd:
        send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["user1@example.test"],
                     headers={"Subject": "stripped"})
        check("a STARTTLS broken mid-handshake defers, and the line says how it failed",
              relayd.wait_for(r"to=<user1@example\.test> relay=none " +
                              WITHHELD.format(why=r"STARTTLS failed: [^)]*")), relayd.log()[-2000:])
        check("retries are deferred the same way",
              wait(lambda: len(re.findall(WITHHELD.format(why=r"STARTTLS failed: [^)]*"), relayd.log())) >= 2, 20),
              relayd.log()[-2000:])
        check("the relay client did take STARTTLS (the handshake was tried)", proxy.starttls_taken >= 2,
              proxy.starttls_taken)
        check("no AUTH was sent on the plaintext retry: not through the proxy",
              not any(l.upper().startswith(b"AUTH") for l in proxy.client_lines), proxy.client_lines)
        check("and none in the smart host's log", wait(lambda: len(sessions(sh, mark)) >= 2) and not auth_seen(sh, mark),
              auth_seen(sh, mark) or sh.maillog(mark)[-1500:])
        check("one alert for the outage",
              len(re.findall(ALERT.format(host=rf"127\.0\.0\.1:{proxy.port}"), relayd.log())) == 1,
              relayd.log()[-1500:])
        check("the message stays queued", len(relayd.queued()) == 1, relayd.queued())
    proxy.close()

# --- (e) POP-before-SMTP with USER/PASS ---
POP_CONF = "auth_verbose = yes\nauth_mechanisms = plain login\n"
with SmtpSink() as parent:
    def pop_settings(dov):
        return (smarthosts(parent.address) + FAST + 'auth = "pop-before-smtp"\nusername = "u1"\npassword = "secret1"\n'
                f'pop_server = "127.0.0.1:{dov.pop3_port}"\npop_login_interval = "0s"\n')

    with DovecotInstance(pop3_port=free_port(), auth_port=free_port(), extra_conf=POP_CONF) as dov:
        with Relayd(pop_settings(dov)) as relayd:
            send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["far@remote.example"])
            withheld = (r"to=<far@remote\.example> relay=none status=deferred \(\S+: pop-before-smtp at "
                        r"127\.0\.0\.1\[127\.0\.0\.1\]:\d+: not encrypted \(STLS not offered\); USER/PASS not sent: "
                        r"delivery\.allow_plaintext_auth is false\)")
            check("a POP3 server without STLS: the message is deferred and the log says why",
                  relayd.wait_for(withheld), relayd.log()[-2000:])
            check("retries too", wait(lambda: len(re.findall(withheld, relayd.log())) >= 2, 20), relayd.log()[-2000:])
            check("one alert for the POP3 server",
                  len(re.findall(r"error: alert: no encrypted session with POP3 server 127\.0\.0\.1:\d+ \(STLS not "
                                 r"offered\); credentials withheld", relayd.log())) == 1, relayd.log()[-1500:])
            check("Dovecot saw the connections and no login attempt",
                  wait(lambda: "no auth attempts" in dov.log()) and "user=<u1>" not in dov.log() and
                  "auth failed" not in dov.log(), dov.log()[-1500:])
            check("nothing reached the parent's SMTP side", parent.count() == 0)
            check("the message stays queued", len(relayd.queued()) == 1, relayd.queued())

            # allow_plaintext_auth: the old behaviour, for a parent on a trusted wire.
            relayd.write_config(pop_settings(dov) + "allow_plaintext_auth = true\n")
            relayd.reload()
            check("a reload to allow_plaintext_auth = true warns",
                  relayd.wait_for(r"warning: delivery\.allow_plaintext_auth is true: the POP3 USER/PASS password"),
                  relayd.log()[-1500:])
            relayd.queue("flush")
            check("USER/PASS then goes in plaintext and the mail goes out",
                  parent.wait_count(1, 20) == 1 and
                  wait(lambda: re.search(r"Login: user=<u1>, method=PLAIN", dov.log()) is not None),
                  relayd.log()[-1500:] + dov.log()[-800:])
            check("the outage is over, said once",
                  relayd.wait_for(r"info: alert over: credentials sent to POP3 server 127\.0\.0\.1:\d+ again "
                                  r"unencrypted, as delivery\.allow_plaintext_auth allows"), relayd.log()[-1500:])

    pop_cert, pop_key = make_test_cert(certs, "pop.parent.test")
    STLS = POP_CONF + f"ssl = yes\nssl_cert = <{pop_cert}\nssl_key = <{pop_key}\n"
    with DovecotInstance(pop3_port=free_port(), auth_port=free_port(), extra_conf=STLS) as dov:
        with Relayd(pop_settings(dov)) as relayd:
            before = parent.count()
            send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["far2@remote.example"])
            check("a POP3 server with STLS: the login goes over TLS and the mail goes out",
                  parent.wait_count(before + 1, 20) == before + 1 and
                  relayd.wait_for(r"pop-before-smtp: logged in as u1 at \S+ over TLS"), relayd.log()[-1500:])
            check("Dovecot logged the login with TLS",
                  wait(lambda: re.search(r"Login: user=<u1>, method=PLAIN.*TLS", dov.log()) is not None),
                  dov.log()[-1500:])
            check("no alert", "alert:" not in relayd.log())

        # STLS answered +OK, then the handshake broken: no USER/PASS in plaintext after it.
        proxy = BrokenStartTls(dov.pop3_port, command=b"STLS", reply=b"+OK Begin TLS negotiation now.\r\n",
                               add_to_ehlo=False)
        mark = dov.log_mark()
        broken = pop_settings(dov).replace(f":{dov.pop3_port}", f":{proxy.port}")
        with Relayd(broken) as relayd:
            before = parent.count()
            send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["far3@remote.example"])
            withheld = (r"to=<far3@remote\.example> relay=none status=deferred \(\S+: pop-before-smtp at \S+: not "
                        r"encrypted \(STLS failed: [^)]*\); USER/PASS not sent: delivery\.allow_plaintext_auth is false\)")
            check("an STLS broken mid-handshake defers, and the line says how it failed",
                  relayd.wait_for(withheld), relayd.log()[-2000:])
            check("retries too", wait(lambda: len(re.findall(withheld, relayd.log())) >= 2, 20), relayd.log()[-2000:])
            check("the relay client did take STLS", proxy.starttls_taken >= 2, proxy.starttls_taken)
            check("no USER or PASS was sent after it: not through the proxy",
                  not any(l.upper().startswith((b"USER", b"PASS")) for l in proxy.client_lines), proxy.client_lines)
            check("and Dovecot logged no login attempt", "user=<u1>" not in dov.log(mark) and
                  "auth failed" not in dov.log(mark), dov.log(mark)[-1500:])
            check("nothing reached the parent's SMTP side", parent.count() == before)
        proxy.close()
finish()
