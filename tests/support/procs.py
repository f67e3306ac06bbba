"""Subprocess plumbing for tests that talk to real peers over 127.0.0.1.

A peer program announces that it is ready by printing one line that starts with
``READY`` (for example ``READY 40123``).  :func:`start_ready_process` starts it, waits
for that line with a timeout, keeps draining its output in the background so the
pipes never fill, and always kills the whole process group when the ``with`` block
ends.  Every process started here is registered so :func:`reap_all` (called by the
session fixture) can prove that no test leaked one.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: Upper bound for any peer to print READY; generous because CI machines are slow.
DEFAULT_READY_TIMEOUT = 20.0
#: Upper bound for a one-shot client run.
DEFAULT_RUN_TIMEOUT = 30.0

_LIVE: dict[int, subprocess.Popen[str]] = {}
_LIVE_LOCK = threading.Lock()


class PeerError(RuntimeError):
    """A peer process did not start, did not become ready, or failed."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago.

    Prefer ``--port 0`` plus the port the peer reports in its READY line: a port
    returned here can in principle be taken by someone else before it is used.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
    """Block until a TCP connect to ``host:port`` succeeds, or raise :class:`PeerError`."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise PeerError(f"{host}:{port} did not accept connections within {timeout}s: {last}")


def _register(proc: subprocess.Popen[str]) -> None:
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc


def _unregister(proc: subprocess.Popen[str]) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)


def kill_process(proc: subprocess.Popen[str], grace: float = 3.0) -> None:
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL after ``grace`` seconds.

    Only the group of this one process id is signalled (peers run in their own session).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    else:
        # The leader is gone; make sure nothing it spawned survives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _unregister(proc)


def live_processes() -> list[int]:
    """Process ids started through this module that have not been reaped yet."""
    with _LIVE_LOCK:
        return sorted(pid for pid, proc in _LIVE.items() if proc.poll() is None)


def reap_all() -> list[int]:
    """Kill every process still registered; return the ids that were still running."""
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    leaked = [proc.pid for proc in procs if proc.poll() is None]
    for proc in procs:
        kill_process(proc)
    return leaked


def _pump(stream: IO[str], sink: list[str], lines: queue.Queue[str | None] | None) -> None:
    """Copy lines from ``stream`` into ``sink`` (and ``lines``) until EOF."""
    try:
        for raw in stream:
            line = raw.rstrip("\r\n")
            sink.append(line)
            if lines is not None:
                lines.put(line)
    except ValueError:  # stream closed under us during teardown
        pass
    finally:
        if lines is not None:
            lines.put(None)


class ReadyProcess:
    """A running peer process whose stdout and stderr are collected line by line."""

    def __init__(self, proc: subprocess.Popen[str], argv: Sequence[str]) -> None:
        self.proc = proc
        self.argv = list(argv)
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.ready_line = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._threads = [
            threading.Thread(
                target=_pump, args=(proc.stdout, self.stdout_lines, self._lines), daemon=True
            ),
            threading.Thread(
                target=_pump, args=(proc.stderr, self.stderr_lines, None), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        """The operating-system process id."""
        return self.proc.pid

    @property
    def ready_fields(self) -> list[str]:
        """The words after ``READY`` on the ready line (e.g. ``["40123"]``)."""
        return self.ready_line.split()[1:]

    @property
    def port(self) -> int:
        """The first READY field as a port number (the convention of every zenws test peer)."""
        fields = self.ready_fields
        if not fields:
            raise PeerError(f"READY line has no port: {self.ready_line!r}")
        return int(fields[0])

    def wait_ready(self, prefix: str, timeout: float) -> str:
        """Wait for the first stdout line starting with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerError(self.describe(f"no {prefix!r} line within {timeout}s"))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                raise PeerError(self.describe(f"exited ({self.proc.returncode}) before {prefix}"))
            if line.startswith(prefix):
                self.ready_line = line
                return line

    def lines_with_prefix(self, prefix: str) -> list[str]:
        """Stdout lines (collected so far) that start with ``prefix``, prefix removed."""
        return [
            line[len(prefix) :].strip() for line in self.stdout_lines if line.startswith(prefix)
        ]

    def json_lines(self, prefix: str) -> list[Any]:
        """Stdout lines ``PREFIX {json}`` decoded (e.g. an echo server's ``REQUEST`` records)."""
        return [json.loads(rest) for rest in self.lines_with_prefix(prefix)]

    def wait_for_line(self, prefix: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Block until at least ``count`` stdout lines start with ``prefix``; return them.

        Used to wait for log records the peer writes *after* an event (a bounded poll,
        never a timing assertion).
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines_with_prefix(prefix)
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise PeerError(self.describe(f"{count} x {prefix!r} not seen within {timeout}s"))
            time.sleep(0.02)

    def stop(self) -> int:
        """Kill the process (group) and wait for the output pumps; return the exit status."""
        kill_process(self.proc)
        for thread in self._threads:
            thread.join(timeout=5)
        return self.proc.returncode

    def describe(self, what: str) -> str:
        out = "\n".join(self.stdout_lines[-20:])
        err = "\n".join(self.stderr_lines[-20:])
        return f"{self.argv!r}: {what}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


def _popen(
    argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | Path | None
) -> subprocess.Popen[str]:
    full_env = dict(os.environ)
    # Never let a developer's proxy settings divert loopback test traffic.
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        full_env.pop(name, None)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )
    _register(proc)
    return proc


@contextlib.contextmanager
def start_ready_process(
    argv: Sequence[str],
    *,
    ready_prefix: str | None = "READY",
    timeout: float = DEFAULT_READY_TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> Iterator[ReadyProcess]:
    """Start ``argv``, wait for its ``READY ...`` line, yield it, and always kill it after.

    Raises :class:`PeerError` (with the peer's last output) if it exits or stays silent.
    With ``ready_prefix=None`` it does not wait (the caller checks readiness its own way).
    """
    proc = _popen(argv, env, cwd)
    peer = ReadyProcess(proc, argv)
    try:
        if ready_prefix is not None:
            peer.wait_ready(ready_prefix, timeout)
        yield peer
    finally:
        peer.stop()


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of a one-shot peer run (a client that exits on its own)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def last_json(self) -> Any:
        """Decode the last stdout line that parses as JSON (the peers' summary line)."""
        for line in reversed(self.stdout.splitlines()):
            text = line.strip()
            if text.startswith(("{", "[")):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    continue
        raise PeerError(
            f"no JSON summary in output of {self.argv!r}:\n{self.stdout}\n{self.stderr}"
        )

    def check(self) -> RunResult:
        """Raise :class:`PeerError` unless the run exited with status 0; return self."""
        if self.returncode != 0:
            raise PeerError(
                f"{self.argv!r} exited {self.returncode}\n--- stdout ---\n{self.stdout}"
                f"\n--- stderr ---\n{self.stderr}"
            )
        return self


def run_process(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_RUN_TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> RunResult:
    """Run ``argv`` to completion (killed after ``timeout`` seconds) and collect its output.

    A run that times out raises :class:`PeerError`; a non-zero exit is reported in the
    result (call :meth:`RunResult.check` to turn it into an error).
    """
    proc = _popen(argv, env, cwd)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process(proc)
        stdout, stderr = proc.communicate()
        raise PeerError(
            f"{list(argv)!r} did not finish within {timeout}s\n--- stdout ---\n{stdout}"
            f"\n--- stderr ---\n{stderr}"
        ) from None
    finally:
        kill_process(proc)
    return RunResult(tuple(argv), proc.returncode, stdout, stderr)
