#!/usr/bin/python3
"""Every program answers --help on standard output with exit 0 and --version with the
version CMake declares; an unknown option is a usage error (64) with the usage on
standard error. Run against the built programs:

    test_program_help.py VERSION relayguard relayguard-relayd relayguard-sendmail relayguardctl"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402

version, programs = sys.argv[1], sys.argv[2:]
# What each program's usage must name: its commands, so an admin finds them.
MUST_NAME = {
    "relayguard": ["--config", "--check-config", "doctor", "--version"],
    "relayguard-relayd": ["--config", "queue list", "flush", "delete", "bounce", "--version"],
    "relayguard-sendmail": ["-t", "-f SENDER", "-N DSN", "--version"],
    "relayguardctl": ["ip show", "ip reset", "queue list", "reload", "oauth login", "--version"],
}

for path in programs:
    name = os.path.basename(path)
    env = dict(os.environ, RELAYGUARD_CONFIG="/nonexistent/relayguard.toml")
    h = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL, env=env)
    check(f"{name} --help: exit 0, usage on stdout, nothing on stderr",
          h.returncode == 0 and h.stdout.startswith("usage: ") and h.stderr == "", (h.returncode, h.stdout, h.stderr))
    missing = [w for w in MUST_NAME[name] if w not in h.stdout]
    check(f"{name} --help names every command", not missing, missing)
    v = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL, env=env)
    check(f"{name} --version: '{name} {version}', exit 0", v.returncode == 0 and v.stdout == f"{name} {version}\n",
          (v.returncode, v.stdout, v.stderr))
    u = subprocess.run([path, "--no-such-option"], capture_output=True, text=True, timeout=10,
                       stdin=subprocess.DEVNULL, env=env)
    check(f"{name} with an unknown option: exit 64, the reason on stderr, nothing on stdout",
          u.returncode == 64 and u.stdout == "" and "--no-such-option" in u.stderr, (u.returncode, u.stdout, u.stderr))
check("all four programs were tried", sorted(map(os.path.basename, programs)) == sorted(MUST_NAME), programs)
finish()
