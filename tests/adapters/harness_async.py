"""What the async adapters' harnesses share: handles that marshal onto a runtime thread.

Each async harness (asyncio, anyio on Trio, curio) runs its runtime in a background thread
and supplies one ``Call``: ``call(function, *args, timeout=seconds)`` runs
``function(*args)`` there (awaiting it when it returns an awaitable) and returns its result
to the test thread.  ``RemoteClient`` and ``RemoteServer`` implement the harness's
``ClientHandle`` and ``ServerHandle`` on top of it; ``command_handler`` is the server
handler of the command protocol for every async adapter.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from tests.adapters.harness import ServerRecord, handle_message
from zenws_core import ClientEvent, ClientState, ClientStats, Envelope, Routed, ServerStatus

__all__ = ["Call", "RemoteClient", "RemoteServer", "command_handler", "invoke"]

T = TypeVar("T")

#: Extra seconds the test thread waits beyond an operation's own timeout.
GRACE = 30.0


class Call(Protocol):
    """Run ``function(*args)`` on the runtime's thread; its result, or what it raised."""

    def __call__(self, function: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any: ...


async def invoke(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, awaited when it returns an awaitable (for runners of coroutines)."""
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class RemoteClient:
    """A ``ClientHandle`` over an async adapter's client, its events mirrored for the test.

    ``within(timeout, awaitable)`` is the runtime's timeout (for ``ping``); ``on_close``
    runs after ``close`` (the anyio harness leaves the client's ``async with`` there).
    """

    def __init__(
        self,
        call: Call,
        client: Any,
        within: Callable[[float, Awaitable[Any]], Awaitable[Any]],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._call, self.client, self._within, self._on_close = call, client, within, on_close
        self._changed = threading.Condition()
        self._events: list[ClientEvent] = []
        call(self._watch)

    def _watch(self) -> None:
        """Copy the events seen so far and subscribe, in one step of the runtime thread."""
        with self._changed:
            self._events.extend(self.client.events_seen)
        self.client.on_event(self._record)

    def _record(self, event: ClientEvent) -> None:
        if not isinstance(event, Routed):
            with self._changed:
                self._events.append(event)
                self._changed.notify_all()

    def send_text(self, text: str) -> None:
        self._call(self.client.send_text, text)

    def send_bytes(self, data: bytes) -> None:
        self._call(self.client.send_bytes, data)

    def send_json(self, obj: Any) -> None:
        self._call(self.client.send_json, obj)

    def send(self, type: str, data: Any = None) -> None:
        self._call(self.client.send, type, data)

    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        wait = timeout or 30
        reply: Envelope = self._call(self.client.request, type, data, timeout, timeout=wait)
        return reply

    def recv(self, timeout: float = 10.0) -> str | bytes:
        message: str | bytes = self._call(self.client.recv, timeout, timeout=timeout)
        return message

    def ping(self, timeout: float = 10.0) -> float:
        def ping() -> Awaitable[Any]:
            return self._within(timeout, self.client.ping())

        round_trip: float = self._call(ping, timeout=timeout)
        return round_trip

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._call(self.client.close, code, reason, timeout=20)
        if self._on_close is not None:
            self._on_close()

    def stats(self) -> ClientStats:
        stats: ClientStats = self._call(self.client.stats)
        return stats

    @property
    def state(self) -> ClientState:
        state: ClientState = self._call(lambda: self.client.state)
        return state

    @property
    def subprotocol(self) -> str | None:
        subprotocol: str | None = self._call(lambda: self.client.subprotocol)
        return subprotocol

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
                    raise TimeoutError(f"no matching event within {timeout:g}s: {self._events}")
                self._changed.wait(remaining)


class RemoteServer:
    """A ``ServerHandle`` over an async adapter's server; ``on_stop`` runs after ``stop``."""

    def __init__(
        self,
        call: Call,
        server: Any,
        record: ServerRecord,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._call, self.server, self._record, self._on_stop = call, server, record, on_stop

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        url: str = self.server.url
        return url

    @property
    def record(self) -> ServerRecord:
        return self._record

    def status(self) -> ServerStatus:
        status: ServerStatus = self._call(self.server.status)
        return status

    def stop(self, timeout: float = 5.0) -> None:
        self._call(self.server.shutdown, timeout, timeout=timeout)
        if self._on_stop is not None:
            self._on_stop()


def command_handler(record: ServerRecord) -> Callable[[Any], Awaitable[None]]:
    """The harness command protocol (``tests.adapters.harness.handle_message``)."""

    async def handler(ws: Any) -> None:
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
