"""The asyncio adapter: ``await connect(url)`` or ``async with connect(url)``; ``await serve(...)``.

Built on ``asyncio.Protocol`` (no streams, no task per message); runs under uvloop
unchanged.  ``run(main)`` runs a coroutine on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio as _asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._asyncio_client import Client, Connector, connect
from ._asyncio_server import Server, ServerWebSocket, serve
from ._errors import ClientClosedError, ConnectError, ConnectionClosed, QueueFull, RequestTimeout

__all__ = [
    "Client",
    "ClientClosedError",
    "ConnectError",
    "ConnectionClosed",
    "Connector",
    "QueueFull",
    "RequestTimeout",
    "Server",
    "ServerWebSocket",
    "connect",
    "run",
    "serve",
]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """``asyncio.run(main)``, on uvloop's event loop when it is installed and wanted."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return _asyncio.run(main)
