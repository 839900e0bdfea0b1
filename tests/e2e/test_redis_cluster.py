#!/usr/bin/python3
"""Two MTA nodes share a 3-master Redis Cluster: one limit across both,
counters spread over the masters with each client's keys in one slot, a
slot moved under the daemons (MOVED), and a slot caught mid-migration (ASK).

The connection limit is off here: its script takes two keys, and Redis
answers TRYAGAIN to a multi-key command on keys not yet present in a slot
that is migrating, so the ASK path is shown with the message-rate script
(one key) at MAIL and end of data."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.nodes import shared_limit_checks, store_config, two_nodes  # noqa: E402
from rgtest.redis import RedisCluster  # noqa: E402

with RedisCluster(masters=3) as cluster:
    # Only one seed: the rest of the cluster is learnt from CLUSTER SLOTS.
    with two_nodes(store_config("cluster", cluster.seeds[:1]), connections=None) as (a, b):
        shared_limit_checks(check, a, b, "127.0.0.4")

        sources = [f"127.0.0.{i}" for i in range(20, 30)]
        sent = [a.send(src).delivered for src in sources]
        check("spread: one message from each of 10 clients accepted", all(sent), sent)
        by_node = cluster.keys_by_node("rgtest:*")
        used = [port for port, keys in by_node.items() if keys]
        check("spread: the counters live on more than one master", len(used) >= 2, by_node)
        split = [src for src in sources
                 if len([p for p, keys in by_node.items() if any(f"{{{src}}}" in k for k in keys)]) != 1]
        check("spread: each client's keys are all on one master", not split, split)

        # MOVED: the limited client's slot goes to another master.
        slot = cluster.keyslot("rgtest:{127.0.0.4}:msg")
        owner = cluster.slot_owner_port(slot)
        target = next(p for p in cluster.ports if p != owner)
        cluster.migrate_slot(slot, target)
        r = b.send("127.0.0.4")
        check("MOVED: after its slot moved, node B still refuses 127.0.0.4 by the shared count (450, not 451)",
              r.mail is not None and r.mail.code == 450, r.summary())
        r = a.send("127.0.0.4")
        check("MOVED: and node A too", r.mail is not None and r.mail.code == 450, r.summary())
        r = a.send("127.0.0.21")
        check("MOVED: other clients are unaffected", r.delivered, r.summary())

        # ASK: a slot half-way through a migration; a client new to it.
        src = "127.0.0.30"
        slot = cluster.keyslot(f"rgtest:{{{src}}}:msg")
        owner = cluster.node(cluster.slot_owner_port(slot))
        target = cluster.node(next(p for p in cluster.ports if p != owner.port))
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.call("CLUSTER", "MYID"))
        owner.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.call("CLUSTER", "MYID"))
        r = a.send(src)
        check("ASK: a message from a client whose slot is migrating is accepted", r.delivered, r.summary())
        keys = cluster.keys_by_node(f"rgtest:{{{src}}}*")
        check("ASK: its counters were written on the importing master, as the ASK redirect said",
              keys[target.port] and not keys[owner.port], keys)
        cluster.migrate_slot(slot, target.port)
        r = b.send(src)
        check("ASK: after the migration ends node B counts on", r.delivered, r.summary())
        n = len(target.call("ZRANGE", f"rgtest:{{{src}}}:msg", 0, -1))
        check("ASK: two messages counted for it", n == 2, n)
        check("both nodes are still running", a.daemon.alive() and b.daemon.alive())
finish()
