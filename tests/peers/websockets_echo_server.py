"""Test peer: a WebSocket echo server on the Python ``websockets`` library (asyncio).

Same options and stdout protocol as ``ws_echo_server.js``: ``READY <port>`` once listening,
``REQUEST {json}`` per connection, ``CLOSED {json}`` when one ends.  Text is echoed as
text and binary as binary; a text message ``__close__ CODE [REASON]`` makes the server
close with that code.  Loopback only.
"""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
from collections.abc import Sequence
from typing import Any

from _peer_common import check_loopback, emit, server_arguments
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

CLOSE_COMMAND = re.compile(r"__close__ (\d+)(?: (.*))?", re.DOTALL)


async def main() -> None:
    args = server_arguments(__doc__ or "").parse_args()
    check_loopback(args.host)
    context: ssl.SSLContext | None = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_ca:
            context.load_verify_locations(args.tls_ca)
        if args.require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
    subprotocols = [Subprotocol(p) for p in args.subprotocols.split(",") if p]

    def select_subprotocol(
        ws: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """Our first preference the client offered; none (not a 400) when nothing matches."""
        return next((p for p in subprotocols if p in offered), None)

    async def handler(ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        peer_cert: Any = ws.transport.get_extra_info("peercert") if context else None
        client_cn = None
        if peer_cert:
            for rdn in peer_cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        client_cn = value
        response = ws.response
        emit(
            "REQUEST",
            {
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.raw_items()},
                "subprotocol": ws.subprotocol,
                "extensions": response.headers.get("Sec-WebSocket-Extensions", "")
                if response
                else "",
                "client_cert": client_cn,
            },
        )
        try:
            async for message in ws:
                if isinstance(message, str):
                    match = CLOSE_COMMAND.fullmatch(message)
                    if match:
                        await ws.close(int(match.group(1)), match.group(2) or "")
                        break
                await ws.send(message)
        except ConnectionClosed:
            pass
        emit("CLOSED", {"code": ws.close_code, "reason": ws.close_reason or ""})

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        args.host,
        args.port,
        ssl=context,
        select_subprotocol=select_subprotocol,
        compression="deflate" if args.deflate else None,
        max_size=256 * 1024 * 1024,
        ping_interval=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"READY {port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
