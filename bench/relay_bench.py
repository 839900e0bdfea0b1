#!/usr/bin/python3
"""Relay-client throughput, in one run, next to Postfix's own relaying:
smtp-source hands N messages to the relay client (smart host: smtp-sink),
and the same N to a private Postfix whose relayhost is the same sink. Each
figure is messages per second from the first message sent to the last one
received by the sink, with fsync on (queues on the root filesystem). Prints
the median of the runs with min-max, and the ratio.

    bench/relay_bench.py BUILD_DIR [--messages 1000] [--runs 3] [--sessions 8]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

from rgtest import PostfixInstance, free_port  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402


def inject(port, n, sessions):
    subprocess.run(["/usr/sbin/smtp-source", "-m", str(n), "-s", str(sessions), "-l", "2048",
                    "-f", "load@example.test", "-t", "rcpt@remote.example", f"127.0.0.1:{port}"],
                   check=True, timeout=600, capture_output=True)


def measure(port, sink, n, sessions):
    before = sink.count()
    started = time.monotonic()
    inject(port, n, sessions)
    reached = sink.wait_count(before + n, 120)
    took = time.monotonic() - started
    if reached < before + n:
        raise RuntimeError(f"only {reached - before} of {n} arrived")
    return n / took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=8)
    a = ap.parse_args()
    # The peers come from Debian's packages, installed here when missing.
    subprocess.run([os.path.join(HERE, "..", "scripts", "install-deps.sh"), "--bench"], check=True)
    os.environ["RELAYGUARD_RELAYD"] = os.path.join(a.build, "relayguard-relayd")
    # On disk, not tmpfs: fsync must cost what it costs.
    tempfile.tempdir = tempfile.mkdtemp(prefix="rg-relay-bench-", dir="/var/tmp")
    os.chmod(tempfile.tempdir, 0o755)  # smtp-sink runs as postfix
    ours, theirs = [], []
    try:
        with SmtpSink(max_clients=512) as sink:
            with Relayd(f'route = "smarthost"\nsmarthosts = ["{sink.address}"]\nthreads = 8\n') as relayd:
                for _ in range(a.runs):
                    ours.append(measure(relayd.port, sink, a.messages, a.sessions))
                    print(f"relayguard-relayd: {ours[-1]:.0f} msg/s", flush=True)
            with PostfixInstance(port=free_port(), mynetworks="127.0.0.0/8",
                                 relay_restrictions="permit_mynetworks, reject",
                                 extra_main_cf={"relayhost": "[{}]:{}".format(*sink.address.rsplit(":", 1)),
                                                "default_transport": "smtp", "relay_transport": "smtp",
                                                "smtp_tls_security_level": "none"}) as pf:
                for _ in range(a.runs):
                    theirs.append(measure(pf.port, sink, a.messages, a.sessions))
                    print(f"Postfix: {theirs[-1]:.0f} msg/s", flush=True)
    finally:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    print(f"relay throughput, {a.messages} messages of 2 KB, {a.sessions} sessions, {os.cpu_count()} cores, "
          f"median of {a.runs} (min-max), msg/s:")
    print(f"  relayguard-relayd -> smtp-sink  {statistics.median(ours):7.0f}  ({min(ours):.0f}-{max(ours):.0f})")
    print(f"  Postfix relayhost -> smtp-sink  {statistics.median(theirs):7.0f}  ({min(theirs):.0f}-{max(theirs):.0f})")
    print(f"  ratio relayguard/Postfix: {statistics.median(ours) / statistics.median(theirs):.2f}")


if __name__ == "__main__":
    main()
