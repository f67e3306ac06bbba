"""The asyncio server: one ``zenws_core.ServerSession`` per accepted ``asyncio.Protocol``.

The session answers HTTP routes, handshakes, pings and heartbeats; the shared
``SessionDriver`` keeps the inbox, pongs and close code.  The adapter moves bytes, keeps
one timer at the session's next deadline and runs the handler as one task per opened
connection.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any, cast

from zenws_core import ServerConfig

from ._asyncio_client import _Changes
from ._driver import ServerDriver, SessionDriver, encode_json, server_config

__all__ = ["Server", "ServerWebSocket", "serve"]


class ServerWebSocket(SessionDriver, _Changes, asyncio.Protocol):
    """One server-side connection; the handler receives it once the handshake completed."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server._loop
        session = server.hub.session(monotonic())
        super().__init__(
            session, clock=monotonic, wake=self._wake, opened=self._opened, reading=self._pause
        )
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._waiters = []

    # ------------------------------------------------------------------ handler API

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message; waits while the transport is full."""
        if not self._writable.is_set():
            await self._writable.wait()
        self._send_message(message)
        # sending moves no deadline and makes no event: just write the bytes
        data = self._session.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)

    async def send_text(self, text: str) -> None:
        await self.send(str(text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(encode_json(obj))

    async def ping(self) -> float:
        """Ping the client and return the round trip in seconds."""
        pong: asyncio.Future[float] = self._start_ping(self._loop.create_future())
        self._drive()
        return await pong

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2) and wait until it ends."""
        self._start_close(code, reason)
        self._drive()
        while not self.closed:
            await self._change()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.remote_address = transport.get_extra_info("peername")
        self._server._connections.add(self)
        self._drive()

    def data_received(self, data: bytes) -> None:
        self._session.receive_data(data, monotonic())
        self._drive()

    def eof_received(self) -> bool | None:
        self._session.receive_eof(monotonic())
        self._drive()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._session.receive_eof(monotonic())
        self._drive()
        if self._timer is not None:
            self._timer.cancel()
        self._server._connections.discard(self)
        self._writable.set()
        self._mark_closed()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ------------------------------------------------------------------ the driver

    def _drive(self) -> None:
        session = self._session
        data = session.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)
        self._dispatch_events()
        if session.should_close_transport and self._transport is not None:
            self._transport.close()
        deadline = session.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = (
                None
                if deadline is None
                else self._loop.call_later(max(0.0, deadline - monotonic()), self._tick)
            )

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self._session.handle_timer(monotonic())
        self._drive()

    def _pause(self, paused: bool) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            (transport.pause_reading if paused else transport.resume_reading)()

    def _opened(self) -> None:
        task = self._loop.create_task(self._run_handler())
        self._server._tasks.add(task)
        task.add_done_callback(self._server._tasks.discard)

    async def _run_handler(self) -> None:
        try:
            await self._server._handler(self)
        except Exception as exc:
            self._handler_done(exc)
        else:
            self._handler_done(None)
        self._drive()


class Server(ServerDriver):
    """A listening zenws server; ``shutdown()`` closes every connection with 1001."""

    def __init__(
        self,
        handler: Callable[[ServerWebSocket], Awaitable[None]],
        config: ServerConfig,
        ssl: _ssl.SSLContext | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        super().__init__(config, clock=monotonic, secure=ssl is not None)
        self._handler = handler
        self.ssl = ssl
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
        for ws in list(self._connections):
            ws._drive()
        pending = [self._loop.create_task(self._gone(ws)) for ws in self._connections]
        if pending or self._tasks:
            _, left = await asyncio.wait(pending + list(self._tasks), timeout=timeout)
            for ws in list(self._connections):
                if ws._transport is not None:
                    ws._transport.abort()
            for task in left:
                task.cancel()
            await asyncio.gather(*self._tasks, *left, return_exceptions=True)
        await listener.wait_closed()
        self._stopped.set()

    @staticmethod
    async def _gone(ws: ServerWebSocket) -> None:
        while ws._transport is not None:
            await ws._change()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


async def serve(
    host: str,
    port: int,
    handler: Callable[[ServerWebSocket], Awaitable[None]],
    *,
    ssl: _ssl.SSLContext | None = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> Server:
    """Listen on ``host:port`` (0 picks a port); ``options`` are ``ServerConfig`` fields."""
    server = Server(handler, server_config(config, options), ssl)
    server._listener = await server._loop.create_server(
        lambda: ServerWebSocket(server), host, port, ssl=ssl, reuse_address=True
    )
    server.host, server.port = host, int(server._listener.sockets[0].getsockname()[1])
    return server
