"""The half of every adapter that is the same on every runtime: no I/O, no runtime imports.

An adapter owns transports and a way to wait; everything it would otherwise repeat lives
here, around a few hook methods the adapter overrides (or, in tests, passes to ``__init__``
by name: ``clock=``, ``wake=``, ``reading=``, ``run=``, ``opened=``):

- ``_clock()``: the monotonic clock giving the core its ``now`` (``time.monotonic``);
- ``_wake()``: something changed (a message arrived, a lifecycle event, the end): tasks or
  threads waiting in ``recv``/``close``/``wait_for`` should look again;
- waiters: one-shot result objects with ``done``, ``set_result`` and ``set_exception``
  that the adapter creates and hands over (an ``asyncio.Future`` fits; ``Pending`` is a
  plain slot polled after ``wake()``);
- ``_reading(paused)``: the inbox filled up (stop reading the transport) or drained;
- ``_run_user(handler, argument)``: call user code the runtime's way (``call_user`` does the
  calling and logging; the hook decides where an awaitable result runs);
- ``_opened()`` (server connections): the handshake completed, start the handler.

Hooks are methods rather than stored callables so that an idle connection carries no
bound-method objects and a compact instance dictionary.

``ClientDriver`` dispatches ``ReconnectingClient`` events (routing to handlers or the
inbox, request and ping waiters, open waiters and ``ConnectError``, the end of iteration);
``SessionDriver`` does the same for one ``ServerSession`` (inbox, pongs, close code,
handler result -> close 1000 / 1011); ``ServerDriver`` owns the ``ServerHub``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import Any, Generic, Protocol, TypeVar

from zenws_core import (
    ClientEvent,
    ClientState,
    ClientStats,
    Closed,
    Connected,
    ConnectionStateError,
    Disconnected,
    Envelope,
    GaveUp,
    MessageDropped,
    MessageReceived,
    Opened,
    PongReceived,
    ReconnectingClient,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    Routed,
    ServerConfig,
    ServerHub,
    ServerSession,
    ServerStatus,
)
from zenws_core._queue import DropCause

from ._common import build_client_config, mask_keys
from ._errors import ConnectError, ConnectionClosed, RequestTimeout

__all__ = [
    "EVENTS_SEEN_LIMIT",
    "INBOX_LIMIT",
    "ClientDriver",
    "InOrder",
    "Opening",
    "Pending",
    "ServerDriver",
    "SessionDriver",
    "Waiter",
    "build_core",
    "call_user",
    "encode_json",
    "run_logged",
    "server_config",
]

log = logging.getLogger("zenws")
T = TypeVar("T")
R = TypeVar("R")
T_contra = TypeVar("T_contra", contravariant=True)
Handler = Callable[[Any], Any]

#: Messages buffered for ``recv`` before the transport stops reading (backpressure).
INBOX_LIMIT = 64
#: Lifecycle events kept in ``events_seen`` (the oldest go first); ``on_event`` sees all.
EVENTS_SEEN_LIMIT = 1000
#: ``connect()`` keywords that go to ``ReconnectingClient`` itself (injected randomness etc.).
CORE_OPTIONS = ("rng", "delays", "mask_source", "classifier", "id_factory")


class Waiter(Protocol[T_contra]):
    """A one-shot result the driver settles (``asyncio.Future`` has this shape)."""

    def done(self) -> bool: ...
    def set_result(self, value: T_contra, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class Pending(Generic[T]):
    """The plain waiter: a result slot that the waiting side polls after each ``wake()``."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: T, /) -> None:
        if not self._done:
            self._done, self._value = True, value

    def set_exception(self, exception: BaseException, /) -> None:
        if not self._done:
            self._done, self._error = True, exception

    def result(self) -> T:
        """The value, or raise the exception; only once ``done()``."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


W = TypeVar("W", bound=Waiter[Any])


def _settle(waiter: Waiter[T] | None, value: T) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(value)


def _fail(waiter: Waiter[Any] | None, error: BaseException) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_exception(error)


def call_user(handler: Callable[[Any], Any], argument: Any) -> Awaitable[Any] | None:
    """Call user code; an exception is logged (never raised), an awaitable result returned."""
    try:
        result = handler(argument)
    except Exception:
        log.exception("zenws handler %r failed", handler)
        return None
    return result if inspect.isawaitable(result) else None


#: ``InOrder``'s queue while no awaitable waits: shared, never mutated (an empty deque costs
#: 600 bytes per connection, and most handlers are plain functions).
_NOTHING_QUEUED: deque[Any] = deque(maxlen=0)


class InOrder:
    """User code whose awaitable results run one after another, in the order they came.

    An instance is the driver's ``run(handler, argument)`` hook (``call_user`` calls the
    handler and logs its errors); the adapter runs ``run()`` on one task of its runtime
    whenever ``pending`` and no such task is active.  A failing awaitable is logged and the
    next one runs.
    """

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[Awaitable[Any]] = _NOTHING_QUEUED  # a deque of its own when used

    def __call__(self, handler: Handler, argument: Any) -> None:
        result = call_user(handler, argument)
        if result is not None:
            if self._queue is _NOTHING_QUEUED:
                self._queue = deque()
            self._queue.append(result)

    @property
    def pending(self) -> bool:
        """Awaitables wait for ``run()``."""
        return bool(self._queue)

    async def run(self) -> None:
        """Await what waits, in order, until nothing is left."""
        while self._queue:
            await run_logged(self._queue.popleft())
        self._queue = _NOTHING_QUEUED


async def run_logged(awaitable: Awaitable[Any]) -> None:
    """Await what user code returned; its exception is logged, never raised."""
    try:
        await awaitable
    except Exception:
        log.exception("zenws async handler failed")


def encode_json(obj: Any) -> str:
    """Compact JSON text, as the core's ``send_json`` encodes it."""
    return json.dumps(obj, separators=(",", ":"))


def build_core(url: str, options: dict[str, Any]) -> ReconnectingClient[Handler]:
    """``connect(url, **options)``: ``rng``/``delays``/... go to the core, the rest to config."""
    core_kwargs = {name: options.pop(name) for name in CORE_OPTIONS if name in options}
    core_kwargs = {name: value for name, value in core_kwargs.items() if value is not None}
    core_kwargs.setdefault("mask_source", mask_keys)
    return ReconnectingClient(build_client_config(url, options), **core_kwargs)


def server_config(config: ServerConfig | None, options: dict[str, Any]) -> ServerConfig:
    """``serve(..., config=..., **fields)``: one ``ServerConfig`` (fields override ``config``)."""
    return dataclasses.replace(config or ServerConfig(), **options)


#: The inbox of a connection with no message waiting: shared, never mutated (an empty
#: deque costs 600 bytes, most of it on idle connections).
_NO_MESSAGES: deque[Any] = deque(maxlen=0)


#: What hook keyword arguments of the drivers' ``__init__`` replace.
_HOOKS = {"clock": "_clock", "wake": "_wake", "reading": "_reading", "run": "_run_user"}


class _Inbox:
    """Messages for ``recv`` and the pause/resume-reading decisions around them.

    Also the hooks' defaults: ``time.monotonic`` and nothing to do.
    """

    _clock = staticmethod(time.monotonic)
    _inbox_limit = INBOX_LIMIT

    def __init__(self, limit: int, hooks: dict[str, Callable[..., Any]]) -> None:
        self._inbox: deque[str | bytes] = _NO_MESSAGES
        if limit != INBOX_LIMIT:
            self._inbox_limit = limit
        for name, hook in hooks.items():  # given hooks replace the methods (tests)
            setattr(self, _HOOKS.get(name, f"_{name}"), hook)
        #: True while the transport should not be read (the inbox is full).
        self._reading_paused = False

    def _wake(self) -> None:
        """Hook: something changed; whoever waits should look again."""

    def _reading(self, paused: bool) -> None:
        """Hook: stop reading the transport (``True``: the inbox is full) or read again.

        By default a wake-up: whoever reads looks at ``_reading_paused`` again.
        """
        self._wake()

    def _put(self, message: str | bytes) -> None:
        if self._inbox is _NO_MESSAGES:
            self._inbox = deque()
        self._inbox.append(message)
        if len(self._inbox) >= self._inbox_limit and not self._reading_paused:
            self._reading_paused = True
            self._reading(True)

    def _pop(self) -> str | bytes:
        message = self._inbox.popleft()
        if not self._inbox:
            self._inbox = _NO_MESSAGES
        if self._reading_paused and len(self._inbox) <= self._inbox_limit // 2:
            self._reading_paused = False
            self._reading(False)
        return message


# =========================================================================== client


class ClientDriver(_Inbox):
    """The runtime-neutral half of a client: event dispatch, waiters, inbox, user API."""

    def __init__(
        self,
        core: ReconnectingClient[Handler],
        *,
        inbox_limit: int = INBOX_LIMIT,
        **hooks: Callable[..., Any],
    ) -> None:
        super().__init__(inbox_limit, hooks)
        self._core = core
        self._callbacks: list[Handler] = []
        self._replies: dict[str, Waiter[Envelope]] = {}
        self._pings: dict[bytes, tuple[float, Waiter[float]]] = {}
        self._open_waiters: list[Waiter[None]] = []
        self._opened = False
        self._events_total = 0
        self._last_close: tuple[int | None, str] = (None, "")
        #: The latest lifecycle events (every ``ClientEvent`` but ``Routed``), for tests.
        self.events_seen: list[ClientEvent] = []
        self.subprotocol: str | None = None

    # ------------------------------------------------------------------ user API (sync)

    @property
    def state(self) -> ClientState:
        return self._core.state

    def stats(self) -> ClientStats:
        return self._core.stats(self._clock())

    def on(self, pattern: str, handler: Handler) -> None:
        """Route envelopes whose type matches ``pattern`` (``"a.b"``, ``"a.*"``, ``"*"``)."""
        self._core.router.on(pattern, handler)

    def on_raw(self, handler: Handler) -> None:
        """Receive messages that are not JSON envelopes (instead of ``recv``)."""
        self._core.router.on_raw(handler)

    def on_event(self, callback: Handler) -> None:
        """Call ``callback(event)`` (sync or async) for every lifecycle event."""
        self._callbacks.append(callback)

    # ------------------------------------------------------------------ for the adapter

    def _run_user(self, handler: Handler, argument: Any) -> None:
        """Hook: call user code the runtime's way (here: plainly; awaitables are dropped)."""
        call_user(handler, argument)

    @property
    def _closed(self) -> bool:
        return self._core.state is ClientState.CLOSED

    def _dispatch_events(self) -> bool:
        """Drain the core's events into handlers, the inbox and waiters; then ``wake()``.

        Returns whether there were any.
        """
        events = self._core.events()
        if not events:
            return False
        for event in events:
            self._dispatch(event)
        if len(self._replies) > len(self._core.requests):  # close() cancels silently
            for request_id in [r for r in self._replies if self._core.requests.get(r) is None]:
                _fail(self._replies.pop(request_id), ConnectionClosed(None, "request cancelled"))
        if self._core.state is ClientState.CLOSED:
            self._end()
        self._wake()
        return True

    def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, Routed):
            if event.handlers:  # a message with handlers is theirs, not recv()'s
                argument = event.envelope if event.envelope is not None else event.data
                for handler in event.handlers:
                    self._run_user(handler, argument)
            else:
                self._put(event.data)
            return
        self.events_seen.append(event)
        self._events_total += 1
        if len(self.events_seen) > EVENTS_SEEN_LIMIT:
            del self.events_seen[0]
        if isinstance(event, ResponseReceived):
            _settle(self._replies.pop(event.request_id, None), event.envelope)
        elif isinstance(event, RequestTimedOut):
            error = RequestTimeout(event.request_id, event.type, event.timeout)
            _fail(self._replies.pop(event.request_id, None), error)
        elif isinstance(event, MessageDropped):
            if event.request_id is not None and event.cause is not DropCause.EXPIRED:
                dropped = ConnectionClosed(None, f"request dropped: {event.detail}")
                _fail(self._replies.pop(event.request_id, None), dropped)
        elif isinstance(event, PongReceived):
            sent = self._pings.pop(event.payload, None)
            if sent is not None:
                rtt = event.round_trip
                _settle(sent[1], self._clock() - sent[0] if rtt is None else rtt)
        elif isinstance(event, Connected):
            self.subprotocol, self._opened = event.subprotocol, True
            for opened in self._open_waiters:
                _settle(opened, None)
            self._open_waiters.clear()
        elif isinstance(event, Disconnected):  # pongs of that connection will never come
            self._last_close = (event.code, event.reason)
            self._fail_pings(ConnectionClosed(event.code, event.reason))
        elif isinstance(event, GaveUp):
            detail = f"{event.reason} ({event.failure.detail})"
            gave_up = ConnectError(f"could not connect to {self._core.url}: {detail}", event)
            for opened in self._open_waiters:
                _fail(opened, gave_up)
            self._open_waiters.clear()
        for callback in self._callbacks:
            self._run_user(callback, event)

    def _fail_pings(self, error: BaseException) -> None:
        pings, self._pings = self._pings, {}
        for _sent_at, waiter in pings.values():
            _fail(waiter, error)

    def _end(self) -> None:
        """Closed for good (or gave up): fail what still waits for an answer."""
        error = ConnectionClosed(*self._last_close)
        self._fail_pings(error)
        replies, self._replies = self._replies, {}
        for reply in replies.values():
            _fail(reply, ConnectionClosed(None, "client closed"))
        for opened in self._open_waiters:
            _fail(opened, ConnectError(f"{self._core.url}: client closed before it opened"))
        self._open_waiters.clear()

    def _expect_reply(self, request_id: str, waiter: W) -> W:
        """``waiter`` gets the reply to ``request_id`` (or its timeout, drop, cancellation)."""
        if self._core.requests.get(request_id) is None:
            waiter.set_exception(ConnectionClosed(None, "request cancelled"))
        else:
            self._replies[request_id] = waiter
        return waiter

    def _start_ping(self, waiter: W) -> W:
        """Ping now; ``waiter`` gets the round trip (``ConnectionClosed`` when not open)."""
        now = self._clock()
        payload = self._core.ping(now=now)
        if payload is None:
            raise ConnectionClosed(*self._last_close)
        self._pings[payload] = (now, waiter)
        return waiter

    def _open_waiter(self, waiter: W) -> W:
        """``waiter`` is settled by the first ``Connected``; ``ConnectError`` on ``GaveUp``."""
        if self._opened:
            waiter.set_result(None)
        elif self._closed:
            gave_up = next((e for e in reversed(self.events_seen) if isinstance(e, GaveUp)), None)
            reason = "client closed before it opened" if gave_up is None else gave_up.reason
            message = f"could not connect to {self._core.url}: {reason}"
            waiter.set_exception(ConnectError(message, gave_up))
        else:
            self._open_waiters.append(waiter)
        return waiter

    def _open_timed_out(self, timeout: float | None) -> ConnectError:
        return ConnectError(f"{self._core.url} not open within {timeout:g}s")

    def _take(self) -> str | bytes | None:
        """The next inbox message, ``None`` to wait, ``ConnectionClosed`` at the end."""
        if self._inbox:
            return self._pop()
        if self._core.state is ClientState.CLOSED:
            raise ConnectionClosed(*self._last_close)
        return None

    def _match(self, predicate: Callable[[ClientEvent], bool], seen: int) -> tuple[Any, int]:
        """The first event after the ``seen``-th ever recorded that matches, and the new count."""
        first = self._events_total - len(self.events_seen)
        for event in self.events_seen[max(seen - first, 0) :]:
            if predicate(event):
                return event, self._events_total
        return None, self._events_total


# =========================================================================== server


class SessionDriver(_Inbox):
    """The runtime-neutral half of one server connection (a ``ServerSession``)."""

    def __init__(
        self,
        session: ServerSession,
        *,
        inbox_limit: int = INBOX_LIMIT,
        **hooks: Callable[..., Any],
    ) -> None:
        super().__init__(inbox_limit, hooks)
        self._session = session
        self._pings: dict[bytes, tuple[float, Waiter[float]]] = {}
        #: True once the final ``Closed`` arrived (or the transport is gone).
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.remote_address: Any = None

    @property
    def request(self) -> RequestReceived:
        """The upgrade request (path, headers) this connection was opened with."""
        assert self._session.request is not None
        return self._session.request

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.request.headers}

    @property
    def subprotocol(self) -> str | None:
        return self._session.subprotocol

    # ------------------------------------------------------------------ for the adapter

    def _opened(self) -> None:
        """Hook: the opening handshake completed; start the application's handler."""

    def _dispatch_events(self) -> bool:
        """Drain the session's events: inbox, handler start, pongs, the final close.

        Returns whether there were any.
        """
        events = self._session.events()
        if not events:
            return False
        for event in events:
            if isinstance(event, MessageReceived):
                self._put(event.data)
            elif isinstance(event, Opened):
                self._opened()
            elif isinstance(event, PongReceived):
                sent = self._pings.pop(event.payload, None)
                if sent is not None:
                    rtt = event.round_trip
                    _settle(sent[1], self._clock() - sent[0] if rtt is None else rtt)
            elif isinstance(event, Closed):
                self.close_code, self.close_reason = event.code, event.reason
                self._mark_closed()
        self._wake()
        return True

    def _mark_closed(self) -> None:
        """The connection is over: end iteration and fail pending pings."""
        self.closed = True
        pings, self._pings = self._pings, {}
        for _sent_at, waiter in pings.values():
            _fail(waiter, ConnectionClosed(self.close_code, self.close_reason))
        self._wake()

    def _take(self) -> str | bytes | None:
        """The next message, ``None`` to wait, ``ConnectionClosed`` once closed."""
        if self._inbox:
            return self._pop()
        if self.closed:
            raise ConnectionClosed(self.close_code, self.close_reason)
        return None

    def _send_message(self, message: str | bytes) -> None:
        """Hand a message to the session; ``ConnectionClosed`` once it is not open."""
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        try:
            self._session.send(message)
        except ConnectionStateError:
            raise ConnectionClosed(self.close_code, self.close_reason) from None

    def _start_ping(self, waiter: W) -> W:
        """Ping the client now; ``waiter`` gets the round trip."""
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        now = self._clock()
        self._pings[self._session.ping(now=now)] = (now, waiter)
        return waiter

    def _start_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2); nothing if already closing."""
        self._session.close(code, reason, now=self._clock())

    def _handler_done(self, error: BaseException | None) -> None:
        """The handler returned (close 1000) or raised (log, close 1011), if still open."""
        if error is not None:
            log.error("zenws handler for %s failed; closing with 1011", self.path, exc_info=error)
        if self._session.is_open:
            if error is None:
                self._start_close(1000, "")
            else:
                self._start_close(1011, "internal error")


class ServerDriver:
    """The runtime-neutral half of a server: the hub, the address, status and shutdown."""

    def __init__(
        self, config: ServerConfig, *, clock: Callable[[], float] = time.monotonic, secure: bool
    ) -> None:
        self.hub = ServerHub(config, now=clock())
        self._clock = clock
        self._secure = secure
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        """``ws://host:port/`` (``wss://`` with TLS); a wildcard host reads as loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"{'wss' if self._secure else 'ws'}://{host}:{self.port}/"

    def status(self) -> ServerStatus:
        return self.hub.status(self._clock())

    def _begin_shutdown(self, connections: Iterable[SessionDriver], timeout: float | None) -> float:
        """Close every connection with 1001 (RFC 6455 section 7.4.1); the deadline to wait."""
        self.hub.shutting_down = True
        now = self._clock()
        for ws in connections:
            ws._session.shutdown(now=now)
        return self.hub.config.shutdown_timeout if timeout is None else timeout


class Opening(Generic[R]):
    """What async ``connect``/``serve`` return: ``await`` it, or ``async with`` it."""

    def __init__(self, start: Callable[[], Coroutine[Any, Any, R]]) -> None:
        self._start = start
        self._object: Any = None

    def __await__(self) -> Generator[Any, None, R]:
        return self._start().__await__()

    async def __aenter__(self) -> R:
        self._object = await self._start()
        return self._object  # type: ignore[no-any-return]

    async def __aexit__(self, *exc_info: object) -> None:
        if self._object is not None:
            await self._object.__aexit__(*exc_info)
