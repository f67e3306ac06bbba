"""zenws on curio: native curio sockets and TLS driving the sans-IO core.

The module moves bytes (a reader task per socket; the driving task writes, a writer task
takes what the socket does not), sleeps until the core's next deadline (one timer task per
client or server connection) and runs user code.  The public API comes from ``_api.py`` over
three hooks (``_submit``, ``_until``, ``_within``); event dispatch, waiters, the inbox and the
server's 1000/1011/1001 duties from ``_driver.py``; reconnects, heartbeats, queueing, routing
and timeouts from ``zenws_core``.  Waiters are ``Pending`` slots; tasks wait on curio
``SchedBarrier``s, pulsed after a change (no kernel trap when nobody waits).  ``now`` is
``time.monotonic()``, the clock curio's kernel sleeps on.
"""

from __future__ import annotations

import contextlib
import ssl as _ssl
from collections.abc import Awaitable, Callable
from socket import AF_INET, AF_INET6, IPPROTO_TCP, SOCK_STREAM, TCP_NODELAY
from time import monotonic
from typing import Any, cast

import curio
from curio.io import Socket
from curio.sched import SchedBarrier

from zenws_core import OpenTransport, ReconnectingClient, ServerConfig, ServerSession

from ._api import AsyncClient, AsyncServer, AsyncSession, T
from ._common import ConnectTunnel, ProxyConfig, classify_os_error, client_ssl_context, proxy_for
from ._driver import Handler, InOrder, Opening, build_core, log, server_config

__all__ = ["Client", "Server", "ServerWebSocket", "connect", "serve"]

#: Bytes per read; seconds a dropped transport may take to write its last bytes before it is
#: cut; seconds the timer task sleeps when the core has no deadline (an earlier one wakes it).
READ_SIZE, CLOSE_GRACE, IDLE = 256 * 1024, 5.0, 3600.0
_SSL = _ssl.SSLContext | None


async def _pulse(waiting: SchedBarrier) -> None:
    """Wake the tasks suspended on ``waiting`` (a kernel trap only when there are any)."""
    if len(waiting):
        await waiting.wake()


class _Transport:
    """One socket: a reader task feeding the owner, a writer task for what cannot go at once.

    Curio lets one task wait to read and one to write per socket, hence two tasks.  After each
    drive ``flush`` sends the core's bytes from the driving task (no task switch) when it is the
    first write since the transport's tasks last ran; the rest of a burst, and what the socket
    does not take, is the writer's, in one write.  Bytes stay in the core (counted by its
    ``writing_paused``) until the writer is free to take them.
    """

    def __init__(self, owner: Client | ServerWebSocket, generation: int = 0) -> None:
        self.owner, self.generation = owner, generation
        self.sock = self.reader = self.writer = cast(Any, None)  # the socket, then its tasks
        # bytes taken from the core but not yet sent (the writer's), bytes read ahead (CONNECT)
        self.backlog, self.rest, self.closing, self.sent = b"", b"", False, -1
        # pulsed when the writer has work (or the transport closes) and when the core drained
        self.kick, self.done = SchedBarrier(), curio.Event()

    async def connect(self, to: OpenTransport | ProxyConfig) -> None:
        """TCP to each address ``host`` resolves to, in turn (IPv6 literals included).

        ``sock`` is set before ``connect``, so closing the transport covers a cancelled attempt
        (``curio.socket.create_connection`` leaves that socket open).
        """
        error = OSError(f"{to.host} resolves to no address")
        for *spec, _, address in await curio.socket.getaddrinfo(to.host, to.port, type=SOCK_STREAM):
            self.sock = curio.socket.socket(*spec)
            try:
                await self.sock.connect(address)
                return
            except OSError as exc:
                await self.sock.close()
                error = exc
        raise error

    async def start_tls(self, context: _ssl.SSLContext, hostname: str | None, **kw: Any) -> None:
        """TLS over ``sock`` (``curio.ssl.wrap_socket`` calls ``ssl.wrap_socket``, gone in 3.12).

        The TLS socket replaces ``sock`` before the handshake, so closing the transport covers it.
        """
        kw.update(server_hostname=hostname, do_handshake_on_connect=False)
        self.sock = Socket(context.wrap_socket(self.sock._socket, **kw))
        await self.sock.do_handshake()

    async def run(self) -> None:
        """The reader task, once ``sock`` is up: start the writer, read until the end."""
        with contextlib.suppress(OSError):  # not a TCP socket
            self.sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        self.writer, reader = await curio.spawn(self._write_loop, daemon=True), self.reader
        while not self.closing:
            cycles = reader.cycles  # how often curio has resumed this task, after the last chunk
            # backpressure: wait while the inbox is full
            await self.owner._until(lambda: self.closing or not self.owner._reading_paused or None)
            try:
                data, self.rest = self.rest or await self.sock.recv(READ_SIZE), b""
            except OSError as exc:
                data = exc
            reader.allow_cancel = False  # closing never cuts event delivery (curio's flag)
            if reader.cycles == cycles:  # no wait since the last chunk: the application goes first
                await curio.sleep(0)  # (a read that waited let it run already: no extra switch)
            await self.owner._feed(self, data)  # b"" is EOF
            reader.allow_cancel = True  # a cancellation meanwhile comes at the next wait
            if not isinstance(data, bytes) or not data:
                break
        await self.shut()  # nothing more will be read

    async def flush(self) -> None:
        """After a drive: the core's bytes go now (first write since the tasks ran), or to the
        writer (a burst, or the socket's buffer is full); nothing while the writer is busy."""
        if self.writer is None or self.backlog or self.closing:
            return
        self.backlog = data = self.owner._io.data_to_send()
        if data and self.sent != (ran := self.reader.cycles + self.writer.cycles):
            self.sent = ran  # the first write since this transport's tasks last ran goes now
            with contextlib.suppress(OSError):  # would block (TLS: wants to read or write), failed
                self.backlog = data[self.sock._socket.send(data) :]
        if self.backlog:  # the rest of a burst (one write), what the socket did not take
            await _pulse(self.kick)

    async def _write_loop(self) -> None:
        """The writer task: ``backlog`` plus what the core holds, in one ``sendall``; the end."""
        try:
            while not self.closing or self.backlog:
                if not self.closing:  # only the current one drains the core
                    self.backlog += self.owner._io.data_to_send()
                    await _pulse(self.kick)  # the core drained: senders may go on
                if data := self.backlog:
                    await self.sock.sendall(data)
                    self.backlog = self.backlog[len(data) :]  # shut() may have added to it
                elif not self.closing:
                    await self.kick.suspend()
        except OSError as exc:
            async with curio.disable_cancellation():
                await self.owner._feed(self, exc)

    async def shut(self, final: bytes = b"") -> None:
        """The core is done with this socket: write ``final``, then close (bounded)."""
        self.backlog += final
        if not self.closing:
            self.closing = True
            await _pulse(self.kick)
            await curio.spawn(self.abort, CLOSE_GRACE, daemon=True)

    async def abort(self, grace: float = 0.0) -> None:
        """Close the socket now, or once the writer sent its last bytes (at most ``grace`` s)."""
        self.closing = True
        if grace and self.writer is not None:
            await curio.ignore_after(grace, self.writer.wait())
        for task in {self.writer, self.reader} - {None, await curio.current_task()}:
            await task.cancel()
        if self.sock is not None:
            await self.sock.close()
        await _pulse(self.kick)
        await self.done.set()


class _Curio:
    """The ``_api`` hooks on curio and the timer task, for clients and server connections."""

    _transport: _Transport | None
    _step: Callable[[], Awaitable[None]]
    _lost: Callable[[_Transport, BaseException | None], Awaitable[None]]

    def __init__(self, io: ReconnectingClient[Handler] | ServerSession, **hooks: Any) -> None:
        super().__init__(io, **hooks)  # type: ignore[call-arg]  # the driver's, next in the MRO
        self._io, self._woken, self._sleeping_until = io, False, 0.0  # the timer task's deadline
        # _changed is pulsed after the driver reported a change; _alarm wakes the timer task
        # when the deadline moved earlier than the one it sleeps until.
        self._changed, self._alarm = SchedBarrier(), SchedBarrier()

    def _wake(self) -> None:
        """The driver's wake hook (``_reading`` calls it too): pulse on the next ``_notify``."""
        self._woken = True

    async def _notify(self) -> None:
        if self._woken:
            self._woken = False
            await _pulse(self._changed)

    async def _until(self, take: Callable[[], T | None]) -> T:
        while (value := take()) is None:
            await self._changed.suspend()
        await self._notify()  # taking from the inbox may resume a paused reader
        return value

    async def _within(self, timeout: float | None, awaitable: Awaitable[T]) -> T:
        try:
            return cast(T, await curio.timeout_after(timeout and max(timeout, 0.0), awaitable))
        except curio.TaskTimeout:
            raise TimeoutError(f"nothing happened within {timeout:g}s") from None

    async def _submit(self, call: Callable[[float], T]) -> T:
        """Run ``call(now)``, drive, then wait while the core holds more than its high water."""
        try:
            return call(monotonic())
        finally:  # QueueFull and ClientClosedError come with a MessageDropped event
            await self._drive()
            while self._io.writing_paused and (t := self._transport) and not t.closing:
                await t.kick.suspend()

    async def _feed(self, t: _Transport, data: bytes | BaseException) -> None:
        """Bytes read from ``t`` go to the core; EOF (``b""``) or an error to ``_lost``.

        News from a transport the core has moved past is ignored.
        """
        if t is self._transport:
            if isinstance(data, bytes) and data:
                self._io.receive_data(data, monotonic())
            else:
                await self._lost(t, None if isinstance(data, bytes) else data)
            await self._drive()

    async def _drive(self) -> None:
        """After any input: ``_step`` (actions, events), write, wake, re-arm the timer."""
        await self._step()
        if self._transport is not None:
            await self._transport.flush()
        await self._notify()
        if (deadline := self._io.next_deadline()) is not None and deadline < self._sleeping_until:
            await _pulse(self._alarm)

    async def _tick(self) -> None:
        """The timer task: sleep until the next deadline (or an earlier one), then fire."""
        while True:
            # (a deadline is a monotonic time, never 0)
            until = self._sleeping_until = self._io.next_deadline() or monotonic() + IDLE
            await curio.ignore_after(max(until - monotonic(), 0.0), self._alarm.suspend())
            if (deadline := self._io.next_deadline()) is not None and monotonic() >= deadline:
                self._io.handle_timer(monotonic())
                await self._drive()


# --------------------------------------------------------------------------- client


class Client(_Curio, AsyncClient):
    """A resilient WebSocket client on curio; see ``connect``."""

    def __init__(self, core: ReconnectingClient[Handler], ssl: _SSL, proxy: str | None) -> None:
        self._user = InOrder()  # async handlers run in order on one runner task
        super().__init__(core, run=self._user)
        self._ssl, self._proxy, self._transport = ssl, proxy, None
        self._last: _Transport | None = None  # the transport dropped last (close waits for it)
        self._runner = self._timer = cast(Any, None)  # the tasks running async handlers, timer

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnection) and wait until the transport is gone."""
        await self._submit(lambda now: self._core.close(code, reason, now=now))
        await self._until(lambda: self._closed or None)
        if self._last is not None:
            await self._last.done.wait()
        await self._timer.cancel()
        if self._runner is not None and self._runner is not await curio.current_task():
            await self._runner.wait()  # queued async handlers finish

    async def _step(self) -> None:
        """Transport actions, events and user code (a runner task for async handlers)."""
        for action in self._core.actions():
            t = self._transport
            if isinstance(action, OpenTransport):
                t = self._transport = _Transport(self, action.generation)
                t.reader = await curio.spawn(self._open, t, action, daemon=True)
            elif t is not None and t.generation == action.generation:  # CloseTransport
                self._transport, self._last = None, t
                await t.shut(self._core.data_to_send())
        self._dispatch_events()
        if self._user.pending and (self._runner is None or self._runner.terminated):
            self._runner = await curio.spawn(self._user.run, daemon=True)

    async def _open(self, t: _Transport, action: OpenTransport) -> None:
        """The reader task of one transport: TCP, proxy ``CONNECT``, TLS; then read."""
        try:
            proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
            await t.connect(proxy or action)  # TCP to the proxy, or straight to the server
            if proxy is not None:
                tunnel = ConnectTunnel(proxy, action.host, action.port)
                t.rest = await tunnel.exchange(t.sock.sendall, t.sock.recv)
            if action.tls is not None:
                context = self._ssl or client_ssl_context(action.tls)
                await t.start_tls(context, action.server_hostname)
        except Exception as exc:  # refused, DNS, TLS, proxy: the core decides what follows
            await t.abort()
            if self._transport is t:
                flags = classify_os_error(exc)
                self._core.connection_failed(str(exc) or type(exc).__name__, monotonic(), **flags)
                await self._drive()
            return
        if self._transport is t:  # else the core dropped it meanwhile, and its closer ends it
            async with curio.disable_cancellation():
                self._core.connection_made(monotonic())
                await self._drive()
            await t.run()

    async def _lost(self, t: _Transport, error: BaseException | None) -> None:
        """EOF or an error: the core considers the transport gone, so it closes."""
        message = None if error is None else str(error) or type(error).__name__
        self._core.connection_lost(message, monotonic())
        self._transport, self._last = None, t
        await t.shut()


def connect(
    url: str,
    *,
    ssl: _ssl.SSLContext | None = None,
    proxy: str | None = None,
    wait_open: bool = True,
    open_timeout: float | None = None,
    **options: Any,
) -> Opening[Client]:
    """Start a client for ``url``: ``client = await connect(...)`` or ``async with connect(...)``.

    ``options`` are ``ClientConfig`` fields (or ``config=``) and the core's ``rng``,
    ``delays``, ``mask_source``, ``classifier``, ``id_factory``.  With ``wait_open`` the
    first connection must open, else ``ConnectError``.
    """
    core = build_core(url, options)

    async def start() -> Client:
        client = Client(core, ssl, proxy)
        client._timer = await curio.spawn(client._tick, daemon=True)
        await client._submit(core.start)
        return await client._started(wait_open, open_timeout)

    return Opening(start)


# --------------------------------------------------------------------------- server


class ServerWebSocket(_Curio, AsyncSession):
    """One server-side connection; the handler receives it once the handshake completed."""

    _transport: _Transport

    def __init__(self, server: Server, remote_address: Any) -> None:
        super().__init__(server.hub.session(monotonic()))
        self._server, self.remote_address = server, remote_address
        self._transport, self._open = _Transport(self), False

    def _opened(self) -> None:
        self._open = True

    async def _lost(self, t: _Transport, error: BaseException | None) -> None:
        """EOF, an error or the transport's end: the session ends (``Closed``)."""
        self._session.receive_eof(monotonic())
        self._dispatch_events()  # the final ``Closed`` (its code) before the safety net
        self._mark_closed()

    async def _step(self) -> None:
        """Events, then the transport's end once the session asks for it."""
        self._dispatch_events()
        if self._session.should_close_transport:
            await self._transport.shut(self._session.data_to_send())

    async def _serve(self, sock: Any) -> None:
        """The connection task: TLS, the reader, the handler once open; the end.

        The session's handshake deadline (kept by the timer task) bounds TLS too: the closer
        then cancels this task, the transport's reader until the handshake is done.  Shutdown
        cancels it (and so the handler) when the connection outlives its deadline.
        """
        t, context = self._transport, self._server.ssl
        t.sock, t.reader = sock, await curio.current_task()
        timer = await curio.spawn(self._tick, daemon=True)
        try:
            if context is not None:
                await t.start_tls(context, None, server_side=True)
            t.reader = await curio.spawn(t.run, daemon=True)
            # the handshake completed (True), or the connection ended before it did (False)
            if await self._until(lambda: self._open or (False if self.closed else None)):
                await self._run_handler(self._server._handler)
            await t.done.wait()
        except OSError as exc:  # from the TLS handshake
            log.debug("zenws TLS handshake from %s failed: %s", self.remote_address, exc)
        finally:
            await timer.cancel()
            await t.abort()
            await self._feed(t, b"")
            del self._server._connections[self]


ServerHandler = Callable[[ServerWebSocket], Awaitable[Any]]


class Server(AsyncServer):
    """A running zenws server (one listening socket, one task per connection)."""

    def __init__(self, sock: Any, handler: ServerHandler, ssl: _SSL, config: ServerConfig) -> None:
        super().__init__(config, clock=monotonic, secure=ssl is not None)
        self._sock, self._handler, self.ssl = sock, handler, ssl
        self.host, self.port = sock.getsockname()[:2]
        self._connections: dict[ServerWebSocket, Any] = {}  # their tasks
        self._stopped, self._acceptor = curio.Event(), cast(Any, None)

    async def serve_forever(self) -> None:
        """Wait until ``shutdown`` ends this server."""
        await self._stopped.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Close every connection with 1001 (RFC 6455 section 7.4.1), then drop the rest."""
        if not self.hub.shutting_down:  # the first call shuts down, the others wait for it
            deadline = monotonic() + self._begin_shutdown(self._connections, timeout)
            await self._acceptor.cancel()
            await self._sock.close()
            for ws in list(self._connections):
                await ws._drive()
            for task in list(self._connections.values()):  # what outlives the deadline is cut
                await curio.ignore_after(max(deadline - monotonic(), 0.0), task.wait())
                await task.cancel()
            await self._stopped.set()
        await self._stopped.wait()

    async def _accept(self) -> None:
        while True:
            sock, address = await self._sock.accept()
            ws = ServerWebSocket(self, address)
            self._connections[ws] = await curio.spawn(ws._serve, sock, daemon=True)


def serve(
    host: str,
    port: int,
    handler: ServerHandler,
    *,
    ssl: _ssl.SSLContext | None = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> Opening[Server]:
    """Listen on ``host:port`` (0: any free port): ``await serve(...)`` or ``async with``.

    ``handler(ws)`` runs once per opened connection; ``options`` are ``ServerConfig`` fields.
    """
    config = server_config(config, options)

    async def start() -> Server:
        family = AF_INET6 if ":" in host else AF_INET
        sock = curio.network.tcp_server_socket(host, port, family, backlog=1024, reuse_address=True)
        server = Server(sock, handler, ssl, config)
        server._acceptor = await curio.spawn(server._accept, daemon=True)
        return server

    return Opening(start)
