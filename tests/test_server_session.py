"""ServerSession / ServerHub: accept policy, HTTP routes, heartbeat and shutdown, in memory."""

from __future__ import annotations

import json
import random

import pytest

from zenws_core import (
    Accept,
    ClientConnection,
    CloseCause,
    Closed,
    HeartbeatConfig,
    MessageReceived,
    Opened,
    Reject,
    Rejected,
    RequestReceived,
    ServerConfig,
    ServerHub,
    ServerSession,
)


def client(subprotocols: tuple[str, ...] = (), path: str = "/ws") -> ClientConnection:
    return ClientConnection(
        f"ws://server.test{path}",
        subprotocols=subprotocols,
        mask_source=random.Random(1).randbytes,
    )


def exchange(c: ClientConnection, s: ServerSession, now: float = 0.0) -> None:
    for _ in range(20):
        moved = False
        data = c.data_to_send()
        if data:
            s.receive_data(data, now)
            moved = True
        back = s.data_to_send()
        if back:
            c.receive_data(back, now)
            moved = True
        if not moved:
            return


def http(s: ServerSession, request: bytes, now: float = 0.0) -> tuple[int, dict[str, object]]:
    s.receive_data(request, now)
    raw = s.data_to_send()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert s.should_close_transport
    return status, json.loads(body) if body else {}


def test_health_status_and_unknown_paths() -> None:
    hub = ServerHub(now=10.0)
    assert http(hub.session(11.0), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") == (
        200,
        {"status": "ok"},
    )
    status, body = http(hub.session(12.0), b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n", 12.5)
    assert status == 200
    assert body["connections"] == 0
    assert body["uptime"] == 2.5
    assert http(hub.session(0.0), b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert http(hub.session(0.0), b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 405


def test_subprotocol_preference_and_counters() -> None:
    hub = ServerHub(ServerConfig(subprotocols=("v2", "v1")), now=0.0)
    session = hub.session(0.0)
    c = client(("v1", "v2"))
    exchange(c, session)
    opened = [e for e in session.events() if isinstance(e, Opened)]
    assert opened[0].subprotocol == "v2"
    assert session.subprotocol == "v2"
    assert hub.open_connections == 1
    c.send_text("héllo")
    exchange(c, session)
    (message,) = [e for e in session.events() if isinstance(e, MessageReceived)]
    session.send(message.data)
    session.send(b"\x00\x01")
    exchange(c, session)
    status = hub.status(1.0)
    assert (status.messages_in, status.messages_out) == (1, 2)
    assert status.bytes_in == len("héllo".encode())
    assert status.bytes_out == len("héllo".encode()) + 2


def test_authenticator_accepts_with_headers_or_rejects() -> None:
    def authenticate(request: RequestReceived) -> Accept | Reject | None:
        token = dict(request.headers).get("authorization")
        if token != "Bearer ok":
            return Reject(401, (("www-authenticate", "Bearer"),), b"token please")
        return Accept(headers=(("x-session", "42"),))

    hub = ServerHub(ServerConfig(authenticate=authenticate), now=0.0)
    denied = client()
    session = hub.session(0.0)
    exchange(denied, session)
    (rejected,) = [e for e in denied.events() if isinstance(e, Rejected)]
    assert (rejected.status, rejected.body) == (401, b"token please")
    assert rejected.header("www-authenticate") == "Bearer"
    assert hub.rejected == 1

    allowed = ClientConnection("ws://server.test/", extra_headers=[("Authorization", "Bearer ok")])
    session = hub.session(0.0)
    exchange(allowed, session)
    (opened,) = [e for e in allowed.events() if isinstance(e, Opened)]
    assert ("x-session", "42") in opened.headers


def test_max_connections_answers_503_with_retry_after() -> None:
    hub = ServerHub(ServerConfig(max_connections=1), now=0.0)
    first = hub.session(0.0)
    exchange(client(), first)
    second_client = client()
    exchange(second_client, hub.session(0.0))
    (rejected,) = [e for e in second_client.events() if isinstance(e, Rejected)]
    assert rejected.status == 503
    assert rejected.header("retry-after") == "1"


def test_shutdown_closes_open_sessions_with_1001_and_refuses_new_ones() -> None:
    hub = ServerHub(now=0.0)
    session = hub.session(0.0)
    c = client()
    exchange(c, session)
    session.events()
    hub.shutting_down = True
    session.shutdown(now=1.0)
    exchange(c, session, 1.0)
    closed = [e for e in c.events() if isinstance(e, Closed)]
    assert closed[0].code == 1001
    assert hub.open_connections == 0
    late = client()
    exchange(late, hub.session(2.0), 2.0)
    assert [e.status for e in late.events() if isinstance(e, Rejected)] == [503]


def test_shutdown_of_a_session_still_in_handshake_rejects_it() -> None:
    hub = ServerHub(now=0.0)
    session = hub.session(0.0)
    session.shutdown(now=0.0)  # nothing received yet: no request to answer
    assert not session.is_open


def test_server_heartbeat_pings_and_drops_a_silent_client() -> None:
    hub = ServerHub(ServerConfig(heartbeat=HeartbeatConfig(interval=5.0, timeout=2.0)), now=0.0)
    session = hub.session(0.0)
    c = client()
    exchange(c, session)
    assert session.next_deadline() == 5.0
    session.handle_timer(5.0)
    ping = session.data_to_send()
    assert ping[:1] == b"\x89"
    # the client answers: the heartbeat records a round trip
    c.receive_data(ping, 5.5)
    session.receive_data(c.data_to_send(), 5.5)
    assert session.heartbeat.round_trips.count == 1
    # then it goes silent
    session.handle_timer(10.5)
    session.data_to_send()
    session.handle_timer(12.5)
    out = session.data_to_send()
    assert out[:1] == b"\x88"
    assert out[2:4] == (1011).to_bytes(2, "big")
    assert out[4:] == b"keepalive timeout"


@pytest.mark.parametrize("method", ["HEAD"])
def test_head_request_gets_headers_only(method: str) -> None:
    hub = ServerHub(now=0.0)
    session = hub.session(0.0)
    session.receive_data(f"{method} /health HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 0.0)
    raw = session.data_to_send()
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.endswith(b"\r\n\r\n")


def test_client_eof_ends_the_session_with_a_final_event() -> None:
    hub = ServerHub(now=0.0)
    session = hub.session(0.0)
    exchange(client(), session)
    session.events()
    session.receive_eof(3.0)
    (closed,) = session.events()
    assert isinstance(closed, Closed)
    assert closed.cause is CloseCause.EOF
    assert hub.open_connections == 0
