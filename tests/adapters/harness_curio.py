"""The curio adapter behind the synchronous ``Harness`` interface.

A curio kernel runs in a daemon thread; the test thread hands it ``(coroutine function,
args, concurrent.futures.Future)`` items through a ``curio.UniversalQueue`` and waits on
the future.  ``close_all`` closes every client and server, then ends the kernel (its
remaining tasks are cancelled by ``curio.run``'s shutdown); the next test starts a fresh one.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import curio

from tests.adapters.harness import ServerRecord, handle_message, server_options
from zenws_adapters import curio as zcurio
from zenws_core import ClientEvent, ClientState, ClientStats, Envelope, Routed, ServerStatus

T = TypeVar("T")

#: Extra seconds the test thread waits beyond an operation's own timeout.
GRACE = 30.0


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
    async def _call(
        function: Callable[..., Awaitable[Any]], args: tuple[Any, ...], future: Any
    ) -> None:
        try:
            result = await function(*args)
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)

    def run(self, function: Callable[..., Awaitable[T]], *args: Any, timeout: float = 10) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
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


class CurioClientHandle:
    def __init__(self, kernel: KernelThread, client: zcurio.Client) -> None:
        self._kernel = kernel
        self.client = client
        self._events: list[ClientEvent] = []
        self._changed = threading.Condition()

    async def _watch(self) -> None:
        """Copy the events seen so far and subscribe, in one step of the kernel thread."""
        with self._changed:
            self._events.extend(self.client.events_seen)
        self.client.on_event(self._record)

    def _record(self, event: ClientEvent) -> None:
        if not isinstance(event, Routed):
            with self._changed:
                self._events.append(event)
                self._changed.notify_all()

    def _run(self, function: Callable[..., Awaitable[T]], *args: Any, timeout: float = 10) -> T:
        return self._kernel.run(function, *args, timeout=timeout)

    def send_text(self, text: str) -> None:
        self._run(self.client.send_text, text)

    def send_bytes(self, data: bytes) -> None:
        self._run(self.client.send_bytes, data)

    def send_json(self, obj: Any) -> None:
        self._run(self.client.send_json, obj)

    def send(self, type: str, data: Any = None) -> None:
        self._run(self.client.send, type, data)

    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        return self._run(self.client.request, type, data, timeout, timeout=timeout or 30)

    def recv(self, timeout: float = 10.0) -> str | bytes:
        return self._run(self.client.recv, timeout, timeout=timeout)

    def ping(self, timeout: float = 10.0) -> float:
        async def ping() -> float:
            return await _within(timeout, self.client.ping())

        return self._run(ping, timeout=timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._run(self.client.close, code, reason, timeout=20)

    def stats(self) -> ClientStats:
        async def stats() -> ClientStats:
            return self.client.stats()

        return self._run(stats)

    @property
    def state(self) -> ClientState:
        async def state() -> ClientState:
            return self.client.state

        return self._run(state)

    @property
    def subprotocol(self) -> str | None:
        async def subprotocol() -> str | None:
            return self.client.subprotocol

        return self._run(subprotocol)

    def events(self) -> list[ClientEvent]:
        with self._changed:
            return list(self._events)

    def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float = 10.0
    ) -> ClientEvent:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for event in self._events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self._events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching event within {timeout:g}s")
                self._changed.wait(remaining)


class CurioServerHandle:
    def __init__(self, kernel: KernelThread, server: zcurio.Server, record: ServerRecord) -> None:
        self._kernel = kernel
        self.server = server
        self._record = record

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def record(self) -> ServerRecord:
        return self._record

    def status(self) -> ServerStatus:
        async def status() -> ServerStatus:
            return self.server.status()

        return self._kernel.run(status)

    def stop(self, timeout: float = 5.0) -> None:
        self._kernel.run(self.server.shutdown, timeout, timeout=timeout)


def command_handler(record: ServerRecord) -> Callable[[zcurio.ServerWebSocket], Awaitable[None]]:
    """The harness command protocol (``tests.adapters.harness.handle_message``)."""

    async def handler(ws: zcurio.ServerWebSocket) -> None:
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


class CurioHarness:
    name = "curio"

    def __init__(self) -> None:
        self._kernel: KernelThread | None = None
        self._clients: list[CurioClientHandle] = []
        self._servers: list[CurioServerHandle] = []

    @property
    def kernel(self) -> KernelThread:
        if self._kernel is None:
            self._kernel = KernelThread()
        return self._kernel

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> CurioServerHandle:
        server_options(options)
        record = ServerRecord()

        async def start() -> zcurio.Server:
            return await zcurio.serve(host, port, command_handler(record), ssl=ssl, **options)

        handle = CurioServerHandle(self.kernel, self.kernel.run(start), record)
        self._servers.append(handle)
        return handle

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> CurioClientHandle:
        async def start() -> CurioClientHandle:
            handle = CurioClientHandle(self.kernel, await zcurio.connect(url, ssl=ssl, **options))
            await handle._watch()
            return handle

        handle = self.kernel.run(start, timeout=30)
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
