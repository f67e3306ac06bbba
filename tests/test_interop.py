"""Interop with WebSocket implementations nobody here wrote, in both directions.

Server side: the zenws server of every adapter (the harness command handler: anything that
is not a ``!`` command is echoed) answers three outside clients: the Python ``websockets``
library, Node's ``ws`` package (installed from npm into ``.cache/`` by the test setup) and
Node's built-in WebSocket (``node --experimental-websocket`` on Node 20).  Client side: the
zenws client of every adapter talks to ``websockets`` and ``ws`` echo servers.  Each run
checks the bytes of every echoed message, the negotiated subprotocol and permessage-deflate,
TLS against the test CA, request headers and the close code and reason seen by the other
end.  All traffic stays on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.adapters.harness import ADAPTERS, ClientHandle, Harness, ServerHandle
from tests.support.certs import TestPKI
from tests.support.echo import ClientOptions, ClientSummary, EchoServer, plan
from tests.support.node import run_node_client
from tests.support.peers import run_websockets_client
from zenws_core import (
    Connected,
    ConnectionConfig,
    DeflateConfig,
    Disconnected,
    HeartbeatConfig,
    ReconnectConfig,
)

MiB = 1024 * 1024

#: A plan that crosses the 7-bit, 16-bit and 64-bit length encodings, with multi-byte UTF-8.
PLAN = (("text", 0), ("text", 125), ("utf8", 126), ("binary", 65535), ("binary", 70_000))
COMPRESSIBLE = (("text", 20_000), ("binary", 4096), ("text", 10))

#: Outside clients: name -> how to run one against a URL.
PEER_CLIENTS: dict[str, Callable[[str, ClientOptions], ClientSummary]] = {
    "websockets": run_websockets_client,
    "node-ws": lambda url, options: run_node_client(url, options),
    "node-native": lambda url, options: run_node_client(url, options, native=True),
}
PEER_SERVERS = ("websockets", "node-ws")

SERVER_OPTIONS: dict[str, Any] = {
    "subprotocols": ("zenws.v2", "chat"),
    "connection": ConnectionConfig(max_message_size=4 * MiB, compression=DeflateConfig()),
}
CLIENT_OPTIONS: dict[str, Any] = {
    "reconnect": ReconnectConfig(enabled=False),
    "heartbeat": HeartbeatConfig(interval=None),
}


def load(name: str) -> Harness:
    import importlib

    harness: Harness = importlib.import_module(f"tests.adapters.harness_{name}").HARNESS
    return harness


@pytest.fixture(params=ADAPTERS)
def zenws(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The zenws side of a test, on every adapter."""
    harness = load(request.param)
    yield harness
    harness.close_all()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` (bounded); fail the test if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)


def closes(server: ServerHandle, count: int) -> list[tuple[int | None, str]]:
    wait_until(lambda: len(server.record.closes) >= count)
    return list(server.record.closes)


def check_summary(summary: ClientSummary, messages: int) -> None:
    assert summary.error is None, summary.run
    assert summary.ok, summary.run
    assert summary.mismatches == ()
    assert (summary.sent, summary.echoed) == (messages, messages)


# ----------------------------------------------------------------- outside clients, zenws server


@pytest.mark.parametrize("peer", sorted(PEER_CLIENTS))
def test_peer_client_to_zenws_server(zenws: Harness, peer: str) -> None:
    server = zenws.start_server(**SERVER_OPTIONS)
    options = ClientOptions(
        sends=PLAN,
        repeat=2,
        subprotocols=("chat",),
        close_code=4001,
        close_reason="peer done ✓",
    )
    summary = PEER_CLIENTS[peer](server.url, options)
    check_summary(summary, 2 * len(PLAN))
    assert summary.subprotocol == "chat"
    assert summary.close_code == 4001
    assert closes(server, 1) == [(4001, "peer done ✓")]
    assert server.record.messages == plan(PLAN, 2)
    assert server.record.requests[0]["subprotocol"] == "chat"


@pytest.mark.parametrize("peer", ["websockets", "node-ws"])
def test_peer_client_to_zenws_server_deflate_and_headers(zenws: Harness, peer: str) -> None:
    server = zenws.start_server(**SERVER_OPTIONS)
    options = ClientOptions(
        sends=COMPRESSIBLE, repeat=3, deflate=True, headers=(("X-Interop", peer),)
    )
    summary = PEER_CLIENTS[peer](server.url, options)
    check_summary(summary, 3 * len(COMPRESSIBLE))
    assert summary.extensions.startswith("permessage-deflate")
    assert summary.close_code == 1000
    assert server.record.requests[0]["headers"]["x-interop"] == peer
    assert closes(server, 1) == [(1000, "done")]


@pytest.mark.parametrize("peer", sorted(PEER_CLIENTS))
def test_peer_client_to_zenws_server_over_tls(zenws: Harness, peer: str, pki: TestPKI) -> None:
    server = zenws.start_server(ssl=pki.server_context(), **SERVER_OPTIONS)
    assert server.url.startswith("wss://127.0.0.1:")
    options = ClientOptions(sends=PLAN, ca_file=pki.files.ca_cert)
    summary = PEER_CLIENTS[peer](server.url, options)
    check_summary(summary, len(PLAN))
    assert closes(server, 1) == [(1000, "done")]


# ----------------------------------------------------------------- zenws client, outside servers


def _echo_through(client: ClientHandle, messages: list[str | bytes]) -> None:
    for message in messages:
        if isinstance(message, str):
            client.send_text(message)
        else:
            client.send_bytes(message)
        assert client.recv(timeout=20) == message


@pytest.mark.parametrize("peer", PEER_SERVERS)
def test_zenws_client_to_peer_server(
    zenws: Harness, peer: str, echo_server_factory: Callable[..., EchoServer]
) -> None:
    server = echo_server_factory(peer, subprotocols=("chat",))
    client = zenws.connect(
        server.url("/interop?x=1"),
        subprotocols=("zenws.v2", "chat"),
        headers={"X-Interop": "zenws"},
        **CLIENT_OPTIONS,
    )
    assert client.subprotocol == "chat"
    _echo_through(client, plan(PLAN, 2))
    client.close(4002, "zenws done ✓")
    assert server.wait_for_closes(1) == [{"code": 4002, "reason": "zenws done ✓"}]
    request = server.requests()[0]
    assert request["path"] == "/interop?x=1"
    assert request["headers"]["x-interop"] == "zenws"
    assert request["subprotocol"] == "chat"


@pytest.mark.parametrize("peer", PEER_SERVERS)
def test_zenws_client_to_peer_server_deflate(
    zenws: Harness, peer: str, echo_server_factory: Callable[..., EchoServer]
) -> None:
    server = echo_server_factory(peer, deflate=True)
    client = zenws.connect(
        server.url(),
        connection=ConnectionConfig(compression=DeflateConfig()),
        **CLIENT_OPTIONS,
    )
    _echo_through(client, plan(COMPRESSIBLE, 3))
    client.close()
    assert server.wait_for_closes(1) == [{"code": 1000, "reason": ""}]
    extensions = server.requests()[0]["extensions"]
    assert "permessage-deflate" in str(extensions)
    connected = [e for e in client.events() if isinstance(e, Connected)]
    assert len(connected) == 1
    assert connected[0].extensions[0].startswith("permessage-deflate")


@pytest.mark.parametrize("peer", PEER_SERVERS)
def test_zenws_client_to_peer_server_over_tls(
    zenws: Harness, peer: str, pki: TestPKI, echo_server_factory: Callable[..., EchoServer]
) -> None:
    server = echo_server_factory(peer, pki=pki)
    client = zenws.connect(server.url(host="localhost"), ssl=pki.client_context(), **CLIENT_OPTIONS)
    _echo_through(client, plan(PLAN))
    client.close()
    assert server.wait_for_closes(1) == [{"code": 1000, "reason": ""}]


@pytest.mark.parametrize("peer", PEER_SERVERS)
def test_peer_server_closes_the_zenws_client(
    zenws: Harness, peer: str, echo_server_factory: Callable[..., EchoServer]
) -> None:
    server = echo_server_factory(peer)
    client = zenws.connect(server.url(), **CLIENT_OPTIONS)
    client.send_text("__close__ 4003 server says bye")
    event = client.wait_for(lambda e: isinstance(e, Disconnected), timeout=10)
    assert isinstance(event, Disconnected)
    assert (event.code, event.reason, event.clean) == (4003, "server says bye", True)
    # The blocking client does I/O only inside calls: close() lets it see the server's EOF.
    client.close()
    assert server.wait_for_closes(1)[0]["code"] == 4003
