"""``ConnectionConfig`` / ``DeflateConfig`` validation and a few API corners of the connection."""

from __future__ import annotations

import pytest

from tests.test_protocol_helpers import RFC_KEY, frame, open_client, open_pair, request_bytes
from zenws_core._config import ConnectionConfig, DeflateConfig
from zenws_core._events import FragmentReceived, Opened
from zenws_core._protocol import ConnectionStateError, ServerConnection


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"client_max_window_bits": 8}, "client_max_window_bits"),
        ({"server_max_window_bits": 16}, "server_max_window_bits"),
        ({"compression_level": 10}, "compression_level"),
        ({"min_size": -1}, "min_size"),
    ],
)
def test_deflate_config_validation(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeflateConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_message_size": 0}, "max_message_size"),
        ({"fragment_size": -5}, "fragment_size"),
        ({"close_timeout": -1.0}, "close_timeout"),
        ({"handshake_timeout": float("nan")}, "handshake_timeout"),
        ({"max_handshake_size": 100}, "max_handshake_size"),
        ({"write_high_water": -1}, "write_high_water"),
    ],
)
def test_connection_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConnectionConfig(**kwargs)  # type: ignore[arg-type]


def test_defaults_are_safe() -> None:
    config = ConnectionConfig()
    assert config.max_message_size == 1024 * 1024
    assert config.fragment_size == 1024 * 1024
    assert config.compression is None
    assert config.max_handshake_size == 64 * 1024
    assert (config.close_timeout, config.handshake_timeout) == (10.0, 10.0)
    assert ConnectionConfig(max_message_size=None, fragment_size=None).max_message_size is None


def test_config_exposed_and_send_bytes_refused_when_not_open() -> None:
    config = ConnectionConfig(fragment_size=10)
    client, _ = open_pair(config)
    assert client.config is config
    client.close(now=0.0)
    with pytest.raises(ConnectionStateError):
        client.send_bytes(b"x")
    with pytest.raises(ConnectionStateError):
        client.ping(now=0.0)


def test_streaming_skips_empty_pieces_of_a_split_character() -> None:
    client = open_client(ConnectionConfig(streaming=True))
    euro = "€".encode()
    client.receive_data(frame(0x1, euro[:1], fin=False), 0.0)
    assert client.events() == []  # nothing decodable yet
    client.receive_data(frame(0x0, euro[1:]), 0.0)
    assert client.events() == [FragmentReceived("€", True)]


def test_unacceptable_deflate_offer_accepts_without_extension() -> None:
    server = ServerConnection(config=ConnectionConfig(compression=DeflateConfig()))
    server.receive_data(
        request_bytes(extra=["Sec-WebSocket-Extensions: permessage-deflate; unknown_param"]), 0.0
    )
    server.events()
    server.accept(now=0.0)
    assert b"Sec-WebSocket-Extensions" not in server.data_to_send()
    (opened,) = server.events()
    assert isinstance(opened, Opened)
    assert opened.extensions == ()
    server.receive_data(frame(0x1, b"x", rsv=0x40, key=RFC_KEY), 0.0)
    assert server.events()[-1].code == 1002  # type: ignore[union-attr]
