"""zenws_adapters: thin drivers of zenws_core over blocking sockets, asyncio, Trio and curio.

Each runtime has its own module with the same API shape:
``zenws_adapters.sync``, ``zenws_adapters.asyncio``, ``zenws_adapters.trio`` (anyio) and
``zenws_adapters.curio``; each offers ``connect(url, **options)`` and
``serve(host, port, handler, **options)``.
"""

from ._errors import ClientClosedError, ConnectError, ConnectionClosed, QueueFull, RequestTimeout

__all__ = ["ClientClosedError", "ConnectError", "ConnectionClosed", "QueueFull", "RequestTimeout"]
