#!/usr/bin/python3
"""End-to-end benchmark: smtp-source hands MESSAGES messages over 20 sessions
to a private Postfix whose transports discard, in seven set-ups measured in
one run, interleaved:

  postfix alone
  postfix + null milter            (bench/null_milter, the protocol's floor)
  postfix + relayguard             (milter and policy service at RCPT, as
                                    contrib/postfix/main.cf.snippet sets it)
  postfix + relayguard, Redis      (the same, counting in a local Redis)
  postfix + relayguard milter      (the milter alone)
  postfix + relayguard policy      (policy service alone, at RCPT)
  postfix + postfwd2 policy        (the same rules, at RCPT)

Each figure is messages per second from smtp-source's start to its end (every
message answered 250), the median of RUNS runs with min-max, and its share of
"postfix alone" and of "postfix + null milter".

    bench/e2e_bench.py [--build DIR] [--runs N] [--messages N]
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, HERE)

from rgtest import PostfixInstance, free_port  # noqa: E402
from rgtest.redis import RedisServer  # noqa: E402
from milter_bench import RULES, Milter  # noqa: E402
from policy_bench import Postfwd  # noqa: E402


def source(port, n):
    started = time.monotonic()
    out = subprocess.run(["/usr/sbin/smtp-source", "-c", "-m", str(n), "-s", "20", "-l", "1024",
                          "-f", "sender@example.org", "-t", "user1@example.test", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    if out.returncode != 0:
        raise RuntimeError(f"smtp-source: {out.stderr[-500:]}")
    return n / took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("RELAYGUARD_BUILD_DIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    # The peers come from Debian's packages, installed here when missing.
    subprocess.run([os.path.join(HERE, "..", "scripts", "install-deps.sh"), "--bench"], check=True)
    binary = os.path.join(args.build, "relayguard")
    floor = os.path.join(args.build, "bench", "null_milter")
    for path in (binary, floor):
        if not os.access(path, os.X_OK):
            sys.exit(f"e2e_bench: {path} is missing; build first (cmake --build {args.build})")
    workdir = tempfile.mkdtemp(prefix="rgbench-e2e-")
    started = []
    try:
        null_port = free_port()
        null = Milter("null milter", [floor, f"inet:{null_port}@127.0.0.1"], null_port)
        started.append(null)
        redis = RedisServer()
        redis.start()
        started.append(redis)

        def relayguard(name, store=""):
            milter_port, policy_port = free_port(), free_port()
            config = os.path.join(workdir, f"{name}.toml")
            with open(config, "w") as f:
                f.write(f'[listen]\nmilter = "inet:127.0.0.1:{milter_port}"\npolicy = "inet:127.0.0.1:{policy_port}"\n'
                        f'admin = ""\n[log]\nlevel = "info"\ntargets = ["{workdir}/{name}.log"]\n' + RULES + store)
            os.chmod(config, 0o600)
            started.append(Milter(name, [binary, "--config", config], milter_port))
            return dict(milter=f"inet:127.0.0.1:{milter_port}", policy=f"inet:127.0.0.1:{policy_port}",
                        policy_at=("rcpt",))

        with_memory = relayguard("relayguard")
        with_redis = relayguard("relayguard-redis", f'[store]\ntype = "redis"\n[store.redis]\n'
                                                   f'servers = ["{redis.address}"]\nkey_prefix = "bench:"\n')
        postfwd = Postfwd()
        started.append(postfwd)

        setups = [
            ("postfix alone", dict()),
            ("postfix + null milter", dict(milter=f"inet:127.0.0.1:{null_port}")),
            ("postfix + relayguard (milter+policy)", with_memory),
            ("postfix + relayguard, Redis", with_redis),
            ("postfix + relayguard milter", dict(milter=with_memory["milter"])),
            ("postfix + relayguard policy", dict(policy=with_memory["policy"], policy_at=("rcpt",))),
            ("postfix + postfwd2 policy", dict(policy=f"inet:127.0.0.1:{postfwd.port}", policy_at=("rcpt",))),
        ]
        postfixes = []
        for name, kw in setups:
            pf = PostfixInstance(port=free_port(), **kw)
            pf.start()
            postfixes.append((name, pf))
        results = {}
        for _ in range(args.runs):
            for name, pf in postfixes:
                results.setdefault(name, []).append(source(pf.port, args.messages))
        # Every message must have been taken and delivered, or a set-up that
        # refuses mail would look fast.
        time.sleep(3)
        for name, pf in postfixes:
            sent = len(re.findall(r"status=sent", pf.maillog()))
            if sent != args.runs * args.messages:
                sys.exit(f"e2e_bench: {name}: {sent} of {args.runs * args.messages} messages delivered")
        alone = statistics.median(results["postfix alone"])
        with_null = statistics.median(results["postfix + null milter"])
        print(f"\nend to end, smtp-source -m {args.messages} -s 20 -l 1024 into a private Postfix (discard), "
              f"{args.runs} runs; nproc={os.cpu_count()}, {time.strftime('%Y-%m-%d')}")
        print(f"{'set-up':<38} {'msg/s median (min-max)':<24} {'of alone':>9} {'of +null milter':>16}")
        for name, _ in postfixes:
            v = sorted(results[name])
            med = statistics.median(v)
            print(f"{name:<38} {med:>7.0f} ({v[0]:.0f}-{v[-1]:.0f}){'':<7} {med / alone:>9.2f} {med / with_null:>16.2f}")
        for _, pf in postfixes:
            pf.stop()
    finally:
        for s in started:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
