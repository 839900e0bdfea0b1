#!/usr/bin/python3
"""Policy delegation benchmark: relayguard (memory store, then Redis) against
postfwd2 (with its cache daemon) and policyd-rate-limit (SQLite in memory),
all on loopback, each fed the same request stream by bench/policy_load over K
persistent connections, K = 1, 8, 32. The rules are the same where the peer
has them: a per-client-IP message rate limit at RCPT (high enough that the
counting path, not the refusal path, is measured) and a recipient-count limit
at END-OF-MESSAGE (policyd-rate-limit has none: it answers DUNNO there).

Prints, for each K, requests/s as the median of RUNS runs with min-max, the
latency percentiles of the median run, and each peer's throughput as a ratio
of relayguard's (memory store) measured in the same run.

    bench/policy_bench.py [--build DIR] [--runs N] [--seconds S] [--connections 1,8,32]
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

from rgtest.fixtures import free_port, terminate, wait_port  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

RATE = 1_000_000      # messages per client per hour: counted, never reached
RCPT_MAX = 50
CLIENTS = 1000


class Peer:
    """A policy server on 127.0.0.1:port, started and stopped by the benchmark."""

    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"rgbench-{name.split()[0]}-")
        self.proc = None

    def stop(self):
        if self.proc:
            terminate(self.proc, 10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def rss_kb(self):
        return None


class Relayguard(Peer):
    def __init__(self, binary, store=""):
        super().__init__("relayguard" + (" (redis)" if store else " (memory)"))
        config = os.path.join(self.dir, "relayguard.toml")
        with open(config, "w") as f:
            f.write(f'[listen]\nmilter = ""\npolicy = "inet:127.0.0.1:{self.port}"\nadmin = ""\n'
                    f'[log]\nlevel = "info"\ntargets = ["{self.dir}/relayguard.log"]\n'
                    f'[relay]\nlocal_domains = ["example.test"]\n'
                    f'[limits]\nexempt_group = ""\n'
                    f'[limits.message_rate]\nmax = {RATE}\n'
                    f'[limits.recipients]\nmax = {RCPT_MAX}\n{store}')
        os.chmod(config, 0o600)
        self.proc = subprocess.Popen([binary, "--config", config], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "w"))
        wait_port("127.0.0.1", self.port, 15, proc=self.proc, what=self.name)


class Postfwd(Peer):
    def __init__(self):
        super().__init__("postfwd2")
        self.cache_port = free_port()
        cf = os.path.join(self.dir, "postfwd.cf")
        with open(cf, "w") as f:
            f.write(f"id=RATE; protocol_state==RCPT; action=rate(client_address/{RATE}/3600/"
                    "450 4.7.1 Too many messages from this client)\n"
                    f"id=RCPTS; protocol_state==END-OF-MESSAGE; recipient_count>={RCPT_MAX + 1}; "
                    "action=452 4.5.3 Too many recipients\n")
        self.pidfile = os.path.join(self.dir, "pid")
        subprocess.run(["postfwd2", f"--file={cf}", "--interface=127.0.0.1", f"--port={self.port}",
                        f"--cache_socket=tcp:127.0.0.1:{self.cache_port}", "--user=nobody", "--group=nogroup",
                        f"--pidfile={self.pidfile}", "--cache-no-size"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port, 20, what=self.name)

    def stop(self):
        subprocess.run(["postfwd2", "--kill", f"--pidfile={self.pidfile}"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        super().stop()


class PolicydRateLimit(Peer):
    def __init__(self):
        super().__init__("policyd-rate-limit")
        conf = os.path.join(self.dir, "policyd-rate-limit.yaml")
        os.chmod(self.dir, 0o755)
        with open(conf, "w") as f:
            f.write(f'debug: False\nuser: "nobody"\ngroup: "nogroup"\n'
                    f'pidfile: "{self.dir}/pid"\n'
                    f'sqlite_config:\n    database: ":memory:"\nbackend: 0\n'
                    f'SOCKET: ["127.0.0.1", {self.port}]\n'
                    f'limits:\n    - [{RATE}, 3600]\nlimits_by_id: {{}}\n'
                    f'limit_by_sasl: False\nlimit_by_sender: False\nlimit_by_ip: True\n'
                    f'limited_networks: ["0.0.0.0/0"]\n'
                    f'success_action: "dunno"\nfail_action: "defer_if_permit Rate limit reach, retry later"\n'
                    f'db_error_action: "dunno"\nreport: False\ndelay_to_close: 300\n')
        # Started as nobody: as root it would try to make the directory of its
        # SQLite file, which ":memory:" does not have, and fail.
        shutil.chown(self.dir, "nobody", "nogroup")
        self.proc = subprocess.Popen(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                                      "policyd-rate-limit", "--file", conf], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "w"))
        wait_port("127.0.0.1", self.port, 20, proc=self.proc, what=self.name)


def load(generator, port, connections, seconds):
    out = subprocess.run([generator, f"127.0.0.1:{port}", "--connections", str(connections), "--seconds",
                          str(seconds), "--clients", str(CLIENTS), "--rcpts", "1"],
                         capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"RESULT (.*)", out.stdout)
    if not m:
        raise RuntimeError(f"policy_load failed: {out.stdout} {out.stderr}")
    fields = dict(kv.split("=", 1) for kv in m.group(1).split())
    return {"rps": float(fields["rps"]), "p50": float(fields["p50_us"]), "p99": float(fields["p99_us"]),
            "p999": float(fields["p999_us"]), "errors": int(fields["errors"]), "actions": fields["actions"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("RELAYGUARD_BUILD_DIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", default="1,8,32")
    args = ap.parse_args()
    # The peers come from Debian's packages, installed here when missing.
    subprocess.run([os.path.join(HERE, "..", "scripts", "install-deps.sh"), "--bench"], check=True)
    binary = os.path.join(args.build, "relayguard")
    generator = os.path.join(args.build, "bench", "policy_load")
    for path in (binary, generator):
        if not os.access(path, os.X_OK):
            sys.exit(f"policy_bench: {path} is missing; build first (cmake --build {args.build})")
    ks = [int(k) for k in args.connections.split(",")]

    redis = RedisServer()
    redis.start()
    peers = []
    try:
        store = (f'[store]\ntype = "redis"\n[store.redis]\nservers = ["{redis.address}"]\n'
                 f'key_prefix = "bench:"\n')
        # One at a time, so that a peer failing to start leaves none running.
        for start in (lambda: Relayguard(binary), lambda: Relayguard(binary, store), Postfwd, PolicydRateLimit):
            peers.append(start())
        results = {}   # (peer, k) -> [run, ...]
        for k in ks:
            for run in range(args.runs):
                # peers interleaved within each run, so drift of the machine hits all alike
                for p in peers:
                    results.setdefault((p.name, k), []).append(load(generator, p.port, k, args.seconds))
        print(f"\npolicy delegation, {args.runs} runs of {args.seconds:g} s each, {CLIENTS} client IPs, "
              f"RCPT + END-OF-MESSAGE per message; nproc={os.cpu_count()}, {time.strftime('%Y-%m-%d')}")
        print(f"{'K':>3}  {'peer':<22} {'req/s median (min-max)':<26} {'p50 us':>7} {'p99 us':>7} "
              f"{'p99.9 us':>8}  {'relayguard(memory) / peer':>25}  errors")
        for k in ks:
            base = statistics.median(r["rps"] for r in results[(peers[0].name, k)])
            for p in peers:
                runs = results[(p.name, k)]
                rps = sorted(r["rps"] for r in runs)
                med = statistics.median(rps)
                mid = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
                ratio = base / med if med else float("inf")
                print(f"{k:>3}  {p.name:<22} {med:>9.0f} ({rps[0]:.0f}-{rps[-1]:.0f}){'':<5} {mid['p50']:>7.0f} "
                      f"{mid['p99']:>7.0f} {mid['p999']:>8.0f}  {ratio:>25.2f}  {sum(r['errors'] for r in runs)}")
        print("\nactions seen in the last run (per peer): " +
              "; ".join(f"{p.name}: {results[(p.name, ks[-1])][-1]['actions']}" for p in peers))
    finally:
        for p in peers:
            p.stop()
        redis.stop()


if __name__ == "__main__":
    main()
