"""Reading delivery status notifications back with Python's own email package, an
independent parser: a report as received by a sink becomes a dict of what a sender's
mail program would show and what a machine would read (RFC 3464 fields)."""

import email
import email.policy
import smtplib

__all__ = ["parse_report", "reports_for", "submit"]


def parse_report(sink_message):
    """sink_message: one SmtpSink message dict. Returns a dict: envelope_sender, to, subject
    (decoded), from, auto_submitted, language, report_type, text (the human part, decoded),
    message_fields (dict), recipients (list of dicts), returned_type, returned (str)."""
    msg = email.message_from_bytes(sink_message["data"], policy=email.policy.default)
    out = {"envelope_sender": sink_message["sender"], "envelope_rcpts": sink_message["recipients"],
           "to": str(msg["To"]), "from": str(msg["From"]), "subject": str(msg["Subject"]),
           "auto_submitted": msg["Auto-Submitted"], "language": msg["Content-Language"],
           "content_type": msg.get_content_type(), "report_type": msg.get_param("report-type"),
           "defects": list(msg.defects)}
    parts = list(msg.iter_parts()) if msg.is_multipart() else []
    out["parts"] = [p.get_content_type() for p in parts]
    if len(parts) != 3:
        return out
    out["text"] = parts[0].get_content()
    blocks = parts[1].get_payload()  # message/delivery-status: one Message per block
    out["message_fields"] = {k: str(v) for k, v in blocks[0].items()}
    out["recipients"] = [{k: str(v) for k, v in b.items()} for b in blocks[1:]]
    out["returned_type"] = parts[2].get_content_type()
    if out["returned_type"] == "message/rfc822":
        out["returned"] = parts[2].get_payload()[0].as_string()
    else:
        out["returned"] = parts[2].get_payload(decode=True).decode("utf-8", "replace")
    return out


def reports_for(sink, queue_id):
    """Every report in the sink about the message with this queue id."""
    found = []
    for m in sink.messages():
        if b"X-Relayguard-Queue-ID: " + queue_id.encode() in m["data"]:
            found.append(parse_report(m))
    return found


def submit(port, sender, rcpts, body="hello", subject="test", mail_options=(), rcpt_options=None,
           host="127.0.0.1"):
    """One message by smtplib with ESMTP options; rcpt_options maps a recipient to its own
    options. Returns the queue id from the 250 reply."""
    message = (f"From: <{sender}>\r\nTo: <{rcpts[0]}>\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\n{body}\r\n")
    with smtplib.SMTP(host, port, timeout=20) as s:
        s.ehlo("client.example.test")
        code, reply = s.mail(sender, list(mail_options))
        if code != 250:
            raise RuntimeError(f"MAIL refused: {code} {reply}")
        for r in rcpts:
            code, reply = s.rcpt(r, list((rcpt_options or {}).get(r, ())))
            if code != 250:
                raise RuntimeError(f"RCPT {r} refused: {code} {reply}")
        code, reply = s.data(message.encode())
        if code != 250:
            raise RuntimeError(f"DATA refused: {code} {reply}")
        return reply.decode().rsplit(" ", 1)[-1]
