"""A private OAuth2 identity provider on loopback, for the relay client's XOAUTH2 and
OAUTHBEARER tests: what Microsoft's or Google's token service does, small enough to read.

    with IdentityProvider(cert, key) as idp:        # rgtest.tls.make_test_cert for the pair
        idp.token_url, idp.device_url               # https (the relay client's side)
        idp.introspect_url                          # plain http on loopback (Dovecot's side)
        refresh = idp.issue_refresh_token("relay@example.test")
        idp.approve(user_code)                      # the admin approving a device login
        idp.revoke(refresh)

HTTPS (the given certificate, which is its own CA) serves:
  POST /token   grant_type=refresh_token | client_credentials |
                urn:ietf:params:oauth:grant-type:device_code (RFC 6749, RFC 8628)
  POST /device  a device code and a user code for client_id and scope
Plain HTTP serves POST /introspect (RFC 7662: token=...; {"active": bool, "username": ...}),
which is how Dovecot's oauth2 passdb (introspection_mode = post) asks.

Tokens: access tokens live `access_lifetime` seconds by the provider's own clock (an expired
one introspects inactive), and expires_in says so truthfully.  With rotate=True, every
refresh issues a new refresh token and voids the one used (as Microsoft may).
hostile: None, or one of "huge", "bad_json", "missing_fields", "slow_drip", "html" — how
/token misbehaves instead of answering.
requests: every /token and /device request as (path, form dict) — tests count refreshes.
"""

import http.server
import json
import os
import secrets
import ssl
import threading
import time
import urllib.parse

from .fixtures import free_port

__all__ = ["IdentityProvider"]

LOOPBACK = "127.0.0.1"


class IdentityProvider:
    def __init__(self, cert, key, client_id="relayguard-test", client_secret=None, access_lifetime=3600,
                 rotate=False, device_interval=1):
        self.cert, self.key = cert, key
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_lifetime = access_lifetime
        self.rotate = rotate
        self.device_interval = device_interval
        self.hostile = None
        self.lock = threading.Lock()
        self.refresh_tokens = {}   # token -> account
        self.access_tokens = {}    # token -> (account, expires monotonic)
        self.devices = {}          # device_code -> {"user_code", "scope", "approved_for", "denied"}
        self.requests = []
        self.issued = []           # every token ever handed out: none may reach a log
        self.https_port = free_port()
        self.http_port = free_port()
        self._servers = []

    # --- URLs -------------------------------------------------------------------------
    @property
    def token_url(self):
        return f"https://{LOOPBACK}:{self.https_port}/token"

    @property
    def device_url(self):
        return f"https://{LOOPBACK}:{self.https_port}/device"

    @property
    def introspect_url(self):
        return f"http://{LOOPBACK}:{self.http_port}/introspect"

    # --- what a test does -------------------------------------------------------------
    def issue_refresh_token(self, account):
        token = "rt-" + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[token] = account
            self.issued.append(token)
        return token

    def revoke(self, refresh_token=None):
        """Voids one refresh token, or all of them (and every access token with them)."""
        with self.lock:
            if refresh_token is None:
                self.refresh_tokens.clear()
            else:
                self.refresh_tokens.pop(refresh_token, None)
            self.access_tokens.clear()

    def expire_access_tokens(self):
        with self.lock:
            self.access_tokens.clear()

    def approve(self, user_code, account):
        with self.lock:
            for d in self.devices.values():
                if d["user_code"] == user_code:
                    d["approved_for"] = account
                    return True
        return False

    def grants(self, grant_type):
        """How many /token requests asked for this grant."""
        with self.lock:
            return sum(1 for path, form in self.requests
                       if path == "/token" and form.get("grant_type") == grant_type)

    def write_store(self, path, account, refresh_token):
        """A token store as the relay client writes it, holding only a refresh token,
        last used now (so the relay client's idle refresh is not due)."""
        with open(path, "w") as f:
            json.dump({"account": account, "refresh_token": refresh_token,
                       "refreshed_at": int(time.time() * 1000)}, f)
        os.chmod(path, 0o600)

    def dovecot_conf(self, directory, mechanisms="oauthbearer xoauth2", introspect_url=None):
        """Dovecot settings (DovecotInstance extra_conf) that check bearer tokens here
        (or at introspect_url: a dead one makes a smart host that refuses every token)."""
        ext = os.path.join(directory, f"dovecot-oauth2-{secrets.token_hex(4)}.conf.ext")
        with open(ext, "w") as f:
            f.write(f"introspection_mode = post\nintrospection_url = {introspect_url or self.introspect_url}\n"
                    "username_attribute = username\nactive_attribute = active\nactive_value = true\n")
        return (f"auth_mechanisms = plain login {mechanisms}\n"
                f"passdb {{\n  driver = oauth2\n  mechanisms = {mechanisms}\n  args = {ext}\n}}\n")

    def valid_refresh_tokens(self):
        with self.lock:
            return set(self.refresh_tokens)

    # --- the server -------------------------------------------------------------------
    def _grant(self, account, scope, with_refresh):
        access = "at-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = (account, time.monotonic() + self.access_lifetime)
        self.issued.append(access)
        body = {"token_type": "Bearer", "access_token": access, "expires_in": self.access_lifetime,
                "scope": scope}
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = account
            self.issued.append(refresh)
            body["refresh_token"] = refresh
        return 200, body

    def _token(self, form):
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        if self.client_secret is not None and form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "bad secret"}
        grant = form.get("grant_type")
        scope = form.get("scope", "smtp")
        with self.lock:
            if grant == "refresh_token":
                old = form.get("refresh_token", "")
                account = self.refresh_tokens.get(old)
                if account is None:
                    return 400, {"error": "invalid_grant", "error_description": "the refresh token is revoked or unknown"}
                if self.rotate:
                    del self.refresh_tokens[old]
                return self._grant(account, scope, self.rotate)
            if grant == "client_credentials":
                if self.client_secret is None:
                    return 400, {"error": "unauthorized_client"}
                return self._grant("app:" + self.client_id, scope, False)
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                d = self.devices.get(form.get("device_code", ""))
                if d is None:
                    return 400, {"error": "invalid_grant"}
                if d["approved_for"] is None:
                    return 400, {"error": "authorization_pending"}
                del self.devices[form["device_code"]]
                return self._grant(d["approved_for"], d["scope"], True)
        return 400, {"error": "unsupported_grant_type"}

    def _device(self, form):
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        device_code = "dc-" + secrets.token_urlsafe(16)
        user_code = secrets.token_hex(2).upper() + "-" + secrets.token_hex(2).upper()
        with self.lock:
            self.devices[device_code] = {"user_code": user_code, "scope": form.get("scope", ""),
                                         "approved_for": None}
        return 200, {"device_code": device_code, "user_code": user_code,
                     "verification_uri": f"https://{LOOPBACK}:{self.https_port}/activate",
                     "expires_in": 300, "interval": self.device_interval}

    def _introspect(self, form):
        with self.lock:
            entry = self.access_tokens.get(form.get("token", ""))
        if entry is None or entry[1] < time.monotonic():
            return 200, {"active": False}
        return 200, {"active": True, "username": entry[0]}

    def _handler(self):
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body, content_type="application/json"):
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client hung up on an answer it would not take
                    self.close_connection = True

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                path = self.path.split("?")[0]
                if path in ("/token", "/device"):
                    with idp.lock:
                        idp.requests.append((path, form))
                if path == "/token" and idp.hostile:
                    return self._misbehave(idp.hostile)
                handlers = {"/token": idp._token, "/device": idp._device, "/introspect": idp._introspect}
                if path not in handlers:
                    return self._send(404, {"error": "not_found"})
                status, body = handlers[path](form)
                self._send(status, body)

            def _misbehave(self, how):
                if how == "huge":
                    # A well-formed start, then far more than any token answer holds.
                    body = b'{"token_type":"Bearer","access_token":"' + b"A" * (2 << 20) + b'"}'
                    return self._send(200, body)
                if how == "bad_json":
                    return self._send(200, b'{"token_type":"Bearer","access_token":')
                if how == "missing_fields":
                    return self._send(200, {"token_type": "Bearer", "expires_in": 3600})
                if how == "html":
                    return self._send(200, b"<html><body>Service unavailable</body></html>", "text/html")
                if how == "slow_drip":
                    body = b'{"token_type":"Bearer","access_token":"' + b"A" * 64 + b'"}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    try:
                        for i in range(len(body)):
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(0.5)
                    except OSError:
                        pass
                    return None
                raise ValueError(how)

        return Handler

    def __enter__(self):
        handler = self._handler()
        https = http.server.ThreadingHTTPServer((LOOPBACK, self.https_port), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        https.socket = ctx.wrap_socket(https.socket, server_side=True)
        plain = http.server.ThreadingHTTPServer((LOOPBACK, self.http_port), handler)
        for server in (https, plain):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def __exit__(self, *exc):
        for server in self._servers:
            server.shutdown()
            server.server_close()
        return False
