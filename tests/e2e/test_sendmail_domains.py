#!/usr/bin/python3
"""relay.local_domains_from = "sendmail" through a real Sendmail (Debian's sendmail-bin
unpacked): relayguard takes its local domains from the sendmail.cf that m4 built, class w
written inline (LOCAL_DOMAIN) and read from its file (use_cw_file), class R from the
relay-domains file with its subdomains; a domain added to the file is local within seconds,
without a reload; any other domain is still refused as relaying."""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Sendmail, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

files = tempfile.mkdtemp(prefix="rgtest-sendmail-domains-")
cw_file = os.path.join(files, "local-host-names")
cr_file = os.path.join(files, "relay-domains")
with open(cw_file, "w") as f:
    f.write("# Sendmail's local names\nfromfile.test\n")
with open(cr_file, "w") as f:
    f.write("relayed.test\n")
# Sendmail relays for anyone here (the fixture's promiscuous_relay), so a relay refusal
# can only be relayguard's.
MC = (f"define(`confCW_FILE', `-o {cw_file}')dnl\nFEATURE(`use_cw_file')dnl\n"
      f"define(`confCR_FILE', `-o {cr_file}')dnl\n")

milter_port = free_port()
port = free_port()
with Sendmail(port=port, milter=f"inet:{milter_port}@127.0.0.1", extra_mc=MC) as sm:
    cf = sm.path("test.cf")
    config = f"""
[relay]
local_domains = []
local_domains_from = "sendmail"
mta_config = "{cf}"
"""
    with Relayguard(config, milter_port=milter_port) as rg:
        def msg(rcpt, source="127.0.0.2"):
            return send_message("127.0.0.1", port, source=source, sender="sender@example.org", rcpts=[rcpt])
        check("the domains read from sendmail.cf are logged",
              rg.wait_for(r"local domain\(s\) from sendmail: .*example\.test .*fromfile\.test .*relayed\.test", 5),
              rg.log()[-2000:])
        for rcpt in ("user@example.test", "user@fromfile.test", "user@relayed.test", "user@sub.relayed.test"):
            r = msg(rcpt)
            check(f"a stranger's mail to {rcpt} is taken", r.delivered, r.summary())
        r = msg("victim@foreign.example")
        c = r.rcpt("victim@foreign.example")
        check("any other domain is still relaying: 554 5.7.1 from relayguard",
              c is not None and c.code == 554 and c.enhanced == "5.7.1", r.summary())
        r = msg("user@added.test")
        check("before the file names it, added.test is relaying", not r.delivered, r.summary())
        with open(cw_file, "a") as f:
            f.write("added.test\n")
        deadline, r = time.monotonic() + 15, None
        while time.monotonic() < deadline:
            r = msg("user@added.test")
            if r.delivered:
                break
            time.sleep(1)
        check("a name added to local-host-names is local within seconds, no reload", r.delivered, r.summary())
        check("and the new list is logged", rg.wait_for(r"from sendmail: .*added\.test", 2), rg.log()[-2000:])
finish()
