#!/usr/bin/python3
"""DNS checks end to end: a private dnsmasq with fixed records, relayguard
resolving against it, and private Postfix instances (milter, and policy
service) with Postfix's own DNS checks off. Each answer gets its reply; a
lookup the server never answers gives a 4xx within the budget; the cache
means a warm session asks the server nothing."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Dnsmasq, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

HOSTS = {
    "mx.example.test": "192.0.2.10",
    "aonly.test": "192.0.2.20",
    "good.example.test": "127.0.0.5",   # and its PTR
    "liar.example.test": "192.0.2.99",
    "new.example.test": "127.0.0.8",
}


def config(dns_server):
    return f"""
[ip_groups]
internal = ["127.0.0.10/32"]
[relay]
local_domains = ["example.test"]
[dns]
servers = ["{dns_server}"]
timeout = "500ms"
tries = 1
require_sender_domain = true
require_client_ptr = true
require_forward_confirmed_ptr = true
exempt_groups = ["internal"]
"""


def queries(dns, qtype, name):
    return len(re.findall(rf"query\[{qtype}\] {re.escape(name)} from", dns.log()))


with Dnsmasq(port=free_port(), hosts=HOSTS, ptrs={"127.0.0.7": "liar.example.test"},
             mx={"example.test": "mx.example.test"},
             extra_conf=["local-ttl=300", "dns-rr=nullmx.test,15,000000"]) as dns, \
        Relayguard(config(dns.server)) as rg, \
        PostfixInstance(port=free_port(), milter=rg.milter) as pf, \
        PostfixInstance(port=free_port(), policy=rg.policy, policy_at=("rcpt",)) as pf_policy:

    def send(source, sender, port=pf.port):
        return send_message("127.0.0.1", port, source=source, sender=sender, rcpts=["user1@example.test"])

    def mail_reply(r):
        return (r.mail.code, r.mail.enhanced) if r.mail else None

    r = send("127.0.0.5", "a@example.test")
    check("milter: a client with a confirmed PTR and a sender domain with MX is accepted", r.delivered, r.summary())
    r = send("127.0.0.5", "a@aonly.test")
    check("milter: a sender domain with only an A record is accepted (RFC 5321 5.1)", r.delivered, r.summary())
    r = send("127.0.0.5", "")
    check("milter: the null sender <> is never checked", r.delivered, r.summary())
    r = send("127.0.0.5", "a@nowhere.test")
    check("milter: NXDOMAIN sender domain: 550 5.1.8 at MAIL", mail_reply(r) == (550, "5.1.8"), r.summary())
    r = send("127.0.0.5", "a@nullmx.test")
    check("milter: null MX sender domain: 550 5.7.27", mail_reply(r) == (550, "5.7.27"), r.summary())
    r = send("127.0.0.5", "a@example.invalid")
    check("milter: a lookup the server refuses gives 451 4.4.3, never a 5xx",
          mail_reply(r) == (451, "4.4.3"), r.summary())
    r = send("127.0.0.6", "a@example.test")
    check("milter: a client without PTR: 550 5.7.25", mail_reply(r) == (550, "5.7.25"), r.summary())
    r = send("127.0.0.7", "a@example.test")
    check("milter: a PTR that does not resolve back: 550 5.7.25, saying so",
          mail_reply(r) == (550, "5.7.25") and "does not match" in str(r.mail), r.summary())
    r = send("127.0.0.10", "a@nowhere.test")
    check("milter: the exempt group skips both checks", r.delivered, r.summary())
    check("the security log names each rule",
          rg.refusals(rule="sender_domain") and rg.refusals(rule="client_ptr", client="127.0.0.6") and
          rg.refusals(rule="client_ptr", client="127.0.0.7"), rg.log()[-2000:])

    r = send("127.0.0.6", "a@example.test", port=pf_policy.port)
    check("policy service: a client without PTR refused at RCPT with 550 5.7.25",
          r.rcpts and r.rcpts[0][1].code == 550 and r.rcpts[0][1].enhanced == "5.7.25", r.summary())
    r = send("127.0.0.5", "a@nowhere.test", port=pf_policy.port)
    # Postfix rewrites an X.1.Y status to fit the command it answers: at RCPT
    # our 5.1.8 (bad sender domain) goes out as 5.1.2.
    check("policy service: NXDOMAIN sender domain refused at RCPT with 550 and relayguard's text",
          r.rcpts and r.rcpts[0][1].code == 550 and "Domain not found" in str(r.rcpts[0][1]), r.summary())

    # The cache: a warm client and domain cost the server nothing.
    mx_before = queries(dns, "MX", "example.test")
    ptr_before = queries(dns, "PTR", "5.0.0.127.in-addr.arpa")
    warm = [send("127.0.0.5", "a@example.test").delivered for _ in range(5)]
    check("cache: 5 more sessions from a known client accepted", all(warm), warm)
    check("cache: they sent no query to the server (0 lookups per warm session)",
          queries(dns, "MX", "example.test") == mx_before and
          queries(dns, "PTR", "5.0.0.127.in-addr.arpa") == ptr_before,
          dns.log()[-1500:])
    check("cache: the PTR of 127.0.0.5 was asked once in the whole test", ptr_before == 1, ptr_before)

    # The server stops answering: cached answers still serve, new ones tempfail in time.
    dns.proc.send_signal(signal.SIGSTOP)
    try:
        r = send("127.0.0.5", "a@example.test")
        check("DNS paused: a cached client and domain are still accepted", r.delivered, r.summary())
        started = time.monotonic()
        r = send("127.0.0.8", "a@example.test")
        took = time.monotonic() - started
    finally:
        dns.proc.send_signal(signal.SIGCONT)
    check("DNS paused: an unknown client gets 450 4.7.25, not a 5xx", mail_reply(r) == (450, "4.7.25"), r.summary())
    check("DNS paused: within the 500 ms budget plus the SMTP session (under 3 s)", took < 3.0, f"{took:.2f} s")
    r = send("127.0.0.8", "a@example.test")
    check("DNS back: the same client is accepted, the failure was not cached", r.delivered, r.summary())
    check("relayguard is still running", rg.alive())
finish()
