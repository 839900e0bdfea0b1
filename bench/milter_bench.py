#!/usr/bin/python3
"""Milter benchmark: relayguard with every check on but DNS (memory store, then
Redis) against the floor of the protocol, a do-nothing milter built with the
same libmilter (bench/null_milter), and against rspamd in milter mode with
only its Redis ratelimit module (when Debian's rspamd is installed), each driven by bench/milter_load over K
concurrent SMTP sessions, K = 1, 8, 32, 128, with a new milter connection per
session (what Postfix does) and with reused connections. Prints transactions/s
as the median of RUNS runs with min-max, the latency percentiles of the median
run, relayguard's throughput as a share of the floor's measured in the same
run, Redis commands per transaction, and relayguard's resident memory with
1,000 SMTP sessions held open through the milter.

    bench/milter_bench.py [--build DIR] [--runs N] [--seconds S] [--sessions 1,8,32,128]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

from rgtest.fixtures import free_port, terminate, wait_port  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402

CLIENTS = 1000
# Every check the milter can make without DNS, set so that the benchmark's
# traffic passes them all (the counting, not the refusal, is measured).
RULES = """
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.message_rate]
max = 1000000
[limits.connections]
max = 1000
[limits.unknown_recipients]
max = 100
[limits.recipients]
max = 50
[limits.failed_commands]
max = 20
[limits.message_size]
max = "25MB"
[limits.hops]
max = 30
"""


def raise_fd_limit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


class Milter:
    def __init__(self, name, argv, port):
        self.name, self.port = name, port
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", port, 15, proc=self.proc, what=name)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        terminate(self.proc, 15)


class Rspamd(Milter):
    """rspamd 3.4 (Debian's package) in milter mode: its proxy worker scanning
    by itself, the ratelimit module on the same Redis, and every other module
    that has a config file turned off."""

    def __init__(self, workdir, redis_address):
        self.name, self.port = "rspamd (ratelimit)", free_port()
        conf = os.path.join(workdir, "rspamd")
        for sub in ("local.d", "override.d", "db", "run", "log"):
            os.makedirs(os.path.join(conf, sub), exist_ok=True)
        for f in os.listdir("/etc/rspamd/modules.d"):
            if f.endswith(".conf") and f not in ("ratelimit.conf", "redis.conf"):
                write(os.path.join(conf, "override.d", f), "enabled = false;\n")
        write(os.path.join(conf, "local.d", "worker-proxy.inc"),
              f'bind_socket = "127.0.0.1:{self.port}";\nmilter = yes;\ntimeout = 120s;\ncount = 1;\n'
              'upstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n')
        for worker in ("normal", "controller", "fuzzy"):
            write(os.path.join(conf, "local.d", f"worker-{worker}.inc"), "enabled = false;\n")
        write(os.path.join(conf, "local.d", "redis.conf"), f'servers = "{redis_address}";\n')
        write(os.path.join(conf, "local.d", "ratelimit.conf"),
              'rates {\n  by_ip = {\n    selector = "ip";\n'
              '    bucket = { burst = 1000000; rate = "1000000 / 1h"; }\n  }\n}\n')
        write(os.path.join(conf, "local.d", "logging.inc"),
              f'type = "file";\nfilename = "{conf}/log/rspamd.log";\nlevel = "error";\n')
        shutil.chown(conf, "nobody", "nogroup")
        for root, dirs, files in os.walk(conf):
            for n in dirs + files:
                shutil.chown(os.path.join(root, n), "nobody", "nogroup")
        argv = ["rspamd", "-f", "-u", "nobody", "-g", "nogroup", "-c", "/etc/rspamd/rspamd.conf"]
        for var, sub in (("LOCAL_CONFDIR", ""), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log")):
            argv += ["--var", f"{var}={os.path.join(conf, sub).rstrip('/')}"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port, 60, proc=self.proc, what=self.name)

    def rss_kb(self):
        """The main process and its workers."""
        total = 0
        for pid in [self.proc.pid] + children(self.proc.pid):
            with open(f"/proc/{pid}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def relayguard(binary, workdir, name, store=""):
    port, metrics = free_port(), free_port()
    config = os.path.join(workdir, f"{name.replace(' ', '_')}.toml")
    with open(config, "w") as f:
        f.write(f'[listen]\nmilter = "inet:127.0.0.1:{port}"\npolicy = ""\nadmin = ""\n'
                f'metrics = "127.0.0.1:{metrics}"\n'
                f'[log]\nlevel = "info"\ntargets = ["{workdir}/{name.split()[0]}.log"]\n' + RULES + store)
    os.chmod(config, 0o600)
    m = Milter(name, [binary, "--config", config], port)
    m.metrics_port = metrics
    return m


def redis_requests(milter):
    """(requests sent to Redis, calls an SMTP stage waited for) so far, from
    relayguard's own metrics: the first adds the background batches of closes
    and commits."""
    with urllib.request.urlopen(f"http://127.0.0.1:{milter.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    sent = float(re.search(r"^relayguard_redis_requests_total (\S+)", text, re.M).group(1))
    waited = float(re.search(r"^relayguard_redis_stage_waits_total (\S+)", text, re.M).group(1))
    return sent, waited


def load(generator, port, sessions, seconds, reuse):
    argv = [generator, f"127.0.0.1:{port}", "--sessions", str(sessions), "--seconds", str(seconds),
            "--clients", str(CLIENTS)] + (["--reuse"] if reuse else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    m = re.search(r"RESULT (.*)", out.stdout)
    if not m:
        raise RuntimeError(f"milter_load failed: {out.stdout} {out.stderr}")
    f = dict(kv.split("=", 1) for kv in m.group(1).split())
    return {"tps": float(f["tps"]), "p50": float(f["p50_us"]), "p99": float(f["p99_us"]),
            "p999": float(f["p999_us"]), "n": int(f["transactions"]), "errors": int(f["errors"]),
            "outcomes": f["outcomes"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("RELAYGUARD_BUILD_DIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--sessions", default="1,8,32,128")
    ap.add_argument("--held", type=int, default=1000, help="sessions held open for the memory figure")
    args = ap.parse_args()
    # The peers come from Debian's packages, installed here when missing.
    subprocess.run([os.path.join(HERE, "..", "scripts", "install-deps.sh"), "--bench"], check=True)
    binary = os.path.join(args.build, "relayguard")
    generator = os.path.join(args.build, "bench", "milter_load")
    floor = os.path.join(args.build, "bench", "null_milter")
    for path in (binary, generator, floor):
        if not os.access(path, os.X_OK):
            sys.exit(f"milter_bench: {path} is missing; build first (cmake --build {args.build})")
    raise_fd_limit()
    ks = [int(k) for k in args.sessions.split(",")]
    workdir = tempfile.mkdtemp(prefix="rgbench-milter-")
    redis = RedisServer()
    redis.start()
    milters = []
    try:
        null_port = free_port()
        # One at a time, so that a milter failing to start leaves none running.
        milters.append(Milter("null milter", [floor, f"inet:{null_port}@127.0.0.1"], null_port))
        milters.append(relayguard(binary, workdir, "relayguard (memory)"))
        milters.append(relayguard(binary, workdir, "relayguard (redis)",
                                  f'[store]\ntype = "redis"\n[store.redis]\nservers = ["{redis.address}"]\n'
                                  f'key_prefix = "bench:"\n'))
        if shutil.which("rspamd"):
            milters.append(Rspamd(workdir, redis.address))
        else:
            print("rspamd is not installed (apt-get install rspamd): measured without it")
        results = {}
        redis_calls = {}
        for reuse in (False, True):
            for k in ks:
                for _ in range(args.runs):
                    for m in milters:   # interleaved, so the machine's drift hits all alike
                        counted = m.name == "relayguard (redis)"
                        before = redis_requests(m) if counted else (0, 0)
                        r = load(generator, m.port, k, args.seconds, reuse)
                        if counted:
                            time.sleep(0.2)  # the last background writes
                            after = redis_requests(m)
                            per_tx = [(a - b) / max(r["n"], 1) for a, b in zip(after, before)]
                            redis_calls.setdefault(k, []).append(per_tx)
                        results.setdefault((reuse, k, m.name), []).append(r)

        print(f"\nmilter, {args.runs} runs of {args.seconds:g} s, {CLIENTS} client IPs, 1 recipient, 5 headers, "
              f"1 KB body; nproc={os.cpu_count()}, {time.strftime('%Y-%m-%d')}")
        print(f"{'mode':<9} {'K':>4}  {'milter':<21} {'tx/s median (min-max)':<24} {'p50 us':>7} {'p99 us':>7} "
              f"{'p99.9 us':>8}  {'share of floor':>14}  errors")
        for reuse in (False, True):
            for k in ks:
                floor_tps = statistics.median(r["tps"] for r in results[(reuse, k, milters[0].name)])
                for m in milters:
                    runs = results[(reuse, k, m.name)]
                    tps = sorted(r["tps"] for r in runs)
                    med = statistics.median(tps)
                    mid = sorted(runs, key=lambda r: r["tps"])[len(runs) // 2]
                    print(f"{'reuse' if reuse else 'new conn':<9} {k:>4}  {m.name:<21} {med:>8.0f} "
                          f"({tps[0]:.0f}-{tps[-1]:.0f}){'':<3} {mid['p50']:>7.0f} {mid['p99']:>7.0f} "
                          f"{mid['p999']:>8.0f}  {med / floor_tps:>14.2f}  {sum(r['errors'] for r in runs)}")
        # Waited for: one at connect and one at MAIL; end of data's commit and
        # the closes go out in background batches, counted in "sent" only.
        print("\nRedis per transaction of 12 milter stages, relayguard (redis): " +
              ", ".join(f"K={k}: {statistics.median(v[0] for v in vs):.2f} sent, "
                        f"{statistics.median(v[1] for v in vs):.2f} waited for" for k, vs in sorted(redis_calls.items())))
        print("outcomes of the last run: " +
              "; ".join(f"{m.name}: {results[(True, ks[-1], m.name)][-1]['outcomes']}" for m in milters))

        # Resident memory with many sessions open at once.
        for m in milters[:2] + milters[3:]:
            idle = m.rss_kb()
            holder = subprocess.Popen([generator, f"127.0.0.1:{m.port}", "--sessions", str(args.held),
                                       "--hold", "8"], stdout=subprocess.PIPE, text=True)
            line = holder.stdout.readline()
            time.sleep(1)
            held = m.rss_kb()
            holder.wait(60)
            print(f"resident memory of {m.name}: {idle / 1024:.1f} MB idle, {held / 1024:.1f} MB with "
                  f"{line.strip().split('=')[-1]} of {args.held} sessions open")
    finally:
        for m in milters:
            m.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
