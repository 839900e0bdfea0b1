#!/usr/bin/python3
"""Abuse at the SMTP door, through a private Postfix with relayguard attached as
milter and as policy service (RCPT and END-OF-MESSAGE): a client holding many
connections from one address, one pipelining junk commands, one sending an
endless header or body, one trying 1,000 recipients (and one harvesting 1,000
unknown ones), one declaring a SIZE of 2^63. Each check is on what the SMTP
client sees (reply codes and enhanced codes) and, where relayguard is the one
refusing, on its security log; and the daemon must come out of it alive, small
and still delivering mail. Each scenario uses its own loopback source address,
so one client's counters never touch another's."""

import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import PostfixInstance, SmtpSession, build_message, free_port, send_message  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.daemon import Relayguard  # noqa: E402

CONNECTIONS_MAX = 5
RECIPIENTS_MAX = 50
FAILED_MAX = 20
HARVEST_MAX = 10
SIZE_MAX = 1024 * 1024  # "1MB"

# Loopback is not exempt (exempt_group = ""), so every limit applies to these
# test clients; 127.0.0.40 is the one client allowed to relay.  The size
# limit's reply text is relayguard's own, so that a 552 5.3.4 from relayguard
# can be told apart from Postfix's "Message size exceeds fixed limit".  The
# message rate is on but generous: no scenario here is about rate
# (test_postfix_milter covers it), and with the policy service also asked at
# END-OF-MESSAGE each message is counted by both front ends.
CONFIG = f"""
[ip_groups]
relayers = ["127.0.0.40/32"]
[relay]
local_domains = ["example.test"]
trusted_groups = ["relayers"]
[limits]
exempt_group = ""
[limits.connections]
max = {CONNECTIONS_MAX}
[limits.recipients]
max = {RECIPIENTS_MAX}
[limits.failed_commands]
max = {FAILED_MAX}
[limits.message_size]
max = "1MB"
reply = {{ code = 552, status = "5.3.4", text = "relayguard: message size exceeds the limit" }}
[limits.unknown_recipients]
max = {HARVEST_MAX}
block_time = "1h"
[limits.message_rate]
max = 1000
"""

# Postfix's own size guard is off (message_size_limit = 0, i.e. no limit) in
# both instances, so that a size refusal is relayguard's and a declared SIZE
# near 2^63 reaches relayguard at all: with Postfix's default limit, Postfix
# answers "552 5.3.4 Message size exceeds fixed limit" itself before the milter
# hears of MAIL FROM.  Postfix still refuses a SIZE that overflows its own
# 63-bit off_t, and still keeps only header_size_limit (100 KB) of one header.
POSTFIX_MAIN_CF = {"message_size_limit": "0"}

LOCAL = "user1@example.test"
REPLY_BOUND = 15.0  # seconds: no abusive client may leave the server hanging longer


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def msg(source, rcpts=(LOCAL,), port=None, **kw):
    return send_message("127.0.0.1", port or PF, source=source, sender="sender@example.org", rcpts=list(rcpts),
                        timeout=30, **kw)


def read_replies(s, limit):
    """Replies until `limit` of them, a 421, or the server closing (Reply code 0)."""
    out = []
    while len(out) < limit:
        r = s.read_reply("<pipelined>")
        out.append(r)
        if r.code in (0, 421):
            break
    return out


def pipeline(s, lines):
    """Every line in one TCP write (PIPELINING); then one reply per line as far as the server gets."""
    s.send_raw(b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\r\n" for ln in lines))
    return read_replies(s, len(lines))


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def closed_sessions(client):
    # connection_log = true: one "session client=..." line per milter session, written at
    # its close, i.e. once relayguard has released the connection slot.
    return len(re.findall(rf"session client={re.escape(client)} ", rg.log()))


def runs(replies):
    """[(code, enhanced, count), ...] of consecutive equal replies, for readable failure details."""
    out = []
    for r in replies:
        if out and out[-1][:2] == (r.code, r.enhanced):
            out[-1] = (r.code, r.enhanced, out[-1][2] + 1)
        else:
            out.append((r.code, r.enhanced, 1))
    return out


# ---------------------------------------------------------------------------

def many_connections():
    src = "127.0.0.30"
    # The connection limit needs connect and close, which only the milter sees.  relayguard
    # refuses at connect with 421 4.7.0; Postfix turns a milter's 421 at connect into its own
    # "421 <host> Service unavailable" greeting and hangs up (relayguard's text stays in the
    # maillog), so the client sees 421 at the greeting, without an enhanced code.
    sessions = [SmtpSession("127.0.0.1", PF, source=src, closed_ok=True, timeout=10)
                for _ in range(2 * CONNECTIONS_MAX)]
    held, refused = sessions[:CONNECTIONS_MAX], sessions[CONNECTIONS_MAX:]
    ehlo = [s.ehlo("flood.example").code for s in held]
    check(f"{CONNECTIONS_MAX} concurrent connections from one IP are greeted and answer EHLO (limit "
          f"{CONNECTIONS_MAX})", [s.greeting.code for s in held] == [220] * CONNECTIONS_MAX
          and ehlo == [250] * CONNECTIONS_MAX, f"greetings={[str(s.greeting) for s in held]} ehlo={ehlo}")
    greetings = [s.greeting.code for s in refused]
    check(f"the {CONNECTIONS_MAX} connections over the limit get 421 at connect and are closed",
          greetings == [421] * CONNECTIONS_MAX and all(s.closed or s.noop().code in (0, 421) for s in refused),
          [str(s.greeting) for s in refused])
    logged = rg.refusals(client=src, rule="connections")
    check(f"each refused connection is in the security log: rule=connections concurrent={CONNECTIONS_MAX + 1} "
          f"limit={CONNECTIONS_MAX}", len(logged) == CONNECTIONS_MAX and all(
              f"concurrent={CONNECTIONS_MAX + 1} limit={CONNECTIONS_MAX}" in ln and "421 4.7.0" in ln
              for ln in logged), logged)
    for s in refused:
        s.close()

    other = msg("127.0.0.31")
    check("during the flood another IP still delivers", other.delivered, other.summary())
    late = SmtpSession("127.0.0.1", PF, source=src, closed_ok=True, timeout=10)
    check("during the flood one more connection from the flooding IP is still refused with 421",
          late.greeting.code == 421, late.greeting)
    late.close()

    # The sessions inside the limit are real sessions: each can deliver a message.
    delivered = []
    for i, s in enumerate(held):
        m = s.mail("sender@example.org")
        r = s.rcpt(LOCAL)
        d = s.data(build_message("sender@example.org", [LOCAL], body=f"held session {i}\n"))
        delivered.append((m.code, r.code, d.code))
    check(f"each of the {CONNECTIONS_MAX} admitted sessions delivers a message",
          delivered == [(250, 250, 250)] * CONNECTIONS_MAX, delivered)
    for s in held:
        s.quit()
    # 2*max flood sessions + 1 late one, every one of them closed in relayguard's books
    everyone = 2 * CONNECTIONS_MAX + 1
    check("relayguard sees every flood session closed (connection log)",
          wait_until(lambda: closed_sessions(src) >= everyone, 10), f"{closed_sessions(src)} of {everyone}")
    after = msg(src)
    check("after all are closed the slots are released: the same IP delivers again", after.delivered,
          after.summary())


def pipelined_junk():
    # Postfix answers each unknown command itself (500 5.5.2) and also hands it to the milter
    # (xxfi_unknown), where relayguard counts it as a failed command; the failure past
    # failed_commands.max gets relayguard's 421 4.7.0, which Postfix sends and then hangs up.
    # Postfix's own error limits are raised by the fixture (hard_error_limit 100), so they
    # are not what ends these sessions.
    src = "127.0.0.32"
    rnd = random.Random(20261123)
    junk = []
    for i in range(50):
        kind = i % 5
        if kind == 0:
            junk.append(bytes(rnd.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(8)) + b" garbage")
        elif kind == 1:
            junk.append(b"X" * 2000)                    # overlong
        elif kind == 2:
            junk.append(b"NUL\x00IN\x00COMMAND")        # NUL bytes
        elif kind == 3:
            junk.append(b"\xff\xfe\xc3\x28 BAD \xe2\x82")  # invalid UTF-8
        else:
            junk.append(b"Y" * 5000)                    # longer than Postfix's line_length_limit
    s = SmtpSession("127.0.0.1", PF, source=src, closed_ok=True, timeout=10)
    t0 = time.monotonic()
    replies = pipeline(s, [b"EHLO junk.example"] + junk)
    took = time.monotonic() - t0
    # The server hangs up with our unread junk still in its receive buffer, so the kernel
    # resets the connection and the 421 itself may be lost: a 421 or a closed connection
    # both count as "closed", but it must be closed before all 50 junk lines were answered.
    check("50 pipelined junk commands: the session is closed before they are all answered",
          replies[-1].code in (0, 421) and len(replies) < 51 and took < REPLY_BOUND,
          f"{len(replies)} replies in {took:.1f}s: {runs(replies)}")
    logged = rg.refusals(client=src, rule="failed_commands")
    check(f"relayguard closed it: rule=failed_commands failed={FAILED_MAX + 1} limit={FAILED_MAX} in the security log",
          any(f"failed={FAILED_MAX + 1} limit={FAILED_MAX}" in ln and "stage=unknown" in ln for ln in logged), logged)
    check("Postfix passed relayguard's 421 on (maillog: milter-reject UNKNOWN ... 421 4.7.0)",
          bool(pf.wait_log(rf"milter-reject: UNKNOWN from unknown\[{re.escape(src)}\]: 421 4\.7\.0", timeout=5)))
    s.close()

    # Exactly max+1 junk commands, nothing after them: now nothing is left unread, and the
    # client sees the whole exchange, relayguard's 421 included.
    s = SmtpSession("127.0.0.1", PF, source="127.0.0.33", closed_ok=True, timeout=10)
    replies = pipeline(s, [b"EHLO junk.example"] + [b"JUNK%d garbage" % i for i in range(FAILED_MAX + 1)])
    codes = [r.code for r in replies]
    last = replies[-1]
    check(f"{FAILED_MAX + 1} pipelined junk commands: {FAILED_MAX} x 500 from Postfix, then relayguard's "
          f"421 4.7.0 on the {FAILED_MAX + 1}st",
          codes == [250] + [500] * FAILED_MAX + [421] and last.enhanced == "4.7.0"
          and "Too many failed commands" in last.text, runs(replies))
    after = s.noop()
    check("and the connection is closed after that 421", after.code == 0, after)
    s.close()

    r = msg("127.0.0.34")
    check("after the junk, a fresh client from another IP delivers", r.delivered, r.summary())
    check("relayguard is alive after the junk", rg.alive())


def endless_content():
    # What relayguard keeps of a message: the milter counts body bytes as libmilter hands
    # them over (at most 64 KB a chunk) and keeps none of them (plugin/frontends/milter_front_end.cpp
    # on_body); the policy service only reads Postfix's size attribute at END-OF-MESSAGE.
    # So the daemon's memory must not grow with what a client sends.
    #
    # Two instances: with the policy service asked at END-OF-MESSAGE (the main one), Postfix
    # asks it before handing the content to the milters, so the policy service's size check
    # answers and the milter never sees the content.  The second, milter-only instance is
    # there to drive the milter's own body path.
    rss_before = rss_kb(rg.proc.pid)
    header = (b"\t" + b"h" * 76 + b"\r\n") * 1000  # 79 KB of one folded header, sent 65 times: ~5 MB

    def endless_header(src, port):
        s = SmtpSession("127.0.0.1", port, source=src, closed_ok=True, timeout=30)
        s.ehlo("header.example")
        steps = [s.mail("sender@example.org").code, s.rcpt(LOCAL).code, s.raw("DATA").code]
        t0 = time.monotonic()
        s.send_raw(b"From: <sender@example.org>\r\nSubject: endless header\r\nX-Endless: start\r\n")
        for _ in range(65):
            s.send_raw(header)
        s.send_raw(b"\r\nbody\r\n.\r\n")
        t1 = time.monotonic()
        r = s.read_reply("<end of data>")
        s.close()
        return steps, r, time.monotonic() - t1, t1 - t0

    def endless_body(src, port):
        s = SmtpSession("127.0.0.1", port, source=src, closed_ok=True, timeout=30)
        s.ehlo("body.example")
        steps = [s.mail("sender@example.org").code, s.rcpt(LOCAL).code, s.raw("DATA").code]
        s.send_raw(b"From: <sender@example.org>\r\nSubject: endless body\r\n\r\n")
        chunk = (b"b" * 998 + b"\r\n") * 1000  # 1 MB
        for _ in range(20):
            s.send_raw(chunk)
        time.sleep(1.0)  # 20 MB sent and no end in sight, for a while
        t1 = time.monotonic()
        s.send_raw(b".\r\n")
        r = s.read_reply("<end of data>")
        s.close()
        return steps, r, time.monotonic() - t1

    # main instance: relayguard's policy service refuses at END-OF-MESSAGE on Postfix's size
    steps, r, waited, _ = endless_header("127.0.0.35", PF)
    check("a ~5 MB folded header: 552 5.3.4 from relayguard at end of data, answered promptly",
          steps == [250, 250, 354] and r.code == 552 and r.enhanced == "5.3.4" and "relayguard" in r.text
          and waited < REPLY_BOUND, f"steps={steps} reply={r} after {waited:.1f}s")
    logged = rg.refusals(client="127.0.0.35", rule="message_size")
    check("the endless header is logged as rule=message_size at eom with its size over 5 MB",
          any("stage=eom" in ln and re.search(r"size=(\d{7,})", ln) and int(re.search(r"size=(\d+)", ln).group(1))
              > 5_000_000 for ln in logged), logged)
    steps, r, waited = endless_body("127.0.0.36", PF)
    check("a 20 MB body: 552 5.3.4 from relayguard at end of data, answered promptly",
          steps == [250, 250, 354] and r.code == 552 and r.enhanced == "5.3.4" and "relayguard" in r.text
          and waited < REPLY_BOUND, f"steps={steps} reply={r} after {waited:.1f}s")
    check("the 20 MB body is logged as rule=message_size",
          bool(rg.refusals(client="127.0.0.36", rule="message_size")))

    # milter-only instance
    steps, r, waited = endless_body("127.0.0.38", PF_MILTER)
    check("milter alone, a 20 MB body: relayguard's 552 5.3.4 at end of data, answered promptly",
          steps == [250, 250, 354] and r.code == 552 and r.enhanced == "5.3.4" and "relayguard" in r.text
          and waited < REPLY_BOUND, f"steps={steps} reply={r} after {waited:.1f}s")
    logged = rg.refusals(client="127.0.0.38", rule="message_size")
    check("milter alone: the body is refused by the milter at the body stage, just past the limit",
          any("stage=body" in ln and "via=milter" in ln and re.search(r"body_bytes=(\d+)", ln)
              and SIZE_MAX < int(re.search(r"body_bytes=(\d+)", ln).group(1)) <= SIZE_MAX + 2 * 65536
              for ln in logged), logged)
    # Postfix's cleanup keeps only header_size_limit of a header and drops the rest, so what
    # it queues (and hands the milter) is small: relayguard must not fail on the long header
    # (a 4xx would mean the milter choked on it), and what gets queued must be under its limit.
    mark = pf_milter.log_mark()
    steps, r, waited, _ = endless_header("127.0.0.37", PF_MILTER)
    qid = re.search(r"queued as (\w+)", r.text) if r.code == 250 else None
    queued = None
    if qid:
        m = pf_milter.wait_log(rf"{qid.group(1)}: from=<[^>]*>, size=(\d+)", timeout=10, since=mark)
        queued = int(m.group(1))
    check("milter alone, a ~5 MB folded header: accepted promptly, and what Postfix queued is under 1 MB",
          steps == [250, 250, 354] and r.code == 250 and waited < REPLY_BOUND and queued is not None
          and queued < SIZE_MAX, f"steps={steps} reply={r} after {waited:.1f}s queued size={queued}")

    rss_after = rss_kb(rg.proc.pid)
    check("relayguard's memory did not grow with ~50 MB of content (VmRSS grew < 50 MB)",
          rss_before > 0 and rss_after - rss_before < 50 * 1024,
          f"VmRSS {rss_before} kB -> {rss_after} kB")
    check("relayguard is alive after the endless content", rg.alive())


def many_recipients():
    # Recipients per message: the policy service answers at RCPT, before the milter (the
    # fixture puts check_policy_service in smtpd_relay_restrictions).  The one past the
    # limit gets 452 4.5.3 (a client is expected to send the rest in a new transaction);
    # each refusal is also a failed command, and the failure past failed_commands.max ends
    # the session with 421 4.7.0.  So of 1,000 pipelined RCPTs: 50 accepted, 20 x 452,
    # then 421 and the connection is gone.
    expect = [(250, "2.1.5", RECIPIENTS_MAX), (452, "4.5.3", FAILED_MAX), (421, "4.7.0", 1)]
    cases = [("127.0.0.39", "valid local users", [f"user{1 + i % 2}@example.test" for i in range(1000)]),
             ("127.0.0.40", "foreign domains from a client allowed to relay",
              [f"rcpt{i}@foreign{i % 7}.example" for i in range(1000)])]
    for src, what, rcpts in cases:
        s = SmtpSession("127.0.0.1", PF, source=src, closed_ok=True, timeout=30)
        s.ehlo("many.example")
        mail = s.mail("sender@example.org")
        t0 = time.monotonic()
        replies = pipeline(s, [f"RCPT TO:<{r}>" for r in rcpts])
        took = time.monotonic() - t0
        check(f"1,000 RCPTs to {what}: {RECIPIENTS_MAX} accepted, {FAILED_MAX} x 452 4.5.3, then 421 4.7.0",
              mail.code == 250 and runs(replies) == expect and "Too many recipients" in replies[RECIPIENTS_MAX].text
              and took < REPLY_BOUND, f"MAIL {mail}; {took:.1f}s: {runs(replies)}")
        after = s.noop()
        check(f"1,000 RCPTs to {what}: the connection is closed after the 421", after.code == 0, after)
        s.close()
        logged = rg.refusals(client=src, rule="recipients")
        check(f"1,000 RCPTs to {what}: {FAILED_MAX} refusals logged as rule=recipients "
              f"recipients={RECIPIENTS_MAX + 1} limit={RECIPIENTS_MAX} first",
              len(logged) == FAILED_MAX and f"recipients={RECIPIENTS_MAX + 1} limit={RECIPIENTS_MAX}" in logged[0],
              logged[:2])
    r = msg("127.0.0.39", [f"user{1 + i % 2}@example.test" for i in range(RECIPIENTS_MAX)])
    check(f"a new transaction with {RECIPIENTS_MAX} recipients (the limit) delivers",
          r.delivered and len(r.accepted_rcpts) == RECIPIENTS_MAX, r.summary()[-600:])


def harvest():
    # Unknown local users are refused by Postfix itself (reject_unlisted_recipient, 550 5.1.1)
    # before the policy service is asked; relayguard's milter sees those refusals through
    # SMFIP_RCPT_REJ ({rcpt_mailer}=error, {rcpt_host}=5.1.1), counts distinct ones, and blocks
    # the client at the HARVEST_MAX-th.  The block is honoured at RCPT by the policy service
    # and at connect by the milter.
    src = "127.0.0.41"
    s = SmtpSession("127.0.0.1", PF, source=src, closed_ok=True, timeout=10)
    s.ehlo("harvester.example")
    s.mail("sender@example.org")
    first = [s.rcpt(f"nobody{i}@example.test") for i in range(HARVEST_MAX)]
    check(f"Postfix refuses the first {HARVEST_MAX} unknown users itself: 550 5.1.1",
          [(r.code, r.enhanced) for r in first] == [(550, "5.1.1")] * HARVEST_MAX, runs(first))
    logged = rg.refusals(client=src, rule="unknown_recipients")
    check(f"relayguard blocks the harvester at the {HARVEST_MAX}th distinct unknown recipient (security log)",
          any(f"distinct_unknown={HARVEST_MAX} limit={HARVEST_MAX}" in ln for ln in logged), logged[:2])
    valid = s.rcpt(LOCAL)
    check("in the same session a valid recipient is now refused: 450 4.7.1 Client blocked",
          valid.code == 450 and valid.enhanced == "4.7.1" and "Client blocked" in valid.text, valid)
    # Go on guessing past the failed-commands limit.  Postfix uses a milter's reply to RCPT
    # only for a recipient it accepted itself (smtpd.c rcpt_cmd: "if (err == 0 && milter_err
    # != 0)"), so the 421 decided at a recipient Postfix refused cannot go out there:
    # relayguard holds it for the client's next command the milter is asked about (here a
    # new MAIL FROM), and logs the decision once.
    rest = [s.rcpt(f"nobody{i}@example.test") for i in range(HARVEST_MAX, HARVEST_MAX + 20)]
    check("guesses past the limit are still refused by Postfix (550 5.1.1)",
          all(r.code == 550 for r in rest), runs(rest))
    closes = rg.refusals(client=src, rule="failed_commands")
    check(f"relayguard decides the close at failed command {FAILED_MAX + 1} and logs it once",
          len(closes) == 1 and f"failed={FAILED_MAX + 1} limit={FAILED_MAX}" in closes[0], closes[:3])
    check("RSET is still answered by Postfix (250)", s.rset().code == 250)
    closing = s.mail("sender@example.org")
    check("the next MAIL FROM gets relayguard's 421 4.7.0 Too many failed commands",
          closing.code == 421 and "Too many failed commands" in closing.text, closing)
    try:
        after = s.noop()
    except Exception as e:  # the connection is gone: what a client must see after 421
        after = e
    check("and the session is closed", not hasattr(after, "code") or after.code == 0, after)
    s.close()
    r = msg(src)
    blocked = r.mail if r.mail is not None and r.mail.code != 250 else (r.rcpts[0][1] if r.rcpts else r.greeting)
    check("a new connection from the harvester is refused: 450 4.7.1 Client blocked, nothing delivered",
          not r.delivered and blocked is not None and blocked.code == 450 and blocked.enhanced == "4.7.1",
          r.summary())
    check("the block at connect is in the security log",
          any("stage=connect" in ln for ln in rg.refusals(client=src, rule="unknown_recipients")))


def huge_size():
    # Which layer answers a declared SIZE near 2^63 (Postfix's own limit is off, see above):
    #   2^63 and 2^64 overflow Postfix's off_t: Postfix answers "552 5.3.4 Message size exceeds
    #   file system imposed limit" while parsing MAIL FROM, and the milter never hears of it;
    #   2^63-1 is a valid size to Postfix and reaches relayguard, which parses it as a 64-bit
    #   number and refuses it with its own 552 5.3.4.
    probes = [("127.0.0.42", "9223372036854775808", "postfix"),
              ("127.0.0.43", "9223372036854775807", "relayguard"),
              ("127.0.0.44", "18446744073709551616", "postfix")]
    for src, size, layer in probes:
        s = SmtpSession("127.0.0.1", PF, source=src, closed_ok=True, timeout=10)
        s.ehlo("size.example")
        r = s.raw(f"MAIL FROM:<sender@example.org> SIZE={size}")
        alive = s.noop()
        s.close()
        logged = rg.refusals(client=src, rule="message_size")
        if layer == "postfix":
            check(f"SIZE={size}: Postfix's own 552 5.3.4 (file system imposed limit); relayguard not asked",
                  r.code == 552 and r.enhanced == "5.3.4" and "file system imposed limit" in r.text and not logged,
                  f"{r} / relayguard: {logged}")
        else:
            check(f"SIZE={size}: relayguard's 552 5.3.4, logged with the exact declared size",
                  r.code == 552 and r.enhanced == "5.3.4" and "relayguard" in r.text
                  and any(f"declared_size={size} limit={SIZE_MAX}" in ln for ln in logged),
                  f"{r} / relayguard: {logged}")
        check(f"SIZE={size}: the session goes on (NOOP answered 250)", alive.code == 250, alive)
    bad = re.findall(r".*(?:overflow|out of range|runtime error).*", rg.log(), re.I)
    check("relayguard logged nothing like an overflow", not bad, bad[:3])
    r = msg("127.0.0.45", size=True)
    check("a normal message with its real SIZE= still delivers", r.delivered and r.mail.code == 250, r.summary())


# ---------------------------------------------------------------------------

t_start = time.monotonic()
with Relayguard(CONFIG, log_settings="connection_log = true") as rg:
    PF, PF_MILTER = free_port(), free_port()
    with PostfixInstance(port=PF, milter=rg.milter, policy=rg.policy, policy_at=("rcpt", "eom"),
                         extra_main_cf=POSTFIX_MAIN_CF) as pf, \
            PostfixInstance(port=PF_MILTER, milter=rg.milter, extra_main_cf=POSTFIX_MAIN_CF) as pf_milter:
        rss_start = rss_kb(rg.proc.pid)
        for part in (many_connections, pipelined_junk, endless_content, many_recipients, harvest, huge_size):
            print(f"--- {part.__name__}")
            try:
                part()
            except Exception as e:  # a crashed check is a failed check, and the rest still run
                check(f"{part.__name__} ran without an exception", False, repr(e))
        print("--- afterwards")
        check("relayguard is still running", rg.alive())
        r = msg("127.0.0.50")
        check("a fresh client delivers after all the abuse", r.delivered, r.summary())
        rss_end = rss_kb(rg.proc.pid)
        check("relayguard's VmRSS grew by less than 50 MB over the whole run", rss_end - rss_start < 50 * 1024,
              f"{rss_start} kB -> {rss_end} kB")
print(f"(ran in {time.monotonic() - t_start:.1f}s)")
finish()
