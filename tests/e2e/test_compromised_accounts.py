#!/usr/bin/python3
"""A compromised account through real servers: Postfix with Dovecot SASL and
relayguard as its milter, relaying to an smtp-sink that stands for the
Internet. u1 logs in from 3 networks and its mail flows; from a 4th its
next message is accepted but held in Postfix's hold queue (postqueue -j),
an alert reaches the admin's mailbox, the configured command runs with the
user and the reason; `relayguardctl user show` names the held queue id,
`relayguardctl user release` lifts the mark and releases the mail, which
then reaches the sink. `user clear` lifts a mark and leaves the mail held."""

import email
import email.policy
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

work = tempfile.mkdtemp(prefix="rgtest-compromised-")
os.chmod(work, 0o755)
ADMIN = os.path.join(work, "admin.sock")
COMMAND_OUT = os.path.join(work, "command.out")
COMMAND = os.path.join(work, "disable-account.sh")
with open(COMMAND, "w") as f:
    f.write(f'#!/bin/sh\nprintf "%s|%s\\n" "$1" "$2" >> {COMMAND_OUT}\n')
os.chmod(COMMAND, 0o755)


def ctl(*args):
    return subprocess.run([os.environ["RELAYGUARDCTL"], "--socket", ADMIN, *args], capture_output=True, text=True,
                          timeout=20)


def send(pf, source, subject):
    return send_message("127.0.0.1", pf.port, source=source, sender="u1@example.test",
                        rcpts=["friend@foreign.example"], auth=("u1", "secret1"), headers={"Subject": subject})


def queue(pf):
    p = subprocess.run(["postqueue", "-c", pf.etc, "-j"], capture_output=True, text=True, timeout=10)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def subjects(sink):
    return [str(email.message_from_bytes(m["data"], policy=email.policy.default)["Subject"]) for m in sink.messages()]


try:
    with SmtpSink() as internet, SmtpSink() as admin_mailbox:
        config = f"""
[relay]
local_domains = ["example.test"]
[limits.compromised_accounts]
max_networks = 3
window = "1h"
command = ["{COMMAND}"]
[alerts]
recipients = ["postmaster@example.test"]
sender = "relayguard@mx.example.test"
submit = "{admin_mailbox.address}"
"""
        with Relayguard(config, admin=ADMIN) as rg, \
                DovecotInstance(pop3_port=free_port(), auth_port=free_port(), users={"u1": "secret1"}) as dov, \
                PostfixInstance(port=free_port(), milter=rg.milter, sasl_path=dov.sasl_path,
                                extra_main_cf={"relayhost": f"[127.0.0.1]:{internet.port}",
                                               "default_transport": "smtp", "relay_transport": "smtp",
                                               "smtp_tls_security_level": "none"}) as pf:
            for i, source in enumerate(["127.0.0.100", "127.0.1.100", "127.0.2.100", "127.0.0.101"]):
                r = send(pf, source, f"normal {i}")
                check(f"u1 sends from {source} and it is accepted", r.delivered, r.summary())
            check("those 4 messages (3 networks) reach the sink",
                  wait(lambda: internet.count() >= 4) and sorted(subjects(internet)) == [f"normal {i}" for i in range(4)],
                  subjects(internet))

            r = send(pf, "127.0.3.100", "from a 4th network")
            check("from a 4th network the message is accepted (250: the sender is not told)", r.delivered, r.summary())
            held = wait(lambda: [m for m in queue(pf) if m.get("queue_name") == "hold"])
            check("and sits in Postfix's hold queue", len(held) == 1, queue(pf))
            held_id = held[0]["queue_id"] if held else None
            time.sleep(1)
            check("it did not reach the sink", internet.count() == 4, subjects(internet))
            check("the security log says the account is compromised and the message held",
                  "account-compromised user=\"u1\"" in rg.log() and f'held queue_id="{held_id}" ' in rg.log(),
                  rg.log()[-1500:])
            alert = wait(lambda: [m for m in admin_mailbox.messages()])
            body = email.message_from_bytes(alert[0]["data"], policy=email.policy.default) if alert else None
            check("an alert reaches the admin's mailbox",
                  body is not None and str(body["Subject"]).startswith("[relayguard] account_compromised: u1 on ")
                  and "relayguardctl user release u1" in body.get_content(), alert)
            out = wait(lambda: os.path.exists(COMMAND_OUT) and open(COMMAND_OUT).read())
            check("the configured command ran with the user and the reason",
                  out and out.startswith("u1|logged in from 4 networks within 3600s (limit 3)"), out)

            r = send(pf, "127.0.0.100", "after the mark, from home")
            check("the account's next message, even from a known network, is held too",
                  r.delivered and wait(lambda: len([m for m in queue(pf) if m.get("queue_name") == "hold"]) == 2),
                  queue(pf))

            p = ctl("user", "show", "u1")
            check("relayguardctl user show names the mark and the held queue ids",
                  p.returncode == 0 and "COMPROMISED since" in p.stdout and "2 message(s) held" in p.stdout
                  and held_id in p.stdout and "logged in from 4 network(s)" in p.stdout, p.stdout + p.stderr)
            p = ctl("--postfix-config", pf.etc, "user", "release", "u1")
            check("relayguardctl user release lifts the mark and releases both",
                  p.returncode == 0 and "mark lifted from u1" in p.stdout and "released 2 message(s)" in p.stdout,
                  p.stdout + p.stderr)
            check("both then reach the sink", wait(lambda: internet.count() >= 6, timeout=30)
                  and {"from a 4th network", "after the mark, from home"} <= set(subjects(internet)),
                  subjects(internet))
            sent = [send(pf, f"127.0.{n}.100", f"after the release {n}").delivered for n in (3, 4, 5)]
            check("after the release u1's mail flows again, its networks counted afresh",
                  all(sent) and wait(lambda: internet.count() >= 9), subjects(internet))
            r = send(pf, "127.0.6.100", "4th network again")
            check("a 4th network since the release marks it again and holds", r.delivered
                  and wait(lambda: len([m for m in queue(pf) if m.get("queue_name") == "hold"]) == 1), queue(pf))
            p = ctl("user", "clear", "u1")
            check("relayguardctl user clear lifts the mark without releasing",
                  p.returncode == 0 and "left in the hold queue" in p.stdout, p.stdout + p.stderr)
            time.sleep(1)
            check("the held message stays held", len([m for m in queue(pf) if m.get("queue_name") == "hold"]) == 1,
                  queue(pf))
            p = ctl("user", "show", "u1")
            check("and user show says the account is not marked", "not marked compromised" in p.stdout, p.stdout)

        # The policy service alone, asked at RCPT and END-OF-MESSAGE: OK at
        # RCPT (relay stays open), HOLD at end of data.
        with Relayguard(config, admin=ADMIN, milter=False) as rg, \
                DovecotInstance(pop3_port=free_port(), auth_port=free_port(), users={"u1": "secret1"}) as dov, \
                PostfixInstance(port=free_port(), policy=rg.policy, policy_at=("rcpt", "eom"),
                                sasl_path=dov.sasl_path,
                                extra_main_cf={"relayhost": f"[127.0.0.1]:{internet.port}",
                                               "default_transport": "smtp", "relay_transport": "smtp",
                                               "smtp_tls_security_level": "none"}) as pf:
            before = internet.count()
            sent = [send(pf, f"127.0.{n}.200", f"policy {n}").delivered for n in range(4)]
            check("policy: u1's 4 messages from 4 networks are accepted", all(sent), sent)
            held = wait(lambda: [m for m in queue(pf) if m.get("queue_name") == "hold"])
            check("policy: the 4th is held by the HOLD answer at END-OF-MESSAGE, the first 3 delivered",
                  len(held) == 1 and wait(lambda: internet.count() == before + 3), (queue(pf), subjects(internet)))
            p = ctl("user", "show", "u1")
            check("policy: user show lists its queue id, known at END-OF-MESSAGE",
                  held and held[0]["queue_id"] in p.stdout, p.stdout)
            p = ctl("--postfix-config", pf.etc, "user", "release", "u1")
            check("policy: user release delivers it", p.returncode == 0 and "released 1 message(s)" in p.stdout
                  and wait(lambda: internet.count() == before + 4, timeout=30), p.stdout + p.stderr)
finally:
    shutil.rmtree(work, ignore_errors=True)

sys.exit(finish())
