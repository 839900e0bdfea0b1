#!/usr/bin/python3
"""The Debian package as an admin meets it: `cpack -G DEB` builds it from this build
tree, dpkg installs it on this machine, and then the installed units' own commands run
as the units say (user relayguard, their ExecStartPre and ExecStart, the runtime
directory): the policy daemon on the packaged example config answers Postfix's policy
protocol and relayguardctl, reloads on SIGHUP, the relay client takes a message into its
queue; both stop cleanly; purging removes the user and the queue."""

import configparser
import grp
import json
import os
import pwd
import re
import shlex
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.fixtures import port_in_use, wait_port  # noqa: E402

BUILD = os.environ["RELAYGUARD_BUILD_DIR"]
if os.geteuid() != 0:
    print("SKIP: installing a package needs root")
    sys.exit(0)


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def unit(name):
    """ExecStartPre, ExecStart, User, RuntimeDirectory of an installed unit."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(f"/lib/systemd/system/{name}")
    return cp["Service"]


def as_user(user, argv):
    """As systemd's User= does: the daemon itself runs as the user (setpriv execs,
    so signals reach the daemon, not a wrapper)."""
    return ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--", *argv]


for old in ("relayguard",):
    run("dpkg", "--purge", old)
p = run("cpack", "-G", "DEB", cwd=BUILD, timeout=600)
debs = sorted(f for f in os.listdir(BUILD) if f.startswith("relayguard_") and f.endswith(".deb"))
check("cpack builds the .deb", p.returncode == 0 and debs, p.stdout[-1500:] + p.stderr[-1500:])
# The packaged config takes its local domains from the system's Postfix: a
# test machine whose Postfix was installed unconfigured gets Debian's stock
# main.cf with one domain for the test's run (removed at the end).
MAIN_CF = "/etc/postfix/main.cf"
made_main_cf = not os.path.exists(MAIN_CF)
if made_main_cf:
    with open("/usr/share/postfix/main.cf.debian") as stock, open(MAIN_CF, "w") as f:
        f.write(stock.read() + "myhostname = mx.example.test\nmydestination = example.test, localhost\n")
subprocess.run(["rm", "-rf", "/run/relayguard"])  # as after a boot without systemd
p = run("dpkg", "-i", os.path.join(BUILD, debs[-1]))
check("dpkg installs it", p.returncode == 0, p.stdout + p.stderr)
check("without adduser's warning (the home directory exists before the user)",
      "adduser: warning" not in (p.stdout + p.stderr).lower() and "can't be accessed" not in p.stdout + p.stderr,
      p.stdout + p.stderr)
check("postinst runs the doctor once: this Postfix is not wired to relayguard yet",
      "relayguard doctor: error milter-missing" in p.stdout and "relayguard doctor: error policy-missing" in p.stdout
      and "run `relayguard doctor` for the fixes" in p.stdout, p.stdout + p.stderr)

try:
    for path in ("/usr/sbin/relayguard", "/usr/sbin/relayguard-relayd", "/usr/bin/relayguardctl",
                 "/usr/bin/relayguard-sendmail", "/usr/share/man/man8/relayguardctl.8",
                 "/usr/share/man/man5/relayguard.toml.5", "/usr/share/relayguard/reports/de/failure.txt",
                 "/usr/share/relayguard/relayguard-postlogin.sh", "/lib/systemd/system/relayguard.service"):
        check(f"installed: {path}", os.path.exists(path))
    check("the user relayguard exists", pwd.getpwnam("relayguard") is not None)
    st = os.stat("/etc/relayguard/relayguard.toml")
    check("the config is 0640, group relayguard (it may hold passwords)",
          st.st_mode & 0o777 == 0o640 and st.st_gid == grp.getgrnam("relayguard").gr_gid, oct(st.st_mode))
    st = os.stat("/var/spool/relayguard")
    check("the queue directory belongs to relayguard", st.st_uid == pwd.getpwnam("relayguard").pw_uid)
    check("a logrotate rule for /var/log/relayguard is installed", os.path.exists("/etc/logrotate.d/relayguard"))
    st = os.stat("/run/relayguard")
    check("postinst made /run/relayguard for the relayguard user (a start without systemd binds there)",
          st.st_uid == pwd.getpwnam("relayguard").pw_uid, (st.st_uid, oct(st.st_mode)))
    check("and tmpfiles.d makes it at every boot", "d /run/relayguard 0755 relayguard relayguard"
          in open("/usr/lib/tmpfiles.d/relayguard.conf").read())
    st = os.stat("/usr/bin/relayguard-sendmail")
    check("relayguard-sendmail is setgid relayguard (like postdrop), through dpkg-statoverride",
          st.st_mode & 0o7777 == 0o2755 and st.st_gid == grp.getgrnam("relayguard").gr_gid and
          "root relayguard 2755 /usr/bin/relayguard-sendmail" in run("dpkg-statoverride", "--list").stdout,
          (oct(st.st_mode), st.st_gid))
    with open("/etc/relayguard/relayguard.toml") as installed, \
            open(os.path.join(BUILD, "packaged", "relayguard.toml")) as built:
        text = installed.read()
        check("the installed config is the packaged one: local domains from Postfix",
              text == built.read() and 'local_domains_from = "postfix"' in text)
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "relayguard").stdout
    check("the config is a conffile (an admin's edits survive upgrades)", "/etc/relayguard/relayguard.toml" in conffiles,
          conffiles)

    policy_unit = unit("relayguard.service")
    check("the unit is hardened: its own user, no new privileges, read-only system",
          policy_unit["User"] == "relayguard" and policy_unit["NoNewPrivileges"] == "yes"
          and policy_unit["ProtectSystem"] == "strict", dict(policy_unit))
    # What systemd does before ExecStart: RuntimeDirectory, owned by the unit's user.
    os.makedirs("/run/relayguard", exist_ok=True)
    os.chown("/run/relayguard", pwd.getpwnam("relayguard").pw_uid, grp.getgrnam("relayguard").gr_gid)
    os.chmod("/run/relayguard", 0o750)
    pre = run(*as_user("relayguard", shlex.split(policy_unit["ExecStartPre"])))
    check("ExecStartPre (--check-config of the packaged config) passes", pre.returncode == 0, pre.stdout + pre.stderr)

    # A daemon left running by an earlier test would answer in this one's place.
    stale = [port for port in (10040, 8893) if port_in_use("127.0.0.1", port)]
    check("no earlier daemon holds the packaged config's ports", not stale, stale)
    log = open("/run/relayguard/test-policy.log", "w")
    daemon = subprocess.Popen(as_user("relayguard", shlex.split(policy_unit["ExecStart"])), stdout=log,
                              stderr=subprocess.STDOUT)
    wait_port("127.0.0.1", 10040, timeout=15, proc=daemon, what="packaged relayguard policy")
    time.sleep(0.5)
    check("the packaged daemon is running", daemon.poll() is None,
          f"exit status {daemon.returncode}: " + open("/run/relayguard/test-policy.log").read()[-2000:])
    with socket.create_connection(("127.0.0.1", 10040), timeout=5) as s:
        s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.80\n"
                  b"client_port=1\nsender=a@example.org\nrecipient=x@foreign.example\ninstance=p1\n\n")
        reply = s.recv(300).decode()
    check("the installed daemon answers Postfix's policy protocol: relaying refused", "action=554" in reply, reply)
    security = "/var/log/relayguard/security.log"
    time.sleep(0.3)
    seen = open(security).read() if os.path.exists(security) else ""
    check("the refusal is in /var/log/relayguard/security.log, the file the shipped jail reads",
          "refused client=192.0.2.80 rule=relay" in seen, seen[-1000:])
    jail = open("/usr/share/doc/relayguard/contrib/fail2ban/jail.local.example").read()
    f2b = run("fail2ban-regex", security, "/usr/share/doc/relayguard/contrib/fail2ban/relayguard.conf")
    check("and the shipped jail and filter agree with it: fail2ban-regex counts the refusal",
          f"logpath  = {security}" in jail and re.search(r"Lines: \d+ lines, 0 ignored, [1-9]\d* matched", f2b.stdout),
          f2b.stdout[-1500:] + f2b.stderr[-500:])
    with socket.create_connection(("127.0.0.1", 10040), timeout=5) as s:
        s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.80\n"
                  b"client_port=1\nsender=a@example.org\nrecipient=x@example.test\ninstance=p2\n\n")
        reply = s.recv(300).decode()
    check("and mail for Postfix's own domain is local, with no domain in relayguard's config",
          reply.startswith("action=DUNNO"), reply)
    check("its log names the domains it read from Postfix",
          "local domain(s) from postfix: example.test localhost" in open("/run/relayguard/test-policy.log").read(),
          open("/run/relayguard/test-policy.log").read()[-2000:])
    ctl = run("relayguardctl", "status")
    check("relayguardctl status reaches it on /run/relayguard/admin.sock",
          ctl.returncode == 0 and "store: memory" in ctl.stdout, ctl.stdout + ctl.stderr)
    ctl = run("relayguardctl", "--json", "ip", "show", "192.0.2.80")
    check("relayguardctl --json ip show answers", ctl.returncode == 0 and '"client": "192.0.2.80"' in ctl.stdout,
          ctl.stdout + ctl.stderr)
    st = os.stat("/run/relayguard/admin.sock")
    check("the admin socket is not world-accessible", st.st_mode & 0o007 == 0, oct(st.st_mode))
    daemon.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload: configuration" not in open("/run/relayguard/test-policy.log").read() and time.monotonic() < deadline:
        time.sleep(0.1)
    check("SIGHUP (the unit's ExecReload) reloads", "reload: configuration /etc/relayguard/relayguard.toml applied"
          in open("/run/relayguard/test-policy.log").read(), open("/run/relayguard/test-policy.log").read()[-3000:])

    relayd_unit = unit("relayguard-relayd.service")
    rlog = open("/run/relayguard/test-relayd.log", "w")
    relayd = subprocess.Popen(as_user("relayguard", shlex.split(relayd_unit["ExecStart"])), stdout=rlog,
                              stderr=subprocess.STDOUT)
    wait_port("127.0.0.1", 10025, timeout=15, proc=relayd, what="packaged relayguard-relayd")
    with smtplib.SMTP("127.0.0.1", 10025, timeout=10) as s:
        code, reply = s.sendmail("a@example.org", ["b@example.net"], b"Subject: packaged\r\n\r\nhi\r\n") or (250, b"")
    listed = run("relayguardctl", "--json", "queue", "list")
    # Its delivery by MX may already have failed (no DNS here), leaving the bounce to a@example.org queued.
    pending = [r for m in json.loads(listed.stdout or "{}").get("messages", []) for r in m["pending"]]
    check("relayguardctl queue list (on /run/relayguard/relayd.sock) shows it, or its bounce, queued",
          listed.returncode == 0 and ("b@example.net" in pending or "a@example.org" in pending),
          listed.stdout + listed.stderr)

    # relayguard-sendmail run by root (cron, scripts): the file must still be the daemon's to read.
    p = subprocess.run(["relayguard-sendmail", "-f", "root@example.org", "ops@example.net"], input="Subject: cron\n\nhi\n",
                       capture_output=True, text=True, timeout=30)
    owners = {os.stat(os.path.join("/var/spool/relayguard/active", f)).st_uid
              for f in os.listdir("/var/spool/relayguard/active")}
    time.sleep(1.5)  # the relay client's next scan reads it (or already has)
    check("a message queued by root with relayguard-sendmail belongs to the relayguard user, and the relay "
          "client can read it", p.returncode == 0 and owners <= {pwd.getpwnam("relayguard").pw_uid}
          and ": unreadable (" not in open("/run/relayguard/test-relayd.log").read(),
          (p.stderr, owners, pwd.getpwnam("relayguard").pw_uid, open("/run/relayguard/test-relayd.log").read()[-1500:]))

    for proc, what, path in ((relayd, "relayguard-relayd", "/run/relayguard/test-relayd.log"),
                             (daemon, "relayguard", "/run/relayguard/test-policy.log")):
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        check(f"{what} stops cleanly on SIGTERM", rc == 0, f"exit status {rc}; its log ends:\n" + open(path).read()[-3000:])

    snap = "/var/lib/relayguard/memory-store.snapshot"
    st = os.stat(snap) if os.path.exists(snap) else None
    check("the packaged daemon kept its counters for the next start in /var/lib/relayguard (0600, its own)",
          st and st.st_mode & 0o777 == 0o600 and st.st_uid == pwd.getpwnam("relayguard").pw_uid,
          open("/run/relayguard/test-policy.log").read()[-1000:])

    # Started as relayguard without systemd and without the directory (a boot that
    # ran no tmpfiles): the error names the directory and the fix.
    subprocess.run(["rm", "-rf", "/run/relayguard"])
    p = subprocess.run(as_user("relayguard", shlex.split(policy_unit["ExecStart"])), capture_output=True, text=True,
                       timeout=30)
    check("without /run/relayguard the daemon stops at once, naming the directory and how to make it",
          p.returncode != 0 and "/run/relayguard must exist and be writable by relayguard" in p.stdout + p.stderr and
          "install -d -o relayguard" in p.stdout + p.stderr, (p.returncode, (p.stdout + p.stderr)[-1500:]))
    os.makedirs("/run/relayguard", exist_ok=True)
    os.chown("/run/relayguard", pwd.getpwnam("relayguard").pw_uid, grp.getgrnam("relayguard").gr_gid)

    # Any local user submits, as with Postfix's sendmail: a message without From, Date
    # or Message-ID, to a bare name, from a user not in group relayguard. With relayd
    # stopped the file waits in incoming/, where it is read as relayd would.
    run("userdel", "-r", "rgsubmit")
    run("useradd", "-m", "rgsubmit")
    uid = pwd.getpwnam("rgsubmit").pw_uid
    incoming = "/var/spool/relayguard/incoming"
    before = set(os.listdir(incoming))
    p = subprocess.run(as_user("rgsubmit", ["relayguard-sendmail", "-F", "Report Job", "ops"]),
                       input="Subject: nightly\n\nall fine\n", capture_output=True, text=True, timeout=30)
    check("a local user outside group relayguard submits with relayguard-sendmail: exit 0",
          p.returncode == 0, (p.returncode, p.stdout, p.stderr))
    dropped = sorted(set(os.listdir(incoming)) - before)
    qid = dropped[0] if len(dropped) == 1 else ""
    path = os.path.join(incoming, qid)
    st = os.stat(path) if qid else None
    check("the file in incoming/ is the submitter's, group relayguard, 0640",
          st and st.st_uid == uid and st.st_gid == grp.getgrnam("relayguard").gr_gid and st.st_mode & 0o777 == 0o640,
          (dropped, st))
    text = open(path, errors="replace", newline="").read() if qid else ""
    head, _, content = text.partition("\n\n")
    m = re.search(r"^from rgsubmit@(\S+)$", head, re.M)
    origin = open("/etc/mailname").read().split()[0] if os.path.exists("/etc/mailname") else None
    check("the envelope sender is qualified (user@origin: /etc/mailname, else the host's full name)",
          m and "." in m.group(1) and (origin is None or m.group(1) == origin), head)
    domain = m.group(1) if m else "?"
    check("and so is the bare recipient", f"rcpt P ops@{domain}" in head, head)
    check("the message got From (with -F's name), Date and Message-ID",
          f'From: "Report Job" <rgsubmit@{domain}>\r\n' in content and re.search(r"^Date: \w{3}, ", content, re.M) and
          f"Message-ID: <{qid}@{domain}>\r\n" in content and "Subject: nightly\r\n" in content, content[:600])
    p = subprocess.run(as_user("rgsubmit", ["relayguard-sendmail", "--config", "/etc/relayguard/relayguard.toml",
                                            "ops"]), input="x\n", capture_output=True, text=True,
                       timeout=30)
    check("a user cannot point the setgid program at another config (exit 64, saying why)",
          p.returncode == 64 and "setgid" in p.stderr, (p.returncode, p.stderr))
    # relayd again: it takes the file in and logs who submitted it.
    rlog = open("/run/relayguard/test-relayd-2.log", "w")
    relayd = subprocess.Popen(as_user("relayguard", shlex.split(relayd_unit["ExecStart"])), stdout=rlog,
                              stderr=subprocess.STDOUT)
    wanted = re.escape(qid) + rf": queued from=<rgsubmit@\S+> nrcpt=1 size=\d+ uid={uid} via=relayguard-sendmail"
    deadline = time.monotonic() + 10
    while not re.search(wanted, open("/run/relayguard/test-relayd-2.log").read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    check("relayd takes it in and logs it with the submitter's uid",
          qid and re.search(wanted, open("/run/relayguard/test-relayd-2.log").read()),
          open("/run/relayguard/test-relayd-2.log").read()[-1500:])
    relayd.send_signal(signal.SIGTERM)
    relayd.wait(timeout=30)
    # One more, left in incoming/ for the purge below to find.
    subprocess.run(as_user("rgsubmit", ["relayguard-sendmail", "ops"]), input="Subject: left\n\nx\n",
                   capture_output=True, text=True, timeout=30)
    run("userdel", "-r", "rgsubmit")
finally:
    p = run("dpkg", "--purge", "relayguard")
    check("dpkg --purge removes it and its user, but keeps the queue while mail is in it",
          p.returncode == 0 and not os.path.exists("/usr/sbin/relayguard")
          and os.path.isdir("/var/spool/relayguard/active") and "still holds undelivered mail" in p.stderr,
          p.stdout + p.stderr)
    subprocess.run(["rm", "-rf", "/var/spool/relayguard"])
    try:
        pwd.getpwnam("relayguard")
        check("the user relayguard is gone", False)
    except KeyError:
        pass
    subprocess.run(["rm", "-rf", "/run/relayguard"])
    if made_main_cf:
        os.remove(MAIN_CF)
finish()
