"""The asyncio adapter: ``await connect(url)`` or ``async with connect(url)``; ``await serve(...)``.

Built on ``asyncio.Protocol`` (no streams, no task per message); runs under uvloop unchanged
(its transports are not ``asyncio.Transport`` subclasses, and nothing here checks).  The
adapter moves bytes, keeps one timer at the core's next deadline and calls user code; the
public API is ``_api``'s, dispatch and waiters are ``_driver``'s, and reconnects, heartbeats,
queueing and timeouts the core's.  ``run(main)`` runs a coroutine on uvloop when installed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from ssl import SSLContext
from time import monotonic
from typing import Any, TypeVar, cast

from zenws_core import OpenTransport, ReconnectingClient, ServerConfig, ServerSession

from ._api import AsyncClient, AsyncServer, AsyncSession
from ._common import ConnectTunnel, ProxyError, classify_os_error, client_ssl_context, proxy_for
from ._driver import Handler, InOrder, Opening, build_core, server_config
from ._errors import ClientClosedError, ConnectError, ConnectionClosed, QueueFull, RequestTimeout

__all__ = ["Client", "Connector", "Server", "ServerWebSocket", "connect", "run", "serve"]
__all__ += ["ClientClosedError", "ConnectError", "ConnectionClosed", "QueueFull", "RequestTimeout"]

T = TypeVar("T")
Connector = Opening  # what ``connect`` returns: ``await`` it for a ``Client``, or ``async with`` it
WSHandler = Callable[["ServerWebSocket"], Awaitable[None]]
Core = ReconnectingClient[Handler]


class _ReadBuffer(threading.local):
    """One receive buffer per thread: a loop reads one transport at a time."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(256 * 1024))


_READ_BUFFER = _ReadBuffer()


class _Reads(asyncio.Protocol, asyncio.BufferedProtocol):
    """Reads land in the thread's buffer; the core copies what it keeps of them.

    Without it the standard loop allocates 256 KiB per read and shrinks it: an mmap, an
    mremap, a munmap and fresh pages to fault in, on every read (asyncio checks for
    ``BufferedProtocol`` first, so ``data_received`` is only called from here).
    """

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ_BUFFER.view[:nbytes])  # type: ignore[arg-type]  # a view


class _Conn(_Reads):
    """The transport half shared by the client and a server connection: its asyncio protocol.

    ``_sans`` is the sans-IO object (``ReconnectingClient`` or ``ServerSession``).  After
    every input ``_drive`` writes its bytes, performs the transport actions (``_act``),
    dispatches its events and keeps one timer at its next deadline.  Tasks waiting for
    "something changed" each await a future of their own, all set by ``_wake``.  The clock is
    ``time.monotonic`` on purpose: uvloop's ``loop.time()`` ticks in milliseconds, too coarse
    for round-trip figures.
    """

    _take: Callable[[], str | bytes | None]
    _dispatch_events: Callable[[], bool]
    _act: Callable[[], None]
    _sent = False  # a send wrote since the last drive
    _driving_soon = False  # a drive is scheduled (call_soon)

    def __init__(self, sans: Core | ServerSession) -> None:
        self._loop, self._sans = asyncio.get_running_loop(), sans
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._paused = False  # the transport asked us to stop writing (pause_writing)
        self._waiters: list[asyncio.Future[None]] = []
        super().__init__(sans)  # type: ignore[call-arg]  # the driver's, next in the MRO

    def data_received(self, data: bytes | memoryview) -> None:
        self._sans.receive_data(data, monotonic())
        self._drive()

    def eof_received(self) -> None:
        self._sans.receive_eof(monotonic())
        self._drive()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _reading(self, paused: bool) -> None:
        """The inbox filled up (stop reading the transport) or drained to half."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            (transport.pause_reading if paused else transport.resume_reading)()

    def _drive(self) -> None:
        """Drain the core after any input: bytes, transport actions, events; re-arm the timer."""
        self._sent = self._driving_soon = False
        data = self._sans.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)
        self._act()
        self._dispatch_events()
        deadline = self._sans.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at, self._timer = deadline, None
            if deadline is not None:
                self._timer = self._loop.call_later(max(0.0, deadline - monotonic()), self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self._sans.handle_timer(monotonic())
        self._drive()

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _changed(self) -> asyncio.Future[None]:
        """A future that ``_wake`` sets: await it to wait for "something changed"."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        return waiter

    async def _until(self, take: Callable[[], T | None]) -> T:
        while (value := take()) is None:
            await self._changed()
        return value

    async def _within(self, timeout: float | None, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout(timeout):
            return await awaitable

    async def _submit(self, call: Callable[[float], T]) -> T:
        if self._paused:  # backpressure: wait until the transport drained
            await self._until(lambda: None if self._paused else True)
        try:
            return call(monotonic())
        finally:  # QueueFull and ClientClosedError come with a MessageDropped event
            self._soon()

    def _soon(self) -> None:
        """Drive after a send: at once for the first send since the last drive, else once
        this loop iteration's callbacks ran, so that a burst of sends is one write.

        Beyond the core's high-water mark it drives now, so the transport can push back.
        """
        if not self._sent or self._sans.writing_paused:
            self._drive()
            self._sent = True
        elif not self._driving_soon:
            self._driving_soon = True
            self._loop.call_soon(self._drive)


# =========================================================================== client


class _Protocol(_Reads):
    """One transport of a client: its callbacks reach the client while it is the current one.

    Late callbacks of a transport the client has dropped are ignored.  Over a proxy it first
    runs the HTTP CONNECT exchange (RFC 9110 section 9.3.6).
    """

    tunnelled: asyncio.Future[bytes]  # with ``tunnel``: its outcome, the bytes after it

    def __init__(self, client: Client) -> None:
        self.client = client
        self.tunnel: ConnectTunnel | None = None

    def data_received(self, data: bytes | memoryview) -> None:
        if self.tunnel is None:
            if self.client._protocol is self:
                self.client.data_received(data)
            return
        try:
            if (rest := self.tunnel.receive(bytes(data))) is None:
                return
            self.tunnelled.set_result(rest)
        except ProxyError as exc:
            self.tunnelled.set_exception(exc)
        self.tunnel = None

    def eof_received(self) -> None:
        if self.client._protocol is self:
            self.client.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tunnel is not None and not self.tunnelled.done():
            self.tunnelled.set_exception(exc or ProxyError("proxy closed the connection"))
        if self.client._protocol is self:
            self.client.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.client._protocol is self:
            self.client.pause_writing()

    def resume_writing(self) -> None:
        if self.client._protocol is self:
            self.client.resume_writing()


class Client(_Conn, AsyncClient):
    """A resilient WebSocket client on asyncio; see ``connect``.

    It is the protocol of its current transport (through that transport's ``_Protocol``).
    """

    def __init__(self, core: Core, ssl: SSLContext | None, proxy: str | None) -> None:
        super().__init__(core)
        self._ssl, self._proxy, self._in_order = ssl, proxy, InOrder()
        self._protocol: _Protocol | None = None  # the current transport's
        self._opening: asyncio.Task[None] | None = None  # the current connect
        self._runner: asyncio.Task[None] | None = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnection) and wait until the transport is gone."""
        self._core.close(code, reason, now=monotonic())
        self._drive()
        await self._until(lambda: True if self._closed else None)
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = self._protocol = None
        self.resume_writing()
        self._core.connection_lost(str(exc) if exc else None, monotonic())
        self._drive()

    def _act(self) -> None:
        """``OpenTransport`` starts a connect task; ``CloseTransport`` ends the transport.

        The core closes a generation before it opens the next, so a ``CloseTransport`` is
        always for the current one.
        """
        for action in self._core.actions():
            self.resume_writing()  # a new transport, or none: nobody waits for the old one
            if isinstance(action, OpenTransport):
                self._opening = self._loop.create_task(self._open(action))
                continue
            if self._opening is not None:
                self._opening.cancel()  # a connect still under way
                self._opening = None
            transport, self._transport, self._protocol = self._transport, None, None
            if transport is not None:
                transport.close()

    async def _open(self, action: OpenTransport) -> None:
        """TCP (to the proxy and CONNECT through it, if any), then TLS; failures go to the core."""
        loop, protocol = self._loop, _Protocol(self)
        context = None if action.tls is None else self._ssl or client_ssl_context(action.tls)
        sni = action.server_hostname
        transport: asyncio.Transport | None = None
        rest = b""
        try:
            proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
            target, direct, name = (action, context, sni) if proxy is None else (proxy, None, None)
            transport, _ = await loop.create_connection(
                lambda: protocol, target.host, target.port, ssl=direct, server_hostname=name
            )
            if proxy is not None:  # CONNECT through the proxy, then TLS over the tunnel
                protocol.tunnel = ConnectTunnel(proxy, action.host, action.port)
                protocol.tunnelled = loop.create_future()
                transport.write(protocol.tunnel.request())
                rest = await protocol.tunnelled
                if context is not None:
                    tls = await loop.start_tls(transport, protocol, context, server_hostname=sni)
                    assert tls is not None
                    transport = tls
        except BaseException as exc:  # any failure to open is news for the core
            if transport is not None:
                transport.abort()
            if isinstance(exc, asyncio.CancelledError):
                raise  # CloseTransport (the core's connect timeout, close()) cancelled us
            self._opening = None
            message = str(exc) or type(exc).__name__
            self._core.connection_failed(message, monotonic(), **classify_os_error(exc))
            self._drive()
            return
        self._transport, self._protocol, self._opening = transport, protocol, None
        if self._reading_paused:  # the inbox is still full from the last connection
            self._reading(True)
        self._core.connection_made(monotonic())
        self._core.receive_data(rest, monotonic())  # after a tunnel: what followed its answer
        self._drive()

    def _run_user(self, handler: Handler, argument: Any) -> None:
        """Call user code; awaitable results are awaited in order by one runner task."""
        self._in_order(handler, argument)
        if self._in_order.pending and (self._runner is None or self._runner.done()):
            self._runner = self._loop.create_task(self._in_order.run())


def connect(
    url: str,
    *,
    ssl: SSLContext | None = None,
    proxy: str | None = None,
    wait_open: bool = True,
    open_timeout: float | None = None,
    **options: Any,
) -> Opening[Client]:
    """Start a client for ``url``; ``client = await connect(...)`` or ``async with connect(...)``.

    ``options`` are ``ClientConfig`` fields (or ``config=``) and the core's ``rng``,
    ``delays``, ``mask_source``, ``classifier``, ``id_factory``.  With ``wait_open`` the
    first connection must open (else ``ConnectError``).
    """
    core = build_core(url, options)

    async def start() -> Client:
        client = Client(core, ssl, proxy)
        await client._submit(core.start)
        return await client._started(wait_open, open_timeout)

    return Opening(start)


# =========================================================================== server


class ServerWebSocket(_Conn, AsyncSession):
    """One server-side connection (the protocol of its transport); the handler receives it."""

    def __init__(self, server: Server) -> None:
        self._server = server
        super().__init__(server.hub.session(monotonic()))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2) and wait until it ends.

        Unlike a send, this does not wait while the peer is behind on reading.
        """
        self._start_close(code, reason)
        self._drive()
        await self._until(lambda: True if self.closed else None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.remote_address = transport.get_extra_info("peername")
        self._server._connections.add(self)
        self._drive()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.eof_received()  # the session then has no deadline left: the drive drops the timer
        self._server._connections.discard(self)
        self._paused = False  # _mark_closed wakes a waiting sender
        self._mark_closed()

    def _act(self) -> None:
        if self._session.should_close_transport and self._transport is not None:
            self._transport.close()

    def _opened(self) -> None:
        task = self._loop.create_task(self._run_handler(self._server._handler))
        self._server._tasks.add(task)
        task.add_done_callback(self._server._tasks.discard)

    async def _gone(self) -> None:
        """Shutdown: write what ``_begin_shutdown`` started, wait until the transport is gone."""
        self._drive()
        await self._until(lambda: True if self._transport is None else None)


class Server(AsyncServer):
    """A listening zenws server; ``shutdown()`` closes every connection with 1001."""

    def __init__(self, handler: WSHandler, config: ServerConfig, ssl: SSLContext | None) -> None:
        super().__init__(config, clock=monotonic, secure=ssl is not None)
        self._handler, self.ssl = handler, ssl
        self._connections: set[ServerWebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Server | None = None
        self._stopped = asyncio.Event()

    async def serve_forever(self) -> None:
        """Wait until ``shutdown()`` has finished."""
        await self._stopped.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop listening, close every connection with 1001, wait, then drop the rest."""
        if self._listener is None:
            await self._stopped.wait()
            return
        listener, self._listener = self._listener, None
        listener.close()
        timeout = self._begin_shutdown(self._connections, timeout)
        gone = [ws._gone() for ws in self._connections]
        with suppress(TimeoutError):  # at the deadline the gather cancels what still runs
            async with asyncio.timeout(timeout):
                await asyncio.gather(*self._tasks, *gone, return_exceptions=True)
        for ws in list(self._connections):
            if ws._transport is not None:
                ws._transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await listener.wait_closed()
        self._stopped.set()


async def serve(
    host: str,
    port: int,
    handler: WSHandler,
    *,
    ssl: SSLContext | None = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> Server:
    """Listen on ``host:port`` (0 picks a port); ``options`` are ``ServerConfig`` fields."""
    server = Server(handler, server_config(config, options), ssl)
    server._listener = await asyncio.get_running_loop().create_server(
        lambda: ServerWebSocket(server), host, port, ssl=ssl, reuse_address=True
    )
    server.host, server.port = host, int(server._listener.sockets[0].getsockname()[1])
    return server


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """``asyncio.run(main)``, on uvloop's event loop when it is installed and wanted."""
    try:
        import uvloop
    except ImportError:
        use_uvloop = False
    return uvloop.run(main) if use_uvloop else asyncio.run(main)
