"""Events emitted by a single WebSocket connection (client or server role).

Every event is a frozen, slotted dataclass.  ``ConnectionEvent`` is the union an
adapter matches on.  Events describe what happened (past tense); the
application answers through methods on the connection object.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Headers = tuple[tuple[str, str], ...]
"""HTTP headers as ``(name, value)`` pairs; names lower-cased, in wire order."""


class CloseCause(enum.Enum):
    """Why a connection ended, finer than the close code alone."""

    #: The closing handshake completed (RFC 6455 section 7.1.2).
    NORMAL = "normal"
    #: The transport reached EOF without a close frame (code 1006).
    EOF = "eof"
    #: Our close frame was not answered within ``close_timeout`` (code 1006).
    CLOSE_TIMEOUT = "close-timeout"
    #: The peer broke the protocol; we failed the connection (1002, 1007, 1009).
    PROTOCOL_ERROR = "protocol-error"
    #: Something on our side failed the connection (1011) or the transport died.
    LOCAL_ERROR = "local-error"
    #: The opening handshake did not complete (rejected, malformed or timed out).
    HANDSHAKE_FAILED = "handshake-failed"


class Initiator(enum.Enum):
    """Who started the close."""

    LOCAL = "local"
    REMOTE = "remote"
    #: Nobody sent a close frame (EOF, transport error).
    NONE = "none"


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """Server role: a WebSocket upgrade request arrived (RFC 6455 section 4.2.1).

    Answer with ``accept(...)`` or ``reject(...)`` on the connection.
    """

    method: str
    target: str
    headers: Headers
    subprotocols: tuple[str, ...]
    extensions: tuple[str, ...]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class HTTPRequestReceived:
    """Server role: a plain HTTP request that is not an upgrade (``GET /health``).

    Answer with ``respond(status, headers, body)`` on the connection.
    """

    method: str
    target: str
    headers: Headers
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class Opened:
    """The opening handshake completed in either role."""

    subprotocol: str | None
    extensions: tuple[str, ...]
    headers: Headers
    """The peer's handshake headers (response headers for a client)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Client role: the server answered the upgrade with a non-101 response."""

    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key == lname:
                return value
        return None


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete message (text as ``str``, binary as ``bytes``)."""

    data: str | bytes

    @property
    def is_text(self) -> bool:
        return isinstance(self.data, str)


@dataclass(frozen=True, slots=True)
class FragmentReceived:
    """Streaming mode: one piece of a message; ``final`` marks its last piece."""

    data: str | bytes
    final: bool


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged; the connection already queued the pong."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class PongReceived:
    """A pong arrived; ``round_trip`` is set when it matched one of our pings."""

    payload: bytes
    round_trip: float | None = None


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's close frame arrived (the echo is already queued if needed)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """Final event of a connection: who closed, with which code, and why."""

    code: int
    reason: str
    initiator: Initiator
    cause: CloseCause
    clean: bool
    detail: str = field(default="")
    """Human-readable explanation (e.g. which protocol rule the peer broke)."""


ConnectionEvent = (
    RequestReceived
    | HTTPRequestReceived
    | Opened
    | Rejected
    | MessageReceived
    | FragmentReceived
    | PingReceived
    | PongReceived
    | CloseReceived
    | Closed
)
