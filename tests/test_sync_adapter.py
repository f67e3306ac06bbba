"""What only the blocking-sockets adapter has: threads, in-call I/O, a thread per handler.

The scenario suite (tests/adapters) covers the behaviour every adapter shares; these tests
cover the sync adapter's own promises: one client used from several threads, handlers
and events called outside the lock, per-connection backpressure, shutdown that closes
connections whose handler is busy, and the error surface of ``connect``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from time import monotonic
from typing import Any

import pytest

from tests.support.certs import TestPKI
from zenws_adapters import sync
from zenws_adapters._errors import ConnectError, ConnectionClosed, RequestTimeout
from zenws_core import (
    ClientClosedError,
    ClientState,
    Connected,
    ConnectionConfig,
    Disconnected,
    Envelope,
    GaveUp,
    HeartbeatConfig,
    ReconnectConfig,
    decode_envelope,
    encode_envelope,
)

NO_RECONNECT = ReconnectConfig(enabled=False)
QUIET = HeartbeatConfig(interval=None)


def echo(ws: sync.ServerWebSocket) -> None:
    for message in ws:
        ws.send(message)


@pytest.fixture
def echo_server() -> Iterator[sync.Server]:
    with sync.serve("127.0.0.1", 0, echo) as server:
        yield server


def test_one_thread_waits_in_recv_while_another_sends(echo_server: sync.Server) -> None:
    with sync.connect(echo_server.url) as client:
        got: list[str | bytes] = []
        reader = threading.Thread(target=lambda: got.extend(client.recv(10) for _ in range(50)))
        reader.start()

        def send_ten(k: int) -> None:
            for i in range(10):
                client.send_text(f"{k}:{i}")

        senders = [threading.Thread(target=send_ten, args=(k,)) for k in range(5)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        reader.join(20)
        assert sorted(got) == sorted(f"{k}:{i}" for k in range(5) for i in range(10))
        for k in range(5):  # each sender's messages stay in order
            mine = [m for m in got if isinstance(m, str) and m.startswith(f"{k}:")]
            assert mine == [f"{k}:{i}" for i in range(10)]


def test_handlers_take_matching_envelopes_and_recv_gets_the_rest(
    echo_server: sync.Server,
) -> None:
    seen: list[Any] = []
    with sync.connect(echo_server.url) as client:
        client.on("chat.*", seen.append)
        client.on_raw(lambda raw: seen.append(("raw", raw)))
        client.send("chat.message", {"text": "hi"})
        client.send_text("not json {")
        client.send("other", 1)
        assert json.loads(client.recv(10)) == {"type": "other", "data": 1}
        assert seen == [Envelope("chat.message", {"text": "hi"}), ("raw", "not json {")]


def test_handlers_may_call_the_client(echo_server: sync.Server) -> None:
    """Handlers run outside the client's lock, so they can send (and the reply arrives)."""
    with sync.connect(echo_server.url) as client:
        client.on("ping.app", lambda env: client.send_text(f"pong {env.data}"))
        client.send("ping.app", 7)
        assert client.recv(10) == "pong 7"


def test_request_reply_and_timeout() -> None:
    def server(ws: sync.ServerWebSocket) -> None:
        for message in ws:
            envelope = decode_envelope(message)
            if isinstance(envelope, Envelope) and envelope.type == "add":
                ws.send(encode_envelope(envelope.reply("sum", sum(envelope.data))))
            # "ignore" requests get no reply

    with sync.serve("127.0.0.1", 0, server) as srv, sync.connect(srv.url) as client:
        reply = client.request("add", [1, 2, 3], timeout=10)
        assert (reply.type, reply.data) == ("sum", 6)
        with pytest.raises(RequestTimeout) as info:
            client.request("ignore", None, timeout=0.2)
        assert info.value.type == "ignore"
        assert client.stats().requests_timed_out == 1


def test_on_event_sees_lifecycle_and_iteration_ends_when_closed_for_good() -> None:
    def server(ws: sync.ServerWebSocket) -> None:
        ws.send("one")
        ws.send("two")
        ws.close(4000, "bye")

    events: list[Any] = []
    with sync.serve("127.0.0.1", 0, server) as srv:
        client = sync.connect(srv.url, reconnect=NO_RECONNECT, wait_open=False)
        client.on_event(events.append)  # before any I/O: wait_open=False returns at once
        assert list(client) == ["one", "two"]
        assert client.state is ClientState.CLOSED
        with pytest.raises(ConnectionClosed) as info:
            client.recv(1)
        assert (info.value.code, info.value.reason) == (4000, "bye")
        client.close()
    assert any(isinstance(e, Disconnected) and e.code == 4000 for e in events)
    assert any(isinstance(e, GaveUp) for e in events)
    assert any(isinstance(e, Connected) for e in client.events_seen)


def test_send_after_close_is_refused(echo_server: sync.Server) -> None:
    client = sync.connect(echo_server.url)
    client.close()
    with pytest.raises(ClientClosedError):
        client.send_text("late")


def test_connect_refused_without_reconnect_raises_connect_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(ConnectError) as info:
            sync.connect(f"ws://127.0.0.1:{port}/", reconnect=NO_RECONNECT)
    assert isinstance(info.value.event, GaveUp)


def test_open_timeout_raises_connect_error() -> None:
    """The TCP connection opens but the handshake never completes."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with pytest.raises(ConnectError, match=r"within 0\.2s"):
            sync.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)


def test_handler_return_closes_1000_and_raise_closes_1011() -> None:
    def server(ws: sync.ServerWebSocket) -> None:
        message = ws.recv(10)
        if message == "fail":
            raise RuntimeError("handler bug (expected by the test)")

    with sync.serve("127.0.0.1", 0, server) as srv:
        for message, code in (("ok", 1000), ("fail", 1011)):
            client = sync.connect(srv.url, reconnect=NO_RECONNECT)
            client.send_text(message)
            with pytest.raises(ConnectionClosed) as info:
                client.recv(10)
            assert info.value.code == code
            client.close()


def test_server_stops_reading_when_the_handler_does_not_consume() -> None:
    """At most INBOX_LIMIT messages (plus one read's worth) wait in memory per connection."""
    size, count = 64 * 1024, 200
    peak: list[int] = []
    got: list[str | bytes] = []

    def server(ws: sync.ServerWebSocket) -> None:
        for _ in range(count):
            got.append(ws.recv(30))
            peak.append(len(ws._inbox))
        ws.send("done")

    with sync.serve("127.0.0.1", 0, server) as srv, sync.connect(srv.url) as client:

        def send_all() -> None:
            for i in range(count):
                client.send_bytes(bytes([i % 256]) * size)

        sender = threading.Thread(target=send_all)
        sender.start()
        sender.join(30)
        assert client.recv(30) == "done"
    assert got == [bytes([i % 256]) * size for i in range(count)]
    per_read = 256 * 1024 // size
    assert max(peak) <= sync.INBOX_LIMIT + per_read


def test_a_step_whose_write_empties_the_output_does_not_then_wait() -> None:
    """A sender waiting for its bytes to go out is not put to sleep once they went.

    Its step writes them first; it must not then wait in ``select`` for input that may never
    come (here: none, no heartbeat), while the peer waits for those very bytes.
    """
    release = threading.Event()

    def server(ws: sync.ServerWebSocket) -> None:
        ws.recv(10)
        release.wait(10)  # silent: nothing for the client to read

    with sync.serve("127.0.0.1", 0, server) as srv:
        client = sync.connect(srv.url, reconnect=NO_RECONNECT, heartbeat=QUIET)
        with client._lock:  # bytes ready in the client's output, not yet written
            client._core.send_text("x", now=monotonic())
            client._out += client._core.data_to_send()
        stepper = threading.Thread(target=client._step, args=(None,))
        stepper.start()
        stepper.join(5)
        stalled = stepper.is_alive()
        release.set()
        client.close()  # wakes a stalled step up
        stepper.join(5)
    assert not stalled
    assert not client._out


def test_shutdown_closes_1001_even_when_the_handler_is_busy() -> None:
    busy = threading.Event()
    release = threading.Event()

    def server(ws: sync.ServerWebSocket) -> None:
        ws.recv(10)
        busy.set()
        release.wait(10)  # not reading: the shutdown thread drives the closing handshake

    srv = sync.serve("127.0.0.1", 0, server)
    client = sync.connect(srv.url, reconnect=NO_RECONNECT)
    client.send_text("x")
    assert busy.wait(10)
    closer = threading.Thread(target=srv.shutdown)
    closer.start()
    with pytest.raises(ConnectionClosed) as info:
        client.recv(10)
    release.set()
    closer.join(10)
    assert info.value.code == 1001
    assert srv.status().connections == 0
    client.close()


def test_ping_both_ways_and_server_websocket_attributes() -> None:
    seen: dict[str, Any] = {}

    def server(ws: sync.ServerWebSocket) -> None:
        seen.update(
            path=ws.path,
            token=ws.headers.get("x-token"),
            subprotocol=ws.subprotocol,
            rtt=ws.ping(10),
        )
        ws.send_json({"ok": True})
        ws.recv(10)

    with (
        sync.serve("127.0.0.1", 0, server, subprotocols=("v1",)) as srv,
        sync.connect(srv.url + "room?id=1", subprotocols=("v1",), headers={"X-Token": "t"}) as c,
    ):
        assert json.loads(c.recv(10)) == {"ok": True}
        assert c.ping(10) >= 0.0
        assert c.subprotocol == "v1"
        c.send_text("bye")
    assert seen["path"] == "/room"
    assert seen["token"] == "t"
    assert seen["subprotocol"] == "v1"
    assert seen["rtt"] >= 0.0


def test_ipv6_literal() -> None:
    with sync.serve("::1", 0, echo) as srv:
        assert srv.url == f"ws://[::1]:{srv.port}/"
        with sync.connect(srv.url) as client:
            client.send_bytes(b"six")
            assert client.recv(10) == b"six"


def test_recv_timeout_drives_timers_without_a_message(echo_server: sync.Server) -> None:
    with sync.connect(echo_server.url) as client:
        with pytest.raises(TimeoutError):
            client.recv(0.05)
        assert client.state is ClientState.OPEN


def test_server_send_after_close_raises_connection_closed() -> None:
    outcome: list[Any] = []

    def server(ws: sync.ServerWebSocket) -> None:
        ws.close(4001, "done")
        try:
            ws.send("too late")
        except ConnectionClosed as exc:
            outcome.append(exc.code)

    with sync.serve("127.0.0.1", 0, server) as srv:
        client = sync.connect(srv.url, reconnect=NO_RECONNECT)
        with pytest.raises(ConnectionClosed):
            client.recv(10)
        client.close()
    assert outcome == [4001]


def test_tls_server_drops_a_stalled_handshake_and_serves_others(pki: TestPKI) -> None:
    """The TLS handshake runs in the connection's own reads, bounded by handshake_timeout."""
    with (
        sync.serve(
            "127.0.0.1",
            0,
            echo,
            ssl=pki.server_context(),
            connection=ConnectionConfig(handshake_timeout=0.3),
        ) as srv,
        socket.create_connection(("127.0.0.1", srv.port)) as stalled,  # sends no ClientHello
    ):
        stalled.settimeout(10)
        with sync.connect(srv.url, ssl=pki.client_context()) as client:
            client.send_text("meanwhile")
            assert client.recv(10) == "meanwhile"
        with contextlib.suppress(ConnectionResetError):  # closed (or reset) by the server
            assert stalled.recv(1) == b""
