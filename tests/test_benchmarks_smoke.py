"""Smoke tests of the benchmark harness: it runs end to end on every runtime and prints its tables.

Correctness only: the numbers are not checked (timings belong in benchmarks, not tests).
The quick run measures every zenws adapter (asyncio on both loops, anyio on Trio, curio,
blocking sockets on threads) beside websockets and bare wsproto; the unit tests below check
that the one definition of the workloads runs on each runtime of ``benchmarks/runtimes.py``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import runtimes  # noqa: E402
import workloads  # noqa: E402

ZENWS_ADAPTERS = {
    "zenws": None,
    "zenws-trio": "trio",
    "zenws-curio": "curio",
    "zenws-sync": "threads",
}
SOCKET_IMPLEMENTATIONS = {"websockets", "wsproto", *ZENWS_ADAPTERS}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """One quick run on both loops: every zenws adapter, websockets, wsproto, zenws_core."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--loop",
            "uvloop,asyncio",
            "--only",
            ",".join([*sorted(SOCKET_IMPLEMENTATIONS), "zenws_core"]),
            "--idle-connections",
            "10",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text(encoding="utf-8"))


def test_quick_run_prints_ratio_tables_per_loop(quick_run: tuple[str, dict[str, Any]]) -> None:
    stdout, _ = quick_run
    for title in (
        "Server role (fixed client driver: picows on uvloop)",
        "Client role (fixed server: picows on uvloop)",
        "Core throughput without sockets",
    ):
        assert title in stdout
    for name in ZENWS_ADAPTERS:
        assert f" {name} " in stdout  # a column per adapter
    assert "(x1.00)" in stdout  # websockets is the reference column
    assert "times better than websockets on the same loop" in stdout
    own = next(line for line in stdout.splitlines() if line.startswith("own runtimes:"))
    for name, runtime in ZENWS_ADAPTERS.items():
        assert (f"{name} on {runtime}" in own) == (runtime is not None)
    assert "measured once, in the uvloop rows" in own
    # One row per loop for each socket workload: the loop column names both.
    rows = [line for line in stdout.splitlines() if "sequential echo 32 B" in line]
    assert sum("uvloop" in row for row in rows) == 2  # server and client tables
    assert sum(" asyncio " in row for row in rows) == 2


def test_quick_run_prints_the_settings_of_every_runtime(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, data = quick_run
    assert '"compression": null' in stdout
    settings = data["implementations"]
    assert settings["zenws"]["runtime"] == "uvloop, asyncio"
    assert settings["websockets"]["runtime"] == "uvloop, asyncio"
    assert settings["zenws-trio"]["adapter"] == "zenws_adapters.anyio"
    for name, runtime in ZENWS_ADAPTERS.items():
        assert settings[name]["compression"] is None
        if runtime is not None:
            assert settings[name]["runtime"] == runtime
    assert data["settings"]["loops"] == ["uvloop", "asyncio"]
    assert data["settings"]["fixed_loop"] == "uvloop"


def test_quick_run_measures_every_cell_once_per_runtime(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    _, data = quick_run
    rows = data["results"]
    assert not [row for row in rows if "error" in row]
    cells = collections.Counter(
        (row["role"], row["workload"], row["implementation"], row["loop"]) for row in rows
    )
    assert set(cells.values()) == {1}
    names = ("echo_32", "echo_1m", "pipelined_32", "concurrent_100", "connect", "idle_memory")
    for role in ("server", "client"):
        for name in names:
            for impl in SOCKET_IMPLEMENTATIONS:
                runtime = ZENWS_ADAPTERS.get(impl)
                loops = ["uvloop"] if runtime is not None else ["uvloop", "asyncio"]
                for loop in loops:
                    assert (role, name, impl, loop) in cells
                if runtime is not None:
                    assert (role, name, impl, "asyncio") not in cells
    for impl in ("websockets", "zenws_core"):
        assert ("core", "core_echo_32", impl, None) in cells
    for row in rows:
        assert row["value"] > 0 or row["unit"] == "KiB"  # RSS deltas can be noisy near 0
        expected_runtime = ZENWS_ADAPTERS.get(row["implementation"]) or row["loop"]
        assert row["runtime"] == expected_runtime
        if row["unit"] == "KiB" and row["ratio_to_websockets"] is None:
            # quick runs hold few connections: an RSS delta of 0 or less has no ratio
            reference = [
                r["value"]
                for r in rows
                if r["implementation"] == "websockets"
                and (r["role"], r["workload"], r["loop"])
                == (row["role"], row["workload"], row["loop"])
            ]
            assert row["value"] <= 0 or reference[0] <= 0
        elif row["implementation"] == "websockets":
            assert row["ratio_to_websockets"] == 1.0  # the reference of its own loop's row
        else:
            assert row["ratio_to_websockets"] > 0


def test_unknown_implementation_and_loop_are_rejected() -> None:
    for option, value, message in (
        ("--only", "nosuchlib", "unknown names: nosuchlib"),
        ("--loop", "uvloop,tokio", "unknown loop 'tokio'"),
    ):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "run.py"), option, value],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 2
        assert message in proc.stderr


# ----------------------------------------------------------------------- runtimes, in memory


class EchoConnection:
    """A ``BenchConnection`` that echoes in memory and never suspends (valid on every runtime)."""

    def __init__(self, corrupt_after: int | None = None) -> None:
        self.pending: collections.deque[bytes] = collections.deque()
        self.sent = 0
        self.closed = False
        self._corrupt_after = corrupt_after

    async def send(self, data: bytes) -> None:
        self.sent += 1
        if self._corrupt_after is not None and self.sent > self._corrupt_after:
            data = data[:-1] + b"?"
        self.pending.append(data)

    async def recv(self) -> bytes:
        return self.pending.popleft()

    async def close(self) -> None:
        self.closed = True


class EchoKit:
    def __init__(self, corrupt_after: int | None = None) -> None:
        self.opened: list[EchoConnection] = []
        self._corrupt_after = corrupt_after

    async def connect(self, host: str, port: int) -> EchoConnection:
        conn = EchoConnection(self._corrupt_after)
        self.opened.append(conn)
        return conn

    async def aclose(self) -> None:
        return None


RUNTIMES = ("uvloop", "asyncio", "trio", "curio", "threads")


def run_on(name: str, main: Callable[[runtimes.Runtime], Any]) -> Any:
    """Run ``main(rt)`` on the runtime ``name`` and return its result."""
    rt = runtimes.runtime_named(name)
    box: list[Any] = []

    async def wrapper() -> None:
        box.append(await main(rt))

    rt.run(wrapper)
    return box[0]


@pytest.mark.parametrize("name", RUNTIMES)
def test_every_workload_runs_on_every_runtime(name: str) -> None:
    kit = EchoKit()
    plan = [
        {"name": "e", "kind": "echo", "size": 1024, "count": 30},
        {"name": "p", "kind": "pipelined", "size": 32, "count": 250, "window": 100},
        {"name": "c", "kind": "concurrent", "size": 32, "count": 3, "connections": 60},
        {"name": "k", "kind": "connect", "count": 5},
        {"name": "i", "kind": "idle_memory", "count": 7},
    ]

    async def main(rt: runtimes.Runtime) -> list[dict[str, Any]]:
        return [await workloads.run_workload(rt, kit, "127.0.0.1", 1, spec) for spec in plan]

    results = run_on(name, main)
    assert [r["workload"] for r in results] == ["e", "p", "c", "k", "i"]
    assert [r["count"] for r in results] == [30, 250, 180, 5, 7]
    assert [r["unit"] for r in results] == ["msg/s", "msg/s", "msg/s", "ms", "KiB"]
    # echo + pipelined + 60 concurrent + 1 warm-up and 5 connects + 1 warm and 7 held.
    assert len(kit.opened) == 1 + 1 + 60 + 6 + 8
    assert all(conn.closed for conn in kit.opened)
    assert all(not conn.pending for conn in kit.opened)


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_wrong_echo_fails_the_workload_on_every_runtime(name: str) -> None:
    kit = EchoKit(corrupt_after=3)
    spec = {"name": "c", "kind": "concurrent", "size": 32, "count": 5, "connections": 4}

    async def main(rt: runtimes.Runtime) -> None:
        await workloads.run_workload(rt, kit, "127.0.0.1", 1, spec)

    with pytest.raises(AssertionError, match="echo mismatch"):
        run_on(name, main)


@pytest.mark.parametrize("name", RUNTIMES)
def test_gather_keeps_order_and_within_times_out(name: str) -> None:
    release = threading.Event()

    async def main(rt: runtimes.Runtime) -> tuple[list[int], str]:
        def job(value: int) -> Callable[[], Any]:
            async def run() -> int:
                return value * value

            return run

        squares = await rt.gather([job(n) for n in range(5)])

        async def stuck() -> None:
            if rt.name == "threads":
                release.wait(60)  # a blocked thread: released at the end of the test
            else:
                await rt.sleep_forever()

        try:
            await rt.within(0.05, stuck)
        except TimeoutError as exc:
            return squares, type(exc).__name__
        return squares, "no timeout"

    try:
        assert run_on(name, main) == ([0, 1, 4, 9, 16], "TimeoutError")
    finally:
        release.set()


def test_drive_refuses_a_coroutine_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspends"):
        runtimes.drive(suspends())
    assert runtimes.drive(_returns(7)) == 7


async def _returns(value: int) -> int:
    return value


FLOOR_ONLY = ["--only", "zenws,floor-callback,floor-task"]


def test_floor_probe_measures_servers_beside_both_floors() -> None:
    """``benchmarks/floor.py``: each server echoes (picows drives it) and gets a CPU row."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "floor.py"), "--count", "300", *FLOOR_ONLY],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {line.split("│")[1].strip() for line in proc.stdout.splitlines() if "│" in line}
    assert rows >= {"websockets", "zenws", "floor-callback", "floor-task"}
    assert "fixed cost of a round trip" in proc.stdout
    assert "1.30x websockets needs a server CPU per message of at most" in proc.stdout
