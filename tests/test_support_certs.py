"""Tests of tests/support/certs.py: real TLS handshakes on loopback with the trustme PKI."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import pytest

from tests.support.certs import CLIENT_IDENTITY, TestPKI
from tests.support.fixtures import _no_leaked_peer_processes, pki  # noqa: F401


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, host: str, server_hostname: str
) -> dict[str, Any]:
    """Run one TLS handshake over a real loopback socket; report both sides' outcome."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    result: dict[str, Any] = {}
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(10)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    result["peer_cert"] = tls.getpeercert()
                    tls.sendall(b"hi")
            except (ssl.SSLError, OSError) as exc:
                result["server_error"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection((host, port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                result["data"] = tls.recv(2)
        except (ssl.SSLError, OSError) as exc:
            result["client_error"] = exc
        finally:
            thread.join(timeout=10)
    return result


@pytest.mark.parametrize(
    ("host", "name"),
    [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "localhost"), ("::1", "::1")],
)
def test_server_cert_verifies_for_every_loopback_name(pki: TestPKI, host: str, name: str) -> None:  # noqa: F811
    result = _handshake(pki.server_context(), pki.client_context(), host, name)
    assert result.get("data") == b"hi", result


def test_wrong_hostname_is_rejected(pki: TestPKI) -> None:  # noqa: F811
    result = _handshake(pki.server_context(), pki.client_context(), "127.0.0.1", "example.com")
    assert isinstance(result.get("client_error"), ssl.SSLCertVerificationError)


def test_untrusting_client_fails_verification(pki: TestPKI) -> None:  # noqa: F811
    ctx = pki.untrusting_client_context()
    result = _handshake(pki.server_context(), ctx, "127.0.0.1", "127.0.0.1")
    assert isinstance(result.get("client_error"), ssl.SSLCertVerificationError)


def test_client_context_does_not_trust_system_roots(pki: TestPKI) -> None:  # noqa: F811
    ctx = pki.client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_mutual_tls_presents_client_identity(pki: TestPKI) -> None:  # noqa: F811
    result = _handshake(
        pki.server_context(require_client_cert=True),
        pki.client_context(with_client_cert=True),
        "127.0.0.1",
        "127.0.0.1",
    )
    assert result.get("data") == b"hi", result
    subject = dict(rdn[0] for rdn in result["peer_cert"]["subject"])
    assert subject["commonName"] == CLIENT_IDENTITY


def test_mutual_tls_without_client_cert_is_refused(pki: TestPKI) -> None:  # noqa: F811
    result = _handshake(
        pki.server_context(require_client_cert=True), pki.client_context(), "127.0.0.1", "127.0.0.1"
    )
    assert "server_error" in result
    assert "data" not in result


def test_pem_files_load_into_plain_ssl_contexts(pki: TestPKI) -> None:  # noqa: F811
    files = pki.files
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.server_cert, files.server_key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(files.ca_cert)
    client.load_cert_chain(files.client_cert, files.client_key)
    server.load_verify_locations(files.ca_cert)
    server.verify_mode = ssl.CERT_REQUIRED
    result = _handshake(server, client, "127.0.0.1", "localhost")
    assert result.get("data") == b"hi", result
    assert (files.server_key.stat().st_mode & 0o077) == 0
    assert files.other_ca_cert.read_bytes() != files.ca_cert.read_bytes()
