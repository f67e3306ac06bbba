"""Tests of tests/support/proxy.py: a real proxy.py CONNECT proxy carrying WebSocket traffic."""

from __future__ import annotations

import socket

import pytest
from websockets.exceptions import InvalidProxyStatus

from tests.support.fixtures import (  # noqa: F401
    PROXY_CREDENTIALS,
    _no_leaked_peer_processes,
    authenticated_http_proxy,
    http_proxy,
    threaded_websockets_echo_server,
)
from tests.support.peers import ThreadedEchoServer, echo_roundtrip, run_websockets_client
from tests.support.proxy import HttpProxy


def _raw_connect(proxy: HttpProxy, target: str, extra: str = "") -> bytes:
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n".encode())
        return sock.recv(4096)


def test_websocket_goes_through_the_proxy(
    http_proxy: HttpProxy,  # noqa: F811
    threaded_websockets_echo_server: ThreadedEchoServer,  # noqa: F811
) -> None:
    server = threaded_websockets_echo_server
    assert http_proxy.connects() == []
    result = echo_roundtrip(server.url(), ["through", b"\x00proxy"], proxy=http_proxy.url)
    assert result["echoes"] == ["through", b"\x00proxy"]
    connects = http_proxy.connects(port=server.port)
    assert [(c.host, c.port, c.allowed) for c in connects] == [("127.0.0.1", server.port, True)]


def test_direct_connection_is_not_counted(
    http_proxy: HttpProxy,  # noqa: F811
    threaded_websockets_echo_server: ThreadedEchoServer,  # noqa: F811
) -> None:
    echo_roundtrip(threaded_websockets_echo_server.url(), ["direct"])
    assert http_proxy.requests() == []


def test_subprocess_client_through_proxy(
    http_proxy: HttpProxy,  # noqa: F811
    threaded_websockets_echo_server: ThreadedEchoServer,  # noqa: F811
) -> None:
    server = threaded_websockets_echo_server
    summary = run_websockets_client(server.url(), proxy=http_proxy.url)
    assert summary.ok, summary.run
    http_proxy.wait_for_connects(1, port=server.port)


def test_non_loopback_upstream_is_refused(http_proxy: HttpProxy) -> None:  # noqa: F811
    reply = _raw_connect(http_proxy, "example.com:443")
    assert reply.startswith(b"HTTP/1.1 403")
    assert [(r.host, r.allowed) for r in http_proxy.requests()] == [("example.com", False)]


def test_authenticated_proxy_demands_credentials(
    authenticated_http_proxy: HttpProxy,  # noqa: F811
    threaded_websockets_echo_server: ThreadedEchoServer,  # noqa: F811
) -> None:
    proxy = authenticated_http_proxy
    server = threaded_websockets_echo_server
    assert proxy.basic_auth == PROXY_CREDENTIALS
    assert _raw_connect(proxy, f"127.0.0.1:{server.port}").startswith(b"HTTP/1.1 407")
    with pytest.raises(InvalidProxyStatus):
        echo_roundtrip(server.url(), ["x"], proxy=proxy.url)
    result = echo_roundtrip(server.url(), ["authorized"], proxy=proxy.url_with_credentials)
    assert result["echoes"] == ["authorized"]
    assert proxy.authorization_header is not None
    reply = _raw_connect(
        proxy,
        f"127.0.0.1:{server.port}",
        f"Proxy-Authorization: {proxy.authorization_header}\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200")
