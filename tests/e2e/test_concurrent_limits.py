#!/usr/bin/python3
"""A limit holds however many sessions a client opens at once.

Spam software opens parallel sessions: here 20 SMTP sessions from one
client, all past RCPT before any of them sends its message, against a limit
of 5 messages an hour. Exactly 5 get through: on one node with the memory
store (milter, policy service, both), and across two nodes (two Postfix
instances, each with its relayguard) sharing one Redis, single and a
3-master Cluster, with both counting rules. Then, on Redis: a node killed
with SIGKILL mid-transaction gives its slot back within the lease, and a
harvest block set through node A refuses the client's next RCPT on node B
within a second."""

import contextlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, free_port  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402
from rgtest.nodes import store_config, two_nodes  # noqa: E402
from rgtest.redis import RedisCluster, RedisServer  # noqa: E402

LIMIT = 5
SESSIONS = 20
COUNTS = ("accepted", "attempts")


def limits(count, extra=""):
    return f"""
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.message_rate]
max = {LIMIT}
count = "{count}"
{extra}
"""


def parallel_transactions(ports, source):
    """SESSIONS sessions from `source`, spread over `ports`: every one gets
    through EHLO, then all send MAIL and RCPT at once, and only when every
    one has its RCPT answer do those accepted send their message. Answers
    (messages accepted, the replies of the ones refused)."""
    ready = threading.Barrier(SESSIONS)
    past_rcpt = threading.Barrier(SESSIONS)
    accepted, refused = [], []
    lock = threading.Lock()

    def one(i):
        port = ports[i % len(ports)]
        outcome = None
        try:
            with SmtpSession("127.0.0.1", port, source=source, timeout=30) as s:
                s.ehlo("client.example.test")
                ready.wait(timeout=60)
                m = s.mail("s@example.org")
                r = s.rcpt("user1@example.test") if m.code == 250 else m
                past_rcpt.wait(timeout=60)
                if r.code == 250:
                    d = s.data(f"Subject: parallel {i}\r\n\r\nmessage {i}\r\n")
                    outcome = ("accepted", d) if d.code == 250 else ("refused", d)
                else:
                    outcome = ("refused", r)
                s.quit()
        except Exception as e:  # a broken barrier or a dropped session: reported, never hidden
            outcome = ("error", repr(e))
        with lock:
            (accepted if outcome[0] == "accepted" else refused).append(outcome[1])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return accepted, refused


def exactly_the_limit(label, ports, source):
    accepted, refused = parallel_transactions(ports, source)
    check(f"{label}: {SESSIONS} parallel transactions, limit {LIMIT}: exactly {LIMIT} accepted",
          len(accepted) == LIMIT, f"accepted {len(accepted)}; refused {[str(r) for r in refused][:6]}")
    wrong = [str(r) for r in refused if getattr(r, "code", 0) != 450]
    check(f"{label}: every other one refused with the rate limit's 450", not wrong, wrong[:6])


# --- one node, memory store: each wiring, each counting rule ---
source = 10
for count in COUNTS:
    with Relayguard(limits(count)) as rg:
        for name, milter, stages in [("milter", True, ()), ("policy at RCPT", False, ("rcpt",)),
                                     ("milter + policy at RCPT", True, ("rcpt",))]:
            source += 1
            with PostfixInstance(port=free_port(), milter=rg.milter if milter else None,
                                 policy=rg.policy if stages else None, policy_at=stages) as pf:
                exactly_the_limit(f"memory, {name}, count={count}", [pf.port], f"127.0.0.{source}")
        check(f"memory, count={count}: relayguard is still running", rg.alive())


# --- two nodes on one Redis, single and Cluster ---
def two_node_limits(kind, store):
    global source
    for count in COUNTS:
        source += 1
        base = limits(count)
        with contextlib.ExitStack() as stack:
            rg_a = stack.enter_context(Relayguard(base + store))
            rg_b = stack.enter_context(Relayguard(base + store))
            pf_a = stack.enter_context(PostfixInstance(port=free_port(), milter=rg_a.milter))
            pf_b = stack.enter_context(PostfixInstance(port=free_port(), milter=rg_b.milter, policy=rg_b.policy,
                                                       policy_at=("rcpt",)))
            exactly_the_limit(f"redis {kind}, two nodes, count={count}", [pf_a.port, pf_b.port],
                              f"127.0.0.{source}")


# --- a harvest block set through node A reaches node B's open session within 1 s ---
def blocked_line(client):
    return r"refused .*client=" + client.replace(".", r"\.") + r"\b.*rule=unknown_recipients"


def harvest_across(kind, store, client):
    label = f"harvest ({kind})"
    harvest = '\n[limits.unknown_recipients]\nmax = 3\nblock_time = "1h"\n'
    with two_nodes(store + harvest, rate=100, connections=None) as (a, b):
        with b.session(client) as on_b:
            on_b.ehlo("client.example.test")
            before = [on_b.mail("s@example.org"), on_b.rcpt("user1@example.test")]
            check(f"{label}: node B's session is open and accepts a recipient before the block",
                  all(r.code == 250 for r in before), [str(r) for r in before])
            with a.session(client) as on_a:
                on_a.ehlo("client.example.test")
                on_a.mail("s@example.org")
                guesses = [on_a.rcpt(f"nobody{i}@example.test") for i in range(3)]
            blocked_at = time.monotonic()
            check(f"{label}: node A's Postfix refuses the 3 guesses as unknown users",
                  all(r.code == 550 for r in guesses[:2]), [str(r) for r in guesses])
            check(f"{label}: node A blocks the client",
                  a.daemon.wait_for(blocked_line(client), timeout=5),
                  a.daemon.log()[-1500:])
            refused_after = None
            while time.monotonic() - blocked_at < 3 and refused_after is None:
                r = on_b.rcpt("user2@example.test")
                if r.code >= 400:
                    refused_after = time.monotonic() - blocked_at
                else:
                    time.sleep(0.05)
            check(f"{label}: node B refuses the client's next RCPT within 1 s of the block",
                  refused_after is not None and refused_after <= 1.0, refused_after)
            check(f"{label}: node B's security log names the block",
                  b.daemon.wait_for(blocked_line(client), timeout=5),
                  b.daemon.log()[-1500:])



with RedisServer() as redis:
    two_node_limits("single", store_config("single", [redis.address]))

    # --- a node killed mid-transaction: its slot comes back within the lease (5 s) ---
    store = store_config("single", [redis.address])
    with two_nodes(store, rate=1, connections=None) as (a, b):
        holder = a.session("127.0.0.40")
        holder.ehlo("client.example.test")
        r = holder.mail("s@example.org")
        r2 = holder.rcpt("user1@example.test")
        check("kill: node A holds the only slot with a transaction past RCPT",
              r.code == 250 and r2.code == 250, f"{r} / {r2}")
        with b.session("127.0.0.40") as s:
            s.ehlo("client.example.test")
            r = s.mail("s@example.org")
        check("kill: meanwhile node B refuses the client's MAIL with 450", r.code == 450, str(r))
        a.daemon.kill()
        killed_at = time.monotonic()
        freed = None
        while time.monotonic() - killed_at < 15 and freed is None:
            with b.session("127.0.0.40") as s:
                s.ehlo("client.example.test")
                if s.mail("s@example.org").code == 250:
                    freed = time.monotonic() - killed_at
            time.sleep(0.25)
        check("kill: node B gets the slot back within the lease (5 s) of the SIGKILL, plus a margin",
              freed is not None and freed < 8.0, freed)
        holder.close()

    harvest_across("single", store, "127.0.0.41")

with RedisCluster(masters=3) as cluster:
    two_node_limits("cluster", store_config("cluster", cluster.seeds[:1]))
    harvest_across("cluster", store_config("cluster", cluster.seeds[:1]), "127.0.0.42")

finish()
