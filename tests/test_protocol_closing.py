"""Closing (RFC 6455 section 7), ping/pong, stats and write backpressure."""

from __future__ import annotations

import pytest

from tests.test_protocol_helpers import RFC_KEY, frame, open_client, open_pair, open_server, pump
from zenws_core._config import ConnectionConfig
from zenws_core._events import (
    CloseCause,
    Closed,
    CloseReceived,
    Initiator,
    MessageReceived,
    PingReceived,
    PongReceived,
)
from zenws_core._protocol import ConnectionState, ConnectionStateError, validate_close_code


def _closed(events: list[object]) -> Closed:
    closed = events[-1]
    assert isinstance(closed, Closed)
    assert sum(isinstance(e, Closed) for e in events) == 1
    return closed


# -- close code validation ------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000])
def test_unsendable_close_codes(code: int) -> None:
    client, _ = open_pair()
    with pytest.raises(ValueError, match="cannot be sent"):
        client.close(code, now=0.0)
    with pytest.raises(ValueError, match="cannot be sent"):
        client.fail(code, now=0.0)
    assert client.state is ConnectionState.OPEN


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1008, 1011, 1012, 1014, 3000, 3999, 4000, 4999])
def test_sendable_close_codes(code: int) -> None:
    assert validate_close_code(code, "ok") == code.to_bytes(2, "big") + b"ok"


def test_close_reason_limit() -> None:
    validate_close_code(1000, "é" * 61 + "x")  # 123 bytes
    with pytest.raises(ValueError, match="123"):
        validate_close_code(1000, "é" * 62)


# -- closing handshake ---------------------------------------------------------------------


def test_client_initiated_close() -> None:
    client, server = open_pair(now=0.0)
    client.close(1001, "going away", now=1.0)
    assert client.state is ConnectionState.CLOSING
    assert client.next_deadline() == 11.0
    with pytest.raises(ConnectionStateError):
        client.send_text("too late")
    client_events, server_events = pump(client, server, now=2.0)
    assert server_events == [
        CloseReceived(1001, "going away"),
        Closed(1001, "going away", Initiator.REMOTE, CloseCause.NORMAL, True),
    ]
    assert client_events == [
        CloseReceived(1001, ""),
        Closed(1001, "", Initiator.LOCAL, CloseCause.NORMAL, True),
    ]
    # RFC 6455 section 7.1.1: the server closes the TCP connection first ...
    assert server.should_close_transport
    assert server.next_deadline() is None
    # ... and the client waits for that EOF until the close deadline
    assert client.state is ConnectionState.CLOSED
    assert not client.should_close_transport
    assert client.next_deadline() == 11.0
    client.receive_eof(3.0)
    assert client.should_close_transport
    assert client.events() == []
    assert client.stats().close_code == 1001


def test_client_gives_up_waiting_for_server_eof() -> None:
    client, server = open_pair()
    client.close(now=0.0)
    pump(client, server)
    client.handle_timer(9.0)
    assert not client.should_close_transport
    client.handle_timer(10.0)
    assert client.should_close_transport
    assert client.events() == []


def test_server_initiated_close_is_echoed_by_client() -> None:
    client, server = open_pair()
    server.close(4000, "app says bye", now=5.0)
    client_events, server_events = pump(client, server, now=6.0)
    assert client_events[0] == CloseReceived(4000, "app says bye")
    assert _closed(client_events).initiator is Initiator.REMOTE
    assert _closed(server_events) == Closed(4000, "", Initiator.LOCAL, CloseCause.NORMAL, True)
    assert server.should_close_transport
    assert client.next_deadline() == 16.0  # remote close: deadline set at the echo


def test_close_echo_bytes_and_empty_close() -> None:
    server = open_server()
    server.receive_data(frame(0x8, b"\x03\xe8bye", key=RFC_KEY), 0.0)
    assert server.data_to_send() == b"\x88\x02\x03\xe8"  # same code, no reason
    server = open_server()
    server.receive_data(frame(0x8, b"", key=RFC_KEY), 0.0)
    events = server.events()
    assert events[0] == CloseReceived(1005, "")
    assert _closed(events).code == 1005
    assert server.data_to_send() == b"\x88\x00"  # an empty close is echoed empty
    client = open_client()
    client.receive_data(b"\x88\x00", 0.0)
    assert client.data_to_send() == b"\x88\x80" + RFC_KEY


def test_simultaneous_close() -> None:
    client, server = open_pair()
    client.close(1000, now=0.0)
    server.close(1001, now=0.0)
    client_events, server_events = pump(client, server)
    assert _closed(client_events) == Closed(1001, "", Initiator.LOCAL, CloseCause.NORMAL, True)
    assert _closed(server_events) == Closed(1000, "", Initiator.LOCAL, CloseCause.NORMAL, True)


def test_messages_still_received_while_closing() -> None:
    server = open_server()
    server.close(now=0.0)
    server.data_to_send()
    server.receive_data(frame(0x1, b"late", key=RFC_KEY) + frame(0x9, b"p", key=RFC_KEY), 0.0)
    assert server.events() == [MessageReceived("late"), PingReceived(b"p")]
    assert server.data_to_send() == b""  # no pong after our close frame (section 5.5.1)


def test_data_after_close_frame_ignored() -> None:
    server = open_server()
    server.receive_data(frame(0x8, b"", key=RFC_KEY) + frame(0x1, b"x", key=RFC_KEY), 0.0)
    events = server.events()
    assert not any(isinstance(e, MessageReceived) for e in events)
    server.receive_data(frame(0x1, b"y", key=RFC_KEY), 0.0)
    assert server.events() == []


def test_close_is_idempotent_once_closing() -> None:
    client, server = open_pair()
    client.close(now=0.0)
    first = client.data_to_send()
    client.close(4000, now=0.0)
    assert client.data_to_send() == b""
    server.receive_data(first, 0.0)
    client.receive_data(server.data_to_send(), 0.0)
    assert _closed(client.events()).cause is CloseCause.NORMAL
    client.close(now=0.0)
    client.fail(now=0.0)
    assert client.events() == []
    assert client.data_to_send() == b""


def test_fail_while_closing_ends_at_once_without_second_close_frame() -> None:
    client, _ = open_pair()
    client.close(now=0.0)
    client.data_to_send()
    client.fail(1011, now=1.0)
    closed = _closed(client.events())
    assert (closed.code, closed.cause) == (1011, CloseCause.LOCAL_ERROR)
    assert client.data_to_send() == b""


def test_close_timeout() -> None:
    client, _ = open_pair()
    client.close(now=100.0)
    assert client.next_deadline() == 110.0
    client.handle_timer(105.0)
    assert client.events() == []
    client.handle_timer(110.5)
    closed = _closed(client.events())
    assert closed == Closed(
        1006,
        "",
        Initiator.LOCAL,
        CloseCause.CLOSE_TIMEOUT,
        False,
        "the peer did not answer our close frame within close_timeout",
    )
    assert client.should_close_transport
    assert client.next_deadline() is None


def test_close_without_timeout() -> None:
    client, _ = open_pair(ConnectionConfig(close_timeout=None))
    client.close(now=0.0)
    assert client.next_deadline() is None


def test_eof_without_close() -> None:
    client, server = open_pair()
    server.receive_eof(1.0)
    closed = _closed(server.events())
    assert closed == Closed(
        1006, "", Initiator.NONE, CloseCause.EOF, False, "transport closed without a close frame"
    )
    assert server.should_close_transport
    assert server.stats().close_code == 1006
    client.close(now=0.0)
    client.receive_eof(1.0)
    closed = _closed(client.events())
    assert (closed.code, closed.cause, closed.initiator) == (1006, CloseCause.EOF, Initiator.LOCAL)


def test_eof_mid_message_discards_it() -> None:
    server = open_server()
    server.receive_data(frame(0x1, b"part", fin=False, key=RFC_KEY), 0.0)
    server.receive_eof(0.0)
    assert _closed(server.events()).cause is CloseCause.EOF


def test_local_failure() -> None:
    client, server = open_pair()
    client.fail(1011, "database down", now=1.0)
    closed = _closed(client.events())
    assert closed == Closed(
        1011, "database down", Initiator.LOCAL, CloseCause.LOCAL_ERROR, False, "database down"
    )
    assert client.state is ConnectionState.CLOSED
    _, server_events = pump(client, server)
    assert server_events[0] == CloseReceived(1011, "database down")
    server2 = open_server()
    server2.fail(now=0.0)
    assert server2.data_to_send() == b"\x88\x02\x03\xf3"
    assert server2.should_close_transport
    assert _closed(server2.events()).detail == "failed locally"


def test_closed_event_kept_after_draining() -> None:
    client, server = open_pair()
    assert client.closed_event is None
    client.close(now=0.0)
    pump(client, server)
    assert client.closed_event == Closed(1000, "", Initiator.LOCAL, CloseCause.NORMAL, True)


def test_receive_after_transport_closed_is_ignored() -> None:
    server = open_server()
    server.receive_eof(0.0)
    server.events()
    server.receive_data(frame(0x1, b"x", key=RFC_KEY), 0.0)
    server.receive_eof(0.0)
    server.handle_timer(1e9)
    assert server.events() == []


# -- ping / pong ---------------------------------------------------------------------------


def test_ping_round_trip() -> None:
    client, server = open_pair()
    payload = client.ping(now=10.0)
    assert len(payload) == 4
    server.receive_data(client.data_to_send(), 10.1)
    assert server.events() == [PingReceived(payload)]
    client.receive_data(server.data_to_send(), 10.25)
    (pong,) = client.events()
    assert isinstance(pong, PongReceived)
    assert pong.payload == payload
    assert pong.round_trip == pytest.approx(0.25)
    stats = client.stats()
    assert (stats.pings_sent, stats.pongs_received) == (1, 1)
    assert stats.last_round_trip == pytest.approx(0.25)
    assert (server.stats().pings_received, server.stats().pongs_sent) == (1, 1)


def test_pong_acknowledges_earlier_pings() -> None:
    client = open_client()
    client.ping(b"a", now=1.0)
    client.ping(b"b", now=2.0)
    client.ping(b"c", now=3.0)
    client.receive_data(frame(0xA, b"b"), 4.0)
    client.receive_data(frame(0xA, b"a"), 5.0)  # already acknowledged by "b"
    client.receive_data(frame(0xA, b"c"), 6.0)
    assert client.events() == [
        PongReceived(b"b", 2.0),
        PongReceived(b"a", None),
        PongReceived(b"c", 3.0),
    ]


def test_ping_misuse() -> None:
    client = open_client()
    client.ping(b"same", now=0.0)
    with pytest.raises(ValueError, match="already waiting"):
        client.ping(b"same", now=0.0)
    with pytest.raises(ValueError, match="125"):
        client.ping(b"x" * 126, now=0.0)


def test_auto_ping_payloads_unique_even_with_constant_source() -> None:
    client = open_client()  # its mask source always returns the same key
    payloads = {client.ping(now=0.0) for _ in range(5)}
    assert len(payloads) == 5


def test_ping_frame_bytes() -> None:
    client = open_client()
    client.ping(b"Hello", now=0.0)
    assert client.data_to_send() == bytes.fromhex("898537fa213d7f9f4d5158")


# -- stats and backpressure ----------------------------------------------------------------


def test_stats_counters() -> None:
    client, server = open_pair()
    client.send_text("héllo")  # 6 bytes
    client.send_bytes(b"1234")
    server.send_text("x")
    client.ping(now=0.0)
    pump(client, server)
    client_stats = client.stats()
    server_stats = server.stats()
    assert (client_stats.messages_out, client_stats.bytes_out) == (2, 10)
    assert (server_stats.messages_in, server_stats.bytes_in) == (2, 10)
    assert (client_stats.messages_in, client_stats.bytes_in) == (1, 1)
    assert client_stats.wire_bytes_out == server_stats.wire_bytes_in
    assert server_stats.wire_bytes_out == client_stats.wire_bytes_in
    assert client_stats.close_code is None
    assert client_stats.close_reason is None


def test_pending_bytes_and_writing_paused() -> None:
    server = open_server(ConnectionConfig(write_high_water=100))
    assert (server.pending_bytes, server.writing_paused) == (0, False)
    server.send_bytes(b"x" * 98)  # 100 bytes with the header
    assert (server.pending_bytes, server.writing_paused) == (100, False)
    server.send_bytes(b"y")
    assert (server.pending_bytes, server.writing_paused) == (103, True)
    assert len(server.data_to_send()) == 103
    assert (server.pending_bytes, server.writing_paused) == (0, False)
    assert server.data_to_send() == b""
