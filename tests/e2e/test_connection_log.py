#!/usr/bin/python3
"""The connection log through a private Postfix: one key=value line per SMTP session at
its close, with the client, its PTR, HELO, messages, recipients, refusals and result, in
the main log and in log.connection_log_file, in a form grep and scripts can read."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402


def with_connection_file(rules):
    """A daemon whose connection log also goes to a file of its own: (daemon, file)."""
    daemon = Relayguard(rules, log_settings='connection_log = true\nconnection_log_file = "CONN"')
    path = os.path.join(daemon.dir, "connections.log")
    with open(daemon.config) as f:
        text = f.read().replace("CONN", path)
    with open(daemon.config, "w") as f:
        f.write(text)
    return daemon, path


rg, conn_file = with_connection_file('[relay]\nlocal_domains = ["example.test"]\n[limits]\nexempt_group = ""\n'
                                     '[limits.failed_commands]\nmax = 2\n')

LINE = re.compile(r"session (.*) via=milter")


def sessions(client):
    out = []
    with open(conn_file) as f:
        for line in f:
            m = LINE.search(line)
            if m and f"client={client} " in line:
                out.append(dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', m.group(1))))
    return out


def wait_sessions(client, n=1, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(sessions(client)) >= n:
            break
        time.sleep(0.1)
    return sessions(client)


with rg, PostfixInstance(port=free_port(), milter=rg.milter,
                         local_users=("user1@example.test", "user2@example.test")) as pf:
    r = send_message("127.0.0.1", pf.port, source="127.0.0.51", sender="s@example.org",
                     rcpts=["user1@example.test", "user2@example.test"], helo="client51.example")
    check("a message to two local users goes through", r.delivered, r.summary())
    got = wait_sessions("127.0.0.51")
    s = got[0] if got else {}
    check("one line for the session: 1 message, 2 recipients, result ok",
          len(got) == 1 and s.get("messages") == "1" and s.get("recipients") == "2" and s.get("result") == "ok"
          and s.get("refusals") == "0", got)
    check("with the HELO and the PTR Postfix gave", s.get("helo") == '"client51.example"' and "ptr" in s, s)
    check("and how long it lasted", re.fullmatch(r"\d+\.\d{3}s", s.get("duration", "")) is not None, s)

    r = send_message("127.0.0.1", pf.port, source="127.0.0.52", sender="s@example.org", rcpts=["x@foreign.example"])
    got = wait_sessions("127.0.0.52")
    s = got[0] if got else {}
    check("a relay attempt: result refused, the rule named, no message",
          s.get("result") == "refused" and s.get("last_rule") == '"relay"' and s.get("messages") == "0", got)

    sess = SmtpSession("127.0.0.1", pf.port, source="127.0.0.53", closed_ok=True)
    sess.ehlo("noisy.example")
    sess.mail("s@example.org")
    codes = [sess.rcpt(f"x{i}@foreign.example").code for i in range(3)]
    check("three refused relay attempts, the third answered 421 (failed_commands max = 2)",
          codes == [554, 554, 421], codes)
    sess.close()
    got = wait_sessions("127.0.0.53")
    check("a session ended for failed commands: result closed",
          got and got[0].get("result") == "closed" and got[0].get("last_rule") == '"failed_commands"', got)
    check("the lines are in the main log too", "relayguard/connection" in rg.log() and "client=127.0.0.51" in rg.log())

# Both front ends, as the shipped snippet wires them: the policy service's refusals and a
# harvest block set at recipients Postfix refused itself count in the session's line.
both, conn_file = with_connection_file('[relay]\nlocal_domains = ["example.test"]\n[limits]\nexempt_group = ""\n'
                                       '[limits.unknown_recipients]\nmax = 2\n')
with both, PostfixInstance(port=free_port(), milter=both.milter, policy=both.policy, policy_at=("rcpt",),
                           local_users=("user1@example.test",)) as pf:
    r = send_message("127.0.0.1", pf.port, source="127.0.0.54", sender="s@example.org", rcpts=["x@foreign.example"])
    check("a relay attempt refused by the policy service (554)", r.rcpts and r.rcpts[0][1].code == 554, r.summary())
    got = wait_sessions("127.0.0.54")
    check("its session line counts the policy service's refusal, naming the rule",
          got and got[0].get("refusals") == "1" and got[0].get("last_rule") == '"relay"' and
          got[0].get("result") == "refused", got)

    sess = SmtpSession("127.0.0.1", pf.port, source="127.0.0.55", closed_ok=True)
    sess.ehlo("harvester.example")
    sess.mail("s@example.org")
    guesses = [sess.rcpt(f"guess{i}@example.test") for i in range(2)]
    after = sess.rcpt("user1@example.test")
    sess.close()
    check("two unknown users get Postfix's own 550 5.1.1, then the client is blocked (450)",
          [g.code for g in guesses] == [550, 550] and after.code == 450, (guesses, after))
    seen = both.log()
    refused = [line for line in seen.splitlines() if "refused client=127.0.0.55" in line and "guess1@" in line]
    check("the security log gives the recipient that set the block the reply the client saw (550 5.1.1)",
          refused and 'reply="550 5.1.1' in refused[-1] and "Client blocked" not in refused[-1], refused)
    check("and logs the block as an event of its own",
          re.search(r'blocked client=127\.0\.0\.55 rule=unknown_recipients stage=rcpt via=milter '
                    r'detail="distinct_unknown=2 limit=2 blocked_for=3600s" then="450 4\.7\.1 ', seen), seen[-2000:])
    got = wait_sessions("127.0.0.55")
    check("its session line counts the block and the refusal after it",
          got and int(got[0].get("refusals", "0")) >= 2 and got[0].get("last_rule") == '"unknown_recipients"' and
          got[0].get("result") == "refused", got)
finish()
