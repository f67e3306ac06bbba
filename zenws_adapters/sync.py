"""The blocking-sockets adapter: ``socket`` + ``selectors``, usable from plain threads.

The client has no background thread: I/O happens inside its calls.  ``recv``, ``request``,
``ping``, ``poll`` and ``close`` wait in ``select`` until bytes arrive or the core's next
deadline (heartbeats, reconnects, timeouts) comes, whichever is first.  The server runs an
accept loop in one background thread and each connection's handler in a thread of its own.
Reconnects, heartbeats, queueing and timeouts all stay in ``zenws_core``.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl as _ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from time import monotonic
from typing import Any, TypeVar

from zenws_core import (
    ConnectionStateError,
    Envelope,
    OpenTransport,
    ReconnectingClient,
    ServerConfig,
    ServerSession,
)

from ._common import ConnectTunnel, ProxyError, classify_os_error, client_ssl_context, proxy_for
from ._driver import INBOX_LIMIT as INBOX_LIMIT
from ._driver import (
    ClientDriver,
    Handler,
    Pending,
    ServerDriver,
    SessionDriver,
    build_core,
    call_user,
    encode_json,
    server_config,
)
from ._errors import ConnectionClosed

__all__ = ["Client", "Server", "ServerWebSocket", "connect", "serve"]

log = logging.getLogger("zenws.sync")
T = TypeVar("T")
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_WOULD_BLOCK = (BlockingIOError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)
#: Bytes read per wake-up before timers get their turn (fairness, not a limit).
_READ_BUDGET = 4 * 1024 * 1024


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _Channel:
    """One socket, driven by whichever thread waits on it; ``lock`` guards socket and core."""

    _inbox: deque[str | bytes]  # the driver's (ClientDriver / SessionDriver)

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._sock: socket.socket | None = None
        self._out = bytearray()
        self._calls: list[Callable[[], object]] = []  # user code, run outside the lock
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._waiters = 0

    # hooks: the core behind this socket
    def _deadline(self) -> float | None:
        raise NotImplementedError

    def _feed(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def _ended(self, error: str | None, now: float) -> None:
        raise NotImplementedError

    def _timer(self, now: float) -> None:
        raise NotImplementedError

    def _process(self, now: float) -> None:
        raise NotImplementedError

    def _may_read(self) -> bool:
        return not self._reading_paused

    _reading_paused: bool

    # the engine
    def _wake(self) -> None:
        """Make a thread waiting in ``select`` re-read the core's deadline."""
        if self._waiters:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _wait_for(self, take: Callable[[], T], timeout: float | None) -> T:
        """Drive I/O until ``take()`` (called under the lock) is not None, or time is up (None)."""
        end = None if timeout is None else monotonic() + timeout
        while True:
            self._run_calls()
            with self._lock:
                result = take()
            if result is not None:
                return result
            remaining = None if end is None else end - monotonic()
            if remaining is not None and remaining <= 0:
                return result  # None: time is up
            self._step(remaining)

    def _step(self, limit: float | None) -> None:
        """Wait (at most ``limit``) for bytes or the next deadline, then feed the core."""
        with self._lock:
            now = monotonic()
            self._process(now)
            sock, deadline, wait = self._sock, self._deadline(), limit
            if deadline is not None:
                until = max(0.0, deadline - now)
                wait = until if wait is None else min(wait, until)
            mask = 0
            if sock is not None:
                if self._may_read():
                    mask |= _READ
                    if isinstance(sock, _ssl.SSLSocket) and sock.pending():
                        wait = 0.0
                if self._out:
                    mask |= _WRITE
            self._waiters += 1
        ready = 0
        try:
            with selectors.DefaultSelector() as selector:
                if self._wake_r.fileno() >= 0:  # closed once the client is closed for good
                    selector.register(self._wake_r, _READ)
                if mask and sock is not None:
                    try:
                        selector.register(sock, mask)
                    except (OSError, ValueError):  # closed by another thread meanwhile
                        mask = 0
                for key, events in selector.select(wait):
                    if key.fileobj is sock:
                        ready = events
        finally:
            with self._lock:
                self._waiters -= 1
        with self._lock:
            self._drain_wake()
            now = monotonic()
            # Only deadlines due before this read fire in this step: one the bytes below set
            # (a violation right after complete messages) waits one step, so the caller gets
            # those messages first and can answer them in wire order (RFC 6455 section 7.1.7).
            deadline = self._deadline()
            if sock is not None and sock is self._sock:
                if ready & _WRITE:
                    self._write(now)
                if ready & _READ or (mask & _READ and wait == 0.0):
                    self._read(sock, now)
            if deadline is not None and now >= deadline:
                self._timer(now)
            self._process(now)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _read(self, sock: socket.socket, now: float) -> None:
        budget = _READ_BUDGET
        while budget > 0 and sock is self._sock and self._may_read():
            try:
                data = sock.recv(256 * 1024)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(_describe(exc), now)
                return
            if not data:
                self._lost(None, now)
                return
            budget -= len(data)
            self._feed(data, now)
            self._process(now)
            if self._inbox:
                # Hand these messages to the caller before reading on: bytes after them may
                # fail the connection, and the caller may still answer them first.
                return

    def _write(self, now: float) -> None:
        sock = self._sock
        while self._out and sock is not None:
            try:
                sent = sock.send(self._out)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(_describe(exc), now)
                return
            del self._out[:sent]

    def _lost(self, error: str | None, now: float) -> None:
        """EOF (``error`` None) or a transport error: the socket is gone."""
        self._close_socket(flush=False)
        self._ended(error, now)

    def _close_socket(self, *, flush: bool) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            self._out.clear()
            return
        if flush and self._out:  # a last close frame or HTTP answer: bounded blocking write
            try:
                sock.settimeout(1.0)
                sock.sendall(self._out)
            except OSError:
                pass
        self._out.clear()
        sock.close()
        self._wake()

    def _run_calls(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for call in calls:
            call()

    def _later(self, handler: Handler, argument: Any) -> None:
        """User code runs outside the lock, in the thread that waits next."""
        self._calls.append(partial(call_user, handler, argument))

    def _reading(self, paused: bool) -> None:
        if not paused:
            self._wake()  # a thread in select() should read again

    def _release(self) -> None:
        if not self._waiters:
            self._wake_r.close()
            self._wake_w.close()


# --------------------------------------------------------------------------- client


class Client(_Channel, ClientDriver):
    """A reconnecting WebSocket client over blocking sockets (see ``connect``)."""

    def __init__(
        self,
        core: ReconnectingClient[Handler],
        *,
        ssl: _ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        _Channel.__init__(self, threading.RLock())
        ClientDriver.__init__(
            self, core, clock=monotonic, wake=self._wake, reading=self._reading, run=self._later
        )
        self._ssl = ssl
        self._proxy = proxy
        self._generation = 0

    # ------------------------------------------------------------ core hooks
    def _deadline(self) -> float | None:
        return self._core.next_deadline()

    def _feed(self, data: bytes, now: float) -> None:
        self._core.receive_data(data, now)

    def _ended(self, error: str | None, now: float) -> None:
        if error is None:
            self._core.receive_eof(now)
        else:
            self._core.connection_lost(error, now)

    def _timer(self, now: float) -> None:
        self._core.handle_timer(now)

    def _process(self, now: float) -> None:
        core = self._core
        while True:
            self._out += core.data_to_send()
            self._write(now)
            actions = core.actions()
            for action in actions:
                if isinstance(action, OpenTransport):
                    self._open(action)
                elif action.generation == self._generation:
                    self._close_socket(flush=True)
            if not self._dispatch_events() and not actions:
                return

    def _open(self, action: OpenTransport) -> None:
        self._close_socket(flush=False)
        self._generation = action.generation
        try:
            sock, leftover = self._connect_socket(action)
        except (OSError, ValueError) as exc:
            self._core.connection_failed(_describe(exc), monotonic(), **classify_os_error(exc))
            return
        self._sock = sock
        self._core.connection_made(monotonic())
        if leftover:
            self._core.receive_data(leftover, monotonic())

    def _connect_socket(self, action: OpenTransport) -> tuple[socket.socket, bytes]:
        """TCP (every resolved address in turn), then CONNECT through a proxy, then TLS."""
        end = monotonic() + action.timeout
        proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
        target = (proxy.host, proxy.port) if proxy is not None else (action.host, action.port)
        sock = socket.create_connection(target, timeout=action.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            leftover = b""
            if proxy is not None:
                tunnel = ConnectTunnel(proxy, action.host, action.port)
                sock.sendall(tunnel.request())
                rest = None
                while rest is None:
                    sock.settimeout(max(end - monotonic(), 0.001))
                    rest = tunnel.receive(sock.recv(65536))
                leftover = rest
            if action.tls is not None:
                if leftover:
                    raise ProxyError("unexpected bytes from the proxy before TLS")
                context = self._ssl or client_ssl_context(action.tls)
                sock.settimeout(max(end - monotonic(), 0.001))
                sock = context.wrap_socket(sock, server_hostname=action.server_hostname)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock, leftover

    def _call(self, action: Callable[[float], T]) -> T:
        """An application call on the core, then its bytes written (blocking, like sendall)."""
        with self._lock:
            result = action(monotonic())
            self._process(monotonic())
        self._wake()
        self._wait_for(lambda: True if not self._out or self._sock is None else None, None)
        return result

    # ------------------------------------------------------------ public API
    def send_text(self, text: str) -> None:
        """Send a text message now, or queue it while disconnected (the core decides)."""
        self._call(lambda now: self._core.send_text(text, now=now))

    def send_bytes(self, data: bytes) -> None:
        self._call(lambda now: self._core.send_bytes(data, now=now))

    def send_json(self, obj: Any) -> None:
        self._call(lambda now: self._core.send_json(obj, now=now))

    def send(self, type: str, data: Any = None) -> None:
        """Send the envelope ``{"type": type, "data": data}``."""
        self._call(lambda now: self._core.send(type, data, now=now))

    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send an envelope with a fresh id and wait for the reply carrying that id."""
        reply: Pending[Envelope] = Pending()
        self._call(
            lambda now: self._expect_reply(
                self._core.request(type, data, now=now, timeout=timeout), reply
            )
        )
        return self._result(reply, None)

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message no handler took; ``TimeoutError``; ``ConnectionClosed`` at the end."""
        result = self._wait_for(self._take, timeout)
        if result is None:
            raise TimeoutError(f"no message within {timeout}s")
        return result

    def _result(self, waiter: Pending[T], timeout: float | None) -> T:
        if self._wait_for(lambda: True if waiter.done() else None, timeout) is None:
            raise TimeoutError(f"no answer within {timeout}s")
        return waiter.result()

    def __iter__(self) -> Iterator[str | bytes]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return

    def poll(self, timeout: float = 0.0) -> None:
        """Drive I/O and timers for at most ``timeout`` seconds without taking messages."""
        self._step(timeout)
        self._run_calls()

    def ping(self, timeout: float | None = None) -> float:
        """Ping the server and return the round trip in seconds."""
        return self._result(self._call(lambda now: self._start_ping(Pending[float]())), timeout)

    def reconnect(self) -> None:
        """Connect again now (after ``GaveUp``, or to cut a backoff wait short)."""
        self._call(lambda now: self._core.reconnect(now))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (RFC 6455 section 7.1.2), waiting for the closing handshake."""
        self._call(lambda now: self._core.close(code, reason, now=now))
        self._wait_for(lambda: True if self._closed else None, None)
        with self._lock:
            self._close_socket(flush=True)
            self._release()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(
    url: str,
    *,
    ssl: _ssl.SSLContext | None = None,
    proxy: str | None = None,
    wait_open: bool = True,
    open_timeout: float | None = None,
    **options: Any,
) -> Client:
    """Start a client; with ``wait_open`` return once connected (``ConnectError`` if it gives up).

    ``options`` are ``ClientConfig`` fields (or ``config=``) and the core's ``rng``,
    ``delays``, ``mask_source``, ``classifier``, ``id_factory``; ``ssl`` overrides the context
    made from ``tls=TLSConfig(...)``; ``proxy`` is an ``http://`` CONNECT proxy URL.
    """
    client = Client(build_core(url, options), ssl=ssl, proxy=proxy)
    opened = client._open_waiter(Pending[None]()) if wait_open else None
    client._call(lambda now: client._core.start(now))
    if opened is not None:
        try:
            client._result(opened, open_timeout)
        except TimeoutError:
            client.close()
            raise client._open_timed_out(open_timeout) from None
    return client


# --------------------------------------------------------------------------- server


class ServerWebSocket(_Channel, SessionDriver):
    """One open server-side WebSocket, for a handler running in its own thread."""

    def __init__(
        self, server: Server, sock: socket.socket, address: Any, session: ServerSession
    ) -> None:
        _Channel.__init__(self, server._lock)
        SessionDriver.__init__(
            self,
            session,
            clock=monotonic,
            wake=self._wake,
            opened=self._open,
            reading=self._reading,
        )
        self._sock = sock
        self.remote_address = address
        self._opened = False
        self._closing = False  # read past the inbox limit: the close frame must get through

    # ------------------------------------------------------------ core hooks
    def _deadline(self) -> float | None:
        return self._session.next_deadline() if self._sock is not None else None

    def _feed(self, data: bytes, now: float) -> None:
        self._session.receive_data(data, now)

    def _ended(self, error: str | None, now: float) -> None:
        self._session.receive_eof(now)

    def _timer(self, now: float) -> None:
        self._session.handle_timer(now)

    def _may_read(self) -> bool:
        return not self._reading_paused or self._closing

    def _open(self) -> None:
        self._opened = True

    def _process(self, now: float) -> None:
        session = self._session
        while True:
            self._out += session.data_to_send()
            self._write(now)
            if session.should_close_transport:
                self._close_socket(flush=True)  # RFC 6455 section 7.1.1: the server closes TCP
            if not self._dispatch_events():
                return

    def _call(self, action: Callable[[float], T]) -> T:
        with self._lock:
            try:
                result = action(monotonic())
            except ConnectionStateError:  # closing or closed: no more messages
                raise ConnectionClosed(self.close_code, self.close_reason) from None
            self._process(monotonic())
        self._wake()
        self._wait_for(lambda: True if not self._out or self._sock is None else None, None)
        return result

    # ------------------------------------------------------------ public API
    def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message, blocking until it is written."""
        self._call(lambda now: self._send_message(message))

    def send_text(self, text: str) -> None:
        self.send(str(text))

    def send_bytes(self, data: bytes) -> None:
        self.send(bytes(data))

    def send_json(self, obj: Any) -> None:
        self.send(encode_json(obj))

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``TimeoutError``, or ``ConnectionClosed`` once the connection ends."""
        result = self._wait_for(self._take, timeout)
        if result is None:
            raise TimeoutError(f"no message within {timeout}s")
        return result

    def __iter__(self) -> Iterator[str | bytes]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return

    def ping(self, timeout: float | None = None) -> float:
        """Ping the client and return the round trip in seconds."""
        pong = self._call(lambda now: self._start_ping(Pending[float]()))
        if self._wait_for(lambda: True if pong.done() else None, timeout) is None:
            raise TimeoutError(f"no pong within {timeout}s")
        return pong.result()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (RFC 6455 section 7.1.2) and wait until the transport is closed."""
        with self._lock:
            self._closing = True
            self._start_close(code, reason)
            self._process(monotonic())
        self._wake()
        self._wait_for(self._gone, None)

    def _gone(self) -> bool | None:
        return True if self._sock is None else None

    def _abort(self) -> None:
        """Drop the transport without a closing handshake (shutdown deadline passed)."""
        with self._lock:
            if self._sock is not None:
                self._lost("server shutdown deadline", monotonic())
                self._process(monotonic())


class Server(ServerDriver):
    """A running server: accept loop in a background thread, one thread per connection."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Callable[[ServerWebSocket], object],
        config: ServerConfig,
        ssl: _ssl.SSLContext | None,
    ) -> None:
        super().__init__(config, clock=monotonic, secure=ssl is not None)
        self._lock = threading.RLock()
        self._listener = listener
        self._handler = handler
        self._ssl = ssl
        self.config = config
        self.host, self.port = listener.getsockname()[:2]
        self._conns: set[ServerWebSocket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._accepter = threading.Thread(target=self._accept_loop, name="zenws-accept")
        self._accepter.daemon = True
        self._accepter.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, _READ)
            selector.register(self._wake_r, _READ)
            while not self._stopped.is_set():
                for key, _ in selector.select():
                    if key.fileobj is not self._listener:
                        return
                    try:
                        sock, address = self._listener.accept()
                    except OSError as exc:  # EMFILE and friends: let connections finish first
                        log.warning("zenws: accept failed: %s", exc)
                        self._stopped.wait(0.1)
                        continue
                    thread = threading.Thread(target=self._run, args=(sock, address))
                    thread.daemon = True
                    with self._lock:
                        self._threads.add(thread)
                    thread.start()

    def _run(self, sock: socket.socket, address: Any) -> None:
        ws = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock.settimeout(self.config.connection.handshake_timeout)
                sock = self._ssl.wrap_socket(sock, server_side=True)
            sock.setblocking(False)
            with self._lock:
                ws = ServerWebSocket(self, sock, address, self.hub.session(monotonic()))
                self._conns.add(ws)
            ws._wait_for(lambda: True if ws._opened or ws._sock is None else None, None)
            if ws._opened:
                try:
                    self._handler(ws)
                except Exception as exc:
                    with self._lock:
                        ws._handler_done(exc)
                else:
                    with self._lock:
                        ws._handler_done(None)
            ws.close()
        except OSError as exc:
            log.debug("zenws: connection from %s ended: %s", address, exc)
        finally:
            with self._lock:
                if ws is not None:
                    self._conns.discard(ws)
                    ws._close_socket(flush=False)
                    ws._release()
                self._threads.discard(threading.current_thread())
            sock.close()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, close every connection with 1001, drop what is left at the deadline."""
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        end = monotonic() + timeout
        if not self._stopped.is_set():
            self._stopped.set()
            self._wake_w.send(b"\0")
            self._accepter.join()
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
            self._begin_shutdown(conns, timeout)
            for ws in conns:
                ws._closing = True
                ws._process(monotonic())
                ws._wake()
        for ws in conns:  # drive them from here too: a busy handler may not be reading
            ws._wait_for(ws._gone, end - monotonic())
            ws._abort()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(end - monotonic(), 0.0) + 1.0)

    def serve_forever(self) -> None:
        """Block until ``shutdown()`` is called (from another thread or a signal handler)."""
        self._stopped.wait()
        self._accepter.join()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def serve(
    host: str,
    port: int,
    handler: Callable[[ServerWebSocket], object],
    *,
    ssl: _ssl.SSLContext | None = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> Server:
    """Listen on ``host:port`` (0 picks a port) and run ``handler(ws)`` per WebSocket.

    ``options`` are ``ServerConfig`` fields.  The same port answers ``GET /health`` and
    ``GET /status``.  When the handler returns the connection closes with 1000; if it
    raises, with 1011.
    """
    config = server_config(config, options)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=1024)
    listener.setblocking(False)
    return Server(listener, handler, config, ssl)
