#!/usr/bin/env python3
"""Start a zenws echo server on a chosen adapter, for Autobahn's server mode.

    python tools/autobahn_server.py --adapter asyncio --port 9002   # = zenws serve --echo
    python tools/autobahn_server.py --adapter trio --port 0

Prints exactly one line ``READY ws://HOST:PORT/`` once listening (the same line as
``zenws serve --echo``), then echoes every message (text as text, binary as binary, up to
64 MiB, permessage-deflate accepted when offered) until SIGINT/SIGTERM.  With
``--adapter asyncio`` it runs the project's own command, ``zenws serve --echo``, so the
conformance run covers exactly what users start; ``--no-cli`` uses the in-file echo
handler on the asyncio adapter instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any

from zenws_core import ConnectionConfig, DeflateConfig, ServerConfig

ADAPTERS = ("asyncio", "sync", "trio", "curio")
MiB = 1024 * 1024


def server_config(*, deflate: bool) -> ServerConfig:
    """An echo server for conformance: big messages, compression when offered."""
    return ServerConfig(
        connection=ConnectionConfig(
            max_message_size=64 * MiB,
            compression=DeflateConfig() if deflate else None,
        )
    )


def adapter_module(name: str) -> Any:
    """The adapter's module; the Trio adapter may be named ``trio`` or ``anyio``."""
    candidates = {"trio": ("trio", "anyio")}.get(name, (name,))
    error: ImportError | None = None
    for module in candidates:
        try:
            return importlib.import_module(f"zenws_adapters.{module}")
        except ImportError as exc:
            if exc.name is not None and not exc.name.startswith("zenws_adapters"):
                raise
            error = exc
    raise SystemExit(f"autobahn_server: no zenws adapter named {name!r} ({error})")


def ready(host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"READY ws://{shown}:{port}/", flush=True)


# ---------------------------------------------------------------------------- async runtimes


async def _echo_async(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def _serve_async(module: Any, args: argparse.Namespace, forever: Any) -> None:
    server = await module.serve(
        args.host, args.port, _echo_async, config=server_config(deflate=not args.no_deflate)
    )
    ready(args.host, server.port)
    try:
        await forever()
    finally:
        await server.shutdown()


def _run_asyncio(module: Any, args: argparse.Namespace) -> None:
    import asyncio

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await _serve_async(module, args, stop.wait)

    asyncio.run(main())


def _run_trio(module: Any, args: argparse.Namespace) -> None:
    import trio

    async def main() -> None:
        async def until_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    return

        await _serve_async(module, args, until_signal)

    trio.run(main)


def _run_curio(module: Any, args: argparse.Namespace) -> None:
    import curio

    async def main() -> None:
        stop = curio.UniversalEvent()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        await _serve_async(module, args, stop.wait)

    curio.run(main)


# ---------------------------------------------------------------------------- blocking sockets


def _echo_sync(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def _run_sync(module: Any, args: argparse.Namespace) -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: stop.set())
    server = module.serve(
        args.host, args.port, _echo_sync, config=server_config(deflate=not args.no_deflate)
    )
    ready(args.host, server.port)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()


# ---------------------------------------------------------------------------- entry point


def cli_argv(args: argparse.Namespace) -> list[str]:
    """The ``zenws serve --echo`` command line for these options."""
    argv = [sys.executable, "-m", "zenws_adapters", "serve", "--echo"]
    argv += ["--host", args.host, "--port", str(args.port), "--max-size", str(64 * MiB)]
    if args.no_deflate:
        argv.append("--no-compression")
    return argv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", choices=ADAPTERS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-deflate", action="store_true", help="refuse compression")
    parser.add_argument(
        "--no-cli", action="store_true", help="asyncio: in-file echo instead of zenws serve"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.adapter == "asyncio" and not args.no_cli:
        argv_cli = cli_argv(args)
        os.execv(argv_cli[0], argv_cli)
    module = adapter_module(args.adapter)
    runner = {"asyncio": _run_asyncio, "trio": _run_trio, "curio": _run_curio}
    runner.get(args.adapter, _run_sync)(module, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
