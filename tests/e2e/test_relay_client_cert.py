#!/usr/bin/python3
"""The relay client shows a client certificate to a smart host that relays for known
certificates instead of AUTH (issue 22; Microsoft 365's certificate connector works this
way, and Postfix's permit_tls_clientcerts): a private Postfix that asks for a certificate
and relays only for the one whose fingerprint it lists.  With delivery.tls_client_cert the
mail goes out; without it the smart host answers 4xx and the mail waits in the queue; a key
file every user may read is refused at start."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.relayd import FAST, Relayd, smarthosts, wait  # noqa: E402
from rgtest.smarthost import smarthost_settings, tls_sessions, wait_delivered  # noqa: E402
from rgtest.tls import cert_fingerprint, make_test_cert  # noqa: E402

tmp = tempfile.mkdtemp(prefix="rgtest-ccert-")
server_cert, server_key = make_test_cert(tmp, common_name="smarthost.test")
client_cert, client_key = make_test_cert(os.path.join(tmp, "client"), common_name="relay-client.test")
stranger_cert, stranger_key = make_test_cert(os.path.join(tmp, "stranger"), common_name="stranger.test")

known = os.path.join(tmp, "relay_clientcerts")
with open(known, "w") as f:
    f.write(f"{cert_fingerprint(client_cert)} relay-client.test\n")
settings = smarthost_settings(server_cert, server_key)
settings.update({"smtpd_tls_ask_ccert": "yes", "smtpd_tls_fingerprint_digest": "sha256",
                 "relay_clientcerts": f"texthash:{known}"})

with PostfixInstance(port=free_port(), mydestination="", local_users=(), mynetworks=None,
                     relay_restrictions=["permit_tls_clientcerts", "defer_unauth_destination"],
                     myhostname="certhost.test", extra_main_cf=settings) as sh:
    route = smarthosts(f"127.0.0.1:{sh.port}") + FAST

    with Relayd(route + f'tls_client_cert = "{client_cert}"\ntls_client_key = "{client_key}"\n') as relayd:
        r = send_message("127.0.0.1", relayd.port, sender="app@example.test", rcpts=["ops@remote.example"])
        check("the relay client takes the mail", r.delivered, r.summary())
        check("the smart host relays it for the known certificate", wait_delivered(sh, 1, 20) == 1,
              relayd.log()[-1500:] + sh.maillog()[-1500:])
        check("the smart host saw a client certificate", any(t[0] in ("Untrusted", "Trusted") for t in tls_sessions(sh)),
              tls_sessions(sh))
        check("and the queue is empty", wait(lambda: not relayd.queued()), relayd.queued())

    with Relayd(route) as relayd:
        send_message("127.0.0.1", relayd.port, sender="app@example.test", rcpts=["ops@remote.example"])
        check("without a certificate the smart host refuses to relay with 4xx, and the mail is deferred",
              relayd.wait_for(r"to=<ops@remote\.example> .*status=deferred \(45\d 4\.7\.1 .*Relay access denied"),
              relayd.log()[-1500:])
        check("it stays queued", len(relayd.queued()) == 1, relayd.queued())

    with Relayd(route + f'tls_client_cert = "{stranger_cert}"\ntls_client_key = "{stranger_key}"\n') as relayd:
        send_message("127.0.0.1", relayd.port, sender="app@example.test", rcpts=["ops@remote.example"])
        check("a certificate the smart host does not know is deferred the same way",
              relayd.wait_for(r"status=deferred \(45\d 4\.7\.1 .*Relay access denied"), relayd.log()[-1500:])

    os.chmod(client_key, 0o644)
    loose = Relayd(route + f'tls_client_cert = "{client_cert}"\ntls_client_key = "{client_key}"\n')
    p = subprocess.run([loose.binary, "--config", loose.config], capture_output=True, text=True, timeout=20)
    check("a client key every user may read is refused at start, naming the key and the fix",
          p.returncode != 0 and "delivery.tls_client_key" in p.stdout + p.stderr and "chmod o-rw" in p.stdout + p.stderr,
          (p.returncode, p.stdout[-600:], p.stderr[-600:]))
finish()
