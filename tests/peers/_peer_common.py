"""Shared by the Python test peers (``websockets_*.py``): CLI options and payloads.

The message plan and payloads are byte-for-byte those of ``_client_common.js`` so the
Node and Python peers are interchangeable.  Not a peer on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

UTF8_CYCLE = ("é", "€", "😀", "ж", "a")
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
LOOPBACK_PREFIXES = ("127.", "::1", "localhost")


def payload(index: int, kind: str, size: int) -> str | bytes:
    """The ``index``-th planned message: ``bytes`` for binary, ``str`` for text/utf8."""
    if kind == "binary":
        return bytes((index * 31 + j) % 256 for j in range(size))
    if kind == "utf8":
        return "".join(UTF8_CYCLE[(index + j) % len(UTF8_CYCLE)] for j in range(size))
    if kind == "text":
        return "".join(ALPHABET[(index * 7 + j) % len(ALPHABET)] for j in range(size))
    raise ValueError(f"unknown message kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Planned:
    """One message of the plan."""

    kind: str
    data: str | bytes


def parse_send(spec: str) -> tuple[str, int]:
    """Parse ``KIND:SIZE`` (argparse type for ``--send``)."""
    kind, _, size = spec.partition(":")
    if kind not in ("text", "utf8", "binary") or not size.isdigit():
        raise argparse.ArgumentTypeError(f"bad --send {spec!r}: want text|utf8|binary:SIZE")
    return kind, int(size)


def make_plan(sends: list[tuple[str, int]], repeat: int) -> list[Planned]:
    """Expand ``--send``/``--repeat`` into the ordered list of messages."""
    specs = [s for _ in range(repeat) for s in sends]
    return [Planned(kind, payload(i, kind, size)) for i, (kind, size) in enumerate(specs)]


def check_loopback(host: str) -> None:
    """Exit with status 2 unless ``host`` is a loopback name (peers never leave the machine)."""
    if not host.strip("[]").startswith(LOOPBACK_PREFIXES):
        print(f"refusing non-loopback host {host}", file=sys.stderr)
        sys.exit(2)


def emit(tag: str, record: dict[str, Any]) -> None:
    """Print one ``TAG {json}`` line and flush (the echo servers' stdout protocol)."""
    print(f"{tag} {json.dumps(record)}", flush=True)


def server_arguments(description: str) -> argparse.ArgumentParser:
    """The echo servers' options (same as ``ws_echo_server.js``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--subprotocols", default="", help="comma-separated, in preference order")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-ca")
    p.add_argument("--require-client-cert", action="store_true")
    return p


def client_arguments(description: str) -> argparse.ArgumentParser:
    """The clients' options (same as ``_client_common.js``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("url")
    p.add_argument("--send", action="append", type=parse_send, default=[], dest="sends")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--subprotocol", action="append", default=[], dest="subprotocols")
    p.add_argument("--header", action="append", default=[], dest="headers")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--close-code", type=int, default=1000)
    p.add_argument("--close-reason", default="done")
    p.add_argument("--timeout", type=float, default=20.0)
    return p
