"""The Trio adapter, written on anyio: it runs on Trio and, through anyio, on asyncio too.

One background task per client or server connection moves bytes between an anyio byte
stream and the core, sleeps until the core's next deadline (``CancelScope(deadline=...)``)
and calls user code.  Reconnects, heartbeats, queueing, routing and timeouts are the
core's.  Writers send through ``await stream.send(...)`` under one lock, so a slow peer
slows the sender down (backpressure).  Internal task groups never leak an
``ExceptionGroup``: user handler errors are logged, transport errors become core news.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
import sniffio
from anyio.streams.tls import TLSListener, TLSStream

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
from zenws_core._queue import DropCause

from ._common import (
    ConnectTunnel,
    build_client_config,
    classify_os_error,
    client_ssl_context,
    proxy_for,
)
from ._errors import ConnectError, ConnectionClosed, RequestTimeout

__all__ = ["Client", "Server", "ServerWebSocket", "connect", "serve"]

log = logging.getLogger("zenws.anyio")
T = TypeVar("T")
Handler = Callable[[Any], Any]
#: Messages buffered for ``recv`` before reading pauses (backpressure on the peer).
INBOX_LIMIT = 64
_TRANSPORT_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_background: set[Any] = set()  # asyncio tasks started by ``await connect()``/``await serve()``


def _call(function: Callable[..., Any], tg: anyio.abc.TaskGroup | None, *args: Any) -> None:
    """Call a sync or async user callable; exceptions are logged, never raised."""
    try:
        result = function(*args)
        if inspect.isawaitable(result) and tg is not None:
            tg.start_soon(_await_logged, result)
    except Exception:
        log.exception("user callback %r failed", function)


async def _await_logged(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("user callback failed")


def _spawn(run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start ``run`` outside any task group (``await connect()`` without ``async with``)."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(run)
    else:
        import asyncio

        task = asyncio.get_running_loop().create_task(run())
        _background.add(task)
        task.add_done_callback(_background.discard)


def _root(exc: BaseException) -> BaseException:
    """The underlying error of anyio wrappers (``OSError("All connection attempts...")``)."""
    while isinstance(exc, OSError | anyio.BrokenResourceError) and exc.__cause__ is not None:
        cause = exc.__cause__
        exc = cause.exceptions[0] if isinstance(cause, BaseExceptionGroup) else cause
    return exc


class _Slot(Generic[T]):
    """One awaited result (a pong, a reply) set by the driver."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    def set(self, value: T | None = None, error: BaseException | None = None) -> None:
        if not self.event.is_set():
            self.value, self.error = value, error
            self.event.set()

    async def wait(self) -> T:
        await self.event.wait()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


K = TypeVar("K")


def _resolve(
    slots: dict[K, _Slot[T]], key: K, value: T | None = None, error: BaseException | None = None
) -> None:
    slot = slots.pop(key, None)
    if slot is not None:
        slot.set(value, error)


class _Driven:
    """What clients and server connections share: the stream, the write lock, wake-ups."""

    def __init__(self) -> None:
        self._stream: anyio.abc.ByteStream | None = None
        self._broken: BaseException | None = None
        self._write_lock = anyio.Lock()
        self._changed = anyio.Event()
        self._wait_scope: anyio.CancelScope | None = None
        self._wait_deadline = math.inf
        self._poked = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._inbox: deque[str | bytes] = deque()

    def _data_to_send(self) -> bytes:
        raise NotImplementedError

    def _wake(self) -> None:
        """Tell every waiter (recv, close, ping...) that something changed."""
        self._changed.set()
        self._changed = anyio.Event()

    def _poke(self) -> None:
        """Interrupt the driver's wait: new actions, an earlier deadline, inbox space."""
        self._poked = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    async def _until(self, condition: Callable[[], bool]) -> None:
        while True:
            changed = self._changed
            if condition():
                return
            await changed.wait()

    async def _flush(self, *, wait: bool) -> None:
        """Write what the core produced; the lock holder drains everything, in order."""
        if not wait and self._write_lock.locked():
            return  # the holder picks our bytes up after its current send
        async with self._write_lock:
            while (stream := self._stream) is not None and self._broken is None:
                data = self._data_to_send()
                if not data:
                    return
                self._wake()  # senders waiting on writing_paused may go on
                try:
                    await stream.send(data)
                except _TRANSPORT_ERRORS as exc:
                    if stream is self._stream:
                        self._broken = exc
                        self._poke()
                    return

    async def _read(self, deadline: float | None, paused: bool) -> bytes | BaseException | None:
        """Data, an EOF/error, or ``None`` when the deadline passed or a poke came."""
        stream = self._stream
        self._wait_deadline = math.inf if deadline is None else deadline
        result: bytes | BaseException | None = None
        with anyio.CancelScope(deadline=self._wait_deadline) as scope:
            self._wait_scope = scope
            if self._poked or self._broken is not None:
                scope.cancel()
            try:
                if stream is None or paused:
                    await anyio.sleep_forever()
                else:
                    result = await stream.receive()
            except anyio.EndOfStream as exc:
                result = exc
            except (*_TRANSPORT_ERRORS, _ssl.SSLError) as exc:
                result = exc
        self._wait_scope, self._wait_deadline = None, math.inf
        if self._broken is not None:
            result, self._broken = self._broken, None
        return result


class _Background:
    """An object with one background task: ``_run`` it, wait until ``_started``, ``_stop``."""

    async def _run(self) -> None:
        raise NotImplementedError

    async def _started(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError


# =========================================================================== client


class Client(_Driven, _Background):
    """A reconnecting WebSocket client; create it with ``connect(url, **options)``."""

    def __init__(
        self,
        core: ReconnectingClient[Handler],
        ssl_context: _ssl.SSLContext | None,
        proxy: str | None,
        wait_open: bool,
        open_timeout: float | None,
    ) -> None:
        super().__init__()
        self._core = core
        self._ssl, self._proxy = ssl_context, proxy
        self._wait_open, self._open_timeout = wait_open, open_timeout
        self._run_scope = anyio.CancelScope()
        self._connect_scope = anyio.CancelScope()
        self._generation = 0
        self._actions: list[OpenTransport | CloseTransport] = []
        self._callbacks: list[Callable[[ClientEvent], Any]] = []
        self._pongs: dict[bytes, _Slot[float]] = {}
        self._replies: dict[str, _Slot[Envelope]] = {}
        self._last_close: tuple[int | None, str] = (None, "")
        self._subprotocol: str | None = None
        self._closing = False
        self._done = anyio.Event()
        self.events_seen: list[ClientEvent] = []

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> ClientState:
        return self._core.state

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    def stats(self) -> ClientStats:
        return self._core.stats(anyio.current_time())

    def on(self, pattern: str, handler: Handler) -> None:
        """Envelopes whose type matches ``pattern`` go to ``handler`` (sync or async)."""
        self._core.router.on(pattern, handler)

    def on_raw(self, handler: Handler) -> None:
        """Messages that are not JSON envelopes go to ``handler``."""
        self._core.router.on_raw(handler)

    def on_event(self, callback: Callable[[ClientEvent], Any]) -> None:
        self._callbacks.append(callback)

    async def send_text(self, text: str) -> None:
        await self._submit(self._core.send_text, text)

    async def send_bytes(self, data: bytes) -> None:
        await self._submit(self._core.send_bytes, data)

    async def send_json(self, obj: Any) -> None:
        await self._submit(self._core.send_json, obj)

    async def send(self, type: str, data: Any = None) -> None:
        await self._submit(self._core.send, type, data)

    async def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send an envelope with a fresh id and wait for the reply (RequestTimeout if none)."""
        await self._until(lambda: not self._core.writing_paused)
        try:
            request_id = self._core.request(type, data, now=anyio.current_time(), timeout=timeout)
        finally:
            self._after_call()
        slot = self._replies[request_id] = _Slot[Envelope]()
        await self._flush(wait=True)
        return await slot.wait()

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message no handler or request took; ``TimeoutError`` after ``timeout``."""
        with anyio.fail_after(timeout):
            while True:
                changed = self._changed
                if self._inbox:
                    if len(self._inbox) == INBOX_LIMIT:
                        self._poke()  # reading was paused
                    return self._inbox.popleft()
                if self._core.state is ClientState.CLOSED:
                    raise ConnectionClosed(*self._last_close)
                await changed.wait()

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def ping(self) -> float:
        """Ping the server; the round trip in seconds."""
        payload = self._core.ping(now=anyio.current_time())
        if payload is None:
            raise ConnectionClosed(*self._last_close)
        slot = self._pongs[payload] = _Slot[float]()
        self._after_call()
        await self._flush(wait=True)
        return await slot.wait()

    async def reconnect(self) -> None:
        """Connect again now (after ``GaveUp``, or to cut a backoff wait short)."""
        self._core.reconnect(anyio.current_time())
        self._after_call()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (RFC 6455 section 7.1.2) and wait until the transport is gone."""
        self._closing = True
        self._connect_scope.cancel()  # a connect in progress is abandoned
        self._core.close(code, reason, now=anyio.current_time())
        self._after_call()
        for reply in self._replies.values():
            reply.set(error=ConnectionClosed(code, reason))
        for pong in self._pongs.values():
            pong.set(error=ConnectionClosed(code, reason))
        await self._flush(wait=True)
        self._poke()
        await self._done.wait()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ driver

    def _data_to_send(self) -> bytes:
        return self._core.data_to_send()

    async def _submit(self, method: Callable[..., int], *args: Any) -> None:
        await self._until(lambda: not self._core.writing_paused)
        try:
            method(*args, now=anyio.current_time())
        finally:  # QueueFull and ClientClosedError come with a MessageDropped event
            self._after_call()
        await self._flush(wait=True)

    def _after_call(self, *, driver: bool = False) -> None:
        """Collect actions and dispatch events after any core call; wake the driver."""
        self._actions.extend(self._core.actions())
        for event in self._core.events():
            self._dispatch(event)
        deadline = self._core.next_deadline()
        earlier = deadline is not None and deadline < self._wait_deadline
        if not driver and (self._actions or earlier):
            self._poke()
        self._wake()

    def _dispatch(self, event: ClientEvent) -> None:
        self.events_seen.append(event)
        if isinstance(event, Routed):
            for handler in event.handlers:
                _call(handler, self._tg, event.data if event.envelope is None else event.envelope)
            if not event.handlers:
                self._inbox.append(event.data)
        elif isinstance(event, ResponseReceived):
            _resolve(self._replies, event.request_id, event.envelope)
        elif isinstance(event, RequestTimedOut):
            timeout = RequestTimeout(event.request_id, event.type, event.timeout)
            _resolve(self._replies, event.request_id, error=timeout)
        elif isinstance(event, MessageDropped) and event.request_id is not None:
            if event.cause is not DropCause.EXPIRED:  # expiry: RequestTimedOut follows
                dropped = ConnectionClosed(None, f"request dropped: {event.detail}")
                _resolve(self._replies, event.request_id, error=dropped)
        elif isinstance(event, PongReceived):
            _resolve(self._pongs, event.payload, event.round_trip or 0.0)
        elif isinstance(event, Connected):
            self._subprotocol = event.subprotocol
        elif isinstance(event, Disconnected):
            self._last_close = (event.code, event.reason)
            for slot in self._pongs.values():
                slot.set(error=ConnectionClosed(event.code, event.reason))
            self._pongs.clear()
        for callback in self._callbacks:
            _call(callback, self._tg, event)

    async def _started(self) -> None:
        """Wait for the first ``Connected`` (``ConnectError`` on ``GaveUp``) unless told not to."""
        timeout = self._open_timeout
        if not self._wait_open:
            return
        try:
            with anyio.fail_after(timeout):
                seen = 0
                while True:
                    changed = self._changed
                    for event in self.events_seen[seen:]:
                        if isinstance(event, Connected):
                            return
                        if isinstance(event, GaveUp):
                            detail = f"{event.reason} ({event.failure.detail})"
                            raise ConnectError(
                                f"cannot connect to {self._core.url}: {detail}", event
                            )
                    seen = len(self.events_seen)
                    if self._done.is_set():
                        raise ConnectError(f"client for {self._core.url} stopped")
                    await changed.wait()
        except TimeoutError:
            raise ConnectError(f"{self._core.url} not open within {timeout}s") from None

    async def _stop(self) -> None:
        try:
            await self.close()
        finally:
            self._run_scope.cancel()

    async def _run(self) -> None:
        """The client's one background task: service the core, read, sleep to deadlines."""
        try:
            with self._run_scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    self._core.start(anyio.current_time())
                    await self._loop()
                    tg.cancel_scope.cancel()  # async handlers still running end with the client
        except Exception:
            log.exception("zenws client driver failed")
        finally:
            with anyio.CancelScope(shield=True):
                await self._drop_stream(graceful=False)
            self._done.set()
            self._wake()

    async def _loop(self) -> None:
        while not (self._closing and self._core.state is ClientState.CLOSED):
            self._poked = False
            await self._service()
            deadline = self._core.next_deadline()
            result = await self._read(deadline, len(self._inbox) >= INBOX_LIMIT)
            now = anyio.current_time()
            if isinstance(result, bytes):
                self._core.receive_data(result, now)
            elif isinstance(result, anyio.EndOfStream):
                self._core.receive_eof(now)
                await self._drop_stream(graceful=False)
            elif result is not None:
                self._core.connection_lost(str(result) or type(result).__name__, now)
                await self._drop_stream(graceful=False)
            if deadline is not None and now >= deadline:
                self._core.handle_timer(now)

    async def _service(self) -> None:
        while True:
            self._after_call(driver=True)
            await self._flush(wait=False)
            if not self._actions:
                return
            action = self._actions.pop(0)
            if isinstance(action, OpenTransport):
                await self._open(action)
            elif action.generation == self._generation:
                await self._drop_stream(graceful=True)

    async def _drop_stream(self, *, graceful: bool) -> None:
        stream = self._stream
        if stream is None:
            return
        if graceful:  # write what the core left (a close frame), bounded by close_timeout
            with anyio.move_on_after(self._core.config.connection.close_timeout):
                await self._flush(wait=True)
        self._stream, self._broken = None, None
        await anyio.aclose_forcefully(stream)
        if self._core.connection is None:
            self._core.data_to_send()  # bytes for the stream just closed: nowhere to go

    async def _open(self, action: OpenTransport) -> None:
        connected = None
        with anyio.CancelScope() as self._connect_scope:
            if self._closing:
                self._connect_scope.cancel()
            try:
                with anyio.fail_after(action.timeout):
                    connected = await self._connect(action)
            except Exception as exc:
                now, root = anyio.current_time(), _root(exc)
                detail = str(root) or type(root).__name__
                self._core.connection_failed(detail, now, **classify_os_error(root))
        if connected is None:
            return
        stream, leftover = connected
        if self._core.state is not ClientState.CONNECTING:
            await anyio.aclose_forcefully(stream)
            return
        self._stream, self._generation = stream, action.generation
        now = anyio.current_time()
        self._core.connection_made(now)
        if leftover:
            self._core.receive_data(leftover, now)

    async def _connect(self, action: OpenTransport) -> tuple[anyio.abc.ByteStream, bytes]:
        """TCP (through an HTTP CONNECT proxy if one applies), then TLS for ``wss://``."""
        context = None
        if action.tls is not None:
            if self._ssl is None:
                self._ssl = client_ssl_context(action.tls)
            context = self._ssl
        proxy = proxy_for(action.host, context is not None, proxy=self._proxy)
        if proxy is None:
            if context is None:
                return await anyio.connect_tcp(action.host, action.port), b""
            stream = await anyio.connect_tcp(
                action.host,
                action.port,
                ssl_context=context,
                tls_hostname=action.server_hostname,
                tls_standard_compatible=False,
            )
            return stream, b""
        raw = await anyio.connect_tcp(proxy.host, proxy.port)
        try:
            tunnel = ConnectTunnel(proxy, action.host, action.port)
            await raw.send(tunnel.request())
            leftover = None
            while leftover is None:
                try:
                    leftover = tunnel.receive(await raw.receive())
                except anyio.EndOfStream:
                    leftover = tunnel.receive(b"")
            if context is None:
                return raw, leftover
            if leftover:
                raise ConnectionError("proxy sent data before the TLS handshake")
            tls = await TLSStream.wrap(
                raw,
                hostname=action.server_hostname,
                ssl_context=context,
                standard_compatible=False,
            )
            return tls, b""
        except BaseException:
            await anyio.aclose_forcefully(raw)
            raise


B = TypeVar("B", bound=_Background)


class _Starter(Generic[B]):
    """``await`` it (background task outside any task group) or ``async with`` it.

    ``async with`` owns a task group for the background task and closes on exit;
    ``await`` runs it as a system task (Trio) or a plain task (asyncio) until closed.
    """

    def __init__(self, make: Callable[[], Awaitable[B]]) -> None:
        self._make = make
        self._tg: anyio.abc.TaskGroup | None = None
        self._object: B | None = None

    def __await__(self) -> Generator[Any, None, B]:
        return self._start(None).__await__()

    async def _start(self, tg: anyio.abc.TaskGroup | None) -> B:
        obj = await self._make()
        if tg is None:
            _spawn(obj._run)
        else:
            tg.start_soon(obj._run)
        try:
            await obj._started()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await obj._stop()
            raise
        return obj

    async def __aenter__(self) -> B:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            self._object = await self._start(self._tg)
        except BaseException:
            await _exit_group(self._tg)
            raise
        return self._object

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._object is not None
        try:
            await self._object._stop()
        finally:
            await _exit_group(self._tg)


async def _exit_group(tg: anyio.abc.TaskGroup) -> None:
    """Leave an internal task group; a lone error comes out as itself, not as a group."""
    try:
        await tg.__aexit__(None, None, None)
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        raise inner from None


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
) -> _Starter[Client]:
    """``async with connect(url) as client`` or ``client = await connect(url)``.

    ``options`` are ``ClientConfig`` fields (or ``config=``); ``rng``, ``delays``,
    ``mask_source``, ``classifier`` and ``id_factory`` go to the core.  With
    ``wait_open`` the first connection must open (else ``ConnectError``).
    """
    config = build_client_config(url, options)
    core_options = {
        "rng": rng,
        "delays": delays,
        "mask_source": mask_source,
        "classifier": classifier,
        "id_factory": id_factory,
    }
    given = {name: value for name, value in core_options.items() if value is not None}

    async def make() -> Client:
        core: ReconnectingClient[Handler] = ReconnectingClient(config, **given)
        return Client(core, ssl, proxy, wait_open, open_timeout)

    return _Starter(make)


# =========================================================================== server


class ServerWebSocket(_Driven):
    """One opened WebSocket connection of a ``Server``, given to the handler."""

    def __init__(self, server: Server, stream: anyio.abc.ByteStream) -> None:
        super().__init__()
        self._server = server
        self._session: ServerSession = server.hub.session(anyio.current_time())
        self._stream = stream
        self._pongs: dict[bytes, _Slot[float]] = {}
        self._closed: Closed | None = None
        self.remote_address: Any = stream.extra(anyio.abc.SocketAttribute.remote_address, None)

    @property
    def request(self) -> RequestReceived:
        assert self._session.request is not None
        return self._session.request

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.request.headers)

    @property
    def subprotocol(self) -> str | None:
        return self._session.subprotocol

    @property
    def close_code(self) -> int | None:
        return None if self._closed is None else self._closed.code

    @property
    def close_reason(self) -> str:
        return "" if self._closed is None else self._closed.reason

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``ConnectionClosed`` once closed, ``TimeoutError`` on timeout."""
        with anyio.fail_after(timeout):
            while True:
                changed = self._changed
                if self._inbox:
                    if len(self._inbox) == INBOX_LIMIT:
                        self._poke()  # reading was paused
                    return self._inbox.popleft()
                if self._closed is not None:
                    raise ConnectionClosed(self.close_code, self.close_reason)
                await changed.wait()

    def __aiter__(self) -> ServerWebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: str | bytes) -> None:
        await self._until(lambda: not self._session.writing_paused)
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        self._session.send(message)
        await self._flush(wait=True)

    async def send_text(self, text: str) -> None:
        await self.send(str(text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(json.dumps(obj, separators=(",", ":")))

    async def ping(self) -> float:
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        slot = self._pongs[self._session.ping(now=anyio.current_time())] = _Slot[float]()
        await self._flush(wait=True)
        return await slot.wait()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2) and wait for its end."""
        self._session.close(code, reason, now=anyio.current_time())
        await self._flush(wait=True)
        self._poke()
        await self._until(lambda: self._closed is not None)

    def _data_to_send(self) -> bytes:
        return self._session.data_to_send()

    async def _serve(self) -> None:
        """The connection's task: read, feed the session, run the handler once open."""
        session = self._session
        async with anyio.create_task_group() as tg:
            self._tg = tg
            while True:
                self._poked = False
                for event in session.events():
                    self._dispatch(event)
                await self._flush(wait=False)
                if session.should_close_transport:
                    with anyio.move_on_after(self._server.hub.config.connection.close_timeout):
                        await self._flush(wait=True)
                    break
                deadline = session.next_deadline()
                result = await self._read(deadline, len(self._inbox) >= INBOX_LIMIT)
                now = anyio.current_time()
                if isinstance(result, bytes):
                    session.receive_data(result, now)
                elif result is not None:
                    session.receive_eof(now)
                if deadline is not None and now >= deadline:
                    session.handle_timer(now)
            stream, self._stream = self._stream, None
            if stream is not None:
                await anyio.aclose_forcefully(stream)
            for event in session.events():  # the final Closed if the transport just went
                self._dispatch(event)

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, MessageReceived):
            self._inbox.append(event.data)
        elif isinstance(event, Opened):
            assert self._tg is not None
            self._tg.start_soon(self._run_handler)
        elif isinstance(event, PongReceived):
            _resolve(self._pongs, event.payload, event.round_trip or 0.0)
        elif isinstance(event, Closed):
            self._closed = event
            for slot in self._pongs.values():
                slot.set(error=ConnectionClosed(event.code, event.reason))
        self._wake()

    async def _run_handler(self) -> None:
        code, reason = 1000, ""
        try:
            result = self._server.handler(self)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("zenws handler for %s failed", self.path)
            code, reason = 1011, "internal error"
        if self._session.is_open:
            await self.close(code, reason)


class Server(_Background):
    """An embedded WebSocket server (GET /health and /status on the same port)."""

    def __init__(
        self,
        listener: anyio.abc.Listener[Any],
        address: tuple[str, int],
        handler: Callable[[ServerWebSocket], Any],
        config: ServerConfig,
        secure: bool,
    ) -> None:
        self.hub = ServerHub(config, now=anyio.current_time())
        self.handler = handler
        self._listener = listener
        self.host, self.port = address
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'wss' if secure else 'ws'}://{host}:{self.port}/"
        self._sockets: set[ServerWebSocket] = set()
        self._accepting = anyio.CancelScope()
        self._connections = anyio.CancelScope()
        self._changed = anyio.Event()
        self._done = anyio.Event()

    def status(self) -> ServerStatus:
        return self.hub.status(anyio.current_time())

    async def serve_forever(self) -> None:
        await self._done.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Close every connection with 1001, wait up to the timeout, then drop the rest."""
        self.hub.shutting_down = True
        self._accepting.cancel()
        now = anyio.current_time()
        for ws in list(self._sockets):
            ws._session.shutdown(now=now)
            ws._poke()
        limit = self.hub.config.shutdown_timeout if timeout is None else timeout
        with anyio.move_on_after(limit):
            while self._sockets:
                changed = self._changed
                await changed.wait()
        self._connections.cancel()
        await self._done.wait()

    async def _started(self) -> None:
        pass

    async def _stop(self) -> None:
        await self.shutdown()

    async def _run(self) -> None:
        try:
            with self._connections:
                async with anyio.create_task_group() as tg:
                    try:
                        with self._accepting:
                            await self._listener.serve(self._connection, tg)
                    finally:
                        with anyio.CancelScope(shield=True):
                            await self._listener.aclose()
        except Exception:
            log.exception("zenws server stopped accepting")
        finally:
            self._done.set()

    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        ws = ServerWebSocket(self, stream)
        self._sockets.add(ws)
        try:
            await ws._serve()
        except Exception:
            log.exception("zenws connection failed")
        finally:
            self._sockets.discard(ws)
            await anyio.aclose_forcefully(stream)
            self._changed.set()
            self._changed = anyio.Event()


def serve(
    host: str,
    port: int,
    handler: Callable[[ServerWebSocket], Any],
    *,
    ssl: _ssl.SSLContext | None = None,
    config: ServerConfig | None = None,
    **fields: Any,
) -> _Starter[Server]:
    """``async with serve(host, port, handler) as server`` or ``server = await serve(...)``."""
    if config is None:
        config = ServerConfig(**fields)
    elif fields:
        config = dataclasses.replace(config, **fields)
    final = config

    async def make() -> Server:
        listener: anyio.abc.Listener[Any] = await anyio.create_tcp_listener(
            local_host=host, local_port=port
        )
        local = listener.extra(anyio.abc.SocketAttribute.local_address)
        address = (str(local[0]), int(local[1]))
        if ssl is not None:
            listener = TLSListener(
                listener,
                ssl,
                standard_compatible=False,
                handshake_timeout=final.connection.handshake_timeout or math.inf,
            )
        return Server(listener, address, handler, final, ssl is not None)

    return _Starter(make)
