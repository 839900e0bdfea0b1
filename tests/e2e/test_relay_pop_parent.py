#!/usr/bin/python3
"""POP-before-SMTP at the parent, all real: the parent is a private Postfix that relays
only for an address with a recent POP3 login (relayguard's policy daemon as its milter,
fed by Dovecot's post-login hook), and a private Dovecot (STLS on, APOP on) is the
parent's POP3 server. The relay client logs in there before it sends: a wrong password
keeps the mail queued (deferred, never bounced), the right one delivers it; USER/PASS
over STLS, in plaintext when told so, and APOP are each seen in Dovecot's log."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.pop3 import PostLoginHook  # noqa: E402
from rgtest.tls import make_test_cert  # noqa: E402

hook = PostLoginHook("rgtest-popparent-")
socket_path = hook.socket_path
cert, key = make_test_cert(os.path.join(hook.dir, "tls"), "pop.parent.test")

PARENT_POLICY = """
[relay]
local_domains = ["parent.test"]
allow_pop_before_smtp = true
pop_window = "10m"
"""
POSTLOGIN = hook.script
DOVECOT_EXTRA = f"""
default_vsz_limit = 0
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain login apop
"""


def logins(dov):
    """(method, rest of the line) of each login of u1 in Dovecot's log."""
    with open(dov._logfile(), errors="replace") as f:
        return re.findall(r"pop3-login: Info: Login: user=<u1>, method=(\w+)([^\n]*)", f.read())


def wait_login(dov, pred, since=0, timeout=5):
    """Dovecot's log process writes a moment after the login: wait for a matching line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(pred(m, rest) for m, rest in logins(dov)[since:]):
            return True
        time.sleep(0.1)
    return False


try:
    with Relayguard(PARENT_POLICY, admin=socket_path, listen_extra='admin_group = "dovecot"') as rg, \
            DovecotInstance(pop3_port=free_port(), auth_port=free_port(), users={"u1": "secret1"},
                            postlogin_script=POSTLOGIN, extra_conf=DOVECOT_EXTRA) as dov, \
            PostfixInstance(port=free_port(), milter=rg.milter, mydestination="parent.test",
                            local_users=("p@parent.test",)) as parent:
        r = send_message("127.0.0.1", parent.port, source="127.0.0.1", sender="a@child.test",
                         rcpts=["friend@far.example"])
        check("the parent refuses to relay for us before any POP3 login (554)",
              r.rcpts and r.rcpts[0][1].code == 554, r.summary())

        base = (f'route = "smarthost"\nsmarthosts = ["127.0.0.1:{parent.port}"]\nauth = "pop-before-smtp"\n'
                f'pop_server = "127.0.0.1:{dov.pop3_port}"\nusername = "u1"\nretry_interval = "1s"\n'
                f'max_retry_interval = "1s"\npop_login_interval = "0s"\ntls_ca_file = "{cert}"\n')
        with Relayd(base + 'password = "wrong"\n') as relayd:
            r = send_message("127.0.0.1", relayd.port, sender="a@child.test", rcpts=["friend@far.example"])
            check("the relay client takes the message", r.delivered, r.summary())
            check("with a wrong POP3 password the message is deferred, naming the POP3 step",
                  relayd.wait_for(r"to=<friend@far\.example> relay=none status=deferred "
                                  r"\(.*pop-before-smtp login failed: .*PASS: -ERR"), relayd.log()[-2000:])
            check("and stays queued (our own parent's fault never bounces)", len(relayd.queued()) == 1,
                  relayd.queued())
            check("the password is in no log line", "secret1" not in relayd.log() and "wrong" not in
                  re.sub(r'password = "wrong"', "", relayd.log()), relayd.log()[-1500:])

            relayd.write_config(base + 'password = "secret1"\n')
            relayd.reload()
            check("with the right password it logs in and the parent takes the mail",
                  relayd.wait_for(r"to=<friend@far\.example> relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+ status=sent",
                                  timeout=20), relayd.log()[-2000:])
            check("the login went over STLS (opportunistic TLS offered by Dovecot)",
                  relayd.wait_for(r"pop-before-smtp: logged in as u1 at 127\.0\.0\.1\[127\.0\.0\.1\]:\d+ over TLS"),
                  relayd.log()[-1500:])
            check("Dovecot logged a PLAIN login over TLS",
                  wait_login(dov, lambda m, rest: m == "PLAIN" and ", TLS," in rest), logins(dov))
            check("the parent's policy daemon opened the window from the hook",
                  rg.wait_for(r'pop-before-smtp window client=127\.0\.0\.1 user="u1"'), rg.log()[-1500:])
            deadline = time.monotonic() + 5  # the file goes just after the log line
            while relayd.queued() and time.monotonic() < deadline:
                time.sleep(0.05)
            check("the queue is empty", not relayd.queued(), relayd.queued())

            # APOP: the password never crosses the wire.
            relayd.write_config(base + 'password = "secret1"\npop_method = "apop"\nstarttls = "off"\n')
            relayd.reload()
            time.sleep(0.5)
            before = len(logins(dov))
            r = send_message("127.0.0.1", relayd.port, sender="a@child.test", rcpts=["second@far.example"])
            check("APOP: the next message is sent after an APOP login",
                  r.delivered and relayd.wait_for(r"to=<second@far\.example> relay=\S+ status=sent", timeout=20),
                  relayd.log()[-1500:])
            check("Dovecot logged method=APOP, without TLS",
                  wait_login(dov, lambda m, rest: m == "APOP" and "TLS" not in rest, since=before), logins(dov))
            check("without TLS this time, as starttls = off says",
                  relayd.wait_for(r"pop-before-smtp: logged in as u1 at \S+:\d+\n"), relayd.log()[-1500:])

            # APOP with a wrong secret is refused like any other login failure.
            relayd.write_config(base + 'password = "nope"\npop_method = "apop"\nstarttls = "off"\n')
            relayd.reload()
            time.sleep(0.5)
            # A fresh SMTP session needs a fresh login: wait out the kept session (10 s idle).
            time.sleep(10.5)
            r = send_message("127.0.0.1", relayd.port, sender="a@child.test", rcpts=["third@far.example"])
            check("a refused APOP login defers the message",
                  relayd.wait_for(r"to=<third@far\.example> relay=none status=deferred \(.*APOP: -ERR", timeout=20),
                  relayd.log()[-1500:])
finally:
    hook.close()
finish()
