"""The Trio adapter, written on anyio: it runs on Trio and, through anyio, on asyncio too.

One background task per client or server connection moves bytes between an anyio byte
stream and the core, sleeps until the core's next deadline (``CancelScope(deadline=...)``)
and calls user code.  The public API is ``_api``'s; event dispatch, waiters and the inbox
are ``_driver``'s; reconnects, heartbeats, queueing, routing and timeouts the core's.
Writes go through ``await stream.send(...)`` under one lock, whose holder drains all the
core has: the first send since the last input writes at once (a reply keeps its latency),
later sends of the same burst go out together, written by the lock holder or by a flusher
task; a sender waits while the core is above its high-water mark (backpressure).  The read
loop never writes: it would block when the peer stops reading, blind to that peer's close.
No ``ExceptionGroup`` leaves the adapter: the background tasks log user handler errors and
turn transport errors into core news.

The core's clock is ``time.monotonic``, not ``anyio.current_time``: on asyncio with uvloop
that is the loop's cached millisecond clock, too coarse for round trips; deadlines are
converted to anyio's clock only for the cancel scope the loop waits in.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import ssl as _ssl
from collections.abc import Awaitable, Callable, Coroutine
from time import monotonic as _now  # the core's clock: see the module docstring
from typing import Any, cast

import anyio
import sniffio
from anyio.streams.tls import TLSListener, TLSStream

from zenws_core import ClientState, OpenTransport, ReconnectingClient, ServerConfig, ServerSession

from . import _driver
from ._api import AsyncClient, AsyncServer, AsyncSession, T
from ._common import ConnectTunnel, classify_os_error, client_ssl_context, proxy_for, root_cause
from ._driver import INBOX_LIMIT, Handler, Opening, _Inbox, build_core, call_user, log

__all__ = ["INBOX_LIMIT", "Client", "Server", "ServerWebSocket", "connect", "serve"]

_Machine = ReconnectingClient[Handler] | ServerSession
_SSL = _ssl.SSLContext | None
_TRANSPORT_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_background: set[Any] = set()  # the asyncio tasks of ``_spawn``


def _spawn(run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start a client's or server's background task, which ``close``/``shutdown`` ends.

    A Trio system task (in the caller's context) or an asyncio task: ``await connect()``
    returns while it runs, and no task group of ours wraps the user's ``async with`` body.
    """
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(run, context=contextvars.copy_context())
    else:
        _background.add(task := asyncio.get_running_loop().create_task(run()))
        task.add_done_callback(_background.discard)


class _Driven(_Inbox):
    """The ``_api`` hooks and the one read/timer loop that clients and server connections share.

    Waiters are the driver's ``Pending`` slots: ``wake()`` (after every dispatch) pulses
    one ``anyio.Event`` and each waiting task looks at its slot again.  ``_poke()``
    interrupts the loop's wait (new actions, an earlier deadline, inbox space, a write error).
    """

    _dispatch_events: Callable[[], bool]
    _ended: Callable[[], bool]  # the loop ends: the transport is done with
    _perform: Callable[[Any], Awaitable[None]]  # the client core's transport actions
    # a send wrote since the last input; a flusher task runs; a task waits on _changed; a poke
    _sent = _flushing = _waiting = _poked = False
    _broken: BaseException | None = None  # a write error, for the loop to report
    _wait_scope: anyio.CancelScope | None = None  # the loop's (latest) wait, to _wait_deadline
    _wait_deadline = math.inf
    _tg: anyio.abc.TaskGroup | None = None  # the client's or connection's, while it runs

    def __init__(self, machine: _Machine, stream: Any, close_timeout: float | None):
        super().__init__(machine)  # type: ignore[call-arg, arg-type]  # the driver's, next in the MRO
        self._machine, self._stream, self._close_timeout = machine, stream, close_timeout
        self._write_lock, self._changed = anyio.Lock(fast_acquire=True), anyio.Event()
        self._actions: list[Any] = []  # the client core's transport actions, in order

    def _wake(self) -> None:
        if self._waiting:  # else nobody looks: no new event
            self._changed.set()
            self._changed, self._waiting = anyio.Event(), False

    def _poke(self, paused: bool = False) -> None:
        self._poked = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    _reading = _poke  # the loop looks at _reading_paused again (resumes once half drained)

    async def _until(self, take: Callable[[], T | None]) -> T:
        while (result := take()) is None:
            self._waiting = True
            await self._changed.wait()
        return result

    async def _within(self, timeout: float | None, awaitable: Awaitable[T]) -> T:
        with anyio.fail_after(timeout):
            return await awaitable

    async def _submit(self, call: Callable[[float], T], ready: bool = False) -> T:
        """Run ``call`` on the core once the writer keeps up (``ready``: at once); write.

        The first send since the last input (or flush) writes at once; later ones of the same
        burst go out together, written by the lock holder or by a flusher task.
        """
        if not ready and self._machine.writing_paused:  # backpressure: the writer is behind
            await self._until(lambda: None if self._machine.writing_paused else True)
        try:
            result = call(_now())
        finally:  # QueueFull and ClientClosedError come with a MessageDropped event
            self._after_call(flush=self._sent)  # a later send of a burst: with the rest
        if not self._sent:  # the first send since the last input (or flush): written at once
            self._sent = True
            await self._flush()
        return result

    def _after_call(self, flush: bool = False) -> None:
        """Collect actions and dispatch events after any core call; poke the loop if needed.

        ``flush`` (the loop's calls, a later send of a burst): what the core holds is written
        by a flusher task.
        """
        if isinstance(self._machine, ReconnectingClient):
            self._actions.extend(self._machine.actions())
        self._dispatch_events()
        deadline = self._machine.next_deadline()
        if self._actions or self._ended() or (deadline or math.inf) < self._wait_deadline:
            self._poke()
        if flush:
            self._flush_soon()

    def _flush_soon(self) -> None:
        """Have what the live connection holds written by a task of its own, unless a writer
        is at work (the lock holder drains everything after its current send).  Never the
        read loop's own job: it would block in ``send`` when the peer stops reading, blind to
        its close."""
        machine, tg = self._machine, self._tg
        conn = machine.conn if isinstance(machine, ServerSession) else machine.connection
        if tg and conn and conn.pending_bytes and not (self._flushing or self._write_lock.locked()):
            self._flushing = True
            tg.start_soon(self._flush, True)

    async def _flush(self, later: bool = False) -> None:
        """Write what the core produced; the lock holder drains everything, in order.

        ``later``: the flusher task of ``_flush_soon`` (cancelled only with the connection).
        """
        async with self._write_lock:
            while (stream := self._stream) is not None and (data := self._machine.data_to_send()):
                self._wake()  # senders waiting on writing_paused may go on
                try:
                    await stream.send(data)
                except _TRANSPORT_ERRORS as exc:
                    self._broken = exc if stream is self._stream else self._broken  # else: dropped
                    self._poke()
                    break
        if later:  # the burst is written: the next send writes at once again
            self._flushing = self._sent = False

    async def _drop_stream(self, *, graceful: bool) -> None:
        """Close the stream; ``graceful``: once what is left for it is written (close_timeout)."""
        if (stream := self._stream) is None:
            return
        if graceful:
            with anyio.move_on_after(self._close_timeout):
                await self._flush()
        self._stream, self._broken = None, None
        await anyio.aclose_forcefully(stream)
        self._machine.data_to_send()  # bytes for the stream just closed: nowhere to go

    async def _drive(self) -> None:
        """Read into the core and call its timer at its deadline until ``_ended()``.

        One cancel scope, its deadline the core's next one, spans the reads until a poke
        (new actions, an earlier deadline, the end, a read pause, a write error).  While
        messages wait in the inbox, the tasks that read them get two scheduler rounds before
        more input is fed (Trio runs a round's tasks in either order): an application answers
        a message before a protocol error that followed it closes the connection.
        """
        while True:
            self._after_call(flush=True)
            # the loop looks at everything a poke is about again now; a write error at once
            self._poked = self._broken is not None
            if self._ended():
                return
            if self._actions:
                await self._perform(self._actions.pop(0))
                continue
            stream, error = self._stream, self._broken
            self._wait_deadline = deadline = self._machine.next_deadline() or math.inf
            wake_at = anyio.current_time() + (deadline - _now())
            with anyio.CancelScope(deadline=wake_at) as self._wait_scope:
                try:  # nothing to read while the inbox is full (paused) or between transports
                    if (stream is None or self._reading_paused) and not self._poked:
                        await anyio.sleep_forever()
                    while stream is not None and not self._poked:
                        for _ in range(2 if self._inbox else 0):  # messages wait: readers first
                            await anyio.lowlevel.checkpoint()  # (Trio runs a round in any order)
                        self._machine.receive_data(await stream.receive(), _now())
                        self._sent = False  # the next send writes at once (a reply's latency)
                        self._after_call(flush=True)
                except (anyio.EndOfStream, _ssl.SSLError, *_TRANSPORT_ERRORS) as exc:
                    error = exc
            error, self._broken, now = self._broken or error, None, _now()
            if error is not None:  # EOF or a transport error: this stream is over
                if isinstance(error, anyio.EndOfStream) or isinstance(self._machine, ServerSession):
                    self._machine.receive_eof(now)
                else:
                    self._machine.connection_lost(str(error) or type(error).__name__, now)
                await self._drop_stream(graceful=True)  # what is left for it (server: a close)
            if now >= deadline:
                self._machine.handle_timer(now)


# =========================================================================== client


class Client(_Driven, AsyncClient):
    """A reconnecting WebSocket client; create it with ``connect(url, **options)``."""

    def __init__(self, core: ReconnectingClient[Handler], ssl: _SSL, proxy: str | None) -> None:
        super().__init__(core, None, core.config.connection.close_timeout)
        self._ssl, self._proxy, self._generation, self._closing = ssl, proxy, 0, False
        self._run_scope, self._connect_scope = anyio.CancelScope(), anyio.CancelScope()
        self._done = anyio.Event()
        _spawn(self._run)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (RFC 6455 section 7.1.2) and wait until the transport is gone."""
        try:
            self._closing = True
            self._connect_scope.cancel()  # a connect in progress is abandoned
            await self._submit(lambda now: self._core.close(code, reason, now=now), ready=True)
            await self._done.wait()
        finally:  # cancelled while closing: the background task ends at once; wait for it
            self._run_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._done.wait()

    def _run_user(self, handler: Handler, argument: Any) -> None:
        """The driver's ``run`` hook: an async handler runs as a task of the client."""
        if (result := call_user(handler, argument)) is not None and self._tg is not None:
            self._tg.start_soon(_driver.run_logged, result)

    async def _run(self) -> None:
        """The client's one background task: service the core, read, sleep to deadlines."""
        try:
            with self._run_scope:
                async with anyio.create_task_group() as self._tg:
                    self._core.start(_now())
                    await self._drive()
                    self._tg.cancel_scope.cancel()  # async handlers end with the client
        except Exception:
            log.exception("zenws client driver failed")
        finally:
            self._tg = None
            await self._drop_stream(graceful=False)
            self._end()  # nothing is left to settle open, request and ping waiters
            self._done.set()
            self._wake()

    def _ended(self) -> bool:
        return self._closing and self._closed

    async def _perform(self, action: Any) -> None:
        if isinstance(action, OpenTransport):
            await self._open(action)
        elif action.generation == self._generation:  # CloseTransport of the current stream
            await self._drop_stream(graceful=True)

    async def _open(self, action: OpenTransport) -> None:
        """Connect for the core (``connection_made``/``connection_failed``); ``close`` cancels."""
        self._generation = action.generation
        at = -math.inf if self._closing else math.inf  # cancelled at once when close() came first
        with anyio.CancelScope(deadline=at) as self._connect_scope:
            try:
                with anyio.fail_after(action.timeout):
                    leftover = await self._connect(action)
            except Exception as exc:
                await self._drop_stream(graceful=False)
                kinds = classify_os_error(root := root_cause(exc))
                self._core.connection_failed(str(root) or type(root).__name__, _now(), **kinds)
                return
        if self._core.state is not ClientState.CONNECTING:  # closed (or cancelled) meanwhile
            await self._drop_stream(graceful=False)
        else:
            self._core.connection_made(_now())
            self._core.receive_data(leftover, _now())  # after a proxy: what followed its answer

    async def _connect(self, action: OpenTransport) -> bytes:
        """TCP (through an HTTP CONNECT proxy if one applies), then TLS for ``wss://``.

        Returns the bytes the proxy passed on after its answer (the server's first bytes).
        """
        proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
        target = (action.host, action.port) if proxy is None else (proxy.host, proxy.port)
        self._stream = stream = await anyio.connect_tcp(*target)
        leftover = b""
        if proxy is not None:
            tunnel = ConnectTunnel(proxy, action.host, action.port)
            leftover = await tunnel.exchange(stream.send, stream.receive, anyio.EndOfStream)
        if action.tls is not None:
            if leftover:
                raise ConnectionError("proxy sent data before the TLS handshake")
            self._ssl = ctx = self._ssl or client_ssl_context(action.tls)
            self._stream = await TLSStream.wrap(
                stream, hostname=action.server_hostname, ssl_context=ctx, standard_compatible=False
            )
        return leftover


def connect(
    url: str,
    *,
    ssl: _ssl.SSLContext | None = None,
    proxy: str | None = None,
    wait_open: bool = True,
    open_timeout: float | None = None,
    **options: Any,
) -> Opening[Client]:
    """``async with connect(url) as client`` or ``client = await connect(url)``.

    ``options`` are ``ClientConfig`` fields (or ``config=``) and the core's ``rng``,
    ``delays``, ``mask_source``, ``classifier``, ``id_factory``.  With ``wait_open`` the
    first connection must open (else ``ConnectError``).
    """
    core = build_core(url, options)

    return Opening(lambda: Client(core, ssl, proxy)._started(wait_open, open_timeout))


# =========================================================================== server


class ServerWebSocket(_Driven, AsyncSession):
    """One opened WebSocket connection of a ``Server``, given to the handler."""

    def __init__(self, server: Server, stream: anyio.abc.ByteStream) -> None:
        session, timeout = server.hub.session(_now()), server.hub.config.connection.close_timeout
        super().__init__(session, stream, timeout)
        self._server = server
        self.remote_address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)

    async def _serve(self) -> None:
        """The connection's task: read, feed the session, run the handler once open."""
        self._server._sockets.add(self)
        try:
            async with anyio.create_task_group() as self._tg:
                await self._drive()
                await self._drop_stream(graceful=True)  # the last bytes (a close, an HTTP answer)
                self._session.receive_eof(_now())  # the final Closed if it did not come yet
                self._dispatch_events()
                self._mark_closed()
        except Exception:
            log.exception("zenws connection failed")
        finally:  # also when shutdown() cancels a connection that outlived its deadline
            self._server._sockets.discard(self)
            self._tg = None
            await self._drop_stream(graceful=False)

    def _ended(self) -> bool:
        return self._session.should_close_transport

    def _opened(self) -> None:
        cast(anyio.abc.TaskGroup, self._tg).start_soon(self._run_handler, self._server.handler)


class Server(AsyncServer):
    """An embedded WebSocket server (GET /health and /status on the same port)."""

    handler: Callable[[ServerWebSocket], Any]

    def __init__(self, handler: Handler, config: ServerConfig, listener: Any, ssl: _SSL) -> None:
        super().__init__(config, clock=_now, secure=ssl is not None)
        self.handler, self._done = handler, anyio.Event()
        self.host, self.port = listener.extra(anyio.abc.SocketAttribute.local_address)[:2]
        if ssl is not None:
            limit = config.connection.handshake_timeout or math.inf
            listener = TLSListener(listener, ssl, False, handshake_timeout=limit)
        self._listener, self._sockets = listener, set[ServerWebSocket]()
        self._accepting, self._connections = anyio.CancelScope(), anyio.CancelScope()
        _spawn(self._run)

    async def serve_forever(self) -> None:
        await self._done.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Close every connection with 1001, wait up to the timeout, then drop the rest."""
        try:
            self._accepting.cancel()
            # 1001 to every connection; they end, or are cancelled after the timeout
            with anyio.move_on_after(self._begin_shutdown(self._sockets, timeout)):
                for ws in self._sockets:
                    ws._poke()
                await self._done.wait()
        finally:  # also when cancelled: nothing of the server outlives its shutdown
            self._connections.cancel()
            with anyio.CancelScope(shield=True):
                await self._done.wait()

    async def _run(self) -> None:
        try:
            with self._connections:
                # the listener closes when accepting stops (even if cancelled), before the
                # task group waits for the connections
                async with anyio.create_task_group() as tg, self._listener:
                    with self._accepting:
                        await self._listener.serve(lambda s: ServerWebSocket(self, s)._serve(), tg)
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
) -> Opening[Server]:
    """``async with serve(host, port, handler) as server`` or ``server = await serve(...)``."""
    final = _driver.server_config(config, fields)

    async def start() -> Server:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        return Server(handler, final, listener, ssl)

    return Opening(start)
