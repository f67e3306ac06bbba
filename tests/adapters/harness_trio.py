"""The anyio adapter on Trio, behind the synchronous harness interface.

Trio runs in a background thread through ``anyio.from_thread.start_blocking_portal``;
every call is marshalled onto it.  Clients and servers are entered with their
``async with`` form (``portal.wrap_async_context_manager``), as users would write it.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests.adapters.harness import ServerRecord, handle_message, server_options
from zenws_adapters import anyio as zenws_anyio
from zenws_core import ClientEvent, ClientState, ClientStats, Envelope, ServerStatus

__all__ = ["HARNESS", "AnyioHarness"]


class _Client:
    """A ``zenws_adapters.anyio.Client`` driven from the test thread."""

    def __init__(
        self,
        portal: BlockingPortal,
        client: zenws_anyio.Client,
        context: AbstractContextManager[Any],
    ) -> None:
        self._portal, self._client, self._context = portal, client, context
        self._cond = threading.Condition()
        self._mirror: list[ClientEvent] = []
        self._exited = False
        portal.call(self._subscribe)

    def _subscribe(self) -> None:  # runs on the Trio thread: no event can slip between
        self._mirror.extend(self._client.events_seen)
        self._client.on_event(self._on_event)

    def _on_event(self, event: ClientEvent) -> None:
        with self._cond:
            self._mirror.append(event)
            self._cond.notify_all()

    def send_text(self, text: str) -> None:
        self._portal.call(self._client.send_text, text)

    def send_bytes(self, data: bytes) -> None:
        self._portal.call(self._client.send_bytes, data)

    def send_json(self, obj: Any) -> None:
        self._portal.call(self._client.send_json, obj)

    def send(self, type: str, data: Any = None) -> None:
        self._portal.call(self._client.send, type, data)

    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        reply: Envelope = self._portal.call(self._client.request, type, data, timeout)
        return reply

    def recv(self, timeout: float = 10.0) -> str | bytes:
        return self._portal.call(self._client.recv, timeout)

    def ping(self, timeout: float = 10.0) -> float:
        return self._portal.call(self._ping, timeout)

    async def _ping(self, timeout: float) -> float:
        import anyio

        with anyio.fail_after(timeout):
            return await self._client.ping()

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._exited:
            self._portal.call(self._client.close, code, reason)
            self._exit()

    def _exit(self) -> None:
        if not self._exited:
            self._exited = True
            self._context.__exit__(None, None, None)

    def stats(self) -> ClientStats:
        return self._portal.call(self._client.stats)

    @property
    def state(self) -> ClientState:
        return self._portal.call(lambda: self._client.state)

    @property
    def subprotocol(self) -> str | None:
        return self._portal.call(lambda: self._client.subprotocol)

    def events(self) -> list[ClientEvent]:
        with self._cond:
            return list(self._mirror)

    def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float = 10.0
    ) -> ClientEvent:
        found: list[ClientEvent] = []

        def match() -> bool:
            found[:] = [event for event in self._mirror if predicate(event)][:1]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(match, timeout):
                raise TimeoutError(f"no matching event within {timeout}s: {self._mirror}")
        return found[0]


class _Server:
    def __init__(
        self,
        portal: BlockingPortal,
        server: zenws_anyio.Server,
        context: AbstractContextManager[Any],
        record: ServerRecord,
    ) -> None:
        self._portal, self._server, self._context, self._record = portal, server, context, record
        self._exited = False

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def record(self) -> ServerRecord:
        return self._record

    def status(self) -> ServerStatus:
        return self._portal.call(self._server.status)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._exited:
            self._portal.call(self._server.shutdown, timeout)
            self._exit()

    def _exit(self) -> None:
        if not self._exited:
            self._exited = True
            self._context.__exit__(None, None, None)


def _command_handler(record: ServerRecord) -> Callable[[zenws_anyio.ServerWebSocket], Any]:
    async def handler(ws: zenws_anyio.ServerWebSocket) -> None:
        record.requests.append(
            {"path": ws.path, "headers": ws.headers, "subprotocol": ws.subprotocol}
        )
        async for message in ws:
            record.messages.append(message)
            command = handle_message(message, ws.path, ws.headers, ws.subprotocol)
            for reply in command.replies:
                await ws.send(reply)
            if command.close is not None:
                await ws.close(*command.close)
        record.closes.append((ws.close_code, ws.close_reason))

    return handler


class AnyioHarness:
    """``HARNESS`` for one anyio backend (``trio`` here; ``asyncio`` works the same)."""

    def __init__(self, name: str, backend: str) -> None:
        self.name = name
        self._backend = backend
        self._stack: ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._clients: list[_Client] = []
        self._servers: list[_Server] = []

    @property
    def portal(self) -> BlockingPortal:
        if self._portal is None:
            self._stack = ExitStack()
            self._portal = self._stack.enter_context(start_blocking_portal(self._backend))
            atexit.register(self._stack.close)
        return self._portal

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> _Server:
        record = ServerRecord()
        server_options(options)
        manager = zenws_anyio.serve(host, port, _command_handler(record), ssl=ssl, **options)
        context = self.portal.wrap_async_context_manager(manager)
        server = _Server(self.portal, context.__enter__(), context, record)
        self._servers.append(server)
        return server

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> _Client:
        context = self.portal.wrap_async_context_manager(
            zenws_anyio.connect(url, ssl=ssl, **options)
        )
        client = _Client(self.portal, context.__enter__(), context)
        self._clients.append(client)
        return client

    def close_all(self) -> None:
        clients, self._clients = self._clients, []
        servers, self._servers = self._servers, []
        for client in clients:
            client._exit()
        for server in servers:
            server._exit()


HARNESS = AnyioHarness("trio", "trio")
