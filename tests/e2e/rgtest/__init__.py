"""rgtest: fixtures for relayguard's end-to-end tests.

fixtures: private Postfix, Dovecot, dnsmasq and Sendmail instances on loopback.
smtp:     an SMTP client that keeps the reply to every command separately.
"""

from .fixtures import (
    FixtureError, free_port, port_in_use, wait_port, wait_port_closed,
    PostfixInstance, DovecotInstance, Dnsmasq, Sendmail, dns_query,
)
from .smtp import (
    Reply, SmtpError, ConnectionClosed, SmtpTimeout, SmtpSession,
    SendResult, send_message, build_message,
)

__all__ = [
    "FixtureError", "free_port", "port_in_use", "wait_port", "wait_port_closed",
    "PostfixInstance", "DovecotInstance", "Dnsmasq", "Sendmail", "dns_query",
    "Reply", "SmtpError", "ConnectionClosed", "SmtpTimeout", "SmtpSession",
    "SendResult", "send_message", "build_message",
]
