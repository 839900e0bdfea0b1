#!/usr/bin/python3
"""A drop-in install protects a stock Postfix with no tuning: relayguard started on the
packaged config file (build/packaged/relayguard.toml, installed as
/etc/relayguard/relayguard.toml) and a private Postfix with the shipped snippet
(contrib/postfix/main.cf.snippet, only its ports replaced) and Postfix's own stock
throttles (the fixture's test-friendly overrides undone).  Postfix hosts example.test
(mydestination) and virtual.test (a virtual alias domain in a hash: table); relayguard
learns both from Postfix (local_domains_from = "postfix").

With not one of relayguard's limits edited, it
  * accepts mail for every domain Postfix hosts and refuses relay to a foreign one,
  * blocks a directory-harvest client (450 4.7.1, rule=unknown_recipients) while other
    clients still get through,
  * refuses a mail loop (60 Received: headers) with a 5xx (Postfix's hopcount_limit or
    relayguard's limits.hops, whichever fires first; the test says which),
  * has a command flood cut off with 421 (Postfix's smtpd_hard_error_limit, or
    relayguard's limits.failed_commands, whichever fires first; the test says which),
  * says at start what it protects against.
On a stock Postfix those two floods are stopped by Postfix itself (hard error limit 20,
hopcount_limit 50 -- which refuses from 49 arriving Received: headers), so at the end an
admin raises Postfix's own limits (smtpd_hard_error_limit = hopcount_limit = 100, reload)
and relayguard's untouched defaults must act alone: the 21st failed command is answered
421 4.7.0 "Too many failed commands; closing connection" (rule=failed_commands), and 60
Received: headers get 554 5.4.6 (rule=hops).
The only edits to the packaged file are those a test machine forces (see CONFIG_EDITS)."""

import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, build_message, free_port, send_message, wait_port  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.snippet import read_main_cf  # noqa: E402
from rgtest.daemon import stop_process  # noqa: E402

SNIPPET = os.path.join(os.environ["RELAYGUARD_SOURCE_DIR"], "contrib/postfix/main.cf.snippet")
BUILD_DIR = os.environ.get("RELAYGUARD_BUILD_DIR") or os.path.dirname(os.path.abspath(os.environ["RELAYGUARD_BIN"]))
PACKAGED = os.path.join(BUILD_DIR, "packaged", "relayguard.toml")

# Postfix settings the fixture turns off so that other tests see relayguard's limits alone;
# here they get Postfix's compiled-in defaults back (`postconf -d`), so this is a stock
# Postfix: smtpd_hard_error_limit 20, smtpd_soft_error_limit 10, smtpd_error_sleep_time 1s,
# smtpd_junk_command_limit 100, hopcount_limit 50, ...
STOCK_KEYS = ("smtpd_error_sleep_time", "smtpd_soft_error_limit", "smtpd_hard_error_limit",
              "smtpd_junk_command_limit", "smtpd_client_connection_count_limit",
              "smtpd_client_connection_rate_limit", "smtpd_client_message_rate_limit",
              "smtpd_client_recipient_rate_limit", "smtpd_client_new_tls_session_rate_limit",
              "smtpd_client_auth_rate_limit", "message_size_limit", "hopcount_limit")

LOCAL = "user1@example.test"
VIRTUAL = "info@virtual.test"


def postfix_defaults(keys):
    out = {}
    for k in keys:
        p = subprocess.run(["postconf", "-d", "-h", k], capture_output=True, text=True, timeout=30)
        if p.returncode != 0 or not p.stdout.strip():
            raise RuntimeError(f"postconf -d -h {k}: {p.returncode} {p.stderr}")
        out[k] = p.stdout.strip()
    return out


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p.stdout


def packaged_copy(milter_port, policy_port, mta_config, directory):
    """The packaged config with only what this test machine forces changed, each by exact
    string replacement that must match exactly once."""
    text = open(PACKAGED).read()
    edits = [
        # (1) the test's free ports instead of the well-known ones (other tests run alongside)
        ('milter = "inet:127.0.0.1:8893"', f'milter = "inet:127.0.0.1:{milter_port}"'),
        ('policy = "inet:127.0.0.1:10040"', f'policy = "inet:127.0.0.1:{policy_port}"'),
        # (1) no admin socket: the packaged one lives in /run/relayguard (systemd's RuntimeDirectory)
        ('admin = "unix:/run/relayguard/admin.sock"', 'admin = ""'),
        # (2) the private Postfix's config dir instead of the system's /etc/postfix
        ('mta_config = ""', f'mta_config = "{mta_config}"'),
        # (3) loopback is local on a real server, but this test's "outside" clients are
        #     127.0.0.2 and up: only 127.0.0.1 stays internal (and exempt from the limits)
        ('internal = ["127.0.0.0/8", "::1/128"]', 'internal = ["127.0.0.1/32", "::1/128"]'),
        # (4) the security log and the memory store's snapshot in the test's directory,
        #     not the system's /var/log/relayguard and /var/lib/relayguard
        ('security_log = "/var/log/relayguard/security.log"',
         f'security_log = "{os.path.join(directory, "security.log")}"'),
        ('memory_snapshot = "/var/lib/relayguard/memory-store.snapshot"',
         f'memory_snapshot = "{os.path.join(directory, "memory-store.snapshot")}"'),
    ]
    applied = []
    for old, new in edits:
        n = text.count(old)
        applied.append((old, n))
        if n == 1:
            text = text.replace(old, new)
    path = os.path.join(directory, "relayguard.toml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path, applied


def refusals(log, **fields):
    """Security-log lines 'refused ...' whose key=value pairs match (as Relayguard.refusals)."""
    out = []
    for line in log.splitlines():
        if " refused " not in line:
            continue
        if all(re.search(rf'\b{k}="?{re.escape(str(v))}\b', line) for k, v in fields.items()):
            out.append(line)
    return out


def replies(r):
    return [x for x in [r.greeting, r.ehlo, r.mail] + [rr for _, rr in r.rcpts] + [r.data] if x is not None]


# ---------------------------------------------------------------------------

check("the packaged config file exists", os.path.isfile(PACKAGED), PACKAGED)
packaged_text = open(PACKAGED).read()
for key, want in (("limits.unknown_recipients", "max = 20"), ("limits.failed_commands", "max = 20"),
                  ("limits.hops", "max = 50"), ("limits.connections", "max = 50"),
                  ("limits.recipients", "max = 1000")):
    section = re.search(rf"^\[{re.escape(key)}\]\n(.*?)(?=^\[)", packaged_text, re.S | re.M)
    check(f"packaged [{key}] {want} (the defaults under test)",
          section is not None and re.search(rf"^{re.escape(want)}$", section.group(1), re.M) is not None)
check('packaged relay.local_domains = [] and local_domains_from = "postfix"',
      re.search(r'^local_domains = \[\]$', packaged_text, re.M) is not None
      and re.search(r'^local_domains_from = "postfix"$', packaged_text, re.M) is not None)

milter_port, policy_port = free_port(), free_port()
cf = read_main_cf(SNIPPET, milter_port, policy_port)
check("the snippet, its ports replaced, points Postfix's milter and policy service at this relayguard",
      cf.get("smtpd_milters") == f"inet:127.0.0.1:{milter_port}"
      and f"check_policy_service inet:127.0.0.1:{policy_port}" in cf.get("smtpd_relay_restrictions", ""), cf)
cf.update(postfix_defaults(STOCK_KEYS))
check("Postfix's stock throttles are back (hard error limit 20, soft 10, sleep 1s, hops 50)",
      cf["smtpd_soft_error_limit"] == "10" and cf["smtpd_error_sleep_time"] == "1s"
      and "20" in cf["smtpd_hard_error_limit"] and cf["hopcount_limit"] == "50", cf)

tmp = tempfile.mkdtemp(prefix="rgtest-dropin-")
rg_log = os.path.join(tmp, "relayguard.log")
rg_proc = rg_out = None
t_start = time.monotonic()

with PostfixInstance(port=free_port(), extra_main_cf=cf, relay_restrictions=cf["smtpd_relay_restrictions"]) as pf:
    # The virtual alias domain: tables need Postfix's config dir for postmap -c, so they are
    # made once the instance exists and applied with a reload, before relayguard starts.
    maps = pf.path("maps")
    os.makedirs(maps)
    aliases, domains = os.path.join(maps, "virtual_aliases"), os.path.join(maps, "virtual_domains")
    with open(aliases, "w") as f:
        f.write(f"{VIRTUAL} {LOCAL}\n")
    with open(domains, "w") as f:
        f.write("virtual.test x\n")
    for table in (aliases, domains):
        run(["postmap", "-c", pf.etc, f"hash:{table}"])
    pf.postconf("virtual_alias_maps", f"hash:{aliases}")
    pf.postconf("virtual_alias_domains", f"hash:{domains}")
    pf.reload()

    config, applied = packaged_copy(milter_port, policy_port, pf.etc, tmp)
    for old, n in applied:
        check(f"test edit applies to the packaged file exactly once: {old}", n == 1, f"found {n} times")
    rg_out = open(rg_log, "w")
    rg_proc = subprocess.Popen([os.environ["RELAYGUARD_BIN"], "--config", config], stdout=rg_out,
                               stderr=subprocess.STDOUT)

    def log():
        with open(rg_log, errors="replace") as f:
            return f.read()

    def wait_log(pattern, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, log())
            if m:
                return m
            time.sleep(0.05)
        return None

    try:
        wait_port("127.0.0.1", milter_port, timeout=15, proc=rg_proc, what="relayguard milter")
        wait_port("127.0.0.1", policy_port, timeout=15, proc=rg_proc, what="relayguard policy")

        # 0. what relayguard took from Postfix, and what it says it protects against
        m = wait_log(r"local domain\(s\) from postfix: ([^\n]*)")
        names = m.group(1).split() if m else []
        check("relayguard read Postfix's domains: example.test and virtual.test",
              "example.test" in names and "virtual.test" in names, m.group(0) if m else log()[-2000:])
        m = wait_log(r"protects against: ([^\n]*)")
        prot = m.group(1) if m else ""
        check("start-up line 'protects against:' names directory harvest, connection floods, "
              "command floods and mail loops",
              all(w in prot for w in ("directory harvest", "connection floods", "command floods", "mail loops")),
              prot or log()[-2000:])

        def msg(source, rcpts, **kw):
            return send_message("127.0.0.1", pf.port, source=source, sender="s@example.org", rcpts=rcpts, **kw)

        # 1. every hosted domain accepts mail from outside, relay stays shut
        r = msg("127.0.0.2", [LOCAL])
        check(f"an outside client's mail to {LOCAL} (mydestination) is delivered", r.delivered, r.summary())
        r = msg("127.0.0.2", [VIRTUAL])
        check(f"an outside client's mail to {VIRTUAL} (virtual alias domain) is delivered", r.delivered, r.summary())
        r = msg("127.0.0.2", ["friend@foreign.example"])
        rr = r.rcpts[0][1] if r.rcpts else None
        check("relay to friend@foreign.example is refused 554 5.7.1",
              rr is not None and rr.code == 554 and rr.enhanced == "5.7.1" and not r.delivered, r.summary())

        # 2. directory harvest from 127.0.0.3: 5 unknown users per session keeps each session
        # under Postfix's own soft error limit (10), so what stops the harvest is relayguard.
        harvest = []
        n = 0
        for _ in range(5):
            rcpts = [f"nobody{n + i}@example.test" for i in range(5)]
            n += 5
            r = msg("127.0.0.3", rcpts)
            harvest.append(r)
        codes = [(a, rr.code) for r in harvest for a, rr in r.rcpts]
        check("harvest: Postfix refuses the unknown users (550) until relayguard steps in",
              len(codes) >= 20 and codes[:20] == [(a, 550) for a, _ in codes[:20]], codes)
        r = msg("127.0.0.3", [LOCAL])
        blocked = [x for x in replies(r) if x.code == 450 and x.enhanced == "4.7.1"
                   and "too many unknown recipients" in x.text]
        check(f"after {n} unknown users, the harvester's mail even to {LOCAL} gets 450 4.7.1 "
              "Client blocked: too many unknown recipients", bool(blocked) and not r.delivered, r.summary())
        stage = ("greeting" if r.greeting in blocked else "MAIL" if r.mail in blocked else "RCPT") if blocked else "?"
        print(f"     harvester blocked at {stage}: {blocked[0] if blocked else r.summary()}", flush=True)
        lines = refusals(log(), client="127.0.0.3", rule="unknown_recipients")
        check("relayguard's security log has rule=unknown_recipients for 127.0.0.3", bool(lines), log()[-3000:])
        r = msg("127.0.0.4", [LOCAL])
        check("another client (127.0.0.4) still gets its mail through", r.delivered, r.summary())

        # 3. mail loop from 127.0.0.5: 60 Received: headers
        hops = [("Received", f"from hop{i}.example.org (hop{i}.example.org [192.0.2.{i + 1}]) by "
                 f"hop{i + 1}.example.org with ESMTP id H{i}; Thu, 4 Dec 2025 12:00:{i:02d} +0000")
                for i in range(60)]
        loop_message = build_message("s@example.org", [LOCAL], headers=hops)
        mark = pf.log_mark()
        r = msg("127.0.0.5", [LOCAL], message=loop_message)
        hops_lines = refusals(log(), client="127.0.0.5", rule="hops")
        if r.data is not None and r.data.enhanced == "5.4.6":
            loop_by = "relayguard (limits.hops 50: 554 5.4.6)"
        elif r.data is not None and r.data.enhanced == "5.4.0" and "too many hops" in r.data.text.lower():
            # Postfix's cleanup counts the Received: headers itself (hopcount_limit 50) and
            # refuses "554 5.4.0 Error: too many hops" (it counts its own, so from 49 arriving
            # ones): relayguard's limits.hops (554 5.4.6 past 50) is never asked.
            loop_by = "Postfix (hopcount_limit 50: 554 5.4.0 too many hops)"
        else:
            loop_by = "?"
        check(f"a message with 60 Received: headers (a loop) is refused with 5xx, not delivered "
              f"-- refused by {loop_by}",
              r.data is not None and 500 <= r.data.code < 600 and not r.delivered, r.summary())
        check("the loop refusal is one of the two known ones (relayguard 5.4.6 or Postfix 5.4.0)",
              loop_by != "?", r.summary())
        if loop_by.startswith("relayguard"):
            check("relayguard's log has rule=hops for 127.0.0.5", bool(hops_lines), log()[-3000:])
        elif loop_by.startswith("Postfix"):
            check("Postfix's maillog tells the hop-count refusal",
                  re.search(r"message rejected: hopcount exceeded", pf.log(mark)) is not None,
                  pf.log(mark)[-2000:])
        print(f"     mail loop refused by: {loop_by} -- {r.data}", flush=True)

        # 4. command flood from 127.0.0.6: 25 unknown commands in one session
        def command_flood(source, count):
            """One session from `source`: EHLO, then up to `count` unknown commands, stopping at
            the first 421 (or close).  Returns ([(n or '-', reply)], the 421 or None, how many
            were sent, seconds taken)."""
            flood, cut = [], None
            t0 = time.monotonic()
            with SmtpSession("127.0.0.1", pf.port, source=source, timeout=30, closed_ok=True) as s:
                s.ehlo()
                for i in range(count):
                    # a 421 may come unasked, right after the reply that hit the limit
                    if select.select([s.sock], [], [], 0.05)[0] or s._buf:
                        extra = s.read_reply("<unsolicited>")
                        flood.append(("-", extra))
                        if extra.code in (0, 421):
                            cut = extra
                            break
                    rr = s.raw("XJUNK")
                    flood.append((i + 1, rr))
                    if rr.code in (0, 421):
                        cut = rr
                        break
            return flood, cut, sum(1 for i, _ in flood if i != "-"), time.monotonic() - t0

        def show(flood):
            return "\n".join(f"{i}: {rr}" for i, rr in flood)

        flood, cut, sent, took = command_flood("127.0.0.6", 25)
        fc = refusals(log(), client="127.0.0.6", rule="failed_commands")
        if cut is not None and cut.code == 421 and "too many errors" in cut.text.lower():
            flood_by = "Postfix (smtpd_hard_error_limit 20: 421 4.7.0 Error: too many errors)"
        elif cut is not None and cut.code == 421 and "Too many failed commands" in cut.text:
            flood_by = "relayguard (limits.failed_commands 20: 421 4.7.0 Too many failed commands)"
        else:
            flood_by = "?"
        check(f"command flood: the session is cut off with 421 before the 25th command -- closed by {flood_by}",
              cut is not None and cut.code == 421 and sent < 25 and all(
                  rr.code != 421 for _, rr in flood[:-1]), show(flood))
        check("the flood's 421 is one of the two known ones (Postfix's too many errors or relayguard's)",
              flood_by != "?", show(flood))
        if flood_by.startswith("relayguard") or fc:
            check("relayguard's log has rule=failed_commands for 127.0.0.6", bool(fc), log()[-3000:])
        print(f"     command flood closed by: {flood_by} after {sent} XJUNK in {took:.1f}s -- {cut}", flush=True)
        print("     relayguard failed_commands lines: " + (" | ".join(fc) if fc else "none"), flush=True)

        # 5. an admin raised Postfix's own limits: relayguard's untouched defaults must act.
        pf.postconf("smtpd_hard_error_limit", "100")
        pf.postconf("hopcount_limit", "100")
        pf.reload()
        check("Postfix now runs with smtpd_hard_error_limit = 100 and hopcount_limit = 100",
              pf.postconf("smtpd_hard_error_limit") == "100" and pf.postconf("hopcount_limit") == "100",
              (pf.postconf("smtpd_hard_error_limit"), pf.postconf("hopcount_limit")))

        # 5a. command flood from 127.0.0.7.  Postfix's soft limit (10, 1s sleep) still slows
        # every error after the 10th, so the 21 failures take about 11s.
        flood, cut, sent, took = command_flood("127.0.0.7", 30)
        print(f"     raised limits, command flood: cut after {sent} XJUNK in {took:.1f}s -- {cut}", flush=True)
        check("raised limits: relayguard cuts the flood off at the 21st failed command "
              "(limits.failed_commands.max = 20)",
              cut is not None and sent == 21 and all(rr.code != 421 for _, rr in flood[:-1]), show(flood))
        check("raised limits: the closing reply is relayguard's 421 4.7.0 Too many failed commands; closing connection",
              cut is not None and cut.code == 421 and cut.enhanced == "4.7.0"
              and "Too many failed commands; closing connection" in cut.text, show(flood))
        fc = refusals(log(), client="127.0.0.7", rule="failed_commands")
        check("raised limits: relayguard's security log has rule=failed_commands for 127.0.0.7", bool(fc),
              log()[-3000:])
        print("     relayguard failed_commands lines: " + (" | ".join(fc) if fc else "none"), flush=True)

        # 5b. mail loop from 127.0.0.8: the same 60 Received: headers
        r = msg("127.0.0.8", [LOCAL], message=loop_message)
        print(f"     raised limits, mail loop: {r.data}", flush=True)
        check("raised limits: 60 Received: headers get relayguard's 554 5.4.6 (limits.hops.max = 50), not delivered",
              r.data is not None and r.data.code == 554 and r.data.enhanced == "5.4.6" and not r.delivered,
              r.summary())
        hops_lines = refusals(log(), client="127.0.0.8", rule="hops")
        check("raised limits: relayguard's security log has rule=hops for 127.0.0.8", bool(hops_lines),
              log()[-3000:])
        print("     relayguard hops lines: " + (" | ".join(hops_lines) if hops_lines else "none"), flush=True)

        check("relayguard is still running", rg_proc.poll() is None, log()[-2000:])
    finally:
        rc = stop_process(rg_proc, rg_out, rg_log)
    check("relayguard stops on SIGTERM with exit status 0", rc == 0, f"rc={rc}\n{log()[-3000:]}")

print(f"     run time {time.monotonic() - t_start:.1f}s", flush=True)
if not os.environ.get("RGTEST_KEEP"):
    shutil.rmtree(tmp, ignore_errors=True)
else:
    print(f"     relayguard log kept in {rg_log}")
finish()
