"""In-process core throughput without sockets: client state machine -> bytes -> server -> back.

This isolates the cost of framing, masking and parsing from the event loop and the kernel.
``CORE_IMPLEMENTATIONS`` maps a name to a factory of ``EchoPair`` objects; ``zenws_core``
joins by registering a factory that wires its ``ClientConnection`` to its
``ServerConnection`` the same way (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol


class EchoPair(Protocol):
    """A client and a server connection joined in memory, past the opening handshake."""

    def round_trip(self, payload: bytes) -> bytes | bytearray | memoryview:
        """Client sends one binary message, the server echoes it, the client returns it."""
        ...


class WebsocketsPair:
    """websockets' own sans-I/O layer (``ClientProtocol`` / ``ServerProtocol``), the reference."""

    def __init__(self) -> None:
        from websockets.client import ClientProtocol
        from websockets.http11 import Request
        from websockets.server import ServerProtocol
        from websockets.uri import parse_uri

        self.client = ClientProtocol(parse_uri("ws://localhost/"), max_size=None)
        self.server = ServerProtocol(max_size=None)
        self.client.send_request(self.client.connect())
        for data in self.client.data_to_send():
            self.server.receive_data(data)
        (request,) = self.server.events_received()
        assert isinstance(request, Request)
        self.server.send_response(self.server.accept(request))
        for data in self.server.data_to_send():
            self.client.receive_data(data)
        self.client.events_received()

    def round_trip(self, payload: bytes) -> bytes | bytearray | memoryview:
        from websockets.frames import Frame, Opcode

        client = self.client
        server = self.server
        client.send_binary(payload)
        server.receive_data(b"".join(client.data_to_send()))
        for frame in server.events_received():
            # Messages here are never fragmented: every frame is a whole message.
            assert isinstance(frame, Frame)
            assert frame.opcode is Opcode.BINARY
            server.send_binary(frame.data)
        client.receive_data(b"".join(server.data_to_send()))
        parts = [frame.data for frame in client.events_received() if isinstance(frame, Frame)]
        return parts[0] if len(parts) == 1 else b"".join(parts)


class WsprotoPair:
    """Two wsproto ``WSConnection`` objects, echoing through byte strings."""

    def __init__(self) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        self.client = WSConnection(ConnectionType.CLIENT)
        self.server = WSConnection(ConnectionType.SERVER)
        self.server.receive_data(self.client.send(Request(host="localhost", target="/")))
        for event in self.server.events():
            assert isinstance(event, Request)
        self.client.receive_data(self.server.send(AcceptConnection()))
        for event in self.client.events():
            assert isinstance(event, AcceptConnection)

    def round_trip(self, payload: bytes) -> bytes | bytearray | memoryview:
        from wsproto.events import BytesMessage, Message

        client = self.client
        server = self.server
        server.receive_data(client.send(Message(data=payload)))
        out = [
            server.send(Message(data=event.data, message_finished=event.message_finished))
            for event in server.events()
            if isinstance(event, BytesMessage)
        ]
        client.receive_data(b"".join(out))
        parts = [event.data for event in client.events() if isinstance(event, BytesMessage)]
        return parts[0] if len(parts) == 1 else b"".join(parts)


class ZenwsCorePair:
    """zenws_core's ``ClientConnection`` and ``ServerConnection`` wired back to back.

    Default ``ConnectionConfig`` except ``max_message_size=None`` (the peers here have no
    limit either); compression off, as everywhere else.  Masking keys come from
    ``secrets.token_bytes`` as in production.
    """

    def __init__(self) -> None:
        from zenws_core import (
            ClientConnection,
            ConnectionConfig,
            MessageReceived,
            Opened,
            RequestReceived,
            ServerConnection,
        )

        config = ConnectionConfig(max_message_size=None)
        self.client = ClientConnection("ws://localhost/", config=config)
        self.server = ServerConnection(config=config)
        self.server.receive_data(self.client.data_to_send(), 0.0)
        (request,) = self.server.events()
        assert isinstance(request, RequestReceived)
        self.server.accept(now=0.0)
        self.client.receive_data(self.server.data_to_send(), 0.0)
        (opened,) = self.client.events()
        assert isinstance(opened, Opened)
        self.server.events()
        self.message_received = MessageReceived

    def round_trip(self, payload: bytes) -> bytes | bytearray | memoryview:
        MessageReceived = self.message_received
        client = self.client
        server = self.server
        client.send_bytes(payload)
        server.receive_data(client.data_to_send(), 0.0)
        for event in server.events():
            # Messages here are never fragmented: every event is a whole binary message.
            assert type(event) is MessageReceived
            server.send_bytes(event.data)  # type: ignore[arg-type]
        client.receive_data(server.data_to_send(), 0.0)
        parts: list[Any] = [
            event.data for event in client.events() if type(event) is MessageReceived
        ]
        return parts[0] if len(parts) == 1 else b"".join(parts)


CORE_IMPLEMENTATIONS: dict[str, Callable[[], EchoPair]] = {
    "websockets": WebsocketsPair,
    "wsproto": WsprotoPair,
    "zenws_core": ZenwsCorePair,
}
"""In-memory echo pairs by name (``zenws_core`` is zenws' sans-IO core)."""

#: (workload name, payload size, full count, quick count)
CORE_WORKLOADS: tuple[tuple[str, int, int, int], ...] = (
    ("core_echo_32", 32, 20000, 500),
    ("core_echo_64k", 64 * 1024, 1000, 20),
)


def timed_round_trips(pair: EchoPair, size: int, count: int) -> float:
    """Seconds ``count`` checked round trips of ``size`` bytes take, after a short warm-up."""
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    for _ in range(max(1, min(100, count // 10))):
        pair.round_trip(payload)
    start = time.perf_counter()
    for _ in range(count):
        if pair.round_trip(payload) != payload:
            raise AssertionError(f"{type(pair).__name__}: in-memory echo mismatch")
    return time.perf_counter() - start


def run_core(name: str, size: int, count: int) -> dict[str, Any]:
    """Round-trip ``count`` messages of ``size`` bytes through one in-memory pair."""
    elapsed = timed_round_trips(CORE_IMPLEMENTATIONS[name](), size, count)
    return {"value": count / elapsed, "unit": "msg/s", "count": count, "elapsed": elapsed}
