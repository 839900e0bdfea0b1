#!/usr/bin/python3
"""POP-before-SMTP with a real Dovecot: its post-login hook
(contrib/dovecot/relayguard-postlogin.sh) reports each login to relayguard's
admin socket through relayguardctl; a login from 127.0.0.5 opens relay
through Postfix for 127.0.0.5 only, a failed login opens nothing, the window
ends, the limits still apply, and a login still works with relayguard down."""

import grp
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.pop3 import PostLoginHook, pop3_login  # noqa: E402

WINDOW = 4  # seconds

hook = PostLoginHook("rgtest-pop-")
ctl, socket_path = hook.ctl, hook.socket_path

CONFIG = f"""
[relay]
local_domains = ["example.test"]
allow_pop_before_smtp = true
pop_window = "{WINDOW}s"
[limits]
exempt_group = ""
[limits.message_rate]
max = 3
"""

POSTLOGIN = hook.script


def relay(port, source):
    return send_message("127.0.0.1", port, source=source, sender="u1@example.test", rcpts=["friend@foreign.example"])


def ctl_run(*args):
    return subprocess.run([ctl, "--socket", socket_path, *args], capture_output=True, text=True, timeout=10)


try:
    with Relayguard(CONFIG, admin=socket_path, listen_extra='admin_group = "dovecot"') as rg, \
            DovecotInstance(pop3_port=free_port(), auth_port=free_port(),
                            users={"u1": "secret1", "u2": "secret2"}, postlogin_script=POSTLOGIN,
                            # An ASan build of relayguardctl reserves terabytes of
                            # shadow address space: Dovecot's 256 MB vsz limit
                            # would stop it before it runs.
                            extra_conf="default_vsz_limit = 0") as dov, \
            PostfixInstance(port=free_port(), milter=rg.milter) as pf:
        st = os.stat(socket_path)
        check("the admin socket is 0660, group dovecot",
              st.st_mode & 0o777 == 0o660 and st.st_gid == grp.getgrnam("dovecot").gr_gid,
              (oct(st.st_mode & 0o777), st.st_gid))

        r = relay(pf.port, "127.0.0.5")
        check("before any login 127.0.0.5 may not relay (554 5.7.1)", r.rcpts and r.rcpts[0][1].code == 554, r.summary())

        check("POP3 login of u1 from 127.0.0.5 succeeds", pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.5"))
        check("the hook's report reached relayguard",
              rg.wait_for(r'pop-before-smtp window client=127\.0\.0\.5 user="u1" .*via=admin'), rg.log()[-1500:])
        r = relay(pf.port, "127.0.0.5")
        check("after the login 127.0.0.5 relays through Postfix", r.delivered, r.summary())
        r = relay(pf.port, "127.0.0.6")
        check("127.0.0.6, which did not log in, still may not", not r.delivered and r.rcpts[0][1].code == 554,
              r.summary())

        check("a failed POP3 login from 127.0.0.6 is refused by Dovecot",
              not pop3_login(dov.pop3_port, "u1", "wrong", "127.0.0.6"))
        time.sleep(0.5)
        r = relay(pf.port, "127.0.0.6")
        check("and opens nothing", not r.delivered, r.summary())
        check("no window was logged for 127.0.0.6", "window client=127.0.0.6" not in rg.log())

        # The limits still apply to a client inside a window.
        pop3_login(dov.pop3_port, "u2", "secret2", "127.0.0.7")
        rg.wait_for(r"window client=127\.0\.0\.7")
        sent = [relay(pf.port, "127.0.0.7").delivered for _ in range(3)]
        r = relay(pf.port, "127.0.0.7")
        check("a window does not lift the rate limit: 3 relayed, the 4th refused with 450",
              all(sent) and r.mail is not None and r.mail.code == 450, (sent, r.summary()))

        # Manual grants.
        p = ctl_run("pop", "grant", "127.0.0.9", "--minutes", "1", "--user", "admin-test")
        check("relayguardctl pop grant opens a window", p.returncode == 0 and "window for 127.0.0.9" in p.stdout,
              p.stdout + p.stderr)
        r = relay(pf.port, "127.0.0.9")
        check("and 127.0.0.9 relays", r.delivered, r.summary())
        p = ctl_run("pop", "show", "127.0.0.9")
        check("relayguardctl pop show names the user", p.returncode == 0 and 'user="admin-test"' in p.stdout,
              p.stdout + p.stderr)
        p = ctl_run("pop", "grant", "not-an-address")
        check("a malformed grant is refused with exit 1 and a reason",
              p.returncode == 1 and "not an IP address" in p.stderr, p.stdout + p.stderr)

        # The window ends WINDOW seconds after the login.
        time.sleep(WINDOW + 0.5)
        r = relay(pf.port, "127.0.0.5")
        check(f"{WINDOW} s after the login the window has ended", not r.delivered, r.summary())
        check("a new login opens it again", pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.5"))
        deadline = time.monotonic() + 5
        while len(re.findall(r"window client=127\.0\.0\.5 ", rg.log())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = relay(pf.port, "127.0.0.5")
        check("and 127.0.0.5 relays again", r.delivered, r.summary())

        rg.stop()
        check("with relayguard stopped, a POP3 login still works (the hook never blocks it)",
              pop3_login(dov.pop3_port, "u1", "secret1", "127.0.0.5"))
        p = ctl_run("ping")
        check("relayguardctl says the daemon cannot be reached, exit 69",
              p.returncode == 69 and "is relayguard running" in p.stderr, p.stdout + p.stderr)
finally:
    hook.close()
finish()
