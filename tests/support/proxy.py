"""A real HTTP CONNECT proxy (proxy.py from PyPI) on 127.0.0.1 for proxy-traversal tests.

:func:`start_http_proxy` runs ``python -m proxy`` on an ephemeral port with one worker and
the ``tests/peers/proxy_connect_log.py`` plugin, which appends every proxied request to a
JSON-lines log.  A test reads :meth:`HttpProxy.connects` to prove its WebSocket went
through the proxy (a CONNECT to the server's host and port), not around it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .procs import (
    DEFAULT_READY_TIMEOUT,
    PeerError,
    ReadyProcess,
    start_ready_process,
    wait_for_port,
)

PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """One request the proxy forwarded (or refused): method and upstream host/port."""

    method: str
    host: str
    port: int | None
    allowed: bool


@dataclass(frozen=True, slots=True)
class HttpProxy:
    """A running proxy: where it listens and what it has seen."""

    host: str
    port: int
    log_path: Path
    process: ReadyProcess
    #: ``(user, password)`` when the proxy demands Basic authentication.
    basic_auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no credentials)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        """``http://user:password@127.0.0.1:PORT`` (or :attr:`url` without authentication)."""
        if self.basic_auth is None:
            return self.url
        user, password = self.basic_auth
        return f"http://{user}:{password}@{self.host}:{self.port}"

    @property
    def authorization_header(self) -> str | None:
        """The ``Proxy-Authorization`` value the proxy accepts, if it needs one."""
        if self.basic_auth is None:
            return None
        token = base64.b64encode(":".join(self.basic_auth).encode()).decode("ascii")
        return f"Basic {token}"

    def requests(self) -> list[ProxyRequest]:
        """Every request the proxy has forwarded or refused so far, in order."""
        if not self.log_path.exists():
            return []
        result = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                result.append(ProxyRequest(rec["method"], rec["host"], rec["port"], rec["allowed"]))
        return result

    def connects(self, port: int | None = None) -> list[ProxyRequest]:
        """The CONNECT requests seen so far, optionally only those to upstream ``port``."""
        return [
            r for r in self.requests() if r.method == "CONNECT" and (port is None or r.port == port)
        ]

    def wait_for_connects(self, count: int, port: int | None = None, timeout: float = 10.0) -> None:
        """Block until ``count`` CONNECTs were logged (a bounded poll, not a timing test)."""
        deadline = time.monotonic() + timeout
        while len(self.connects(port)) < count:
            if time.monotonic() >= deadline:
                raise PeerError(f"proxy saw {self.connects(port)}, expected {count} CONNECT(s)")
            time.sleep(0.02)


@contextlib.contextmanager
def start_http_proxy(
    workdir: Path,
    *,
    basic_auth: tuple[str, str] | None = None,
    timeout: float = DEFAULT_READY_TIMEOUT,
    idle_timeout: int = 60,
) -> Iterator[HttpProxy]:
    """Run proxy.py on 127.0.0.1 (ephemeral port) until the ``with`` block ends.

    ``workdir`` receives the port file and the request log.  With ``basic_auth`` the proxy
    answers 407 unless the client sends matching ``Proxy-Authorization``.  ``idle_timeout``
    is how long the proxy keeps a silent tunnel open.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "proxy.port"
    log_path = workdir / "proxy-requests.jsonl"
    for stale in (port_file, log_path):
        stale.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "proxy",
        "--hostname",
        "127.0.0.1",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--num-acceptors",
        "1",
        "--num-workers",
        "1",
        "--timeout",
        str(idle_timeout),
        "--log-level",
        "WARNING",
        "--data-dir",
        str(workdir / "proxy-data"),
        "--pid-file",
        str(workdir / "proxy.pid"),
        "--plugins",
        "proxy_connect_log.ConnectLogPlugin",
    ]
    if basic_auth is not None:
        argv += ["--basic-auth", ":".join(basic_auth)]
    pythonpath = os.pathsep.join(p for p in (str(PEERS_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": pythonpath, "ZENWS_PROXY_LOG": str(log_path)}
    with start_ready_process(argv, ready_prefix=None, env=env, cwd=workdir) as process:
        port = _wait_port_file(port_file, process, timeout)
        wait_for_port("127.0.0.1", port, timeout)
        yield HttpProxy("127.0.0.1", port, log_path, process, basic_auth)


def _wait_port_file(path: Path, process: ReadyProcess, timeout: float) -> int:
    """Read the port proxy.py writes once it listens (``--port-file``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise PeerError(
                f"proxy.py exited {process.proc.returncode}: {process.stderr_lines[-20:]}"
            )
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text().split()
            if text:
                return int(text[0])
        time.sleep(0.05)
    raise PeerError(f"proxy.py wrote no port file within {timeout}s: {process.stderr_lines[-20:]}")
