"""Pytest fixtures over ``tests.support``.

Enable them with ``pytest_plugins = ["tests.support.fixtures"]`` in ``tests/conftest.py``.

Certificates are made once per session; proxies and peer servers are started per test
and always stopped after it.  An autouse check fails any test that leaves a peer process
(started through ``tests.support.procs``) running.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from .certs import TestPKI, make_pki
from .echo import EchoServer
from .node import ensure_node_peers, start_node_echo_server
from .peers import ThreadedEchoServer, start_websockets_echo_server, threaded_echo_server
from .procs import live_processes, reap_all
from .proxy import HttpProxy, start_http_proxy

#: Credentials of the ``authenticated_http_proxy`` fixture.
PROXY_CREDENTIALS = ("zenws", "s3cret")

#: The echo-server implementations ``echo_server_factory`` can start.
ECHO_SERVERS: dict[str, Callable[..., Any]] = {
    "node-ws": start_node_echo_server,
    "websockets": start_websockets_echo_server,
}


@pytest.fixture(autouse=True)
def _no_leaked_peer_processes() -> Iterator[None]:
    """Fail the test (at teardown) if a peer process it started is still running."""
    yield
    leaked = live_processes()
    if leaked:
        reap_all()
        pytest.fail(f"test leaked peer processes {leaked} (now killed)")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The session's trustme CA with loopback server and client certificates (PEM files too)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server_ssl_context(pki: TestPKI) -> ssl.SSLContext:
    """Server context presenting the certificate for 127.0.0.1 / localhost / ::1."""
    return pki.server_context()


@pytest.fixture
def client_ssl_context(pki: TestPKI) -> ssl.SSLContext:
    """Client context trusting only the test CA."""
    return pki.client_context()


@pytest.fixture
def mtls_server_ssl_context(pki: TestPKI) -> ssl.SSLContext:
    """Server context that requires a client certificate signed by the test CA."""
    return pki.server_context(require_client_cert=True)


@pytest.fixture
def mtls_client_ssl_context(pki: TestPKI) -> ssl.SSLContext:
    """Client context trusting the test CA and presenting the client certificate."""
    return pki.client_context(with_client_cert=True)


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[HttpProxy]:
    """A fresh proxy.py CONNECT proxy on 127.0.0.1 with an empty request log."""
    with start_http_proxy(tmp_path / "proxy") as proxy:
        yield proxy


@pytest.fixture
def authenticated_http_proxy(tmp_path: Path) -> Iterator[HttpProxy]:
    """A CONNECT proxy that answers 407 unless given ``PROXY_CREDENTIALS`` (Basic)."""
    with start_http_proxy(tmp_path / "auth-proxy", basic_auth=PROXY_CREDENTIALS) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def node_peers() -> Path:
    """The ``node_modules`` folder with ``ws`` (installed from npm on first use)."""
    return ensure_node_peers()


@pytest.fixture
def node_echo_server(node_peers: Path) -> Iterator[EchoServer]:
    """The Node ``ws`` echo server on ``ws://127.0.0.1:<port>`` (no deflate, no subprotocols)."""
    with start_node_echo_server() as server:
        yield server


@pytest.fixture
def websockets_echo_server() -> Iterator[EchoServer]:
    """The Python ``websockets`` echo server in a subprocess on ``ws://127.0.0.1:<port>``."""
    with start_websockets_echo_server() as server:
        yield server


@pytest.fixture
def threaded_websockets_echo_server() -> Iterator[ThreadedEchoServer]:
    """An in-process ``websockets`` echo server on a background thread."""
    with threaded_echo_server() as server:
        yield server


@pytest.fixture
def echo_server_factory() -> Iterator[Callable[..., EchoServer]]:
    """``start(implementation, **options) -> EchoServer``; every server stops after the test.

    ``implementation`` is a key of ``ECHO_SERVERS``; options are those of
    ``start_node_echo_server`` (``deflate``, ``subprotocols``, ``pki``, ``require_client_cert``).
    """
    with ExitStack() as stack:

        def start(implementation: str, **options: Any) -> EchoServer:
            server: EchoServer = stack.enter_context(ECHO_SERVERS[implementation](**options))
            return server

        yield start
