"""A private Postfix acting as a *smart host*: STARTTLS offered, SMTP AUTH (Dovecot SASL)
required, and only after STARTTLS; accepted mail is delivered where a test can count and
read it.  For tests of an SMTP client such as relayguard's relay.

    with DovecotInstance(pop3_port=free_port(), auth_port=free_port()) as dv:   # u1/secret1
        cert, key = make_test_cert(tmpdir)                                     # rgtest.tls
        with smarthost_postfix(dv, cert, key, free_port()) as sh:
            ... client: EHLO, STARTTLS, EHLO, AUTH PLAIN u1 secret1, MAIL, RCPT, DATA ...
            wait_delivered(sh, 1)
            mailbox(sh, "user1@example.test")[0]    # the message as stored (bytes)

What the instance does (verified by tests/e2e/test_peer_fixtures.py, Postfix 3.7.11):
- EHLO before STARTTLS offers STARTTLS but no AUTH (smtpd_tls_auth_only = yes); AUTH sent
  anyway gets "503 5.5.1 Error: authentication not enabled".  After STARTTLS + EHLO, AUTH
  PLAIN LOGIN is offered and u1/secret1 (the Dovecot fixture's users) gets 235.
- require_auth=True (default): every RCPT needs an authenticated session; without it,
  even local users get "554 5.7.1 <user1@example.test>: Recipient address rejected:
  Access denied", and foreign domains the same.  require_auth=False: unauthenticated
  clients may deliver to the local users (an ordinary MX) but relay nothing: foreign
  domains get "554 5.7.1 ...: Relay access denied".
- Unknown users of example.test always get "550 5.1.1 <nobody@example.test>: Recipient
  address rejected: User unknown in virtual mailbox table" (also when authenticated).
- Authenticated clients may relay to any domain; that mail is discarded (logged
  status=sent like local deliveries, so it is counted too).
- Local users' mail is delivered by Postfix's virtual agent into maildirs under the
  instance's data directory, one per address: mailbox() reads them.  The Received header
  says "with ESMTPSA" when the client used TLS and AUTH (ESMTPS: TLS only; ESMTPA: AUTH only).

The exact settings: smarthost_settings() (main.cf) plus the PostfixInstance arguments that
smarthost_postfix() lists.
"""

import os
import pwd
import re
import time

from .fixtures import PostfixInstance

__all__ = ["smarthost_settings", "smarthost_postfix", "deliveries", "delivered_count",
           "wait_delivered", "mailbox", "sasl_logins", "tls_sessions"]

LOCAL_USERS = ("user1@example.test", "user2@example.test")


def _mailbox_dir(address):
    local, _, domain = address.partition("@")
    return f"{domain}/{local}/"          # trailing slash: maildir format


def smarthost_settings(cert, key, local_users=LOCAL_USERS, domain="example.test",
                       mailbox_user="postfix"):
    """The main.cf settings (extra_main_cf) that turn a PostfixInstance into the smart host.

    Mail for `domain` goes to maildirs (virtual agent) under $data_directory/mailboxes,
    written as mailbox_user: the only directory of the instance that is not root-only and
    exists before Postfix starts is data_directory, owned by postfix; the virtual agent
    needs a uid >= virtual_minimum_uid (100), which postfix (102 on Debian 12) is.
    """
    pw = pwd.getpwnam(mailbox_user)
    users = ", ".join(f"{u}={_mailbox_dir(u)}" for u in local_users) or "nobody@invalid=x/"
    return {
        # STARTTLS offered with the test certificate; AUTH only inside TLS
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": cert,
        "smtpd_tls_key_file": key,
        "smtpd_tls_auth_only": "yes",
        "smtpd_tls_loglevel": "1",
        "smtpd_tls_received_header": "yes",
        # the domain is a virtual mailbox domain (not mydestination: no system users needed)
        "virtual_mailbox_domains": domain,
        "virtual_mailbox_maps": "inline:{ " + users + " }",
        "virtual_mailbox_base": "$data_directory/mailboxes",
        "virtual_uid_maps": f"static:{pw.pw_uid}",
        "virtual_gid_maps": f"static:{pw.pw_gid}",
        "virtual_transport": "virtual",
        # mail relayed for authenticated clients: thrown away (default_transport = discard:
        # from PostfixInstance), but logged status=sent
    }


def smarthost_postfix(dovecot, cert, key, port, local_users=LOCAL_USERS, require_auth=True,
                      myhostname="smarthost.test", extra_main_cf=None, **kw):
    """A PostfixInstance (not started: use it in `with`) configured as the smart host.

    dovecot: a DovecotInstance (its sasl_path is the SASL server; its users, default
    u1/secret1, are the SMTP AUTH accounts).  cert, key: PEM files (rgtest.tls.make_test_cert).
    local_users: the addresses of example.test that exist; others get 550 5.1.1.
    require_auth: see the module docstring.  kw: more PostfixInstance arguments.

    PostfixInstance parameters used:
        sasl_path = dovecot.sasl_path      (smtpd_sasl_auth_enable = yes, type dovecot,
                                            security options noanonymous)
        mydestination = ""                 (example.test is a virtual mailbox domain)
        local_users = ()                   (local_recipient_maps unused)
        mynetworks = None                  (nothing trusted by address)
        relay_restrictions = "reject_unlisted_recipient, permit_sasl_authenticated, reject"
            or, with require_auth=False, "..., reject_unauth_destination"
        extra_main_cf = smarthost_settings(cert, key, local_users) (+ extra_main_cf)
    """
    settings = smarthost_settings(cert, key, local_users)
    settings.update(extra_main_cf or {})
    relay = ["reject_unlisted_recipient", "permit_sasl_authenticated",
             "reject" if require_auth else "reject_unauth_destination"]
    pf = PostfixInstance(port=port, sasl_path=dovecot.sasl_path, mydestination="",
                         local_users=(), mynetworks=None, relay_restrictions=relay,
                         myhostname=myhostname, extra_main_cf=settings, **kw)
    pf.smarthost_users = list(local_users)
    return pf


# --------------------------------------------------------------------------
# what the smart host did, from its maillog and maildirs

# "Nov 22 22:10:01 host postfix/virtual[123]: 4Xabc: to=<user1@example.test>, relay=virtual,
#  delay=0.02, ..., dsn=2.0.0, status=sent (delivered to maildir)"
_DELIVERY = re.compile(r"postfix/(\w+)\[\d+\]: ([0-9A-Za-z]+): to=<([^>]*)>,(?: orig_to=<[^>]*>,)?"
                       r" relay=([^,]*),.* status=(\w+) \((.*)\)$", re.M)


def deliveries(postfix, since=0, status="sent"):
    """Delivery log entries (one per recipient) as dicts: agent (virtual, discard, ...),
    queue_id, to, relay, status, text.  status=None: every status (sent, deferred, bounced)."""
    out = []
    for m in _DELIVERY.finditer(postfix.maillog(since)):
        if status is None or m.group(5) == status:
            out.append({"agent": m.group(1), "queue_id": m.group(2), "to": m.group(3),
                        "relay": m.group(4), "status": m.group(5), "text": m.group(6)})
    return out


_REMOVED = re.compile(r"postfix/qmgr\[\d+\]: ([0-9A-Za-z]+): removed$", re.M)


def delivered_count(postfix, since=0, per="message"):
    """Accepted mail that Postfix has finished delivering, from the maillog.
    per="message": queue ids (one per accepted SMTP transaction) that qmgr has removed
    after at least one status=sent, i.e. every recipient is done;
    per="recipient": status=sent lines, one per delivered recipient (local or relayed)."""
    d = deliveries(postfix, since)
    if per == "recipient":
        return len(d)
    removed = set(_REMOVED.findall(postfix.maillog(since)))
    return len({e["queue_id"] for e in d} & removed)


def wait_delivered(postfix, n, timeout=10.0, since=0, per="message"):
    """Wait until delivered_count() >= n; return the count (below n: timed out).
    Delivery follows the 250 to DATA by some milliseconds (qmgr, then the agent)."""
    deadline = time.monotonic() + timeout
    while True:
        c = delivered_count(postfix, since, per)
        if c >= n or time.monotonic() >= deadline:
            return c
        time.sleep(0.1)


def mailbox(postfix, address):
    """Messages delivered to a local user's maildir, oldest first, as bytes (with the
    Return-Path, Delivered-To and Received headers Postfix adds)."""
    new = postfix.path("data", "mailboxes", _mailbox_dir(address), "new")
    try:
        names = os.listdir(new)
    except OSError:
        return []
    paths = sorted((os.path.join(new, n) for n in names), key=lambda p: os.stat(p).st_mtime_ns)
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append(f.read())
    return out


_SASL = re.compile(r"postfix/smtpd\[\d+\]: ([0-9A-Za-z]+): client=[^,]*, sasl_method=(\w+), "
                   r"sasl_username=(\S+)")


def sasl_logins(postfix, since=0):
    """[(queue_id, method, username)] of transactions from authenticated clients."""
    return [m.groups() for m in _SASL.finditer(postfix.maillog(since))]


_TLS = re.compile(r"postfix/smtpd\[\d+\]: (\w+) TLS connection established from [^:]*: "
                  r"(\S+) with cipher (\S+)")


def tls_sessions(postfix, since=0):
    """[(trust, protocol, cipher)] of inbound TLS sessions, e.g. ("Anonymous", "TLSv1.3",
    "TLS_AES_256_GCM_SHA384"); trust is "Untrusted"/"Trusted" when the client sent a
    certificate."""
    return [m.groups() for m in _TLS.finditer(postfix.maillog(since))]
