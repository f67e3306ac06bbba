"""Test PKI made with trustme: a CA, a loopback server certificate and a client certificate.

Certificates exist only for the test session: nothing is checked in, nothing touches the
system trust store.  The server certificate names ``127.0.0.1``, ``localhost`` and ``::1``
so TLS clients can verify it on any loopback address; the client certificate is for
mutual TLS (RFC 6455 section 10.5 leaves client authentication to the transport).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

#: The names the server certificate is valid for.
SERVER_IDENTITIES = ("127.0.0.1", "localhost", "::1")
#: The identity (common name and email SAN) of the client certificate.
CLIENT_IDENTITY = "client@zenws.test"


@dataclass(frozen=True, slots=True)
class PemFiles:
    """Paths of the PEM files written for peers that take file names (Node, proxies, CLIs)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A CA that signed nothing in this PKI, for "untrusted certificate" tests.
    other_ca_cert: Path


@dataclass(frozen=True, slots=True)
class TestPKI:
    """A session's certificate authority with its server and client certificates."""

    __test__ = False  # not a pytest test class despite the name

    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    other_ca: trustme.CA
    files: PemFiles

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server-side context presenting the loopback certificate.

        With ``require_client_cert`` the server demands a client certificate signed by the CA.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.configure_cert(ctx)
        if require_client_cert:
            self.ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self, *, with_client_cert: bool = False) -> ssl.SSLContext:
        """A client-side context that trusts only the test CA (hostname checking on).

        With ``with_client_cert`` it also presents the client certificate (mutual TLS).
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
        self.ca.configure_trust(ctx)
        if with_client_cert:
            self.client.configure_cert(ctx)
        return ctx

    def untrusting_client_context(self) -> ssl.SSLContext:
        """A client context that trusts a different CA: its handshakes must fail verification."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.other_ca.configure_trust(ctx)
        return ctx


def make_pki(directory: Path) -> TestPKI:
    """Create a CA, server and client certificates, and write their PEM files to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="zenws test CA")
    server = ca.issue_cert(*SERVER_IDENTITIES, common_name="localhost")
    client = ca.issue_cert(CLIENT_IDENTITY, common_name=CLIENT_IDENTITY)
    other_ca = trustme.CA(organization_name="zenws untrusted CA")

    files = PemFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca_cert=directory / "other-ca.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_cert))
    other_ca.cert_pem.write_to_path(str(files.other_ca_cert))
    _write_chain(server, files.server_cert)
    server.private_key_pem.write_to_path(str(files.server_key))
    _write_chain(client, files.client_cert)
    client.private_key_pem.write_to_path(str(files.client_key))
    for path in (files.server_key, files.client_key):
        path.chmod(0o600)
    return TestPKI(ca=ca, server=server, client=client, other_ca=other_ca, files=files)


def _write_chain(leaf: trustme.LeafCert, path: Path) -> None:
    """Write the leaf certificate followed by its chain (trustme's chain is just the leaf)."""
    path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
