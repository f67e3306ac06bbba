"""Node.js peers: the ``ws`` package (installed on demand) and Node's built-in WebSocket.

:func:`ensure_node_peers` runs ``tools/install-node-peers.sh`` once per test session; it
installs the pinned ``ws`` from the npm registry into ``.cache/node-peers`` and is a no-op
when it is already there.  :func:`start_node_echo_server` runs ``tests/peers/ws_echo_server.js``
and :func:`run_node_client` runs ``ws_client.js`` or ``native_client.js`` with a timeout.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from .certs import TestPKI
from .echo import PEERS_DIR, ClientOptions, ClientSummary, EchoServer, server_argv
from .procs import DEFAULT_READY_TIMEOUT, PeerError, run_process, start_ready_process

REPO = PEERS_DIR.parent.parent
INSTALLER = REPO / "tools" / "install-node-peers.sh"
NODE = shutil.which("node") or "/usr/bin/node"


@functools.cache
def ensure_node_peers() -> Path:
    """Install (if needed) and return the ``node_modules`` folder holding ``ws``."""
    try:
        done = subprocess.run(
            ["bash", str(INSTALLER)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{INSTALLER} did not finish in 300s") from exc
    if done.returncode != 0:
        raise PeerError(f"{INSTALLER} failed ({done.returncode}):\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


def node_env(ca_file: Path | None = None) -> dict[str, str]:
    """Environment for a Node peer: ``NODE_PATH`` to ``ws`` and, for TLS, the extra CA."""
    env = {"NODE_PATH": str(ensure_node_peers())}
    if ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca_file)
    # A developer's NODE_OPTIONS (inspectors, loaders) must not leak into peers.
    env["NODE_OPTIONS"] = ""
    return env


@contextlib.contextmanager
def start_node_echo_server(
    *,
    deflate: bool = False,
    subprotocols: Sequence[str] = (),
    pki: TestPKI | None = None,
    require_client_cert: bool = False,
    timeout: float = DEFAULT_READY_TIMEOUT,
) -> Iterator[EchoServer]:
    """Run the ``ws`` echo server on 127.0.0.1 (ephemeral port; ``wss`` when given a PKI)."""
    argv = [NODE, str(PEERS_DIR / "ws_echo_server.js")]
    argv += server_argv(
        deflate=deflate, subprotocols=subprotocols, pki=pki, require_client_cert=require_client_cert
    )
    with start_ready_process(argv, env=node_env(), timeout=timeout, cwd=REPO) as proc:
        yield EchoServer(proc, proc.port, tls=pki is not None, implementation="node-ws")


def run_node_client(
    url: str,
    options: ClientOptions | None = None,
    *,
    native: bool = False,
    timeout: float | None = None,
) -> ClientSummary:
    """Run ``ws_client.js`` (or Node's built-in WebSocket with ``native``) against ``url``.

    The run is killed after ``timeout`` (default: the client's own timeout + 10 s).  For
    ``wss`` the native client trusts ``options.ca_file`` through ``NODE_EXTRA_CA_CERTS``.
    """
    opts = options or ClientOptions()
    if native:
        if opts.headers or opts.client_cert or opts.deflate:
            raise ValueError(
                "Node's built-in WebSocket takes no headers, client cert or deflate flag"
            )
        argv = [
            NODE,
            "--experimental-websocket",
            "--no-warnings",
            str(PEERS_DIR / "native_client.js"),
        ]
        argv += ClientOptions(
            sends=opts.sends,
            repeat=opts.repeat,
            subprotocols=opts.subprotocols,
            close_code=opts.close_code,
            close_reason=opts.close_reason,
            timeout=opts.timeout,
        ).argv(url)
        env = node_env(ca_file=opts.ca_file)
    else:
        argv = [NODE, str(PEERS_DIR / "ws_client.js"), *opts.argv(url)]
        env = node_env()
    run = run_process(argv, env=env, timeout=timeout or opts.timeout + 10, cwd=REPO)
    return ClientSummary.from_run(run)


def node_major_version() -> int:
    """The major version of the ``node`` binary (the native client needs 20+)."""
    out = subprocess.run(
        [NODE, "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    return int(out.stdout.strip().lstrip("v").split(".")[0])


__all__ = [
    "NODE",
    "ensure_node_peers",
    "node_env",
    "node_major_version",
    "run_node_client",
    "start_node_echo_server",
]
