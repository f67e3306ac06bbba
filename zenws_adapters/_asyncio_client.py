"""The asyncio client: drives ``zenws_core.ReconnectingClient`` over ``asyncio.Protocol``.

The adapter moves bytes, keeps one ``loop.call_at`` timer armed at the core's next
deadline and calls user code; reconnects, heartbeats, queueing and timeouts happen in
the core.  Works unchanged under uvloop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

from zenws_core import (
    ClientConfig,
    ClientEvent,
    ClientState,
    ClientStats,
    CloseTransport,
    Connected,
    Envelope,
    GaveUp,
    MessageDropped,
    OpenTransport,
    PongReceived,
    ReconnectingClient,
    RequestTimedOut,
    ResponseReceived,
    Routed,
)

from ._common import ConnectTunnel, ProxyError, build_client_config, classify_os_error, proxy_for
from ._errors import ConnectError, ConnectionClosed, RequestTimeout

__all__ = ["Client", "Connector", "connect"]

log = logging.getLogger("zenws.asyncio")

Handler = Callable[[Any], Any]
#: Incoming messages buffered for ``recv``; beyond this the transport stops reading.
INBOX_LIMIT = 64


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


class Client:
    """A resilient WebSocket client on asyncio; see ``connect``."""

    def __init__(
        self, core: ReconnectingClient[Handler], ssl: _ssl.SSLContext | None, proxy: str | None
    ) -> None:
        self._core = core
        self._loop = asyncio.get_running_loop()
        self._ssl = ssl
        self._proxy = proxy
        self._transport: asyncio.Transport | None = None
        self._generation = 0
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._driving = False
        self._again = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._inbox: deque[str | bytes] = deque()
        self._reading_paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._requests: dict[str, asyncio.Future[Envelope]] = {}
        self._pings: dict[bytes, tuple[float, asyncio.Future[float]]] = {}
        self._callbacks: list[Handler] = []
        self._backlog: deque[Awaitable[Any]] = deque()
        self._runner: asyncio.Task[None] | None = None
        self.events_seen: list[ClientEvent] = []
        self.subprotocol: str | None = None

    # ------------------------------------------------------------------ application API

    @property
    def state(self) -> ClientState:
        return self._core.state

    def stats(self) -> ClientStats:
        return self._core.stats(self._loop.time())

    def on(self, pattern: str, handler: Handler) -> None:
        """Route envelopes whose type matches ``pattern`` to ``handler`` (sync or async)."""
        self._core.router.on(pattern, handler)

    def on_raw(self, handler: Handler) -> None:
        """Receive messages that are not JSON envelopes (instead of ``recv``)."""
        self._core.router.on_raw(handler)

    def on_event(self, callback: Handler) -> None:
        """Call ``callback(event)`` for every lifecycle event (sync or async)."""
        self._callbacks.append(callback)

    async def _ready(self) -> None:
        # backpressure: the transport asked us to stop writing (pause_writing)
        if not self._writable.is_set() or self._core.writing_paused:
            await self._writable.wait()

    async def send_text(self, text: str) -> None:
        await self._ready()
        self._core.send_text(text, now=self._loop.time())
        self._drive()

    async def send_bytes(self, data: bytes) -> None:
        await self._ready()
        self._core.send_bytes(data, now=self._loop.time())
        self._drive()

    async def send_json(self, obj: Any) -> None:
        await self._ready()
        self._core.send_json(obj, now=self._loop.time())
        self._drive()

    async def send(self, type: str, data: Any = None) -> None:
        """Send the envelope ``{"type": type, "data": data}`` (queued while disconnected)."""
        await self._ready()
        self._core.send(type, data, now=self._loop.time())
        self._drive()

    async def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send a request envelope and wait for the reply with its id."""
        await self._ready()
        request_id = self._core.request(type, data, now=self._loop.time(), timeout=timeout)
        future: asyncio.Future[Envelope] = self._loop.create_future()
        self._requests[request_id] = future
        self._drive()
        return await future

    async def ping(self) -> float:
        """Send a ping and return the round trip in seconds."""
        payload = self._core.ping(now=self._loop.time())
        if payload is None:
            raise ConnectionClosed(None, "not open")
        future: asyncio.Future[float] = self._loop.create_future()
        self._pings[payload] = (self._loop.time(), future)
        self._drive()
        return await future

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message no handler or request consumed; ``ConnectionClosed`` at the end."""
        async with asyncio.timeout(timeout):
            while not self._inbox:
                if self._core.state is ClientState.CLOSED:
                    raise ConnectionClosed(None, "client closed")
                waiter: asyncio.Future[None] = self._loop.create_future()
                self._waiters.append(waiter)
                await waiter
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

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close for good (no reconnection) and wait until the transport is gone."""
        self._core.close(code, reason, now=self._loop.time())
        self._drive()
        while self._core.state is not ClientState.CLOSED:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float | None = None
    ) -> ClientEvent:
        """The first lifecycle event, already seen or still to come, matching ``predicate``."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events_seen[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events_seen)
                waiter: asyncio.Future[None] = self._loop.create_future()
                self._waiters.append(waiter)
                await waiter

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport news

    def _input(self, generation: int, data: bytes | None) -> None:
        if generation != self._generation or self._transport is None:
            return
        if data is None:
            self._core.receive_eof(self._loop.time())
        else:
            self._core.receive_data(data, self._loop.time())
        self._drive()

    def _lost(self, generation: int, exc: Exception | None) -> None:
        if generation == self._generation and self._transport is not None:
            self._transport = None
            self._core.connection_lost(str(exc) if exc else None, self._loop.time())
            self._drive()

    async def _open(self, action: OpenTransport) -> None:
        loop, generation = self._loop, action.generation
        protocol = _Protocol(self, generation)
        context = None
        if action.tls is not None:
            context = self._ssl or _client_ssl(action)
        transport: asyncio.Transport | None = None
        try:
            proxy = proxy_for(action.host, action.tls is not None, proxy=self._proxy)
            if proxy is None:
                transport, _ = await loop.create_connection(
                    lambda: protocol,
                    action.host,
                    action.port,
                    ssl=context,
                    server_hostname=action.server_hostname if context else None,
                )
                rest = b""
            else:
                protocol.tunnel = ConnectTunnel(proxy, action.host, action.port)
                protocol.tunnel_done = loop.create_future()
                transport, _ = await loop.create_connection(
                    lambda: protocol, proxy.host, proxy.port
                )
                transport.write(protocol.tunnel.request())
                rest = await protocol.tunnel_done
                if context is not None:
                    tls = await loop.start_tls(
                        transport, protocol, context, server_hostname=action.server_hostname
                    )
                    assert tls is not None
                    transport = tls
        except asyncio.CancelledError:
            if transport is not None:
                transport.abort()
            raise
        except Exception as exc:  # any failure to open is news for the core
            if transport is not None:
                transport.abort()
            if generation == self._generation:
                message = str(exc) or type(exc).__name__
                self._core.connection_failed(message, loop.time(), **classify_os_error(exc))
                self._drive()
            return
        finally:
            self._opening.pop(generation, None)
        assert transport is not None
        self._transport = transport
        self._core.connection_made(loop.time())
        if rest:
            self._core.receive_data(rest, loop.time())
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
                for event in self._core.events():
                    self._dispatch(event)
            self._rearm()
            if self._requests:
                for request_id, future in list(self._requests.items()):
                    if request_id not in self._core.requests and not future.done():
                        future.set_exception(ConnectionClosed(None, "request cancelled"))
                        del self._requests[request_id]
            if self._core.state is ClientState.CLOSED:
                for _, pong in self._pings.values():
                    if not pong.done():
                        pong.set_exception(ConnectionClosed(None, "client closed"))
                self._pings.clear()
                self._wake()
        finally:
            self._driving = False

    def _act(self, action: OpenTransport | CloseTransport) -> None:
        if isinstance(action, OpenTransport):
            self._generation = action.generation
            self._writable.set()
            self._reading_paused = False
            self._opening[action.generation] = self._loop.create_task(self._open(action))
            return
        task = self._opening.pop(action.generation, None)
        if task is not None:
            task.cancel()
        if action.generation == self._generation and self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()

    def _rearm(self) -> None:
        deadline = self._core.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._core.handle_timer(self._loop.time())
        self._drive()

    def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, Routed):
            if event.handlers:
                for handler in event.handlers:
                    self._call(
                        handler, event.envelope if event.envelope is not None else event.data
                    )
                return  # a message with handlers is theirs, not recv()'s
            self._inbox.append(event.data)
            if len(self._inbox) >= INBOX_LIMIT and self._transport is not None:
                self._reading_paused = True
                self._transport.pause_reading()
            self._wake()
            return
        self.events_seen.append(event)
        if isinstance(event, ResponseReceived):
            future = self._requests.pop(event.request_id, None)
            if future is not None and not future.done():
                future.set_result(event.envelope)
        elif isinstance(event, RequestTimedOut):
            timed_out = self._requests.pop(event.request_id, None)
            if timed_out is not None and not timed_out.done():
                timed_out.set_exception(RequestTimeout(event.request_id, event.type, event.timeout))
        elif isinstance(event, MessageDropped) and event.request_id is not None:
            dropped = self._requests.pop(event.request_id, None)
            if dropped is not None and not dropped.done():
                dropped.set_exception(ConnectionClosed(None, event.detail))
        elif isinstance(event, PongReceived):
            sent = self._pings.pop(event.payload, None)
            if sent is not None and not sent[1].done():
                rtt = event.round_trip
                sent[1].set_result(self._loop.time() - sent[0] if rtt is None else rtt)
        elif isinstance(event, Connected):
            self.subprotocol = event.subprotocol
        for callback in self._callbacks:
            self._call(callback, event)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _call(self, handler: Handler, argument: Any) -> None:
        """Call user code; an async handler is awaited in order by one runner task."""
        try:
            result = handler(argument)
        except Exception:
            log.exception("zenws handler %r failed", handler)
            return
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            self._backlog.append(result)
            if self._runner is None or self._runner.done():
                self._runner = self._loop.create_task(self._run_backlog())

    async def _run_backlog(self) -> None:
        while self._backlog:
            try:
                await self._backlog.popleft()
            except Exception:
                log.exception("zenws async handler failed")

    async def _wait_open(self, timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in self.events_seen:
                        if isinstance(event, Connected):
                            return
                        if isinstance(event, GaveUp):
                            raise ConnectError(f"could not connect: {event.reason}", event)
                    if self._core.state is ClientState.CLOSED:
                        raise ConnectError("client closed before it opened")
                    waiter: asyncio.Future[None] = self._loop.create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            await self.close()
            raise ConnectError(f"not open within {timeout}s") from None


def _client_ssl(action: OpenTransport) -> _ssl.SSLContext:
    from ._common import client_ssl_context

    assert action.tls is not None
    return client_ssl_context(action.tls)


class Connector:
    """What ``connect`` returns: ``await`` it for a ``Client``, or ``async with`` it."""

    def __init__(self, start: Callable[[], Awaitable[Client]]) -> None:
        self._start = start
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return self._start().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._start()
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    url: str,
    *,
    ssl: _ssl.SSLContext | None = None,
    proxy: str | None = None,
    wait_open: bool = True,
    open_timeout: float | None = None,
    rng: Any = None,
    delays: Any = None,
    mask_source: Any = None,
    classifier: Any = None,
    id_factory: Any = None,
    **options: Any,
) -> Connector:
    """Start a client for ``url``; ``options`` are ``ClientConfig`` fields (or ``config=``).

    With ``wait_open`` the first connection must open (else ``ConnectError``).
    """
    config: ClientConfig = build_client_config(url, options)
    extra: dict[str, Any] = {"rng": rng, "delays": delays, "mask_source": mask_source}
    extra.update(classifier=classifier, id_factory=id_factory)
    kwargs = {name: value for name, value in extra.items() if value is not None}

    async def start() -> Client:
        client = Client(ReconnectingClient(config, **kwargs), ssl, proxy)
        client._core.start(client._loop.time())
        client._drive()
        if wait_open:
            await client._wait_open(open_timeout)
        return client

    return Connector(start)
