"""What every echo-server peer and echo-client peer has in common, whatever its language.

All peers in ``tests/peers/`` speak one command line and one output format (see
``docs/testing.md``): servers print ``READY <port>``, ``REQUEST {json}`` and ``CLOSED {json}``;
clients take a message plan (``--send KIND:SIZE``) and print a JSON summary.  This module
turns those into typed handles so tests do not parse text themselves.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .certs import TestPKI
from .procs import ReadyProcess, RunResult

PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"

#: A message of a plan: ``("text" | "utf8" | "binary", size)``.
Send = tuple[str, int]


def _load_payload() -> Callable[[int, str, int], str | bytes]:
    spec = importlib.util.spec_from_file_location(
        "_zenws_peer_common", PEERS_DIR / "_peer_common.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return cast(Callable[[int, str, int], str | bytes], module.payload)


#: ``payload(index, kind, size)``: the exact message the peers send at position ``index``.
payload = _load_payload()


def plan(sends: Sequence[Send], repeat: int = 1) -> list[str | bytes]:
    """The messages a client peer sends for ``sends`` x ``repeat``, in order."""
    specs = [s for _ in range(repeat) for s in sends]
    return [payload(i, kind, size) for i, (kind, size) in enumerate(specs)]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What a client peer should do: the plan, handshake options, TLS files and close code."""

    sends: tuple[Send, ...] = (("text", 16), ("binary", 16))
    repeat: int = 1
    subprotocols: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    deflate: bool = False
    ca_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None
    close_code: int = 1000
    close_reason: str = "done"
    timeout: float = 20.0

    def argv(self, url: str) -> list[str]:
        """The command-line arguments every client peer understands."""
        args = [url]
        for kind, size in self.sends:
            args += ["--send", f"{kind}:{size}"]
        args += ["--repeat", str(self.repeat)]
        for proto in self.subprotocols:
            args += ["--subprotocol", proto]
        for name, value in self.headers:
            args += ["--header", f"{name}: {value}"]
        if self.deflate:
            args.append("--deflate")
        if self.ca_file is not None:
            args += ["--ca", str(self.ca_file)]
        if self.client_cert is not None:
            args += ["--cert", str(self.client_cert[0]), "--key", str(self.client_cert[1])]
        args += ["--close-code", str(self.close_code), "--close-reason", self.close_reason]
        args += ["--timeout", str(self.timeout)]
        return args


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """The JSON summary a client peer prints, plus its exit status and raw output."""

    ok: bool
    client: str
    sent: int
    echoed: int
    mismatches: tuple[int, ...]
    subprotocol: str | None
    extensions: str
    close_code: int | None
    close_reason: str | None
    error: str | None
    run: RunResult = field(repr=False)

    @classmethod
    def from_run(cls, run: RunResult) -> ClientSummary:
        """Parse the last JSON line of a client run."""
        data: dict[str, Any] = run.last_json()
        return cls(
            ok=bool(data["ok"]) and run.returncode == 0,
            client=data["client"],
            sent=data["sent"],
            echoed=data["echoed"],
            mismatches=tuple(data["mismatches"]),
            subprotocol=data["subprotocol"],
            extensions=data["extensions"] or "",
            close_code=data["close_code"],
            close_reason=data["close_reason"],
            error=data["error"],
            run=run,
        )


def server_argv(
    *,
    deflate: bool = False,
    subprotocols: Sequence[str] = (),
    pki: TestPKI | None = None,
    require_client_cert: bool = False,
) -> list[str]:
    """The command-line arguments every echo-server peer understands (port 0, loopback)."""
    args = ["--host", "127.0.0.1", "--port", "0"]
    if deflate:
        args.append("--deflate")
    if subprotocols:
        args += ["--subprotocols", ",".join(subprotocols)]
    if pki is not None:
        args += ["--tls-cert", str(pki.files.server_cert), "--tls-key", str(pki.files.server_key)]
        if require_client_cert:
            args += ["--tls-ca", str(pki.files.ca_cert), "--require-client-cert"]
    elif require_client_cert:
        raise ValueError("require_client_cert needs a PKI")
    return args


@dataclass(frozen=True, slots=True)
class EchoServer:
    """A running echo-server peer (Node ``ws``, Python ``websockets``, ...)."""

    process: ReadyProcess
    port: int
    tls: bool
    implementation: str

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return "127.0.0.1"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """``ws://`` or ``wss://`` URL; ``host`` may also be ``localhost`` or ``[::1]``."""
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{host}:{self.port}{path}"

    def requests(self) -> list[dict[str, Any]]:
        """Per accepted connection: path, headers, subprotocol, extensions, client_cert."""
        return cast(list[dict[str, Any]], self.process.json_lines("REQUEST"))

    def closes(self) -> list[dict[str, Any]]:
        """One ``{"code", "reason"}`` record per finished connection, in order."""
        return cast(list[dict[str, Any]], self.process.json_lines("CLOSED"))

    def wait_for_closes(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` connections have ended (bounded poll); return the records."""
        self.process.wait_for_line("CLOSED", count, timeout)
        return self.closes()
