"""The ``zenws`` command line (typer + rich).

One typer app; each command is a function registered on ``app``, so later commands
(support, test, connect, status, send, monitor, benchmark) join the same way ``serve`` does.
Usage errors and bad values print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from zenws_core import ConnectionConfig, DeflateConfig, ServerConfig

from ._common import server_ssl_context

try:  # typer 0.2x vendors click as ``typer._click``; older typer uses click itself
    from typer._click import exceptions as _click
except ImportError:  # pragma: no cover
    import click.exceptions as _click  # type: ignore[no-redef, import-not-found, unused-ignore]

__all__ = ["app", "main"]

MiB = 1024 * 1024

app = typer.Typer(
    name="zenws",
    help="zenws: resilient WebSockets for Python.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def _root() -> None:
    """zenws: resilient WebSockets for Python."""


@app.command()
def serve(
    echo: Annotated[bool, typer.Option("--echo", help="Echo every message back.")] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8765,
    max_size: Annotated[
        int, typer.Option("--max-size", min=1, help="Largest message in bytes.")
    ] = 16 * MiB,
    tls_cert: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="TLS certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="TLS private key (PEM).")
    ] = None,
    no_compression: Annotated[
        bool, typer.Option("--no-compression", help="Refuse permessage-deflate.")
    ] = False,
) -> None:
    """Run the embedded server on the asyncio adapter until SIGINT/SIGTERM.

    Prints ``READY ws://HOST:PORT/`` once listening; GET /health and /status answer on
    the same port; shutdown closes every connection with 1001.
    """
    if not echo:
        raise _click.UsageError("nothing to serve: pass --echo")
    if tls_key is not None and tls_cert is None:
        raise typer.BadParameter("--tls-key needs --tls-cert", param_hint="--tls-key")
    ssl = None
    if tls_cert is not None:
        try:
            ssl = server_ssl_context(str(tls_cert), str(tls_key) if tls_key else None)
        except (OSError, ValueError) as exc:
            message = f"cannot load certificate: {exc}"
            raise typer.BadParameter(message, param_hint="--tls-cert") from None
    connection = ConnectionConfig(
        max_message_size=max_size, compression=None if no_compression else DeflateConfig()
    )
    from .asyncio import run

    try:
        run(_serve_echo(host, port, ssl, ServerConfig(connection=connection)))
    except OSError as exc:
        err.print(f"zenws serve: cannot listen on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(1) from None


async def _serve_echo(host: str, port: int, ssl: object, config: ServerConfig) -> None:
    from .asyncio import ServerWebSocket
    from .asyncio import serve as serve_ws

    async def echo(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve_ws(host, port, echo, ssl=ssl, config=config)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"READY {server.url}", flush=True)
    await stop.wait()
    await server.shutdown()


@app.command("test")
def connectivity_check(
    url: Annotated[
        str | None,
        typer.Argument(help="Server to test; omitted: an embedded echo server on 127.0.0.1."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds allowed for each step.")] = 10.0,
    messages: Annotated[int, typer.Option(min=1, max=100_000, help="Echo round trips.")] = 10,
    size: Annotated[int, typer.Option(min=0, max=16 * MiB, help="Bytes per message.")] = 1024,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Extra header 'Name: value'.")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Send 'Authorization: Bearer TOKEN'.")] = None,
    ca_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="CA bundle for wss://.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the server certificate.")
    ] = False,
) -> None:
    """Test connectivity: connect, echo text/binary/JSON, ping, request, close.

    Without URL it starts the embedded echo server on 127.0.0.1 and tests that, so a fresh
    install can check itself. Exits 0 when every step passed, 1 otherwise.
    """
    headers = [("authorization", f"Bearer {token}")] if token else []
    for item in header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected 'Name: value', got {item!r}", param_hint="--header")
        headers.append((name.strip().lower(), value.strip()))
    if url is not None:
        from zenws_core import parse_url

        try:
            parse_url(url)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="URL") from None
    from zenws_core import TLSConfig

    tls = TLSConfig(verify=not insecure, ca_file=str(ca_file) if ca_file else None)
    from .asyncio import run

    ok = run(_connectivity_test(url, timeout, messages, size, tuple(headers), tls))
    raise typer.Exit(0 if ok else 1)


async def _connectivity_test(
    url: str | None,
    timeout: float,
    messages: int,
    size: int,
    headers: tuple[tuple[str, str], ...],
    tls: object,
) -> bool:
    import time

    from rich.table import Table

    from zenws_core import ReconnectConfig

    from .asyncio import connect

    out = Console(highlight=False)
    server = None
    if url is None:
        server = await _embedded_echo_server()
        url = server.url
    table = Table(title=f"zenws test {url}")
    for column in ("step", "result", "time", "detail"):
        table.add_column(column)
    all_ok = True

    async def step(name: str, action: Any) -> Any:
        nonlocal all_ok
        started = time.perf_counter()
        try:
            detail = await asyncio.wait_for(action(), timeout)
        except Exception as exc:  # every failure becomes a row, never a traceback
            all_ok = False
            elapsed = (time.perf_counter() - started) * 1000
            reason = str(exc) or type(exc).__name__
            table.add_row(name, "[red]FAIL[/]", f"{elapsed:.1f} ms", reason)
            return None
        elapsed = (time.perf_counter() - started) * 1000
        table.add_row(name, "[green]ok[/]", f"{elapsed:.1f} ms", str(detail or ""))
        return detail

    client: Any = None

    async def do_connect() -> str:
        nonlocal client
        client = await connect(
            url,
            headers=headers,
            tls=tls,
            reconnect=ReconnectConfig(enabled=False),
            open_timeout=timeout,
        )
        return f"subprotocol={client.subprotocol}"

    async def echo_text() -> str:
        payload = ("zenws ✓ " * (size // 9 + 1))[: max(size // 2, 1)]
        for _ in range(messages):
            await client.send_text(payload)
            if await client.recv(timeout) != payload:
                raise ValueError("text echo differs")
        return f"{messages} x {len(payload.encode())} B"

    async def echo_binary() -> str:
        payload = bytes(i % 256 for i in range(size))
        for _ in range(messages):
            await client.send_bytes(payload)
            if await client.recv(timeout) != payload:
                raise ValueError("binary echo differs")
        return f"{messages} x {size} B"

    async def echo_json() -> str:
        await client.send_json({"type": "zenws.test", "data": [1, 2, 3]})
        reply = await client.recv(timeout)
        if not isinstance(reply, str) or '"zenws.test"' not in reply:
            raise ValueError(f"unexpected reply {reply!r:.60}")
        return "round trip"

    async def ping() -> str:
        rtt = await client.ping()
        return f"round trip {rtt * 1000:.2f} ms"

    async def request() -> str:
        reply = await client.request("zenws.test.request", {"n": 1}, timeout=timeout)
        return f"reply type {reply.type!r}"

    async def close() -> str:
        await client.close(1000, "zenws test done")
        return "1000"

    try:
        if await step("connect", do_connect) is not None:
            for name, action in (
                ("echo text", echo_text),
                ("echo binary", echo_binary),
                ("echo JSON", echo_json),
                ("ping", ping),
                ("request/response", request),
                ("close", close),
            ):
                await step(name, action)
            stats = client.stats()
            table.caption = (
                f"{stats.messages_out} messages out, {stats.messages_in} in; "
                f"drops: {dict(stats.drops) or 'none'}"
            )
    finally:
        if server is not None:
            await server.shutdown()
    out.print(table)
    out.print("[green]all steps passed[/]" if all_ok else "[red]some steps failed[/]")
    return all_ok


async def _embedded_echo_server() -> Any:
    from .asyncio import ServerWebSocket
    from .asyncio import serve as serve_ws

    async def echo(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return await serve_ws("127.0.0.1", 0, echo)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run ``app``; errors become one line and status 2."""
    command = typer.main.get_command(app)
    try:
        # standalone_mode=False: click returns typer.Exit's code instead of raising it
        result = command.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except _click.NoArgsIsHelpError as exc:
        err.print(exc.ctx.get_help() if exc.ctx is not None else "usage: zenws COMMAND")
        sys.exit(2)
    except _click.ClickException as exc:
        err.print(f"zenws: error: {exc.format_message()}")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
