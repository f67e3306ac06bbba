"""Echo servers and benchmark clients for every implementation, each runnable in a subprocess.

Every implementation offers an echo server (binary messages echoed unchanged) and a client
with one small awaitable interface (``BenchConnection``), so the workloads in
``workloads.py`` run unchanged against any of them.  ``IMPLEMENTATIONS`` is the registry:
a zenws adapter joins the benchmark by adding one ``Implementation`` entry, which names the
runtime its server and client run on (``runtimes.py``: the run's asyncio loop, or its own
``trio``, ``curio`` or ``threads``).

Subprocess entry points (all listen on / connect to 127.0.0.1 only)::

    python benchmarks/peers.py server NAME [--loop uvloop|asyncio]
        prints SETTINGS <json>, then READY <port>; serves until killed
    python benchmarks/peers.py client NAME --port P --plan JSON [--loop ...]
        runs the workloads in the plan, printing RESULT <json> for each
    python benchmarks/peers.py hold NAME --port P --connections N [--loop ...]
        opens one connection, prints WARM, waits for a stdin line; opens N more,
        prints HELD N, waits for a stdin line; closes them all (server RSS is read in between)

``--loop`` applies to implementations on asyncio; the others ignore it and run their own
runtime (``trio.run``, ``curio.run``, plain threads).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from runtimes import LOOPS, Runtime, runtime_named

#: Largest message any implementation accepts in these benchmarks (1 MiB payloads + margin).
MAX_MESSAGE = 4 * 1024 * 1024
HOST = "127.0.0.1"


class BenchConnection(Protocol):
    """One client connection as the workloads see it: binary messages in and out."""

    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes | bytearray: ...

    async def close(self) -> None: ...


class ClientKit(Protocol):
    """Per-process client state (aiohttp needs a session); opens connections."""

    async def connect(self, host: str, port: int) -> BenchConnection: ...

    async def aclose(self) -> None: ...


ASYNCIO = "asyncio"
"""``Implementation.runtime`` of implementations that run on the run's asyncio loop(s)."""


@dataclass(frozen=True)
class Implementation:
    """A benchmarked WebSocket implementation: an echo server and/or a client.

    ``serve(host)`` starts an echo server on an ephemeral port and returns the port;
    ``client()`` makes a ``ClientKit``.  Both run on ``runtime``: ``"asyncio"`` means the
    run's ``--loop`` (uvloop or the standard loop, measured once per loop), else
    ``"trio"``, ``"curio"`` or ``"threads"`` (``runtimes.py``).  ``settings`` are printed
    with the results so runs are comparable (compression, limits, keep-alive pings);
    ``live_settings`` adds what is only known in the measured process (e.g. zenws masking).
    """

    name: str
    description: str
    serve: Callable[[str], Awaitable[int]] | None
    client: Callable[[], ClientKit] | None
    settings: dict[str, Any] = field(default_factory=dict)
    runtime: str = ASYNCIO
    live_settings: Callable[[], dict[str, Any]] | None = None

    @property
    def on_asyncio(self) -> bool:
        """Whether the run's ``--loop`` choice applies (and it is measured once per loop)."""
        return self.runtime == ASYNCIO

    def runtime_name(self, loop: str) -> str:
        """The runtime its subprocesses use when the run's asyncio loop is ``loop``."""
        return loop if self.on_asyncio else self.runtime

    def describe(self, loop: str) -> dict[str, Any]:
        """The settings printed for a measurement (``loop`` is the runtime actually used)."""
        live = self.live_settings() if self.live_settings is not None else {}
        return (
            {"implementation": self.name, "runtime": self.runtime_name(loop)} | self.settings | live
        )


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


class Inbox:
    """A minimal single-consumer message queue for callback-style clients (picows, wsproto)."""

    __slots__ = ("_error", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[bytes | bytearray] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def put(self, item: bytes | bytearray) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> bytes | bytearray:
        while not self._items:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        return self._items.popleft()


class WriteGate:
    """Tracks an asyncio transport's pause/resume_writing so senders can wait (backpressure)."""

    __slots__ = ("_resumed",)

    def __init__(self) -> None:
        self._resumed: asyncio.Future[None] | None = None

    def pause(self) -> None:
        if self._resumed is None:
            self._resumed = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        if self._resumed is not None:
            if not self._resumed.done():
                self._resumed.set_result(None)
            self._resumed = None

    async def wait(self) -> None:
        if self._resumed is not None:
            await self._resumed


class _SimpleKit:
    """A ``ClientKit`` for implementations without per-process state."""

    def __init__(self, connect: Callable[[str, int], Awaitable[BenchConnection]]) -> None:
        self._connect = connect

    async def connect(self, host: str, port: int) -> BenchConnection:
        return await self._connect(host, port)

    async def aclose(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# websockets (asyncio API)
# ---------------------------------------------------------------------------------------------

WEBSOCKETS_SETTINGS = {
    "compression": None,
    "max_size": MAX_MESSAGE,
    "ping_interval": None,
    "api": "websockets.asyncio",
}


async def serve_websockets(host: str) -> int:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(echo, host, 0, compression=None, max_size=MAX_MESSAGE, ping_interval=None)
    port: int = next(iter(server.sockets)).getsockname()[1]
    return port


class _WebsocketsConnection:
    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        await self._ws.send(data)

    async def recv(self) -> bytes:
        message = await self._ws.recv()
        assert isinstance(message, bytes)
        return message

    async def close(self) -> None:
        await self._ws.close()


async def connect_websockets(host: str, port: int) -> BenchConnection:
    from websockets.asyncio.client import connect

    ws = await connect(
        f"ws://{host}:{port}/", compression=None, max_size=MAX_MESSAGE, ping_interval=None
    )
    return _WebsocketsConnection(ws)


# ---------------------------------------------------------------------------------------------
# aiohttp
# ---------------------------------------------------------------------------------------------

AIOHTTP_SETTINGS = {
    "compress": 0,
    "max_msg_size": MAX_MESSAGE,
    "heartbeat": None,
    "autoping": True,
    "access_log": None,
}


async def serve_aiohttp(host: str) -> int:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE, heartbeat=None)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port: int = runner.addresses[0][1]
    return port


class _AiohttpConnection:
    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def recv(self) -> bytes:
        from aiohttp import WSMsgType

        msg = await self._ws.receive()
        if msg.type is not WSMsgType.BINARY:
            raise ConnectionError(f"aiohttp client received {msg.type!r}")
        data: bytes = msg.data
        return data

    async def close(self) -> None:
        await self._ws.close()


class _AiohttpKit:
    def __init__(self) -> None:
        self._session: Any = None

    async def connect(self, host: str, port: int) -> BenchConnection:
        import aiohttp

        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        ws = await self._session.ws_connect(
            f"http://{host}:{port}/", compress=0, max_msg_size=MAX_MESSAGE, heartbeat=None
        )
        return _AiohttpConnection(ws)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


# ---------------------------------------------------------------------------------------------
# picows
# ---------------------------------------------------------------------------------------------

PICOWS_SETTINGS = {
    "compression": "unsupported",
    "max_frame_size": MAX_MESSAGE,
    "enable_auto_ping": False,
    "enable_auto_pong": True,
}


async def serve_picows(host: str) -> int:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    data_types = (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION)

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type in data_types:
                # Echo frame by frame: fragmented messages come back fragmented the same way.
                transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    def factory(request: WSUpgradeRequest) -> WSListener:
        return Echo()

    server = await ws_create_server(
        factory, host, 0, max_frame_size=MAX_MESSAGE, enable_auto_ping=False
    )
    port: int = server.sockets[0].getsockname()[1]
    return port


async def connect_picows(host: str, port: int) -> BenchConnection:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Client(WSListener):
        def __init__(self) -> None:
            self.inbox = Inbox()
            self.gate = WriteGate()
            self.parts: list[bytes] = []

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.BINARY or kind == WSMsgType.CONTINUATION:
                if frame.fin and not self.parts:
                    self.inbox.put(frame.get_payload_as_bytes())
                else:
                    self.parts.append(frame.get_payload_as_bytes())
                    if frame.fin:
                        self.inbox.put(b"".join(self.parts))
                        self.parts.clear()
            elif kind == WSMsgType.CLOSE:
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self.inbox.fail(ConnectionError("picows client disconnected"))

        def pause_writing(self) -> None:
            self.gate.pause()

        def resume_writing(self) -> None:
            self.gate.resume()

    class Connection:
        def __init__(self, transport: WSTransport, listener: Client) -> None:
            self._transport = transport
            self._listener = listener

        async def send(self, data: bytes) -> None:
            await self._listener.gate.wait()
            self._transport.send(WSMsgType.BINARY, data)

        async def recv(self) -> bytes | bytearray:
            return await self._listener.inbox.get()

        async def close(self) -> None:
            self._transport.send_close()
            await self._transport.wait_disconnected()

    transport, listener = await ws_connect(
        Client, f"ws://{host}:{port}/", max_frame_size=MAX_MESSAGE, enable_auto_ping=False
    )
    if not isinstance(listener, Client):
        raise ConnectionError("picows handshake did not complete")
    return Connection(transport, listener)


# ---------------------------------------------------------------------------------------------
# bare wsproto on asyncio.Protocol
# ---------------------------------------------------------------------------------------------

WSPROTO_SETTINGS = {
    "extensions": [],
    "max_message": "unlimited (wsproto has no limit)",
    "pings": "answered, never sent",
}


class _WsprotoServerProtocol(asyncio.Protocol):
    """Echo server: one wsproto connection driven from an asyncio.Protocol."""

    def __init__(self) -> None:
        from wsproto import ConnectionType, WSConnection

        self._ws = WSConnection(ConnectionType.SERVER)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence a cast.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        from wsproto.events import (
            AcceptConnection,
            BytesMessage,
            CloseConnection,
            Message,
            Ping,
            Request,
            TextMessage,
        )
        from wsproto.utilities import LocalProtocolError, RemoteProtocolError

        ws = self._ws
        transport = self._transport
        assert transport is not None
        try:
            ws.receive_data(data)
        except RemoteProtocolError:
            transport.close()
            return
        out: list[bytes] = []
        for event in ws.events():
            if isinstance(event, BytesMessage | TextMessage):
                echo: Message[Any] = Message(event.data, message_finished=event.message_finished)
                out.append(ws.send(echo))
            elif isinstance(event, Ping):
                out.append(ws.send(event.response()))
            elif isinstance(event, Request):
                out.append(ws.send(AcceptConnection()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(LocalProtocolError):
                    out.append(ws.send(event.response()))
                transport.write(b"".join(out))
                transport.close()
                return
        if out:
            transport.write(b"".join(out))

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()


async def serve_wsproto(host: str) -> int:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_WsprotoServerProtocol, host, 0)
    port: int = server.sockets[0].getsockname()[1]
    return port


class _WsprotoClientProtocol(asyncio.Protocol):
    def __init__(self, host: str) -> None:
        from wsproto import ConnectionType, WSConnection

        self._ws = WSConnection(ConnectionType.CLIENT)
        self._host = host
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox = Inbox()
        self.gate = WriteGate()
        self._parts: list[bytes | bytearray] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from wsproto.events import Request

        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._ws.send(Request(host=self._host, target="/")))

    def data_received(self, data: bytes) -> None:
        from wsproto.events import (
            AcceptConnection,
            BytesMessage,
            CloseConnection,
            Ping,
            RejectConnection,
        )

        ws = self._ws
        transport = self.transport
        assert transport is not None
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, BytesMessage):
                if event.message_finished and not self._parts:
                    self.inbox.put(event.data)
                else:
                    self._parts.append(event.data)
                    if event.message_finished:
                        self.inbox.put(b"".join(self._parts))
                        self._parts.clear()
            elif isinstance(event, AcceptConnection):
                self.opened.set_result(None)
            elif isinstance(event, Ping):
                transport.write(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                transport.close()
            elif isinstance(event, RejectConnection):
                self.opened.set_exception(ConnectionError("wsproto handshake rejected"))
                transport.close()

    async def send(self, data: bytes) -> None:
        from wsproto.events import Message

        await self.gate.wait()
        assert self.transport is not None
        self.transport.write(self._ws.send(Message(data=data)))

    async def recv(self) -> bytes | bytearray:
        return await self.inbox.get()

    async def close(self) -> None:
        from wsproto.events import CloseConnection

        assert self.transport is not None
        self.transport.write(self._ws.send(CloseConnection(code=1000)))
        await self.closed

    def pause_writing(self) -> None:
        self.gate.pause()

    def resume_writing(self) -> None:
        self.gate.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError("wsproto client connection lost")
        self.inbox.fail(error)
        if not self.opened.done():
            self.opened.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)


async def connect_wsproto(host: str, port: int) -> BenchConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: _WsprotoClientProtocol(f"{host}:{port}"), host, port
    )
    await protocol.opened
    return protocol


# ---------------------------------------------------------------------------------------------
# zenws: every adapter, with the same settings (asyncio on the run's loop; anyio on Trio;
# curio; blocking sockets on threads)
# ---------------------------------------------------------------------------------------------


ZENWS_SETTINGS = {
    "compression": None,
    "max_message_size": MAX_MESSAGE,
    "fragment_size": None,
    "heartbeat": "off (interval=None)",
    "pings": "answered, never sent",
    "masking": "C (zenws_core._speedups) when built, else pure Python",
}


def zenws_masking() -> dict[str, Any]:
    """The masking implementation this process actually uses."""
    from zenws_core._mask import using_speedups

    return {"masking": "C (zenws_core._speedups)" if using_speedups() else "pure Python"}


def _zenws_settings(adapter: str) -> dict[str, Any]:
    return {"adapter": adapter, **ZENWS_SETTINGS}


def _zenws_connection_config() -> Any:
    from zenws_core import ConnectionConfig

    return ConnectionConfig(max_message_size=MAX_MESSAGE, fragment_size=None)


def _zenws_client_options(port: int, host: str) -> tuple[str, dict[str, Any]]:
    """URL and ``connect`` options shared by every zenws client (no heartbeat pings)."""
    from zenws_core import HeartbeatConfig

    options = {
        "connection": _zenws_connection_config(),
        "heartbeat": HeartbeatConfig(interval=None),
    }
    return f"ws://{host}:{port}/", options


#: Servers started in this process (kept referenced for the life of the subprocess).
_ZENWS_SERVERS: list[Any] = []


class _ZenwsConnection:
    """A zenws async client (asyncio, anyio or curio adapter) as a ``BenchConnection``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def send(self, data: bytes) -> None:
        await self._client.send_bytes(data)

    async def recv(self) -> bytes:
        message = await self._client.recv()
        if not isinstance(message, bytes):
            raise ConnectionError(f"zenws client received {type(message).__name__}")
        return message

    async def close(self) -> None:
        await self._client.close()


async def _zenws_echo(ws: Any) -> None:
    """The echo handler of every async zenws server (``async for`` then ``await send``)."""
    async for message in ws:
        await ws.send(message)


async def serve_zenws(host: str) -> int:
    from zenws_adapters.asyncio import serve

    server = await serve(host, 0, _zenws_echo, connection=_zenws_connection_config())
    _ZENWS_SERVERS.append(server)
    return int(server.port)


async def connect_zenws(host: str, port: int) -> BenchConnection:
    from zenws_adapters.asyncio import connect

    url, options = _zenws_client_options(port, host)
    return _ZenwsConnection(await connect(url, **options))


async def serve_zenws_anyio(host: str) -> int:
    from zenws_adapters.anyio import serve

    # ``await serve(...)`` runs the accept loop as a Trio system task until the process ends.
    server = await serve(host, 0, _zenws_echo, connection=_zenws_connection_config())
    _ZENWS_SERVERS.append(server)
    return int(server.port)


async def connect_zenws_anyio(host: str, port: int) -> BenchConnection:
    from zenws_adapters.anyio import connect

    url, options = _zenws_client_options(port, host)
    return _ZenwsConnection(await connect(url, **options))


async def serve_zenws_curio(host: str) -> int:
    from zenws_adapters.curio import serve

    server = await serve(host, 0, _zenws_echo, connection=_zenws_connection_config())
    _ZENWS_SERVERS.append(server)
    return int(server.port)


async def connect_zenws_curio(host: str, port: int) -> BenchConnection:
    from zenws_adapters.curio import connect

    url, options = _zenws_client_options(port, host)
    return _ZenwsConnection(await connect(url, **options))


def _zenws_sync_echo(ws: Any) -> None:
    """The echo handler of the blocking server: one thread per connection."""
    for message in ws:
        ws.send(message)


async def serve_zenws_sync(host: str) -> int:
    # Runs on the ``threads`` runtime: this coroutine never suspends, the server's accept
    # loop and its connections run on their own threads.
    from zenws_adapters.sync import serve

    server = serve(host, 0, _zenws_sync_echo, connection=_zenws_connection_config())
    _ZENWS_SERVERS.append(server)
    return int(server.port)


class _ZenwsSyncConnection:
    """A blocking zenws client as a ``BenchConnection``: its methods block, never suspend."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def send(self, data: bytes) -> None:
        self._client.send_bytes(data)

    async def recv(self) -> bytes:
        message = self._client.recv()
        if not isinstance(message, bytes):
            raise ConnectionError(f"zenws client received {type(message).__name__}")
        return message

    async def close(self) -> None:
        self._client.close()


async def connect_zenws_sync(host: str, port: int) -> BenchConnection:
    from zenws_adapters.sync import connect

    url, options = _zenws_client_options(port, host)
    return _ZenwsSyncConnection(connect(url, **options))


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

IMPLEMENTATIONS: dict[str, Implementation] = {
    impl.name: impl
    for impl in (
        Implementation(
            "websockets",
            "websockets asyncio API (reference for ratios)",
            serve_websockets,
            lambda: _SimpleKit(connect_websockets),
            WEBSOCKETS_SETTINGS,
        ),
        Implementation(
            "picows",
            "picows (Cython, callback API; client wrapped in an awaitable inbox)",
            serve_picows,
            lambda: _SimpleKit(connect_picows),
            PICOWS_SETTINGS,
        ),
        Implementation(
            "aiohttp",
            "aiohttp web server and ClientSession.ws_connect",
            serve_aiohttp,
            _AiohttpKit,
            AIOHTTP_SETTINGS,
        ),
        Implementation(
            "wsproto",
            "bare wsproto WSConnection on asyncio.Protocol",
            serve_wsproto,
            lambda: _SimpleKit(connect_wsproto),
            WSPROTO_SETTINGS,
        ),
        Implementation(
            "zenws",
            "zenws asyncio adapter on the run's loop (zenws_adapters.asyncio)",
            serve_zenws,
            lambda: _SimpleKit(connect_zenws),
            _zenws_settings("zenws_adapters.asyncio"),
            live_settings=zenws_masking,
        ),
        Implementation(
            "zenws-trio",
            "zenws anyio adapter on Trio (zenws_adapters.anyio, trio.run)",
            serve_zenws_anyio,
            lambda: _SimpleKit(connect_zenws_anyio),
            _zenws_settings("zenws_adapters.anyio"),
            runtime="trio",
            live_settings=zenws_masking,
        ),
        Implementation(
            "zenws-curio",
            "zenws curio adapter (zenws_adapters.curio, curio.run)",
            serve_zenws_curio,
            lambda: _SimpleKit(connect_zenws_curio),
            _zenws_settings("zenws_adapters.curio"),
            runtime="curio",
            live_settings=zenws_masking,
        ),
        Implementation(
            "zenws-sync",
            "zenws blocking-sockets adapter (zenws_adapters.sync; a thread per connection)",
            serve_zenws_sync,
            lambda: _SimpleKit(connect_zenws_sync),
            _zenws_settings("zenws_adapters.sync"),
            runtime="threads",
            live_settings=zenws_masking,
        ),
    )
}
"""Benchmarked implementations by name: the peers, then every zenws adapter."""


def register(impl: Implementation) -> None:
    """Add or replace an implementation (a zenws adapter, or a peer's alternative API)."""
    IMPLEMENTATIONS[impl.name] = impl


# ---------------------------------------------------------------------------------------------
# Subprocess entry points
# ---------------------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Allow thousands of sockets in this process (idle-connection workload)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def emit(kind: str, payload: object = None) -> None:
    """Print one protocol line to the parent (``READY 123``, ``RESULT {...}``)."""
    if payload is None:
        print(kind, flush=True)
    elif isinstance(payload, str | int):
        print(kind, payload, flush=True)
    else:
        print(kind, json.dumps(payload), flush=True)


async def _server_main(impl: Implementation, rt: Runtime) -> None:
    if impl.serve is None:
        raise SystemExit(f"{impl.name} has no server")
    emit("SETTINGS", impl.describe(rt.name))
    port = await impl.serve(HOST)
    emit("READY", port)
    await rt.sleep_forever()


def _client_kit(impl: Implementation) -> ClientKit:
    if impl.client is None:
        raise SystemExit(f"{impl.name} has no client")
    return impl.client()


async def _client_main(
    impl: Implementation, rt: Runtime, port: int, plan: list[dict[str, Any]]
) -> None:
    from workloads import run_workload

    kit = _client_kit(impl)
    try:
        for spec in plan:

            async def job(spec: dict[str, Any] = spec) -> dict[str, Any]:
                return await run_workload(rt, kit, HOST, port, spec)

            try:
                result = await rt.within(spec.get("timeout", 120), job)
            except Exception as exc:
                result = {"workload": spec["name"], "error": f"{type(exc).__name__}: {exc}"}
            emit("RESULT", result)
    finally:
        await kit.aclose()


async def _hold_main(impl: Implementation, rt: Runtime, port: int, count: int) -> None:
    from workloads import close_all, open_many

    kit = _client_kit(impl)
    try:
        warm = await open_many(rt, kit, HOST, port, 1)
        emit("WARM")
        await rt.read_line()
        held = await open_many(rt, kit, HOST, port, count)
        emit("HELD", len(held))
        await rt.read_line()
        await close_all(rt, held + warm)
    finally:
        await kit.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("role", choices=["server", "client", "hold"])
    parser.add_argument("name", choices=sorted(IMPLEMENTATIONS))
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="uvloop",
        help="asyncio event loop (implementations on another runtime ignore it)",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--plan", default="[]", help="JSON list of workload specs")
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args(argv)
    raise_fd_limit()
    impl = IMPLEMENTATIONS[args.name]
    rt = runtime_named(impl.runtime_name(args.loop))
    if args.role == "server":
        rt.run(lambda: _server_main(impl, rt))
    elif args.role == "client":
        plan = json.loads(args.plan)
        rt.run(lambda: _client_main(impl, rt, args.port, plan))
    else:
        rt.run(lambda: _hold_main(impl, rt, args.port, args.connections))


if __name__ == "__main__":
    main()
