"""The asyncio client: drives ``zenws_core.ReconnectingClient`` over ``asyncio.Protocol``.

The adapter moves bytes, keeps one ``loop.call_at`` timer armed at the core's next
deadline and calls user code; event dispatch, waiters and the inbox are the shared
``ClientDriver``'s, reconnects, heartbeats, queueing and timeouts the core's.  Works
unchanged under uvloop.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from time import monotonic
from typing import Any

from zenws_core import (
    ClientEvent,
    ClientState,
    CloseTransport,
    Envelope,
    OpenTransport,
    ReconnectingClient,
)

from ._common import ConnectTunnel, ProxyError, classify_os_error, client_ssl_context, proxy_for
from ._driver import ClientDriver, Handler, Opening, build_core, call_user, log
from ._errors import ConnectionClosed

__all__ = ["Client", "Connector", "connect"]

Connector = Opening
"""What ``connect`` returns: ``await`` it for a ``Client``, or ``async with`` it."""


class _Changes:
    """Tasks waiting for "something changed": one future per wait, all set by ``_wake``."""

    _loop: asyncio.AbstractEventLoop
    _waiters: list[asyncio.Future[None]]

    def _change(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        return waiter

    def _take(self) -> str | bytes | None:
        raise NotImplementedError

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message nothing else consumed; ``ConnectionClosed`` once closed for good."""
        if timeout is not None:
            async with asyncio.timeout(timeout):
                return await self.recv()
        while (message := self._take()) is None:
            await self._change()
        return message

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    def _wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class _Protocol(asyncio.Protocol):
    """Byte mover for one transport generation; also runs the HTTP CONNECT exchange."""

    def __init__(self, client: Client, generation: int) -> None:
        self.client = client
        self.generation = generation
        self.tunnel: ConnectTunnel | None = None
        self.tunnel_done: asyncio.Future[bytes] | None = None

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None and self.tunnel_done is not None:
            try:
                rest = self.tunnel.receive(data)
            except ProxyError as exc:
                self.tunnel = None
                self.tunnel_done.set_exception(exc)
                return
            if rest is not None:
                self.tunnel = None
                self.tunnel_done.set_result(rest)
            return
        self.client._input(self.generation, data)

    def eof_received(self) -> bool | None:
        self.client._input(self.generation, None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tunnel_done is not None and not self.tunnel_done.done():
            self.tunnel_done.set_exception(exc or ProxyError("proxy closed the connection"))
        self.client._lost(self.generation, exc)

    def pause_writing(self) -> None:
        self.client._writable.clear()

    def resume_writing(self) -> None:
        self.client._writable.set()


class Client(ClientDriver, _Changes):
    """A resilient WebSocket client on asyncio; see ``connect``."""

    def __init__(
        self, core: ReconnectingClient[Handler], ssl: _ssl.SSLContext | None, proxy: str | None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        super().__init__(
            core, clock=monotonic, wake=self._wake, reading=self._pause, run=self._call
        )
        self._ssl, self._proxy = ssl, proxy
        self._transport: asyncio.Transport | None = None
        self._generation = 0
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._driving = self._again = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._waiters = []
        self._backlog: deque[Awaitable[Any]] = deque()
        self._runner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ application API

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
        """Send a request envelope and wait for the reply with its id."""
        await self._ready()
        reply: asyncio.Future[Envelope] = self._loop.create_future()
        try:
            self._expect_reply(
                self._core.request(type, data, now=monotonic(), timeout=timeout), reply
            )
        finally:
            self._drive()
        return await reply

    async def ping(self) -> float:
        """Send a ping and return the round trip in seconds."""
        pong: asyncio.Future[float] = self._start_ping(self._loop.create_future())
        self._drive()
        return await pong

    async def reconnect(self) -> None:
        """Connect again now (after ``GaveUp``, or to cut a backoff wait short)."""
        self._core.reconnect(monotonic())
        self._drive()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnection) and wait until the transport is gone."""
        self._core.close(code, reason, now=monotonic())
        self._drive()
        while self._core.state is not ClientState.CLOSED:
            await self._change()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float | None = None
    ) -> ClientEvent:
        """The first lifecycle event, already seen or still to come, matching ``predicate``."""
        async with asyncio.timeout(timeout):
            event, seen = self._match(predicate, 0)
            while event is None:
                await self._change()
                event, seen = self._match(predicate, seen)
            return event  # type: ignore[no-any-return]

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport news

    def _input(self, generation: int, data: bytes | None) -> None:
        if generation != self._generation or self._transport is None:
            return
        if data is None:
            self._core.receive_eof(monotonic())
        else:
            self._core.receive_data(data, monotonic())
        self._drive()

    def _lost(self, generation: int, exc: Exception | None) -> None:
        if generation == self._generation and self._transport is not None:
            self._transport = None
            self._core.connection_lost(str(exc) if exc else None, monotonic())
            self._drive()

    async def _open(self, action: OpenTransport) -> None:
        loop, generation = self._loop, action.generation
        protocol = _Protocol(self, generation)
        context = None if action.tls is None else self._ssl or client_ssl_context(action.tls)
        transport: asyncio.Transport | None = None
        rest = b""
        try:
            proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
            if proxy is None:
                hostname = action.server_hostname if context else None
                transport, _ = await loop.create_connection(
                    lambda: protocol,
                    action.host,
                    action.port,
                    ssl=context,
                    server_hostname=hostname,
                )
            else:
                protocol.tunnel = ConnectTunnel(proxy, action.host, action.port)
                protocol.tunnel_done = loop.create_future()
                transport, _ = await loop.create_connection(
                    lambda: protocol, proxy.host, proxy.port
                )
                transport.write(protocol.tunnel.request())
                rest = await protocol.tunnel_done
                if context is not None:
                    hostname = action.server_hostname
                    tls = await loop.start_tls(
                        transport, protocol, context, server_hostname=hostname
                    )
                    assert tls is not None
                    transport = tls
        except BaseException as exc:  # any failure to open is news for the core
            if transport is not None:
                transport.abort()
            if isinstance(exc, asyncio.CancelledError):
                raise
            if generation == self._generation:
                message = str(exc) or type(exc).__name__
                self._core.connection_failed(message, monotonic(), **classify_os_error(exc))
                self._drive()
            return
        finally:
            self._opening.pop(generation, None)
        self._transport = transport
        if self._reading_paused:  # the inbox is still full from the last connection
            transport.pause_reading()
        self._core.connection_made(monotonic())
        if rest:
            self._core.receive_data(rest, monotonic())
        self._drive()

    # ------------------------------------------------------------------ the driver

    def _drive(self) -> None:
        """Drain the core after any input: bytes, actions, events; re-arm the timer."""
        if self._driving:
            self._again = True
            return
        self._driving = True
        try:
            self._again = True
            while self._again:
                self._again = False
                data = self._core.data_to_send()
                if data and self._transport is not None:
                    self._transport.write(data)
                for action in self._core.actions():
                    self._act(action)
                self._dispatch_events()
            deadline = self._core.next_deadline()
            if deadline != self._timer_at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_at = deadline
                self._timer = (
                    None
                    if deadline is None
                    else self._loop.call_later(max(0.0, deadline - monotonic()), self._tick)
                )
        finally:
            self._driving = False

    def _act(self, action: OpenTransport | CloseTransport) -> None:
        if isinstance(action, OpenTransport):
            self._generation = action.generation
            self._writable.set()
            self._opening[action.generation] = self._loop.create_task(self._open(action))
            return
        task = self._opening.pop(action.generation, None)
        if task is not None:
            task.cancel()
        if action.generation == self._generation and self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()

    def _tick(self) -> None:
        self._timer = self._timer_at = None
        self._core.handle_timer(monotonic())
        self._drive()

    def _pause(self, paused: bool) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            (transport.pause_reading if paused else transport.resume_reading)()

    async def _ready(self) -> None:
        # backpressure: the transport asked us to stop writing (pause_writing)
        if not self._writable.is_set() or self._core.writing_paused:
            await self._writable.wait()

    async def _submit(self, method: Callable[..., Any], *args: Any) -> None:
        await self._ready()
        try:
            method(*args, now=monotonic())
        finally:  # QueueFull and ClientClosedError come with a MessageDropped event
            self._drive()

    def _call(self, handler: Handler, argument: Any) -> None:
        """Call user code; an async handler is awaited in order by one runner task."""
        result = call_user(handler, argument)
        if result is not None:
            self._backlog.append(result)
            if self._runner is None or self._runner.done():
                self._runner = self._loop.create_task(self._run_backlog())

    async def _run_backlog(self) -> None:
        while self._backlog:
            try:
                await self._backlog.popleft()
            except Exception:
                log.exception("zenws async handler failed")


def connect(
    url: str,
    *,
    ssl: _ssl.SSLContext | None = None,
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
        opened = client._open_waiter(client._loop.create_future()) if wait_open else None
        core.start(monotonic())
        client._drive()
        if opened is not None:
            try:
                async with asyncio.timeout(open_timeout):
                    await opened
            except TimeoutError:
                await client.close()
                raise client._open_timed_out(open_timeout) from None
        return client

    return Opening(start)


def _arm(
    loop: asyncio.AbstractEventLoop, deadline: float, tick: Callable[[], None]
) -> asyncio.TimerHandle:
    """A timer at ``deadline`` on the ``time.monotonic`` scale the core runs on.

    ``loop.time()`` is not used as the core's clock: under uvloop it has millisecond
    resolution, too coarse for round-trip figures.
    """
    return loop.call_later(max(0.0, deadline - monotonic()), tick)
