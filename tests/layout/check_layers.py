#!/usr/bin/python3
"""The dependency rule of the source tree, checked: each folder may include
only the folders at or below its own layer (README, "Layout"). A new include
that climbs fails this test; so does a crossing listed below as known once it
is gone, so the list only ever shrinks.

    tests/layout/check_layers.py SOURCE_DIR"""

import os
import re
import sys

# Folder -> the folders its files may include from (its own included).
ALLOWED = {
    "policy/": ["policy/"],
    "common/base/": ["common/base/"],
    "common/net/": ["common/base/", "common/net/"],
    "common/redis/": ["common/base/", "common/net/", "common/redis/"],
    "common/daemon/": ["common/base/", "common/net/", "common/redis/", "common/daemon/"],
    "conf/": ["conf/", "policy/", "common/base/"],
    "plugin/": ["plugin/", "conf/", "common/", "policy/"],
    "delivery/": ["delivery/", "conf/", "common/", "policy/"],
    "ctl/": ["ctl/", "common/base/"],
}

# Crossings that exist today and are to go: (file, what it includes).
KNOWN = {
    # The engine's time types are shared by everyone and still live in policy/.
    ("common/base/system_clock.h", "policy/clock.h"),
    ("common/base/text_codec.h", "policy/clock.h"),
    # The settings structs are still gathered in conf/config.h, which also
    # takes the relay client's from delivery/.
    ("common/net/dns_resolver.h", "conf/config.h"),
    ("common/redis/redis_client.h", "conf/config.h"),
    ("common/daemon/logging.h", "conf/config.h"),
    ("conf/config.h", "delivery/delivery_settings.h"),
    # SteadyTime is declared beside the Redis connection.
    ("common/net/dns_resolver.h", "common/redis/redis_connection.h"),
    # The Redis client counts its requests in the daemon's metrics.
    ("common/redis/redis_client.h", "common/daemon/metrics.h"),
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_of(path):
    """The most specific folder of ALLOWED that holds `path`, or None."""
    best = None
    for folder in ALLOWED:
        if path.startswith(folder) and (best is None or len(folder) > len(best)):
            best = folder
    return best


def main(source):
    found, climbs = set(), []
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith((".", "build"))]
        for name in files:
            if not name.endswith((".h", ".cpp", ".in")):
                continue
            path = os.path.relpath(os.path.join(root, name), source)
            folder = folder_of(path)
            if folder is None:
                continue  # tests, bench, fuzz, build trees: free to include anything
            with open(os.path.join(root, name), encoding="utf-8") as f:
                text = f.read()
            for included in INCLUDE.findall(text):
                if "/" not in included:
                    continue
                if any(included.startswith(a) for a in ALLOWED[folder]):
                    continue
                if (path, included) in KNOWN:
                    found.add((path, included))
                else:
                    climbs.append(f"{path} includes {included}, above its layer ({folder})")
    gone = sorted(KNOWN - found)
    for line in climbs:
        print("climbs:", line)
    for path, included in gone:
        print(f"gone: {path} no longer includes {included}; take it off the known list")
    print(f"{len(found)} known crossings, {len(climbs)} new, {len(gone)} gone")
    return 1 if climbs or gone else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
