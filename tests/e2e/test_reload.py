#!/usr/bin/python3
"""Reloading the policy daemon under a private Postfix (milter and policy service): SIGHUP
and `relayguardctl reload` apply new relay rules and limits to the next decision, an SMTP
session open across the reload goes on and delivers, and a config with an error is
refused with its file, line and key while the running rules stay in force."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard, under_thread_sanitizer  # noqa: E402

CTL = os.environ["RELAYGUARDCTL"]
RULES = """
[relay]
local_domains = ["{domains}"]
[limits]
exempt_group = ""
[limits.message_rate]
max = {rate}
"""
sock_dir = tempfile.mkdtemp(prefix="rgtest-reload-")
socket_path = os.path.join(sock_dir, "admin.sock")


def rewrite(rg, body):
    """Keeps the fixture's [listen] and [log] head, replaces the rules."""
    with open(rg.config) as f:
        head = f.read().split("\n[relay]\n")[0]
    with open(rg.config, "w") as f:
        f.write(head + body)


def ctl(*args):
    return subprocess.run([CTL, "--socket", socket_path, *args], capture_output=True, text=True, timeout=10)


with Relayguard(RULES.format(domains="example.test", rate=100), admin=socket_path) as rg, \
        PostfixInstance(port=free_port(), milter=rg.milter, policy=rg.policy, policy_at=("rcpt",),
                        mydestination="example.test other.test",
                        local_users=("user1@example.test", "user1@other.test")) as pf:
    r = send_message("127.0.0.1", pf.port, source="127.0.0.31", sender="s@example.org", rcpts=["user1@other.test"])
    check("before the reload other.test is not local: relaying refused (554)",
          r.rcpts and r.rcpts[0][1].code == 554, r.summary())

    # A session opened before the reload ...
    s = SmtpSession("127.0.0.1", pf.port, source="127.0.0.32")
    s.ehlo("client.example")
    check("a session opened before the reload takes MAIL", s.mail("s@example.org").code == 250)

    rewrite(rg, RULES.format(domains='example.test", "other.test', rate=1))
    rg.proc.send_signal(signal.SIGHUP)
    check("SIGHUP: the daemon logs that the new configuration applies",
          rg.wait_for(r"reload: configuration \S+ applied"), rg.log()[-1500:])

    # A burst of SIGHUPs, many of them arriving while a reload runs. libmilter's
    # own signal thread takes any SIGHUP that the main thread is not waiting
    # for as "stop the milter" and ends it some seconds later; the daemon must
    # keep its main thread waiting so that none goes there. Not under
    # ThreadSanitizer: it runs every signal handler with all signals blocked
    # (its sigaction fills sa_mask), undoing the daemon's SA_NODEFER, so a
    # SIGHUP arriving during the handler goes to libmilter there alone.
    burst = 0 if under_thread_sanitizer(rg.binary) else 200
    if not burst:
        print("skip the SIGHUP burst: ThreadSanitizer blocks signals while a handler runs", flush=True)
    burst_at = time.monotonic()
    for _ in range(burst):
        rg.proc.send_signal(signal.SIGHUP)

    # ... goes on under the new rules and delivers.
    c = s.rcpt("user1@other.test")
    check("that session, still open, now may send to other.test", c.code == 250, c)
    d = s.data("Subject: across the reload\r\n\r\nhello\r\n")
    check("and its message is accepted", d.code == 250, d)
    s.quit()
    s.close()
    check("the daemon is still the same process", rg.alive(),
          "\n".join(line for line in rg.log().splitlines() if line.startswith("20"))[-3000:])

    r = send_message("127.0.0.1", pf.port, source="127.0.0.33", sender="s@example.org", rcpts=["user1@other.test"])
    check("a new session relays to other.test", r.delivered, r.summary())
    r = send_message("127.0.0.1", pf.port, source="127.0.0.33", sender="s@example.org", rcpts=["user1@other.test"])
    check("and the new message rate (1) holds: the second message is refused (450)",
          not r.delivered and r.mail is not None and r.mail.code == 450, r.summary())

    # A broken config: refused, named, and the running rules stay.
    rewrite(rg, RULES.format(domains="example.test", rate=1) + "[limits.recipients]\nmax = \"many\"\n")
    p = ctl("reload")
    check("relayguardctl reload of a broken config exits 1 and names file, line and key",
          p.returncode == 1 and "relayguard.toml:" in p.stderr and "limits.recipients.max" in p.stderr,
          p.stdout + p.stderr)
    check("the log says the reload was refused and the running configuration stays",
          rg.wait_for(r"reload refused, the running configuration stays: .*limits\.recipients\.max"), rg.log()[-1500:])
    r = send_message("127.0.0.1", pf.port, source="127.0.0.34", sender="s@example.org", rcpts=["user1@other.test"])
    check("other.test is still local (the broken file changed nothing)", r.delivered, r.summary())

    rewrite(rg, RULES.format(domains="example.test", rate=100))
    p = ctl("reload")
    check("relayguardctl reload of a good config exits 0", p.returncode == 0, p.stdout + p.stderr)
    r = send_message("127.0.0.1", pf.port, source="127.0.0.35", sender="s@example.org", rcpts=["user1@other.test"])
    check("after it, other.test is foreign again (554)", r.rcpts and r.rcpts[0][1].code == 554, r.summary())

    with open(rg.config) as f:
        text = f.read()
    with open(rg.config, "w") as f:
        f.write(text.replace('stage_timeout = "5s"', 'stage_timeout = "4s"'))
    p = ctl("reload")
    check("a changed listen.stage_timeout is said to need a restart (exit 2)",
          p.returncode == 2 and "NOT applied, needs a restart" in p.stdout and "listen.stage_timeout" in p.stdout and
          rg.wait_for(r"reload: NOT applied, needs a restart \(the running values stay\): listen\.stage_timeout"),
          (p.returncode, p.stdout, rg.log()[-1000:]))

    # The policy socket and the store moved in the file: neither moves in the running
    # daemon, and neither the reply nor the log pretends otherwise.
    new_policy = free_port()
    with open(rg.config) as f:
        text = f.read()
    with open(rg.config, "w") as f:
        f.write(text.replace(f"inet:127.0.0.1:{rg.policy_port}", f"inet:127.0.0.1:{new_policy}") +
                '[store]\ntype = "redis"\n')
    mark = len(rg.log())
    p = subprocess.run([CTL, "--socket", socket_path, "--json", "reload"], capture_output=True, text=True, timeout=10)
    answer = json.loads(p.stdout or "{}")
    check("reload after changing listen.policy and store.type: exit 2, both named as needing a restart",
          p.returncode == 2 and {"listen.policy", "store.type"} <= set(answer.get("needs_restart", [])) and
          "listen.policy" not in answer.get("applied", []), (p.returncode, p.stdout, p.stderr))
    check("the log names them as not applied",
          rg.wait_for(r"NOT applied, needs a restart \(the running values stay\): .*listen\.policy.*store\.type"),
          rg.log()[mark:])
    effective = [line for line in rg.log()[mark:].splitlines() if "policy=" in line and "store=" in line]
    check("and its line of settings in effect shows the running socket and store, not the file's",
          effective and f"policy=inet:127.0.0.1:{rg.policy_port}" in effective[-1] and "store=memory" in effective[-1],
          effective)
    r = send_message("127.0.0.1", pf.port, source="127.0.0.37", sender="s@example.org", rcpts=["user1@example.test"])
    check("Postfix still reaches the policy service on its old port: mail is delivered", r.delivered, r.summary())

    # libmilter's listener notices a stop within about 10 s.
    time.sleep(max(0.0, burst_at + 11 - time.monotonic()))
    check(f"after {burst} SIGHUPs in a burst the daemon still runs", rg.alive(), rg.log()[-1000:])
    r = send_message("127.0.0.1", pf.port, source="127.0.0.36", sender="s@example.org", rcpts=["user1@example.test"])
    check("and its milter still answers: mail is delivered", r.delivered, r.summary())
    if burst:
        check("the burst was taken as reloads, folded together",
              2 <= rg.log().count("received SIGHUP") < burst, rg.log().count("received SIGHUP"))
finish()
