"""zenws on curio: native curio sockets and TLS driving the sans-IO core.

The module moves bytes (a reader and a writer task per socket), sleeps until the core's
next deadline (one timer task per client or server connection) and runs user code.  Event
dispatch, waiters, the inbox and the server's 1000/1011/1001 duties come from the shared
``_driver.py``; reconnects, heartbeats, queueing, routing and timeouts from ``zenws_core``.
Waiters are ``Pending`` slots and one ``curio.Event`` per client or connection is pulsed
after each change.  ``now`` is ``time.monotonic()``, the clock curio's kernel sleeps on.
"""

from __future__ import annotations

import contextlib
import socket as _socket
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from time import monotonic
from typing import Any, TypeVar

import curio
from curio.io import Socket

from zenws_core import (
    ClientEvent,
    Envelope,
    OpenTransport,
    ReconnectingClient,
    ServerConfig,
    ServerSession,
)

from ._common import ConnectTunnel, classify_os_error, client_ssl_context, proxy_for
from ._driver import (
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
from ._errors import ConnectError, ConnectionClosed

__all__ = ["Client", "Server", "ServerWebSocket", "connect", "serve"]

T = TypeVar("T")
READ_SIZE = 256 * 1024
#: Seconds a dropped transport may take to write its last bytes before it is cut.
CLOSE_GRACE = 5.0


async def _pulse(event: Any) -> None:
    """Wake every task waiting on ``event`` and re-arm it."""
    await event.set()
    event.clear()


async def _within(timeout: float | None, awaitable: Coroutine[Any, Any, T]) -> T:
    """``await awaitable``; ``TimeoutError`` after ``timeout`` seconds (``None``: no limit)."""
    if timeout is None:
        return await awaitable
    try:
        result: T = await curio.timeout_after(max(timeout, 0.0), awaitable)
    except curio.TaskTimeout:
        raise TimeoutError(f"nothing happened within {timeout:g}s") from None
    return result


def _nodelay(sock: Any) -> None:
    with contextlib.suppress(OSError):  # not a TCP socket
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)


async def _tcp(host: str, port: int) -> Any:
    """Connect to each address ``host`` resolves to, in turn (IPv6 literals included).

    Unlike ``curio.socket.create_connection`` it closes its socket when cancelled.
    """
    error: OSError = OSError(f"{host} resolves to no address")
    for family, kind, proto, _, address in await curio.socket.getaddrinfo(
        host, port, type=_socket.SOCK_STREAM
    ):
        sock = curio.socket.socket(family, kind, proto)
        try:
            await sock.connect(address)
        except BaseException as exc:
            await sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
            continue
        _nodelay(sock)
        return sock
    raise error


async def _wrap_tls(sock: Any, context: _ssl.SSLContext, hostname: str | None, **kw: Any) -> Any:
    """TLS over ``sock`` (``curio.ssl.wrap_socket`` calls ``ssl.wrap_socket``, gone in 3.12)."""
    raw = context.wrap_socket(
        sock._socket, server_hostname=hostname, do_handshake_on_connect=False, **kw
    )
    tls = Socket(raw)
    try:
        await tls.do_handshake()
    except BaseException:
        await tls.close()
        raise
    return tls


class _Transport:
    """One socket: a reader task feeding the owner, a writer task draining it, and a closer.

    Curio lets one task wait to read and one to write per socket, hence two tasks.  The
    writer pulls ``data_to_send()``, so bytes stay in the core (counted by its
    ``writing_paused``) until the socket takes them.
    """

    def __init__(self, owner: _Curio, generation: int = 0) -> None:
        self.owner, self.generation = owner, generation
        self.sock: Any = None
        self.reader: Any = None
        self.writer: Any = None
        self.final = b""
        self.closing = False
        self.kick, self.progress, self.done = curio.Event(), curio.Event(), curio.Event()

    async def run(self) -> None:
        """Run by the reader task once ``sock`` is up: start the writer, read until the end."""
        self.writer = await curio.spawn(self._write_loop, daemon=True)
        while not self.closing:
            while self.owner._reading_paused and not self.closing:  # backpressure: inbox full
                await self.owner._changed.wait()
            try:
                data: bytes | BaseException = await self.sock.recv(READ_SIZE)
            except OSError as exc:
                data = exc
            async with curio.disable_cancellation():  # closing never cuts event delivery
                await self.owner._feed(self, data)  # b"" is EOF
            if not isinstance(data, bytes) or not data:
                return
            if self.owner._inbox:
                await curio.sleep(0)  # let the application take what arrived before reading on

    async def _write_loop(self) -> None:
        try:
            while True:
                if self.closing:
                    data, self.final = self.final, b""
                else:
                    data = self.owner._drain(self)
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
                await self.owner._feed(self, exc)

    async def shut(self, final: bytes = b"") -> None:
        """The core is done with this socket: write ``final``, then close (bounded)."""
        self.final += final
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


class _Curio:
    """What a client and a server connection share: waiting, the timer task, recv and ping."""

    _io: ReconnectingClient[Handler] | ServerSession
    _reading_paused: bool
    _inbox: deque[str | bytes]
    _drain: Callable[[_Transport], bytes]
    _feed: Callable[[_Transport, bytes | BaseException], Awaitable[None]]
    _drive: Callable[[], Awaitable[None]]
    _take: Callable[[], str | bytes | None]
    _start_ping: Callable[[Pending[float]], Pending[float]]

    def _setup(self, io: ReconnectingClient[Handler] | ServerSession) -> None:
        self._io = io
        self._changed = curio.Event()  # pulsed after the driver reported a change
        self._woken = False
        self._alarm = curio.Event()  # wakes the timer task when the deadline moved earlier
        self._sleeping_until: float | None = None

    def _wake(self, *_paused: bool) -> None:
        """The driver's ``wake()`` and ``reading(paused)`` hooks: pulse on the next ``_notify``."""
        self._woken = True

    async def _notify(self) -> None:
        if self._woken:
            self._woken = False
            await _pulse(self._changed)

    async def _until(self, take: Callable[[], T | None]) -> T:
        """Wait until ``take()`` gives a value (or raises)."""
        while (value := take()) is None:
            await self._changed.wait()
        await self._notify()  # taking from the inbox may resume a paused reader
        return value

    async def _result(self, waiter: Pending[T]) -> T:
        await self._until(lambda: waiter.done() or None)
        return waiter.result()

    async def _settled(self, transport: _Transport | None) -> None:
        """The end of every ``_drive``: kick the writer, wake waiting tasks, re-arm the timer."""
        if transport is not None:
            await transport.kick.set()
        await self._notify()
        deadline, sleeping_until = self._io.next_deadline(), self._sleeping_until
        if deadline is not None and (sleeping_until is None or deadline < sleeping_until):
            await self._alarm.set()

    async def _tick(self) -> None:
        """The timer task: sleep until the next deadline (or an earlier one), then fire."""
        while True:
            self._alarm.clear()
            self._sleeping_until = deadline = self._io.next_deadline()
            if deadline is None:
                await self._alarm.wait()
            elif deadline > monotonic():
                await curio.ignore_after(deadline - monotonic(), self._alarm.wait())
            self._sleeping_until = None
            deadline = self._io.next_deadline()
            if deadline is not None and monotonic() >= deadline:
                self._io.handle_timer(monotonic())
                await self._drive()

    async def _caught_up(self, transport: _Transport | None) -> None:
        """Backpressure: wait while the core holds more than its high-water mark of bytes."""
        while self._io.writing_paused and transport is not None and not transport.closing:
            await transport.progress.wait()

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``TimeoutError`` after ``timeout``; ``ConnectionClosed`` at the end."""
        return await _within(timeout, self._until(self._take))

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def ping(self) -> float:
        """Ping the peer: the round trip in seconds (``ConnectionClosed`` if it is not open)."""
        pong = self._start_ping(Pending[float]())
        await self._drive()
        return await self._result(pong)


# --------------------------------------------------------------------------- client


class Client(ClientDriver, _Curio):
    """A resilient WebSocket client on curio; see ``connect``."""

    def __init__(
        self, core: ReconnectingClient[Handler], ssl: _ssl.SSLContext | None, proxy: str | None
    ) -> None:
        super().__init__(core, clock=monotonic, wake=self._wake, reading=self._wake, run=self._call)
        self._setup(core)
        self._ssl, self._proxy = ssl, proxy
        self._transport: _Transport | None = None
        self._last: _Transport | None = None  # the transport dropped last (close waits for it)
        self._backlog: deque[Awaitable[Any]] = deque()
        self._runner: Any = None
        self._timer: Any = None

    async def send_text(self, text: str) -> None:
        await self._submit(self._core.send_text, text)

    async def send_bytes(self, data: bytes) -> None:
        await self._submit(self._core.send_bytes, data)

    async def send_json(self, obj: Any) -> None:
        await self._submit(self._core.send_json, obj)

    async def send(self, type: str, data: Any = None) -> None:
        """Send the envelope ``{"type": type, "data": data}`` (queued while disconnected)."""
        await self._submit(self._core.send, type, data)

    async def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send a request envelope; the reply with its id, or ``RequestTimeout``."""
        reply = Pending[Envelope]()
        request = self._core.request  # the waiter is in place before any event can answer it
        await self._submit(
            lambda now: self._expect_reply(request(type, data, now=now, timeout=timeout), reply)
        )
        return await self._result(reply)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnection) and wait until the transport is gone."""
        self._core.close(code, reason, now=monotonic())
        await self._drive()
        await self._until(lambda: self._closed or None)
        if self._last is not None:
            await self._last.done.wait()
        await self._finish()

    async def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float | None = None
    ) -> ClientEvent:
        """The first lifecycle event, already seen or still to come, matching ``predicate``."""
        event: ClientEvent = await _within(
            timeout, self._until(lambda: self._match(predicate, 0)[0])
        )
        return event

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ driving the core

    async def _submit(self, method: Callable[..., object], *args: Any) -> None:
        try:
            method(*args, now=monotonic())
        finally:  # QueueFull and ClientClosedError come with a MessageDropped event
            await self._drive()
            await self._caught_up(self._transport)

    async def _drive(self) -> None:
        """After any input: transport actions, events and user code, then ``_settled``."""
        for action in self._core.actions():
            t = self._transport
            if isinstance(action, OpenTransport):
                t = self._transport = _Transport(self, action.generation)
                t.reader = await curio.spawn(self._open, t, action, daemon=True)
            elif t is not None and t.generation == action.generation:  # CloseTransport
                await self._drop(t, self._core.data_to_send())
        self._dispatch_events()
        if self._backlog and (self._runner is None or self._runner.terminated):
            self._runner = await curio.spawn(self._run_backlog, daemon=True)
        await self._settled(self._transport)

    async def _open(self, t: _Transport, action: OpenTransport) -> None:
        """The reader task of one transport: TCP, proxy ``CONNECT``, TLS; then read."""
        rest: bytes | None = b""
        try:
            proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
            end = proxy or action  # TCP to the proxy, or straight to the server
            t.sock = await _tcp(end.host, end.port)
            if proxy is not None:
                tunnel = ConnectTunnel(proxy, action.host, action.port)
                await t.sock.sendall(tunnel.request())
                rest = None
                while rest is None:
                    rest = tunnel.receive(await t.sock.recv(READ_SIZE))
            if action.tls is not None:
                context = self._ssl or client_ssl_context(action.tls)
                t.sock = await _wrap_tls(t.sock, context, action.server_hostname)
        except Exception as exc:  # refused, DNS, TLS, proxy: the core decides what follows
            await t.abort()
            if self._transport is t:
                self._transport = None
                flags = classify_os_error(exc)
                self._core.connection_failed(str(exc) or type(exc).__name__, monotonic(), **flags)
                await self._drive()
            return
        if self._transport is not t:
            await t.abort()
            return
        async with curio.disable_cancellation():
            self._core.connection_made(monotonic())
            if rest:
                self._core.receive_data(rest, monotonic())
            await self._drive()
        await t.run()

    def _drain(self, t: _Transport) -> bytes:
        return self._core.data_to_send() if self._transport is t else b""

    async def _feed(self, t: _Transport, data: bytes | BaseException) -> None:
        if self._transport is not t:
            return
        if isinstance(data, bytes) and data:
            self._core.receive_data(data, monotonic())
        else:  # EOF (no error) or error: the core considers the transport gone
            error = None if isinstance(data, bytes) else str(data) or type(data).__name__
            self._core.connection_lost(error, monotonic())
            await self._drop(t)
        await self._drive()

    async def _drop(self, t: _Transport, final: bytes = b"") -> None:
        self._transport, self._last = None, t
        await t.shut(final)

    def _call(self, handler: Handler, argument: Any) -> None:
        """Call user code; coroutines wait in order for the runner task ``_drive`` starts."""
        result = call_user(handler, argument)
        if result is not None:
            self._backlog.append(result)

    async def _run_backlog(self) -> None:
        while self._backlog:
            try:
                await self._backlog.popleft()
            except Exception:
                log.exception("zenws async handler failed")

    async def _finish(self) -> None:
        """Stop the timer and let queued async handlers finish."""
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
        opened = client._open_waiter(Pending[None]()) if wait_open else None
        client._timer = await curio.spawn(client._tick, daemon=True)
        core.start(monotonic())
        await client._drive()
        try:
            if opened is not None:
                await _within(open_timeout, client._result(opened))
        except TimeoutError:
            await client.close()
            raise client._open_timed_out(open_timeout) from None
        except ConnectError:
            await client._finish()
            raise
        return client

    return Opening(start)


# --------------------------------------------------------------------------- server


class ServerWebSocket(SessionDriver, _Curio):
    """One server-side connection; the handler receives it once the handshake completed."""

    def __init__(self, server: Server, remote_address: Any) -> None:
        session = server.hub.session(monotonic())
        super().__init__(
            session, clock=monotonic, wake=self._wake, opened=self._opened, reading=self._wake
        )
        self._setup(session)
        self._server = server
        self._transport = _Transport(self)
        self._start_handler = False
        self._handler_task: Any = None
        self.remote_address = remote_address

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message; waits while the writer is behind."""
        self._send_message(message)
        await self._transport.kick.set()  # sending moves no deadline and makes no event
        await self._caught_up(self._transport)

    async def send_text(self, text: str) -> None:
        await self.send(str(text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(encode_json(obj))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2) and wait until it ends."""
        self._start_close(code, reason)
        await self._drive()
        await self._until(lambda: self.closed or None)

    # ------------------------------------------------------------------ driving the session

    def _opened(self) -> None:
        self._start_handler = True

    def _drain(self, t: _Transport) -> bytes:
        return self._session.data_to_send()

    async def _feed(self, t: _Transport, data: bytes | BaseException) -> None:
        if isinstance(data, bytes) and data:
            self._session.receive_data(data, monotonic())
        else:
            self._session.receive_eof(monotonic())
        await self._drive()

    async def _drive(self) -> None:
        """After any input: events, the handler's start, the transport's end; ``_settled``."""
        self._dispatch_events()
        if self._start_handler:
            self._start_handler = False
            self._handler_task = await curio.spawn(self._run_handler, daemon=True)
        if self._session.should_close_transport:
            await self._transport.shut(self._session.data_to_send())
        await self._settled(self._transport)

    async def _run_handler(self) -> None:
        try:
            await self._server._handler(self)
        except Exception as exc:
            self._handler_done(exc)
        else:
            self._handler_done(None)
        await self._drive()

    async def _serve(self, sock: Any) -> None:
        """The connection task: TLS handshake, then read until the transport is closed.

        The session's handshake deadline (kept by the timer task) also bounds TLS.
        """
        t, server = self._transport, self._server
        t.reader, t.sock = await curio.current_task(), sock
        timer = await curio.spawn(self._tick, daemon=True)
        try:
            if server.ssl is not None:
                t.sock = await _wrap_tls(sock, server.ssl, None, server_side=True)
            await t.run()
            await t.shut()  # EOF or error: nothing more will be read
            await t.done.wait()
            if self._handler_task is not None:
                await self._handler_task.wait()
        except OSError as exc:
            log.debug("zenws TLS handshake from %s failed: %s", self.remote_address, exc)
        finally:
            await timer.cancel()
            if self._handler_task is not None:
                await self._handler_task.cancel()
            self._session.receive_eof(monotonic())  # a connection cut short still ends
            await self._drive()
            self._mark_closed()
            await self._notify()
            await t.abort()
            del server._connections[self]
            if not server._connections:
                await _pulse(server._all_gone)


ServerHandler = Callable[[ServerWebSocket], Awaitable[Any]]


class Server(ServerDriver):
    """A running zenws server (one listening socket, one task per connection)."""

    def __init__(
        self, sock: Any, handler: ServerHandler, ssl: _ssl.SSLContext | None, config: ServerConfig
    ) -> None:
        super().__init__(config, clock=monotonic, secure=ssl is not None)
        self._sock, self._handler, self.ssl = sock, handler, ssl
        self.host, self.port = sock.getsockname()[:2]
        self._connections: dict[ServerWebSocket, Any] = {}  # their tasks
        self._all_gone, self._stopped = curio.Event(), curio.Event()
        self._acceptor: Any = None

    async def serve_forever(self) -> None:
        """Wait until ``shutdown`` ends this server."""
        await self._stopped.wait()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Close every connection with 1001 (RFC 6455 section 7.4.1), then drop the rest."""
        if self.hub.shutting_down:
            await self._stopped.wait()
            return
        timeout = self._begin_shutdown(self._connections, timeout)
        await self._acceptor.cancel()
        await self._sock.close()
        for ws in list(self._connections):
            await ws._drive()
        if self._connections:
            await curio.ignore_after(timeout, self._all_gone.wait())
        for task in list(self._connections.values()):
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
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        sock = curio.network.tcp_server_socket(host, port, family, backlog=1024, reuse_address=True)
        server = Server(sock, handler, ssl, config)
        server._acceptor = await curio.spawn(server._accept, daemon=True)
        return server

    return Opening(start)
