"""The blocking-sockets adapter: ``socket`` + ``selectors``, usable from plain threads.

The client has no background thread: I/O happens inside its calls.  ``recv``, ``request``,
``ping``, ``poll`` and ``close`` wait in ``select`` until bytes arrive or the core's next
deadline (heartbeats, reconnects, timeouts) comes, whichever is first.  The server runs an
accept loop in one background thread and each connection's handler in a thread of its own.
Reconnects, heartbeats, queueing and timeouts all stay in ``zenws_core``; the public API is
``_api.SyncClient`` / ``SyncSession`` over this module's ``_submit`` and ``_until``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl as _ssl
import threading
from collections.abc import Callable
from ssl import SSLContext
from time import monotonic, sleep
from typing import Any, TypeVar

from zenws_core import OpenTransport, ReconnectingClient, ServerConfig, ServerSession

from ._api import SyncClient, SyncServer, SyncSession
from ._common import ConnectTunnel, ProxyError, classify_os_error, client_ssl_context, proxy_for
from ._driver import INBOX_LIMIT as INBOX_LIMIT
from ._driver import Handler, _Inbox, build_core, call_user, log, server_config

__all__ = ["Client", "Server", "ServerWebSocket", "connect", "serve"]

T = TypeVar("T")
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_WOULD_BLOCK = (BlockingIOError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)
#: Bytes read per wake-up before timers get their turn (fairness, not a limit).
_READ_BUDGET = 4 * 1024 * 1024
#: A fresh poll set per wait: no system call to build it, nothing shared between threads.
_Selector = getattr(selectors, "PollSelector", selectors.SelectSelector)
_ClientCore = ReconnectingClient[Handler]


class _Channel(_Inbox):
    """One socket and the core behind it, driven by whichever thread waits on it.

    ``lock`` guards socket and core; it is released while a thread waits in ``select``, so
    one thread can ``recv`` while others send: they write to the wake socket so that the
    waiting threads look at the core's deadline and the write interest again.  The client
    and a server connection differ only in their core, ``_act`` and ``_ended``.
    """

    #: Do what the core asks of the transport, dispatch its events; whether there were any.
    _act: Callable[[], bool]
    #: The core learns of EOF (``error`` None) or a transport error.
    _ended: Callable[[str | None, float], None]

    def __init__(self, conn: _ClientCore | ServerSession, lock: threading.RLock, **hooks: Any):
        super().__init__(conn, **hooks)  # type: ignore[arg-type]  # the driver's, next in the MRO
        self._conn, self._lock = conn, lock
        self._sock: socket.socket | None = None
        self._out = bytearray()
        self._calls: list[Callable[[], object]] = []  # user code, run outside the lock
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def _process(self, now: float) -> None:
        """Drain the core until it is quiet: bytes, transport actions, events."""
        while True:
            self._out += self._conn.data_to_send()
            self._write(now)
            if not self._act():
                return

    def _wake(self) -> None:
        """Make threads waiting in ``select`` look at the core again (and at ``_may_read``)."""
        with contextlib.suppress(OSError):  # full: the waiters wake up anyway; closed: none
            self._wake_w.send(b"\0")

    def _submit(self, call: Callable[[float], T]) -> T:
        """``call(now)`` on the core, then its bytes written (blocking, like ``sendall``)."""
        with self._lock:
            result = call(monotonic())
            self._process(monotonic())
        self._wake()
        self._until(lambda: True if not self._out or self._sock is None else None, None)
        return result

    def _until(self, take: Callable[[], T | None], timeout: float | None) -> T | None:
        """Drive I/O until ``take()`` (called under the lock) is not None; None when time is up."""
        end = None if timeout is None else monotonic() + timeout
        while True:
            with self._lock:
                calls, self._calls = self._calls, []
            for call in calls:  # user code queued by the core's events, outside the lock
                call()
            with self._lock:
                result = take()
            remaining = None if end is None else end - monotonic()
            if result is not None or (remaining is not None and remaining <= 0):
                return result
            self._step(remaining)

    def _step(self, limit: float | None) -> None:
        """Wait (at most ``limit``) for bytes, a wake-up or the next deadline; feed the core."""
        with self._lock:
            now, had_out = monotonic(), bool(self._out)
            self._process(now)
            sock, deadline = self._sock, self._conn.next_deadline()
            due = None if deadline is None else max(0.0, deadline - now)
            wait = min((w for w in (limit, due) if w is not None), default=None)
            if had_out and not self._out:  # all written just now: the caller looks again first
                wait = 0.0  # (a sender waiting for its bytes to go out would wait for nothing)
            selector = _Selector()
            if self._wake_r.fileno() >= 0:  # closed once the client is closed for good
                with contextlib.suppress(OSError):  # wake-ups before now are seen already
                    self._wake_r.recv(65536)
                selector.register(self._wake_r, _READ)
            if sock is not None:
                mask = (_READ if self._may_read() else 0) | (_WRITE if self._out else 0)
                if mask & _READ and isinstance(sock, _ssl.SSLSocket) and sock.pending():
                    wait = 0.0  # decrypted bytes wait in the TLS layer, not in the kernel
                if mask:
                    selector.register(sock, mask)
        ready = any(key.fileobj is sock for key, _ in selector.select(wait))
        with self._lock:
            # Only deadlines due before this read fire in this step: one the bytes below set
            # (a violation right after complete messages) waits one step, so the caller gets
            # those messages first and can answer them in wire order (RFC 6455 section 7.1.7).
            now, deadline = monotonic(), self._conn.next_deadline()
            if sock is not None and sock is self._sock and (ready or wait == 0.0):
                self._read(sock, now)  # and _process() below writes what the socket takes
            if deadline is not None and now >= deadline:
                self._conn.handle_timer(now)
            self._process(now)

    def _may_read(self) -> bool:
        return not self._reading_paused

    def _read(self, sock: socket.socket, now: float) -> None:
        budget = _READ_BUDGET
        while budget > 0 and sock is self._sock and self._may_read():
            try:
                data = sock.recv(256 * 1024)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(now, exc)
                return
            if not data:
                self._lost(now)
                return
            budget -= len(data)
            self._conn.receive_data(data, now)
            self._process(now)
            if self._inbox:
                # Hand these messages to the caller before reading on: bytes after them may
                # fail the connection, and the caller may still answer them first.
                return

    def _write(self, now: float) -> None:
        while self._out and self._sock is not None:
            try:
                del self._out[: self._sock.send(self._out)]
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(now, exc)

    def _lost(self, now: float, error: BaseException | None = None) -> None:
        """EOF (``error`` None) or a transport error: the socket is gone."""
        self._close_socket(flush=False)
        self._ended(None if error is None else str(error) or type(error).__name__, now)

    def _close_socket(self, *, flush: bool) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if flush and self._out:  # a last close frame or HTTP answer: bounded blocking write
                with contextlib.suppress(OSError):
                    sock.settimeout(1.0)
                    sock.sendall(self._out)
            sock.close()
            self._wake()
        self._out.clear()

    def _run_user(self, handler: Handler, argument: Any) -> None:
        """User code runs outside the lock, in the thread that waits next."""
        self._calls.append(lambda: call_user(handler, argument))

    def _release(self, *, flush: bool) -> None:
        """Close the socket and the wake socket (a thread still waiting on it just wakes up)."""
        with self._lock:
            self._close_socket(flush=flush)
            self._wake_r.close()
            self._wake_w.close()


# --------------------------------------------------------------------------- client


class Client(_Channel, SyncClient):
    """A reconnecting WebSocket client over blocking sockets (see ``connect``)."""

    def __init__(self, core: _ClientCore, ssl: SSLContext | None, proxy: str | None) -> None:
        super().__init__(core, threading.RLock())
        self._ssl, self._proxy, self._ended = ssl, proxy, core.connection_lost

    def _act(self) -> bool:
        actions = self._core.actions()
        for action in actions:  # done in order: a CloseTransport is for the current socket
            self._close_socket(flush=True)  # (and no socket outlives an OpenTransport)
            if isinstance(action, OpenTransport):
                self._open(action)
        return self._dispatch_events() or bool(actions)

    def _open(self, action: OpenTransport) -> None:
        """TCP (each resolved address in turn), CONNECT through a proxy, TLS; tell the core."""
        end = monotonic() + action.timeout
        try:
            with contextlib.ExitStack() as stack:  # closes the socket if a step fails
                proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
                target = (proxy.host, proxy.port) if proxy else (action.host, action.port)
                sock = stack.enter_context(socket.create_connection(target, action.timeout))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(max(end - monotonic(), 0.001))  # for the proxy and TLS steps
                leftover: bytes | None = b""
                if proxy is not None:
                    tunnel, leftover = ConnectTunnel(proxy, action.host, action.port), None
                    sock.sendall(tunnel.request())
                    while leftover is None:
                        leftover = tunnel.receive(sock.recv(65536))
                if action.tls is not None:
                    if leftover:
                        raise ProxyError("unexpected bytes from the proxy before TLS")
                    context = self._ssl or client_ssl_context(action.tls)
                    sock = context.wrap_socket(sock, server_hostname=action.server_hostname)
                sock.setblocking(False)
                stack.pop_all()
        except (OSError, ValueError) as exc:
            detail = str(exc) or type(exc).__name__
            self._core.connection_failed(detail, monotonic(), **classify_os_error(exc))
            return
        self._sock = sock
        self._core.connection_made(monotonic())
        if leftover:
            self._core.receive_data(leftover, monotonic())

    def poll(self, timeout: float = 0.0) -> None:
        """Drive I/O and timers for at most ``timeout`` seconds without taking messages."""
        self._step(timeout)
        self._until(lambda: True, None)  # runs the user code that step queued

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (RFC 6455 section 7.1.2), waiting for the closing handshake."""
        self._submit(lambda now: self._core.close(code, reason, now=now))
        self._until(lambda: True if self._closed else None, None)
        self._release(flush=True)


def connect(
    url: str,
    *,
    ssl: SSLContext | None = None,
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
    client._submit(client._core.start)
    if wait_open:
        client._wait_open(open_timeout)
    return client


# --------------------------------------------------------------------------- server


class ServerWebSocket(_Channel, SyncSession):
    """One open server-side WebSocket, for a handler running in its own thread."""

    def __init__(
        self, server: Server, sock: socket.socket, address: Any, session: ServerSession
    ) -> None:
        self._handshaken = threading.Event()  # set once the handshake completed
        super().__init__(session, server._lock, opened=self._handshaken.set)
        self._sock, self.remote_address = sock, address
        self._ended = lambda error, now: session.receive_eof(now)

    def _act(self) -> bool:
        if self._session.should_close_transport:
            self._close_socket(flush=True)  # RFC 6455 section 7.1.1: the server closes TCP
        return self._dispatch_events()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (RFC 6455 section 7.1.2) and wait until the transport is closed."""
        self._submit(lambda now: self._start_close(code, reason))
        self._until(self._gone, None)

    def _may_read(self) -> bool:  # past a full inbox once closing: the close frame must come in
        return not self._reading_paused or not self._session.is_open

    def _gone(self) -> bool | None:
        return True if self._sock is None else None


class Server(SyncServer):
    """A running server: accept loop in a background thread, one thread per connection."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Callable[[ServerWebSocket], object],
        config: ServerConfig,
        ssl: SSLContext | None,
    ) -> None:
        super().__init__(config, clock=monotonic, secure=ssl is not None)
        self._lock = threading.RLock()  # guards the hub and every connection's core
        self._listener, self._handler, self._ssl, self.config = listener, handler, ssl, config
        self.host, self.port = listener.getsockname()[:2]
        self._conns: dict[ServerWebSocket, threading.Thread] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._accepter = threading.Thread(target=self._accept, name="zenws-accept", daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        with _Selector() as selector, self._listener, self._wake_r, self._wake_w:
            selector.register(self._listener, _READ)
            selector.register(self._wake_r, _READ)
            while all(key.fileobj is self._listener for key, _ in selector.select()):
                try:
                    sock, address = self._listener.accept()
                except BlockingIOError:  # the client left before we got to it
                    continue
                except OSError as exc:  # EMFILE and friends: let connections finish first
                    log.warning("zenws: accept failed: %s", exc)
                    sleep(0.1)
                    continue
                with contextlib.suppress(OSError):  # reset already: its first read will say so
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                if self._ssl is not None:  # server side; the handshake runs in the first reads
                    sock = self._ssl.wrap_socket(sock, True, do_handshake_on_connect=False)
                with self._lock:
                    ws = ServerWebSocket(self, sock, address, self.hub.session(monotonic()))
                    thread = threading.Thread(target=self._run, args=(ws,), daemon=True)
                    self._conns[ws] = thread
                thread.start()

    def _run(self, ws: ServerWebSocket) -> None:
        """One connection: the handshake (the core decides), ``handler(ws)``, close."""
        try:
            ws._until(lambda: ws._handshaken.is_set() or ws._gone(), None)
            if ws._handshaken.is_set():
                ws._run_handler(self._handler)
            ws.close()
        finally:
            with self._lock:
                del self._conns[ws]
                ws._release(flush=False)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, close every connection with 1001, drop what is left at the deadline."""
        with contextlib.suppress(OSError):  # closed by the accept thread: stopped already
            self._wake_w.send(b"\0")
        self._accepter.join()
        with self._lock:
            conns, threads = list(self._conns), list(self._conns.values())
            end = monotonic() + self._begin_shutdown(conns, timeout)
            for ws in conns:  # the close frames go out now, all at once
                ws._process(monotonic())
        for ws in conns:  # drive them from here too: a busy handler may not be reading
            if ws._until(ws._gone, end - monotonic()) is None:  # drop it without a handshake
                ws._submit(ws._lost)
        for thread in threads:
            thread.join(max(end - monotonic(), 0.0) + 1.0)

    def serve_forever(self) -> None:
        """Block until ``shutdown()`` is called (from another thread or a signal handler)."""
        self._accepter.join()


def serve(
    host: str,
    port: int,
    handler: Callable[[ServerWebSocket], object],
    *,
    ssl: SSLContext | None = None,
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
