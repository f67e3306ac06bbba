"""The synchronous, adapter-neutral face of every adapter, for the one scenario suite.

Each adapter has a module ``tests/adapters/harness_<name>.py`` exposing ``HARNESS``, an
object implementing ``Harness``.  Async adapters run their runtime in a background
thread and marshal every call onto it; the sync adapter calls straight through.

Server handler command protocol (identical on every adapter; see ``handle_message``):

- a text message ``"!info"`` is answered with one JSON text message
  ``{"path": ..., "headers": {lower-case name: value}, "subprotocol": ...}``;
- a text message ``"!close CODE REASON"`` makes the server close with that code/reason;
- a text message ``"!send N SIZE"`` makes the server send N binary messages of SIZE bytes;
- anything else is echoed back as it came (text as text, binary as binary).

Every server records the close code/reason of each connection in ``ServerHandle.closes``
and each handshake in ``ServerHandle.requests`` (path, headers, subprotocol).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from zenws_core import ClientEvent, ClientState, ClientStats, Envelope, Reject, ServerStatus

__all__ = [
    "ADAPTERS",
    "ClientHandle",
    "Command",
    "Harness",
    "ServerHandle",
    "ServerRecord",
    "handle_message",
    "server_options",
]

#: Every adapter, by the name its harness module carries.
ADAPTERS = ("sync", "asyncio", "trio", "curio")


@dataclass
class ServerRecord:
    """What a test server saw (filled in by the harness's handler, read by tests)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    closes: list[tuple[int | None, str]] = field(default_factory=list)
    messages: list[str | bytes] = field(default_factory=list)


@dataclass(frozen=True)
class Command:
    """What the server handler must do for one incoming message."""

    replies: tuple[str | bytes, ...] = ()
    close: tuple[int, str] | None = None


def handle_message(
    message: str | bytes, path: str, headers: Mapping[str, str], subprotocol: str | None
) -> Command:
    """The command protocol above, as a pure function every harness handler calls."""
    if isinstance(message, str) and message.startswith("!"):
        word, _, rest = message.partition(" ")
        if word == "!info":
            info = {"path": path, "headers": dict(headers), "subprotocol": subprotocol}
            return Command(replies=(json.dumps(info),))
        if word == "!close":
            code_text, _, reason = rest.partition(" ")
            return Command(close=(int(code_text), reason))
        if word == "!send":
            count_text, _, size_text = rest.partition(" ")
            payload = bytes(i % 251 for i in range(int(size_text)))
            return Command(replies=tuple(payload for _ in range(int(count_text))))
    return Command(replies=(message,))


def server_options(options: dict[str, Any]) -> dict[str, Any]:
    """Turn the harness-only ``reject_status=N`` into a ``ServerConfig.authenticate`` policy."""
    status = options.pop("reject_status", None)
    if status is not None:
        headers = (("retry-after", "0"),) if status == 503 else ()
        options["authenticate"] = lambda request: Reject(status, headers)
    return options


class ClientHandle(Protocol):
    """A connected client, driven synchronously from the test thread."""

    def send_text(self, text: str) -> None: ...
    def send_bytes(self, data: bytes) -> None: ...
    def send_json(self, obj: Any) -> None: ...
    def send(self, type: str, data: Any = None) -> None: ...
    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope: ...
    def recv(self, timeout: float = 10.0) -> str | bytes:
        """The next incoming message; raises ``TimeoutError`` if none arrives in time."""
        ...

    def ping(self, timeout: float = 10.0) -> float: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...
    def stats(self) -> ClientStats: ...
    @property
    def state(self) -> ClientState: ...
    @property
    def subprotocol(self) -> str | None: ...
    def events(self) -> list[ClientEvent]:
        """Every lifecycle event seen so far (a copy)."""
        ...

    def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float = 10.0
    ) -> ClientEvent:
        """The first event (past or future) matching ``predicate``; ``TimeoutError`` otherwise."""
        ...


class ServerHandle(Protocol):
    """A running test server (command-protocol handler above)."""

    @property
    def port(self) -> int: ...
    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/`` (``wss://`` with TLS)."""
        ...

    @property
    def record(self) -> ServerRecord: ...
    def status(self) -> ServerStatus: ...
    def stop(self, timeout: float = 5.0) -> None:
        """Graceful shutdown: every connection gets close 1001; returns when all are gone."""
        ...


class Harness(Protocol):
    name: str

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> ServerHandle:
        """``serve(host, port, handler, ssl=ssl, **options)`` with the command handler.

        ``options`` are ``ServerConfig`` fields, plus ``reject_status=N``: every upgrade is
        refused with HTTP N (through ``ServerConfig.authenticate``; a 503 carries
        ``Retry-After: 0``).  ``port`` may name the port of a server stopped earlier.
        """
        ...

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> ClientHandle:
        """``connect(url, ssl=ssl, **options)``; waits until open unless ``wait_open=False``."""
        ...

    def close_all(self) -> None:
        """Stop every client and server this harness started (called after each test)."""
        ...
