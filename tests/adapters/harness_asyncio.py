"""The asyncio adapter behind the synchronous ``Harness`` interface.

One event loop runs in a daemon thread for the whole test session; every call is
marshalled onto it with ``asyncio.run_coroutine_threadsafe``.  Set ``ZENWS_UVLOOP=1`` to
run that loop on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tests.adapters.harness import ServerRecord, handle_message, server_options
from zenws_adapters import asyncio as zasyncio
from zenws_core import ClientEvent, ClientState, ClientStats, Envelope, ServerStatus

T = TypeVar("T")

#: Extra seconds the test thread waits beyond an operation's own timeout.
GRACE = 30.0


def _new_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("ZENWS_UVLOOP") == "1":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] = _new_loop) -> None:
        self.loop = loop_factory()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="zenws-aio")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(None if timeout is None else timeout + GRACE)


class AsyncioClientHandle:
    def __init__(self, runner: LoopThread, client: zasyncio.Client) -> None:
        self._run = runner.run
        self.client = client

    def send_text(self, text: str) -> None:
        self._run(self.client.send_text(text), 10)

    def send_bytes(self, data: bytes) -> None:
        self._run(self.client.send_bytes(data), 10)

    def send_json(self, obj: Any) -> None:
        self._run(self.client.send_json(obj), 10)

    def send(self, type: str, data: Any = None) -> None:
        self._run(self.client.send(type, data), 10)

    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        return self._run(self.client.request(type, data, timeout), timeout or 30)

    def recv(self, timeout: float = 10.0) -> str | bytes:
        return self._run(self.client.recv(timeout), timeout)

    def ping(self, timeout: float = 10.0) -> float:
        async def ping() -> float:
            async with asyncio.timeout(timeout):
                return await self.client.ping()

        return self._run(ping(), timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._run(self.client.close(code, reason), 20)

    def stats(self) -> ClientStats:
        async def stats() -> ClientStats:
            return self.client.stats()

        return self._run(stats(), 5)

    @property
    def state(self) -> ClientState:
        return self.client.state

    @property
    def subprotocol(self) -> str | None:
        return self.client.subprotocol

    def events(self) -> list[ClientEvent]:
        async def events() -> list[ClientEvent]:
            return list(self.client.events_seen)

        return self._run(events(), 5)

    def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float = 10.0
    ) -> ClientEvent:
        return self._run(self.client.wait_for(predicate, timeout), timeout)


class AsyncioServerHandle:
    def __init__(self, runner: LoopThread, server: zasyncio.Server, record: ServerRecord) -> None:
        self._run = runner.run
        self.server = server
        self._record = record

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def record(self) -> ServerRecord:
        return self._record

    def status(self) -> ServerStatus:
        async def status() -> ServerStatus:
            return self.server.status()

        return self._run(status(), 5)

    def stop(self, timeout: float = 5.0) -> None:
        self._run(self.server.shutdown(timeout), timeout)


def command_handler(record: ServerRecord) -> Callable[[zasyncio.ServerWebSocket], Any]:
    """The harness command protocol (``tests.adapters.harness.handle_message``)."""

    async def handler(ws: zasyncio.ServerWebSocket) -> None:
        headers = ws.headers
        record.requests.append({"path": ws.path, "headers": headers, "subprotocol": ws.subprotocol})
        async for message in ws:
            record.messages.append(message)
            command = handle_message(message, ws.path, headers, ws.subprotocol)
            for reply in command.replies:
                await ws.send(reply)
            if command.close is not None:
                await ws.close(*command.close)
        record.closes.append((ws.close_code, ws.close_reason))

    return handler


class AsyncioHarness:
    name = "asyncio"

    def __init__(self) -> None:
        self._runner: LoopThread | None = None
        self._clients: list[AsyncioClientHandle] = []
        self._servers: list[AsyncioServerHandle] = []

    @property
    def runner(self) -> LoopThread:
        if self._runner is None:
            self._runner = LoopThread()
        return self._runner

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> AsyncioServerHandle:
        server_options(options)
        record = ServerRecord()
        server = self.runner.run(
            zasyncio.serve(host, port, command_handler(record), ssl=ssl, **options), 10
        )
        handle = AsyncioServerHandle(self.runner, server, record)
        self._servers.append(handle)
        return handle

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> AsyncioClientHandle:
        async def start() -> zasyncio.Client:
            return await zasyncio.connect(url, ssl=ssl, **options)

        client = self.runner.run(start(), 30)
        handle = AsyncioClientHandle(self.runner, client)
        self._clients.append(handle)
        return handle

    def close_all(self) -> None:
        clients, self._clients = self._clients, []
        servers, self._servers = self._servers, []

        async def close_all() -> None:
            async def close(client: zasyncio.Client) -> None:
                try:
                    async with asyncio.timeout(5):
                        await client.close()
                except TimeoutError:
                    pass

            await asyncio.gather(*(close(c.client) for c in clients), return_exceptions=True)
            await asyncio.gather(*(s.server.shutdown(2.0) for s in servers), return_exceptions=True)

        if clients or servers:
            self.runner.run(close_all(), 15)


HARNESS = AsyncioHarness()
