"""The anyio adapter on Trio, behind the synchronous harness interface.

Trio runs in a background thread through ``anyio.from_thread.start_blocking_portal``;
every call is marshalled onto it.  Clients and servers are entered with their
``async with`` form (``portal.wrap_async_context_manager``), as users would write it.
"""

from __future__ import annotations

import atexit
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests.adapters.harness import ServerRecord, server_options
from tests.adapters.harness_async import RemoteClient, RemoteServer, command_handler, invoke
from zenws_adapters import anyio as zenws_anyio

__all__ = ["HARNESS", "AnyioHarness"]

T = TypeVar("T")


async def _within(timeout: float, awaitable: Awaitable[T]) -> T:
    with anyio.fail_after(timeout):
        return await awaitable


def _leaver(context: AbstractContextManager[Any]) -> Callable[[], None]:
    """Leave the ``async with`` of a client or server once (after close, stop or the test)."""
    left: list[bool] = []

    def leave() -> None:
        if not left:
            left.append(True)
            context.__exit__(None, None, None)

    return leave


class AnyioHarness:
    """``HARNESS`` for one anyio backend (``trio`` here; ``asyncio`` works the same)."""

    def __init__(self, name: str, backend: str) -> None:
        self.name = name
        self._backend = backend
        self._stack: ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._leave_clients: list[Callable[[], None]] = []
        self._leave_servers: list[Callable[[], None]] = []

    @property
    def portal(self) -> BlockingPortal:
        if self._portal is None:
            self._stack = ExitStack()
            self._portal = self._stack.enter_context(start_blocking_portal(self._backend))
            atexit.register(self._stack.close)
        return self._portal

    def call(self, function: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """``harness_async.Call`` through the portal (which waits as long as it takes)."""
        return self.portal.call(invoke, function, *args)

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> RemoteServer:
        record = ServerRecord()
        server_options(options)
        manager = zenws_anyio.serve(host, port, command_handler(record), ssl=ssl, **options)
        context = self.portal.wrap_async_context_manager(manager)
        server = context.__enter__()
        self._leave_servers.append(leave := _leaver(context))
        return RemoteServer(self.call, server, record, on_stop=leave)

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> RemoteClient:
        manager = zenws_anyio.connect(url, ssl=ssl, **options)
        context = self.portal.wrap_async_context_manager(manager)
        client = context.__enter__()
        self._leave_clients.append(leave := _leaver(context))
        return RemoteClient(self.call, client, _within, on_close=leave)

    def close_all(self) -> None:
        clients, self._leave_clients = self._leave_clients, []
        servers, self._leave_servers = self._leave_servers, []
        for leave in clients + servers:  # clients first, as a test would
            leave()


HARNESS = AnyioHarness("trio", "trio")
