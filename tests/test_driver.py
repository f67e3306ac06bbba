"""zenws_adapters._driver on its own: fake hooks, a fake clock, no sockets.

A ``ClientDriver`` around a real ``ReconnectingClient`` talks to a real ``ServerHub``
session through an in-memory pipe; every adapter relies on what these tests pin down.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest

from zenws_adapters import _common
from zenws_adapters._driver import (
    EVENTS_SEEN_LIMIT,
    ClientDriver,
    Pending,
    ServerDriver,
    SessionDriver,
    build_core,
    call_user,
    encode_json,
    server_config,
)
from zenws_adapters._errors import ConnectError, ConnectionClosed, RequestTimeout
from zenws_core import (
    Connected,
    Disconnected,
    Envelope,
    GaveUp,
    HeartbeatLate,
    OpenTransport,
    ReconnectConfig,
    ServerConfig,
    ServerHub,
    ServerSession,
)

NO_RECONNECT = ReconnectConfig(enabled=False)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Pipe:
    """A client driver and one server session joined in memory; a fake clock."""

    def __init__(self, **options: Any) -> None:
        self.clock = Clock()
        self.wakes = 0
        self.reading: list[bool] = []
        self.calls: list[tuple[Any, Any]] = []
        options.setdefault("rng", random.Random(1))
        self.hub = ServerHub(ServerConfig(), now=self.clock())
        self.session: ServerSession | None = None
        self.server_inbox: list[str | bytes] = []
        self.refuse = False
        self.client = ClientDriver(
            build_core("ws://example.test/", options),
            clock=self.clock,
            wake=self._wake,
            reading=self.reading.append,
            run=self._run,
            inbox_limit=4,
        )
        self.core = self.client._core

    def _wake(self) -> None:
        self.wakes += 1

    def _run(self, handler: Any, argument: Any) -> None:
        self.calls.append((handler, argument))
        call_user(handler, argument)

    def start(self) -> None:
        self.core.start(self.clock())
        self.pump()

    def pump(self) -> None:
        """Move bytes both ways and dispatch until nothing moves."""
        now = self.clock()
        for _ in range(100):
            moved = False
            for action in self.core.actions():
                moved = True
                if isinstance(action, OpenTransport):
                    if self.refuse:
                        self.core.connection_failed("refused", now, refused=True)
                    else:
                        self.session = self.hub.session(now)
                        self.core.connection_made(now)
                else:
                    self.session = None
            data = self.core.data_to_send()
            if data and self.session is not None:
                moved = True
                self.session.receive_data(data, now)
            if self.session is not None:
                for event in self.session.events():
                    message = getattr(event, "data", None)
                    if message is not None:
                        self.server_inbox.append(message)
                back = self.session.data_to_send()
                if back:
                    moved = True
                    self.core.receive_data(back, now)
            self.client._dispatch_events()
            if not moved:
                return

    def reply(self, text: str) -> None:
        assert self.session is not None
        self.session.send(text)
        self.pump()

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.core.handle_timer(self.clock())
        if self.session is not None:
            self.session.handle_timer(self.clock())
        self.pump()


def opened(pipe: Pipe) -> Pending[None]:
    waiter: Pending[None] = pipe.client._open_waiter(Pending())
    pipe.start()
    return waiter


def test_open_waiter_settles_on_connected_and_subprotocol_is_kept() -> None:
    pipe = Pipe()
    waiter = opened(pipe)
    assert waiter.done()
    assert waiter.result() is None
    assert pipe.client.subprotocol is None
    assert any(isinstance(e, Connected) for e in pipe.client.events_seen)
    late: Pending[None] = pipe.client._open_waiter(Pending())
    assert late.done()  # already open: settled at once
    assert pipe.wakes > 0


def test_gave_up_fails_the_open_waiter_with_connect_error() -> None:
    pipe = Pipe(reconnect=NO_RECONNECT)
    pipe.refuse = True
    waiter = opened(pipe)
    assert waiter.done()
    with pytest.raises(ConnectError, match=r"could not connect to ws://example\.test/") as info:
        waiter.result()
    assert isinstance(info.value.event, GaveUp)
    after: Pending[None] = pipe.client._open_waiter(Pending())
    with pytest.raises(ConnectError):
        after.result()
    assert "not open within 2s" in str(pipe.client._open_timed_out(2.0))


def test_messages_without_handlers_go_to_the_inbox_and_reading_pauses() -> None:
    pipe = Pipe()
    opened(pipe)
    assert pipe.client._take() is None
    for n in range(5):
        pipe.reply(f"m{n}")
    assert pipe.reading == [True]  # the 4th message filled the inbox
    assert pipe.client._reading_paused
    assert [pipe.client._take() for _ in range(2)] == ["m0", "m1"]
    assert pipe.reading == [True]  # 3 left: above half the limit
    assert pipe.client._take() == "m2"
    assert pipe.reading == [True, False]
    assert not pipe.client._reading_paused


def test_handlers_take_their_envelopes_and_raw_handlers_their_messages() -> None:
    pipe = Pipe()
    got: list[Any] = []
    pipe.client.on("chat.*", got.append)
    pipe.client.on_raw(got.append)
    opened(pipe)
    pipe.reply(encode_json({"type": "chat.say", "data": 1}))
    pipe.reply("plain text")
    assert isinstance(got[0], Envelope)
    assert got[0].type == "chat.say"
    assert got[1] == "plain text"
    assert pipe.client._take() is None  # nothing left for recv


def test_failing_user_code_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(argument: Any) -> None:
        raise ValueError("expected by the test")

    assert call_user(broken, 1) is None
    assert "expected by the test" in caplog.text

    async def later(argument: Any) -> int:
        return 1

    awaitable = call_user(later, 1)
    assert awaitable is not None
    awaitable.close()  # type: ignore[attr-defined]


def test_request_reply_timeout_and_close_cancel() -> None:
    pipe = Pipe()
    opened(pipe)
    client, core = pipe.client, pipe.core
    request_id = core.request("sum", [1, 2], now=pipe.clock(), timeout=5)
    reply: Pending[Envelope] = client._expect_reply(request_id, Pending())
    pipe.pump()
    assert pipe.server_inbox
    assert not reply.done()
    pipe.reply(encode_json({"type": "sum", "id": request_id, "data": 3}))
    assert reply.done()
    assert reply.result().data == 3

    slow: Pending[Envelope] = client._expect_reply(
        core.request("slow", now=pipe.clock(), timeout=1), Pending()
    )
    pipe.advance(1.5)
    with pytest.raises(RequestTimeout):
        slow.result()

    pending: Pending[Envelope] = client._expect_reply(
        core.request("never", now=pipe.clock()), Pending()
    )
    core.close(now=pipe.clock())
    pipe.pump()
    assert pending.done()
    with pytest.raises(ConnectionClosed):
        pending.result()


def test_ping_round_trip_from_the_fake_clock_and_failure_when_not_open() -> None:
    pipe = Pipe()
    with pytest.raises(ConnectionClosed):
        pipe.client._start_ping(Pending())
    opened(pipe)
    pong: Pending[float] = pipe.client._start_ping(Pending())
    pipe.pump()
    assert pong.done()
    assert pong.result() == pytest.approx(0.0)


def test_disconnect_fails_pings_and_close_ends_iteration() -> None:
    pipe = Pipe(reconnect=NO_RECONNECT)
    opened(pipe)
    pong: Pending[float] = pipe.client._start_ping(Pending())
    pipe.core.connection_lost("reset", pipe.clock())
    pipe.session = None
    pipe.pump()
    with pytest.raises(ConnectionClosed):
        pong.result()
    assert any(isinstance(e, Disconnected) for e in pipe.client.events_seen)
    with pytest.raises(ConnectionClosed):
        pipe.client._take()


def test_on_event_sees_lifecycle_events_and_match_finds_them_once() -> None:
    pipe = Pipe()
    seen: list[Any] = []
    pipe.client.on_event(seen.append)
    opened(pipe)
    pipe.reply("message")  # Routed: not a lifecycle event
    assert seen == pipe.client.events_seen
    event, count = pipe.client._match(lambda e: isinstance(e, Connected), 0)
    assert isinstance(event, Connected)
    again, _ = pipe.client._match(lambda e: isinstance(e, Connected), count)
    assert again is None
    assert pipe.client.state.value == "open"
    assert pipe.client.stats().messages_in >= 1


def test_events_seen_is_bounded() -> None:
    pipe = Pipe()
    opened(pipe)
    for _ in range(EVENTS_SEEN_LIMIT + 10):
        pipe.client._dispatch(HeartbeatLate(0.5))
    assert len(pipe.client.events_seen) == EVENTS_SEEN_LIMIT
    event, _ = pipe.client._match(lambda e: True, 0)  # the oldest kept, not an index error
    assert event is pipe.client.events_seen[0]


def test_build_core_takes_core_options_and_rejects_typos() -> None:
    core = build_core("ws://h/", {"delays": [0.5], "headers": {"X-A": "1"}})
    assert core.config.headers == (("x-a", "1"),)
    with pytest.raises(TypeError, match="unknown connect"):
        build_core("ws://h/", {"hedaers": {}})
    assert server_config(None, {"shutdown_timeout": 1.0}).shutdown_timeout == 1.0


def test_clients_mask_with_pooled_secrets_keys_each_used_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws: list[int] = []

    def numbered_token_bytes(n: int) -> bytes:  # stands in for the OS's CSPRNG
        """Draw d: 4-byte pieces numbered (d, 0), (d, 1), ... so every piece is traceable."""
        draws.append(n)
        return b"".join(struct.pack(">HH", len(draws), k) for k in range(n // 4)) + bytes(n % 4)

    def piece(draw: int, k: int) -> bytes:
        return struct.pack(">HH", draw, k)

    monkeypatch.setattr(_common, "_KEYS", [])
    monkeypatch.setattr(_common.secrets, "token_bytes", numbered_token_bytes)
    keys = [_common.mask_keys(4) for _ in range(1025)]
    assert draws == [4096, 4096]  # one draw serves 1,024 keys, the next draw the 1,025th
    assert sorted(keys[:1024]) == [piece(1, k) for k in range(1024)]  # each once
    assert keys[1024] == piece(2, 0)
    nonce = _common.mask_keys(16)  # a handshake nonce: four more pieces of the second draw
    assert draws == [4096, 4096]
    assert {nonce[i : i + 4] for i in (0, 4, 8, 12)} == {
        piece(2, k) for k in (1020, 1021, 1022, 1023)
    }
    assert _common.mask_keys(6) == piece(3, 0) + bytes(2)  # other sizes: a draw of their own
    assert build_core("ws://h/", {})._mask_source is _common.mask_keys
    own = build_core("ws://h/", {"mask_source": bytes})._mask_source
    assert own is bytes  # a given mask_source still wins


def test_a_forked_child_never_reuses_the_parents_mask_keys() -> None:
    _common.mask_keys(4)  # the pool is filled
    assert _common._KEYS
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports the size of its pool
        os.write(write, str(len(_common._KEYS)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"
    os.close(read)


# --------------------------------------------------------------------------- server side

CLIENT_HANDSHAKE = (
    b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"X-Token: t\r\n\r\n"
)


def masked_text(text: str) -> bytes:
    payload = text.encode()
    return bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload  # zero mask key


class FakeServer(ServerDriver):
    pass


def session_pipe() -> tuple[SessionDriver, list[str], Clock]:
    clock = Clock()
    log: list[str] = []
    server = FakeServer(ServerConfig(), clock=clock, secure=False)
    ws = SessionDriver(
        server.hub.session(clock()),
        clock=clock,
        wake=lambda: log.append("wake"),
        opened=lambda: log.append("opened"),
        reading=lambda paused: log.append(f"paused={paused}"),
        inbox_limit=2,
    )
    return ws, log, clock


def test_session_opens_queues_messages_and_pauses_reading() -> None:
    ws, log, clock = session_pipe()
    ws._session.receive_data(CLIENT_HANDSHAKE, clock())
    ws._dispatch_events()
    assert "opened" in log
    assert ws.path == "/chat"
    assert ws.headers["x-token"] == "t"
    assert ws.subprotocol is None
    ws._session.receive_data(masked_text("a") + masked_text("b"), clock())
    ws._dispatch_events()
    assert "paused=True" in log
    assert ws._take() == "a"
    assert "paused=False" in log
    assert ws._take() == "b"
    assert ws._take() is None


def test_session_handler_result_closes_1000_or_1011() -> None:
    for error, code in ((None, 1000), (ValueError("expected by the test"), 1011)):
        ws, _log, clock = session_pipe()
        ws._session.receive_data(CLIENT_HANDSHAKE, clock())
        ws._dispatch_events()
        ws._session.data_to_send()
        ws._handler_done(error)
        closing = ws._session.data_to_send()
        assert closing[0] == 0x88
        assert int.from_bytes(closing[2:4], "big") == code


def test_session_close_ends_recv_and_pings_and_send_raises() -> None:
    ws, _log, clock = session_pipe()
    with pytest.raises(ConnectionClosed):
        ws._start_ping(Pending())
    ws._session.receive_data(CLIENT_HANDSHAKE, clock())
    ws._dispatch_events()
    pong: Pending[float] = ws._start_ping(Pending())
    ws._session.receive_eof(clock())
    ws._dispatch_events()
    assert ws.closed
    assert ws.close_code == 1006
    with pytest.raises(ConnectionClosed):
        pong.result()
    with pytest.raises(ConnectionClosed):
        ws._take()
    with pytest.raises(ConnectionClosed):
        ws._send_message("late")


def test_server_driver_url_status_and_shutdown() -> None:
    clock = Clock()
    server = FakeServer(ServerConfig(shutdown_timeout=3.0), clock=clock, secure=True)
    server.host, server.port = "0.0.0.0", 9
    assert server.url == "wss://127.0.0.1:9/"
    server.host = "::1"
    assert server.url == "wss://[::1]:9/"
    ws = SessionDriver(
        server.hub.session(clock()), clock=clock, wake=lambda: None, opened=lambda: None
    )
    ws._session.receive_data(CLIENT_HANDSHAKE, clock())
    ws._dispatch_events()
    assert server.status().connections == 1
    assert server._begin_shutdown([ws], None) == 3.0
    assert server.hub.shutting_down
    closing = ws._session.data_to_send()
    assert int.from_bytes(closing[-2:], "big") != 0
    assert b"\x03\xe9" in closing
