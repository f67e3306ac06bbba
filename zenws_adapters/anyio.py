"""The Trio adapter, written on anyio: it runs on Trio and, through anyio, on asyncio too.

One background task per client or server connection moves bytes between an anyio byte
stream and the core, sleeps until the core's next deadline (``CancelScope(deadline=...)``)
and calls user code.  Event dispatch, waiters and the inbox are the shared ``_driver``'s;
reconnects, heartbeats, queueing, routing and timeouts the core's.  Writers send through
``await stream.send(...)`` under one lock, so a slow peer slows the sender down
(backpressure).  Internal task groups never leak an ``ExceptionGroup``: user handler
errors are logged, transport errors become core news.
"""

from __future__ import annotations

import inspect
import math
import ssl as _ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.abc
import sniffio
from anyio.streams.tls import TLSListener, TLSStream

from zenws_core import (
    ClientEvent,
    ClientState,
    CloseTransport,
    Envelope,
    OpenTransport,
    ReconnectingClient,
    ServerConfig,
    ServerSession,
)

from ._common import ConnectTunnel, classify_os_error, client_ssl_context, proxy_for
from ._driver import (
    INBOX_LIMIT,
    ClientDriver,
    Handler,
    Opening,
    Pending,
    ServerDriver,
    SessionDriver,
    build_core,
    call_user,
    encode_json,
    log,
    server_config,
)
from ._errors import ConnectionClosed

__all__ = ["INBOX_LIMIT", "Client", "Server", "ServerWebSocket", "connect", "serve"]

T = TypeVar("T")
R = TypeVar("R")
_Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], object]
_now = anyio.current_time
_TRANSPORT_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_background: set[Any] = set()  # asyncio tasks started by ``await connect()``/``await serve()``


async def _await_logged(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("zenws async handler failed")


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


class _Driven:
    """What clients and server connections share: the stream, the write lock, wake-ups.

    Waiters are the driver's ``Pending`` slots: ``wake()`` (after every dispatch) pulses
    one ``anyio.Event`` and each waiting task looks at its slot again.
    """

    _reading_paused: bool
    _take: Callable[[], str | bytes | None]
    _data_to_send: Callable[[], bytes]
    _service: Callable[[], Awaitable[bool]]
    _lost: Callable[[BaseException, float], Awaitable[None]]

    def _init_stream(self, stream: anyio.abc.ByteStream | None) -> None:
        self._stream = stream
        self._broken: BaseException | None = None
        self._write_lock = anyio.Lock()
        self._changed = anyio.Event()
        self._wait_scope: anyio.CancelScope | None = None
        self._wait_deadline = math.inf
        self._poked = False
        self._tg: anyio.abc.TaskGroup | None = None

    def _wake(self) -> None:
        """The driver's ``wake`` hook: every task waiting in recv, close... looks again."""
        self._changed.set()
        self._changed = anyio.Event()

    def _poke(self) -> None:
        """Interrupt the driver's wait (new actions, an earlier deadline, inbox space)."""
        self._poked = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _reading(self, paused: bool) -> None:
        """The driver's ``reading`` hook: once the inbox drained to half, read again."""
        if not paused:
            self._poke()

    async def _until(self, condition: Callable[[], T | None]) -> T:
        while (result := condition()) is None or result is False:
            await self._changed.wait()
        return result

    async def _result(self, waiter: Pending[T]) -> T:
        await self._until(waiter.done)
        return waiter.result()

    async def _flush(self, *, wait: bool = True) -> None:
        """Write what the core produced; the lock holder drains everything, in order."""
        if not wait and self._write_lock.locked():
            return  # the holder picks our bytes up after its current send
        async with self._write_lock:
            while (stream := self._stream) is not None and self._broken is None:
                if not (data := self._data_to_send()):
                    return
                self._wake()  # senders waiting on writing_paused may go on
                try:
                    await stream.send(data)
                except _TRANSPORT_ERRORS as exc:
                    if stream is self._stream:
                        self._broken = exc
                        self._poke()
                    return

    async def _read(self, deadline: float | None) -> bytes | BaseException | None:
        """Data, an EOF/error, or ``None`` when the deadline passed or a poke came."""
        stream = self._stream
        self._wait_deadline = math.inf if deadline is None else deadline
        result: bytes | BaseException | None = None
        with anyio.CancelScope(deadline=self._wait_deadline) as scope:
            self._wait_scope = scope
            if self._poked or self._broken is not None:
                scope.cancel()
            try:
                if stream is None or self._reading_paused:  # paused: the inbox is full
                    await anyio.sleep_forever()
                else:
                    result = await stream.receive()
            except (anyio.EndOfStream, *_TRANSPORT_ERRORS, _ssl.SSLError) as exc:
                result = exc
        self._wait_scope, self._wait_deadline = None, math.inf
        if self._broken is not None:
            result, self._broken = self._broken, None
        return result

    async def _drive(self, machine: ReconnectingClient[Handler] | ServerSession) -> None:
        """Read into ``machine`` and call its timer at its deadline, while ``_service`` says so."""
        while await self._service():
            deadline = machine.next_deadline()
            result = await self._read(deadline)
            now = _now()
            if isinstance(result, bytes):
                machine.receive_data(result, now)
            elif result is not None:
                await self._lost(result, now)
            if deadline is not None and now >= deadline:
                machine.handle_timer(now)

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``ConnectionClosed`` at the end, ``TimeoutError`` on timeout."""
        with anyio.fail_after(timeout):
            return await self._until(self._take)

    def __aiter__(self) -> _Driven:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None


# =========================================================================== client


class Client(_Driven, ClientDriver):
    """A reconnecting WebSocket client; create it with ``connect(url, **options)``."""

    def __init__(
        self, core: ReconnectingClient[Handler], ssl: _ssl.SSLContext | None, proxy: str | None
    ) -> None:
        self._init_stream(None)
        super().__init__(core, clock=_now, wake=self._wake, reading=self._reading, run=self._call)
        self._ssl, self._proxy = ssl, proxy
        self._run_scope = anyio.CancelScope()
        self._connect_scope = anyio.CancelScope()
        self._generation = 0
        self._actions: list[OpenTransport | CloseTransport] = []
        self._closing = False
        self._done = anyio.Event()

    # ------------------------------------------------------------------ public API

    async def send_text(self, text: str) -> None:
        await self._submit(lambda now: self._core.send_text(text, now=now))

    async def send_bytes(self, data: bytes) -> None:
        await self._submit(lambda now: self._core.send_bytes(data, now=now))

    async def send_json(self, obj: Any) -> None:
        await self._submit(lambda now: self._core.send_json(obj, now=now))

    async def send(self, type: str, data: Any = None) -> None:
        """Send the envelope ``{"type": type, "data": data}`` (queued while disconnected)."""
        await self._submit(lambda now: self._core.send(type, data, now=now))

    async def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send an envelope with a fresh id and wait for the reply (RequestTimeout if none)."""
        reply = Pending[Envelope]()
        request = self._core.request
        await self._submit(
            lambda now: self._expect_reply(request(type, data, now=now, timeout=timeout), reply)
        )
        return await self._result(reply)

    async def ping(self) -> float:
        """Ping the server; the round trip in seconds (``ConnectionClosed`` if it drops)."""
        pong = self._start_ping(Pending[float]())
        self._after_call()
        await self._flush()
        return await self._result(pong)

    async def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float | None = None
    ) -> ClientEvent:
        """The first lifecycle event, already seen or still to come, matching ``predicate``."""
        with anyio.fail_after(timeout):
            event: ClientEvent = await self._until(lambda: self._match(predicate, 0)[0])
            return event

    async def reconnect(self) -> None:
        """Connect again now (after ``GaveUp``, or to cut a backoff wait short)."""
        self._core.reconnect(_now())
        self._after_call()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (RFC 6455 section 7.1.2) and wait until the transport is gone."""
        try:
            self._closing = True
            self._connect_scope.cancel()  # a connect in progress is abandoned
            await self._submit(lambda now: self._core.close(code, reason, now=now), ready=True)
            self._poke()
            await self._done.wait()
        finally:  # cancelled while closing: the background task ends at once
            self._run_scope.cancel()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ driver

    def _data_to_send(self) -> bytes:
        return self._core.data_to_send()

    async def _submit(self, call: Callable[[float], object], ready: bool = False) -> None:
        """Run an application call on the core once the writer keeps up; write its bytes."""
        await self._until(lambda: ready or not self._core.writing_paused)
        try:
            call(_now())
        finally:  # QueueFull and ClientClosedError come with a MessageDropped event
            self._after_call()
        await self._flush()

    def _after_call(self, *, driver: bool = False) -> None:
        """Collect actions and dispatch events after any core call; wake the driver."""
        self._actions.extend(self._core.actions())
        self._dispatch_events()
        deadline = self._core.next_deadline()
        if not driver and (self._actions or (deadline or math.inf) < self._wait_deadline):
            self._poke()

    def _call(self, handler: Handler, argument: Any) -> None:
        """The driver's ``run`` hook: an async handler runs as a task of the client."""
        result = call_user(handler, argument)
        if result is not None and self._tg is not None:
            self._tg.start_soon(_await_logged, result)

    async def _run(self) -> None:
        """The client's one background task: service the core, read, sleep to deadlines."""
        try:
            with self._run_scope:
                async with anyio.create_task_group() as self._tg:
                    self._core.start(_now())
                    await self._drive(self._core)
                    self._tg.cancel_scope.cancel()  # async handlers end with the client
        except Exception:
            log.exception("zenws client driver failed")
        finally:
            with anyio.CancelScope(shield=True):
                await self._drop_stream(graceful=False)
            self._end()  # nothing is left to settle open, request and ping waiters
            self._done.set()
            self._wake()

    async def _service(self) -> bool:
        """Drain the core, perform its transport actions; ``False`` once closed for good."""
        while not (self._closing and self._core.state is ClientState.CLOSED):
            self._poked = False
            self._after_call(driver=True)
            await self._flush(wait=False)
            if not self._actions:
                return True
            action = self._actions.pop(0)
            if isinstance(action, OpenTransport):
                await self._open(action)
            elif action.generation == self._generation:
                await self._drop_stream(graceful=True)
        return False

    async def _lost(self, error: BaseException, now: float) -> None:
        if isinstance(error, anyio.EndOfStream):
            self._core.receive_eof(now)
        else:
            self._core.connection_lost(str(error) or type(error).__name__, now)
        await self._drop_stream(graceful=False)

    async def _drop_stream(self, *, graceful: bool) -> None:
        if (stream := self._stream) is None:
            return
        if graceful:  # write what the core left (a close frame), bounded by close_timeout
            with anyio.move_on_after(self._core.config.connection.close_timeout):
                await self._flush()
        self._stream, self._broken = None, None
        await anyio.aclose_forcefully(stream)
        if self._core.connection is None:
            self._core.data_to_send()  # bytes for the stream just closed: nowhere to go

    async def _open(self, action: OpenTransport) -> None:
        with anyio.CancelScope() as self._connect_scope:
            if self._closing:
                self._connect_scope.cancel()
            try:
                with anyio.fail_after(action.timeout):
                    stream, leftover = await self._connect(action)
            except Exception as exc:
                root = _root(exc)
                kinds = classify_os_error(root)
                self._core.connection_failed(str(root) or type(root).__name__, _now(), **kinds)
                return
        if self._connect_scope.cancelled_caught:
            return
        if self._core.state is not ClientState.CONNECTING:
            await anyio.aclose_forcefully(stream)
            return
        self._stream, self._generation = stream, action.generation
        self._core.connection_made(_now())
        if leftover:
            self._core.receive_data(leftover, _now())

    async def _connect(self, action: OpenTransport) -> tuple[anyio.abc.ByteStream, bytes]:
        """TCP (through an HTTP CONNECT proxy if one applies), then TLS for ``wss://``."""
        context = None
        if action.tls is not None:
            self._ssl = context = self._ssl or client_ssl_context(action.tls)
        proxy = proxy_for(action.host, context is not None, proxy=self._proxy)
        target = (action.host, action.port) if proxy is None else (proxy.host, proxy.port)
        stream: anyio.abc.ByteStream = await anyio.connect_tcp(*target)
        try:
            leftover: bytes | None = None if proxy else b""
            if proxy is not None:
                tunnel = ConnectTunnel(proxy, action.host, action.port)
                await stream.send(tunnel.request())
                while leftover is None:
                    try:
                        leftover = tunnel.receive(await stream.receive())
                    except anyio.EndOfStream:
                        leftover = tunnel.receive(b"")
            if context is not None:
                if leftover:
                    raise ConnectionError("proxy sent data before the TLS handshake")
                hostname = action.server_hostname
                stream = await TLSStream.wrap(
                    stream, hostname=hostname, ssl_context=context, standard_compatible=False
                )
            return stream, leftover or b""
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise


def connect(
    url: str,
    *,
    ssl: _ssl.SSLContext | None = None,
    proxy: str | None = None,
    wait_open: bool = True,
    open_timeout: float | None = None,
    **options: Any,
) -> _Starter[Client]:
    """``async with connect(url) as client`` or ``client = await connect(url)``.

    ``options`` are ``ClientConfig`` fields (or ``config=``) and the core's ``rng``,
    ``delays``, ``mask_source``, ``classifier``, ``id_factory``.  With ``wait_open`` the
    first connection must open (else ``ConnectError``).
    """
    core = build_core(url, options)

    async def start(spawn: _Spawn) -> Client:
        client = Client(core, ssl, proxy)
        spawn(client._run)
        if wait_open:
            try:
                with anyio.fail_after(open_timeout):
                    await client._result(client._open_waiter(Pending[None]()))
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await client.close()
                if isinstance(exc, TimeoutError):
                    raise client._open_timed_out(open_timeout) from None
                raise
        return client

    return _Starter(start)


# =========================================================================== server


class ServerWebSocket(_Driven, SessionDriver):
    """One opened WebSocket connection of a ``Server``, given to the handler."""

    def __init__(self, server: Server, stream: anyio.abc.ByteStream) -> None:
        self._init_stream(stream)
        session = server.hub.session(_now())
        opened, reading = self._opened, self._reading
        super().__init__(session, clock=_now, wake=self._wake, opened=opened, reading=reading)
        self._server = server
        self.remote_address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message; waits while the peer is behind."""
        await self._until(lambda: not self._session.writing_paused)
        self._send_message(message)
        await self._flush()

    async def send_text(self, text: str) -> None:
        await self.send(str(text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(encode_json(obj))

    async def ping(self) -> float:
        """Ping the client; the round trip in seconds."""
        pong = self._start_ping(Pending[float]())
        await self._flush()
        return await self._result(pong)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2) and wait for its end."""
        self._start_close(code, reason)
        await self._flush()
        self._poke()
        await self._until(lambda: self.closed)

    def _data_to_send(self) -> bytes:
        return self._session.data_to_send()

    async def _serve(self) -> None:
        """The connection's task: read, feed the session, run the handler once open."""
        session, server, stream = self._session, self._server, self._stream
        assert stream is not None
        server._sockets.add(self)
        try:
            async with anyio.create_task_group() as self._tg:
                await self._drive(session)
                self._stream = None
                await anyio.aclose_forcefully(stream)
                session.receive_eof(_now())  # the final Closed if it did not come yet
                self._dispatch_events()
                self._mark_closed()
        except Exception:
            log.exception("zenws connection failed")
        finally:  # also when shutdown() cancels a connection that outlived its deadline
            server._sockets.discard(self)
            await anyio.aclose_forcefully(stream)
            server._changed.set()
            server._changed = anyio.Event()

    async def _service(self) -> bool:
        """Drain the session; ``False`` once its transport should close (after a last write)."""
        self._poked = False
        self._dispatch_events()
        await self._flush(wait=False)
        if not self._session.should_close_transport:
            return True
        with anyio.move_on_after(self._server.hub.config.connection.close_timeout):
            await self._flush()
        return False

    async def _lost(self, error: BaseException, now: float) -> None:
        self._session.receive_eof(now)

    def _opened(self) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._run_handler)

    async def _run_handler(self) -> None:
        error = None
        try:
            if inspect.isawaitable(result := self._server.handler(self)):
                await result
        except Exception as exc:
            error = exc
        self._handler_done(error)
        await self._flush()
        self._poke()


class Server(ServerDriver):
    """An embedded WebSocket server (GET /health and /status on the same port)."""

    def __init__(
        self,
        handler: Callable[[ServerWebSocket], Any],
        config: ServerConfig,
        listener: anyio.abc.Listener[Any],
        ssl: _ssl.SSLContext | None,
    ) -> None:
        super().__init__(config, clock=_now, secure=ssl is not None)
        self.handler = handler
        local = listener.extra(anyio.abc.SocketAttribute.local_address)
        self.host, self.port = str(local[0]), int(local[1])
        if ssl is not None:
            timeout = config.connection.handshake_timeout or math.inf
            listener = TLSListener(listener, ssl, False, handshake_timeout=timeout)
        self._listener = listener
        self._sockets: set[ServerWebSocket] = set()
        self._accepting = anyio.CancelScope()
        self._connections = anyio.CancelScope()
        self._changed = anyio.Event()
        self._done = anyio.Event()

    async def serve_forever(self) -> None:
        await self._done.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Close every connection with 1001, wait up to the timeout, then drop the rest."""
        self._accepting.cancel()
        limit = self._begin_shutdown(self._sockets, timeout)
        for ws in self._sockets:
            ws._poke()
        with anyio.move_on_after(limit):
            while self._sockets:
                await self._changed.wait()
        self._connections.cancel()
        await self._done.wait()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def _run(self) -> None:
        try:
            with self._connections:
                async with anyio.create_task_group() as tg:
                    try:
                        with self._accepting:
                            await self._listener.serve(
                                lambda s: ServerWebSocket(self, s)._serve(), tg
                            )
                    finally:
                        with anyio.CancelScope(shield=True):
                            await self._listener.aclose()
        except Exception:
            log.exception("zenws server stopped accepting")
        finally:
            self._done.set()


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
    final = server_config(config, fields)

    async def start(spawn: _Spawn) -> Server:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        server = Server(handler, final, listener, ssl)
        spawn(server._run)
        return server

    return _Starter(start)


class _Starter(Opening[R]):
    """What ``connect``/``serve`` return: ``await`` it, or ``async with`` it.

    ``async with`` owns a task group for the background task and closes on exit;
    ``await`` runs it as a system task (Trio) or a plain task (asyncio) until closed.
    """

    def __init__(self, start: Callable[[_Spawn], Coroutine[Any, Any, R]]) -> None:
        super().__init__(lambda: start(_spawn))
        self._start_in = start
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> R:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            started = self._object = await self._start_in(self._tg.start_soon)
        except BaseException:
            await _exit_group(self._tg)
            raise
        return started

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            assert self._tg is not None
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
