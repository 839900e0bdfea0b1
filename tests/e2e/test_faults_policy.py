#!/usr/bin/python3
"""Faults under load at the policy daemon, all real: a private Postfix with relayguard as
milter and policy service, counters in a real Redis (fail_mode = "tempfail"), DNS checks
against a private dnsmasq. Four client threads send mail without pause while the test
breaks one thing at a time:

  Redis killed, then restarted     -> 451 4.3.0 while gone, mail flows again by itself
  Redis paused (SIGSTOP)           -> 451 4.3.0 within the Redis timeouts, never a hang
  dnsmasq paused (no answers)      -> 450 4.7.25 for an unknown client; cached ones pass
  SERVFAIL for PTR and sender      -> 450 4.7.25 and 451 4.4.3, never a 5xx
  SIGHUP x3 (reload)               -> not one session notices
  relayguard SIGKILLed, restarted  -> Postfix's own 4xx while it is gone, then mail again

Through all of it: no 5xx, no session without an answer, no answer slower than its
bound, and no message lost: every message Postfix took with 250 is delivered (its
discard transport logs each one)."""

import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Dnsmasq, PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

THREADS = 4
# Known clients (127.0.1.x) have PTRs; 127.0.2.x are asked for the first time while DNS
# is paused; 127.0.3.x sit in a reverse zone whose server answers SERVFAIL.
KNOWN = [f"127.0.1.{i}" for i in range(1, 21)]
HOSTS = {f"c{i}.client.test": f"127.0.1.{i}" for i in range(1, 21)}
HOSTS["mx.sender.test"] = "192.0.2.10"


class ServfailServer:
    """A DNS server that answers SERVFAIL to every query: dnsmasq forwards two zones to it.
    (dnsmasq itself has no way to say SERVFAIL for a name it is authoritative for.)"""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            msg, peer = self.sock.recvfrom(4096)
            if len(msg) < 12:
                continue
            self.queries += 1
            # same id and question; QR, RD as asked, RA, rcode 2; no records
            head = msg[:2] + bytes([0x80 | (msg[2] & 0x01), 0x82]) + msg[4:6] + b"\0" * 6
            self.sock.sendto(head + msg[12:], peer)


class Load:
    """THREADS clients sending one message after another. Each outcome is recorded with
    the phase it started in: (phase, took, kind, reply, queue id)."""

    def __init__(self, port):
        self.port = port
        self.phase = "start"
        self.clients = list(KNOWN)
        self.sender = "s@sender.test"
        self.outcomes = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        return False

    def _run(self, n):
        i = n
        while not self.stopping.is_set():
            phase, clients, sender = self.phase, self.clients, self.sender
            source = clients[i % len(clients)]
            i += THREADS
            started = time.monotonic()
            try:
                r = send_message("127.0.0.1", self.port, source=source, sender=sender,
                                 rcpts=["user1@example.test"], timeout=30)
                kind, reply = classify(r)
            except Exception as e:  # a timeout or reset: the client was left without an answer
                kind, reply = "error", f"{type(e).__name__}: {e}"
            took = time.monotonic() - started
            queue_id = None
            if kind == "delivered":
                m = re.search(r"queued as ([0-9A-Za-z]+)", reply)
                queue_id = m.group(1) if m else None
            with self.lock:
                self.outcomes.append((phase, took, kind, reply, queue_id, source))
            time.sleep(0.01)

    def during(self, phase):
        with self.lock:
            return [o for o in self.outcomes if o[0] == phase]

    def run_phase(self, phase, seconds, clients=None, sender=None):
        self.clients = clients or list(KNOWN)
        self.sender = sender or "s@sender.test"
        self.phase = phase
        time.sleep(seconds)
        self.phase = "between"

    def wait_delivered(self, phase, timeout):
        """Seconds until a session that started in `phase` is delivered (None: never)."""
        started = time.monotonic()
        self.phase = phase
        while time.monotonic() - started < timeout:
            if any(o[2] == "delivered" for o in self.during(phase)):
                self.phase = "between"
                return time.monotonic() - started
            time.sleep(0.05)
        self.phase = "between"
        return None


def classify(r):
    """('delivered' | 'tempfail' | 'refused', the deciding reply as text)."""
    if r.delivered:
        return "delivered", str(r.data)
    for reply in [r.greeting, r.ehlo, r.mail] + [x for _, x in r.rcpts] + [r.data]:
        if reply is not None and reply.code >= 400:
            return ("tempfail" if reply.code < 500 else "refused"), str(reply)
    if r.closed:
        return ("tempfail" if r.closed.startswith("421") else "error"), r.closed
    return "error", r.summary()


def kinds(outcomes):
    out = {}
    for o in outcomes:
        out[o[2]] = out.get(o[2], 0) + 1
    return out


def replies(outcomes, kind):
    return sorted({o[3].split("\n")[0][:60] for o in outcomes if o[2] == kind})


def phase_checks(load, phase, expect_tempfail, bound, allow_delivered=True):
    """No 5xx, no session without an answer, every answer within `bound` seconds, and each
    4xx one of `expect_tempfail` (reply prefixes)."""
    got = load.during(phase)
    k = kinds(got)
    check(f"{phase}: sessions ran during the fault ({len(got)})", len(got) >= THREADS, k)
    check(f"{phase}: no 5xx and no session left without an answer",
          k.get("refused", 0) == 0 and k.get("error", 0) == 0,
          [o[3] for o in got if o[2] in ("refused", "error")][:5])
    bad = [o[3] for o in got if o[2] == "tempfail" and not o[3].startswith(tuple(expect_tempfail))]
    check(f"{phase}: every 4xx is {' or '.join(expect_tempfail)} ({k.get('tempfail', 0)} of them)",
          k.get("tempfail", 0) > 0 and not bad, bad[:5] or k)
    if not allow_delivered:
        check(f"{phase}: nothing was accepted uncounted", k.get("delivered", 0) == 0, k)
    slowest = max((o[1] for o in got), default=0)
    check(f"{phase}: slowest whole session {slowest:.2f} s (bound {bound} s)", slowest < bound)


def clean_phase(load, phase):
    got = load.during(phase)
    k = kinds(got)
    check(f"{phase}: all {len(got)} sessions delivered", got and k.get("delivered", 0) == len(got),
          (k, replies(got, "tempfail"), replies(got, "error"))[:3])


servfail = ServfailServer()
dns = Dnsmasq(port=free_port(), hosts=HOSTS, mx={"sender.test": "mx.sender.test"},
              extra_conf=["local-ttl=300",  # answers a resolver may cache, as real zones give
                          f"server=/3.0.127.in-addr.arpa/127.0.0.1#{servfail.port}",
                          f"server=/servfail.test/127.0.0.1#{servfail.port}"])
with dns, RedisServer() as redis:
    config = f"""
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.message_rate]
max = 100000
[limits.recipients]
max = 50
[dns]
servers = ["{dns.server}"]
timeout = "500ms"
tries = 1
require_sender_domain = true
require_client_ptr = true
""" + store_config("single", [redis.address], fail_mode="tempfail")
    rg = Relayguard(config)
    with rg, PostfixInstance(port=free_port(), milter=rg.milter, policy=rg.policy,
                             policy_at=("rcpt", "eom")) as pf, Load(pf.port) as load:
        load.run_phase("baseline", 3)
        clean_phase(load, "baseline")

        # --- Redis killed, then back ---
        redis.kill()
        load.run_phase("redis killed", 4)
        # Redis's timeouts are 200 ms + 200 ms per stage; a session meets a few stages.
        phase_checks(load, "redis killed", ["451 4.3.0"], bound=5.0)
        check("redis killed: the daemon logs the store lost and its fail mode",
              rg.wait_for(r"unreachable .*fail_mode = tempfail"), rg.log()[-1500:])
        redis.restart()
        took = load.wait_delivered("redis back", 15)
        check(f"redis back: mail flows again by itself ({took and round(took, 2)} s; "
              "the pool's back-off is at most 1 s)", took is not None and took < 5)
        load.run_phase("redis back, steady", 3)
        clean_phase(load, "redis back, steady")

        # --- Redis paused: connections stay open but nothing answers ---
        redis.kill(signal.SIGSTOP)
        try:
            load.run_phase("redis paused", 4)
        finally:
            redis.kill(signal.SIGCONT)
        phase_checks(load, "redis paused", ["451 4.3.0"], bound=5.0)
        took = load.wait_delivered("redis resumed", 15)
        check(f"redis resumed: mail flows again by itself ({took and round(took, 2)} s)",
              took is not None and took < 5)

        # --- DNS server silent: the clients below were never looked up ---
        fresh = [f"127.0.2.{i}" for i in range(1, 41)]
        dns.proc.send_signal(signal.SIGSTOP)
        try:
            load.run_phase("dns silent, new clients", 3, clients=fresh)
            load.run_phase("dns silent, known clients", 2)
        finally:
            dns.proc.send_signal(signal.SIGCONT)
        # timeout 500 ms x 1 try for the PTR; sessions end at MAIL FROM
        phase_checks(load, "dns silent, new clients", ["450 4.7.25"], bound=3.0, allow_delivered=False)
        clean_phase(load, "dns silent, known clients")

        # --- SERVFAIL: for the client's PTR, then for the sender's domain ---
        broken = [f"127.0.3.{i}" for i in range(1, 41)]
        load.run_phase("servfail PTR", 3, clients=broken)
        phase_checks(load, "servfail PTR", ["450 4.7.25"], bound=3.0, allow_delivered=False)
        load.run_phase("servfail sender domain", 3, sender="s@x.servfail.test")
        phase_checks(load, "servfail sender domain", ["451 4.4.3"], bound=3.0, allow_delivered=False)
        check("servfail: the SERVFAIL server was really asked", servfail.queries > 0, servfail.queries)
        load.run_phase("dns answers again", 2)
        clean_phase(load, "dns answers again")

        # --- SIGHUP under load: reloads that no session notices ---
        load.phase = "reloads"
        applied = r"reload: configuration .* applied"
        reloads_before = len(re.findall(applied, rg.log()))
        for _ in range(3):
            time.sleep(1)
            rg.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        load.phase = "between"
        clean_phase(load, "reloads")
        check("reloads: the daemon logged three reloads", len(re.findall(applied, rg.log())) - reloads_before == 3,
              re.findall(r".*reload.*", rg.log())[-4:])

        # --- relayguard killed: Postfix must fail closed, then reconnect by itself ---
        rg.kill()
        load.run_phase("relayguard killed", 3)
        # milter_default_action = tempfail: 451 4.7.1; a dead policy service: 451 4.3.5
        phase_checks(load, "relayguard killed", ["451 4.7.1", "451 4.3.5"], bound=12.0,
                     allow_delivered=False)
        rg.start()
        took = load.wait_delivered("relayguard restarted", 30)
        check(f"relayguard restarted: mail flows again by itself ({took and round(took, 2)} s)",
              took is not None and took < 15)
        load.run_phase("relayguard restarted, steady", 3)
        clean_phase(load, "relayguard restarted, steady")

        load.stopping.set()
        for t in load.threads:
            t.join(60)
        check("relayguard is still running", rg.alive())

        # --- nothing lost: each 250 is a delivery in Postfix's log ---
        accepted = {o[4] for o in load.outcomes if o[2] == "delivered"}
        check("every 250 carried a Postfix queue id", None not in accepted)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sent = set(re.findall(r"postfix/discard\[\d+\]: ([0-9A-F]+): .*status=sent", pf.maillog()))
            if accepted <= sent:
                break
            time.sleep(0.5)
        missing = accepted - sent
        check(f"no message lost: all {len(accepted)} accepted messages were delivered", not missing,
              sorted(missing)[:10])
        total = kinds(load.outcomes)
        print(f"sessions in all: {total}")
finish()
