"""Exceptions shared by every adapter (the core's own are re-exported here)."""

from __future__ import annotations

from zenws_core import ClientClosedError, Disconnected, GaveUp, QueueFull

__all__ = ["ClientClosedError", "ConnectError", "ConnectionClosed", "QueueFull", "RequestTimeout"]


class ConnectError(ConnectionError):
    """The client could not open its first connection and will not retry.

    ``event`` is the ``GaveUp`` (or the last ``Disconnected``) that ended the attempt.
    """

    def __init__(self, message: str, event: GaveUp | Disconnected | None = None) -> None:
        super().__init__(message)
        self.event = event


class RequestTimeout(TimeoutError):
    """No reply to ``request(...)`` arrived within its timeout."""

    def __init__(self, request_id: str, type: str, timeout: float) -> None:
        super().__init__(f"request {request_id} ({type}) got no reply within {timeout:g}s")
        self.request_id = request_id
        self.type = type
        self.timeout = timeout


class ConnectionClosed(ConnectionError):
    """The connection (or the client, for good) is closed; ``code``/``reason`` say how."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"connection closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason
