#!/usr/bin/python3
"""`relayguard doctor` on real Postfix configurations, read by the real postconf: a
configuration wired as contrib/postfix/main.cf.snippet says has nothing to report, and each
known trap (a permit_* before the policy service, a milter or policy service that fails open,
nothing wired, no reject_unauth_destination, a submission service without the milter, AUTH
before TLS, a Postfix domain relayguard does not know, a limit above Postfix's, a timeout
shorter than a stage, mynetworks relayguard does not trust) is reported with exactly its
finding and exit status, and the postconf commands the doctor prints mend it. Then the first
minutes of an install as the README tells them: a Postfix with Debian's stock restrictions,
the packaged config, the doctor's snippet pasted, and the result refuses relaying for strangers
and takes mail for its domain."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402

BIN = os.environ["RELAYGUARD_BIN"]
BUILD = os.environ["RELAYGUARD_BUILD_DIR"]
MASTER_DIST = "/usr/share/postfix/master.cf.dist"
WORK = tempfile.mkdtemp(prefix="rgtest-doctor-")

WIRED = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.test",
    "mydestination": "example.test",
    "mynetworks": "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
    "smtpd_milters": "inet:127.0.0.1:8893",
    "milter_default_action": "tempfail",
    "smtpd_relay_restrictions": "reject_unlisted_recipient, check_policy_service inet:127.0.0.1:10040, "
                                "reject_unauth_destination",
    "smtpd_policy_service_default_action": "451 4.3.5 Policy service unavailable; try again later",
}
RELAYGUARD = """[ip_groups]
internal = ["127.0.0.0/8", "::1/128"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["internal"]
"""


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def settle(d):
    """Backdates main.cf and master.cf: postconf pauses on a file changed within the last
    second, to let an editor finish (2 s a call on a freshly written one)."""
    past = time.time() - 10
    for name in ("main.cf", "master.cf"):
        os.utime(os.path.join(d, name), (past, past))


def postfix_dir(name, main=None, drop=(), master_extra=""):
    """A Postfix configuration directory: WIRED changed by `main` (and without `drop`)."""
    d = os.path.join(WORK, name)
    os.makedirs(d)
    settings = dict(WIRED)
    settings.update(main or {})
    for k in drop:
        settings.pop(k, None)
    write(os.path.join(d, "main.cf"), "".join(f"{k} = {v}\n" for k, v in settings.items()))
    shutil.copy(MASTER_DIST, os.path.join(d, "master.cf"))
    if master_extra:
        with open(os.path.join(d, "master.cf"), "a") as f:
            f.write(master_extra)
    settle(d)
    return d


def rg_config(name, extra=""):
    return write(os.path.join(WORK, name + ".toml"), RELAYGUARD + extra, 0o600)


def doctor(pf_dir, config, *flags):
    p = subprocess.run([BIN, "doctor", "--config", config, "--postfix", pf_dir, *flags],
                       capture_output=True, text=True, timeout=60)
    return p


def findings(pf_dir, config):
    p = doctor(pf_dir, config, "--json")
    try:
        report = json.loads(p.stdout)
    except ValueError:
        return p.returncode, None, p.stdout + p.stderr
    return p.returncode, report, p.stdout + p.stderr


def ids(report):
    return sorted(f["id"] for f in report["findings"]) if report else None


# --- a wired Postfix, then each trap -------------------------------------------------
base_config = rg_config("base")
rc, report, out = findings(postfix_dir("wired"), base_config)
check("a Postfix wired as the snippet says: nothing found, exit 0", rc == 0 and ids(report) == [], out)
p = doctor(os.path.join(WORK, "wired"), base_config)
check("and the text report says so", p.returncode == 0 and "No problems found" in p.stdout, p.stdout)

SUBMISSION = ("submission inet n       -       y       -       -       smtpd\n"
              "  -o syslog_name=postfix/submission\n  -o smtpd_tls_security_level=encrypt\n"
              "  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_milters=\n")
vdir = os.path.join(WORK, "tables")
os.makedirs(vdir)
write(os.path.join(vdir, "vdomains"), "example.test x\nvirtual.test x\n")

TRAPS = [
    # name, main.cf changes, dropped keys, master.cf lines, relayguard extra, expected ids, exit
    ("permit_mynetworks first", {"smtpd_relay_restrictions": "permit_mynetworks, check_policy_service "
                                 "inet:127.0.0.1:10040, reject_unauth_destination"}, (), "", "",
     ["permit-before-policy"], 2),
    ("permit_sasl_authenticated first", {"smtpd_relay_restrictions": "permit_sasl_authenticated "
                                         "check_policy_service inet:127.0.0.1:10040 defer_unauth_destination"},
     (), "", "", ["permit-before-policy"], 2),
    ("milter_default_action = accept", {"milter_default_action": "accept"}, (), "", "", ["milter-fails-open"], 2),
    ("a policy service that answers DUNNO when down",
     {"smtpd_policy_service_default_action": "DUNNO"}, (), "", "", ["policy-fails-open"], 2),
    ("nothing wired (Debian's stock restrictions)",
     {"smtpd_relay_restrictions": "permit_mynetworks permit_sasl_authenticated defer_unauth_destination"},
     ("smtpd_milters",), "", "", ["milter-missing", "policy-missing"], 2),
    ("no reject_unauth_destination", {"smtpd_relay_restrictions": "reject_unlisted_recipient, "
                                      "check_policy_service inet:127.0.0.1:10040, permit"},
     (), "", "", ["no-unauth-destination"], 2),
    ("a submission service without the milter", {}, (), SUBMISSION, "", ["service-without-milter"], 1),
    ("AUTH before TLS on port 25", {"smtpd_sasl_auth_enable": "yes", "smtpd_tls_auth_only": "no"}, (), "", "",
     ["auth-without-tls"], 2),
    ("a virtual domain relayguard does not know",
     {"virtual_alias_domains": f"hash:{vdir}/vdomains"}, (), "", "", ["domain-missing"], 2),
    ("a failed-command limit above Postfix's", {}, (), "", "[limits.failed_commands]\nmax = 100\n",
     ["limit-above-postfix"], 1),
    ("a milter timeout shorter than a stage", {"milter_command_timeout": "5s"}, (), "", "", ["milter-timeout"], 1),
    ("mynetworks relayguard does not trust", {"mynetworks": "127.0.0.0/8 192.168.0.0/16"}, (), "", "",
     ["mynetworks-not-trusted"], 1),
    # The relayguard extra continues its [relay] section.
    ("domains from Postfix, one table relayguard cannot list",
     {"relay_domains": "mysql:/etc/postfix/nowhere.cf"}, (), "", 'local_domains_from = "postfix"\n',
     ["domain-table-unreadable"], 2),
    ("a policy timeout shorter than a stage", {"smtpd_policy_service_timeout": "10s"}, (), "", "",
     ["policy-timeout"], 1),
    ("a submission service with Debian's own restriction lists",
     {}, (), "submission inet n       -       y       -       -       smtpd\n"
             "  -o smtpd_tls_security_level=encrypt\n  -o smtpd_sasl_auth_enable=yes\n"
             "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n", "",
     ["service-without-policy"], 1),
    ("a content filter's re-injection port is no trap",
     {}, (), "127.0.0.1:10025 inet n - n - - smtpd\n  -o content_filter=\n"
             "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters\n"
             "  -o smtpd_relay_restrictions=permit_mynetworks,reject\n", "", [], 0),
]

for i, (name, main, drop, master, extra, expected, status) in enumerate(TRAPS):
    d = postfix_dir(f"trap{i}", main, drop, master)
    if "vdomains" in str(main):
        subprocess.run(["postmap", "-c", d, f"hash:{vdir}/vdomains"], check=True)
    config = rg_config(f"trap{i}", extra) if extra else base_config
    rc, report, out = findings(d, config)
    check(f"{name}: found as {expected}, exit {status}", rc == status and ids(report) == expected, out)
    commands = report["commands"] if report else []
    if not commands:
        continue
    for c in commands:
        subprocess.run(c, shell=True, check=True, capture_output=True)
    settle(d)
    rc, report, out = findings(d, config)
    check(f"{name}: the printed postconf commands mend it", rc == 0 and ids(report) == [], out)

d = postfix_dir("text", {"milter_default_action": "accept"})
p = doctor(d, base_config)
check("the text report names the finding, the fix and the command",
      p.returncode == 2 and "ERROR   milter-fails-open" in p.stdout and
      f"run: postconf -c '{d}' -e 'milter_default_action = tempfail'" in p.stdout and
      f"postfix -c '{d}' reload" in p.stdout, p.stdout)
p = doctor(d, base_config, "--summary")
check("--summary: one line a finding and the count",
      p.returncode == 2 and "relayguard doctor: error milter-fails-open" in p.stdout and
      "1 error(s), 0 warning(s)" in p.stdout, p.stdout)
p = subprocess.run([BIN, "doctor", "--postfix", os.path.join(WORK, "nowhere"), "--config", base_config],
                   capture_output=True, text=True, timeout=60)
check("a Postfix directory that cannot be read: exit 2 and why", p.returncode == 2 and "postconf" in p.stderr,
      p.stdout + p.stderr)
p = subprocess.run([BIN, "doctor", "--bogus"], capture_output=True, text=True, timeout=60)
check("a bad argument: exit 64 and the usage", p.returncode == 64 and "usage: relayguard doctor" in p.stderr,
      p.stderr)

# Sendmail: a sendmail.cf whose filter fails open.
cf = write(os.path.join(WORK, "sendmail.cf"),
           "Cwexample.test\nO InputMailFilters=relayguard\nXrelayguard, S=inet:8893@127.0.0.1, T=R:20s\n")
p = subprocess.run([BIN, "doctor", "--config", base_config, "--sendmail-cf", cf, "--json"],
                   capture_output=True, text=True, timeout=60)
check("Sendmail: a filter without F=T is found failing open",
      p.returncode == 2 and ids(json.loads(p.stdout)) == ["milter-fails-open"], p.stdout + p.stderr)

# --- the first minutes, as the README's quick start says -------------------------------
# The packaged config as installed; only what a test host forces is changed: free ports, no
# admin socket, Postfix's private directory, and loopback split so that 127.0.0.2 is a
# stranger (on a real server loopback is local).
packaged = open(os.path.join(BUILD, "packaged", "relayguard.toml")).read()
milter_port, policy_port = free_port(), free_port()
changes = [('milter = "inet:127.0.0.1:8893"', f'milter = "inet:127.0.0.1:{milter_port}"'),
           ('policy = "inet:127.0.0.1:10040"', f'policy = "inet:127.0.0.1:{policy_port}"'),
           ('admin = "unix:/run/relayguard/admin.sock"', 'admin = ""'),
           ('internal = ["127.0.0.0/8", "::1/128"]', 'internal = ["127.0.0.1/32"]'),
           ('security_log = "/var/log/relayguard/security.log"', f'security_log = "{WORK}/security.log"'),
           ('memory_snapshot = "/var/lib/relayguard/memory-store.snapshot"',
            f'memory_snapshot = "{WORK}/memory-store.snapshot"')]
for old, new in changes:
    check(f"the packaged config has {old}", old in packaged)
    packaged = packaged.replace(old, new)
with PostfixInstance(port=free_port(), mynetworks="127.0.0.1/32",
                     relay_restrictions="permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
                     extra_main_cf={"milter_command_timeout": "30s", "milter_content_timeout": "300s",
                                    "smtpd_policy_service_timeout": "100s"}) as pf:
    config = write(os.path.join(WORK, "installed.toml"),
                   packaged.replace('mta_config = ""', f'mta_config = "{pf.etc}"'), 0o600)
    rc, report, out = findings(pf.etc, config)
    check("a stock Postfix: the doctor says relayguard is not wired (exit 2)",
          rc == 2 and ids(report) == ["milter-missing", "policy-missing"], out)
    for c in report["commands"]:
        subprocess.run(c, shell=True, check=True, capture_output=True)
    settle(pf.etc)
    rc, report, out = findings(pf.etc, config)
    check("its snippet pasted: nothing left to mend (exit 0)", rc == 0 and ids(report) == [], out)
    pf.reload()
    log = open(os.path.join(WORK, "relayguard.log"), "w")
    daemon = subprocess.Popen([BIN, "--config", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        from rgtest import wait_port
        wait_port("127.0.0.1", milter_port, timeout=20, proc=daemon, what="relayguard milter")
        wait_port("127.0.0.1", policy_port, timeout=20, proc=daemon, what="relayguard policy")
        r = send_message("127.0.0.1", pf.port, source="127.0.0.2", sender="s@example.org",
                         rcpts=["friend@foreign.example"])
        check("a stranger may not relay (554 from relayguard's policy service)",
              r.rcpts and r.rcpts[0][1].code == 554, r.summary())
        r = send_message("127.0.0.1", pf.port, source="127.0.0.2", sender="s@example.org",
                         rcpts=["user1@example.test"])
        check("and its mail for the domain Postfix hosts is taken", r.delivered, r.summary())
        r = send_message("127.0.0.1", pf.port, source="127.0.0.1", sender="s@example.org",
                         rcpts=["friend@foreign.example"])
        check("the trusted group relays", r.delivered, r.summary())
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()
    check("the packaged daemon stopped cleanly", daemon.returncode == 0,
          open(os.path.join(WORK, "relayguard.log")).read()[-2000:])
shutil.rmtree(WORK, ignore_errors=True)
finish()
