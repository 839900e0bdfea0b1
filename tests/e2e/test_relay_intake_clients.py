#!/usr/bin/python3
"""Who may hand mail to the relay client's intake: only the clients in
delivery.allowed_clients (default loopback). A client from anywhere else is
answered 554 5.7.1 at connect, and the refusal is logged with its address and
the rule; an allowed client's mail is queued and delivered."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import SmtpSession, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.relayd import FAST, Relayd, smarthosts  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402


with SmtpSink() as sink:
    route = smarthosts(sink.address) + FAST

    # Only 127.0.0.1 (an [ip_groups] group): 127.0.0.2, loopback too, is refused.
    with Relayd(route + 'allowed_clients = ["mta"]\n', extra_config='[ip_groups]\nmta = ["127.0.0.1/32"]\n') as relayd:
        with SmtpSession("127.0.0.1", relayd.port, source="127.0.0.2", closed_ok=True) as s:
            check("a client outside delivery.allowed_clients is answered 554 5.7.1 at connect",
                  s.greeting.code == 554 and s.greeting.text.startswith("5.7.1"), str(s.greeting))
            r = s.raw("EHLO client.example.test")
            check("and the intake closes the connection: no command is served", r.code == 0, str(r))
        check("the refusal is logged with the client's address and the rule",
              relayd.wait_for(r"refused intake client=127\.0\.0\.2 rule=delivery\.allowed_clients allowed=\[mta\]"),
              relayd.log()[-2000:])
        with SmtpSession("127.0.0.1", relayd.port, source="127.0.0.2", closed_ok=True) as s:
            s.send_raw("EHLO x\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<ops@remote.example>\r\nDATA\r\n"
                           "Subject: sneaked\r\n\r\nhi\r\n.\r\nQUIT\r\n")
            later = s.read_reply("<pipelined>")
            check("a pipelined transaction from the refused client gets nothing past the 554",
                  later.code == 0, str(later))
        check("nothing from the refused client reaches the queue", not relayd.queued() and sink.count() == 0,
              relayd.queued())

        r = send_message("127.0.0.1", relayd.port, source="127.0.0.1", sender="app@example.test",
                         rcpts=["ops@remote.example"], headers={"Subject": "allowed"})
        check("a client in delivery.allowed_clients is served and its message accepted", r.delivered, r.summary())
        check("and delivered", sink.wait_count(1, 20) == 1, relayd.log()[-2000:])

    # The default: loopback, so 127.0.0.2 may submit.
    with Relayd(route) as relayd:
        r = send_message("127.0.0.1", relayd.port, source="127.0.0.2", sender="app@example.test",
                         rcpts=["ops@remote.example"], headers={"Subject": "default"})
        check("by default any loopback client (127.0.0.2) may submit", r.delivered, r.summary())
        check("and its message is delivered", sink.wait_count(2, 20) == 2, relayd.log()[-2000:])

finish()
