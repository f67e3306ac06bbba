"""One scenario suite, run on every adapter as client and as server.

A feature that exists on one runtime and not another fails here.  Client-side
scenarios run each client adapter against the asyncio server; server-side scenarios
run each server adapter against the asyncio client; the echo matrix crosses all four
with all four.  Real sockets on 127.0.0.1, real TLS (trustme certificates).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.adapters.harness import ADAPTERS, ClientHandle, Harness
from tests.support.certs import TestPKI
from tests.support.proxy import HttpProxy
from zenws_core import (
    ClientState,
    Connected,
    ConnectionConfig,
    DeflateConfig,
    Disconnected,
    FailureKind,
    GaveUp,
    HeartbeatConfig,
    MessagesPossiblyLost,
    ReconnectConfig,
    ReconnectScheduled,
    TLSConfig,
)
from zenws_core._handshake import accept_token

MiB = 1024 * 1024

# Fast, deterministic reconnection for tests: fixed small delays, no jitter.
FAST_RECONNECT = {"delays": [0.05] * 200}


def load(name: str) -> Harness:
    import importlib

    module = importlib.import_module(f"tests.adapters.harness_{name}")
    harness: Harness = module.HARNESS
    return harness


@pytest.fixture(params=ADAPTERS)
def client_side(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = load(request.param)
    yield harness
    harness.close_all()


@pytest.fixture(params=ADAPTERS)
def server_side(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = load(request.param)
    yield harness
    harness.close_all()


@pytest.fixture
def reference() -> Iterator[Harness]:
    """The asyncio adapter, the fixed peer of one-sided scenarios."""
    harness = load("asyncio")
    yield harness
    harness.close_all()


def payload(size: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(size))


def text_payload(size: int) -> str:
    base = "zenws é ✓ "  # multi-byte characters on purpose
    return (base * (size // len(base) + 1))[:size]


# ------------------------------------------------------------------ echo matrix


@pytest.mark.parametrize("server_name", ADAPTERS)
def test_echo_matrix(client_side: Harness, server_name: str) -> None:
    """Every client adapter talks to every server adapter."""
    server_harness = load(server_name)
    try:
        server = server_harness.start_server()
        client = client_side.connect(server.url, **FAST_RECONNECT)
        client.send_text("hello")
        assert client.recv() == "hello"
        client.send_bytes(b"\x00\x01\xff")
        assert client.recv() == b"\x00\x01\xff"
        client.send_json({"k": [1, 2]})
        assert json.loads(client.recv()) == {"k": [1, 2]}
        client.close()
        server.stop()
    finally:
        server_harness.close_all()


# ------------------------------------------------------------------ client-side scenarios


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, MiB - 64])
def test_client_echo_sizes(client_side: Harness, reference: Harness, size: int) -> None:
    server = reference.start_server()
    client = client_side.connect(server.url, **FAST_RECONNECT)
    client.send_bytes(payload(size))
    assert client.recv() == payload(size)
    text = text_payload(size // 2)
    client.send_text(text)
    assert client.recv() == text
    client.close()


def test_client_16_mib_with_raised_limit(client_side: Harness, reference: Harness) -> None:
    big = ConnectionConfig(max_message_size=32 * MiB)
    server = reference.start_server(connection=big)
    client = client_side.connect(server.url, connection=big, **FAST_RECONNECT)
    data = payload(16 * MiB)
    client.send_bytes(data)
    assert client.recv(timeout=60) == data
    client.close()


def test_client_fragmented_messages(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    client = client_side.connect(
        server.url, connection=ConnectionConfig(fragment_size=1000), **FAST_RECONNECT
    )
    data = payload(10_500)
    client.send_bytes(data)
    assert client.recv() == data
    client.close()


def test_client_ping_round_trip(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    client = client_side.connect(server.url, **FAST_RECONNECT)
    rtt = client.ping()
    assert 0.0 <= rtt < 10.0
    assert client.stats().round_trip.count >= 0
    client.close()


def test_client_close_code_reaches_server(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    client = client_side.connect(server.url, **FAST_RECONNECT)
    client.send_text("x")
    assert client.recv() == "x"
    client.close(4001, "done here")
    assert client.state is ClientState.CLOSED
    server.stop()
    assert (4001, "done here") in server.record.closes


def test_server_close_code_reaches_client(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    client = client_side.connect(server.url, reconnect=ReconnectConfig(enabled=False))
    client.send_text("!close 4002 go away")
    event = client.wait_for(lambda e: isinstance(e, Disconnected))
    assert isinstance(event, Disconnected)
    assert (event.code, event.reason) == (4002, "go away")
    assert event.clean
    client.wait_for(lambda e: isinstance(e, GaveUp))


def test_client_reconnects_and_delivers_queued_in_order(
    client_side: Harness, reference: Harness
) -> None:
    server = reference.start_server()
    port = server.port
    client = client_side.connect(server.url, **FAST_RECONNECT)
    client.send_text("before")
    assert client.recv() == "before"
    server.stop()
    client.wait_for(lambda e: isinstance(e, ReconnectScheduled))
    for i in range(20):
        client.send_text(f"m{i}")
    assert client.stats().queue_depth == 20
    server = reference.start_server(port=port)
    got = [client.recv(timeout=20) for _ in range(20)]
    assert got == [f"m{i}" for i in range(20)]
    connected = [e for e in client.events() if isinstance(e, Connected)]
    assert len(connected) >= 2
    client.close()


def _silent_websocket_server() -> tuple[socket.socket, threading.Thread, list[socket.socket]]:
    """Completes the opening handshake, then never sends a byte (a hung peer)."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def run() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            key = ""
            for line in request.decode("latin-1").split("\r\n"):
                if line.lower().startswith("sec-websocket-key:"):
                    key = line.split(":", 1)[1].strip()
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_token(key).encode()
                + b"\r\n\r\n"
            )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread, conns


def test_client_detects_silent_peer_with_heartbeat(client_side: Harness) -> None:
    listener, _thread, conns = _silent_websocket_server()
    try:
        port = listener.getsockname()[1]
        client = client_side.connect(
            f"ws://127.0.0.1:{port}/",
            heartbeat=HeartbeatConfig(interval=0.2, timeout=0.3, late_tolerance=5.0),
            reconnect=ReconnectConfig(enabled=False),
        )
        event = client.wait_for(lambda e: isinstance(e, Disconnected), timeout=15)
        assert isinstance(event, Disconnected)
        assert event.failure.kind is FailureKind.HEARTBEAT_TIMEOUT
    finally:
        listener.close()
        for conn in conns:
            conn.close()


def test_client_oversized_message_closes_1009(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    client = client_side.connect(
        server.url,
        connection=ConnectionConfig(max_message_size=1000),
        reconnect=ReconnectConfig(enabled=False),
    )
    client.send_text("!send 1 5000")
    event = client.wait_for(lambda e: isinstance(e, Disconnected))
    assert isinstance(event, Disconnected)
    assert event.code == 1009


def test_server_oversized_message_closes_1009(server_side: Harness, reference: Harness) -> None:
    server = server_side.start_server(connection=ConnectionConfig(max_message_size=1000))
    client = reference.connect(server.url, reconnect=ReconnectConfig(enabled=False))
    client.send_bytes(payload(5000))
    event = client.wait_for(lambda e: isinstance(e, Disconnected))
    assert isinstance(event, Disconnected)
    assert event.code == 1009


def test_authorization_header_reaches_server(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    client = client_side.connect(
        server.url + "feed?x=1", headers={"Authorization": "Bearer s3cret"}, **FAST_RECONNECT
    )
    client.send_text("!info")
    info = json.loads(client.recv())
    assert info["headers"]["authorization"] == "Bearer s3cret"
    assert info["path"] == "/feed"
    client.close()


def test_401_gives_up_and_503_retries(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server(reject_status=401)
    client = client_side.connect(server.url, wait_open=False, **FAST_RECONNECT)
    gave_up = client.wait_for(lambda e: isinstance(e, GaveUp))
    assert isinstance(gave_up, GaveUp)
    assert gave_up.failure.status == 401
    server.stop()

    server = reference.start_server(reject_status=503)
    client = client_side.connect(server.url, wait_open=False, **FAST_RECONNECT)
    client.wait_for(lambda e: isinstance(e, ReconnectScheduled) and e.attempt >= 2, timeout=15)
    assert not any(isinstance(e, GaveUp) for e in client.events())
    client.close()


def test_subprotocol_negotiation(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server(subprotocols=("chat.v2", "chat.v1"))
    client = client_side.connect(server.url, subprotocols=("chat.v1",), **FAST_RECONNECT)
    assert client.subprotocol == "chat.v1"
    client.close()


def test_compression(client_side: Harness, reference: Harness) -> None:
    deflate = ConnectionConfig(compression=DeflateConfig())
    server = reference.start_server(connection=deflate)
    client = client_side.connect(server.url, connection=deflate, **FAST_RECONNECT)
    connected = client.wait_for(lambda e: isinstance(e, Connected))
    assert isinstance(connected, Connected)
    assert any("permessage-deflate" in ext for ext in connected.extensions)
    text = "compress me " * 10_000
    client.send_text(text)
    assert client.recv() == text
    client.close()


def test_tls(client_side: Harness, reference: Harness, pki: TestPKI) -> None:
    server = reference.start_server(ssl=pki.server_context())
    assert server.url.startswith("wss://")
    client = client_side.connect(
        server.url, tls=TLSConfig(ca_file=str(pki.files.ca_cert)), **FAST_RECONNECT
    )
    client.send_text("secure")
    assert client.recv() == "secure"
    client.close()


def test_tls_untrusted_certificate_gives_up(
    client_side: Harness, reference: Harness, pki: TestPKI
) -> None:
    server = reference.start_server(ssl=pki.server_context())
    client = client_side.connect(
        server.url,
        tls=TLSConfig(ca_file=str(pki.files.other_ca_cert)),
        wait_open=False,
        **FAST_RECONNECT,
    )
    gave_up = client.wait_for(lambda e: isinstance(e, GaveUp))
    assert isinstance(gave_up, GaveUp)
    assert gave_up.failure.kind is FailureKind.TLS_ERROR


def test_through_http_connect_proxy(
    client_side: Harness, reference: Harness, http_proxy: HttpProxy
) -> None:
    server = reference.start_server()
    client = client_side.connect(server.url, proxy=http_proxy.url, **FAST_RECONNECT)
    client.send_text("via proxy")
    assert client.recv() == "via proxy"
    client.close()
    assert http_proxy.connects(port=server.port)


def test_request_reply(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    client = client_side.connect(server.url, **FAST_RECONNECT)
    reply = client.request("sum", {"a": 1}, timeout=5)  # the echo server replies with the same id
    assert reply.type == "sum"
    assert reply.data == {"a": 1}
    client.close()


def test_pong_confirms_sent_messages(client_side: Harness, reference: Harness) -> None:
    """A pong proves the peer read what came before the ping: nothing is 'possibly lost'."""
    server = reference.start_server()
    client = client_side.connect(
        server.url, heartbeat=HeartbeatConfig(interval=None), **FAST_RECONNECT
    )
    client.send_text("confirmed")
    assert client.recv() == "confirmed"
    client.ping()
    server.stop()
    client.wait_for(lambda e: isinstance(e, Disconnected))
    assert not any(isinstance(e, MessagesPossiblyLost) for e in client.events())
    client.close()


def test_many_concurrent_clients(client_side: Harness, reference: Harness) -> None:
    server = reference.start_server()
    clients: list[ClientHandle] = [
        client_side.connect(server.url, **FAST_RECONNECT) for _ in range(200)
    ]
    for i, client in enumerate(clients):
        client.send_text(f"c{i}")
    for i, client in enumerate(clients):
        assert client.recv(timeout=30) == f"c{i}"
    assert server.status().connections == 200
    for client in clients:
        client.close()


# ------------------------------------------------------------------ server-side scenarios


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_health_and_status(server_side: Harness, reference: Harness) -> None:
    server = server_side.start_server()
    http = server.url.replace("ws://", "http://")
    assert _get(http + "health") == (200, {"status": "ok"})
    client = reference.connect(server.url, **FAST_RECONNECT)
    client.send_text("count me")
    assert client.recv() == "count me"
    status_code, status = _get(http + "status")
    assert status_code == 200
    assert status["connections"] == 1
    assert status["messages_in"] >= 1
    assert _get(http + "nope")[0] == 404
    client.close()


def test_server_echo_sizes_and_types(server_side: Harness, reference: Harness) -> None:
    server = server_side.start_server()
    client = reference.connect(server.url, **FAST_RECONNECT)
    for size in (0, 125, 126, 65536, MiB - 64):
        client.send_bytes(payload(size))
        assert client.recv() == payload(size)
    client.send_text("ünïcode ✓")
    assert client.recv() == "ünïcode ✓"
    client.close()


def test_server_16_mib(server_side: Harness, reference: Harness) -> None:
    big = ConnectionConfig(max_message_size=32 * MiB)
    server = server_side.start_server(connection=big)
    client = reference.connect(server.url, connection=big, **FAST_RECONNECT)
    data = payload(16 * MiB)
    client.send_bytes(data)
    assert client.recv(timeout=60) == data
    client.close()


def test_server_graceful_shutdown_sends_1001(server_side: Harness, reference: Harness) -> None:
    server = server_side.start_server()
    client = reference.connect(server.url, reconnect=ReconnectConfig(enabled=False))
    client.send_text("x")
    assert client.recv() == "x"
    server.stop()
    event = client.wait_for(lambda e: isinstance(e, Disconnected))
    assert isinstance(event, Disconnected)
    assert event.code == 1001


def test_server_sees_client_close_code(server_side: Harness, reference: Harness) -> None:
    server = server_side.start_server()
    client = reference.connect(server.url, **FAST_RECONNECT)
    client.send_text("x")
    assert client.recv() == "x"
    client.close(4003, "bye")
    server.stop()
    assert (4003, "bye") in server.record.closes


def test_server_subprotocol_compression_and_headers(
    server_side: Harness, reference: Harness
) -> None:
    deflate = ConnectionConfig(compression=DeflateConfig())
    server = server_side.start_server(subprotocols=("v2", "v1"), connection=deflate)
    client = reference.connect(
        server.url + "room/7",
        subprotocols=("v1", "v2"),
        connection=deflate,
        headers={"Authorization": "Bearer t0k"},
        **FAST_RECONNECT,
    )
    assert client.subprotocol == "v2"
    client.send_text("!info")
    info = json.loads(client.recv())
    assert info["path"] == "/room/7"
    assert info["subprotocol"] == "v2"
    assert info["headers"]["authorization"] == "Bearer t0k"
    assert "permessage-deflate" in info["headers"].get("sec-websocket-extensions", "")
    client.close()


def test_server_tls(server_side: Harness, reference: Harness, pki: TestPKI) -> None:
    server = server_side.start_server(ssl=pki.server_context())
    client = reference.connect(
        server.url, tls=TLSConfig(ca_file=str(pki.files.ca_cert)), **FAST_RECONNECT
    )
    client.send_bytes(b"tls" * 1000)
    assert client.recv() == b"tls" * 1000
    client.close()


def test_server_rejects_with_status(server_side: Harness, reference: Harness) -> None:
    server = server_side.start_server(reject_status=403)
    client = reference.connect(server.url, wait_open=False, **FAST_RECONNECT)
    gave_up = client.wait_for(lambda e: isinstance(e, GaveUp))
    assert isinstance(gave_up, GaveUp)
    assert gave_up.failure.status == 403


def test_server_many_clients(server_side: Harness, reference: Harness) -> None:
    server = server_side.start_server()
    clients = [reference.connect(server.url, **FAST_RECONNECT) for _ in range(200)]
    for i, client in enumerate(clients):
        client.send_text(f"s{i}")
    for i, client in enumerate(clients):
        assert client.recv(timeout=30) == f"s{i}"
    assert server.status().connections == 200
    for client in clients:
        client.close()
