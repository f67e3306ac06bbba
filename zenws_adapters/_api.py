"""The public API every adapter offers, written once over a few runtime hooks.

``send_text``, ``send_bytes``, ``send_json``, ``send(type, data)``, ``request``, ``ping``,
``recv``, iteration, ``wait_for``, ``reconnect`` and the context managers look the same on
every runtime; only waiting differs.  An adapter subclasses one of these bases and supplies:

- ``_submit(call)``: run ``call(now)`` on the core the runtime's way (wait while the writer
  is behind, then drain the core: write bytes, perform actions, dispatch events) and return
  what ``call`` returned;
- ``_until(take)``: wait until ``take()`` returns something other than ``None`` (``take``
  may raise, e.g. ``ConnectionClosed``); the driver's ``wake()`` hook says when to look again;
- ``_within(timeout, awaitable)`` (async only): ``TimeoutError`` after ``timeout`` seconds.

The blocking variant's ``_until(take, timeout)`` returns ``None`` when time ran out.
Waiters are the driver's ``Pending`` slots, checked after each wake-up.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Self, TypeVar

from zenws_core import ClientEvent, Envelope

from ._driver import ClientDriver, Pending, ServerDriver, SessionDriver, encode_json
from ._errors import ConnectionClosed

__all__ = ["AsyncClient", "AsyncServer", "AsyncSession", "SyncClient", "SyncServer", "SyncSession"]

T = TypeVar("T")


def _done(waiter: Pending[Any]) -> Callable[[], bool | None]:
    return lambda: True if waiter.done() else None


# =========================================================================== async


class _AsyncCommon:
    """What async clients and server connections share: receiving, pings, ``async with``."""

    _take: Callable[[], str | bytes | None]
    _start_ping: Callable[[Pending[float]], Pending[float]]

    async def _submit(self, call: Callable[[float], T]) -> T:
        raise NotImplementedError

    async def _until(self, take: Callable[[], T | None]) -> T:
        raise NotImplementedError

    async def _within(self, timeout: float | None, awaitable: Awaitable[T]) -> T:
        raise NotImplementedError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    async def _result(self, waiter: Pending[T]) -> T:
        await self._until(_done(waiter))
        return waiter.result()

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message nothing else consumed; ``TimeoutError`` after ``timeout``.

        ``ConnectionClosed`` once the connection (for a client: the client) is closed for good.
        """
        if timeout is None:
            return await self._until(self._take)
        return await self._within(timeout, self._until(self._take))

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def ping(self) -> float:
        """Send a ping (RFC 6455 section 5.5.2) and return the round trip in seconds."""
        pong = await self._submit(lambda now: self._start_ping(Pending()))
        return await self._result(pong)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncClient(ClientDriver, _AsyncCommon):
    """The async client API over ``ClientDriver``; an adapter adds I/O and ``close``."""

    async def send_text(self, text: str) -> None:
        """Send a text message now, or queue it while disconnected (the core decides)."""
        await self._submit(lambda now: self._core.send_text(text, now=now))

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message now, or queue it while disconnected."""
        await self._submit(lambda now: self._core.send_bytes(data, now=now))

    async def send_json(self, obj: Any) -> None:
        """Send ``obj`` as compact JSON text."""
        await self._submit(lambda now: self._core.send_json(obj, now=now))

    async def send(self, type: str, data: Any = None) -> None:
        """Send the envelope ``{"type": type, "data": data}`` (queued while disconnected)."""
        await self._submit(lambda now: self._core.send(type, data, now=now))

    async def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send an envelope with a fresh id; the reply carrying it, or ``RequestTimeout``."""
        reply: Pending[Envelope] = Pending()
        request = self._core.request  # the waiter is in place before any event can answer
        await self._submit(
            lambda now: self._expect_reply(request(type, data, now=now, timeout=timeout), reply)
        )
        return await self._result(reply)

    async def reconnect(self) -> None:
        """Connect again now (after ``GaveUp``, or to cut a backoff wait short)."""
        await self._submit(self._core.reconnect)

    async def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float | None = None
    ) -> ClientEvent:
        """The first lifecycle event, already seen or still to come, matching ``predicate``."""
        event: ClientEvent = await self._within(
            timeout, self._until(lambda: self._match(predicate, 0)[0])
        )
        return event

    async def __aenter__(self) -> AsyncClient:
        return self

    async def _started(self, wait_open: bool, timeout: float | None) -> Self:
        """The end of ``connect()``: the client, with ``wait_open`` once its first ``Connected``
        came (else it is closed and ``ConnectError`` raised)."""
        if wait_open:
            try:
                opened: Awaitable[None] = self._result(self._open_waiter(Pending()))
                await (opened if timeout is None else self._within(timeout, opened))
            except BaseException as exc:
                await self._abandon()
                if isinstance(exc, TimeoutError):
                    raise self._open_timed_out(timeout) from None
                raise
        return self

    async def _abandon(self) -> None:
        """Clean up after a failed or cancelled ``connect``."""
        await self.close()


class AsyncSession(SessionDriver, _AsyncCommon):
    """The async API of one server-side connection; an adapter adds I/O."""

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message; waits while the peer is behind."""
        await self._submit(lambda now: self._send_message(message))

    async def send_text(self, text: str) -> None:
        await self.send(str(text))

    async def send_bytes(self, data: bytes) -> None:
        await self.send(bytes(data))

    async def send_json(self, obj: Any) -> None:
        await self.send(encode_json(obj))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2) and wait until it ends."""
        await self._submit(lambda now: self._start_close(code, reason))
        await self._until(lambda: True if self.closed else None)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def _run_handler(self, handler: Callable[[Any], Awaitable[Any]]) -> None:
        """Await the application's ``handler(self)``; then close 1000, or 1011 if it raised."""
        error = None
        try:
            result = handler(self)
            if not inspect.isawaitable(result):  # a plain function: say so, not "can't await"
                raise TypeError(f"the server handler {handler!r} must be an async function")
            await result
        except Exception as exc:
            error = exc
        await self._submit(lambda now: self._handler_done(error))


class AsyncServer(ServerDriver):
    """``async with`` for servers: the exit shuts down (1001 to every connection)."""

    async def shutdown(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> AsyncServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


# =========================================================================== blocking


class _SyncCommon:
    """What blocking clients and server connections share."""

    _take: Callable[[], str | bytes | None]
    _start_ping: Callable[[Pending[float]], Pending[float]]

    def _submit(self, call: Callable[[float], T]) -> T:
        raise NotImplementedError

    def _until(self, take: Callable[[], T | None], timeout: float | None) -> T | None:
        raise NotImplementedError

    def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    def _result(self, waiter: Pending[T], timeout: float | None) -> T:
        if self._until(_done(waiter), timeout) is None:
            raise TimeoutError(f"no answer within {timeout}s")
        return waiter.result()

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``TimeoutError`` after ``timeout``; ``ConnectionClosed`` at the end."""
        message = self._until(self._take, timeout)
        if message is None:
            raise TimeoutError(f"no message within {timeout}s")
        return message  # type: ignore[return-value]  # mypy joins str | bytes to Sequence

    def __iter__(self) -> Iterator[str | bytes]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return

    def ping(self, timeout: float | None = None) -> float:
        """Send a ping (RFC 6455 section 5.5.2) and return the round trip in seconds."""
        pong = self._submit(lambda now: self._start_ping(Pending()))
        return self._result(pong, timeout)

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SyncClient(ClientDriver, _SyncCommon):
    """The blocking client API over ``ClientDriver``; an adapter adds I/O and ``close``."""

    def send_text(self, text: str) -> None:
        """Send a text message now, or queue it while disconnected (the core decides)."""
        self._submit(lambda now: self._core.send_text(text, now=now))

    def send_bytes(self, data: bytes) -> None:
        """Send a binary message now, or queue it while disconnected."""
        self._submit(lambda now: self._core.send_bytes(data, now=now))

    def send_json(self, obj: Any) -> None:
        """Send ``obj`` as compact JSON text."""
        self._submit(lambda now: self._core.send_json(obj, now=now))

    def send(self, type: str, data: Any = None) -> None:
        """Send the envelope ``{"type": type, "data": data}`` (queued while disconnected)."""
        self._submit(lambda now: self._core.send(type, data, now=now))

    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        """Send an envelope with a fresh id; the reply carrying it, or ``RequestTimeout``."""
        reply: Pending[Envelope] = Pending()
        request = self._core.request
        self._submit(
            lambda now: self._expect_reply(request(type, data, now=now, timeout=timeout), reply)
        )
        return self._result(reply, None)

    def reconnect(self) -> None:
        """Connect again now (after ``GaveUp``, or to cut a backoff wait short)."""
        self._submit(self._core.reconnect)

    def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float | None = None
    ) -> ClientEvent:
        """The first lifecycle event, already seen or still to come, matching ``predicate``."""
        event: ClientEvent | None = self._until(lambda: self._match(predicate, 0)[0], timeout)
        if event is None:
            raise TimeoutError(f"no matching event within {timeout}s")
        return event

    def __enter__(self) -> Self:
        return self

    def _wait_open(self, timeout: float | None) -> None:
        """``connect(wait_open=True)``: the first ``Connected``, else close and ``ConnectError``."""
        try:
            self._result(self._open_waiter(Pending()), timeout)
        except TimeoutError:
            self.close()
            raise self._open_timed_out(timeout) from None


class SyncSession(SessionDriver, _SyncCommon):
    """The blocking API of one server-side connection (its handler runs in a thread)."""

    def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary message, blocking until it is written."""
        self._submit(lambda now: self._send_message(message))

    def send_text(self, text: str) -> None:
        self.send(str(text))

    def send_bytes(self, data: bytes) -> None:
        self.send(bytes(data))

    def send_json(self, obj: Any) -> None:
        self.send(encode_json(obj))

    def __enter__(self) -> Self:
        return self

    def _run_handler(self, handler: Callable[[Any], Any]) -> None:
        """Call the application's ``handler(self)``; then close 1000, or 1011 if it raised."""
        error = None
        try:
            handler(self)
        except Exception as exc:
            error = exc
        self._submit(lambda now: self._handler_done(error))


class SyncServer(ServerDriver):
    """``with`` for blocking servers: the exit shuts down (1001 to every connection)."""

    def shutdown(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
