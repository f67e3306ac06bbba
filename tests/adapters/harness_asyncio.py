"""The asyncio adapter behind the synchronous ``Harness`` interface.

One event loop runs in a daemon thread for the whole test session; every call is
marshalled onto it with ``asyncio.run_coroutine_threadsafe``.  Set ``ZENWS_UVLOOP=1`` to
run that loop on uvloop.  Clients are opened with ``await connect(...)``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from tests.adapters.harness import ServerRecord, server_options
from tests.adapters.harness_async import GRACE, RemoteClient, RemoteServer, command_handler, invoke
from zenws_adapters import asyncio as zasyncio

T = TypeVar("T")


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

    def call(self, function: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """``harness_async.Call`` on this loop."""
        return self.run(invoke(function, *args), timeout)


async def _within(timeout: float, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(timeout):
        return await awaitable


class AsyncioHarness:
    name = "asyncio"

    def __init__(self) -> None:
        self._runner: LoopThread | None = None
        self._clients: list[RemoteClient] = []
        self._servers: list[RemoteServer] = []

    @property
    def runner(self) -> LoopThread:
        if self._runner is None:
            self._runner = LoopThread()
        return self._runner

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> RemoteServer:
        server_options(options)
        record = ServerRecord()
        server = self.runner.run(
            zasyncio.serve(host, port, command_handler(record), ssl=ssl, **options), 10
        )
        handle = RemoteServer(self.runner.call, server, record)
        self._servers.append(handle)
        return handle

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> RemoteClient:
        async def start() -> zasyncio.Client:
            return await zasyncio.connect(url, ssl=ssl, **options)

        handle = RemoteClient(self.runner.call, self.runner.run(start(), 30), _within)
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
