"""The embedded server's per-connection logic, sans-IO.

``ServerSession`` wraps one ``ServerConnection`` with everything a zenws server does
for the application before its handler sees a message: the accept policy
(authentication, subprotocol choice, connection limit), the plain HTTP routes
(``GET /health`` and ``GET /status`` on the same port), server-side heartbeats and
graceful shutdown (close 1001 with a deadline).  ``ServerHub`` holds the counters
shared by every session of one server.  Adapters accept sockets, feed bytes in and
run the application's handler once a session is open; nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._config import ConnectionConfig
from ._events import (
    Closed,
    ConnectionEvent,
    Headers,
    HTTPRequestReceived,
    MessageReceived,
    Opened,
    PongReceived,
    RequestReceived,
)
from ._heartbeat import Heartbeat, HeartbeatConfig, PeerDead, SendPing
from ._protocol import ConnectionState, ServerConnection

__all__ = [
    "Accept",
    "Authenticator",
    "Reject",
    "ServerConfig",
    "ServerHub",
    "ServerSession",
    "ServerStatus",
]


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse an upgrade with an HTTP response (e.g. 401 with ``WWW-Authenticate``)."""

    status: int
    headers: Headers = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Accept:
    """Accept an upgrade, optionally choosing the subprotocol and adding headers."""

    subprotocol: str | None = None
    headers: Headers = ()


Authenticator = Callable[[RequestReceived], Accept | Reject | None]
"""Called for every upgrade request; ``None`` means accept with the default policy."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Options of an embedded server (one frozen object)."""

    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    #: Subprotocols this server speaks, in order of preference.
    subprotocols: tuple[str, ...] = ()
    #: Server-side keep-alive; off by default (clients run their own heartbeat).
    heartbeat: HeartbeatConfig = field(default_factory=lambda: HeartbeatConfig(interval=None))
    authenticate: Authenticator | None = None
    #: Upgrades beyond this many open connections get 503 with ``Retry-After``.
    max_connections: int | None = None
    health_path: str = "/health"
    status_path: str = "/status"
    #: Seconds a graceful shutdown waits for closing handshakes.
    shutdown_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """What ``GET /status`` answers, as a snapshot."""

    uptime: float
    connections: int
    connections_total: int
    rejected: int
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "uptime": round(self.uptime, 3),
            "connections": self.connections,
            "connections_total": self.connections_total,
            "rejected": self.rejected,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


class ServerHub:
    """Counters and limits shared by every session of one server."""

    def __init__(self, config: ServerConfig | None = None, *, now: float) -> None:
        self.config = config if config is not None else ServerConfig()
        self.started_at = now
        self.open_connections = 0
        self.connections_total = 0
        self.rejected = 0
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.shutting_down = False

    def session(self, now: float) -> ServerSession:
        return ServerSession(self, now=now)

    def status(self, now: float) -> ServerStatus:
        return ServerStatus(
            uptime=now - self.started_at,
            connections=self.open_connections,
            connections_total=self.connections_total,
            rejected=self.rejected,
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
        )


def _json_response(payload: dict[str, Any]) -> tuple[Headers, bytes]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return (("content-type", "application/json"),), body


class ServerSession:
    """One accepted transport of an embedded server.

    Inputs and outputs follow the protocol connection contract (``receive_data``,
    ``receive_eof``, ``handle_timer``; ``events``, ``data_to_send``,
    ``should_close_transport``, ``next_deadline``).  ``events()`` only returns what the
    application handler cares about: ``Opened``, ``MessageReceived``,
    ``FragmentReceived``, ``PongReceived`` and the final ``Closed``; handshakes, HTTP
    routes, pings and heartbeats are handled here.
    """

    __slots__ = (
        "_counted_open",
        "_events",
        "_ping_marks",
        "conn",
        "heartbeat",
        "hub",
        "request",
        "subprotocol",
    )

    def __init__(self, hub: ServerHub, *, now: float) -> None:
        self.hub = hub
        self.conn = ServerConnection(config=hub.config.connection, now=now)
        self.heartbeat = Heartbeat(hub.config.heartbeat)
        self.request: RequestReceived | None = None
        self.subprotocol: str | None = None
        self._events: list[ConnectionEvent] = []
        self._counted_open = False
        #: Payloads of our heartbeat pings awaiting their pong (created by the first one).
        self._ping_marks: set[bytes] | None = None

    # ------------------------------------------------------------------ I/O in

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes read from the transport (kept as a copy: a read buffer may be reused)."""
        if self._counted_open:
            self.heartbeat.activity(now)
        self.conn.receive_data(data, now)
        self._pump(now)

    def receive_eof(self, now: float) -> None:
        self.conn.receive_eof(now)
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        self.conn.handle_timer(now)
        if self._counted_open:
            for action in self.heartbeat.handle_timer(now):
                if isinstance(action, SendPing) and self.conn.state is ConnectionState.OPEN:
                    if self._ping_marks is None:
                        self._ping_marks = set()
                    self._ping_marks.add(self.conn.ping(now=now))
                    self.heartbeat.ping_sent(now)
                elif isinstance(action, PeerDead) and self.conn.state is ConnectionState.OPEN:
                    self.heartbeat.stop()
                    self.conn.close(1011, "keepalive timeout", now=now)
        self._pump(now)

    # ------------------------------------------------------------------ application calls

    @property
    def state(self) -> ConnectionState:
        return self.conn.state

    @property
    def is_open(self) -> bool:
        return self.conn.state is ConnectionState.OPEN

    def send_text(self, text: str) -> None:
        self.conn.send_text(text)
        self.hub.messages_out += 1
        self.hub.bytes_out += len(text.encode())

    def send_bytes(self, data: bytes) -> None:
        self.conn.send_bytes(data)
        self.hub.messages_out += 1
        self.hub.bytes_out += len(data)

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.send_text(message)
        else:
            self.send_bytes(message)

    def ping(self, *, now: float) -> bytes:
        return self.conn.ping(now=now)

    def close(self, code: int = 1000, reason: str = "", *, now: float) -> None:
        conn = self.conn
        if conn.state is ConnectionState.OPEN:
            conn.close(code, reason, now=now)
        elif conn.state is ConnectionState.CONNECTING:
            if conn.request is not None:
                conn.reject(503, (("retry-after", "1"),), b"server shutting down")
            else:
                conn.fail(code, reason or "closed before the handshake", now=now)
        self._pump(now)

    def shutdown(self, *, now: float) -> None:
        """Graceful shutdown: close with 1001 (going away), RFC 6455 section 7.4.1."""
        self.close(1001, "server shutting down", now=now)

    # ------------------------------------------------------------------ outputs

    def events(self) -> list[ConnectionEvent]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    @property
    def should_close_transport(self) -> bool:
        return self.conn.should_close_transport

    @property
    def writing_paused(self) -> bool:
        return self.conn.writing_paused

    def next_deadline(self) -> float | None:
        deadline = self.conn.next_deadline()
        if self._counted_open:
            beat = self.heartbeat.next_deadline()
            if beat is not None and (deadline is None or beat < deadline):
                return beat
        return deadline

    # ------------------------------------------------------------------ internals

    def _pump(self, now: float) -> None:
        events = self.conn.events()
        while events:
            self._dispatch(events, now)
            # accept()/reject() inside _dispatch may have produced more events
            events = self.conn.events()

    def _dispatch(self, events: list[ConnectionEvent], now: float) -> None:
        hub = self.hub
        for event in events:
            if isinstance(event, MessageReceived):
                hub.messages_in += 1
                data = event.data
                hub.bytes_in += len(data.encode() if isinstance(data, str) else data)
                self._events.append(event)
            elif isinstance(event, RequestReceived):
                self._on_upgrade(event, now)
            elif isinstance(event, HTTPRequestReceived):
                self._on_http(event, now)
            elif isinstance(event, Opened):
                self._counted_open = True
                hub.open_connections += 1
                hub.connections_total += 1
                self.subprotocol = event.subprotocol
                self.heartbeat.start(now)
                self._events.append(event)
            elif isinstance(event, PongReceived):
                marks = self._ping_marks
                if marks is not None and event.payload in marks:
                    marks.discard(event.payload)
                    self.heartbeat.pong_received(now, event.round_trip)
                self._events.append(event)
            elif isinstance(event, Closed):
                if self._counted_open:
                    self._counted_open = False
                    hub.open_connections -= 1
                    self.heartbeat.stop()
                self._events.append(event)
            else:
                # FragmentReceived, PingReceived (already answered), CloseReceived
                self._events.append(event)

    def _on_upgrade(self, request: RequestReceived, now: float) -> None:
        hub = self.hub
        config = hub.config
        self.request = request
        if hub.shutting_down:
            hub.rejected += 1
            self.conn.reject(503, (("retry-after", "1"),), b"server shutting down")
            return
        if config.max_connections is not None and hub.open_connections >= config.max_connections:
            hub.rejected += 1
            self.conn.reject(503, (("retry-after", "1"),), b"too many connections")
            return
        verdict: Accept | Reject | None = None
        if config.authenticate is not None:
            verdict = config.authenticate(request)
        if isinstance(verdict, Reject):
            hub.rejected += 1
            self.conn.reject(verdict.status, verdict.headers, verdict.body)
            return
        subprotocol = verdict.subprotocol if verdict is not None else None
        if subprotocol is None:
            for candidate in config.subprotocols:
                if candidate in request.subprotocols:
                    subprotocol = candidate
                    break
        headers = verdict.headers if verdict is not None else ()
        self.conn.accept(subprotocol, headers, now=now)

    def _on_http(self, request: HTTPRequestReceived, now: float) -> None:
        config = self.hub.config
        path = request.path
        if request.method not in ("GET", "HEAD"):
            headers, body = _json_response({"error": "method not allowed"})
            self.conn.respond(405, (*headers, ("allow", "GET, HEAD")), body)
        elif path == config.health_path:
            headers, body = _json_response({"status": "ok"})
            self.conn.respond(200, headers, body)
        elif path == config.status_path:
            headers, body = _json_response(self.hub.status(now).as_json())
            self.conn.respond(200, headers, body)
        else:
            headers, body = _json_response(
                {"error": "not found", "hint": "this port speaks WebSocket (RFC 6455)"}
            )
            self.conn.respond(404, headers, body)
