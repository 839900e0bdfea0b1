#!/usr/bin/python3
"""What a sender hears from the relay client, through real SMTP peers: a private dnsmasq
gives MX records for smtp-sinks that defer every recipient (451), refuse them (550), take
the mail without DSN support, and take the reports (with DSN). Short settings (warning
after 3 s, lifetime 7 s) make a delay warning and a bounce arrive within seconds; each
report is parsed back by Python's email package and its RFC 3464 fields checked. The
reports are in German (a second language), then in English when the German template is
broken. RFC 3461: NOTIFY=NEVER silences, NOTIFY=SUCCESS is answered ("relayed") where the
next hop has no DSN and passed on where it has; RET=HDRS returns headers only; a bounce of
the null sender is dropped and logged; `queue bounce` mails a bounce too."""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest import Dnsmasq, free_port  # noqa: E402
from rgtest.check import check, finish  # noqa: E402
from rgtest.dsn import reports_for, submit  # noqa: E402
from rgtest.relayd import Relayd  # noqa: E402
from rgtest.sink import SmtpSink  # noqa: E402

SOURCE = os.environ["RELAYGUARD_SOURCE_DIR"]
PORT = free_port("127.0.0.61")
reports_dir = tempfile.mkdtemp(prefix="rgtest-reports-")
shutil.copytree(os.path.join(SOURCE, "reports"), reports_dir, dirs_exist_ok=True)


def wait_reports(sink, queue_id, n, timeout=20):
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        found = reports_for(sink, queue_id)
        if len(found) >= n:
            return found
        time.sleep(0.2)
    return found


with Dnsmasq(port=free_port(),
             hosts={"mx.late.test": "127.0.0.61", "mx.gone.test": "127.0.0.62", "mx.sender.test": "127.0.0.63",
                    "mx.plain.test": "127.0.0.64"},
             mx={"late.test": ["mx.late.test"], "gone.test": ["mx.gone.test"], "sender.test": ["mx.sender.test"],
                 "plain.test": ["mx.plain.test"]},
             extra_conf=["local-ttl=60"]) as dns, \
        SmtpSink(host="127.0.0.61", port=PORT, soft_reject=["RCPT"],
                 soft_reply="451 4.7.1 Greylisted, try again later") as late, \
        SmtpSink(host="127.0.0.62", port=PORT, hard_reject=["RCPT"],
                 hard_reply="550 5.1.1 Recipient address rejected: no such user") as gone, \
        SmtpSink(host="127.0.0.63", port=PORT) as sender_mx, \
        SmtpSink(host="127.0.0.64", port=PORT, extra_args=["-N"]) as plain:
    settings = (f'route = "mx"\nmx_port = {PORT}\nretry_interval = "1s"\nmax_retry_interval = "1s"\n'
                f'connect_timeout = "2s"\nwarning_delay = "3s"\nmessage_lifetime = "7s"\n'
                f'report_language = "de"\nreports_dir = "{reports_dir}"\nhelo_name = "relay.example.test"\n')
    with Relayd(settings, extra_config=f'[dns]\nservers = ["{dns.server}"]\ntimeout = "1s"\n') as relayd:
        # 1. Deferred for good: one warning, then the bounce at the end of the lifetime.
        late_id = submit(relayd.port, "alice@sender.test", ["u@late.test"], subject="late one",
                         body="BODY-OF-THE-LATE-ONE", mail_options=["RET=HDRS", "ENVID=env+2Blate"],
                         rcpt_options={"u@late.test": ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;U@late.test"]})
        reports = wait_reports(sender_mx, late_id, 1, timeout=15)
        check("a delay warning reaches the sender", len(reports) >= 1, relayd.log()[-3000:])
        warning = reports[0] if reports else {}
        r = (warning.get("recipients") or [{}])[0]
        mf = warning.get("message_fields", {})
        check("it comes from the null sender, to the sender",
              warning.get("envelope_sender") == "" and warning.get("envelope_rcpts") == ["alice@sender.test"],
              warning)
        check("it is a multipart/report of type delivery-status, parsed without defects",
              warning.get("content_type") == "multipart/report" and warning.get("report_type") == "delivery-status"
              and warning.get("parts") == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
              and not warning.get("defects"), warning)
        check("it says it is automatic (Auto-Submitted: auto-replied)",
              warning.get("auto_submitted") == "auto-replied", warning)
        check("its words are the German template's (Subject decoded from RFC 2047)",
              warning.get("subject") == "Verzögerte Nachricht (wird weiter versucht)"
              and "Dies ist nur eine Warnung" in warning.get("text", "") and warning.get("language") == "de",
              warning.get("subject"))
        check("the text names the recipient, the remote reply and the queue id",
              "<u@late.test>: 451 4.7.1 Greylisted" in warning.get("text", "") and late_id in warning.get("text", ""),
              warning.get("text"))
        check("per-message fields: Reporting-MTA, Original-Envelope-Id (xtext decoded), Arrival-Date",
              mf.get("Reporting-MTA") == "dns; relay.example.test" and mf.get("Original-Envelope-Id") == "env+late"
              and mf.get("Arrival-Date", "").endswith("+0000"), mf)
        check("per-recipient fields: Action delayed, Status 4.7.1, Remote-MTA, the server's own reply",
              r.get("Action") == "delayed" and r.get("Status") == "4.7.1"
              and r.get("Final-Recipient") == "rfc822; u@late.test"
              and r.get("Original-Recipient") == "rfc822; U@late.test"
              and r.get("Remote-MTA") == "dns; mx.late.test"
              and r.get("Diagnostic-Code") == "smtp; 451 4.7.1 Greylisted, try again later"
              and "Will-Retry-Until" in r, r)
        check("a warning returns the headers only",
              "Subject: late one" in warning.get("returned", "")
              and "BODY-OF-THE-LATE-ONE" not in warning.get("returned", ""), warning.get("returned"))

        reports = wait_reports(sender_mx, late_id, 2, timeout=15)
        kinds = [(x.get("recipients") or [{}])[0].get("Action") for x in reports]
        check("after the lifetime the bounce follows, and there was exactly one warning",
              kinds == ["delayed", "failed"], kinds)
        bounce = reports[1] if len(reports) > 1 else {}
        b = (bounce.get("recipients") or [{}])[0]
        check("the bounce: Action failed, Status 4.4.7 (expired), the server's last reply as Diagnostic-Code",
              b.get("Action") == "failed" and b.get("Status") == "4.4.7"
              and b.get("Diagnostic-Code") == "smtp; 451 4.7.1 Greylisted, try again later", b)
        check("its text says the lifetime ended",
              "<u@late.test>: message lifetime expired; last problem: 451 4.7.1" in bounce.get("text", ""),
              bounce.get("text"))
        check("the bounce is the German failure template",
              bounce.get("subject") == "Unzustellbare Nachricht an den Absender zurück"
              and "konnte Ihre Nachricht" in bounce.get("text", ""), bounce.get("subject"))
        check("RET=HDRS: the bounce returns headers only",
              bounce.get("returned_type") == "text/rfc822-headers"
              and "BODY-OF-THE-LATE-ONE" not in bounce.get("returned", ""), bounce.get("returned_type"))
        deadline = time.monotonic() + 5  # the bounce is queued first, then the message removed
        while late_id in relayd.queued() and time.monotonic() < deadline:
            time.sleep(0.05)
        check("the message has left the queue", late_id not in relayd.queued(), relayd.queued())
        sender_count = sender_mx.count()
        check("the sink that deferred never got the message", late.count() == 0, late.count())

        # 2. Refused (550): bounced at once with the whole (small) message.
        gone_id = submit(relayd.port, "alice@sender.test", ["u@gone.test"], subject="gone one",
                         body="BODY-OF-THE-GONE-ONE")
        reports = wait_reports(sender_mx, gone_id, 1, timeout=15)
        g = (reports[0].get("recipients") or [{}])[0] if reports else {}
        check("a 550 bounces at once: Action failed, Status 5.1.1, the remote reply",
              g.get("Action") == "failed" and g.get("Status") == "5.1.1"
              and g.get("Remote-MTA") == "dns; mx.gone.test"
              and g.get("Diagnostic-Code") == "smtp; 550 5.1.1 Recipient address rejected: no such user", g)
        check("a small message comes back whole (message/rfc822)",
              reports and reports[0].get("returned_type") == "message/rfc822"
              and "BODY-OF-THE-GONE-ONE" in reports[0].get("returned", ""), reports and reports[0].get("returned_type"))
        check("no delay warning for it", len(reports) == 1, len(reports))

        # 3. NOTIFY=NEVER: no report; the null sender: no report, logged.
        never_id = submit(relayd.port, "alice@sender.test", ["u@gone.test"], subject="never one",
                          rcpt_options={"u@gone.test": ["NOTIFY=NEVER"]})
        null_id = submit(relayd.port, "", ["u@gone.test"], subject="null one")
        check("a bounce of a bounce is dropped and logged",
              relayd.wait_for(null_id + r": bounce of a message from the null sender dropped"), relayd.log()[-2000:])
        check("NOTIFY=NEVER is bounced without telling the sender",
              relayd.wait_for(never_id + r": to=<u@gone\.test> .*status=bounced"), relayd.log()[-2000:])

        # 4. NOTIFY=SUCCESS: answered where the next hop has no DSN, passed on where it has.
        plain_id = submit(relayd.port, "alice@sender.test", ["u@plain.test"], subject="plain one",
                          rcpt_options={"u@plain.test": ["NOTIFY=SUCCESS"]})
        reports = wait_reports(sender_mx, plain_id, 1, timeout=15)
        p = (reports[0].get("recipients") or [{}])[0] if reports else {}
        check("delivered to a hop without DSN: a 'relayed' report (Status 2.0.0)",
              p.get("Action") == "relayed" and p.get("Status") == "2.0.0" and p.get("Remote-MTA") == "dns; mx.plain.test",
              p)
        check("the hop without DSN got no DSN parameters",
              plain.count() == 1 and "NOTIFY" not in plain.messages()[0]["rcpt_args"][0], plain.messages())
        dsn_id = submit(relayd.port, "alice@sender.test", ["bob@sender.test"], subject="dsn one",
                        mail_options=["RET=FULL", "ENVID=abc"],
                        rcpt_options={"bob@sender.test": ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@sender.test"]})
        deadline = time.monotonic() + 15
        passed = []
        while not passed and time.monotonic() < deadline:
            passed = [m for m in sender_mx.messages() if "bob@sender.test" in m["recipients"]]
            time.sleep(0.2)
        check("a hop with DSN gets NOTIFY, ORCPT, RET and ENVID passed on",
              passed and passed[0]["rcpt_args"][0] == "<bob@sender.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@sender.test"
              and "RET=FULL" in passed[0]["mail_args"] and "ENVID=abc" in passed[0]["mail_args"],
              passed and passed[0]["rcpt_args"])
        time.sleep(2)
        check("and then we send no report of our own",
              not reports_for(sender_mx, dsn_id) and not reports_for(sender_mx, never_id)
              and not reports_for(sender_mx, null_id), [m["recipients"] for m in sender_mx.messages()])

        # Malformed DSN parameters are refused at intake, not passed on.
        for params, what in ((["NOTIFY=SUCCESS,"], "NOTIFY with an empty item"),
                             (["NOTIFY=NEVER,DELAY"], "NOTIFY=NEVER with another"),
                             (["ORCPT=rfc 822;x@y"], "ORCPT with a space in its type")):
            try:
                submit(relayd.port, "alice@sender.test", ["u@gone.test"], rcpt_options={"u@gone.test": params})
                refused = ""
            except RuntimeError as e:
                refused = str(e)
            check(f"{what} is refused with 501", "501" in refused, refused)

        # 5. A broken German template: the bounce comes in English, and the log says why.
        with open(os.path.join(reports_dir, "de", "failure.txt"), "a") as f:
            f.write("{no_such_placeholder}\n")
        broken_id = submit(relayd.port, "alice@sender.test", ["u@gone.test"], subject="broken one")
        reports = wait_reports(sender_mx, broken_id, 1, timeout=15)
        check("a broken template falls back to English",
              reports and reports[0].get("subject") == "Undelivered mail returned to sender"
              and reports[0].get("language") == "en", reports and reports[0].get("subject"))
        check("the fallback is logged with the file and the fault",
              relayd.wait_for(r"report template .*/de/failure\.txt: unknown placeholder \{no_such_placeholder\}; "
                              r"using English"), relayd.log()[-2000:])

        # 6. The admin gives up on a message: the sender gets the bounce.
        admin_id = submit(relayd.port, "alice@sender.test", ["v@late.test"], subject="admin one")
        relayd.wait_for(admin_id + r": to=<v@late\.test> .*status=deferred")
        out = relayd.queue("bounce", admin_id)
        check("queue bounce queues a bounce and removes the message",
              out.returncode == 0 and "bounce" in out.stdout and admin_id not in relayd.queued(), out.stdout + out.stderr)
        reports = wait_reports(sender_mx, admin_id, 1, timeout=15)
        a = (reports[0].get("recipients") or [{}])[0] if reports else {}
        check("that bounce says the administrator returned it (in our words, not a server's)",
              a.get("Action") == "failed"
              and a.get("Diagnostic-Code") == "X-Relayguard; returned to the sender by the administrator", a)
        # RGTEST_SHOW_DIR=dir keeps the warning and the bounce as the sender's mailbox gets them.
        if os.environ.get("RGTEST_SHOW_DIR"):
            late_reports = [m for m in sender_mx.messages() if late_id.encode() in m["data"]]
            for name, m in zip(("warning.eml", "bounce.eml"), late_reports):
                with open(os.path.join(os.environ["RGTEST_SHOW_DIR"], name), "wb") as f:
                    f.write(m["data"])
shutil.rmtree(reports_dir, ignore_errors=True)
finish()
