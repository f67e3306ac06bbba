"""Shared helpers for the protocol-connection tests (plus tests of the helpers themselves).

Everything is deterministic: masking keys come from a fixed key or a seeded ``random.Random``,
time is a plain float.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from zenws_core._config import ConnectionConfig
from zenws_core._events import ConnectionEvent, Opened, RequestReceived
from zenws_core._protocol import ClientConnection, ConnectionState, ServerConnection

#: The masking key of the RFC 6455 section 5.7 examples.
RFC_KEY = bytes.fromhex("37fa213d")
#: The ``Sec-WebSocket-Key`` of RFC 6455 section 1.3 and its accept token.
RFC_WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

Conn = ClientConnection | ServerConnection


def fixed_mask(key: bytes = RFC_KEY) -> Callable[[int], bytes]:
    """A mask source that always answers with ``key`` repeated (reproducible bytes)."""

    def source(n: int) -> bytes:
        return (key * (n // len(key) + 1))[:n]

    return source


def seeded_mask(seed: int = 0) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def masked(payload: bytes, key: bytes = RFC_KEY) -> bytes:
    """Mask ``payload`` with ``key`` (reference implementation, byte by byte)."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """Build one frame by hand (RFC 6455 section 5.2); ``length`` can lie about the size."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if key is not None else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + masked(payload, key)


def request_bytes(
    *, key: str = RFC_WS_KEY, extra: Iterable[str] = (), target: str = "/chat"
) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response_101(*, accept: str, extra: Iterable[str] = ()) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def pump(a: Conn, b: Conn, now: float = 0.0) -> tuple[list[ConnectionEvent], list[ConnectionEvent]]:
    """Shuttle bytes between two connections until both are quiet; return their events."""
    events_a: list[ConnectionEvent] = []
    events_b: list[ConnectionEvent] = []
    while True:
        data_a = a.data_to_send()
        data_b = b.data_to_send()
        if data_a:
            b.receive_data(data_a, now)
        if data_b:
            a.receive_data(data_b, now)
        events_a += a.events()
        events_b += b.events()
        if not data_a and not data_b:
            return events_a, events_b


def open_pair(
    client_config: ConnectionConfig | None = None,
    server_config: ConnectionConfig | None = None,
    *,
    subprotocols: tuple[str, ...] = (),
    choose: str | None = None,
    mask_source: Callable[[int], bytes] | None = None,
    now: float = 0.0,
) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server wired back to back, through a completed opening handshake."""
    client = ClientConnection(
        "ws://server.example.com/chat",
        config=client_config or ConnectionConfig(),
        subprotocols=subprotocols,
        mask_source=mask_source or seeded_mask(),
        now=now,
    )
    server = ServerConnection(config=server_config or ConnectionConfig(), now=now)
    server.receive_data(client.data_to_send(), now)
    (request,) = server.events()
    assert isinstance(request, RequestReceived)
    server.accept(choose, now=now)
    client.receive_data(server.data_to_send(), now)
    (opened,) = client.events()
    assert isinstance(opened, Opened)
    server.events()
    assert client.state is ConnectionState.OPEN
    assert server.state is ConnectionState.OPEN
    return client, server


def open_server(config: ConnectionConfig | None = None) -> ServerConnection:
    """A server in OPEN state after the RFC example request; its output is drained."""
    server = ServerConnection(config=config or ConnectionConfig())
    server.receive_data(request_bytes(), 0.0)
    server.events()
    server.accept(now=0.0)
    server.events()
    server.data_to_send()
    return server


def open_client(config: ConnectionConfig | None = None, key: bytes = RFC_KEY) -> ClientConnection:
    """A client in OPEN state whose masking keys are all ``key``; its output is drained."""
    from zenws_core._handshake import accept_token

    client = ClientConnection(
        "ws://server.example.com/chat",
        config=config or ConnectionConfig(),
        mask_source=fixed_mask(key),
    )
    request = client.data_to_send()
    ws_key = next(
        line.split(": ", 1)[1]
        for line in request.decode().split("\r\n")
        if line.startswith("Sec-WebSocket-Key")
    )
    client.receive_data(response_101(accept=accept_token(ws_key)), 0.0)
    client.events()
    return client


def feed(conn: Conn, data: bytes, mode: str, now: float = 0.0) -> list[ConnectionEvent]:
    """Feed ``data`` whole, byte by byte, or whole followed by the start of another frame."""
    if mode == "whole":
        conn.receive_data(data, now)
    elif mode == "bytewise":
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1], now)
    else:
        assert mode == "trailing"
        conn.receive_data(data + b"\x8a", now)  # first byte of a pong that never completes
    return conn.events()


MODES = ("whole", "bytewise", "trailing")


def test_masked_reference_matches_rfc_example() -> None:
    assert masked(b"Hello") == bytes.fromhex("7f9f4d5158")
    assert frame(0x1, b"Hello", key=RFC_KEY) == bytes.fromhex("818537fa213d7f9f4d5158")


def test_open_pair_and_pump() -> None:
    client, server = open_pair()
    client.send_text("ping")
    events_client, events_server = pump(client, server)
    assert events_client == []
    assert len(events_server) == 1


def test_feed_modes_give_same_events() -> None:
    results = []
    for mode in ("whole", "bytewise"):
        client = open_client()
        results.append(feed(client, frame(0x1, b"Hello"), mode))
    assert results[0] == results[1]
