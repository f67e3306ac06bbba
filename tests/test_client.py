"""ReconnectingClient under a fake clock: exact figures for backoff, queue, heartbeat, routing.

A ``Wire`` joins the client to a ``ServerHub`` session in memory; the test moves time by
hand and reads actions, events and bytes.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from zenws_core import (
    ClientClosedError,
    ClientConfig,
    ClientState,
    CloseTransport,
    Connected,
    DeadCause,
    Disconnected,
    DropCause,
    FailureKind,
    GaveUp,
    HeartbeatConfig,
    HeartbeatLate,
    MessageDropped,
    MessageReceived,
    MessagesPossiblyLost,
    OpenTransport,
    OverflowPolicy,
    QueueConfig,
    QueueFull,
    ReconnectConfig,
    ReconnectingClient,
    ReconnectScheduled,
    Reject,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    Routed,
    ServerConfig,
    ServerHub,
    ServerSession,
    TLSConfig,
)

NO_HEARTBEAT = HeartbeatConfig(interval=None)


def make_client(**overrides: Any) -> ReconnectingClient[str]:
    options: dict[str, Any] = {"url": "ws://server.test/ws", "heartbeat": NO_HEARTBEAT}
    rng_seed = overrides.pop("seed", 0)
    delays = overrides.pop("delays", None)
    options.update(overrides)
    kwargs: dict[str, Any] = {"mask_source": random.Random(99).randbytes}
    if delays is not None:
        kwargs["delays"] = delays
    else:
        kwargs["rng"] = random.Random(rng_seed)
    return ReconnectingClient(ClientConfig(**options), **kwargs)


class Wire:
    """The client's current transport, joined to a server session in memory."""

    def __init__(self, client: ReconnectingClient[str], hub: ServerHub | None = None) -> None:
        self.client = client
        self.hub = hub or ServerHub(now=0.0)
        self.session: ServerSession | None = None
        self.server_messages: list[str | bytes] = []
        self.events: list[Any] = []
        self.actions: list[Any] = []

    def drain(self) -> None:
        self.events.extend(self.client.events())
        self.actions.extend(self.client.actions())

    def accept(self, now: float) -> None:
        """Answer the pending OpenTransport with a live server session."""
        self.session = self.hub.session(now)
        self.client.connection_made(now)
        self.shuttle(now)

    def shuttle(self, now: float, *, echo: bool = False) -> None:
        session = self.session
        for _ in range(50):
            moved = False
            data = self.client.data_to_send()
            if data and session is not None:
                session.receive_data(data, now)
                moved = True
            if session is not None:
                for event in session.events():
                    if isinstance(event, MessageReceived):
                        self.server_messages.append(event.data)
                        if echo and session.is_open:
                            session.send(event.data)
                back = session.data_to_send()
                if back:
                    self.client.receive_data(back, now)
                    moved = True
                if session.should_close_transport and self.client.connection is not None:
                    self.client.receive_eof(now)
                    moved = True
            if not moved:
                break
        self.drain()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


# ------------------------------------------------------------------ connect and states


def test_start_asks_for_a_transport_and_connects() -> None:
    client = make_client()
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    (action,) = wire.actions
    assert action == OpenTransport("server.test", 80, None, None, 1, 10.0)
    wire.accept(0.01)
    assert client.state is ClientState.OPEN
    (connected,) = wire.of(Connected)
    assert connected.attempt == 0


def test_wss_carries_tls_settings_and_server_hostname() -> None:
    tls = TLSConfig(ca_file="/ca.pem")
    client = make_client(url="wss://[::1]:9443/x", tls=tls)
    client.start(0.0)
    (action,) = client.actions()
    assert isinstance(action, OpenTransport)
    assert (action.host, action.port, action.tls, action.server_hostname) == (
        "::1",
        9443,
        tls,
        "::1",
    )


def test_start_twice_is_misuse() -> None:
    client = make_client()
    client.start(0.0)
    with pytest.raises(RuntimeError):
        client.start(0.0)


# ------------------------------------------------------------------ backoff figures


def test_refused_connects_follow_the_seeded_backoff_exactly() -> None:
    config = ReconnectConfig(initial_delay=0.5, multiplier=2.0, max_delay=4.0)
    client = make_client(reconnect=config, seed=7)
    expected_rng = random.Random(7)
    now = 0.0
    client.start(now)
    scheduled: list[float] = []
    for attempt in range(1, 9):
        client.actions()
        client.connection_failed("refused", now, refused=True)
        events = client.events()
        (event,) = [e for e in events if isinstance(e, ReconnectScheduled)]
        cap = min(4.0, 0.5 * 2.0 ** (attempt - 1))
        assert event.delay == expected_rng.uniform(0.0, cap)
        assert event.attempt == attempt
        scheduled.append(event.delay)
        assert client.next_deadline() == pytest.approx(now + event.delay)
        # nothing happens a hair before the deadline
        client.handle_timer(now + event.delay - 1e-6)
        assert client.actions() == []
        now += event.delay
        client.handle_timer(now)
        (action,) = client.actions()
        assert isinstance(action, OpenTransport)
    assert len(scheduled) == 8


def test_injected_delays_and_max_attempts_then_give_up_and_manual_reconnect() -> None:
    client = make_client(reconnect=ReconnectConfig(max_attempts=2), delays=[1.0, 2.0, 3.0])
    client.start(0.0)
    client.connection_failed("refused", 0.0, refused=True)
    assert [e.delay for e in client.events() if isinstance(e, ReconnectScheduled)] == [1.0]
    client.handle_timer(1.0)
    client.connection_failed("refused", 1.0, refused=True)
    assert [e.delay for e in client.events() if isinstance(e, ReconnectScheduled)] == [2.0]
    client.handle_timer(3.0)
    client.connection_failed("refused", 3.0, refused=True)
    (gave_up,) = [e for e in client.events() if isinstance(e, GaveUp)]
    assert "no attempts left" in gave_up.reason
    assert client.state is ClientState.CLOSED
    assert client.next_deadline() is None
    client.actions()
    client.reconnect(10.0)
    assert client.state is ClientState.CONNECTING
    assert isinstance(client.actions()[0], OpenTransport)


def test_connect_timeout_is_a_deadline_of_the_core() -> None:
    client = make_client(connect_timeout=2.0, delays=[0.5])
    client.start(0.0)
    client.actions()
    assert client.next_deadline() == 2.0
    client.handle_timer(2.0)
    actions = client.actions()
    assert any(isinstance(a, CloseTransport) for a in actions)
    (disc,) = [e for e in client.events() if isinstance(e, Disconnected)]
    assert disc.failure.kind is FailureKind.CONNECT_TIMEOUT
    assert client.state is ClientState.WAITING_TO_RECONNECT


def test_stable_after_resets_the_attempt_counter_but_a_flapping_server_does_not() -> None:
    config = ReconnectConfig(initial_delay=1.0, max_delay=60.0, stable_after=5.0, jitter="none")
    client = make_client(reconnect=config)
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    now = 0.0
    delays = []
    for _ in range(3):  # accepted and dropped at once: backoff keeps growing
        wire.accept(now)
        lost_at = now + 0.1
        client.connection_lost("reset", lost_at)
        wire.drain()
        delay = wire.of(ReconnectScheduled)[-1].delay
        delays.append(delay)
        now = lost_at + delay
        client.handle_timer(now)
        wire.drain()
    assert delays == [1.0, 2.0, 4.0]
    wire.accept(now)
    client.connection_lost("reset", now + 6.0)  # stayed up longer than stable_after
    wire.drain()
    assert wire.of(ReconnectScheduled)[-1].delay == 1.0


def test_401_gives_up_503_retries_with_retry_after_floor() -> None:
    status = {"value": 401}

    def authenticate(request: RequestReceived) -> Reject | None:
        headers = (("retry-after", "7"),) if status["value"] == 503 else ()
        return Reject(status["value"], headers, b"no")

    hub = ServerHub(ServerConfig(authenticate=authenticate), now=0.0)
    client = make_client(delays=[0.1] * 5)
    wire = Wire(client, hub)
    client.start(0.0)
    wire.accept(0.0)
    (gave_up,) = wire.of(GaveUp)
    assert gave_up.failure.status == 401
    assert client.state is ClientState.CLOSED

    status["value"] = 503
    client.reconnect(1.0)
    wire.drain()
    wire.accept(1.0)
    scheduled = wire.of(ReconnectScheduled)[-1]
    assert scheduled.delay == 7.0  # Retry-After beats the 0.1 s delay
    assert "503" in scheduled.reason


# ------------------------------------------------------------------ queue


def test_messages_queue_while_disconnected_and_flush_in_order_after_on_open() -> None:
    client = make_client(on_open=("auth:token", "sub:feed"))
    wire = Wire(client)
    client.start(0.0)
    for i in range(3):
        client.send_text(f"q{i}", now=0.0)
    client.send_bytes(b"\x00bin", now=0.0)
    assert client.stats(0.0).queue_depth == 4
    wire.drain()
    wire.accept(0.5)
    assert wire.server_messages == ["auth:token", "sub:feed", "q0", "q1", "q2", b"\x00bin"]
    assert client.stats(0.5).queue_depth == 0


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_overflow_is_an_event_and_a_counter(policy: OverflowPolicy) -> None:
    client = make_client(queue=QueueConfig(max_messages=2, overflow=policy))
    client.start(0.0)
    client.send_text("a", now=0.0)
    client.send_text("b", now=0.0)
    if policy is OverflowPolicy.REJECT:
        with pytest.raises(QueueFull):
            client.send_text("c", now=0.0)
        dropped_payload = "c"
        cause = DropCause.REJECTED
    else:
        client.send_text("c", now=0.0)
        dropped_payload = "a" if policy is OverflowPolicy.DROP_OLDEST else "c"
        cause = DropCause.OVERFLOW
    (dropped,) = [e for e in client.events() if isinstance(e, MessageDropped)]
    assert (dropped.payload, dropped.cause) == (dropped_payload, cause)
    assert client.stats(0.0).drops[cause.value] == 1
    assert client.stats(0.0).queue_depth == 2


def test_ttl_expiry_drops_with_an_event() -> None:
    client = make_client(queue=QueueConfig(ttl=3.0))
    client.start(0.0)
    client.send_text("stale", now=0.0)
    client.send_text("fresh", now=2.0)
    client.events()
    client.handle_timer(3.0)
    (dropped,) = [e for e in client.events() if isinstance(e, MessageDropped)]
    assert (dropped.payload, dropped.cause) == ("stale", DropCause.EXPIRED)
    assert client.stats(3.0).queue_depth == 1


def test_close_drops_the_queue_and_refuses_later_sends() -> None:
    client = make_client()
    client.start(0.0)
    client.send_text("never", now=0.0)
    client.close(now=0.1)
    events = client.events()
    assert [e.payload for e in events if isinstance(e, MessageDropped)] == ["never"]
    assert client.state is ClientState.CLOSED
    with pytest.raises(ClientClosedError):
        client.send_text("late", now=0.2)
    refused = [e for e in client.events() if isinstance(e, MessageDropped)]
    assert refused[0].cause is DropCause.REJECTED
    assert client.stats(0.2).drops["rejected"] == 1


def test_transport_death_reports_unconfirmed_messages_as_possibly_lost() -> None:
    client = make_client(delays=[1.0])
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    client.send_text("one", now=0.1)
    client.send_text("two", now=0.2)
    wire.shuttle(0.2)
    client.connection_lost("reset by peer", 0.3)
    wire.drain()
    (lost,) = wire.of(MessagesPossiblyLost)
    assert [m.payload for m in lost.messages] == ["one", "two"]
    assert client.stats(0.3).possibly_lost == 2


def test_binary_and_text_go_straight_out_while_open() -> None:
    client = make_client()
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    assert client.next_deadline() is None  # no heartbeat, nothing queued, nothing pending
    assert client.send_bytes(b"\x00\xff", now=0.1) == 0
    assert client.send_text("t", now=0.1) == 1
    assert len(client.queue) == 0
    wire.shuttle(0.1)
    assert wire.server_messages == [b"\x00\xff", "t"]
    assert client.stats(0.1).messages_out == 2


def test_possibly_lost_reports_direct_and_queued_messages_with_their_record() -> None:
    client = make_client(delays=[1.0])
    wire = Wire(client)
    client.send_bytes(b"queued", now=0.05, ttl=9.0)  # waits in the queue, then flushed
    client.start(0.0)
    wire.drain()
    wire.accept(0.1)
    client.send_text("d\u00e9j\u00e0", now=0.2)  # straight out
    request_id = client.request("ask", {"n": 1}, now=0.3)
    wire.shuttle(0.3)
    client.connection_lost("reset", 0.4)
    wire.drain()
    (lost,) = wire.of(MessagesPossiblyLost)
    queued, direct, request = lost.messages
    assert (queued.seq, queued.payload, queued.size) == (0, b"queued", 6)
    assert (queued.enqueued_at, queued.expires_at) == (0.05, 0.05 + 9.0)
    assert (direct.seq, direct.payload, direct.size) == (1, "d\u00e9j\u00e0", 6)
    assert (direct.enqueued_at, direct.expires_at, direct.tag) == (0.2, None, None)
    assert (request.seq, request.tag, request.enqueued_at) == (2, request_id, 0.3)
    assert request.size == len(str(request.payload).encode())


def test_a_pong_confirms_what_was_sent_before_the_ping() -> None:
    client = make_client(delays=[1.0])
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    client.send_text("confirmed", now=0.1)
    client.ping(now=0.1)
    wire.shuttle(0.1)
    client.send_text("unconfirmed", now=0.2)
    wire.shuttle(0.2)
    client.connection_lost("reset", 0.3)
    wire.drain()
    (lost,) = wire.of(MessagesPossiblyLost)
    assert [m.payload for m in lost.messages] == ["unconfirmed"]


# ------------------------------------------------------------------ heartbeat


def test_heartbeat_deadline_stays_put_while_messages_arrive() -> None:
    """Received data postpones the ping without moving the deadline the adapter armed."""
    client = make_client(heartbeat=HeartbeatConfig(interval=5.0, timeout=2.0))
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    assert client.next_deadline() == 5.0
    for now in (1.0, 2.0, 3.0):
        client.send_text("echo me", now=now)
        wire.shuttle(now, echo=True)
        assert client.heartbeat.next_deadline() == now + 5.0
        assert client.next_deadline() == 5.0  # no re-arming per message
    client.handle_timer(5.0)  # early for the heartbeat: no ping
    assert client.data_to_send() == b""
    assert client.next_deadline() == 8.0  # now the heartbeat's own deadline
    client.handle_timer(8.0)
    assert client.data_to_send()[:1] == b"\x89"  # ping, 5 s after the last message
    assert client.next_deadline() == 10.0
    client.close(now=8.5)
    wire.shuttle(8.5)
    assert client.heartbeat.next_deadline() is None


def test_an_earlier_heartbeat_deadline_is_reported_at_once() -> None:
    client = make_client(heartbeat=HeartbeatConfig(interval=5.0, timeout=2.0))
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    assert client.next_deadline() == 5.0
    client.send_text("x", now=1.0)
    wire.shuttle(1.0, echo=True)
    client.ping(now=1.5)  # awaiting the pong: the heartbeat deadline moves earlier
    assert client.next_deadline() == 3.5


def test_heartbeat_pings_at_interval_and_declares_a_silent_peer_dead() -> None:
    client = make_client(heartbeat=HeartbeatConfig(interval=5.0, timeout=2.0), delays=[1.0])
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    assert client.next_deadline() == 5.0
    client.handle_timer(5.0)
    assert client.data_to_send()[:1] == b"\x89"  # a masked ping frame went out
    assert client.next_deadline() == 7.0
    client.handle_timer(7.0)
    wire.drain()
    (disc,) = wire.of(Disconnected)
    assert disc.failure.kind is FailureKind.HEARTBEAT_TIMEOUT
    assert disc.code == 1011
    assert any(isinstance(a, CloseTransport) for a in wire.actions)
    assert wire.of(ReconnectScheduled)[-1].delay == 1.0


def test_heartbeat_pong_records_round_trip() -> None:
    client = make_client(heartbeat=HeartbeatConfig(interval=5.0, timeout=2.0))
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    client.handle_timer(5.0)
    wire.shuttle(5.25)
    rtt = client.stats(5.25).round_trip
    assert rtt.count == 1
    assert rtt.last == pytest.approx(0.25)


def test_late_loop_is_reported_apart_from_a_dead_peer() -> None:
    client = make_client(
        heartbeat=HeartbeatConfig(interval=5.0, timeout=2.0, late_tolerance=1.0), delays=[1.0]
    )
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    client.handle_timer(5.0)  # ping sent; pong due by 7.0
    client.data_to_send()
    client.handle_timer(30.0)  # the loop stalled for 23 s
    wire.drain()
    (late,) = wire.of(HeartbeatLate)
    assert late.lag == pytest.approx(23.0)
    assert not wire.of(Disconnected)  # not blamed on the peer yet
    client.handle_timer(32.0)
    wire.drain()
    (disc,) = wire.of(Disconnected)
    assert disc.failure.kind is FailureKind.HEARTBEAT_TIMEOUT
    assert DeadCause.NO_PONG.value in disc.failure.detail


# ------------------------------------------------------------------ routing and requests


def test_routed_messages_carry_their_handlers() -> None:
    client = make_client()
    client.router.on("task.*", "task-handler")
    client.router.on("task.done", "done-handler")
    client.router.on_default("default-handler")
    client.router.on_raw("raw-handler")
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    assert wire.session is not None
    wire.session.send_text(json.dumps({"type": "task.done", "data": 1}))
    wire.session.send_text(json.dumps({"type": "other"}))
    wire.session.send_text("not json")
    wire.shuttle(0.1)
    routed = wire.of(Routed)
    assert [r.handlers for r in routed] == [
        ("done-handler", "task-handler"),
        ("default-handler",),
        ("raw-handler",),
    ]
    assert routed[2].raw_reason is not None


def test_request_reply_and_timeout_while_disconnected() -> None:
    client = make_client(delays=[10.0])
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    request_id = client.request("sum", [1, 2], now=0.0, timeout=5.0)
    wire.shuttle(0.0)
    (sent,) = wire.server_messages
    assert json.loads(sent) == {"type": "sum", "data": [1, 2], "id": request_id}
    assert wire.session is not None
    wire.session.send_text(json.dumps({"type": "sum.result", "data": 3, "id": request_id}))
    wire.shuttle(0.4)
    (response,) = wire.of(ResponseReceived)
    assert response.envelope.data == 3
    assert response.round_trip == pytest.approx(0.4)
    assert not wire.of(Routed)  # a reply is not also routed

    client.connection_lost("reset", 1.0)
    wire.drain()
    late_id = client.request("sum", [3], now=1.0, timeout=2.0)
    client.handle_timer(3.0)
    wire.drain()
    (timed_out,) = wire.of(RequestTimedOut)
    assert (timed_out.request_id, timed_out.timeout) == (late_id, 2.0)
    (dropped,) = wire.of(MessageDropped)
    assert (dropped.request_id, dropped.cause) == (late_id, DropCause.EXPIRED)


# ------------------------------------------------------------------ closing and stats


def test_application_close_is_clean_and_final() -> None:
    client = make_client()
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(0.0)
    client.close(4000, "bye", now=1.0)
    wire.shuttle(1.0)
    (disc,) = wire.of(Disconnected)
    assert (disc.code, disc.clean) == (4000, True)
    assert disc.failure.kind is FailureKind.LOCAL_CLOSE
    assert client.state is ClientState.CLOSED
    assert not wire.of(ReconnectScheduled)


def test_stats_snapshot() -> None:
    client = make_client()
    wire = Wire(client)
    client.start(0.0)
    wire.drain()
    wire.accept(1.0)
    client.send_text("héllo", now=1.0)
    wire.shuttle(1.0, echo=True)
    stats = client.stats(4.0)
    assert stats.state is ClientState.OPEN
    assert stats.url == "ws://server.test/ws"
    assert stats.uptime == 3.0
    assert (stats.connections, stats.attempts) == (1, 1)
    assert (stats.messages_out, stats.messages_in) == (1, 1)
    assert stats.bytes_out == stats.bytes_in == len("héllo".encode())
    assert stats.last_error is None


# ------------------------------------------------------------------ configuration


def test_config_from_environment() -> None:
    config = ClientConfig.from_env(
        {
            "WEBSOCKET_HOST": "::1",
            "WEBSOCKET_PORT": "3001",
            "WEBSOCKET_HEARTBEAT": "15000",
            "WEBSOCKET_QUEUE_LIMIT": "50",
            "WEBSOCKET_TOKEN": "abc",
            "WEBSOCKET_RECONNECT": "0",
        }
    )
    assert config.url == "ws://[::1]:3001/ws"
    assert config.heartbeat.interval == 15.0
    assert config.queue.max_messages == 50
    assert config.headers == (("authorization", "Bearer abc"),)
    assert config.reconnect.enabled is False


def test_config_from_environment_rejects_bad_numbers() -> None:
    with pytest.raises(ValueError, match="WEBSOCKET_PORT"):
        ClientConfig.from_env({"WEBSOCKET_PORT": "eighty"})


def test_bad_url_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        ClientConfig(url="http://example.com/")


def test_handshake_and_close_in_one_read_keep_the_queue_for_the_next_connection() -> None:
    """Peer input never raises: Opened and Closed in one read with messages queued."""
    client = make_client(delays=[1.0])
    hub = ServerHub(now=0.0)
    client.start(0.0)
    client.actions()
    client.send_text("queued", now=0.0)
    client.connection_made(0.0)
    session = hub.session(0.0)
    session.receive_data(client.data_to_send(), 0.0)
    session.events()
    session.close(1001, "bye", now=0.0)
    client.receive_data(session.data_to_send(), 0.0)  # 101 response + close frame together
    events = client.events()
    assert any(isinstance(e, Connected) for e in events)
    (disc,) = [e for e in events if isinstance(e, Disconnected)]
    assert disc.code == 1001
    assert client.stats(0.0).queue_depth == 1
