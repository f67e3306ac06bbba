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
from typing import Annotated

import typer
from rich.console import Console

from zenws_core import ConnectionConfig, DeflateConfig, ServerConfig

from ._common import server_ssl_context

try:  # typer 0.2x vendors click as ``typer._click``; older typer uses click itself
    from typer._click import exceptions as _click
except ImportError:  # pragma: no cover
    import click.exceptions as _click  # type: ignore[no-redef]

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


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run ``app``; errors become one line and status 2."""
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv) if argv is not None else None, standalone_mode=False)
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
    sys.exit(0)
