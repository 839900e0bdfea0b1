"""A POP3 login from a chosen loopback source address (poplib cannot bind
one): what a mail user's client does before it sends, for POP-before-SMTP."""

import socket


def pop3_login(port, user, password, source, host="127.0.0.1", timeout=10.0):
    """True when the server accepted USER/PASS from `source`."""
    with socket.create_connection((host, port), timeout=timeout, source_address=(source, 0)) as s:
        f = s.makefile("rwb")

        def command(line):
            if line is not None:
                f.write(line.encode() + b"\r\n")
                f.flush()
            return f.readline().decode(errors="replace")

        if not command(None).startswith("+OK"):
            return False
        command(f"USER {user}")
        ok = command(f"PASS {password}").startswith("+OK")
        command("QUIT")
        return ok
