#!/usr/bin/env python3
"""Autobahn|Testsuite client-mode driver for the zenws client on any adapter.

Walks the fuzzing server's client protocol: ``/getCaseCount`` (one text message, N), then
``/runCase?case=I&agent=AGENT`` for I in 1..N, echoing every message until the fuzzer
closes, then ``/updateReports?agent=AGENT`` (the fuzzer writes its reports).  Run it
through the harness, which starts the fuzzing server and sets ``AB_URL``::

    AB_CASES=quick tools/autobahn.sh client 9001 "python tools/autobahn_client.py --adapter asyncio"

The client is the ordinary zenws client (``connect(url, **options)``) with reconnection
and heartbeats off (every case is one connection the fuzzer ends on purpose), a 64 MiB
message limit (section 9 sends 16 MiB messages) and permessage-deflate offered (sections
12 and 13).  Prints one line per case only with ``--verbose``; the last line is a JSON
summary.  Exit status 0 unless the case count or the report update failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from zenws_core import (
    ConnectionConfig,
    DeflateConfig,
    HeartbeatConfig,
    QueueConfig,
    ReconnectConfig,
)

ADAPTERS = ("asyncio", "sync", "trio", "curio")
MiB = 1024 * 1024
#: Upper bound of one case (the slowest Autobahn cases take a few seconds).
CASE_TIMEOUT = 120.0


def client_options(*, deflate: bool) -> dict[str, Any]:
    """``connect()`` keywords for a conformance run: one connection per case, big messages."""
    return {
        "connection": ConnectionConfig(
            max_message_size=64 * MiB,
            compression=DeflateConfig() if deflate else None,
            close_timeout=5.0,
        ),
        "reconnect": ReconnectConfig(enabled=False),
        "heartbeat": HeartbeatConfig(interval=None),
        "queue": QueueConfig(max_bytes=128 * MiB),
        "track_unconfirmed": 1,
    }


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
    raise SystemExit(f"autobahn_client: no zenws adapter named {name!r} ({error})")


# ---------------------------------------------------------------------------- async runtimes


async def _async_fetch_text(module: Any, url: str, options: dict[str, Any]) -> str | None:
    """Connect, return the first message (or None once the server closed)."""
    async with await module.connect(url, **options) as client:
        async for message in client:
            return message if isinstance(message, str) else message.decode()
    return None


async def _async_echo(module: Any, url: str, options: dict[str, Any]) -> int:
    """One case: echo every message until the fuzzer closes; returns the message count."""
    echoed = 0
    try:
        client = await module.connect(url, **options)
    except (OSError, ConnectionError):
        return echoed  # the fuzzer may refuse or break the handshake on purpose
    async with client:
        async for message in client:
            try:
                if isinstance(message, str):
                    await client.send_text(message)
                else:
                    await client.send_bytes(message)
            except (OSError, ConnectionError):
                break  # closed under our feet: the case decides, not us
            echoed += 1
    return echoed


async def _async_main(
    module: Any, base: str, agent: str, args: argparse.Namespace
) -> dict[str, Any]:
    options = client_options(deflate=not args.no_deflate)
    count_text = await _async_fetch_text(module, f"{base}/getCaseCount", options)
    count = int(count_text or "0")
    echoed = 0
    for case in range(1, count + 1):
        started = time.monotonic()
        echoed += await _with_timeout(
            args.adapter, _async_echo(module, f"{base}/runCase?case={case}&agent={agent}", options)
        )
        if args.verbose:
            print(f"case {case}/{count} {time.monotonic() - started:.2f}s", flush=True)
    await _async_fetch_text(module, f"{base}/updateReports?agent={agent}", options)
    return {"cases": count, "echoed": echoed}


async def _with_timeout(adapter: str, coro: Any) -> Any:
    """Bound one case with the runtime's own timeout primitive."""
    if adapter == "asyncio":
        import asyncio

        async with asyncio.timeout(CASE_TIMEOUT):
            return await coro
    if adapter == "trio":
        import trio

        with trio.fail_after(CASE_TIMEOUT):
            return await coro
    import curio

    return await curio.timeout_after(CASE_TIMEOUT, coro)


# ---------------------------------------------------------------------------- blocking sockets


def _sync_fetch_text(module: Any, url: str, options: dict[str, Any]) -> str | None:
    with module.connect(url, **options) as client:
        for message in client:
            return message if isinstance(message, str) else message.decode()
    return None


def _sync_echo(module: Any, url: str, options: dict[str, Any]) -> int:
    echoed = 0
    deadline = time.monotonic() + CASE_TIMEOUT
    try:
        client = module.connect(url, **options)
    except (OSError, ConnectionError):
        return echoed
    with client:
        while True:
            try:
                message = client.recv(timeout=max(0.0, deadline - time.monotonic()))
            except ConnectionError:
                break  # closed: the iteration of a client ends the same way
            try:
                if isinstance(message, str):
                    client.send_text(message)
                else:
                    client.send_bytes(message)
            except (OSError, ConnectionError):
                break
            echoed += 1
    return echoed


def _sync_main(module: Any, base: str, agent: str, args: argparse.Namespace) -> dict[str, Any]:
    options = client_options(deflate=not args.no_deflate)
    count = int(_sync_fetch_text(module, f"{base}/getCaseCount", options) or "0")
    echoed = 0
    for case in range(1, count + 1):
        started = time.monotonic()
        echoed += _sync_echo(module, f"{base}/runCase?case={case}&agent={agent}", options)
        if args.verbose:
            print(f"case {case}/{count} {time.monotonic() - started:.2f}s", flush=True)
    _sync_fetch_text(module, f"{base}/updateReports?agent={agent}", options)
    return {"cases": count, "echoed": echoed}


# ---------------------------------------------------------------------------- entry point


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Drive every case with the chosen adapter; returns the summary."""
    module = adapter_module(args.adapter)
    base = args.url.rstrip("/")
    agent = args.agent or f"zenws-{args.adapter}"
    if args.adapter == "sync":
        return _sync_main(module, base, agent, args)
    main: Callable[[], Any] = lambda: _async_main(module, base, agent, args)  # noqa: E731
    if args.adapter == "asyncio":
        if args.uvloop:
            import uvloop

            return uvloop.run(main())
        import asyncio

        return asyncio.run(main())
    if args.adapter == "trio":
        import trio

        return trio.run(main)
    import curio

    return curio.run(main)  # type: ignore[no-any-return]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", choices=ADAPTERS, default="asyncio")
    parser.add_argument(
        "--url",
        default=os.environ.get("AB_URL", "ws://127.0.0.1:9001"),
        help="the fuzzing server (default: $AB_URL, set by tools/autobahn.sh client)",
    )
    parser.add_argument("--agent", default=None, help="agent name (default zenws-ADAPTER)")
    parser.add_argument("--no-deflate", action="store_true", help="do not offer compression")
    parser.add_argument("--uvloop", action="store_true", help="asyncio adapter on uvloop")
    parser.add_argument("--verbose", action="store_true", help="one line per case")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    summary = run(args)
    summary.update(adapter=args.adapter, seconds=round(time.monotonic() - started, 1))
    print(json.dumps(summary), flush=True)
    return 0 if summary["cases"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
