"""Regressions found by the Autobahn testsuite, replayed as bytes under a fake clock.

Autobahn 3.2, 3.3, 3.4, 4.1.3-4.1.5, 4.2.3-4.2.5 and 5.15 send a valid message and then, in
the same TCP segment, a frame that breaks the protocol.  The strict expectation is that the
valid message is echoed before the connection is failed (RFC 6455 section 7.1.7 fails the
connection, it does not retract what was already received).  An adapter that answers
messages from another task only sees them after ``events()``, so the failure waits for the
next ``handle_timer`` (deadline ``now``).
"""

from __future__ import annotations

import pytest

from tests.test_protocol_helpers import RFC_KEY, frame, open_client, open_server
from zenws_core._config import ConnectionConfig
from zenws_core._events import (
    CloseCause,
    Closed,
    FragmentReceived,
    Initiator,
    MessageReceived,
    PingReceived,
)
from zenws_core._protocol import ConnectionState

HELLO = frame(0x1, b"Hello, world!", key=RFC_KEY)
PING = frame(0x9, b"", key=RFC_KEY)
ECHO = bytes((0x81, 13)) + b"Hello, world!"

# (name, bad frame, close code) after a valid text message, all in one input
VIOLATIONS = [
    ("3.2 RSV1 without an extension", frame(0x1, b"Hello, world!", rsv=0x40, key=RFC_KEY), 1002),
    ("3.3 RSV2", frame(0x1, b"Hello, world!", rsv=0x20, key=RFC_KEY), 1002),
    ("3.4 RSV3", frame(0x1, b"Hello, world!", rsv=0x10, key=RFC_KEY), 1002),
    ("4.1.3 reserved data opcode 3", frame(0x3, b"", key=RFC_KEY), 1002),
    ("4.2.3 reserved control opcode 11", frame(0xB, b"", key=RFC_KEY), 1002),
    ("5.15 continuation of nothing", frame(0x0, b"fragment4", fin=False, key=RFC_KEY), 1002),
    ("invalid UTF-8", frame(0x1, b"\xff", key=RFC_KEY), 1007),
]


def _close_from_server(code: int) -> bytes:
    return bytes((0x88, 0x02)) + code.to_bytes(2, "big")


@pytest.mark.parametrize(("name", "bad", "code"), VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_message_before_violation_is_answered_before_the_close(
    name: str, bad: bytes, code: int
) -> None:
    server = open_server()
    server.receive_data(HELLO + bad + PING, 5.0)
    assert server.events() == [MessageReceived("Hello, world!")]
    assert server.state is ConnectionState.OPEN
    assert server.data_to_send() == b""  # nothing decided yet: the close waits
    assert server.next_deadline() == 5.0
    server.send_text("Hello, world!")  # the application answers from its own turn
    server.handle_timer(5.0)
    events = server.events()
    assert len(events) == 1
    closed = events[0]
    assert isinstance(closed, Closed)
    assert (closed.code, closed.cause, closed.initiator) == (
        code,
        CloseCause.PROTOCOL_ERROR,
        Initiator.LOCAL,
    )
    # wire order: the echo, then the close frame; the ping after the bad frame is ignored
    assert server.data_to_send() == ECHO + _close_from_server(code)
    assert server.should_close_transport


def test_timer_before_the_deadline_does_not_fail() -> None:
    server = open_server()
    server.receive_data(HELLO + frame(0x3, b"", key=RFC_KEY), 5.0)
    server.events()
    server.handle_timer(4.0)
    assert server.state is ConnectionState.OPEN
    assert server.events() == []


def test_input_after_a_deferred_violation_is_ignored() -> None:
    server = open_server()
    server.receive_data(HELLO + frame(0x3, b"", key=RFC_KEY), 0.0)
    assert server.events() == [MessageReceived("Hello, world!")]
    server.receive_data(HELLO + PING, 0.0)
    assert server.events() == []
    assert server.data_to_send() == b""  # no pong, no second message
    assert server.stats().messages_in == 1


def test_violation_with_no_undelivered_message_fails_at_once() -> None:
    server = open_server()
    server.receive_data(HELLO, 0.0)
    assert server.events() == [MessageReceived("Hello, world!")]
    server.receive_data(frame(0x3, b"", key=RFC_KEY), 0.0)
    events = server.events()
    assert isinstance(events[-1], Closed)
    assert server.data_to_send() == _close_from_server(1002)


def test_only_a_ping_before_the_violation_fails_at_once() -> None:
    server = open_server()
    server.receive_data(PING + frame(0x3, b"", key=RFC_KEY), 0.0)
    events = server.events()
    assert isinstance(events[0], PingReceived)
    assert isinstance(events[-1], Closed)


def test_unfinished_streamed_fragment_does_not_defer() -> None:
    server = open_server(ConnectionConfig(streaming=True))
    server.receive_data(frame(0x1, b"abc", fin=False, key=RFC_KEY) + frame(0x3, key=RFC_KEY), 0.0)
    events = server.events()
    assert events[0] == FragmentReceived("abc", False)
    assert isinstance(events[-1], Closed)


def test_finished_streamed_message_defers() -> None:
    server = open_server(ConnectionConfig(streaming=True))
    server.receive_data(HELLO + frame(0x3, key=RFC_KEY), 0.0)
    assert server.events() == [FragmentReceived("Hello, world!", True)]
    assert server.next_deadline() == 0.0


def test_eof_during_a_deferred_violation_fails_with_its_code() -> None:
    client = open_client()
    client.receive_data(frame(0x1, b"hi") + frame(0x3), 0.0)
    assert client.events() == [MessageReceived("hi")]
    client.receive_eof(0.5)
    closed = client.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == 1002
    assert closed.cause is CloseCause.PROTOCOL_ERROR
    assert client.should_close_transport  # the EOF already came: no wait
    assert client.next_deadline() is None


def test_application_close_during_a_deferred_violation_sends_the_violation_code() -> None:
    server = open_server()
    server.receive_data(HELLO + frame(0x1, b"\xff", key=RFC_KEY), 0.0)
    server.events()
    server.close(1000, now=0.0)
    closed = server.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == 1007
    assert server.data_to_send() == _close_from_server(1007)


def test_local_fail_during_a_deferred_violation_wins() -> None:
    client = open_client()
    client.receive_data(frame(0x1, b"hi") + frame(0x3), 0.0)
    client.events()
    client.fail(1011, "bye", now=0.0)
    closed = client.events()[-1]
    assert isinstance(closed, Closed)
    assert closed.code == 1011
    deadline = client.next_deadline()
    assert deadline is not None
    client.handle_timer(deadline)  # the EOF wait ends as usual
    assert client.should_close_transport


# Autobahn 6.4.3 / 6.4.4: one text frame whose payload arrives in chops; the invalid UTF-8
# sequence in the second chop must fail the connection before the rest of the frame arrives.
FAIL_FAST_TEXT = bytes.fromhex("cebae1bdb9cf83cebcceb5f4908080656469746564")


@pytest.mark.parametrize("masked", [True, False], ids=["server", "client"])
@pytest.mark.parametrize("cut", [11, 12, 13, 14])
def test_invalid_utf8_in_a_partial_text_frame_fails_fast(masked: bool, cut: int) -> None:
    conn = open_server() if masked else open_client()
    data = frame(0x1, FAIL_FAST_TEXT, key=RFC_KEY if masked else None)
    head = len(data) - len(FAIL_FAST_TEXT)
    conn.receive_data(data[: head + 11], 0.0)  # valid so far (cebae1bdb9cf83cebcceb5)
    assert conn.events() == []
    conn.receive_data(data[head + 11 : head + cut + 1], 0.0)  # f4 alone is still a prefix...
    events = conn.events()
    if cut < 12:
        assert events == []
        return
    # ...but f4 90 can never become valid UTF-8 (above U+10FFFF): fail now, not at the end.
    assert len(events) == 1
    closed = events[0]
    assert isinstance(closed, Closed)
    assert closed.code == 1007


def test_partial_text_frame_checked_across_many_reads() -> None:
    server = open_server()
    text = "zenws é ✓ 🙂 " * 200
    data = frame(0x1, text.encode(), key=RFC_KEY)
    for i in range(0, len(data), 7):  # every 7 bytes: split keys and multi-byte characters
        server.receive_data(data[i : i + 7], 0.0)
    assert server.events() == [MessageReceived(text)]
    assert server.state is ConnectionState.OPEN


def test_partial_binary_frame_is_not_checked() -> None:
    server = open_server()
    data = frame(0x2, b"\xf4\x90\x80\x80" * 10, key=RFC_KEY)
    server.receive_data(data[:10], 0.0)
    server.receive_data(data[10:], 0.0)
    assert server.events() == [MessageReceived(b"\xf4\x90\x80\x80" * 10)]
