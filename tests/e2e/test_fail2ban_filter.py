#!/usr/bin/python3
"""The fail2ban filter in contrib/ reads the security log the daemon really
writes: a relay refusal bans, a rate-limit refusal does not."""

import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

source = os.environ["RELAYGUARD_SOURCE_DIR"]
rg = Relayguard('[relay]\nlocal_domains = ["example.test"]\n[limits.message_rate]\nmax = 1\n',
                log_settings='security_log = "SECURITY"')
security = os.path.join(rg.dir, "security.log")
with open(rg.config) as f:
    text = f.read().replace("SECURITY", security)
with open(rg.config, "w") as f:
    f.write(text)

with rg:
    def ask(client, recipient, state="RCPT", instance="i"):
        s = socket.create_connection(("127.0.0.1", rg.policy_port), timeout=5)
        s.sendall(f"request=smtpd_access_policy\nprotocol_state={state}\nclient_address={client}\nclient_port=1\n"
                  f"sender=a@example.org\nrecipient={recipient}\ninstance={instance}\n\n".encode())
        reply = s.recv(200)
        s.close()
        return reply
    ask("192.0.2.5", "victim@foreign.example")
    ask("2001:db8::7", "victim@foreign.example")
    ask("192.0.2.9", "u@example.test", instance="a")
    ask("192.0.2.9", "", state="END-OF-MESSAGE", instance="a")
    check("the rate limit refuses the second message", b"450" in ask("192.0.2.9", "u@example.test", instance="b"))

lines = open(security).read()
check("the security log file has the refusals", "rule=relay" in lines and "rule=message_rate" in lines, lines)
r = subprocess.run(["fail2ban-regex", security, os.path.join(source, "contrib/fail2ban/relayguard.conf")],
                   capture_output=True, text=True, timeout=60)
check("fail2ban-regex matches the 2 relay refusals (IPv4 and IPv6) and not the rate refusal",
      "2 matched, 1 missed" in r.stdout, r.stdout[-800:])
finish()
