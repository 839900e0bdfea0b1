#!/usr/bin/python3
"""relayguard takes its local domains from a real private Postfix (relay.local_domains_from
= "postfix", relay.local_domains empty): mydestination, an inline: and a hash: table in
virtual_alias_domains and an lmdb: table in virtual_mailbox_domains are all local, so an
untrusted client may send to them while relaying elsewhere is refused (554); a domain
added to the hash: table with postmap is local within seconds, with no reload; and a
domain table relayguard cannot list (mysql:) stops it at start (exit 78, naming the table
and the parameter), or is skipped with a warning when unreadable_domain_tables = "skip"."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

BINARY = os.environ["RELAYGUARD_BIN"]
DOMAINS_LINE = r"relay: (\d+) local domain\(s\) from postfix: ([^\n]*)"

# The address relayguard is asked about, one per way Postfix knows its domain.
ADDRESSES = {
    "example.test": "user1@example.test",     # mydestination (a local user of the fixture)
    "alias.test": "friend@alias.test",        # virtual_alias_domains, inline: table
    "hashed.test": "friend@hashed.test",      # virtual_alias_domains, hash: table
    "mailbox.test": "friend@mailbox.test",    # virtual_mailbox_domains, lmdb: table
}
ADDED = "friend@added.test"                   # added to the hash: table while running
# relay_domains: Postfix's parent_domain_matches_subdomains names it by default, so a relay
# domain covers its subdomains; the log marks it so.
RELAYED = "relayed.test(+subdomains)"

RG_CONFIG = """
[relay]
local_domains = []
local_domains_from = "postfix"
mta_config = "{etc}"
unreadable_domain_tables = "{unreadable}"
"""


def postmap(etc, table):
    p = subprocess.run(["postmap", "-c", etc, table], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"postmap -c {etc} {table} exited {p.returncode}: {p.stderr}")


def domains_lines(log):
    return re.findall(DOMAINS_LINE, log)


def msg(pf, source, rcpt):
    return send_message("127.0.0.1", pf.port, source=source, sender="s@example.org", rcpts=[rcpt])


def refused_554(r):
    return bool(r.rcpts) and r.rcpts[0][1].code == 554 and not r.delivered


def run_daemon(config_body, timeout):
    """relayguard started directly (no waiting for its ports): (exit code or None if still
    running after `timeout` s, its output).  A daemon still running is stopped with SIGTERM."""
    d = tempfile.mkdtemp(prefix="rgtest-mta-domains-rg-")
    cfg = os.path.join(d, "relayguard.toml")
    with open(cfg, "w") as f:
        f.write(f'[listen]\nmilter = "inet:127.0.0.1:{free_port()}"\n'
                f'policy = "inet:127.0.0.1:{free_port()}"\n[log]\nlevel = "debug"\n{config_body}')
    os.chmod(cfg, 0o600)
    try:
        p = subprocess.run([BINARY, "--config", cfg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", timeout=timeout)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        return None, out if isinstance(out, str) else out.decode("utf-8", "replace")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def start_daemon(config_body):
    """relayguard started directly, output to a file: (proc, logfile, dir)."""
    d = tempfile.mkdtemp(prefix="rgtest-mta-domains-rg-")
    cfg, logfile = os.path.join(d, "relayguard.toml"), os.path.join(d, "relayguard.log")
    with open(cfg, "w") as f:
        f.write(f'[listen]\nmilter = "inet:127.0.0.1:{free_port()}"\n'
                f'policy = "inet:127.0.0.1:{free_port()}"\n[log]\nlevel = "debug"\n{config_body}')
    os.chmod(cfg, 0o600)
    out = open(logfile, "w")
    proc = subprocess.Popen([BINARY, "--config", cfg], stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc, logfile, d


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


# The tables live in a directory of their own, readable by Postfix's unprivileged daemons.
tables = tempfile.mkdtemp(prefix="rgtest-mta-domains-")
os.chmod(tables, 0o755)
alias_table = os.path.join(tables, "alias_domains")
mailbox_table = os.path.join(tables, "mailbox_domains")

# Postfix must accept each test address itself too: the virtual alias addresses map to the
# fixture's local user, the virtual mailbox one is listed (virtual_transport is discard:).
alias_map = ", ".join(f"{a}=user1@example.test"
                      for a in (ADDRESSES["alias.test"], ADDRESSES["hashed.test"], ADDED))
extra = {
    "virtual_alias_maps": f"inline:{{ {alias_map} }}",
    "virtual_mailbox_maps": f"inline:{{ {ADDRESSES['mailbox.test']}=ok }}",
}
milter_port = free_port()
try:
    with PostfixInstance(port=free_port(), milter=f"inet:127.0.0.1:{milter_port}", extra_main_cf=extra,
                         local_users=("user1@example.test",)) as pf:
        # The tables need Postfix's config dir for postmap -c: made now, applied with a reload.
        with open(alias_table, "w") as f:
            f.write("hashed.test\tx\n")
        with open(mailbox_table, "w") as f:
            f.write("mailbox.test\tx\n")
        postmap(pf.etc, f"hash:{alias_table}")
        postmap(pf.etc, f"lmdb:{mailbox_table}")
        pf.postconf("virtual_alias_domains", f"inline:{{ alias.test=x }}, hash:{alias_table}")
        pf.postconf("virtual_mailbox_domains", f"lmdb:{mailbox_table}")
        pf.postconf("relay_domains", "relayed.test")
        pf.reload()

        rg = Relayguard(RG_CONFIG.format(etc=pf.etc, unreadable="stop"), milter_port=milter_port)
        with rg:
            found = rg.wait_for(DOMAINS_LINE, timeout=10)
            lines = domains_lines(rg.log())
            first = lines[0] if lines else ("0", "")
            check("the log names the 5 domains Postfix has (mydestination, inline:, hash:, lmdb:, relay_domains)",
                  found and first[0] == "5" and sorted(first[1].split()) == sorted([*ADDRESSES, RELAYED]),
                  lines or rg.log()[-2000:])

            for i, (domain, rcpt) in enumerate(ADDRESSES.items()):
                r = msg(pf, f"127.0.0.{81 + i}", rcpt)
                check(f"an untrusted client may send to {rcpt} ({domain} is local)", r.delivered, r.summary())
            r = msg(pf, "127.0.0.88", "friend@mx.sub.relayed.test")
            check("a subdomain of a relay domain is not relaying, as Postfix has it", r.delivered, r.summary())
            r = msg(pf, "127.0.0.85", "friend@foreign.example")
            check("an untrusted client may not relay to friend@foreign.example (554)", refused_554(r),
                  r.summary())
            r = msg(pf, "127.0.0.86", ADDED)
            check(f"{ADDED} is relaying before added.test is in the hash: table (554)", refused_554(r),
                  r.summary())

            # A domain added the way an admin adds one: the table source, then postmap.
            with open(alias_table, "a") as f:
                f.write("added.test\tx\n")
            postmap(pf.etc, f"hash:{alias_table}")
            t0 = time.monotonic()
            deadline = t0 + 15
            r = None
            while time.monotonic() < deadline:
                r = msg(pf, "127.0.0.87", ADDED)
                if r.delivered:
                    break
                time.sleep(1)
            took = time.monotonic() - t0
            check(f"after postmap, {ADDED} is accepted within 15 s with no reload ({took:.1f} s)",
                  r is not None and r.delivered, r.summary() if r else "")
            rg.wait_for(r"local domain\(s\) from postfix: [^\n]*added\.test", timeout=5)
            lines = domains_lines(rg.log())
            last = lines[-1] if lines else ("0", "")
            check("the log shows the new list, added.test in it",
                  len(lines) >= 2 and last[0] == "6" and sorted(last[1].split()) == sorted([*ADDRESSES, RELAYED, "added.test"]),
                  lines)

        # A Postfix whose relay_domains is a table relayguard cannot list: a copy of the
        # instance's main.cf with that one change.
        bad = tempfile.mkdtemp(prefix="rgtest-mta-domains-bad-")
        try:
            shutil.copy(os.path.join(pf.etc, "main.cf"), os.path.join(bad, "main.cf"))
            subprocess.run(["postconf", "-c", bad, "-e", "relay_domains = mysql:/etc/postfix/nonexistent.cf"],
                           capture_output=True, timeout=60, check=True)

            rc, out = run_daemon(RG_CONFIG.format(etc=bad, unreadable="stop"), timeout=20)
            cannot = [ln for ln in out.splitlines() if "cannot list mysql:" in ln]
            check("with unreadable_domain_tables = \"stop\", a mysql: relay_domains stops the start (exit 78)",
                  rc == 78, f"rc={rc}\n{out[-2000:]}")
            check("and the log names the table and the parameter (cannot list mysql:... relay_domains)",
                  any("relay_domains" in ln for ln in cannot), out[-2000:])

            proc, logfile, d = start_daemon(RG_CONFIG.format(etc=bad, unreadable="skip"))
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and proc.poll() is None:
                    if "skipped mysql:" in read(logfile) and " started" in read(logfile):
                        break
                    time.sleep(0.1)
                log = read(logfile)
                skipped = [ln for ln in log.splitlines() if "skipped mysql:" in ln]
                check("with \"skip\" it starts, warning that it skipped mysql: (relay_domains)",
                      proc.poll() is None and any("relay_domains" in ln for ln in skipped)
                      and " started" in log, f"rc={proc.poll()}\n{log[-2000:]}")
                check("and still takes Postfix's other domains (the 5 of the tables above; relay_domains is "
                      "the mysql: one now)",
                      [sorted(names.split()) for _, names in domains_lines(log)]
                      == [sorted([*ADDRESSES, "added.test"])], domains_lines(log))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                check("and stops cleanly on SIGTERM", proc.returncode == 0, f"rc={proc.returncode}")
                shutil.rmtree(d, ignore_errors=True)
        finally:
            shutil.rmtree(bad, ignore_errors=True)
finally:
    shutil.rmtree(tables, ignore_errors=True)
finish()
