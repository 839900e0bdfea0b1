#!/usr/bin/python3
"""Runs miltertest (Debian's package) against the relayguard milter: the
protocol without any MTA."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

CONFIG = """
[relay]
local_domains = ["example.test"]
[limits.unknown_recipients]
max = 2
"""

script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "milter_protocol.lua")
with Relayguard(CONFIG) as rg:
    r = subprocess.run(["miltertest", "-s", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "RG_MILTER": rg.sendmail_milter})
    print(r.stdout, r.stderr)
    check("miltertest: connect, relay refusal, local recipient, harvest block", r.returncode == 0, r.stderr.strip())
    check("the harvest block is in the security log",
          bool(rg.refusals(client="192.0.2.77", rule="unknown_recipients")))
finish()
