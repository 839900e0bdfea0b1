#!/usr/bin/python3
"""listen.stage_timeout bounds what one SMTP stage waits for, Redis and DNS included, through
a real Postfix and the milter: with Redis paused (SIGSTOP) under a 5 s command_timeout, or
the DNS server paused under a 5 s dns.timeout, a 1 s stage_timeout makes MAIL FROM answer
after about 1 s with the reply of its fail mode, not after 5 s:

  node A: store.fail_mode = "tempfail", DNS checks on
      Redis paused -> 451 4.3.0 (store.failure_reply)
      DNS paused   -> 450 4.7.25 (dns.ptr_tempfail_reply) for a client not in the cache
  node B: store.fail_mode = "open"
      Redis paused -> 250 at MAIL FROM and at the end of data: counted on the node alone

Each timed reply must come after more than 0.8 s (the stage did wait for Redis or DNS) and
within 2.5 s (it did not wait for their own 5 s timeouts)."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Dnsmasq, PostfixInstance, SmtpSession, build_message, free_port  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

STAGE = "1s"
SLOW = "5s"  # Redis's command_timeout and the DNS timeout: what a stage must not wait for
LOWER, UPPER = 0.8, 2.5
SENDER, RCPT = "s@example.org", "user1@example.test"
# Clients with a PTR (cached once asked); 127.0.2.x are asked first while DNS is paused.
HOSTS = {f"c{i}.client.test": f"127.0.1.{i}" for i in range(1, 6)}

LIMITS = """
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.message_rate]
max = 1000
# Only MAIL FROM waits on the store here, so that is the stage timed: with
# the connection limit or the harvest guard on, connect would take the wait
# (the slot, the block lookup) and MAIL would answer from the session at once.
[limits.connections]
max = "off"
[limits.unknown_recipients]
max = "off"
"""


def dns_config(dns):
    return f"""
[dns]
servers = ["{dns.server}"]
timeout = "{SLOW}"
tries = 1
require_client_ptr = true
"""


def timed(what):
    started = time.monotonic()
    reply = what()
    return reply, time.monotonic() - started


def in_bounds(took):
    return LOWER < took < UPPER


def mail_from(port, source):
    """A session up to MAIL FROM: (session, MAIL reply, seconds MAIL took)."""
    s = SmtpSession("127.0.0.1", port, source=source)
    s.ehlo()
    reply, took = timed(lambda: s.mail(SENDER))
    return s, reply, took


def deliver(port, source):
    with SmtpSession("127.0.0.1", port, source=source) as s:
        s.ehlo()
        ok = s.mail(SENDER).code == 250 and s.rcpt(RCPT).code == 250
        return ok and s.data(build_message(SENDER, [RCPT])).code == 250


def paused(proc_signal):
    """Context: the process paused with SIGSTOP, resumed with SIGCONT whatever happens."""
    class Paused:
        def __enter__(self):
            proc_signal(signal.SIGSTOP)

        def __exit__(self, *exc):
            proc_signal(signal.SIGCONT)
            return False
    return Paused()


def redis_paused_node_a(pf_a, rg_a, redis):
    with paused(redis.kill):
        s, reply, took = mail_from(pf_a.port, "127.0.1.1")
        s.close()
    check(f"redis paused, fail_mode tempfail: MAIL FROM gets 451 4.3.0 ({took:.2f} s)",
          reply.code == 451 and reply.enhanced == "4.3.0", str(reply))
    check(f"redis paused, fail_mode tempfail: after the stage timeout, not Redis's 5 s "
          f"({LOWER} < {took:.2f} < {UPPER})", in_bounds(took))
    check("redis paused: node A logs the store lost, cut short by the stage timeout",
          rg_a.wait_for(r"unreachable \(.*stage timeout.*fail_mode = tempfail"), rg_a.log()[-1500:])


def redis_paused_node_b(pf_b, rg_b, redis):
    with paused(redis.kill):
        s, reply, took = mail_from(pf_b.port, "127.0.1.2")
        with s:
            rcpt = s.rcpt(RCPT)
            end, took_eom = timed(lambda: s.data(build_message(SENDER, [RCPT])))
    check(f"redis paused, fail_mode open: MAIL FROM proceeds with 250 ({took:.2f} s)", reply.code == 250, str(reply))
    check(f"redis paused, fail_mode open: after the stage timeout, not Redis's 5 s ({LOWER} < {took:.2f} < {UPPER})",
          in_bounds(took))
    check("redis paused, fail_mode open: the message is accepted",
          rcpt.code == 250 and end.code == 250, f"{rcpt} / {end}")
    check(f"redis paused, fail_mode open: the end of data waits no longer ({took_eom:.2f} < {UPPER})",
          took_eom < UPPER)
    check("redis paused: node B logs that it counts alone, cut short by the stage timeout",
          rg_b.wait_for(r"unreachable \(.*stage timeout.*counting on this node alone"), rg_b.log()[-1500:])


def dns_paused_node_a(pf_a, dns):
    with paused(dns.proc.send_signal):
        s, reply, took = mail_from(pf_a.port, "127.0.2.1")
        s.close()
    check(f"dns paused: MAIL FROM from a client never looked up gets 450 4.7.25 ({took:.2f} s)",
          reply.code == 450 and reply.enhanced == "4.7.25", str(reply))
    check(f"dns paused: after the stage timeout, not the 5 s dns.timeout ({LOWER} < {took:.2f} < {UPPER})",
          in_bounds(took))


def main():
    dns = Dnsmasq(port=free_port(), hosts=HOSTS, extra_conf=["local-ttl=300"])
    with dns, RedisServer() as redis:
        slow_redis = f'command_timeout = "{SLOW}"\n'
        config_a = LIMITS + dns_config(dns) + store_config("single", [redis.address], "tempfail", extra=slow_redis)
        config_b = LIMITS + store_config("single", [redis.address], "open", extra=slow_redis)
        with Relayguard(config_a, stage_timeout=STAGE) as rg_a, Relayguard(config_b, stage_timeout=STAGE) as rg_b, \
                PostfixInstance(port=free_port(), milter=rg_a.milter) as pf_a, \
                PostfixInstance(port=free_port(), milter=rg_b.milter) as pf_b:
            # Everything answering: mail flows, and 127.0.1.x's PTRs are in A's cache.
            check("baseline: node A delivers", deliver(pf_a.port, "127.0.1.1"))
            check("baseline: node B delivers", deliver(pf_b.port, "127.0.1.2"))

            redis_paused_node_a(pf_a, rg_a, redis)
            redis_paused_node_b(pf_b, rg_b, redis)
            dns_paused_node_a(pf_a, dns)

            # Both back: mail flows again by itself (the pool retries within 1 s).
            deadline = time.monotonic() + 10
            while not deliver(pf_a.port, "127.0.1.3") and time.monotonic() < deadline:
                time.sleep(0.3)
            check("redis and dns resumed: node A delivers again", deliver(pf_a.port, "127.0.1.3"))
            check("both daemons still run", rg_a.alive() and rg_b.alive())
    finish()


main()
