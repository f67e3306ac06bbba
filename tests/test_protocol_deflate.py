"""permessage-deflate (RFC 7692): header parsing, negotiation in both roles, compressed
traffic, bounded decompression (bombs close with 1009) and compression errors."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from tests.test_protocol_helpers import (
    RFC_KEY,
    fixed_mask,
    frame,
    open_pair,
    pump,
    request_bytes,
    response_101,
)
from zenws_core._config import ConnectionConfig, DeflateConfig
from zenws_core._deflate import (
    BoundedDeflate,
    DeflateParameters,
    NegotiationError,
    client_accept,
    client_offer,
    parse_extension_header,
    server_negotiate,
)
from zenws_core._events import Closed, MessageReceived, Opened, PingReceived, RequestReceived
from zenws_core._handshake import accept_token
from zenws_core._protocol import ClientConnection, ServerConnection

DEFLATE = ConnectionConfig(compression=DeflateConfig())


def deflate_message(data: bytes, wbits: int = 15) -> bytes:
    """Compress one message the way RFC 7692 section 7.2.1 says (fresh context)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# -- header parsing ---------------------------------------------------------------------


def test_parse_extension_header() -> None:
    value = 'permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-foo, ,Y'
    assert parse_extension_header(value) == [
        (
            "permessage-deflate",
            (("client_max_window_bits", None), ("server_max_window_bits", "10")),
        ),
        ("x-foo", ()),
        ("y", ()),
    ]
    assert parse_extension_header("") == []


@pytest.mark.parametrize(
    "value", ["permessage-deflate;", "a b", "a; =1", 'a; b="unterminated', "a; b=1 c", "@"]
)
def test_parse_extension_header_refuses_garbage(value: str) -> None:
    with pytest.raises(NegotiationError, match="malformed"):
        parse_extension_header(value)


# -- negotiation ----------------------------------------------------------------------------


def test_client_offer() -> None:
    assert client_offer(DeflateConfig()) == "permessage-deflate; client_max_window_bits"
    full = DeflateConfig(
        client_max_window_bits=10,
        server_max_window_bits=12,
        client_no_context_takeover=True,
        server_no_context_takeover=True,
    )
    assert client_offer(full) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=12; client_max_window_bits=10"
    )


def test_client_accept_valid_responses() -> None:
    config = DeflateConfig(server_max_window_bits=12)
    params = client_accept(
        config,
        parse_extension_header(
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11; "
            "client_no_context_takeover"
        ),
    )
    assert params == DeflateParameters(
        server_no_context_takeover=False,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=11,
    )
    assert params.header_value() == (
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; "
        "client_max_window_bits=11"
    )


@pytest.mark.parametrize(
    ("config", "response", "message"),
    [
        (DeflateConfig(), "x-other", "did not offer"),
        (DeflateConfig(), "permessage-deflate, permessage-deflate", "did not offer"),
        (DeflateConfig(), "permessage-deflate; foo", "unknown parameter"),
        (DeflateConfig(), "permessage-deflate; server_no_context_takeover=1", "takes no value"),
        (
            DeflateConfig(),
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "duplicate",
        ),
        (DeflateConfig(), "permessage-deflate; server_max_window_bits", "invalid"),
        (DeflateConfig(), "permessage-deflate; server_max_window_bits=16", "invalid"),
        (DeflateConfig(), "permessage-deflate; server_max_window_bits=09", "invalid"),
        (DeflateConfig(), "permessage-deflate; client_max_window_bits=8", "not supported"),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=12",
            "exceeds",
        ),
        (
            DeflateConfig(server_max_window_bits=10),
            "permessage-deflate; server_max_window_bits=12",
            "exceeds",
        ),
        (DeflateConfig(server_max_window_bits=10), "permessage-deflate", "ignored"),
        (DeflateConfig(server_no_context_takeover=True), "permessage-deflate", "ignored"),
    ],
)
def test_client_accept_refuses(config: DeflateConfig, response: str, message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        client_accept(config, parse_extension_header(response))


@pytest.mark.parametrize(
    ("config", "offer", "expected"),
    [
        (DeflateConfig(), "permessage-deflate", DeflateParameters()),
        (DeflateConfig(), "x-foo, permessage-deflate; client_max_window_bits", DeflateParameters()),
        (
            DeflateConfig(),
            "permessage-deflate; client_max_window_bits=10",
            DeflateParameters(client_max_window_bits=10),
        ),
        (
            DeflateConfig(client_max_window_bits=11),
            "permessage-deflate; client_max_window_bits",
            DeflateParameters(client_max_window_bits=11),
        ),
        (
            DeflateConfig(server_max_window_bits=11, server_no_context_takeover=True),
            "permessage-deflate; server_max_window_bits=13",
            DeflateParameters(server_no_context_takeover=True, server_max_window_bits=11),
        ),
        (
            DeflateConfig(client_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
            DeflateParameters(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=10,
            ),
        ),
        # the first offer is unacceptable (window 8), the fallback is taken
        (
            DeflateConfig(),
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            DeflateParameters(),
        ),
        (DeflateConfig(), "permessage-deflate; bogus", None),
        (DeflateConfig(), "x-foo", None),
    ],
)
def test_server_negotiate(
    config: DeflateConfig, offer: str, expected: DeflateParameters | None
) -> None:
    assert server_negotiate(config, parse_extension_header(offer)) == expected


@pytest.mark.parametrize(
    "config",
    [
        DeflateConfig(),
        DeflateConfig(client_max_window_bits=9, server_max_window_bits=9),
        DeflateConfig(client_no_context_takeover=True, server_no_context_takeover=True),
        DeflateConfig(compression_level=1, min_size=0),
    ],
)
def test_compressed_conversation(config: DeflateConfig) -> None:
    connection_config = ConnectionConfig(compression=config, fragment_size=50)
    client, server = open_pair(connection_config, connection_config)
    texts = ["zenws " * 40, "zenws " * 40, "", "short", "é" * 300]
    for text in texts:
        client.send_text(text)
        server.send_text(text)
    client.send_bytes(bytes(range(256)) * 8)
    client_events, server_events = pump(client, server)
    assert [e.data for e in server_events if isinstance(e, MessageReceived)] == [
        *texts,
        bytes(range(256)) * 8,
    ]
    assert [e.data for e in client_events if isinstance(e, MessageReceived)] == texts
    # compressed traffic really is smaller on the wire
    assert server.stats().wire_bytes_in < server.stats().bytes_in


def test_opened_reports_negotiated_extension_on_both_sides() -> None:
    config = ConnectionConfig(compression=DeflateConfig(server_max_window_bits=10))
    client = ClientConnection("ws://h/", config=config, mask_source=fixed_mask())
    server = ServerConnection(config=config)
    server.receive_data(client.data_to_send(), 0.0)
    (request,) = server.events()
    assert isinstance(request, RequestReceived)
    assert request.extensions == (
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
    )
    server.accept(now=0.0)
    response = server.data_to_send()
    assert (
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n" in response
    )
    client.receive_data(response, 0.0)
    (client_opened,) = client.events()
    (server_opened,) = server.events()
    assert isinstance(client_opened, Opened)
    assert isinstance(server_opened, Opened)
    assert (
        client_opened.extensions
        == server_opened.extensions
        == ("permessage-deflate; server_max_window_bits=10",)
    )


def test_server_without_compression_ignores_offer() -> None:
    client, server = open_pair(DEFLATE, ConnectionConfig())
    client.send_text("a" * 100)
    _, events = pump(client, server)
    assert events == [MessageReceived("a" * 100)]


def test_client_fails_on_bad_extension_response() -> None:
    client = ClientConnection("ws://h/", config=DEFLATE, mask_source=fixed_mask())
    key = next(
        line.split(": ")[1]
        for line in client.data_to_send().decode().split("\r\n")
        if line.startswith("Sec-WebSocket-Key")
    )
    client.receive_data(
        response_101(
            accept=accept_token(key), extra=["Sec-WebSocket-Extensions: permessage-deflate; x=1"]
        ),
        0.0,
    )
    closed = client.events()[-1]
    assert isinstance(closed, Closed)
    assert "extension negotiation failed" in closed.detail


def test_malformed_offer_is_ignored_by_server() -> None:
    server = ServerConnection(config=DEFLATE)
    server.receive_data(
        request_bytes(extra=["Sec-WebSocket-Extensions: permessage-deflate;;"]), 0.0
    )
    (request,) = server.events()
    assert isinstance(request, RequestReceived)
    assert request.extensions == ()
    server.accept(now=0.0)
    assert b"Sec-WebSocket-Extensions" not in server.data_to_send()


# -- wire format ----------------------------------------------------------------------------


def _deflate_server() -> ServerConnection:
    server = ServerConnection(config=ConnectionConfig(compression=DeflateConfig(min_size=10)))
    server.receive_data(request_bytes(extra=["Sec-WebSocket-Extensions: permessage-deflate"]), 0.0)
    server.events()
    server.accept(now=0.0)
    server.events()
    server.data_to_send()
    return server


def test_rsv1_only_on_compressed_messages_and_first_frame() -> None:
    server = _deflate_server()
    server.send_text("tiny")  # below min_size: not compressed
    assert server.data_to_send() == frame(0x1, b"tiny")
    server.send_text("Hello" * 4)
    assert server.data_to_send() == frame(0x1, deflate_message(b"Hello" * 4), rsv=0x40)


def test_receive_rfc7692_example_and_fragments() -> None:
    server = _deflate_server()
    # RFC 7692 section 7.2.3.1: "Hello" compressed, then the same split over two frames
    compressed = bytes.fromhex("f248cdc9c90700")
    server.receive_data(frame(0x1, compressed, rsv=0x40, key=RFC_KEY), 0.0)
    assert server.events() == [MessageReceived("Hello")]
    server = _deflate_server()
    data = (
        frame(0x1, compressed[:3], fin=False, rsv=0x40, key=RFC_KEY)
        + frame(0x9, b"mid", key=RFC_KEY)
        + frame(0x0, compressed[3:], key=RFC_KEY)
    )
    for i in range(len(data)):
        server.receive_data(data[i : i + 1], 0.0)
    assert server.events() == [PingReceived(b"mid"), MessageReceived("Hello")]


def test_uncompressed_message_on_deflate_connection() -> None:
    server = _deflate_server()
    server.receive_data(frame(0x2, b"raw", key=RFC_KEY), 0.0)
    assert server.events() == [MessageReceived(b"raw")]


@pytest.mark.parametrize(
    ("data", "code", "detail"),
    [
        (frame(0x9, b"", rsv=0x40, key=RFC_KEY), 1002, "control frame"),
        (
            frame(0x1, deflate_message(b"ab"), fin=False, rsv=0x40, key=RFC_KEY)
            + frame(0x0, b"", rsv=0x40, key=RFC_KEY),
            1002,
            "continuation",
        ),
        (frame(0x1, b"\xff\xff\xff\xff", rsv=0x40, key=RFC_KEY), 1007, "invalid compressed"),
        (frame(0x1, deflate_message(b"\xff\xfe"), rsv=0x40, key=RFC_KEY), 1007, "UTF-8"),
    ],
)
def test_compressed_protocol_errors(data: bytes, code: int, detail: str) -> None:
    server = _deflate_server()
    server.receive_data(data, 0.0)
    closed = server.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == code
    assert detail in closed.detail
    assert server.data_to_send() == bytes((0x88, 0x02)) + code.to_bytes(2, "big")


# -- bombs ----------------------------------------------------------------------------------


def test_compression_bomb_is_bounded() -> None:
    bomb = deflate_message(b"\x00" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 100 * 1024
    server = ServerConnection(
        config=ConnectionConfig(compression=DeflateConfig(), max_message_size=1024 * 1024)
    )
    server.receive_data(request_bytes(extra=["Sec-WebSocket-Extensions: permessage-deflate"]), 0.0)
    server.accept(now=0.0)
    server.events()
    server.data_to_send()
    data = frame(0x2, bomb, rsv=0x40, key=RFC_KEY)
    tracemalloc.start()
    try:
        server.receive_data(data, 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    closed = server.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == 1009
    assert "max_message_size" in closed.detail
    assert server.data_to_send() == b"\x88\x02\x03\xf1"
    assert peak < 8 * 1024 * 1024  # never inflated anywhere near 64 MiB


def test_bomb_split_across_fragments_is_bounded() -> None:
    bomb = deflate_message(b"A" * (4 * 1024 * 1024))
    config = ConnectionConfig(compression=DeflateConfig(), max_message_size=100_000)
    server = ServerConnection(config=config)
    server.receive_data(request_bytes(extra=["Sec-WebSocket-Extensions: permessage-deflate"]), 0.0)
    server.accept(now=0.0)
    server.events()
    half = len(bomb) // 2
    server.receive_data(frame(0x2, bomb[:half], fin=False, rsv=0x40, key=RFC_KEY), 0.0)
    server.receive_data(frame(0x0, bomb[half:], key=RFC_KEY), 0.0)
    closed = server.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == 1009


def test_message_exactly_at_limit_after_inflation() -> None:
    config = ConnectionConfig(compression=DeflateConfig(), max_message_size=1000)
    client, server = open_pair(config, config)
    client.send_bytes(b"z" * 1000)
    _, events = pump(client, server)
    assert events == [MessageReceived(b"z" * 1000)]
    client.send_bytes(b"z" * 1001)
    _, events = pump(client, server)
    assert isinstance(events[-1], Closed)
    assert events[-1].code == 1009


def test_bounded_deflate_without_limit() -> None:
    extension = BoundedDeflate(DeflateParameters(), client=False, max_message_size=None)
    payload = deflate_message(b"q" * 5000)
    assert extension.frame_inbound_payload_data(None, payload) == payload  # type: ignore[arg-type]
    from wsproto.frame_protocol import Opcode, RsvBits

    extension.frame_inbound_header(None, Opcode.BINARY, RsvBits(True, False, False), len(payload))  # type: ignore[arg-type]
    assert extension.message_compressed
    out = extension.frame_inbound_payload_data(None, payload)  # type: ignore[arg-type]
    tail = extension.frame_inbound_complete(None, True)  # type: ignore[arg-type]
    assert isinstance(out, bytes)
    assert isinstance(tail, bytes)
    assert out + tail == b"q" * 5000
    assert not extension.message_compressed
