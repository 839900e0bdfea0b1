#!/usr/bin/python3
"""The memory store's counters and blocks survive a clean restart (store.memory_snapshot),
through a private Postfix: a harvester blocked for an hour and a client at its message
rate are still refused after `systemctl restart` (SIGTERM, then a new process); the file
is 0600 and removed once read, so a crash later never brings back a block an admin
lifted; a file that is not a snapshot is set aside with a clear line and the daemon runs.
Without the setting, a restart forgets (the old behaviour, checked so the test can fail)."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

CTL = os.environ["RELAYGUARDCTL"]
LOCAL = "user1@example.test"
RULES = """
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.unknown_recipients]
max = 2
block_time = "1h"
[limits.message_rate]
max = 2
[store]
memory_snapshot = "{snapshot}"
"""


def harvest(pf, source):
    """Two unknown users (Postfix's 550), then a known one: 450 once blocked."""
    s = SmtpSession("127.0.0.1", pf.port, source=source, closed_ok=True)
    s.ehlo("harvester.example")
    s.mail("s@example.org")
    for i in range(2):
        s.rcpt(f"guess{i}@example.test")
    code = s.rcpt(LOCAL).code
    s.close()
    return code


def send(pf, source):
    return send_message("127.0.0.1", pf.port, source=source, sender="s@example.org", rcpts=[LOCAL])


def restart(rg):
    rc = rg.stop()
    log = rg.log()
    rg.start()
    return rc, log


for keep in (True, False):
    state = tempfile.mkdtemp(prefix="rgtest-snapshot-")
    snapshot = os.path.join(state, "memory-store.snapshot") if keep else ""
    admin = os.path.join(state, "admin.sock")
    with Relayguard(RULES.format(snapshot=snapshot), admin=admin) as rg, \
            PostfixInstance(port=free_port(), milter=rg.milter, local_users=(LOCAL,)) as pf:
        label = "with store.memory_snapshot" if keep else "without store.memory_snapshot"
        check(f"{label}: a harvester is blocked (450) after 2 unknown users", harvest(pf, "127.0.0.61") == 450)
        sent = [send(pf, "127.0.0.62") for _ in range(3)]
        check(f"{label}: a client sends 2 messages, its limit; the 3rd is refused",
              sent[0].delivered and sent[1].delivered and not sent[2].delivered, [r.summary() for r in sent])
        rc, stopped_log = restart(rg)
        check(f"{label}: the daemon stops cleanly", rc == 0, stopped_log[-1500:])
        r = send(pf, "127.0.0.61")
        r2 = send(pf, "127.0.0.62")
        if keep:
            check("the stop says where the counters were kept",
                  f"store: counters and blocks kept in {snapshot}" in stopped_log, stopped_log[-1500:])
            check("the start says what it restored", rg.wait_for(r"store: restored from \S+: \d+ client\(s\), 1 of them "
                                                                 r"blocked"), rg.log()[-1500:])
            check("after the restart the harvester is still refused, by its block",
                  not r.delivered and rg.refusals(client="127.0.0.61", rule="unknown_recipients"), r.summary())
            check("and the client at its message rate still is", not r2.delivered, r2.summary())
            p = subprocess.run([CTL, "--socket", admin, "ip", "show", "127.0.0.61"], capture_output=True, text=True,
                               timeout=10)
            check("ip show after the restart: the block and its time left",
                  "blocked (directory harvest) until" in p.stdout, p.stdout + p.stderr)
            check("the snapshot was removed once read", not os.path.exists(snapshot), os.listdir(state))
            rg.stop()
            st = os.stat(snapshot) if os.path.exists(snapshot) else None
            check("the file a stop writes is 0600", st and st.st_mode & 0o777 == 0o600, st and oct(st.st_mode))
            # A file that is not a snapshot: set aside, the daemon runs on.
            with open(snapshot, "w") as f:
                f.write("relayguard-memory-store 1\nclient zz 1 0 0\n" + "x" * 1000 + "\n")
            rg.start()
            check("a file that is not a snapshot: the daemon starts anyway, saying why",
                  rg.alive() and rg.wait_for(r"store: \S+ is not a usable snapshot \(line 2 is not part of a snapshot\); "
                                             r"moved to \S+\.bad, starting with no counters"), rg.log()[-1500:])
            check("and keeps it aside for the admin", os.path.exists(snapshot + ".bad"))
            r = send(pf, "127.0.0.63")
            check("and mail flows", r.delivered, r.summary())
        else:
            check("without the setting a restart forgets: the harvester is let in again", r.delivered, r.summary())
finish()
