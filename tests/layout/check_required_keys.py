#!/usr/bin/python3
"""The required settings as documented (relayguard.toml(5)'s REQUIRED SETTINGS, and the
example file's header) are the loader's: an empty config is refused naming them, each
documented way to meet the requirement alone makes a config load, and open mode needs
none of them.

    check_required_keys.py RELAYGUARD_BINARY SOURCE_DIR"""

import os
import re
import subprocess
import sys
import tempfile

binary, source = sys.argv[1], sys.argv[2]
failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  [{detail}]"), flush=True)
    if not ok:
        failures.append(what)


def load(text):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        return subprocess.run([binary, "--check-config", f.name], capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(f.name)


man = open(os.path.join(source, "man", "relayguard.toml.5")).read()
section = man.split(".SH REQUIRED SETTINGS", 1)[-1].split(".SH ", 1)[0]
documented = re.findall(r"^\.B (\S+)$", section, re.M)
check("the man page lists the required settings", documented, section[:300])
header = open(os.path.join(source, "conf", "relayguard.toml")).read().split("\n[", 1)[0]
check("the example file's header names the same ones", all(k in header.replace("\n# ", " ") for k in documented),
      documented)

empty = load("")
named = set(re.findall(r"key '([a-z_.]+)'", empty.stderr))
check("an empty config is refused (exit 78)", empty.returncode == 78, empty.stderr)
check("naming only keys the man page documents as required", named and named <= set(documented),
      (named, documented))

with tempfile.TemporaryDirectory() as d:
    domains = os.path.join(d, "domains")
    with open(domains, "w") as f:
        f.write("example.test\n")
    main_cf = os.path.join(d, "main.cf")
    with open(main_cf, "w") as f:
        f.write("mydestination = example.test\n")
    ways = {
        "relay.local_domains": '[relay]\nlocal_domains = ["example.test"]\n',
        "relay.local_domains_file": f'[relay]\nlocal_domains_file = "{domains}"\n',
        # Read at start, not at a check; the setting alone is what the loader asks for.
        "relay.local_domains_from": '[relay]\nlocal_domains_from = "postfix"\n',
    }
    for key in documented:
        p = load(ways.get(key, ""))
        check(f"{key} alone meets the requirement", key in ways and p.returncode == 0, p.stderr)
    p = load('[relay]\nmode = "open"\n')
    check("relay.mode = \"open\" needs none of them", p.returncode == 0, p.stderr)

print(f"{'all passed' if not failures else str(len(failures)) + ' failed'}")
sys.exit(1 if failures else 0)
