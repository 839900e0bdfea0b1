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


class PostLoginHook:
    """Dovecot's post-login hook wired to a relayguard admin socket, as an admin sets it up
    with contrib/dovecot/relayguard-postlogin.sh: the hook runs as user dovecot, so the ctl,
    the script and the socket live in a directory that user can reach (self.dir, removed by
    close()). self.script is the snippet for DovecotInstance(postlogin_script=...)."""

    def __init__(self, prefix="rgtest-hook-"):
        import os
        import shutil
        import tempfile
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, 0o755)
        self.ctl = os.path.join(self.dir, "relayguardctl")
        shutil.copy(os.environ["RELAYGUARDCTL"], self.ctl)
        hook = os.path.join(self.dir, "relayguard-postlogin.sh")
        shutil.copy(os.path.join(os.environ["RELAYGUARD_SOURCE_DIR"], "contrib/dovecot/relayguard-postlogin.sh"), hook)
        self.socket_path = os.path.join(self.dir, "admin.sock")
        self.script = (f"RELAYGUARDCTL={self.ctl}\nRELAYGUARD_ADMIN_SOCKET={self.socket_path}\n"
                       "export RELAYGUARDCTL RELAYGUARD_ADMIN_SOCKET\n"
                       f". {hook}\n")

    def close(self):
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)
