"""Client-side workloads, written once against ``peers.BenchConnection``.

Each workload takes a spec (a JSON-able dict built by ``run.py``) and returns a result dict
``{"workload", "value", "unit", "count", "elapsed"}``.  Every echoed payload is checked, so a
broken implementation fails loudly instead of looking fast.  Timings use
``time.perf_counter``; a short untimed warm-up precedes each throughput measurement.

Concurrency goes through a ``runtimes.Runtime`` (``gather``), so the same code runs on
asyncio, uvloop, Trio, curio, and on threads for the blocking-sockets adapter.
"""

from __future__ import annotations

import time
from typing import Any

from peers import BenchConnection, ClientKit
from runtimes import Job, Runtime

#: Connections opened concurrently at a time (stays under every server's listen backlog).
OPEN_BATCH = 50


def payload_of(size: int) -> bytes:
    """A deterministic, non-repetitive-looking payload (no compression anywhere anyway)."""
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


async def echo_once(conn: BenchConnection, payload: bytes) -> None:
    await conn.send(payload)
    reply = await conn.recv()
    if reply != payload:
        raise AssertionError(f"echo mismatch: sent {len(payload)} B, got {len(reply)} B")


async def sequential_echo(conn: BenchConnection, payload: bytes, count: int) -> None:
    for _ in range(count):
        await echo_once(conn, payload)


async def pipelined_echo(conn: BenchConnection, payload: bytes, count: int, window: int) -> None:
    """Keep ``window`` messages in flight until ``count`` echoes came back."""
    sent = received = 0
    while sent < min(window, count):
        await conn.send(payload)
        sent += 1
    while received < count:
        reply = await conn.recv()
        if reply != payload:
            raise AssertionError("pipelined echo mismatch")
        received += 1
        if sent < count:
            await conn.send(payload)
            sent += 1


async def open_many(
    rt: Runtime, kit: ClientKit, host: str, port: int, count: int
) -> list[BenchConnection]:
    """Open ``count`` connections (in batches) and echo 32 B on each so the server is set up."""
    conns: list[BenchConnection] = []
    probe = payload_of(32)

    async def open_one() -> BenchConnection:
        conn = await kit.connect(host, port)
        await echo_once(conn, probe)
        return conn

    while len(conns) < count:
        batch = min(OPEN_BATCH, count - len(conns))
        conns.extend(await rt.gather([open_one] * batch))
    return conns


async def close_all(rt: Runtime, conns: list[BenchConnection]) -> None:
    for start in range(0, len(conns), OPEN_BATCH):
        await rt.gather([conn.close for conn in conns[start : start + OPEN_BATCH]])


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size of a process in KiB, from /proc (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found")


def _echoes(conn: BenchConnection, payload: bytes, count: int) -> Job[None]:
    """A job for ``Runtime.gather``: ``count`` sequential echoes on ``conn``."""

    async def job() -> None:
        await sequential_echo(conn, payload, count)

    return job


def _result(
    spec: dict[str, Any], value: float, unit: str, count: int, elapsed: float
) -> dict[str, Any]:
    return {
        "workload": spec["name"],
        "value": value,
        "unit": unit,
        "count": count,
        "elapsed": elapsed,
    }


async def run_workload(
    rt: Runtime, kit: ClientKit, host: str, port: int, spec: dict[str, Any]
) -> dict[str, Any]:
    """Run one workload spec against the server at ``host:port`` on the runtime ``rt``."""
    kind = spec["kind"]
    count = int(spec.get("count", 0))
    payload = payload_of(int(spec.get("size", 32)))
    if kind in ("echo", "pipelined"):
        conn = await kit.connect(host, port)
        try:
            await sequential_echo(conn, payload, max(1, min(50, count // 10)))
            start = time.perf_counter()
            if kind == "echo":
                await sequential_echo(conn, payload, count)
            else:
                await pipelined_echo(conn, payload, count, int(spec["window"]))
            elapsed = time.perf_counter() - start
        finally:
            await conn.close()
        return _result(spec, count / elapsed, "msg/s", count, elapsed)
    if kind == "concurrent":
        conns = await open_many(rt, kit, host, port, int(spec["connections"]))
        try:
            start = time.perf_counter()
            await rt.gather([_echoes(conn, payload, count) for conn in conns])
            elapsed = time.perf_counter() - start
        finally:
            await close_all(rt, conns)
        total = count * len(conns)
        return _result(spec, total / elapsed, "msg/s", total, elapsed)
    if kind == "connect":
        await (await kit.connect(host, port)).close()
        start = time.perf_counter()
        for _ in range(count):
            conn = await kit.connect(host, port)
            await conn.close()
        elapsed = time.perf_counter() - start
        return _result(spec, elapsed / count * 1000.0, "ms", count, elapsed)
    if kind == "idle_memory":
        warm = await open_many(rt, kit, host, port, 1)
        before = rss_kib()
        start = time.perf_counter()
        conns = await open_many(rt, kit, host, port, count)
        elapsed = time.perf_counter() - start
        after = rss_kib()
        await close_all(rt, conns + warm)
        return _result(spec, (after - before) / count, "KiB", count, elapsed)
    raise ValueError(f"unknown workload kind {kind!r}")
