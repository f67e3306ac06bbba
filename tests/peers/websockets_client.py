"""Test peer: the ``ws_client.js`` client on the Python ``websockets`` library (sync API).

Connects to URL, sends each planned message, waits for its echo and compares it, closes,
prints one JSON summary line and exits 0 only if every echo matched and the close handshake
finished.  Extra option ``--proxy URL`` tunnels through an HTTP CONNECT proxy.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.parse
from typing import Any

from _peer_common import check_loopback, client_arguments, make_plan
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol


def main() -> int:
    parser = client_arguments(__doc__ or "")
    parser.add_argument("--proxy", default=None, help="http://host:port of a CONNECT proxy")
    args = parser.parse_args()
    check_loopback(urllib.parse.urlsplit(args.url).hostname or "")
    plan = make_plan(args.sends or [("text", 16), ("binary", 16)], args.repeat)
    summary: dict[str, Any] = {
        "ok": False,
        "client": "websockets",
        "sent": 0,
        "echoed": 0,
        "mismatches": [],
        "subprotocol": None,
        "extensions": "",
        "close_code": None,
        "close_reason": None,
        "error": None,
    }
    context: ssl.SSLContext | None = None
    if args.url.startswith("wss:"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if args.ca:
            context.load_verify_locations(args.ca)
        else:
            context.load_default_certs()
        if args.cert:
            context.load_cert_chain(args.cert, args.key)
    headers = [tuple(h.split(":", 1)) for h in args.headers]
    try:
        with connect(
            args.url,
            ssl=context,
            subprotocols=[Subprotocol(p) for p in args.subprotocols] or None,
            additional_headers=[(k.strip(), v.strip()) for k, v in headers],
            compression="deflate" if args.deflate else None,
            proxy=args.proxy,
            open_timeout=args.timeout,
            close_timeout=args.timeout,
            max_size=256 * 1024 * 1024,
            ping_interval=None,
        ) as ws:
            summary["subprotocol"] = ws.subprotocol
            if ws.response is not None:
                summary["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            for index, message in enumerate(plan):
                ws.send(message.data)
                summary["sent"] += 1
                got = ws.recv(timeout=args.timeout)
                if got != message.data:
                    summary["mismatches"].append(index)
                summary["echoed"] += 1
            ws.close(args.close_code, args.close_reason)
            summary["close_code"] = ws.close_code
            summary["close_reason"] = ws.close_reason
    except (OSError, ConnectionClosed, TimeoutError, ssl.SSLError) as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # the handshake failures of websockets (InvalidStatus, ...)
        summary["error"] = f"{type(exc).__name__}: {exc}"
    summary["ok"] = (
        summary["error"] is None
        and not summary["mismatches"]
        and summary["echoed"] == len(plan)
        and summary["close_code"] == args.close_code
    )
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
