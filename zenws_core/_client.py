"""The reconnecting client: the whole life of a resilient WebSocket client, sans-IO.

``ReconnectingClient`` composes one ``ClientConnection`` at a time with a
``ReconnectPolicy``, an ``OutboundQueue``, a ``Heartbeat``, a ``MessageRouter`` and a
``RequestTracker``.  It never touches a socket or a clock: the adapter opens and
closes transports when told to (``actions()``), feeds their news and bytes in, writes
``data_to_send()`` out and calls ``handle_timer(now)`` at ``next_deadline()``.

Delivery is at most once: a message is never sent twice.  Messages written to a
transport that then dies without a clean close are reported in
``MessagesPossiblyLost``; a pong to a ping sent after a message, or a clean closing
handshake, confirms it (the peer read every frame before the pong or close).
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._backoff import (
    Classifier,
    Failure,
    FailureKind,
    ReconnectConfig,
    ReconnectPolicy,
    default_classifier,
    parse_retry_after,
)
from ._config import ConnectionConfig
from ._events import (
    CloseCause,
    Closed,
    Headers,
    Initiator,
    MessageReceived,
    Opened,
    PongReceived,
    Rejected,
)
from ._heartbeat import (
    Heartbeat,
    HeartbeatConfig,
    LoopLate,
    PeerDead,
    RoundTripSnapshot,
    SendPing,
)
from ._protocol import ClientConnection, ConnectionState, ConnectionStats
from ._queue import DropCause, Dropped, OutboundQueue, QueueConfig, QueuedMessage, QueueFull
from ._router import Envelope, MessageRouter, RequestTracker, encode_envelope
from ._url import WebSocketURL, parse_url

H = TypeVar("H")

__all__ = [
    "ClientClosedError",
    "ClientConfig",
    "ClientEvent",
    "ClientState",
    "ClientStats",
    "CloseTransport",
    "Connected",
    "Connecting",
    "Disconnected",
    "GaveUp",
    "HeartbeatLate",
    "MessageDropped",
    "MessagesPossiblyLost",
    "OpenTransport",
    "ReconnectScheduled",
    "ReconnectingClient",
    "RequestTimedOut",
    "ResponseReceived",
    "Routed",
    "StateChanged",
    "TLSConfig",
    "TransportAction",
    "client_state_diagram",
]


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS settings an adapter turns into an ``ssl.SSLContext`` for ``wss://``.

    ``verify=False`` is the explicit insecure mode for operators (no certificate or
    hostname check).  With neither ``ca_file`` nor ``ca_data`` the system store is used.
    """

    verify: bool = True
    ca_file: str | None = None
    ca_data: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    server_hostname: str | None = None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a reconnecting client needs; one frozen object, one concern per field."""

    url: str
    subprotocols: tuple[str, ...] = ()
    headers: Headers = ()
    origin: str | None = None
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    tls: TLSConfig | None = None
    connect_timeout: float = 10.0
    request_timeout: float = 30.0
    #: Messages sent first on every (re)connection, before the queue is flushed
    #: (authentication, subscriptions).
    on_open: tuple[str | bytes, ...] = ()
    #: How many sent-but-unconfirmed messages are remembered for ``MessagesPossiblyLost``.
    track_unconfirmed: int = 10_000

    def __post_init__(self) -> None:
        parse_url(self.url)  # raises ValueError for a bad URL
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, url: str | None = None, **overrides: Any
    ) -> ClientConfig:
        """Read ``WEBSOCKET_*`` variables (the one place configuration meets the environment).

        ``WEBSOCKET_URL`` or ``WEBSOCKET_HOST``/``WEBSOCKET_PORT``/``WEBSOCKET_PATH``/
        ``WEBSOCKET_SECURE`` give the URL; ``WEBSOCKET_HEARTBEAT`` is the heartbeat
        interval in milliseconds (as in the original design; 0 disables);
        ``WEBSOCKET_QUEUE_LIMIT`` the queue bound; ``WEBSOCKET_RECONNECT`` (0/1) enables
        reconnection; ``WEBSOCKET_TOKEN`` adds ``Authorization: Bearer <token>``.
        """

        def number(name: str, kind: Callable[[str], Any]) -> Any:
            raw = environ.get(name)
            if raw is None or raw == "":
                return None
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None

        if url is None:
            url = environ.get("WEBSOCKET_URL") or None
        if url is None:
            host = environ.get("WEBSOCKET_HOST", "localhost")
            port = number("WEBSOCKET_PORT", int) or 3000
            path = environ.get("WEBSOCKET_PATH", "/ws")
            secure = environ.get("WEBSOCKET_SECURE", "0").lower() in ("1", "true", "yes")
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"
            url = f"{'wss' if secure else 'ws'}://{host}:{port}{path}"
        kwargs: dict[str, Any] = {"url": url}
        heartbeat_ms = number("WEBSOCKET_HEARTBEAT", float)
        if heartbeat_ms is not None:
            interval = heartbeat_ms / 1000.0 if heartbeat_ms > 0 else None
            kwargs["heartbeat"] = HeartbeatConfig(interval=interval)
        limit = number("WEBSOCKET_QUEUE_LIMIT", int)
        if limit is not None:
            kwargs["queue"] = QueueConfig(max_messages=limit)
        reconnect = environ.get("WEBSOCKET_RECONNECT")
        if reconnect is not None and reconnect != "":
            kwargs["reconnect"] = ReconnectConfig(enabled=reconnect.lower() in ("1", "true", "yes"))
        token = environ.get("WEBSOCKET_TOKEN")
        if token:
            kwargs["headers"] = (("authorization", f"Bearer {token}"),)
        kwargs.update(overrides)
        return cls(**kwargs)


# --------------------------------------------------------------------------- states


class ClientState(enum.Enum):
    """States of the reconnecting client (see ``_TRANSITIONS``)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSING = "closing"
    WAITING_TO_RECONNECT = "waiting-to-reconnect"
    CLOSED = "closed"


_S = ClientState

#: Every legal transition, in one place.  ``CLOSING`` covers both a local close
#: (RFC 6455 section 7.1.2, waiting for the echo) and draining a connection whose
#: closing handshake ended until the transport is gone (section 7.1.1: the server
#: closes TCP first).
_TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    _S.IDLE: frozenset({_S.CONNECTING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.HANDSHAKING, _S.WAITING_TO_RECONNECT, _S.CLOSED}),
    _S.HANDSHAKING: frozenset({_S.OPEN, _S.CLOSING, _S.WAITING_TO_RECONNECT, _S.CLOSED}),
    _S.OPEN: frozenset({_S.CLOSING, _S.WAITING_TO_RECONNECT, _S.CLOSED}),
    _S.CLOSING: frozenset({_S.WAITING_TO_RECONNECT, _S.CLOSED}),
    _S.WAITING_TO_RECONNECT: frozenset({_S.CONNECTING, _S.CLOSED}),
    _S.CLOSED: frozenset({_S.CONNECTING}),
}


#: Why each transition happens (the labels of the docs' state diagram).
_TRANSITION_NOTES: dict[tuple[ClientState, ClientState], str] = {
    (_S.IDLE, _S.CONNECTING): "start()",
    (_S.IDLE, _S.CLOSED): "close()",
    (_S.CONNECTING, _S.HANDSHAKING): "connection_made",
    (_S.CONNECTING, _S.WAITING_TO_RECONNECT): "connect failed or timed out, retry",
    (_S.CONNECTING, _S.CLOSED): "close(), or give up",
    (_S.HANDSHAKING, _S.OPEN): "101 Switching Protocols (RFC 6455 4.1)",
    (_S.HANDSHAKING, _S.CLOSING): "rejected or failed, transport closing",
    (_S.HANDSHAKING, _S.WAITING_TO_RECONNECT): "transport lost, retry",
    (_S.HANDSHAKING, _S.CLOSED): "close(), or give up",
    (_S.OPEN, _S.CLOSING): "close frame sent or received (7.1.2)",
    (_S.OPEN, _S.WAITING_TO_RECONNECT): "peer dead (heartbeat), retry",
    (_S.OPEN, _S.CLOSED): "peer dead, give up",
    (_S.CLOSING, _S.WAITING_TO_RECONNECT): "transport closed (7.1.1), retry",
    (_S.CLOSING, _S.CLOSED): "transport closed, close() or give up",
    (_S.WAITING_TO_RECONNECT, _S.CONNECTING): "backoff delay elapsed, or reconnect()",
    (_S.WAITING_TO_RECONNECT, _S.CLOSED): "close()",
    (_S.CLOSED, _S.CONNECTING): "reconnect()",
}


def client_state_diagram() -> str:
    """The client state machine as a Mermaid diagram, made from ``_TRANSITIONS``."""
    lines = ["stateDiagram-v2", "    [*] --> IDLE"]
    for old, targets in _TRANSITIONS.items():
        for new in sorted(targets, key=lambda s: list(ClientState).index(s)):
            lines.append(f"    {old.name} --> {new.name}: {_TRANSITION_NOTES[(old, new)]}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class OpenTransport:
    """Open a TCP (and, if ``tls`` is set, TLS) transport to ``host:port``.

    Report the outcome with ``connection_made`` or ``connection_failed``.
    ``generation`` numbers transports so adapters can ignore news of older ones.
    """

    host: str
    port: int
    tls: TLSConfig | None
    server_hostname: str | None
    generation: int
    timeout: float


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Write what ``data_to_send()`` returned, then close the current transport.

    The core already considers it gone: do not report ``connection_lost`` for it.
    """

    generation: int
    reason: str


TransportAction = OpenTransport | CloseTransport


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: ClientState
    new: ClientState


@dataclass(frozen=True, slots=True)
class Connecting:
    """A transport is being opened (``attempt`` 0 is the first connection)."""

    attempt: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Connected:
    """The opening handshake completed."""

    attempt: int
    subprotocol: str | None
    extensions: tuple[str, ...]
    headers: Headers


@dataclass(frozen=True, slots=True)
class Disconnected:
    """An attempt failed or an open connection ended."""

    failure: Failure
    code: int
    reason: str
    clean: bool


@dataclass(frozen=True, slots=True)
class ReconnectScheduled:
    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The classifier or ``max_attempts`` ended reconnection; ``reconnect()`` restarts it."""

    reason: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class Routed(Generic[H]):
    """An inbound message, with the handlers the router chose for it."""

    data: str | bytes
    envelope: Envelope | None
    handlers: tuple[H, ...]
    raw_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The reply to ``request(...)`` whose id is ``request_id``."""

    request_id: str
    envelope: Envelope
    round_trip: float


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    request_id: str
    type: str
    timeout: float


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A message that will never be sent (overflow, expiry, refusal, close)."""

    seq: int
    payload: str | bytes
    cause: DropCause
    detail: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class MessagesPossiblyLost:
    """Messages written to a transport that died before confirming them (at most once)."""

    messages: tuple[QueuedMessage, ...]


@dataclass(frozen=True, slots=True)
class HeartbeatLate:
    """The local loop called ``handle_timer`` ``lag`` seconds late; not the peer's fault."""

    lag: float


ClientEvent = (
    StateChanged
    | Connecting
    | Connected
    | Disconnected
    | ReconnectScheduled
    | GaveUp
    | Routed[Any]
    | ResponseReceived
    | RequestTimedOut
    | MessageDropped
    | MessagesPossiblyLost
    | HeartbeatLate
    | PongReceived
)


class ClientClosedError(Exception):
    """The application already closed this client; the message was refused (and counted)."""


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True, slots=True)
class ClientStats:
    state: ClientState
    url: str
    uptime: float
    """Seconds the current connection has been open (0 when not open)."""
    connections: int
    """Successful opening handshakes so far."""
    attempts: int
    """Transports opened so far (first connection included)."""
    reconnect_attempt: int
    """Current backoff attempt (0 once a connection is stable)."""
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    queue_depth: int
    queue_bytes: int
    drops: Mapping[str, int]
    possibly_lost: int
    requests_pending: int
    requests_timed_out: int
    round_trip: RoundTripSnapshot
    last_error: str | None


# --------------------------------------------------------------------------- client


def _size(payload: str | bytes) -> int:
    return len(payload.encode("utf-8")) if isinstance(payload, str) else len(payload)


_Sent = tuple[int, str | bytes, float, str | None, QueuedMessage | None]
"""A written, unconfirmed message: seq, payload, when, request id, and its
``QueuedMessage`` if it waited in the queue (messages sent straight out get one only if
they are reported in ``MessagesPossiblyLost``)."""


class ReconnectingClient(Generic[H]):
    """A client connection that survives the real world: reconnect, queue, heartbeat, routing.

    ``H`` is the type of handler the application registers with ``on``; the client only
    says which handlers receive a message (``Routed``), the adapter calls them.
    """

    __slots__ = (
        "_actions",
        "_app_closed",
        "_attempts",
        "_bytes_in",
        "_bytes_out",
        "_classifier",
        "_conn",
        "_connect_deadline",
        "_connections",
        "_drops",
        "_events",
        "_generation",
        "_heartbeat_shown",
        "_last_error",
        "_last_written",
        "_mask_source",
        "_messages_in",
        "_messages_out",
        "_opened_at",
        "_out",
        "_pending_failure",
        "_ping_marks",
        "_possibly_lost",
        "_reconnect_at",
        "_request_sent_at",
        "_state",
        "_transport_ended",
        "_unconfirmed",
        "config",
        "heartbeat",
        "policy",
        "queue",
        "requests",
        "router",
        "url",
    )

    def __init__(
        self,
        config: ClientConfig,
        *,
        rng: random.Random | None = None,
        delays: Iterable[float] | None = None,
        mask_source: Callable[[int], bytes] | None = None,
        classifier: Classifier = default_classifier,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.url: WebSocketURL = parse_url(config.url)
        self.policy = ReconnectPolicy(config.reconnect, rng=rng, delays=delays)
        self.queue = OutboundQueue(config.queue)
        self.heartbeat = Heartbeat(config.heartbeat)
        self.router: MessageRouter[H] = MessageRouter()
        self.requests = RequestTracker(id_factory=id_factory)
        self._classifier = classifier
        self._mask_source = mask_source
        self._state = ClientState.IDLE
        self._conn: ClientConnection | None = None
        self._generation = 0
        self._events: list[ClientEvent] = []
        self._actions: list[TransportAction] = []
        self._out: list[bytes] = []
        self._connect_deadline: float | None = None
        self._reconnect_at: float | None = None
        self._opened_at: float | None = None
        self._app_closed = False
        self._pending_failure: Failure | None = None
        self._transport_ended = False
        # sent but not yet confirmed by a pong or a clean close, oldest first (a list: an
        # idle client keeps one or two here, and an empty deque alone costs 600 bytes)
        self._unconfirmed: list[_Sent] = []
        # the heartbeat deadline last reported by next_deadline (see there)
        self._heartbeat_shown: float | None = None
        self._ping_marks: dict[bytes, int] = {}
        self._last_written = -1  # seq of the last message written to a transport
        self._request_sent_at: dict[str, float] = {}
        # counters
        self._connections = 0
        self._attempts = 0
        self._messages_in = 0
        self._messages_out = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._drops: dict[str, int] = {}
        self._possibly_lost = 0
        self._last_error: str | None = None

    # ------------------------------------------------------------------ outputs

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def connection(self) -> ClientConnection | None:
        """The current protocol connection, if a transport is up."""
        return self._conn

    def events(self) -> list[ClientEvent]:
        events, self._events = self._events, []
        return events

    def actions(self) -> list[TransportAction]:
        actions, self._actions = self._actions, []
        return actions

    def data_to_send(self) -> bytes:
        conn = self._conn
        out = self._out
        if not out:  # the usual case: only the live connection has bytes
            return b"" if conn is None else conn.data_to_send()
        if conn is not None:
            data = conn.data_to_send()
            if data:
                out.append(data)
        joined = b"".join(out)
        out.clear()
        return joined

    @property
    def writing_paused(self) -> bool:
        return self._conn is not None and self._conn.writing_paused

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must run next: the earliest of every timer, or None.

        The heartbeat's deadline moves with every message received; reported as is, it
        would make the adapter cancel and re-arm its timer once per message.  So a
        heartbeat deadline, once reported, stays until ``handle_timer`` runs at or after it
        (or an earlier one comes): the timer then fires early at worst once per
        ``interval``, and the heartbeat, whose own deadline is exact, does nothing early.
        """
        best = self._connect_deadline
        deadline = self._reconnect_at
        if deadline is not None and (best is None or deadline < best):
            best = deadline
        if len(self.queue):
            deadline = self.queue.next_deadline()
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        if len(self.requests):
            deadline = self.requests.next_deadline()
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        conn = self._conn
        if conn is not None:
            deadline = conn.next_deadline()
            if deadline is not None and (best is None or deadline < best):
                best = deadline
            if self._state is ClientState.OPEN:
                deadline = self.heartbeat.next_deadline()
                if deadline is None:
                    self._heartbeat_shown = None
                else:
                    shown = self._heartbeat_shown
                    if shown is None or deadline < shown:
                        self._heartbeat_shown = shown = deadline
                    if best is None or shown < best:
                        best = shown
        return best

    # ------------------------------------------------------------------ transitions

    def _transition(self, new: ClientState) -> None:
        old = self._state
        if new is old:
            return
        if new not in _TRANSITIONS[old]:
            raise AssertionError(f"illegal client transition {old.name} -> {new.name}")
        self._state = new
        self._events.append(StateChanged(old, new))

    # ------------------------------------------------------------------ application calls

    def start(self, now: float) -> None:
        """Open the first connection."""
        if self._state is not ClientState.IDLE:
            raise RuntimeError(f"start() in state {self._state.name}")
        self._open_transport(now)

    def reconnect(self, now: float) -> None:
        """Connect again now: after ``GaveUp``, or to cut a backoff wait short."""
        if self._state in (ClientState.WAITING_TO_RECONNECT, ClientState.CLOSED):
            self._app_closed = False
            self.policy.reset()
            self._reconnect_at = None
            self._open_transport(now)
        elif self._state is ClientState.IDLE:
            self.start(now)
        # connecting, handshaking, open or closing: nothing to do

    def send_text(self, text: str, *, now: float, ttl: float | None = None) -> int:
        """Send (or queue) a text message; returns its sequence number."""
        return self._submit(text, now, ttl=ttl, tag=None)

    def send_bytes(self, data: bytes, *, now: float, ttl: float | None = None) -> int:
        return self._submit(bytes(data), now, ttl=ttl, tag=None)

    def send_json(self, obj: Any, *, now: float, ttl: float | None = None) -> int:
        return self._submit(json.dumps(obj, separators=(",", ":")), now, ttl=ttl, tag=None)

    def send(self, type: str, data: Any = None, *, now: float, ttl: float | None = None) -> int:
        """Send an envelope ``{"type": type, "data": data}``."""
        return self._submit(encode_envelope(Envelope(type, data)), now, ttl=ttl, tag=None)

    def request(
        self, type: str, data: Any = None, *, now: float, timeout: float | None = None
    ) -> str:
        """Send an envelope with a fresh id; a reply with that id yields ``ResponseReceived``.

        Made while disconnected, the request waits in the queue and its timeout keeps
        running: when it expires, ``RequestTimedOut`` (and, if still queued, the message is
        dropped with cause ``EXPIRED``).
        """
        timeout = self.config.request_timeout if timeout is None else timeout
        pending = self.requests.new_request(type, data, timeout, now=now)
        try:
            self._submit(encode_envelope(pending.envelope()), now, ttl=timeout, tag=pending.id)
        except BaseException:
            self.requests.cancel(pending.id)
            raise
        self._request_sent_at[pending.id] = now
        return pending.id

    def ping(self, *, now: float) -> bytes | None:
        """Send a ping now if open; returns its payload (its pong yields ``PongReceived``)."""
        if self._state is not ClientState.OPEN or self._conn is None:
            return None
        return self._send_ping(now)

    def close(self, code: int = 1000, reason: str = "", *, now: float) -> None:
        """Close for good: no reconnection; queued messages are dropped with events."""
        if self._app_closed and self._state in (ClientState.CLOSING, ClientState.CLOSED):
            return
        self._app_closed = True
        self._reconnect_at = None
        self._connect_deadline = None
        self._drop_all(self.queue.clear(DropCause.CLOSED), "client closed")
        for pending in self.requests.cancel_all():
            self._request_sent_at.pop(pending.id, None)
        if self._state is ClientState.OPEN and self._conn is not None:
            self._conn.close(code, reason, now=now)
            self._transition(ClientState.CLOSING)
            self._pump(now)
        elif self._state in (ClientState.CONNECTING, ClientState.HANDSHAKING):
            self._drop_transport("client closed")
            self._finish(Failure(FailureKind.LOCAL_CLOSE, detail="closed by the application"), now)
        elif self._state is ClientState.CLOSING:
            pass  # the current close finishes; _finish sees _app_closed
        else:
            self._transition(ClientState.CLOSED)

    # ------------------------------------------------------------------ transport news

    def connection_made(self, now: float) -> None:
        """The transport ``OpenTransport`` asked for is up (TLS included)."""
        if self._state is not ClientState.CONNECTING:
            return
        self._connect_deadline = None
        self._transport_ended = False
        cfg = self.config
        self._conn = ClientConnection(
            self.url,
            config=cfg.connection,
            subprotocols=cfg.subprotocols,
            extra_headers=cfg.headers,
            origin=cfg.origin,
            mask_source=self._mask_source,
            now=now,
        )
        self._transition(ClientState.HANDSHAKING)

    def connection_failed(
        self,
        error: str,
        now: float,
        *,
        refused: bool = False,
        timed_out: bool = False,
        tls: bool = False,
    ) -> None:
        """Opening the transport failed (refused, timed out, DNS, TLS...)."""
        if self._state is not ClientState.CONNECTING:
            return
        self._connect_deadline = None
        kind = FailureKind.CONNECT_ERROR
        if refused:
            kind = FailureKind.CONNECT_REFUSED
        elif timed_out:
            kind = FailureKind.CONNECT_TIMEOUT
        elif tls:
            kind = FailureKind.TLS_ERROR
        failure = Failure(kind, detail=error)
        self._events.append(Disconnected(failure, 1006, error, clean=False))
        self._finish(failure, now)

    def connection_lost(self, error: str | None, now: float) -> None:
        """The transport died (reset, error) without the core asking to close it."""
        if self._conn is None:
            return
        if error is not None:
            self._last_error = error
        self._transport_ended = True
        self._conn.receive_eof(now)
        self._pump(now, transport_gone=True)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes read from the transport (kept as a copy: a read buffer may be reused)."""
        conn = self._conn
        if conn is None:
            return
        if self._state is ClientState.OPEN:
            self.heartbeat.activity(now)
        conn.receive_data(data, now)
        self._pump(now)

    def receive_eof(self, now: float) -> None:
        if self._conn is None:
            return
        self._transport_ended = True
        self._conn.receive_eof(now)
        self._pump(now, transport_gone=True)

    def handle_timer(self, now: float) -> None:
        shown = self._heartbeat_shown
        if shown is not None and now >= shown:
            self._heartbeat_shown = None  # next_deadline reports the heartbeat's own again
        if self._connect_deadline is not None and now >= self._connect_deadline:
            self._connect_deadline = None
            self._drop_transport("connect timed out")
            self._connect_timed_out(now)
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            if self._state is ClientState.WAITING_TO_RECONNECT:
                self._open_transport(now)
        for dropped in self.queue.expire(now):
            self._report_drop(dropped, "time to live ran out")
        for pending in self.requests.expire(now):
            sent_at = self._request_sent_at.pop(pending.id, pending.sent_at)
            self._events.append(
                RequestTimedOut(pending.id, pending.type, pending.deadline - sent_at)
            )
            self._count_drop("request-timed-out")
        if self._conn is not None:
            self._conn.handle_timer(now)
            if self._state is ClientState.OPEN:
                for action in self.heartbeat.handle_timer(now):
                    if isinstance(action, SendPing):
                        self._send_ping(now)
                    elif isinstance(action, LoopLate):
                        self._events.append(HeartbeatLate(action.lag))
                    elif isinstance(action, PeerDead):
                        self._peer_dead(action, now)
                        return
            self._pump(now)

    def _connect_timed_out(self, now: float) -> None:
        failure = Failure(FailureKind.CONNECT_TIMEOUT, detail="connect timed out")
        self._events.append(Disconnected(failure, 1006, "connect timed out", clean=False))
        self._finish(failure, now)

    # ------------------------------------------------------------------ internals

    def _open_transport(self, now: float) -> None:
        self._generation += 1
        self._attempts += 1
        self._transition(ClientState.CONNECTING)
        self._connect_deadline = now + self.config.connect_timeout
        tls = None
        if self.url.secure:
            tls = self.config.tls if self.config.tls is not None else TLSConfig()
        hostname = None
        if tls is not None:
            hostname = tls.server_hostname or self.url.host
        self._events.append(Connecting(self.policy.attempt, self.url.host, self.url.port))
        self._actions.append(
            OpenTransport(
                self.url.host,
                self.url.port,
                tls,
                hostname,
                self._generation,
                self.config.connect_timeout,
            )
        )

    def _drop_transport(self, reason: str) -> None:
        if self._conn is not None:
            data = self._conn.data_to_send()
            if data:
                self._out.append(data)
        self._detach()
        self._actions.append(CloseTransport(self._generation, reason))

    def _detach(self) -> None:
        """Forget the current protocol connection, keeping its counters in the totals."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            stats = conn.stats()
            self._messages_in += stats.messages_in
            self._messages_out += stats.messages_out
            self._bytes_in += stats.bytes_in
            self._bytes_out += stats.bytes_out

    def _submit(
        self, payload: str | bytes, now: float, *, ttl: float | None, tag: str | None
    ) -> int:
        if self._app_closed:
            refused = self.queue.bypass(payload, now, tag=tag)
            self._count_drop(DropCause.REJECTED.value)
            self._events.append(
                MessageDropped(refused.seq, payload, DropCause.REJECTED, "client closed", tag)
            )
            raise ClientClosedError("the client is closed; message refused")
        conn = self._conn
        if (
            self._state is ClientState.OPEN
            and conn is not None
            and not len(self.queue)
            and conn.state is ConnectionState.OPEN
        ):
            # Straight out: no QueuedMessage is built unless the message is reported lost.
            seq = self.queue.take_seq()
            if isinstance(payload, str):
                conn.send_text(payload)
            else:
                conn.send_bytes(payload)
            self._sent(conn, (seq, payload, now, tag, None), now)
            return seq
        try:
            message, dropped = self.queue.put(payload, now, ttl=ttl, tag=tag)
        except QueueFull as exc:
            self._count_drop(DropCause.REJECTED.value)
            refused = self.queue.bypass(payload, now, tag=tag)
            self._events.append(
                MessageDropped(refused.seq, payload, DropCause.REJECTED, exc.reason, tag)
            )
            raise
        for item in dropped:
            self._report_drop(item, "queue bound reached")
        return message.seq

    def _write(self, conn: ClientConnection, message: QueuedMessage, now: float) -> None:
        if isinstance(message.payload, str):
            conn.send_text(message.payload)
        else:
            conn.send_bytes(message.payload)
        self._sent(conn, (message.seq, message.payload, now, None, message), now)

    def _sent(self, conn: ClientConnection, sent: _Sent, now: float) -> None:
        """A message was written: it stays unconfirmed until a pong or a clean close."""
        self._last_written = sent[0]
        unconfirmed = self._unconfirmed
        unconfirmed.append(sent)
        if len(unconfirmed) > self.config.track_unconfirmed:
            # Too many unconfirmed: ask the peer for a confirmation now.
            self._send_ping_if_none_pending(conn, now)

    def _send_ping_if_none_pending(self, conn: ClientConnection, now: float) -> None:
        if not self._ping_marks and conn.state is ConnectionState.OPEN:
            payload = conn.ping(now=now)
            self._ping_marks[payload] = self._last_written

    def _send_ping(self, now: float) -> bytes | None:
        conn = self._conn
        if conn is None or conn.state is not ConnectionState.OPEN:
            return None
        payload = conn.ping(now=now)
        self._ping_marks[payload] = self._last_written
        self.heartbeat.ping_sent(now)
        return payload

    def _flush(self, now: float) -> None:
        conn = self._conn
        # The handshake response and a close frame can arrive in one read: by the time
        # Opened is processed the connection may already be closed, and what is queued
        # waits for the next connection.
        if conn is None or conn.state is not ConnectionState.OPEN:
            return
        for text in self.config.on_open:
            self._write(conn, self.queue.bypass(text, now), now)
        for dropped in self.queue.expire(now):
            self._report_drop(dropped, "time to live ran out")
        while conn.state is ConnectionState.OPEN:
            message = self.queue.popleft()
            if message is None:
                break
            if message.tag is not None and self.requests.get(str(message.tag)) is None:
                continue  # its request already timed out or was cancelled (already reported)
            self._write(conn, message, now)

    def _confirm(self, up_to_seq: int) -> None:
        unconfirmed = self._unconfirmed
        confirmed = 0
        for sent in unconfirmed:
            if sent[0] > up_to_seq:
                break
            confirmed += 1
        if confirmed:
            del unconfirmed[:confirmed]

    def _report_unconfirmed_lost(self) -> None:
        """Every unconfirmed message goes out in one ``MessagesPossiblyLost``; none remain."""
        lost = tuple(
            queued
            if queued is not None
            else QueuedMessage(seq, payload, _size(payload), at, None, tag)
            for seq, payload, at, tag, queued in self._unconfirmed
        )
        self._unconfirmed.clear()
        self._possibly_lost += len(lost)
        self._count_drop("possibly-lost", len(lost))
        self._events.append(MessagesPossiblyLost(lost))

    def _pump(self, now: float, *, transport_gone: bool = False) -> None:
        """Process the protocol connection's events; the heart of the state machine."""
        conn = self._conn
        if conn is None:
            return
        for event in conn.events():
            if isinstance(event, MessageReceived):
                self._on_message(event.data, now)
            elif isinstance(event, Opened):
                self._on_opened(event, now)
            elif isinstance(event, PongReceived):
                mark = self._ping_marks.pop(event.payload, None)
                if mark is not None:
                    self._confirm(mark)
                    self.heartbeat.pong_received(now, event.round_trip)
                self._events.append(event)
            elif isinstance(event, Rejected):
                retry_after = None
                value = event.header("retry-after")
                if value is not None:
                    retry_after = parse_retry_after(value)
                self._pending_failure = Failure(
                    FailureKind.HTTP_STATUS,
                    status=event.status,
                    retry_after=retry_after,
                    detail=f"HTTP {event.status}",
                )
            elif isinstance(event, Closed):
                self._on_closed(event, now)
        if self._conn is not None and (conn.should_close_transport or transport_gone):
            failure = self._pending_failure
            self._pending_failure = None
            if transport_gone:
                self._detach()
            else:
                self._drop_transport("connection closed")
            if failure is not None:
                self._finish(failure, now)

    def _on_message(self, data: str | bytes, now: float) -> None:
        if not self.router.has_handlers and not self.requests:
            # Nothing to route to and no reply awaited: skip decoding the envelope.
            self._events.append(Routed(data, None, ()))
            return
        route = self.router.route(data)
        envelope = route.envelope
        if envelope is not None and envelope.id is not None and len(self.requests):
            pending = self.requests.match(envelope)
            if pending is not None:
                sent_at = self._request_sent_at.pop(pending.id, pending.sent_at)
                self._events.append(ResponseReceived(pending.id, envelope, now - sent_at))
                return
        self._events.append(Routed(data, envelope, route.handlers, route.raw_reason))

    def _on_opened(self, event: Opened, now: float) -> None:
        self._connections += 1
        self._opened_at = now
        self.policy.connection_opened(now)
        self._transition(ClientState.OPEN)
        self.heartbeat.start(now)
        self._events.append(
            Connected(self.policy.attempt, event.subprotocol, event.extensions, event.headers)
        )
        self._flush(now)

    def _on_closed(self, event: Closed, now: float) -> None:
        was_open = self._state in (ClientState.OPEN, ClientState.CLOSING) and self._opened_at
        self.heartbeat.stop()
        self._ping_marks.clear()
        if event.clean and event.initiator is Initiator.LOCAL:
            # RFC 6455 section 7.1.2: the peer echoed our close after reading every
            # frame we sent before it.  A close the peer started proves nothing about
            # frames still in flight towards it.
            self._unconfirmed.clear()
        elif self._unconfirmed:
            self._report_unconfirmed_lost()
        if self._pending_failure is not None:  # a rejection, already classified
            failure = self._pending_failure
        elif self._app_closed:
            failure = Failure(
                FailureKind.LOCAL_CLOSE, close_code=event.code, detail="closed by the application"
            )
        elif not was_open:
            if self._transport_ended:
                kind = FailureKind.HANDSHAKE_EOF
            elif event.initiator is Initiator.LOCAL:
                kind = FailureKind.HANDSHAKE_TIMEOUT
            else:
                kind = FailureKind.HANDSHAKE_ERROR
            failure = Failure(kind, detail=event.detail or event.reason)
        elif (
            event.cause in (CloseCause.EOF, CloseCause.LOCAL_ERROR)
            and event.initiator is Initiator.NONE
        ):
            failure = Failure(
                FailureKind.TRANSPORT_LOST,
                close_code=1006,
                detail=event.detail or "connection lost",
            )
        else:
            code = None if event.code == 1005 else event.code
            failure = Failure(
                FailureKind.CLOSED, close_code=code, detail=event.reason or event.detail
            )
        if failure.detail:
            self._last_error = failure.detail
        self._events.append(Disconnected(failure, event.code, event.reason, event.clean))
        if self._opened_at is not None:
            self.policy.connection_closed(now)
            self._opened_at = None
        self._pending_failure = failure
        if self._state is not ClientState.CLOSING:
            self._transition(ClientState.CLOSING)

    def _peer_dead(self, action: PeerDead, now: float) -> None:
        conn = self._conn
        detail = f"no pong or data for {action.silent_for:.3f}s ({action.cause.value})"
        if conn is not None and conn.state is ConnectionState.OPEN:
            conn.close(1011, "keepalive timeout", now=now)
        if self._unconfirmed:
            self._report_unconfirmed_lost()
        self.heartbeat.stop()
        self._ping_marks.clear()
        failure = Failure(FailureKind.HEARTBEAT_TIMEOUT, detail=detail)
        self._last_error = detail
        self._events.append(Disconnected(failure, 1011, "keepalive timeout", clean=False))
        if self._opened_at is not None:
            self.policy.connection_closed(now)
            self._opened_at = None
        self._drop_transport("heartbeat: peer dead")
        self._finish(failure, now)

    def _finish(self, failure: Failure, now: float) -> None:
        """A transport is gone: reconnect later, or stop for good."""
        self._detach()
        self._connect_deadline = None
        if self._app_closed or failure.kind is FailureKind.LOCAL_CLOSE:
            self._transition(ClientState.CLOSED)
            return
        decision = self._classifier(failure)
        if decision.retry:
            delay = self.policy.next_delay(decision.floor)
            if delay is not None:
                self._transition(ClientState.WAITING_TO_RECONNECT)
                self._reconnect_at = now + delay
                self._events.append(ReconnectScheduled(self.policy.attempt, delay, decision.reason))
                return
            reason = f"{decision.reason}; no attempts left"
        else:
            reason = decision.reason
        self._transition(ClientState.CLOSED)
        self._events.append(GaveUp(reason, failure))

    def _report_drop(self, dropped: Dropped, detail: str) -> None:
        message = dropped.message
        tag = str(message.tag) if message.tag is not None else None
        if tag is not None and dropped.cause is not DropCause.EXPIRED:
            # the request can no longer be answered: it ends with this drop
            self.requests.cancel(tag)
            self._request_sent_at.pop(tag, None)
        self._count_drop(dropped.cause.value)
        self._events.append(
            MessageDropped(message.seq, message.payload, dropped.cause, detail, tag)
        )

    def _drop_all(self, dropped: list[Dropped], detail: str) -> None:
        for item in dropped:
            self._report_drop(item, detail)

    def _count_drop(self, cause: str, n: int = 1) -> None:
        self._drops[cause] = self._drops.get(cause, 0) + n

    # ------------------------------------------------------------------ stats

    def stats(self, now: float) -> ClientStats:
        live = self._conn.stats() if self._conn is not None else ConnectionStats()
        return ClientStats(
            state=self._state,
            url=self.config.url,
            uptime=(now - self._opened_at)
            if self._opened_at is not None and self._state is ClientState.OPEN
            else 0.0,
            connections=self._connections,
            attempts=self._attempts,
            reconnect_attempt=self.policy.attempt,
            messages_in=self._messages_in + live.messages_in,
            messages_out=self._messages_out + live.messages_out,
            bytes_in=self._bytes_in + live.bytes_in,
            bytes_out=self._bytes_out + live.bytes_out,
            queue_depth=len(self.queue),
            queue_bytes=self.queue.bytes,
            drops=dict(self._drops),
            possibly_lost=self._possibly_lost,
            requests_pending=len(self.requests),
            requests_timed_out=self.requests.stats().timed_out,
            round_trip=self.heartbeat.round_trips.snapshot(),
            last_error=self._last_error,
        )
