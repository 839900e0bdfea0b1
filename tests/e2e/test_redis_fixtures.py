#!/usr/bin/python3
"""Smoke test of the Redis fixtures in rgtest.redis (no relayguard involved).

Starts each once and checks what relayguard's Redis tests rely on: a single server over
TCP and a unix socket with a password and an ACL user; a 3-node cluster whose keys spread
over all nodes, and a slot migration that leaves the old owner answering MOVED; a
Sentinel failover after the master is killed.  Afterwards no redis process may be left.
Run as root: /usr/bin/python3 tests/e2e/test_redis_fixtures.py  (exit 0 = all passed)
"""

import os
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.redis import RedisCluster, RedisSentinel, RedisServer  # noqa: E402


def redis_pids():
    p = subprocess.run(["pgrep", "-a", "redis"], capture_output=True, text=True)
    return {line.split(None, 1)[0]: line for line in p.stdout.splitlines()}


def single():
    with RedisServer(unixsocket=True, password="s3cr et\"pw",
                     acl_users={"app": "app-pw"}) as r:
        print(f"     redis started in {r.start_seconds:.2f}s on {r.address}")
        check("SET over TCP with the password", r.cli("SET", "greeting", "hello") == "OK")
        check("GET over the unix socket", r.cli("GET", "greeting", unix=True) == "hello")
        mode = stat.S_IMODE(os.stat(r.socket_path).st_mode)
        check("unix socket mode 770", mode == 0o770, oct(mode))
        out = r.cli("GET", "greeting", auth=False)
        check("no password: NOAUTH", out.startswith("NOAUTH"), out)
        out = r.cli("GET", "greeting", auth=("app", "app-pw"))
        check("ACL user app with its password reads the key", out == "hello", out)
        out = r.cli("GET", "greeting", auth=("app", "wrong"))
        check("ACL user app with a wrong password refused (WRONGPASS)",
              "WRONGPASS" in out and "hello" not in out, out)
        with open(f"/proc/{r.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        check("passwords not on the command line", b"app-pw" not in cmdline
              and b"s3cr" not in cmdline, cmdline)
        check("keys()", r.keys("greet*") == ["greeting"], r.keys())
        check("info('server') parsed", r.info("server").get("tcp_port") == str(r.port))
        check("wait_role master", r.wait_role("master", 2).role() == "master")
        old_pid = r.pid
        r.kill()
        check("kill() ends the process", r.pid is None and not os.path.exists(f"/proc/{old_pid}/stat"))
        r.restart()
        check("restart() on the same port (no persistence: data gone)",
              r.cli("PING") == "PONG" and r.cli("EXISTS", "greeting") == "0")


def cluster():
    with RedisCluster(masters=3) as c:
        print(f"     cluster started in {c.start_seconds:.2f}s on {c.seeds}")
        keys = [f"k{i}" for i in range(30)]
        for k in keys:
            c.cli("SET", k, f"v-{k}")
        by_node = c.keys_by_node("k*")
        check("keys spread over all 3 nodes", len(by_node) == 3 and all(by_node.values()),
              {p: len(ks) for p, ks in by_node.items()})
        check("keys() across nodes = all keys", c.keys("k*") == sorted(keys), c.keys("k*"))
        check("slot_owner agrees with where the key is",
              all(k in by_node[c.slot_owner(k)] for k in keys))

        key = "k0"
        slot = c.keyslot(key)
        old = c.slot_owner(key)
        new = next(p for p in c.ports if p != old)
        c.migrate_slot(slot, new)
        check("migrate_slot: new owner", c.slot_owner(key) == new, c.slot_owner(key))
        check("migrate_slot: key moved with its value", key in c.node(new).keys("k*")
              and key not in c.node(old).keys("k*") and c.cli("GET", key) == f"v-{key}")
        out = c.node(old).cli("GET", key)
        check("old owner answers MOVED (redis-cli without -c)",
              out == f"MOVED {slot} 127.0.0.1:{new}", out)


def sentinel():
    with RedisSentinel(replicas=1, sentinels=1) as s:
        print(f"     sentinel started in {s.start_seconds:.2f}s, sentinels {s.sentinels}")
        old = s.master
        check("master_addr() names the master", s.master_addr() == ("127.0.0.1", old.port))
        replica = s.replicas[0]
        check("replica reports ROLE slave", replica.wait_role("slave", 2).role() == "slave")
        check("SET on the master", old.cli("SET", "before", "1") == "OK")
        deadline = time.monotonic() + 2  # replication is asynchronous
        while replica.cli("GET", "before") != "1" and time.monotonic() < deadline:
            time.sleep(0.05)
        check("the write reaches the replica", replica.cli("GET", "before") == "1")
        killed = s.kill_master()
        t0 = time.monotonic()
        new_port = s.wait_failover(killed.port, timeout=20)
        print(f"     failover took {time.monotonic() - t0:.2f}s")
        check("failover to another server", new_port != killed.port)
        new = s.master
        check(".master follows the failover", new.port == new_port and new.role() == "master")
        check("write on the new master", new.cli("SET", "after", "2") == "OK"
              and new.cli("GET", "after") == "2")


def main():
    t0 = time.monotonic()
    before = redis_pids()
    for part in (single, cluster, sentinel):
        print(f"== {part.__name__}")
        try:
            part()
        except Exception as e:  # report and carry on with the other fixtures
            check(f"{part.__name__} ran without exception", False, f"{type(e).__name__}: {e}")
    left = {pid: line for pid, line in redis_pids().items() if pid not in before}
    check("no redis process left behind", not left, list(left.values()))
    print(f"     {time.monotonic() - t0:.1f}s")
    finish()


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root")
    main()
