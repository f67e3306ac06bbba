"""zenws on curio: native curio sockets and TLS driving the sans-IO core.

Each socket has a reader task, a writer task and, once the core drops it, a closer;
each client (and each server connection) has one timer task sleeping until the core's
next deadline.  Everything else (reconnect, heartbeat, queueing, routing, timeouts,
HTTP routes, graceful 1001) happens in ``zenws_core``.  ``now`` is ``time.monotonic()``,
the clock of curio's kernel.  TLS uses ``ssl.SSLContext.wrap_socket`` on the raw socket
plus curio's ``Socket.do_handshake`` (``curio.ssl.wrap_socket`` calls ``ssl.wrap_socket``,
deprecated on Python 3.11 and gone in 3.12, so it is avoided).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import socket as _socket
import ssl as _ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, Protocol, TypeVar

import curio
from curio.io import Socket

from zenws_core import (
    ClientEvent,
    ClientState,
    ClientStats,
    Closed,
    CloseTransport,
    Connected,
    Disconnected,
    Envelope,
    GaveUp,
    MessageDropped,
    MessageReceived,
    Opened,
    OpenTransport,
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

from ._common import ConnectTunnel, build_client_config, classify_os_error, client_ssl_context
from ._common import proxy_for as _proxy_for
from ._errors import ConnectError, ConnectionClosed, RequestTimeout

__all__ = ["Client", "Server", "ServerWebSocket", "connect", "serve"]

log = logging.getLogger("zenws.curio")
T = TypeVar("T")
Handler = Callable[[Any], Any]

#: Messages buffered per connection before the reader stops reading (backpressure).
INBOX_LIMIT = 64
READ_SIZE = 256 * 1024
#: Seconds a dropped transport may take to write its last bytes before it is cut.
CLOSE_GRACE = 5.0


def _now() -> float:
    return time.monotonic()  # the clock curio's kernel sleeps on


async def _wait(event: Any, timeout: float | None) -> None:
    """Wait for a curio ``Event``; ``TimeoutError`` after ``timeout`` seconds."""
    if timeout is None:
        await event.wait()
        return
    try:
        await curio.timeout_after(max(timeout, 0.0), event.wait())
    except curio.TaskTimeout:
        raise TimeoutError(f"nothing happened within {timeout:g}s") from None


async def _pulse(event: Any) -> None:
    """Wake every task waiting on ``event`` and re-arm it."""
    await event.set()
    event.clear()


class _Owner(Protocol):
    def drain(self, t: _Transport) -> bytes: ...
    async def feed(self, t: _Transport, data: bytes | BaseException) -> None: ...
    async def room(self, t: _Transport) -> None: ...


class _Transport:
    """One socket: a reader task, a writer task that drains the core, and a closer."""

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner
        self.sock: Any = None
        self.reader: Any = None
        self.writer: Any = None
        self.final: list[bytes] = []
        self.closing = False
        self.kick = curio.Event()
        self.progress = curio.Event()
        self.done = curio.Event()

    async def serve(self, sock: Any) -> None:
        """Run by the reader task: start the writer, read until EOF or error."""
        if self.closing:
            return
        self.sock = sock
        self.writer = await curio.spawn(self._write_loop, daemon=True)
        while not self.closing:
            try:
                data: bytes | BaseException = await sock.recv(READ_SIZE)
            except OSError as exc:
                data = exc
            async with curio.disable_cancellation():
                await self.owner.feed(self, data)  # b"" is EOF
            if not isinstance(data, bytes) or not data:
                return
            await self.owner.room(self)

    async def _write_loop(self) -> None:
        try:
            while True:
                data = b"" if self.closing else self.owner.drain(self)
                if not data and self.final:
                    data = b"".join(self.final)
                    self.final.clear()
                if data:
                    await _pulse(self.progress)  # the core drained: senders may go on
                    await self.sock.sendall(data)
                elif self.closing:
                    return
                else:
                    self.kick.clear()
                    await self.kick.wait()
        except OSError as exc:
            async with curio.disable_cancellation():
                await self.owner.feed(self, exc)

    async def shut(self, final: bytes = b"") -> None:
        """The core is done with this socket: write ``final``, then close (bounded)."""
        if final:
            self.final.append(final)
        if not self.closing:
            self.closing = True
            await self.kick.set()
            await curio.spawn(self._close, daemon=True)

    async def _close(self) -> None:
        if self.writer is not None:
            await curio.ignore_after(CLOSE_GRACE, self.writer.wait())
        await self.abort()

    async def abort(self) -> None:
        """Stop both tasks and close the socket now."""
        self.closing = True
        me = await curio.current_task()
        for task in (self.writer, self.reader):
            if task is not None and task is not me:
                await task.cancel()
        if self.sock is not None:
            await self.sock.close()
        await self.progress.set()
        await self.done.set()


def _nodelay(sock: Any) -> None:
    with contextlib.suppress(OSError):  # not a TCP socket
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)


async def _tcp(host: str, port: int) -> Any:
    """Connect to each address ``host`` resolves to, in turn (IPv6 literals included)."""
    try:
        infos = _socket.getaddrinfo(
            host, port, type=_socket.SOCK_STREAM, flags=_socket.AI_NUMERICHOST
        )
    except _socket.gaierror:
        infos = await curio.socket.getaddrinfo(host, port, type=_socket.SOCK_STREAM)
    error: OSError = OSError(f"{host} resolves to no address")
    for family, kind, proto, _name, address in infos:
        sock = curio.socket.socket(family, kind, proto)
        try:
            await sock.connect(address)
        except OSError as exc:
            error = exc
            await sock.close()
            continue
        except BaseException:
            await sock.close()
            raise
        _nodelay(sock)
        return sock
    raise error


async def _wrap_tls(sock: Any, context: _ssl.SSLContext, hostname: str | None, **kw: Any) -> Any:
    tls = Socket(
        context.wrap_socket(
            sock._socket, server_hostname=hostname, do_handshake_on_connect=False, **kw
        )
    )
    try:
        await tls.do_handshake()
    except BaseException:
        await tls.close()
        raise
    return tls


class _Waiter(Generic[T]):
    """One pending answer (a reply, a pong) or the error that replaced it."""

    def __init__(self) -> None:
        self.event = curio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    async def settle(self, value: T | None = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        await self.event.set()

    async def result(self) -> T:
        await self.event.wait()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class _Inbox:
    """Received messages for ``recv``; the reader pauses while ``INBOX_LIMIT`` are waiting."""

    def __init__(self) -> None:
        self.messages: deque[str | bytes] = deque()
        self.changed = curio.Event()
        self.ended = False

    async def put(self, message: str | bytes) -> None:
        self.messages.append(message)
        await _pulse(self.changed)

    async def end(self) -> None:
        self.ended = True
        await _pulse(self.changed)

    async def get(self, timeout: float | None, closed: Callable[[], BaseException]) -> str | bytes:
        deadline = None if timeout is None else _now() + timeout
        while not self.messages:
            if self.ended:
                raise closed()
            await _wait(self.changed, None if deadline is None else deadline - _now())
        message = self.messages.popleft()
        if len(self.messages) == INBOX_LIMIT // 2:
            await _pulse(self.changed)  # wake a paused reader
        return message

    async def room(self) -> None:
        while len(self.messages) >= INBOX_LIMIT and not self.ended:
            await self.changed.wait()


class _Opening(Generic[T]):
    """What ``connect``/``serve`` return: ``await`` it, or ``async with`` it."""

    def __init__(self, start: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._start = start
        self._obj: Any = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._start().__await__()

    async def __aenter__(self) -> T:
        obj = self._obj = await self._start()
        return obj

    async def __aexit__(self, *exc_info: object) -> None:
        await self._obj.__aexit__(*exc_info)


# --------------------------------------------------------------------------- client


class Client:
    """A resilient WebSocket client on curio; see ``connect``."""

    def __init__(
        self, core: ReconnectingClient[Handler], ssl: _ssl.SSLContext | None, proxy: str | None
    ) -> None:
        self._core = core
        self._ssl = ssl
        self._proxy = proxy
        self._contexts: dict[Any, _ssl.SSLContext] = {}
        self._transport: _Transport | None = None
        self._last: _Transport | None = None
        self._wake = curio.Event()
        self._sleeping_until: float | None = None
        self._changed = curio.Event()
        self._inbox = _Inbox()
        self._requests: dict[str, _Waiter[Envelope]] = {}
        self._pings: dict[bytes, tuple[float, _Waiter[float]]] = {}
        self._callbacks: list[Handler] = []
        self._backlog: deque[Awaitable[Any]] = deque()
        self._runner: Any = None
        self._timer: Any = None
        self.events_seen: list[ClientEvent] = []
        self.subprotocol: str | None = None

    # ------------------------------------------------------------------ application API

    @property
    def state(self) -> ClientState:
        return self._core.state

    def stats(self) -> ClientStats:
        return self._core.stats(_now())

    def on(self, pattern: str, handler: Handler) -> None:
        """Route envelopes whose type matches ``pattern`` (``"*"``: all) to ``handler``."""
        self._core.router.on(pattern, handler)

    def on_raw(self, handler: Handler) -> None:
        """Receive messages that are not JSON envelopes (instead of ``recv``)."""
        self._core.router.on_raw(handler)

    def on_event(self, callback: Handler) -> None:
        """Call ``callback(event)`` (sync or async) for every lifecycle event."""
        self._callbacks.append(callback)

    async def send_text(self, text: str) -> None:
        self._core.send_text(text, now=_now())
        await self._sent()

    async def send_bytes(self, data: bytes) -> None:
        self._core.send_bytes(data, now=_now())
        await self._sent()

    async def send_json(self, obj: Any) -> None:
        self._core.send_json(obj, now=_now())
        await self._sent()

    async def send(self, type: str, data: Any = None) -> None:
        """Send the envelope ``{"type": type, "data": data}`` (queued while disconnected)."""
        self._core.send(type, data, now=_now())
        await self._sent()

    async def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send a request envelope; the reply with its id, or ``RequestTimeout``."""
        waiter: _Waiter[Envelope] = _Waiter()
        self._requests[self._core.request(type, data, now=_now(), timeout=timeout)] = waiter
        await self._sent()
        return await waiter.result()

    async def ping(self) -> float:
        """Send a ping and return the round trip in seconds."""
        payload = self._core.ping(now=_now())
        if payload is None:
            raise ConnectionClosed(None, "not open")
        waiter: _Waiter[float] = _Waiter()
        self._pings[payload] = (_now(), waiter)
        await self._after()
        return await waiter.result()

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message no handler or request consumed; ``ConnectionClosed`` at the end."""
        return await self._inbox.get(timeout, lambda: ConnectionClosed(None, "client closed"))

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnection) and wait until the transport is gone."""
        self._core.close(code, reason, now=_now())
        await self._after()
        while self._core.state is not ClientState.CLOSED:
            await self._changed.wait()
        if self._last is not None:
            await self._last.done.wait()
        await self._finish()

    async def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float | None = None
    ) -> ClientEvent:
        """The first lifecycle event, already seen or still to come, matching ``predicate``."""
        deadline = None if timeout is None else _now() + timeout
        seen = 0
        while True:
            for event in self.events_seen[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events_seen)
            await _wait(self._changed, None if deadline is None else deadline - _now())

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ driving the core

    async def _sent(self) -> None:
        await self._after()
        while self._core.writing_paused and self._transport is not None:
            await self._transport.progress.wait()  # backpressure: let the writer drain

    async def _after(self) -> None:
        """After any input: run transport actions, dispatch events, kick writer and timer."""
        core = self._core
        for action in core.actions():
            if isinstance(action, OpenTransport):
                t = self._transport = _Transport(self)
                t.reader = await curio.spawn(self._open, t, action, daemon=True)
            elif isinstance(action, CloseTransport) and self._transport is not None:
                await self._drop(self._transport, core.data_to_send())
        for event in core.events():
            await self._dispatch(event)
        if self._transport is not None:
            await self._transport.kick.set()
        deadline = core.next_deadline()
        if deadline is not None and (
            self._sleeping_until is None or deadline < self._sleeping_until
        ):
            await self._wake.set()

    async def _tick(self) -> None:
        """The timer task: sleep until the core's next deadline (or a wake-up), then fire."""
        while True:
            self._wake.clear()
            self._sleeping_until = deadline = self._core.next_deadline()
            if deadline is None:
                await self._wake.wait()
            elif deadline > _now():
                await curio.ignore_after(deadline - _now(), self._wake.wait())
            self._sleeping_until = None
            deadline = self._core.next_deadline()
            if deadline is not None and _now() >= deadline:
                self._core.handle_timer(_now())
                await self._after()

    async def _open(self, t: _Transport, action: OpenTransport) -> None:
        """The reader task of one transport: connect (proxy, TLS), then read."""
        try:
            proxy = _proxy_for(action.host, action.tls is not None, proxy=self._proxy)
            target = (proxy.host, proxy.port) if proxy else (action.host, action.port)
            sock = await _tcp(*target)
            leftover: bytes | None = b""
            try:
                if proxy is not None:
                    tunnel = ConnectTunnel(proxy, action.host, action.port)
                    await sock.sendall(tunnel.request())
                    leftover = None
                    while leftover is None:
                        leftover = tunnel.receive(await sock.recv(READ_SIZE))
                if action.tls is not None:
                    context = self._ssl or self._contexts.get(action.tls)
                    if context is None:
                        context = self._contexts[action.tls] = client_ssl_context(action.tls)
                    sock = await _wrap_tls(sock, context, action.server_hostname)
            except BaseException:
                await sock.close()
                raise
        except Exception as exc:  # refused, DNS, TLS, proxy: the core decides what follows
            if self._transport is t:
                self._transport = None
                flags = classify_os_error(exc)
                self._core.connection_failed(str(exc) or type(exc).__name__, _now(), **flags)
                await self._after()
            return
        if self._transport is not t:
            await sock.close()
            return
        t.sock = sock
        async with curio.disable_cancellation():
            self._core.connection_made(_now())
            if leftover:
                self._core.receive_data(leftover, _now())
            await self._after()
        await t.serve(sock)

    def drain(self, t: _Transport) -> bytes:
        return self._core.data_to_send() if self._transport is t else b""

    async def feed(self, t: _Transport, data: bytes | BaseException) -> None:
        if self._transport is not t:
            return
        if isinstance(data, bytes) and data:
            self._core.receive_data(data, _now())
        else:
            self._transport = None  # EOF or error: the core considers the transport gone
            if isinstance(data, bytes):
                self._core.receive_eof(_now())
            else:
                self._core.connection_lost(str(data) or type(data).__name__, _now())
            await self._drop(t)
        await self._after()

    async def room(self, t: _Transport) -> None:
        await self._inbox.room()

    async def _drop(self, t: _Transport, final: bytes = b"") -> None:
        self._transport, self._last = None, t
        await t.shut(final)

    async def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, Routed):
            if event.handlers:  # a message with handlers is theirs, not recv()'s
                for handler in event.handlers:
                    await self._call(
                        handler, event.envelope if event.envelope is not None else event.data
                    )
            else:
                await self._inbox.put(event.data)
            return
        self.events_seen.append(event)
        if isinstance(event, ResponseReceived):
            if (waiter := self._requests.pop(event.request_id, None)) is not None:
                await waiter.settle(event.envelope)
        elif isinstance(event, RequestTimedOut):
            if (waiter := self._requests.pop(event.request_id, None)) is not None:
                await waiter.settle(
                    error=RequestTimeout(event.request_id, event.type, event.timeout)
                )
        elif isinstance(event, MessageDropped) and event.request_id is not None:
            if (waiter := self._requests.pop(event.request_id, None)) is not None:
                await waiter.settle(error=ConnectionClosed(None, event.detail))
        elif isinstance(event, PongReceived):
            if (sent := self._pings.pop(event.payload, None)) is not None:
                rtt = event.round_trip
                await sent[1].settle(_now() - sent[0] if rtt is None else rtt)
        elif isinstance(event, Connected):
            self.subprotocol = event.subprotocol
        elif isinstance(event, Disconnected):  # pongs of that connection will never come
            for _sent_at, ping in self._pings.values():
                await ping.settle(error=ConnectionClosed(event.code, event.reason))
            self._pings.clear()
        if isinstance(event, GaveUp) or self._core.state is ClientState.CLOSED:
            await self._end()
        for callback in self._callbacks:
            await self._call(callback, event)
        await _pulse(self._changed)

    async def _end(self) -> None:
        """Closed for good (or gave up): end iteration, fail what still waits for an answer."""
        await self._inbox.end()
        for waiter in self._requests.values():
            await waiter.settle(error=ConnectionClosed(None, "client closed"))
        for _sent_at, ping in self._pings.values():
            await ping.settle(error=ConnectionClosed(None, "client closed"))
        self._requests.clear()
        self._pings.clear()

    async def _call(self, handler: Handler, argument: Any) -> None:
        """Call user code; coroutines run in order on one runner task."""
        try:
            result = handler(argument)
        except Exception:
            log.exception("zenws handler %r failed", handler)
            return
        if hasattr(result, "__await__"):
            self._backlog.append(result)
            if self._runner is None or self._runner.terminated:
                self._runner = await curio.spawn(self._run_backlog, daemon=True)

    async def _run_backlog(self) -> None:
        while self._backlog:
            try:
                await self._backlog.popleft()
            except Exception:
                log.exception("zenws async handler failed")

    async def _start(self, wait_open: bool, open_timeout: float | None) -> Client:
        self._timer = await curio.spawn(self._tick, daemon=True)
        self._core.start(_now())
        await self._after()
        if not wait_open:
            return self
        try:
            event = await self.wait_for(lambda e: isinstance(e, Connected | GaveUp), open_timeout)
        except TimeoutError:
            await self.close()
            raise ConnectError(f"not open within {open_timeout}s") from None
        if isinstance(event, GaveUp):
            await self._finish()
            raise ConnectError(f"could not connect: {event.reason}", event)
        return self

    async def _finish(self) -> None:
        await self._end()
        me = await curio.current_task()
        if self._timer is not None and self._timer is not me:
            await self._timer.cancel()
        if self._runner is not None and self._runner is not me:
            await self._runner.wait()


def connect(
    url: str,
    *,
    ssl: _ssl.SSLContext | None = None,
    proxy: str | None = None,
    wait_open: bool = True,
    open_timeout: float | None = None,
    rng: Any = None,
    delays: Any = None,
    mask_source: Any = None,
    classifier: Any = None,
    id_factory: Any = None,
    **options: Any,
) -> _Opening[Client]:
    """Start a client for ``url``: ``client = await connect(...)`` or ``async with connect(...)``.

    ``options`` are ``ClientConfig`` fields (or ``config=``).  With ``wait_open`` the first
    connection must open, else ``ConnectError``.
    """
    config = build_client_config(url, options)
    extra = {"rng": rng, "delays": delays, "mask_source": mask_source}
    extra.update(classifier=classifier, id_factory=id_factory)
    kwargs = {name: value for name, value in extra.items() if value is not None}

    async def start() -> Client:
        client = Client(ReconnectingClient(config, **kwargs), ssl, proxy)
        return await client._start(wait_open, open_timeout)

    return _Opening(start)


# --------------------------------------------------------------------------- server


class ServerWebSocket:
    """One server-side connection; the handler receives it once the handshake completed."""

    def __init__(self, server: Server, remote_address: Any) -> None:
        self._server = server
        self._session: ServerSession = server.hub.session(_now())
        self._transport = _Transport(self)
        self._inbox = _Inbox()
        self._wake = curio.Event()
        self._closed = curio.Event()
        self._pings: dict[bytes, tuple[float, _Waiter[float]]] = {}
        self._handler_task: Any = None
        self.remote_address = remote_address
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def request(self) -> RequestReceived:
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

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``ConnectionClosed`` once the connection is closed."""
        return await self._inbox.get(
            timeout, lambda: ConnectionClosed(self.close_code, self.close_reason)
        )

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message; waits while the writer is behind."""
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        self._session.send(message)
        await self._after()
        while self._session.writing_paused and not self._transport.closing:
            await self._transport.progress.wait()

    async def send_text(self, text: str) -> None:
        await self.send(str(text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(json.dumps(obj, separators=(",", ":")))

    async def ping(self) -> float:
        """Send a ping and return the round trip in seconds."""
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        waiter: _Waiter[float] = _Waiter()
        self._pings[self._session.ping(now=_now())] = (_now(), waiter)
        await self._after()
        return await waiter.result()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait until it ends (bounded by close_timeout)."""
        self._session.close(code, reason, now=_now())
        await self._after()
        await self._closed.wait()

    # ------------------------------------------------------------------ driving the session

    def drain(self, t: _Transport) -> bytes:
        return self._session.data_to_send()

    async def feed(self, t: _Transport, data: bytes | BaseException) -> None:
        if isinstance(data, bytes) and data:
            self._session.receive_data(data, _now())
        else:
            self._session.receive_eof(_now())
        await self._after()

    async def room(self, t: _Transport) -> None:
        await self._inbox.room()

    async def _after(self) -> None:
        session = self._session
        for event in session.events():
            if isinstance(event, MessageReceived):
                await self._inbox.put(event.data)
            elif isinstance(event, Opened):
                self._handler_task = await curio.spawn(self._run_handler, daemon=True)
            elif isinstance(event, PongReceived):
                if (sent := self._pings.pop(event.payload, None)) is not None:
                    rtt = event.round_trip
                    await sent[1].settle(_now() - sent[0] if rtt is None else rtt)
            elif isinstance(event, Closed):
                self.close_code, self.close_reason = event.code, event.reason
                await self._inbox.end()
                for _sent_at, ping in self._pings.values():
                    await ping.settle(error=ConnectionClosed(event.code, event.reason))
                self._pings.clear()
                await self._closed.set()
        if session.should_close_transport:
            await self._transport.shut(session.data_to_send())
        else:
            await self._transport.kick.set()
        await self._wake.set()

    async def _tick(self) -> None:
        while not self._transport.closing:
            self._wake.clear()
            deadline = self._session.next_deadline()
            if deadline is None:
                await self._wake.wait()
            elif deadline > _now():
                await curio.ignore_after(deadline - _now(), self._wake.wait())
            deadline = self._session.next_deadline()
            if deadline is not None and _now() >= deadline:
                self._session.handle_timer(_now())
                await self._after()

    async def _run_handler(self) -> None:
        try:
            await self._server.handler(self)
        except Exception:
            log.exception("zenws handler failed; closing with 1011")
            code = 1011
        else:
            code = 1000
        if self._session.is_open:
            await self.close(code, "" if code == 1000 else "handler failed")

    async def _serve(self, sock: Any) -> None:
        """The connection task: TLS handshake, then read until the transport is closed.

        The session's handshake deadline (kept by the timer task) also bounds TLS.
        """
        self._transport.reader = await curio.current_task()
        timer = await curio.spawn(self._tick, daemon=True)
        try:
            if self._server.ssl is not None:
                try:
                    sock = await _wrap_tls(sock, self._server.ssl, None, server_side=True)
                except OSError as exc:
                    log.debug("zenws TLS handshake from %s failed: %s", self.remote_address, exc)
                    await sock.close()
                    return
            await self._transport.serve(sock)
            await self._transport.shut()  # EOF or error: nothing more will be read
            await self._transport.done.wait()
            if self._handler_task is not None:
                await self._handler_task.wait()
        finally:
            await timer.cancel()
            if self._handler_task is not None:
                await self._handler_task.cancel()
            self._session.receive_eof(_now())  # a connection cut short still ends (counters)
            await self._after()
            await self._transport.abort()


class Server:
    """A running zenws server (one listening socket, one task per connection)."""

    def __init__(
        self,
        sock: Any,
        handler: Callable[[ServerWebSocket], Awaitable[Any]],
        ssl: _ssl.SSLContext | None,
        config: ServerConfig,
    ) -> None:
        self._sock = sock
        self.handler = handler
        self.ssl = ssl
        self.hub = ServerHub(config, now=_now())
        self.host, self.port = sock.getsockname()[:2]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'wss' if ssl else 'ws'}://{host}:{self.port}/"
        self._connections: dict[Any, ServerWebSocket] = {}
        self._all_gone = curio.Event()
        self._stopped = curio.Event()
        self._acceptor: Any = None

    def status(self) -> ServerStatus:
        return self.hub.status(_now())

    async def serve_forever(self) -> None:
        """Wait until ``shutdown`` ends this server."""
        await self._stopped.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Close every connection with 1001 (RFC 6455 section 7.4.1), then drop the rest."""
        if self.hub.shutting_down:
            await self._stopped.wait()
            return
        self.hub.shutting_down = True
        await self._acceptor.cancel()
        await self._sock.close()
        for ws in list(self._connections.values()):
            ws._session.shutdown(now=_now())
            await ws._after()
        timeout = self.hub.config.shutdown_timeout if timeout is None else timeout
        if self._connections:
            await curio.ignore_after(timeout, self._all_gone.wait())
        for task in list(self._connections):
            await task.cancel()
        await self._stopped.set()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def _accept(self) -> None:
        while True:
            sock, address = await self._sock.accept()
            _nodelay(sock)
            await curio.spawn(self._connection, sock, address, daemon=True)

    async def _connection(self, sock: Any, address: Any) -> None:
        ws = ServerWebSocket(self, address)
        task = await curio.current_task()
        self._connections[task] = ws
        try:
            await ws._serve(sock)
        finally:
            del self._connections[task]
            if not self._connections:
                await _pulse(self._all_gone)


def serve(
    host: str,
    port: int,
    handler: Callable[[ServerWebSocket], Awaitable[Any]],
    *,
    ssl: _ssl.SSLContext | None = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> _Opening[Server]:
    """Listen on ``host:port`` (0: any free port): ``await serve(...)`` or ``async with``.

    ``handler(ws)`` runs once per opened connection; ``options`` are ``ServerConfig`` fields.
    """
    if config is None:
        config = ServerConfig(**options)
    elif options:
        config = dataclasses.replace(config, **options)

    async def start() -> Server:
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        sock = curio.network.tcp_server_socket(host, port, family, backlog=1024, reuse_address=True)
        server = Server(sock, handler, ssl, config)
        server._acceptor = await curio.spawn(server._accept, daemon=True)
        return server

    return _Opening(start)
