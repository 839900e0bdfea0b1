#!/usr/bin/python3
"""Direct delivery by MX, with a private dnsmasq giving the records: the MX
hosts in preference order (the first refuses connections, the second takes
the mail), a domain with no MX delivered to its address (implicit MX), a
null MX (RFC 7505) and a domain that does not exist both failing at once,
without retries."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Dnsmasq, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

PORT = free_port("127.0.0.32")

with Dnsmasq(port=free_port(),
             hosts={"mx1.remote.test": "127.0.0.31", "mx2.remote.test": "127.0.0.32", "aonly.test": "127.0.0.32"},
             mx={"remote.test": ["mx1.remote.test", "mx2.remote.test"]},
             extra_conf=["local-ttl=60", "dns-rr=nullmx.test,15,000000"]) as dns, \
        SmtpSink(host="127.0.0.32", port=PORT) as sink:
    settings = (f'route = "mx"\nmx_port = {PORT}\nretry_interval = "1s"\nmax_retry_interval = "2s"\n'
                'connect_timeout = "2s"\n')
    with Relayd(settings, extra_config=f'[dns]\nservers = ["{dns.server}"]\ntimeout = "1s"\n') as relayd:
        def send(rcpt):
            return send_message("127.0.0.1", relayd.port, sender="a@example.test", rcpts=[rcpt])

        check("a message for remote.test is accepted", send("u@remote.test").delivered)
        check("it reaches the second MX after the first refused the connection", sink.wait_count(1, 20) == 1,
              relayd.log()[-2000:])
        check("the log names the MX that took it",
              relayd.wait_for(r"to=<u@remote\.test> relay=mx2\.remote\.test\[127\.0\.0\.32\]:\d+ status=sent"),
              relayd.log()[-1500:])
        check("a domain without MX is delivered to its address", send("u@aonly.test").delivered and
              sink.wait_count(2, 20) == 2, relayd.log()[-1500:])
        send("u@nullmx.test")
        check("a null MX fails at once, permanently (556 5.1.10)",
              relayd.wait_for(r"to=<u@nullmx\.test> relay=none status=bounced \(556 5\.1\.10"), relayd.log()[-1500:])
        send("u@nowhere.test")
        check("a domain that does not exist fails at once (5.1.2)",
              relayd.wait_for(r"to=<u@nowhere\.test> relay=none status=bounced \(550 5\.1\.2"), relayd.log()[-1500:])
        deadline = time.monotonic() + 10
        while relayd.queued() and time.monotonic() < deadline:
            time.sleep(0.1)
        check("nothing is left to retry", not relayd.queued(), relayd.queued())
finish()
