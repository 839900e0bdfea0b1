"""Two MTA nodes sharing one counter store, as a cluster runs them: two
relayguard daemons, each behind its own private Postfix. Node A's Postfix
uses the milter only; node B's uses the milter and the policy service at
RCPT (the contrib snippet's set-up), so both front ends meet the shared
store."""

import contextlib

from .daemon import Relayguard
from .fixtures import PostfixInstance, free_port
from .smtp import SmtpSession, send_message

BASE = """
[relay]
local_domains = ["example.test"]
[limits]
exempt_group = ""
[limits.message_rate]
max = {rate}
"""


def store_config(mode, servers, fail_mode="tempfail", lease="5s", extra=""):
    quoted = ", ".join(f'"{s}"' for s in servers)
    return (f'[store]\ntype = "redis"\nfail_mode = "{fail_mode}"\n'
            f'[store.redis]\nmode = "{mode}"\nservers = [{quoted}]\nconnection_lease = "{lease}"\n'
            f'key_prefix = "rgtest:"\n{extra}\n')


class Node:
    def __init__(self, name, daemon, postfix):
        self.name = name
        self.daemon = daemon
        self.postfix = postfix

    def send(self, source, rcpt="user1@example.test"):
        return send_message("127.0.0.1", self.postfix.port, source=source, sender="s@example.org", rcpts=[rcpt])

    def session(self, source):
        """An SMTP session held open (the caller closes it)."""
        s = SmtpSession("127.0.0.1", self.postfix.port, source=source)
        return s


@contextlib.contextmanager
def two_nodes(store_a, store_b=None, rate=10, connections=2):
    """Yields (node A, node B); store_b defaults to store_a. connections=None
    turns the connection limit off."""
    base = BASE.format(rate=rate)
    base += f'[limits.connections]\nmax = {connections if connections is not None else chr(34) + "off" + chr(34)}\n'
    with contextlib.ExitStack() as stack:
        rg_a = stack.enter_context(Relayguard(base + store_a))
        rg_b = stack.enter_context(Relayguard(base + (store_b or store_a)))
        pf_a = stack.enter_context(PostfixInstance(port=free_port(), milter=rg_a.milter))
        pf_b = stack.enter_context(PostfixInstance(port=free_port(), milter=rg_b.milter, policy=rg_b.policy,
                                                   policy_at=("rcpt",)))
        yield Node("A", rg_a, pf_a), Node("B", rg_b, pf_b)


def shared_limit_checks(check, a, b, source, rate=10):
    """6 messages through A and the rest of the limit through B pass; the
    next is refused on B, and on A too: one limit across both nodes."""
    through_a = [a.send(source).delivered for _ in range(6)]
    check(f"shared limit: 6 messages from {source} through node A accepted", all(through_a), through_a)
    through_b = [b.send(source).delivered for _ in range(rate - 6)]
    check(f"shared limit: {rate - 6} more through node B accepted", all(through_b), through_b)
    r = b.send(source)
    check(f"shared limit: message {rate + 1} refused by node B with the rate limit's 450",
          not r.delivered and r.mail is not None and r.mail.code == 450, r.summary())
    r = a.send(source)
    check(f"shared limit: and by node A", not r.delivered and r.mail is not None and r.mail.code == 450, r.summary())
    check("shared limit: node B's security log names the rule",
          len(b.daemon.refusals(rule="message_rate", client=source)) >= 1, b.daemon.log()[-1500:])
