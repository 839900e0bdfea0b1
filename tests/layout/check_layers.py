#!/usr/bin/python3
"""The dependency rule of the source tree, checked: each folder may include
only the folders at or below its own layer (README, "Layout"). A new include
that climbs fails this test; so does a crossing listed below as known once it
is gone, so the list only ever shrinks.

    tests/layout/check_layers.py SOURCE_DIR"""

import os
import re
import sys

# Folder (or program file) -> what its files may include from. Bottom up:
# base; net, daemon and mta on base; redis on daemon; policy on base alone; the
# policy daemon's and the relay client's libraries on common/ and policy/,
# never on each other; conf on all of those (it fills their settings
# structs); the programs on everything. The most specific entry wins.
COMMON = ["common/"]
LIBRARIES = COMMON + ["policy/"]
PROGRAM = LIBRARIES + ["conf/", "plugin/", "delivery/"]
ALLOWED = {
    "common/base/": ["common/base/"],
    "common/net/": ["common/base/", "common/net/"],
    "common/daemon/": ["common/base/", "common/daemon/"],
    "common/mta/": ["common/base/", "common/mta/"],
    "common/redis/": ["common/base/", "common/daemon/", "common/redis/"],
    "policy/": ["policy/", "common/base/"],
    "plugin/": LIBRARIES + ["plugin/"],
    "delivery/": LIBRARIES + ["delivery/"],
    "conf/": PROGRAM,
    # The programs: argument parsing and the daemon objects that wire the
    # libraries together with the loaded configuration.
    "plugin/main.cpp": PROGRAM + ["doctor/"],
    # relayguard doctor: reads the MTA and the config, like a program.
    "doctor/": PROGRAM + ["doctor/"],
    "plugin/policy_daemon.": PROGRAM,
    "delivery/relayd_main.cpp": PROGRAM,
    "delivery/relay_daemon.": PROGRAM,
    "delivery/intake/sendmail_main.cpp": PROGRAM,
    "ctl/": ["ctl/", "common/base/"],
}

# Crossings that exist today and are to go: (file, what it includes).
KNOWN = set()

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
