"""The asyncio server: one ``zenws_core.ServerSession`` per accepted ``asyncio.Protocol``.

The session answers HTTP routes, handshakes, pings and heartbeats; the adapter moves
bytes, keeps one timer at the session's next deadline and runs the application's
handler as one task per opened connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from zenws_core import (
    Closed,
    MessageReceived,
    Opened,
    PongReceived,
    RequestReceived,
    ServerConfig,
    ServerHub,
    ServerSession,
    ServerStatus,
)

from ._errors import ConnectionClosed

__all__ = ["Server", "ServerWebSocket", "serve"]

log = logging.getLogger("zenws.asyncio")

#: Messages buffered per connection before the transport stops reading.
INBOX_LIMIT = 64


class ServerWebSocket(asyncio.Protocol):
    """One server-side connection; the handler receives it once the handshake completed."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server._loop
        self._session: ServerSession = server.hub.session(self._loop.time())
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._inbox: deque[str | bytes] = deque()
        self._reading_paused = False
        self._changed = asyncio.Event()
        self._pings: dict[bytes, tuple[float, asyncio.Future[float]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.remote_address: Any = None

    # ------------------------------------------------------------------ handler API

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
        async with asyncio.timeout(timeout):
            while not self._inbox:
                if self.closed:
                    raise ConnectionClosed(self.close_code, self.close_reason)
                self._changed.clear()
                await self._changed.wait()
        message = self._inbox.popleft()
        if self._reading_paused and len(self._inbox) <= INBOX_LIMIT // 2:
            self._reading_paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
        return message

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: str | bytes) -> None:
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        if not self._writable.is_set():
            await self._writable.wait()  # backpressure: the transport is full
        self._session.send(message)
        self._drive()

    async def send_text(self, text: str) -> None:
        await self.send(str(text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(json.dumps(obj, separators=(",", ":")))

    async def ping(self) -> float:
        """Ping the client and return the round trip in seconds."""
        if not self._session.is_open:
            raise ConnectionClosed(self.close_code, self.close_reason)
        payload = self._session.ping(now=self._loop.time())
        future: asyncio.Future[float] = self._loop.create_future()
        self._pings[payload] = (self._loop.time(), future)
        self._drive()
        return await future

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2) and wait until it ends."""
        self._session.close(code, reason, now=self._loop.time())
        self._drive()
        while not self.closed:
            self._changed.clear()
            await self._changed.wait()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.remote_address = transport.get_extra_info("peername")
        self._server._connections.add(self)
        self._drive()

    def data_received(self, data: bytes) -> None:
        self._session.receive_data(data, self._loop.time())
        self._drive()

    def eof_received(self) -> bool | None:
        self._session.receive_eof(self._loop.time())
        self._drive()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._session.receive_eof(self._loop.time())
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
        for event in session.events():
            if isinstance(event, MessageReceived):
                self._inbox.append(event.data)
                if len(self._inbox) >= INBOX_LIMIT and self._transport is not None:
                    self._reading_paused = True
                    self._transport.pause_reading()
                self._changed.set()
            elif isinstance(event, Opened):
                self._task = self._loop.create_task(self._run_handler())
                self._server._tasks.add(self._task)
                self._task.add_done_callback(self._server._tasks.discard)
            elif isinstance(event, PongReceived):
                sent = self._pings.pop(event.payload, None)
                if sent is not None and not sent[1].done():
                    rtt = event.round_trip
                    sent[1].set_result(self._loop.time() - sent[0] if rtt is None else rtt)
            elif isinstance(event, Closed):
                self.close_code, self.close_reason = event.code, event.reason
                self._mark_closed()
        if session.should_close_transport and self._transport is not None:
            self._transport.close()
        deadline = session.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self._session.handle_timer(self._loop.time())
        self._drive()

    def _mark_closed(self) -> None:
        self.closed = True
        self._changed.set()
        for _, future in self._pings.values():
            if not future.done():
                future.set_exception(ConnectionClosed(self.close_code, self.close_reason))
        self._pings.clear()

    async def _run_handler(self) -> None:
        try:
            await self._server._handler(self)
        except Exception:
            log.exception("zenws handler failed; closing the connection with 1011")
            self._session.close(1011, "internal error", now=self._loop.time())
        else:
            self._session.close(1000, "", now=self._loop.time())
        self._drive()


class Server:
    """A listening zenws server; ``shutdown()`` closes every connection with 1001."""

    def __init__(
        self,
        handler: Callable[[ServerWebSocket], Awaitable[None]],
        config: ServerConfig,
        ssl: _ssl.SSLContext | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self.hub = ServerHub(config, now=self._loop.time())
        self.ssl = ssl
        self._connections: set[ServerWebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Server | None = None
        self._stopped = asyncio.Event()
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.ssl else 'ws'}://{host}:{self.port}/"

    def status(self) -> ServerStatus:
        return self.hub.status(self._loop.time())

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
        self.hub.shutting_down = True
        timeout = self.hub.config.shutdown_timeout if timeout is None else timeout
        now = self._loop.time()
        for ws in list(self._connections):
            ws._session.shutdown(now=now)
            ws._drive()
        pending = [self._stopped_for(ws) for ws in self._connections] + list(self._tasks)
        if pending:
            _, left = await asyncio.wait(pending, timeout=timeout)
            for ws in list(self._connections):
                if ws._transport is not None:
                    ws._transport.abort()
            for task in left:
                task.cancel()
            await asyncio.gather(*self._tasks, *left, return_exceptions=True)
        await listener.wait_closed()
        self._stopped.set()

    def _stopped_for(self, ws: ServerWebSocket) -> asyncio.Task[None]:
        async def gone() -> None:
            while ws._transport is not None:
                ws._changed.clear()
                await ws._changed.wait()

        return self._loop.create_task(gone())

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
    config = dataclasses.replace(config or ServerConfig(), **options)
    server = Server(handler, config, ssl)
    loop = server._loop
    server._listener = await loop.create_server(
        lambda: ServerWebSocket(server), host, port, ssl=ssl, reuse_address=True
    )
    sockname = server._listener.sockets[0].getsockname()
    server.host, server.port = host, int(sockname[1])
    return server
