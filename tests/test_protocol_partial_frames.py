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
