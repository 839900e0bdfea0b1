#!/usr/bin/python3
"""relayguard-sendmail run by an unprivileged member of the queue directory's
group (relayguard, as packaged; here a test group) queues mail that the relay
client delivers, also after the relay client restarts and sets the queue's
modes again. A user outside the group is refused with exit 77 and a message
saying who may submit. As packaged: the relay client runs as its own
unprivileged user of that group, the config is readable by the group, and
the queue directory is the daemon's, mode 0750, as postinst makes it."""

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.relayd import FAST, Relayd, smarthosts, wait  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

tag = os.getpid() % 100000
group, daemon, member, outsider = f"rgq{tag}", f"rgd{tag}", f"rgm{tag}", f"rgo{tag}"


def run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def submit(relayd, user, subject, config=None):
    """relayguard-sendmail as `user`, with its own groups only and a strict umask."""
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={group if user == member else outsider}",
                           "--init-groups", "sh", "-c", 'umask 077; exec "$@"', "sh",
                           relayd.sendmail_binary, "--config", config or relayd.config, "-f", f"{user}@example.test",
                           "ops@remote.example"],
                          input=f"Subject: {subject}\n\nfrom {user}\n", capture_output=True, text=True, timeout=30)


run("groupadd", group)
try:
    run("useradd", "-M", "-N", "-g", group, "-s", "/usr/sbin/nologin", daemon)
    run("useradd", "-M", "-N", "-g", group, "-s", "/usr/sbin/nologin", member)
    run("groupadd", outsider)
    run("useradd", "-M", "-N", "-g", outsider, "-s", "/usr/sbin/nologin", outsider)
    gid = grp.getgrnam(group).gr_gid
    public = tempfile.mkdtemp(prefix="rgtest-public-")
    os.chmod(public, 0o755)
    with SmtpSink() as sink:
        relayd = Relayd(smarthosts(sink.address) + FAST)
        # As the package has it: the relay client runs as its own user, the
        # config is readable by the group, the queue directory is the
        # daemon's with its group, 0750.
        uid = pwd.getpwnam(daemon).pw_uid
        os.chown(relayd.dir, uid, gid)
        os.chmod(relayd.dir, 0o750)
        os.chown(relayd.config, 0, gid)
        os.chmod(relayd.config, 0o640)
        os.mkdir(relayd.queue_dir, 0o750)
        os.chown(relayd.queue_dir, uid, gid)
        wrapper = os.path.join(relayd.dir, "relayd-as-daemon")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec setpriv --reuid={daemon} --regid={group} --init-groups {relayd.binary} "$@"\n')
        os.chmod(wrapper, 0o755)
        relayd.binary = wrapper
        with relayd:
            p = submit(relayd, member, "first")
            check("a member of the queue's group submits with relayguard-sendmail (exit 0)", p.returncode == 0,
                  (p.returncode, p.stderr))
            check("the relay client picks it up and delivers it", sink.wait_count(1, 15) == 1, relayd.log()[-2000:])
            m = sink.messages()[0] if sink.count() else {}
            check("with the member's envelope", m.get("sender") == f"{member}@example.test"
                  and m.get("recipients") == ["ops@remote.example"], m)

            p = submit(relayd, outsider, "outsider")
            check("a user outside the group cannot read the config (no setgid bit here): exit 77, told the fix",
                  p.returncode == 77 and "must be setgid relayguard" in p.stderr and "dpkg-statoverride" in p.stderr,
                  (p.returncode, p.stderr))
            # Even with a config it may read, the queue keeps it out.
            readable = os.path.join(public, "relayguard.toml")
            shutil.copy(relayd.config, readable)
            os.chmod(readable, 0o644)
            p = submit(relayd, outsider, "outsider", config=readable)
            check("and with a readable config the queue refuses it: exit 77, told the fix",
                  p.returncode == 77 and "must be setgid relayguard" in p.stderr
                  and "incoming" in p.stderr, (p.returncode, p.stderr))

            st = os.stat(os.path.join(relayd.queue_dir, "incoming"))
            check("incoming/ has the queue's group, setgid and sticky, writable but not readable by the group",
                  st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o3730, (st.st_gid, oct(st.st_mode)))
            st = os.stat(os.path.join(relayd.queue_dir, "active"))
            check("active/ stays the relay client's alone", stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode))

        # The relay client sets the queue's modes again at every start: the
        # group must still be able to submit afterwards.
        with relayd:
            mode = stat.S_IMODE(os.stat(relayd.queue_dir).st_mode)
            check("after a restart the queue directory still lets the group in (0750)", mode == 0o750, oct(mode))
            p = submit(relayd, member, "after restart")
            check("after a restart of the relay client the member still submits", p.returncode == 0,
                  (p.returncode, p.stderr))
            check("and that message is delivered too", sink.wait_count(2, 15) == 2, relayd.log()[-2000:])
            # The sink counts a message at its 250; the relay client removes the file just after.
            wait(lambda: not relayd.queued(), 5)
            check("the outsider's attempt left nothing behind", sink.count() == 2 and not relayd.queued()
                  and not [n for n in os.listdir(os.path.join(relayd.queue_dir, "incoming"))],
                  os.listdir(os.path.join(relayd.queue_dir, "incoming")))
        shutil.rmtree(relayd.dir, ignore_errors=True)
    shutil.rmtree(public, ignore_errors=True)
finally:
    for user in (daemon, member, outsider):
        subprocess.run(["userdel", user], capture_output=True)
    for g in (outsider, group):
        subprocess.run(["groupdel", g], capture_output=True)

finish()
