"""A large frame that arrives in pieces is counted once against ``max_message_size``.

Regression: the early size check (declared frame length) added the frame's full length
to the bytes of that same frame already delivered, refusing messages just under the limit
with 1009 when they arrived over several reads (RFC 6455 section 5.4 pieces).
"""

from __future__ import annotations

import random

import pytest

from zenws_core import (
    ClientConnection,
    Closed,
    ConnectionConfig,
    MessageReceived,
    RequestReceived,
    ServerConnection,
)


def _open_pair(config: ConnectionConfig) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(
        "ws://example.test/", config=config, mask_source=random.Random(1).randbytes, now=0.0
    )
    server = ServerConnection(config=config, now=0.0)
    server.receive_data(client.data_to_send(), 0.0)
    for event in server.events():
        if isinstance(event, RequestReceived):
            server.accept(now=0.0)
    server.events()  # Opened
    client.receive_data(server.data_to_send(), 0.0)
    client.events()
    return client, server


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65536, 262144])
@pytest.mark.parametrize("size", [1000, 1024 - 64, 1024])
def test_message_at_or_under_the_limit_in_pieces(chunk: int, size: int) -> None:
    client, server = _open_pair(ConnectionConfig(max_message_size=1024, fragment_size=None))
    client.send_bytes(bytes(size))
    wire = client.data_to_send()
    events = []
    for start in range(0, len(wire), chunk):
        server.receive_data(wire[start : start + chunk], 0.0)
        events += server.events()
    assert events == [MessageReceived(bytes(size))]


def test_near_limit_megabyte_in_reads_both_roles() -> None:
    client, server = _open_pair(ConnectionConfig())
    data = bytes(range(256)) * 4096  # exactly 1 MiB, the default limit
    client.send_bytes(data[:-64])
    wire = client.data_to_send()
    for start in range(0, len(wire), 65536):
        server.receive_data(wire[start : start + 65536], 0.0)
    assert server.events() == [MessageReceived(data[:-64])]
    server.send_bytes(data)
    wire = server.data_to_send()
    for start in range(0, len(wire), 65536):
        client.receive_data(wire[start : start + 65536], 0.0)
    assert client.events() == [MessageReceived(data)]


@pytest.mark.parametrize("chunk", [3, 100, 4096])
def test_over_the_limit_in_pieces_still_closes_1009(chunk: int) -> None:
    client, server = _open_pair(ConnectionConfig(max_message_size=1024, fragment_size=None))
    client.send_bytes(bytes(1025))
    wire = client.data_to_send()
    events = []
    for start in range(0, len(wire), chunk):
        server.receive_data(wire[start : start + chunk], 0.0)
        events += server.events()
    closed = [e for e in events if isinstance(e, Closed)]
    assert [e.code for e in closed] == [1009]
    assert not any(isinstance(e, MessageReceived) for e in events)


def _feed_through_one_buffer(
    receiver: ClientConnection | ServerConnection, wire: bytes, chunk: int
) -> None:
    """Feed ``wire`` as views of one reused buffer, scribbled over after every call."""
    buffer = bytearray(chunk)
    for start in range(0, len(wire), chunk):
        piece = wire[start : start + chunk]
        buffer[: len(piece)] = piece
        with memoryview(buffer) as view:
            receiver.receive_data(view[: len(piece)], 0.0)
        buffer[:] = b"\xee" * chunk  # what a transport does with its buffer next


@pytest.mark.parametrize("chunk", [3, 4096, 65536, 262144])
def test_views_of_a_reused_read_buffer_are_copied_in_both_roles(chunk: int) -> None:
    """The asyncio adapter reads into one buffer per thread and passes views of it."""
    config = ConnectionConfig(max_message_size=2**21, fragment_size=None)
    client = ClientConnection(
        "ws://example.test/", config=config, mask_source=random.Random(2).randbytes, now=0.0
    )
    server = ServerConnection(config=config, now=0.0)
    _feed_through_one_buffer(server, client.data_to_send(), chunk)  # the handshake too
    assert [type(e) for e in server.events()] == [RequestReceived]
    server.accept(now=0.0)
    server.events()
    _feed_through_one_buffer(client, server.data_to_send(), chunk)
    client.events()
    sizes = [10, 70_000, 1_000_000, 200_000, 125]  # small, 16-bit, whole-frame and pieces paths
    messages: list[str | bytes] = [bytes([n % 251]) * n for n in sizes]
    messages.append("text é")
    for message in messages:
        for sender in (client, server):
            if isinstance(message, str):
                sender.send_text(message)
            else:
                sender.send_bytes(message)
    _feed_through_one_buffer(server, client.data_to_send(), chunk)
    _feed_through_one_buffer(client, server.data_to_send(), chunk)
    assert server.events() == [MessageReceived(m) for m in messages]
    assert client.events() == [MessageReceived(m) for m in messages]
