"""Certificates for the sandbox's TLS mode, made by ``trustme`` (an optional dependency).

Clients that accept only ``https`` base URLs (PagerDuty's own Python client among them) can
talk to the sandbox once they trust the generated certificate authority: pass its path as
``verify=`` (requests, httpx) or set ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    """A certificate authority, and a server certificate it signed, as PEM files."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def make_certificates(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> TlsFiles:
    """Write a fresh CA and a server certificate for ``hosts`` into ``directory``."""
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError("TLS for the sandbox needs the trustme package: pip install 'pdconnect[tls]'") from exc
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="pdconnect sandbox")
    server = ca.issue_cert(*hosts)
    files = TlsFiles(
        ca_path=directory / "sandbox-ca.pem",
        cert_path=directory / "sandbox-cert.pem",
        key_path=directory / "sandbox-key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_path))
    server.cert_chain_pems[0].write_to_path(str(files.cert_path))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert_path), append=True)
    server.private_key_pem.write_to_path(str(files.key_path))
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.cert_path), str(files.key_path))
    return context
