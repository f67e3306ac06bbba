"""Frames on the wire: RFC 6455 section 5.7 examples, fragmentation, ping/pong, malformed
input (one case per rule, exact close code and close-frame bytes), split invariance and
random input."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_protocol_helpers import (
    MODES,
    RFC_KEY,
    feed,
    fixed_mask,
    frame,
    masked,
    open_client,
    open_pair,
    open_server,
    request_bytes,
    seeded_mask,
)
from zenws_core._config import ConnectionConfig, DeflateConfig
from zenws_core._events import (
    CloseCause,
    Closed,
    FragmentReceived,
    Initiator,
    MessageReceived,
    PingReceived,
    PongReceived,
)
from zenws_core._frames import Framer, mask
from zenws_core._protocol import ClientConnection, ConnectionState, ServerConnection

HELLO_UNMASKED = bytes.fromhex("810548656c6c6f")
HELLO_MASKED = bytes.fromhex("818537fa213d7f9f4d5158")
FRAGMENTED_HELLO = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
PING_HELLO = bytes.fromhex("890548656c6c6f")
PONG_HELLO_MASKED = bytes.fromhex("8a8537fa213d7f9f4d5158")


# -- RFC 6455 section 5.7 examples ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_rfc_unmasked_hello_to_client(mode: str) -> None:
    assert feed(open_client(), HELLO_UNMASKED, mode) == [MessageReceived("Hello")]


@pytest.mark.parametrize("mode", MODES)
def test_rfc_masked_hello_to_server(mode: str) -> None:
    assert feed(open_server(), HELLO_MASKED, mode) == [MessageReceived("Hello")]


def test_client_masks_with_injected_key() -> None:
    client = open_client()
    client.send_text("Hello")
    assert client.data_to_send() == HELLO_MASKED


def test_server_sends_unmasked() -> None:
    server = open_server()
    server.send_text("Hello")
    assert server.data_to_send() == HELLO_UNMASKED


@pytest.mark.parametrize("mode", MODES)
def test_rfc_fragmented_hello(mode: str) -> None:
    assert feed(open_client(), FRAGMENTED_HELLO, mode) == [MessageReceived("Hello")]


@pytest.mark.parametrize("mode", MODES)
def test_rfc_ping_answered_with_masked_pong(mode: str) -> None:
    client = open_client()
    assert feed(client, PING_HELLO, mode) == [PingReceived(b"Hello")]
    assert client.data_to_send() == PONG_HELLO_MASKED
    assert client.stats().pings_received == 1
    assert client.stats().pongs_sent == 1


def test_rfc_masked_pong_at_server_is_unsolicited() -> None:
    server = open_server()
    server.receive_data(PONG_HELLO_MASKED, 0.0)
    assert server.events() == [PongReceived(b"Hello", None)]
    assert server.data_to_send() == b""


@pytest.mark.parametrize("mode", MODES)
def test_rfc_256_byte_binary_header(mode: str) -> None:
    payload = bytes(range(256))
    data = bytes.fromhex("827e0100") + payload
    assert feed(open_client(), data, mode) == [MessageReceived(payload)]
    server = open_server()
    server.send_bytes(payload)
    assert server.data_to_send() == data


def test_rfc_64k_binary_header() -> None:
    payload = random.Random(1).randbytes(65536)
    data = bytes.fromhex("827f0000000000010000") + payload
    for mode in ("whole", "trailing"):
        assert feed(open_client(), data, mode) == [MessageReceived(payload)]
    server = open_server()
    server.send_bytes(payload)
    assert server.data_to_send() == data


def test_masked_64k_frame_from_client() -> None:
    payload = random.Random(2).randbytes(65536)
    client = open_client()
    client.send_bytes(payload)
    out = client.data_to_send()
    assert out[:10] == bytes.fromhex("82ff0000000000010000")
    assert out[10:14] == RFC_KEY
    assert out[14:] == masked(payload)


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1023, 1024, 1025, 5000])
def test_mask_matches_reference(size: int) -> None:
    data = random.Random(size).randbytes(size)
    key = bytes.fromhex("a1b2c3d4")
    assert mask(key, data) == masked(data, key)


def test_wsproto_serialisation_goes_through_injected_mask() -> None:
    framer = Framer(client=True, mask_source=fixed_mask())
    assert bytes(framer.send_data("Hello")) == HELLO_MASKED
    assert bytes(Framer(client=False).ping(b"Hello")) == PING_HELLO
    with pytest.raises(ValueError, match="mask source"):
        Framer(client=True)
    bad = Framer(client=True, mask_source=lambda n: b"\x00")
    with pytest.raises(ValueError, match="number of bytes"):
        bad.encode(0x81, b"x")


# -- outbound fragmentation --------------------------------------------------------------


def test_outbound_message_split_at_fragment_size() -> None:
    server = open_server(ConnectionConfig(fragment_size=4))
    server.send_text("abcdefghij")
    assert server.data_to_send() == (
        frame(0x1, b"abcd", fin=False) + frame(0x0, b"efgh", fin=False) + frame(0x0, b"ij")
    )
    server.send_bytes(b"1234")  # exactly fragment_size: one frame
    assert server.data_to_send() == frame(0x2, b"1234")


def test_fragment_size_none_sends_one_frame() -> None:
    server = open_server(ConnectionConfig(fragment_size=None))
    server.send_bytes(b"x" * 200_000)
    assert server.data_to_send()[:2] == b"\x82\x7f"


def test_fragmented_message_with_interleaved_ping() -> None:
    client = open_client()
    data = frame(0x1, b"He", fin=False) + PING_HELLO + frame(0x0, b"llo")
    assert client.receive_data(data, 0.0) is None
    assert client.events() == [PingReceived(b"Hello"), MessageReceived("Hello")]


def test_utf8_split_across_fragments() -> None:
    text = "zenws ✓ €"
    raw = text.encode()
    cut = raw.index("✓".encode()) + 1  # inside a multi-byte character
    data = frame(0x1, raw[:cut], fin=False) + frame(0x0, raw[cut:])
    for mode in MODES:
        assert feed(open_client(), data, mode) == [MessageReceived(text)]


def test_send_json_is_compact() -> None:
    server = open_server()
    server.send_json({"a": [1, 2], "b": "é"})
    assert server.data_to_send() == frame(0x1, '{"a":[1,2],"b":"é"}'.encode())
    server.send_json([1], dumps=lambda obj: "custom")
    assert server.data_to_send() == frame(0x1, b"custom")


def test_send_bytes_accepts_bytearray_and_memoryview() -> None:
    server = open_server()
    server.send_bytes(bytearray(b"ab"))
    server.send_bytes(memoryview(b"cd"))
    assert server.data_to_send() == frame(0x2, b"ab") + frame(0x2, b"cd")


# -- streaming mode ------------------------------------------------------------------------


def test_streaming_delivers_fragments() -> None:
    client = open_client(ConnectionConfig(streaming=True))
    data = frame(0x1, "h€".encode()[:2], fin=False) + frame(0x0, "h€".encode()[2:])
    client.receive_data(data, 0.0)
    assert client.events() == [FragmentReceived("h", False), FragmentReceived("€", True)]
    client.receive_data(frame(0x2, b"") + frame(0x2, b"xy"), 0.0)
    assert client.events() == [FragmentReceived(b"", True), FragmentReceived(b"xy", True)]
    assert client.stats().messages_in == 3


def test_streaming_size_limit_applies_per_message() -> None:
    client = open_client(ConnectionConfig(streaming=True, max_message_size=4))
    client.receive_data(frame(0x2, b"abc", fin=False), 0.0)
    assert client.events() == [FragmentReceived(b"abc", False)]
    client.receive_data(frame(0x0, b"d"), 0.0)  # exactly 4 bytes: fine
    assert client.events() == [FragmentReceived(b"d", True)]
    client.receive_data(frame(0x2, b"abc", fin=False) + frame(0x0, b"de"), 0.0)
    events = client.events()
    assert events[0] == FragmentReceived(b"abc", False)
    assert isinstance(events[-1], Closed)
    assert events[-1].code == 1009


# -- malformed input: one case per rule ----------------------------------------------------

# (name, bytes the server receives after the handshake, expected close code, detail fragment)
SERVER_CORPUS = [
    ("rsv1 without extension", frame(0x1, b"x", rsv=0x40, key=RFC_KEY), 1002, "Reserved bit"),
    ("rsv2", frame(0x1, b"x", rsv=0x20, key=RFC_KEY), 1002, "Reserved bit"),
    ("rsv3", frame(0x2, b"x", rsv=0x10, key=RFC_KEY), 1002, "Reserved bit"),
    ("opcode 0x3", frame(0x3, b"", key=RFC_KEY), 1002, "opcode"),
    ("opcode 0x7", frame(0x7, b"", key=RFC_KEY), 1002, "opcode"),
    ("opcode 0xB", frame(0xB, b"", key=RFC_KEY), 1002, "opcode"),
    ("opcode 0xF", frame(0xF, b"", key=RFC_KEY), 1002, "opcode"),
    ("fragmented ping", frame(0x9, b"x", fin=False, key=RFC_KEY), 1002, "fragment control"),
    ("oversized ping", frame(0x9, b"x" * 126, key=RFC_KEY), 1002, "len > 125"),
    ("unmasked client frame", frame(0x1, b"x"), 1002, "unmasked"),
    ("continuation without start", frame(0x0, b"x", key=RFC_KEY), 1002, "without a message"),
    (
        "data frame inside fragmented message",
        frame(0x1, b"a", fin=False, key=RFC_KEY) + frame(0x1, b"b", key=RFC_KEY),
        1002,
        "inside a fragmented",
    ),
    ("close code 999", frame(0x8, (999).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close code 1004", frame(0x8, (1004).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close code 1005", frame(0x8, (1005).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close code 1006", frame(0x8, (1006).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close code 1015", frame(0x8, (1015).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close code 1016", frame(0x8, (1016).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close code 2999", frame(0x8, (2999).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close code 5000", frame(0x8, (5000).to_bytes(2, "big"), key=RFC_KEY), 1002, "close code"),
    ("close with 1-byte payload", frame(0x8, b"\x03", key=RFC_KEY), 1002, "1-byte"),
    ("bad UTF-8 in close reason", frame(0x8, b"\x03\xe8\xff", key=RFC_KEY), 1007, "UTF-8"),
    ("bad UTF-8 in text", frame(0x1, b"\xff", key=RFC_KEY), 1007, "UTF-8"),
    (
        "bad UTF-8 in first fragment",
        frame(0x1, b"ok\xc0\xaf", fin=False, key=RFC_KEY),
        1007,
        "UTF-8",
    ),
    ("truncated UTF-8 at message end", frame(0x1, b"\xe2\x82", key=RFC_KEY), 1007, "UTF-8"),
    (
        "non-minimal 16-bit length",
        bytes((0x82, 0xFE)) + (5).to_bytes(2, "big") + RFC_KEY + masked(b"x" * 5),
        1002,
        "2 bytes",
    ),
    ("non-minimal 64-bit length", bytes((0x82, 0xFF)) + (300).to_bytes(8, "big"), 1002, "8 bytes"),
    ("64-bit length with MSB set", bytes((0x82, 0xFF)) + (1 << 63).to_bytes(8, "big"), 1002, "MSB"),
]


def _close_frame_from_server(code: int) -> bytes:
    return bytes((0x88, 0x02)) + code.to_bytes(2, "big")


@pytest.mark.parametrize(
    ("name", "data", "code", "detail"), SERVER_CORPUS, ids=[c[0] for c in SERVER_CORPUS]
)
@pytest.mark.parametrize("mode", MODES)
def test_server_fails_malformed_input(
    name: str, data: bytes, code: int, detail: str, mode: str
) -> None:
    server = open_server()
    events = feed(server, data, mode)
    closed = events[-1]
    assert isinstance(closed, Closed), events
    assert closed.code == code
    assert closed.cause is CloseCause.PROTOCOL_ERROR
    assert closed.initiator is Initiator.LOCAL
    assert not closed.clean
    assert detail.lower() in closed.detail.lower()
    assert server.data_to_send() == _close_frame_from_server(code)
    assert server.should_close_transport
    assert server.state is ConnectionState.CLOSED
    # nothing after the failure is processed
    server.receive_data(HELLO_MASKED, 1.0)
    assert server.events() == []


CLIENT_CORPUS = [
    ("masked server frame", frame(0x1, b"x", key=RFC_KEY), 1002, "masked"),
    ("rsv1 without extension", frame(0x1, b"x", rsv=0x40), 1002, "Reserved bit"),
    ("opcode 0xC", frame(0xC, b""), 1002, "opcode"),
    ("oversized pong", frame(0xA, b"x" * 200), 1002, "len > 125"),
    ("continuation without start", frame(0x0, b"x"), 1002, "without a message"),
    ("bad close code", frame(0x8, (1006).to_bytes(2, "big")), 1002, "close code"),
    ("bad UTF-8 in text", frame(0x1, b"\xed\xa0\x80"), 1007, "UTF-8"),
]


@pytest.mark.parametrize(
    ("name", "data", "code", "detail"), CLIENT_CORPUS, ids=[c[0] for c in CLIENT_CORPUS]
)
@pytest.mark.parametrize("mode", MODES)
def test_client_fails_malformed_input(
    name: str, data: bytes, code: int, detail: str, mode: str
) -> None:
    client = open_client()
    events = feed(client, data, mode)
    closed = events[-1]
    assert isinstance(closed, Closed)
    assert (closed.code, closed.cause) == (code, CloseCause.PROTOCOL_ERROR)
    assert detail.lower() in closed.detail.lower()
    assert client.data_to_send() == frame(0x8, code.to_bytes(2, "big"), key=RFC_KEY)
    # RFC 6455 section 7.1.1: the client waits for the server to close the TCP connection
    assert not client.should_close_transport
    assert client.next_deadline() == 10.0
    client.handle_timer(10.0)
    assert client.should_close_transport


@pytest.mark.parametrize("mode", MODES)
def test_message_too_big_single_frame(mode: str) -> None:
    server = open_server(ConnectionConfig(max_message_size=10))
    events = feed(server, frame(0x2, b"x" * 11, key=RFC_KEY), mode)
    closed = events[-1]
    assert isinstance(closed, Closed)
    assert (closed.code, closed.cause) == (1009, CloseCause.PROTOCOL_ERROR)
    assert "max_message_size" in closed.detail
    assert server.data_to_send() == _close_frame_from_server(1009)


def test_message_exactly_at_limit_is_fine() -> None:
    server = open_server(ConnectionConfig(max_message_size=10))
    server.receive_data(frame(0x2, b"x" * 10, key=RFC_KEY), 0.0)
    assert server.events() == [MessageReceived(b"x" * 10)]


def test_message_too_big_across_fragments() -> None:
    server = open_server(ConnectionConfig(max_message_size=10))
    data = frame(0x1, b"x" * 6, fin=False, key=RFC_KEY) + frame(0x0, b"y" * 6, key=RFC_KEY)
    for mode in MODES:
        server = open_server(ConnectionConfig(max_message_size=10))
        closed = feed(server, data, mode)[-1]
        assert isinstance(closed, Closed)
        assert closed.code == 1009


def test_declared_huge_frame_fails_before_payload_arrives() -> None:
    server = open_server()  # 1 MiB limit
    header = bytes((0x82, 0xFF)) + (1 << 40).to_bytes(8, "big") + RFC_KEY
    server.receive_data(header, 0.0)
    closed = server.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == 1009
    assert server.data_to_send() == _close_frame_from_server(1009)


def test_no_size_limit_when_disabled() -> None:
    client = open_client(ConnectionConfig(max_message_size=None))
    client.receive_data(bytes((0x82, 0x7F)) + (1 << 40).to_bytes(8, "big") + b"abc", 0.0)
    assert client.events() == []
    assert client.state is ConnectionState.OPEN


def test_events_before_a_violation_are_kept() -> None:
    server = open_server()
    server.receive_data(HELLO_MASKED + frame(0x3, b"", key=RFC_KEY) + HELLO_MASKED, 0.0)
    assert server.events() == [MessageReceived("Hello")]
    # The failure waits one timer turn so the message can be answered first (Autobahn 3.2).
    assert server.next_deadline() == 0.0
    server.handle_timer(0.0)
    events = server.events()
    assert isinstance(events[0], Closed)
    assert len(events) == 1


def test_violation_while_closing_keeps_our_close_frame() -> None:
    server = open_server()
    server.close(1000, now=0.0)
    assert server.data_to_send() == _close_frame_from_server(1000)
    server.receive_data(frame(0x3, b"", key=RFC_KEY), 1.0)
    closed = server.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == 1002
    assert server.data_to_send() == b""  # only one close frame ever
    assert server.should_close_transport


# -- properties ------------------------------------------------------------------------

messages = st.lists(
    st.one_of(
        st.text(max_size=300).map(lambda t: ("text", t)),
        st.binary(max_size=300).map(lambda b: ("bytes", b)),
        st.binary(max_size=20).map(lambda b: ("ping", b)),
    ),
    max_size=8,
)


def _client_stream(items: list[tuple[str, object]], fragment_size: int | None) -> bytes:
    client = open_client(ConnectionConfig(fragment_size=fragment_size), key=b"\x01\x02\x03\x04")
    for index, (kind, value) in enumerate(items):
        if kind == "text":
            assert isinstance(value, str)
            client.send_text(value)
        elif kind == "bytes":
            assert isinstance(value, bytes)
            client.send_bytes(value)
        else:
            assert isinstance(value, bytes)
            client.ping(b"%d:" % index + value, now=0.0)
    client.close(1000, "bye", now=0.0)
    return client.data_to_send()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=messages, fragment_size=st.sampled_from([None, 1, 7, 64]), data=st.data())
def test_any_split_yields_same_events(
    items: list[tuple[str, object]], fragment_size: int | None, data: st.DataObject
) -> None:
    stream = _client_stream(items, fragment_size)
    whole = open_server()
    whole.receive_data(stream, 0.0)
    expected = whole.events()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    split = open_server()
    events = []
    last = 0
    for cut in [*cuts, len(stream)]:
        split.receive_data(stream[last:cut], 0.0)
        events += split.events()
        last = cut
    assert events == expected
    assert split.data_to_send() == whole.data_to_send()
    assert isinstance(expected[-1], Closed)
    assert expected[-1].cause is CloseCause.NORMAL
    received = [e.data for e in expected if isinstance(e, MessageReceived)]
    assert received == [value for kind, value in items if kind != "ping"]
    assert sum(isinstance(e, PingReceived) for e in expected) == len(items) - len(received)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=400), compression=st.booleans())
def test_random_bytes_never_raise_after_handshake(blob: bytes, compression: bool) -> None:
    config = ConnectionConfig(compression=DeflateConfig() if compression else None)
    client, server = open_pair(config, config)
    for conn in (client, server):
        conn.receive_data(blob, 1.0)
        for event in conn.events():
            if isinstance(event, Closed):
                assert event.cause in (CloseCause.PROTOCOL_ERROR, CloseCause.NORMAL)
        conn.data_to_send()
        conn.receive_eof(2.0)
        assert conn.should_close_transport


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=400), prefix=st.booleans())
def test_random_bytes_never_raise_during_handshake(blob: bytes, prefix: bool) -> None:
    server = ServerConnection()
    server.receive_data((request_bytes()[:40] if prefix else b"") + blob, 0.0)
    server.events()
    client = ClientConnection("ws://h/", mask_source=seeded_mask())
    client.receive_data((b"HTTP/1.1 101 OK\r\n" if prefix else b"") + blob, 0.0)
    client.events()
    for conn in (server, client):
        conn.receive_eof(1.0)
        assert conn.should_close_transport
        assert conn.state is ConnectionState.CLOSED


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(min_size=1, max_size=200))
def test_random_frames_masked_at_server(blob: bytes) -> None:
    """Random payloads behind a valid masked header exercise the deeper parser paths."""
    server = open_server(ConnectionConfig(compression=DeflateConfig()))
    first = blob[0] | 0x80
    server.receive_data(bytes((first, 0x80 | (len(blob) - 1) % 126)) + RFC_KEY + blob[1:], 0.0)
    server.events()
