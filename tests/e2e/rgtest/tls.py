"""Test certificates for the end-to-end tests (openssl command line, no Python packages).

make_test_cert() writes a self-signed certificate and its key, e.g. for a private Postfix
that offers STARTTLS (rgtest.smarthost).  A client that verifies certificates can trust
the certificate file itself as its CA file: it is self-signed and carries CA:TRUE.
"""

import os
import subprocess

__all__ = ["make_test_cert", "cert_fingerprint"]


def make_test_cert(directory, common_name="smarthost.test", days=1, key_type="rsa:2048", ips=("127.0.0.1",)):
    """Create <directory>/<common_name>.crt and .key (PEM), self-signed, valid for `days`,
    with subjectAltName DNS:<common_name> and IP:<each of ips>.  Returns (cert_path, key_path).

    The key file is mode 0600 (root-owned when run as root): Postfix's smtpd and Dovecot
    read keys before they drop privileges.
    """
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, f"{common_name}.crt")
    key = os.path.join(directory, f"{common_name}.key")
    argv = ["openssl", "req", "-x509", "-newkey", key_type, "-nodes",
            "-keyout", key, "-out", cert, "-days", str(days),
            "-subj", f"/CN={common_name}",
            "-addext", f"subjectAltName=DNS:{common_name}," + ",".join(f"IP:{ip}" for ip in ips),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-addext", "extendedKeyUsage=serverAuth"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl req failed ({p.returncode}):\n{p.stdout}")
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return cert, key


def cert_fingerprint(cert_path, digest="sha256"):
    """The certificate's fingerprint as 'AA:BB:...' (what Postfix logs and pins)."""
    p = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-fingerprint",
                        f"-{digest}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30, check=True)
    return p.stdout.strip().split("=", 1)[1]
