"""The curio adapter behind the synchronous ``Harness`` interface.

A curio kernel runs in a daemon thread; the test thread hands it ``(coroutine function,
args, concurrent.futures.Future)`` items through a ``curio.UniversalQueue`` and waits on
the future.  ``close_all`` closes every client and server, then ends the kernel (its
remaining tasks are cancelled by ``curio.run``'s shutdown); the next test starts a fresh one.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import curio

from tests.adapters.harness import ServerRecord, server_options
from tests.adapters.harness_async import GRACE, RemoteClient, RemoteServer, command_handler, invoke
from zenws_adapters import curio as zcurio

T = TypeVar("T")


class KernelThread:
    """A curio kernel in a daemon thread, fed through a ``UniversalQueue``."""

    def __init__(self) -> None:
        self._queue: Any = curio.UniversalQueue()
        self.thread = threading.Thread(
            target=curio.run, args=(self._main,), daemon=True, name="zenws-curio"
        )
        self.thread.start()

    async def _main(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            await curio.spawn(self._call, *item, daemon=True)

    @staticmethod
    async def _call(function: Callable[..., Any], args: tuple[Any, ...], future: Any) -> None:
        try:
            result = await invoke(function, *args)
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)

    def run(self, function: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """``harness_async.Call`` in this kernel."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((function, args, future))
        return future.result(timeout + GRACE)

    def stop(self) -> None:
        self._queue.put(None)
        self.thread.join(10)
        assert not self.thread.is_alive(), "the curio kernel did not shut down"


async def _within(timeout: float, awaitable: Awaitable[T]) -> T:
    try:
        result: T = await curio.timeout_after(timeout, awaitable)
    except curio.TaskTimeout:
        raise TimeoutError(f"nothing within {timeout:g}s") from None
    return result


class CurioHarness:
    name = "curio"

    def __init__(self) -> None:
        self._kernel: KernelThread | None = None
        self._clients: list[RemoteClient] = []
        self._servers: list[RemoteServer] = []

    @property
    def kernel(self) -> KernelThread:
        if self._kernel is None:
            self._kernel = KernelThread()
        return self._kernel

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> RemoteServer:
        server_options(options)
        record = ServerRecord()

        async def start() -> zcurio.Server:
            return await zcurio.serve(host, port, command_handler(record), ssl=ssl, **options)

        handle = RemoteServer(self.kernel.run, self.kernel.run(start), record)
        self._servers.append(handle)
        return handle

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> RemoteClient:
        async def start() -> zcurio.Client:
            return await zcurio.connect(url, ssl=ssl, **options)

        handle = RemoteClient(self.kernel.run, self.kernel.run(start, timeout=30), _within)
        self._clients.append(handle)
        return handle

    def close_all(self) -> None:
        clients, self._clients = self._clients, []
        servers, self._servers = self._servers, []
        kernel, self._kernel = self._kernel, None
        if kernel is None:
            return

        async def close_all() -> None:
            async with curio.TaskGroup() as group:
                for client in clients:
                    await group.spawn(curio.ignore_after, 5, client.client.close())
                for server in servers:
                    await group.spawn(server.server.shutdown, 2.0)

        try:
            kernel.run(close_all, timeout=15)
        finally:
            kernel.stop()


HARNESS = CurioHarness()
