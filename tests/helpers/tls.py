"""A throwaway certificate authority (openssl) and server contexts signed by it."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThrowawayCA", "make_ca"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class ThrowawayCA:
    cert: Path  # the CA certificate (PEM): what a client is given with --ca-bundle
    server_cert: Path  # for 127.0.0.1 and localhost, signed by the CA
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def make_ca(where: Path) -> ThrowawayCA:
    """A CA and a server certificate it signed (SAN: IP 127.0.0.1, DNS localhost)."""
    where.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = where / "ca.key", where / "ca.pem"
    key, csr, cert = where / "server.key", where / "server.csr", where / "server.pem"
    ext = where / "server.ext"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-subj", "/CN=mirrorkit test CA", "-keyout", str(ca_key), "-out", str(ca_cert)),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
        *("-keyout", str(key), "-out", str(csr)),
    )
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key)),
        *("-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)),
    )
    return ThrowawayCA(ca_cert, cert, key)
