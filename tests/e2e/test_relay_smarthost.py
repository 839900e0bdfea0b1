#!/usr/bin/python3
"""The relay client with real peers: Postfix hands it mail (relayhost), it
forwards to smtp-sink; a smart host that requires STARTTLS and AUTH (a
private Postfix with Dovecot SASL) where one recipient of three is unknown;
failover past a dead smart host; a sink that answers 4xx and then recovers;
one that is down and then comes up; relayguard-sendmail -t."""

import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.relayd import FAST, Relayd, smarthosts, wait  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402
from rgtest.smarthost import delivered_count, mailbox, smarthost_postfix, tls_sessions, wait_delivered  # noqa: E402
from rgtest.tls import make_test_cert  # noqa: E402



# --- Postfix -> relay client -> smtp-sink, and relayguard-sendmail ---
with SmtpSink() as sink:
    dead = f"127.0.0.1:{free_port()}"
    with Relayd(smarthosts(dead, sink.address) + FAST) as relayd, \
            PostfixInstance(port=free_port(), mynetworks="127.0.0.0/8", relay_restrictions="permit_mynetworks, reject",
                            extra_main_cf={"relayhost": f"[127.0.0.1]:{relayd.port}", "default_transport": "smtp",
                                           "relay_transport": "smtp", "smtp_tls_security_level": "none"}) as pf:
        r = send_message("127.0.0.1", pf.port, source="127.0.0.2", sender="app@example.test",
                         rcpts=["ops@remote.example"], headers={"Subject": "via postfix"})
        check("Postfix accepts a message for a remote domain", r.delivered, r.summary())
        check("Postfix hands it to the relay client, which forwards it to the sink past a dead smart host",
              sink.wait_count(1, 20) == 1, relayd.log()[-2000:])
        m = sink.messages()[0] if sink.count() else {}
        check("the sink got the envelope Postfix was given",
              m.get("sender") == "app@example.test" and m.get("recipients") == ["ops@remote.example"], m)
        check("the relay client added its Received header",
              b"by relayguard-relayd with ESMTP" in m.get("data", b""), m.get("data", b"")[:400])
        check("the delivery is logged with the queue id and status=sent",
              relayd.wait_for(r"\w+-\w+: to=<ops@remote\.example> relay=\S+\[127\.0\.0\.1\]:\d+ status=sent"))
        check("the queue is empty afterwards", wait(lambda: not relayd.queued()),
              relayd.queued())

        p = relayd.sendmail(["-t", "-i"], "From: cron@example.test\nTo: admin@remote.example\n"
                                          "Bcc: hidden@remote.example\nSubject: report\n\nAll fine.\n.\nstill body\n")
        check("relayguard-sendmail -t queues and exits 0", p.returncode == 0, p.stderr)
        check("and the message arrives", sink.wait_count(2, 15) == 2, relayd.log()[-1500:])
        m = sink.messages()[-1] if sink.count() >= 2 else {}
        check("-t took To and Bcc as recipients, and the Bcc header was removed",
              sorted(m.get("recipients", [])) == ["admin@remote.example", "hidden@remote.example"] and
              b"Bcc" not in m.get("data", b"") and b"still body" in m.get("data", b""), m)

    # --- 4xx, then recovery; down, then up ---
    with Relayd(smarthosts(sink.address) + FAST) as relayd:
        sink.restart(soft_reject=("RCPT",))
        r = send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["b@remote.example"])
        check("the relay client acknowledges a message only once it is queued", r.delivered, r.summary())
        check("a 4xx at RCPT defers it", relayd.wait_for(r"to=<b@remote\.example> .*status=deferred \(450"),
              relayd.log()[-1500:])
        check("it stays in the queue", len(relayd.queued()) == 1, relayd.queued())
        before = sink.count()
        sink.restart(soft_reject=())
        relayd.queue("flush")
        check("when the sink accepts again, the message goes out", sink.wait_count(before + 1, 20) == before + 1,
              relayd.log()[-1500:])
        check("and leaves the queue", wait(lambda: not relayd.queued()), relayd.queued())

        sink.stop()
        r = send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["c@remote.example"])
        check("with the sink down, a message is still accepted", r.delivered, r.summary())
        check("and deferred as the destination cannot be reached",
              relayd.wait_for(r"to=<c@remote\.example> relay=none status=deferred"), relayd.log()[-1500:])
        listed = relayd.queue("list")
        check("relayguard-relayd queue list shows it", "1 message(s)" in listed.stdout, listed.stdout + listed.stderr)
        qid = relayd.queued()[0]
        shown = relayd.queue("show", qid)
        check("queue show gives its envelope", shown.returncode == 0 and "to: <c@remote.example>  to go" in shown.stdout,
              shown.stdout + shown.stderr)
        send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["gone@remote.example"])
        send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["dropped@remote.example"])
        ids = [i for i in relayd.queued() if i != qid]
        bounced = relayd.queue("bounce", ids[0])
        deleted = relayd.queue("delete", ids[1])
        # The bounce to a@example.test is a new message, queued beside the one left.
        check("queue bounce fails what was left, removes it and queues the bounce; queue delete removes it",
              bounced.returncode == 0 and "status=bounced" in bounced.stdout and deleted.returncode == 0 and
              qid in relayd.queued() and ids[0] not in relayd.queued() and ids[1] not in relayd.queued()
              and len(relayd.queued()) == 2, (bounced.stdout, deleted.stdout, relayd.queued()))
        sink.start()
        check("the sink comes up and the retry delivers it, and the bounce",
              sink.wait_count(before + 3, 30) == before + 3, relayd.log()[-1500:])
        check("the bounce went to the sender from the null sender",
              any(m["sender"] == "" and m["recipients"] == ["a@example.test"] for m in sink.messages()),
              [(m["sender"], m["recipients"]) for m in sink.messages()])
        check("the queue is empty again", wait(lambda: not relayd.queued()), relayd.queued())

# --- limits, LMTP, a smart host whose name does not resolve, reload ---
with SmtpSink() as sink:
    limits = 'max_message_size = "2KB"\nmax_queue_messages = 1\n'
    with Relayd(smarthosts("smarthost.invalid:25") + FAST + limits,
                extra_config='[dns]\nservers = ["127.0.0.1:1"]\ntimeout = "200ms"\ntries = 1\n') as relayd:
        s = SmtpSession("127.0.0.1", relayd.port)
        s.ehlo("client.test")
        big = s.mail("a@example.test", size=10_000)
        check("a declared SIZE over max_message_size gets 552 5.3.4", big.code == 552 and big.enhanced == "5.3.4", big)
        s.close()
        r = send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["x@remote.example"])
        check("a message is queued", r.delivered, r.summary())
        check("our smart host's name not resolving defers, never bounces",
              relayd.wait_for(r"to=<x@remote\.example> relay=none status=deferred \(smarthost\.invalid: lookup failed"),
              relayd.log()[-1500:])
        r = send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["y@remote.example"])
        check("with max_queue_messages reached, MAIL gets 452 4.3.1 and the client keeps its mail",
              r.mail is not None and r.mail.code == 452 and r.mail.enhanced == "4.3.1", r.summary())

        # SIGHUP: the new routing applies to the message already queued.
        relayd.write_config(smarthosts(sink.address) + FAST + limits)
        relayd.reload()
        check("SIGHUP reloads the config, naming what changed",
              relayd.wait_for(r"reload: configuration \S+ applied: changed delivery\.smarthosts; .*apply to queued mail"),
              relayd.log()[-800:])
        relayd.queue("flush")
        check("and the queued message goes to the new smart host", sink.wait_count(1, 20) == 1, relayd.log()[-1500:])

        # LMTP: one reply per recipient after the data.
        s = SmtpSession("127.0.0.1", relayd.port)
        s.raw("LHLO client.test")
        s.mail("a@example.test")
        s.rcpt("one@remote.example")
        s.rcpt("two@remote.example")
        first = s.data("Subject: lmtp\r\n\r\nhello\r\n")
        second = s.read_reply("DATA (second recipient)")
        check("LMTP answers each recipient after the data", first.code == 250 and second.code == 250,
              (str(first), str(second)))
        s.quit()
        check("and the message arrives for both", sink.wait_count(2, 20) == 2 and
              sorted(sink.messages()[-1]["recipients"]) == ["one@remote.example", "two@remote.example"],
              relayd.log()[-1500:])

        idle = SmtpSession("127.0.0.1", relayd.port)
        started = time.monotonic()
        rc = relayd.stop()
        check("SIGTERM stops the daemon at once, an idle client connected or not",
              rc == 0 and time.monotonic() - started < 5, (rc, time.monotonic() - started))
        idle.close()

# --- a smart host that takes the connection and never answers: the watchdog ---
hung = socket.socket()
hung.bind(("127.0.0.1", 0))
hung.listen(16)  # never accepted: connects succeed, no greeting ever comes
with Relayd(smarthosts(f"127.0.0.1:{hung.getsockname()[1]}") + FAST.replace('command_timeout = "10s"',
                                                                          'command_timeout = "1s"')) as relayd:
    started = time.monotonic()
    send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["z@remote.example"])
    deferred = relayd.wait_for(r"to=<z@remote\.example> relay=none status=deferred \(.*no reply in time", timeout=10)
    check("a hung smart host is given up after command_timeout and the message deferred",
          deferred and time.monotonic() - started < 5, relayd.log()[-1500:])
hung.close()

# --- a smart host that requires STARTTLS and AUTH; one recipient of three unknown ---
certs = tempfile.mkdtemp(prefix="rgtest-certs-")
cert, key = make_test_cert(certs, ips=("127.0.0.1", "127.0.0.46"))
# An smtps service (implicit TLS) beside the STARTTLS one: port 465 on an
# address of its own, so it cannot clash with anything on the machine.
SMTPS = "127.0.0.46:465 inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n"
with DovecotInstance(pop3_port=free_port(), auth_port=free_port()) as dov, \
        smarthost_postfix(dov, cert, key, free_port(), extra_master_cf=SMTPS) as sh:
    settings = (smarthosts(f"127.0.0.1:{sh.port}") + FAST +
                'auth = "smtp-auth"\nusername = "u1"\npassword = "secret1"\n'
                f'starttls = "required"\ntls_ca_file = "{cert}"\n')
    with Relayd(settings) as relayd:
        r = send_message("127.0.0.1", relayd.port, sender="a@example.test",
                         rcpts=["user1@example.test", "user2@example.test", "nobody@example.test"])
        check("the relay client takes a message for three recipients", r.delivered, r.summary())
        check("the smart host delivers it to the two it knows", wait_delivered(sh, 1, 20) >= 1, relayd.log()[-2000:])
        check("over TLS with AUTH (Received: with ESMTPSA)",
              any(b"with ESMTPSA" in msg for msg in mailbox(sh, "user1@example.test")))
        check("the unknown recipient fails permanently with the smart host's own 550, alone",
              relayd.wait_for(r"to=<nobody@example\.test> .*status=bounced \(550") and
              relayd.wait_for(r"to=<user2@example\.test> .*status=sent"), relayd.log()[-2000:])
        check("the message leaves the queue", wait(lambda: not relayd.queued()), relayd.queued())
        check("the password is in no log line", "secret1" not in relayd.log())

    with Relayd(settings + "threads = 1\n") as relayd:
        tls_before = len(tls_sessions(sh))
        sent_before = delivered_count(sh)
        for n in range(4):
            send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["user1@example.test"],
                         headers={"Subject": f"reuse {n}"})
        check("four messages to the smart host are delivered", wait_delivered(sh, sent_before + 4, 20) >= sent_before + 4,
              relayd.log()[-1500:])
        opened = len(tls_sessions(sh)) - tls_before
        check("over one kept session: one TLS handshake and one AUTH for all four", opened == 1, opened)

    implicit = (smarthosts("127.0.0.46:465") + FAST + 'auth = "smtp-auth"\nusername = "u1"\npassword = "secret1"\n'
                f'tls_ca_file = "{cert}"\nhelo_name = "relay.test"\n')
    with Relayd(implicit) as relayd:
        before = len(mailbox(sh, "user2@example.test"))
        send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["user2@example.test"])
        check("port 465: implicit TLS, the certificate verified, AUTH, delivered",
              relayd.wait_for(r"to=<user2@example\.test> relay=127\.0\.0\.46\[127\.0\.0\.46\]:465 status=sent") and
              wait(lambda: len(mailbox(sh, "user2@example.test")) > before), relayd.log()[-1500:])

    opportunistic = (smarthosts(f"127.0.0.1:{sh.port}") + FAST +
                     'auth = "smtp-auth"\nusername = "u1"\npassword = "secret1"\nstarttls = "opportunistic"\n')
    with Relayd(opportunistic) as relayd:
        before = len(mailbox(sh, "user2@example.test"))
        send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["user2@example.test"])
        check("opportunistic TLS: a certificate it cannot verify still encrypts, and the mail goes out",
              relayd.wait_for(r"to=<user2@example\.test> .*status=sent") and
              wait(lambda: len(mailbox(sh, "user2@example.test")) > before), relayd.log()[-1500:])

    bad = settings.replace('password = "secret1"', 'password = "wrong"')
    with Relayd(bad) as relayd:
        send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=["user1@example.test"])
        check("a smart host refusing our AUTH (535) defers, never bounces",
              relayd.wait_for(r"to=<user1@example\.test> relay=none status=deferred \(.*AUTH: 535"), relayd.log()[-1500:])
        check("the message stays queued", len(relayd.queued()) == 1, relayd.queued())
        check("the wrong password is in no log line either", '"wrong"' not in relayd.log() and " wrong" not in relayd.log())
finish()
