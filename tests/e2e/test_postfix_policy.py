#!/usr/bin/python3
"""The relay and limit rules through a real Postfix with relayguard attached
only as a policy service (check_policy_service at RCPT and END-OF-MESSAGE),
and the protocol's defences: a malformed request closes only its own
connection."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import DovecotInstance, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

CONFIG = """
[ip_groups]
trusted = ["127.0.0.10/32"]
exempt = ["127.0.0.20/32"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["trusted"]
[limits]
exempt_group = "exempt"
[limits.message_rate]
max = 3
[limits.message_size]
max = "4KB"
"""
LOCAL = "user1@example.test"


def msg(source, rcpts, **kw):
    return send_message("127.0.0.1", PF, source=source, sender="sender@example.org", rcpts=rcpts, **kw)


def relay():
    r = msg("127.0.0.2", [LOCAL, "victim@foreign.example"])
    c = r.rcpt("victim@foreign.example")
    check("policy: relay refused for an unknown client with 554 5.7.1", c.code == 554 and c.enhanced == "5.7.1", c)
    check("policy: the local recipient is accepted", r.rcpt(LOCAL).code == 250 and r.delivered, r.summary())
    r = msg("127.0.0.10", ["victim@foreign.example"])
    check("policy: OK lets a trusted group relay past reject_unauth_destination", r.delivered, r.summary())
    r = msg("127.0.0.3", ["victim@foreign.example"], auth=("u1", "secret1"))
    check("policy: OK lets an SMTP-AUTH user relay", r.delivered, r.summary())
    r = msg("127.0.0.2", ["nosuchuser@example.test"])
    check("policy: Postfix still refuses unknown local users itself (550 5.1.1)",
          r.rcpt("nosuchuser@example.test").enhanced == "5.1.1", r.summary())


def rate():
    ok = [msg("127.0.0.4", [LOCAL]).delivered for _ in range(3)]
    check("policy: 3 messages accepted (limit 3)", all(ok), ok)
    r = msg("127.0.0.4", [LOCAL])
    c = r.rcpt(LOCAL)
    check("policy: the 4th refused at RCPT with 450 4.7.1", c.code == 450 and c.enhanced == "4.7.1", r.summary())
    ok = [msg("127.0.0.20", [LOCAL]).delivered for _ in range(5)]
    check("policy: the exempt group is never refused", all(ok), ok)


def size():
    r = msg("127.0.0.9", [LOCAL], body=("y" * 78 + "\r\n") * 80)
    check("policy: a message above the size limit refused at END-OF-MESSAGE with 552 5.3.4",
          r.data is not None and r.data.code == 552 and r.data.enhanced == "5.3.4", r.summary())


def malformed():
    for junk in (b"this is not a policy request\n\n", b"request=smtpd_access_policy\n" + b"x" * 70000,
                 b"request=something_else\nclient_address=1.2.3.4\n\n"):
        s = socket.create_connection(("127.0.0.1", rg.policy_port), timeout=5)
        s.sendall(junk)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        check(f"policy: a malformed request ({junk[:24]!r}...) closes its connection without a reply", data == b"", data)
        s.close()
    s = socket.create_connection(("127.0.0.1", rg.policy_port), timeout=5)
    s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nclient_port=1\n"
              b"recipient=u@example.test\nsender=a@b.example\ninstance=z\nunknown_future_attribute=1\n\n")
    check("policy: unknown attributes are ignored", s.recv(100) == b"action=DUNNO\n\n")
    s.close()
    check("policy: the daemon survives malformed requests", rg.alive())
    check("policy: malformed requests are logged", rg.wait_for("malformed request"))
    r = msg("127.0.0.2", [LOCAL])
    check("policy: Postfix is served normally afterwards", r.delivered, r.summary())


with Relayguard(CONFIG) as rg:
    dv_pop, dv_auth, PF = free_port(), free_port(), free_port()
    with DovecotInstance(pop3_port=dv_pop, auth_port=dv_auth) as dv, \
            PostfixInstance(port=PF, policy=rg.policy, policy_at=("rcpt", "eom"), sasl_path=dv.sasl_path):
        for part in (relay, rate, size, malformed):
            print(f"--- {part.__name__}")
            try:
                part()
            except Exception as e:
                check(f"{part.__name__} ran without an exception", False, repr(e))
finish()
