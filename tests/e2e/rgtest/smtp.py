"""SMTP client for relayguard's end-to-end tests.

Unlike swaks, it reads exactly one reply per command and hands it back to the
caller, so a late reply is never attributed to the wrong command.  It binds to a
chosen loopback source address (all of 127/8 is local on Linux), which lets a
test act as many distinct clients.  A server that closes the connection raises
ConnectionClosed (or, with closed_ok=True, yields Reply(0, ...)).
"""

import base64
import email.utils
import re
import socket
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Tuple

__all__ = ["Reply", "SmtpError", "ConnectionClosed", "SmtpTimeout", "SmtpSession",
           "SendResult", "send_message", "build_message"]


class Reply(NamedTuple):
    """One SMTP reply; unpacks as (code, text).  text joins the lines of a multi-line reply
    with '\\n' and keeps the enhanced status code (e.g. '5.1.1 <x>: ...')."""
    code: int
    text: str

    @property
    def enhanced(self):
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.text)
        return m.group(1) if m else None

    @property
    def lines(self):
        return self.text.split("\n")

    def __str__(self):
        return f"{self.code} {self.text}"


class SmtpError(Exception):
    pass


class ConnectionClosed(SmtpError):
    """The server closed the connection (partial: bytes of an unfinished reply, if any)."""

    def __init__(self, command, partial=b""):
        self.command = command
        self.partial = partial
        super().__init__(f"server closed the connection (after {command!r})"
                         + (f", partial reply {partial!r}" if partial else ""))


class SmtpTimeout(SmtpError, TimeoutError):
    """No complete reply in time.  The session is unusable afterwards: a late reply would
    otherwise be read as the answer to the next command."""

    def __init__(self, command, timeout, partial=b""):
        self.command = command
        self.partial = partial
        super().__init__(f"no reply to {command!r} within {timeout}s"
                         + (f", partial {partial!r}" if partial else ""))


def _show(cmd):
    # keep credentials out of exception messages and logs
    return "AUTH ..." if cmd.upper().startswith("AUTH") else cmd


class SmtpSession:
    """One SMTP connection.  Every command method returns the Reply to that command."""

    def __init__(self, host="127.0.0.1", port=25, source="127.0.0.2", timeout=20.0,
                 closed_ok=False):
        self.host, self.port, self.source = host, port, source
        self.timeout = timeout
        self.closed_ok = closed_ok
        self.features = {}          # EHLO keyword (upper case) -> parameter string
        self.transcript: List[Tuple[str, str]] = []   # ('C'|'S', line) in order
        self.data_intermediate: Optional[Reply] = None
        self.closed = False
        self._broken = False
        self._buf = b""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            if source:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.greeting = self.read_reply("<connect>")

    # context manager: close without QUIT on errors, QUIT politely otherwise
    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is None and not self.closed and not self._broken:
            try:
                self.quit()
            except SmtpError:
                pass
        self.close()
        return False

    def close(self):
        try:
            self.sock.close()
        finally:
            self.closed = True

    # low level ---------------------------------------------------------
    def send_raw(self, data, command="<raw>"):
        """Send bytes as they are (no CRLF added); read nothing."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._broken:
            raise SmtpError("session is unusable after an earlier timeout")
        if self.closed:
            return self._closed(command)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return self._closed(command)
        return None

    def _closed(self, command, partial=b""):
        self.close()
        if self.closed_ok:
            return Reply(0, "connection closed by server")
        raise ConnectionClosed(command, partial)

    def _readline(self, command):
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                self._broken = True
                raise SmtpTimeout(command, self.timeout, self._buf)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                partial, self._buf = self._buf, b""
                return None, partial
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace"), b""

    def read_reply(self, command="<reply>"):
        """Read one (possibly multi-line) reply."""
        if self.closed:
            return self._closed(command)
        code, texts = None, []
        while True:
            line, partial = self._readline(command)
            if line is None:
                return self._closed(command, partial)
            self.transcript.append(("S", line))
            m = re.match(r"(\d{3})([ -]?)(.*)", line)
            if not m:
                raise SmtpError(f"malformed reply line to {command!r}: {line!r}")
            code = int(m.group(1))
            texts.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, "\n".join(texts))

    def raw(self, line):
        """Send one command line (CRLF added) and return its reply."""
        self.transcript.append(("C", _show(line)))
        r = self.send_raw(line.encode("utf-8") + b"\r\n", _show(line))
        if r is not None:          # closed, with closed_ok
            return r
        return self.read_reply(_show(line))

    # commands ----------------------------------------------------------
    def ehlo(self, name="client.example.test"):
        r = self.raw(f"EHLO {name}")
        if r.code == 250:
            self.features = {}
            for ln in r.lines[1:]:
                kw, _, param = ln.partition(" ")
                self.features[kw.upper()] = param
        return r

    def helo(self, name="client.example.test"):
        return self.raw(f"HELO {name}")

    def auth_plain(self, user, password, authzid=""):
        token = base64.b64encode(f"{authzid}\0{user}\0{password}".encode("utf-8")).decode("ascii")
        return self.raw(f"AUTH PLAIN {token}")

    def auth_login(self, user, password):
        r = self.raw("AUTH LOGIN")
        if r.code != 334:
            return r
        r = self.raw(base64.b64encode(user.encode("utf-8")).decode("ascii"))
        if r.code != 334:
            return r
        return self.raw(base64.b64encode(password.encode("utf-8")).decode("ascii"))

    def mail(self, addr, size=None, params=""):
        cmd = f"MAIL FROM:<{addr}>"
        if size is not None:
            cmd += f" SIZE={int(size)}"
        if params:
            cmd += f" {params}"
        return self.raw(cmd)

    def rcpt(self, addr, params=""):
        return self.raw(f"RCPT TO:<{addr}>" + (f" {params}" if params else ""))

    def data(self, body, normalize=True):
        """DATA, then the message; returns the reply after the final dot (or the DATA reply if it
        was not 354; that one is also kept in data_intermediate).

        normalize: turn every line ending into CRLF and dot-stuff.  With False the bytes go out
        as given, followed by CRLF.CRLF (for tests of bare LF and the like).
        """
        r = self.raw("DATA")
        self.data_intermediate = r
        if r.code != 354:
            return r
        if isinstance(body, str):
            body = body.encode("utf-8")
        if normalize:
            lines = re.split(rb"\r?\n", body)
            if lines and lines[-1] == b"":
                lines.pop()
            body = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
        elif not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.transcript.append(("C", f"<{len(body)} bytes of message>"))
        self.transcript.append(("C", "."))
        r = self.send_raw(body + b".\r\n", "<end of data>")
        if r is not None:
            return r
        return self.read_reply("<end of data>")

    def rset(self):
        return self.raw("RSET")

    def noop(self):
        return self.raw("NOOP")

    def quit(self):
        r = self.raw("QUIT")
        self.close()
        return r


# --------------------------------------------------------------------------

def build_message(sender, rcpts, body="This is a relayguard test message.\n", headers=None,
                  subject="rgtest"):
    """A small RFC 5322 message; headers (dict or list of pairs) replace or add header fields."""
    hdrs = [("From", f"<{sender}>" if sender else "<>"),
            ("To", ", ".join(f"<{r}>" for r in rcpts)),
            ("Subject", subject),
            ("Date", email.utils.formatdate(localtime=True)),
            ("Message-ID", email.utils.make_msgid(domain="client.example.test"))]
    extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in extra}
    hdrs = [(k, v) for k, v in hdrs if k.lower() not in names] + extra
    if isinstance(body, bytes):
        body = body.decode("utf-8", "surrogateescape")
    return "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n" + body


@dataclass
class SendResult:
    """Every reply of one send_message() session; a step not reached stays None."""
    greeting: Optional[Reply] = None
    ehlo: Optional[Reply] = None
    auth: Optional[Reply] = None
    mail: Optional[Reply] = None
    rcpts: List[Tuple[str, Reply]] = field(default_factory=list)
    data: Optional[Reply] = None       # reply after the final dot (or to DATA if not 354)
    quit: Optional[Reply] = None
    closed: Optional[str] = None      # set when the server closed the connection early
    #                                   (its 421 reply, or the ConnectionClosed message)
    transcript: List[Tuple[str, str]] = field(default_factory=list)

    def rcpt(self, addr):
        """Reply to the (first) RCPT for addr."""
        for a, r in self.rcpts:
            if a == addr:
                return r
        raise KeyError(addr)

    @property
    def accepted_rcpts(self):
        return [a for a, r in self.rcpts if 200 <= r.code < 300]

    @property
    def delivered(self):
        """True when the message was accepted after DATA."""
        return self.data is not None and self.data.code == 250

    def summary(self):
        return "\n".join(f"{'C:' if d == 'C' else 'S:'} {t}" for d, t in self.transcript)


def send_message(host, port, source="127.0.0.2", sender="sender@example.org",
                 rcpts=("user1@example.test",), body=None, headers=None, auth=None,
                 helo="client.example.test", size=None, message=None, timeout=20.0):
    """One complete SMTP transaction; returns a SendResult and never raises on SMTP refusals
    (only on connect failure or timeout).

    rcpts: a string or a list.  auth: (user, password) for AUTH PLAIN.  size: SIZE= on MAIL
    FROM (True: the real size).  message: a complete raw message instead of building one from
    body and headers.  DATA is only sent if at least one recipient was accepted.
    """
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    if message is None:
        message = build_message(sender, rcpts, **({"body": body} if body is not None else {}),
                                headers=headers)
    raw = message.encode("utf-8", "surrogateescape") if isinstance(message, str) else message
    if size is True:
        size = len(raw)
    res = SendResult()
    s = SmtpSession(host, port, source=source, timeout=timeout)
    res.greeting = s.greeting

    def gone(reply):
        # 421 announces that the server closes the connection: stop there, as a client must
        if reply.code == 421:
            res.closed = str(reply)
            return True
        return False

    try:
        try:
            if s.greeting.code != 220:
                if not gone(s.greeting):
                    res.quit = s.quit()
                return res
            res.ehlo = s.ehlo(helo)
            if gone(res.ehlo):
                return res
            if auth is not None:
                res.auth = s.auth_plain(*auth)
                if gone(res.auth):
                    return res
                if res.auth.code != 235:
                    res.quit = s.quit()
                    return res
            res.mail = s.mail(sender, size=size)
            if gone(res.mail):
                return res
            if res.mail.code == 250:
                for r in rcpts:
                    reply = s.rcpt(r)
                    res.rcpts.append((r, reply))
                    if gone(reply):
                        return res
                if res.accepted_rcpts:
                    res.data = s.data(raw)
                    if gone(res.data):
                        return res
            res.quit = s.quit()
        except ConnectionClosed as e:
            res.closed = str(e)
    finally:
        res.transcript = s.transcript
        s.close()
    return res
