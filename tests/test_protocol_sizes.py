"""Message sizes at every frame-length boundary (RFC 6455 section 5.2: 7-bit, 16-bit and
64-bit lengths), both directions, with and without permessage-deflate."""

from __future__ import annotations

import random

import pytest

from tests.test_protocol_helpers import open_pair, pump
from zenws_core._config import ConnectionConfig, DeflateConfig
from zenws_core._events import MessageReceived

MiB = 1024 * 1024
SIZES = [0, 125, 126, 65535, 65536, MiB, 16 * MiB]


def _payload(size: int) -> bytes:
    # a random block repeated: cheap to build, still exercises masking and inflation
    block = random.Random(size).randbytes(min(size, 4096))
    return (block * (size // 4096 + 1))[:size]


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("size", SIZES)
def test_sizes_both_ways(size: int, compression: bool) -> None:
    config = ConnectionConfig(
        max_message_size=32 * MiB,
        compression=DeflateConfig() if compression else None,
    )
    client, server = open_pair(config, config)
    payload = _payload(size)
    client.send_bytes(payload)
    server.send_bytes(payload)
    client_events, server_events = pump(client, server)
    assert client_events == [MessageReceived(payload)]
    assert server_events == [MessageReceived(payload)]
    assert client.stats().bytes_in == server.stats().bytes_in == size


@pytest.mark.parametrize("size", [126, 65536, MiB + 1])
def test_text_sizes_with_multibyte_characters(size: int) -> None:
    config = ConnectionConfig(fragment_size=1000, max_message_size=8 * MiB)
    client, server = open_pair(config, config)
    text = ("aé€😀" * (size // 10 + 1))[: size // 2]
    client.send_text(text)
    _, events = pump(client, server)
    assert events == [MessageReceived(text)]


def test_default_limit_refuses_16_mib() -> None:
    client, server = open_pair()
    client.send_bytes(bytes(16 * MiB))
    _, events = pump(client, server)
    assert events[-1].code == 1009  # type: ignore[union-attr]
