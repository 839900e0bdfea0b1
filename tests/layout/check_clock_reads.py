#!/usr/bin/python3
"""Time is read only through the clock (README, "Conventions"): no source
file outside common/base/system_clock.h calls a system clock itself. Timed
logic takes the injected Clock; what waits in real time by nature (socket
deadlines, thread waits, latency metrics) asks SystemClock::monotonic().
Tests, benchmarks and the fuzzers are free to read the clock.

    tests/layout/check_clock_reads.py SOURCE_DIR"""

import os
import re
import sys

FOLDERS = ("common", "conf", "ctl", "delivery", "plugin", "policy")
ALLOWED = {"common/base/system_clock.h"}
READS = re.compile(r"\b(?:steady_clock|system_clock|high_resolution_clock)::now\s*\(|"
                   r"\b(?:std::)?time\s*\(\s*(?:nullptr|NULL|0)\s*\)|\bgettimeofday\s*\(|\bclock_gettime\s*\(")


def main(source):
    found = []
    for top in FOLDERS:
        for root, _, files in os.walk(os.path.join(source, top)):
            for name in files:
                if not name.endswith((".h", ".cpp", ".in")):
                    continue
                path = os.path.relpath(os.path.join(root, name), source)
                if path in ALLOWED:
                    continue
                with open(os.path.join(source, path), encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        code = line.split("//", 1)[0]
                        if READS.search(code):
                            found.append(f"{path}:{n}: {line.strip()}")
    for line in found:
        print("reads the clock itself:", line)
    print(f"{len(found)} direct clock reads outside common/base/system_clock.h")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
