"""Python ``websockets`` peers, as subprocesses or inside the test process.

Subprocess peers (``tests/peers/websockets_echo_server.py`` / ``websockets_client.py``) share
the command line and output of the Node peers, so a test can parametrize over both.
In-process peers (:func:`threaded_echo_server`, :func:`echo_roundtrip`) use the sync API of
``websockets`` on a background thread: cheaper to start, and handy when a test wants to
look at the server's state directly.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from .certs import TestPKI
from .echo import PEERS_DIR, ClientOptions, ClientSummary, EchoServer, server_argv
from .procs import DEFAULT_READY_TIMEOUT, PeerError, run_process, start_ready_process

REPO = PEERS_DIR.parent.parent


@contextlib.contextmanager
def start_websockets_echo_server(
    *,
    deflate: bool = False,
    subprotocols: Sequence[str] = (),
    pki: TestPKI | None = None,
    require_client_cert: bool = False,
    timeout: float = DEFAULT_READY_TIMEOUT,
) -> Iterator[EchoServer]:
    """Run ``websockets_echo_server.py`` in a subprocess (same contract as the Node one)."""
    argv = [sys.executable, str(PEERS_DIR / "websockets_echo_server.py")]
    argv += server_argv(
        deflate=deflate, subprotocols=subprotocols, pki=pki, require_client_cert=require_client_cert
    )
    with start_ready_process(argv, timeout=timeout, cwd=REPO) as proc:
        yield EchoServer(proc, proc.port, tls=pki is not None, implementation="websockets")


def run_websockets_client(
    url: str,
    options: ClientOptions | None = None,
    *,
    proxy: str | None = None,
    timeout: float | None = None,
) -> ClientSummary:
    """Run ``websockets_client.py`` against ``url`` (through the CONNECT ``proxy`` if given)."""
    opts = options or ClientOptions()
    argv = [sys.executable, str(PEERS_DIR / "websockets_client.py"), *opts.argv(url)]
    if proxy is not None:
        argv += ["--proxy", proxy]
    run = run_process(argv, timeout=timeout or opts.timeout + 10, cwd=REPO)
    return ClientSummary.from_run(run)


@dataclass
class ThreadedEchoServer:
    """An in-process ``websockets`` echo server running on its own thread."""

    server: Server
    port: int
    tls: bool
    #: ``(path, headers)`` of every accepted handshake, appended by the server thread.
    requests: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    #: ``(code, reason)`` of every finished connection.
    closes: list[tuple[int | None, str | None]] = field(default_factory=list)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """``ws://`` or ``wss://`` URL of the server."""
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}{path}"

    def wait_for_closes(
        self, count: int, timeout: float = 10.0
    ) -> list[tuple[int | None, str | None]]:
        """Block until ``count`` connections have ended (the handler records them a moment
        after the client sees the close); a bounded poll, never a timing assertion."""
        deadline = time.monotonic() + timeout
        while len(self.closes) < count:
            if time.monotonic() >= deadline:
                raise PeerError(f"only {len(self.closes)} of {count} connections ended")
            time.sleep(0.01)
        return list(self.closes)


@contextlib.contextmanager
def threaded_echo_server(
    *,
    ssl_context: ssl.SSLContext | None = None,
    deflate: bool = False,
    subprotocols: Sequence[str] = (),
) -> Iterator[ThreadedEchoServer]:
    """Serve an echo endpoint on 127.0.0.1 from a background thread; shut it down after."""
    protos = [Subprotocol(p) for p in subprotocols]
    state: dict[str, ThreadedEchoServer] = {}

    def select(conn: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        return next((p for p in protos if p in offered), None)

    def handler(conn: ServerConnection) -> None:
        echo = state["echo"]
        request = conn.request
        if request is not None:
            echo.requests.append((request.path, list(request.headers.raw_items())))
        try:
            for message in conn:
                conn.send(message)
        except ConnectionClosed:
            pass
        echo.closes.append((conn.close_code, conn.close_reason))

    server = serve(
        handler,
        "127.0.0.1",
        0,
        ssl=ssl_context,
        select_subprotocol=select,
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_size=256 * 1024 * 1024,
    )
    echo = ThreadedEchoServer(server, server.socket.getsockname()[1], ssl_context is not None)
    state["echo"] = echo
    thread = threading.Thread(target=server.serve_forever, name="websockets-echo", daemon=True)
    thread.start()
    try:
        yield echo
    finally:
        server.shutdown()
        thread.join(timeout=10)


def echo_roundtrip(
    url: str,
    messages: Sequence[str | bytes],
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    proxy: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Connect with ``websockets`` (in this process), send each message, collect the echoes.

    Returns ``{"echoes": [...], "subprotocol": ..., "close_code": ...}``; raises whatever
    ``websockets`` raises on failure (a test of a failing handshake expects that).
    """
    with connect(
        url,
        ssl=ssl_context,
        subprotocols=[Subprotocol(p) for p in subprotocols] or None,
        proxy=proxy,
        open_timeout=timeout,
        close_timeout=timeout,
        ping_interval=None,
        max_size=256 * 1024 * 1024,
    ) as ws:
        echoes = []
        for message in messages:
            ws.send(message)
            echoes.append(ws.recv(timeout=timeout))
        ws.close()
        return {"echoes": echoes, "subprotocol": ws.subprotocol, "close_code": ws.close_code}
