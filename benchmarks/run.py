"""Run WebSocket benchmarks side by side and print msgs/s (or ms, KiB) with ratios to websockets.

Server role: one fixed client driver (``--driver``, default picows) against each server.
Client role: each client against one fixed server (``--fixed-server``, default picows).
Core: in-process client -> bytes -> server round trips without sockets.
Every server and client runs in its own subprocess on 127.0.0.1; counts and times are bounded.

The implementations on asyncio are measured once per event loop of ``--loop`` (default
``uvloop,asyncio``: a row per loop, ratios to websockets on the same loop); the fixed driver
and fixed server run on the first loop listed.  zenws-trio, zenws-curio and zenws-sync run
on their own runtime, are measured once and shown in the first loop's rows.

    python benchmarks/run.py --quick                      # every implementation, both loops
    python benchmarks/run.py --only websockets,wsproto --loop asyncio --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from core import CORE_IMPLEMENTATIONS, CORE_WORKLOADS, run_core  # noqa: E402
from peers import IMPLEMENTATIONS  # noqa: E402
from runtimes import LOOPS  # noqa: E402
from workloads import rss_kib  # noqa: E402

REFERENCE = "websockets"
ROLES = ("server", "client", "core")


@dataclass(frozen=True)
class Workload:
    """One socket workload: its spec for ``workloads.run_workload`` at full and quick scale."""

    name: str
    title: str
    kind: str
    full: int
    quick: int
    size: int = 32
    window: int = 0
    connections: int = 0

    def spec(self, quick: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "count": self.quick if quick else self.full,
            "size": self.size,
            "window": self.window,
            "connections": self.connections,
            "timeout": 30 if quick else 180,
        }


WORKLOADS: tuple[Workload, ...] = (
    Workload("echo_32", "sequential echo 32 B", "echo", 10_000, 200, size=32),
    Workload("echo_1k", "sequential echo 1 KiB", "echo", 10_000, 200, size=1024),
    Workload("echo_64k", "sequential echo 64 KiB", "echo", 2_000, 50, size=64 * 1024),
    Workload("echo_1m", "sequential echo 1 MiB", "echo", 100, 5, size=1024 * 1024),
    Workload(
        "pipelined_32", "pipelined 32 B, 100 in flight", "pipelined", 50_000, 1_000, window=100
    ),
    Workload(
        "concurrent_100",
        "100 connections x N echoes of 32 B",
        "concurrent",
        100,
        2,
        connections=100,
    ),
    Workload("connect", "connection set-up + close (sequential)", "connect", 500, 20),
)
IDLE = Workload("idle_memory", "memory per idle connection", "idle_memory", 2_000, 50)
UNITS = {"msg/s": True, "ms": False, "KiB": False}
"""Unit -> whether higher is better (ratios are always 'times better than websockets')."""


# ---------------------------------------------------------------------------------------------
# Subprocesses
# ---------------------------------------------------------------------------------------------


class Child:
    """A peer subprocess speaking the line protocol of ``peers.py`` (READY, RESULT, ...)."""

    def __init__(self, *args: str) -> None:
        self.args = [sys.executable, str(HERE / "peers.py"), *args]
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self.stderr.append(line.rstrip("\n"))
            del self.stderr[:-20]

    def expect(self, word: str, timeout: float) -> str:
        """Wait for a line starting with ``word``; return the rest of it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {word} from {self.args[2:4]} within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                detail = " | ".join(self.stderr[-3:])
                raise RuntimeError(f"{self.args[2:4]} exited before {word}: {detail}")
            head, _, rest = line.partition(" ")
            if head == word:
                return rest

    def results(self, timeout: float) -> list[dict[str, Any]]:
        """Collect RESULT lines until the process exits."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.args[2:4]} did not finish within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                return found
            head, _, rest = line.partition(" ")
            if head == "RESULT":
                found.append(json.loads(rest))

    def send_line(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_server(name: str, loop: str) -> tuple[Child, int, dict[str, Any]]:
    child = Child("server", name, "--loop", loop)
    try:
        settings = json.loads(child.expect("SETTINGS", 30))
        port = int(child.expect("READY", 30))
    except BaseException:
        child.close()
        raise
    return child, port, settings


def run_client_plan(
    name: str, port: int, specs: list[dict[str, Any]], loop: str, timeout: float
) -> list[dict[str, Any]]:
    with Child(
        "client", name, "--port", str(port), "--plan", json.dumps(specs), "--loop", loop
    ) as child:
        results = child.results(timeout)
    done = {r["workload"] for r in results}
    for spec in specs:
        if spec["name"] not in done:
            results.append({"workload": spec["name"], "error": "client process ended early"})
    return results


def server_idle_memory(
    name: str, driver: str, count: int, loop: str, driver_loop: str, timeout: float
) -> dict[str, Any]:
    """Fresh server; RSS after one warm connection, then after ``count`` more held open."""
    server, port, _ = start_server(name, loop)
    try:
        with Child(
            "hold", driver, "--port", str(port), "--connections", str(count), "--loop", driver_loop
        ) as holder:
            holder.expect("WARM", timeout)
            before = rss_kib(server.pid)
            holder.send_line()
            holder.expect("HELD", timeout)
            after = rss_kib(server.pid)
            holder.send_line()
            holder.results(timeout)
    finally:
        server.close()
    return {"workload": IDLE.name, "value": (after - before) / count, "unit": "KiB", "count": count}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


Results = dict[str, dict[str, dict[str, dict[str, dict[str, Any]]]]]
"""role -> workload -> loop -> implementation -> result dict (value/unit or error).

The loop is the asyncio loop of the row (its websockets is the reference); implementations on
their own runtime sit in the first loop's rows; the core table's rows have the loop ``""``.
"""


def record(results: Results, role: str, loop: str, impl: str, result: dict[str, Any]) -> None:
    by_loop = results.setdefault(role, {}).setdefault(result["workload"], {})
    by_loop.setdefault(loop, {})[impl] = result


def fail(
    results: Results,
    role: str,
    loop: str,
    impl: str,
    specs: list[dict[str, Any]],
    exc: Exception,
) -> None:
    """Mark every workload of ``specs`` not yet measured as failed with ``exc``."""
    done = results.get(role, {})
    for spec in specs:
        if impl not in done.get(spec["name"], {}).get(loop, {}):
            record(results, role, loop, impl, {"workload": spec["name"], "error": str(exc)})


def measured_loops(name: str, loops: list[str]) -> list[str]:
    """The loops ``name`` is measured on: each of them for asyncio, else just the first."""
    return loops if IMPLEMENTATIONS[name].on_asyncio else loops[:1]


def note_settings(settings: dict[str, Any], name: str, loop: str, found: dict[str, Any]) -> None:
    """Keep one settings entry per implementation, listing every runtime it ran on."""
    runtime = IMPLEMENTATIONS[name].runtime_name(loop)
    entry = settings.setdefault(name, dict(found))
    runtimes = entry["runtime"].split(", ") if entry.get("runtime") else []
    if runtime not in runtimes:
        entry["runtime"] = ", ".join([*runtimes, runtime])


def run_all(args: argparse.Namespace, names: list[str], log: Any) -> tuple[Results, dict[str, Any]]:
    quick: bool = args.quick
    loops: list[str] = args.loops
    fixed_loop = loops[0]
    specs = [w.spec(quick) for w in WORKLOADS]
    idle = args.idle_connections or (IDLE.quick if quick else IDLE.full)
    plan_timeout = 120.0 if quick else 1200.0
    results: Results = {}
    settings: dict[str, Any] = {}

    if "server" in args.roles:
        for name in names:
            if name not in IMPLEMENTATIONS or IMPLEMENTATIONS[name].serve is None:
                continue  # e.g. zenws_core, which exists only in the in-memory table
            for loop in measured_loops(name, loops):
                runtime = IMPLEMENTATIONS[name].runtime_name(loop)
                log(f"server role: {name} on {runtime} (driver {args.driver} on {fixed_loop})")
                try:
                    server, port, found = start_server(name, loop)
                    note_settings(settings, name, loop, found)
                    try:
                        for result in run_client_plan(
                            args.driver, port, specs, fixed_loop, plan_timeout
                        ):
                            record(results, "server", loop, name, result)
                    finally:
                        server.close()
                except Exception as exc:
                    fail(results, "server", loop, name, specs, exc)
                try:
                    memory = server_idle_memory(
                        name, args.driver, idle, loop, fixed_loop, plan_timeout
                    )
                    record(results, "server", loop, name, memory)
                except Exception as exc:
                    fail(results, "server", loop, name, [IDLE.spec(quick)], exc)

    if "client" in args.roles:
        for name in names:
            if name not in IMPLEMENTATIONS or IMPLEMENTATIONS[name].client is None:
                continue
            for loop in measured_loops(name, loops):
                runtime = IMPLEMENTATIONS[name].runtime_name(loop)
                log(
                    f"client role: {name} on {runtime} (server {args.fixed_server} on {fixed_loop})"
                )
                note_settings(settings, name, loop, IMPLEMENTATIONS[name].describe(loop))
                idle_spec = IDLE.spec(quick) | {"count": idle}
                try:
                    server, port, found = start_server(args.fixed_server, fixed_loop)
                    note_settings(settings, args.fixed_server, fixed_loop, found)
                except Exception as exc:
                    fail(results, "client", loop, name, [*specs, idle_spec], exc)
                    continue
                try:
                    for plan in (specs, [idle_spec]):
                        try:
                            for result in run_client_plan(name, port, plan, loop, plan_timeout):
                                record(results, "client", loop, name, result)
                        except Exception as exc:
                            fail(results, "client", loop, name, plan, exc)
                finally:
                    server.close()

    if "core" in args.roles:
        for name in names:
            if name not in CORE_IMPLEMENTATIONS:
                continue
            log(f"core: {name}")
            for workload, size, full, small in CORE_WORKLOADS:
                try:
                    result = run_core(name, size, small if quick else full)
                except Exception as exc:
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                record(results, "core", "", name, {"workload": workload, **result})
    return results, settings


def ratio(value: float, reference: float, unit: str) -> float | None:
    """How many times better than the reference (>1 is better), or None if meaningless."""
    if value <= 0 or reference <= 0:
        return None
    return value / reference if UNITS.get(unit, True) else reference / value


def fmt_value(value: float, unit: str) -> str:
    if unit == "msg/s":
        return f"{value:,.0f}"
    return f"{value:,.2f}"


TITLES = {w.name: w.title for w in (*WORKLOADS, IDLE)} | {
    name: f"in-memory echo {size // 1024} KiB" if size >= 1024 else f"in-memory echo {size} B"
    for name, size, _, _ in CORE_WORKLOADS
}
ROLE_TITLES = {
    "server": "Server role (fixed client driver: {driver} on {loop})",
    "client": "Client role (fixed server: {fixed_server} on {loop})",
    "core": "Core throughput without sockets",
}


def flatten(results: Results) -> list[dict[str, Any]]:
    """One JSON row per measurement, with the runtime used and the ratio to its reference."""
    rows: list[dict[str, Any]] = []
    for role, workloads in results.items():
        for workload, by_loop in workloads.items():
            for loop, by_impl in by_loop.items():
                reference = by_impl.get(REFERENCE, {})
                for impl, result in by_impl.items():
                    runtime = IMPLEMENTATIONS[impl].runtime_name(loop) if loop else None
                    row = {
                        "role": role,
                        "workload": workload,
                        "implementation": impl,
                        "loop": loop or None,
                        "runtime": runtime,
                        **result,
                    }
                    if "value" in result and "value" in reference:
                        row["ratio_to_websockets"] = ratio(
                            result["value"], reference["value"], result["unit"]
                        )
                    rows.append(row)
    return rows


def cell(result: dict[str, Any] | None, reference: dict[str, Any], unit: str) -> str:
    """A table cell: the value and its ratio to the row's websockets, or the error."""
    if result is None:
        return "-"
    if "error" in result:
        return f"[red]error[/red]: {result['error'][:40]}"
    text = fmt_value(result["value"], unit)
    if "value" in reference:
        r = ratio(result["value"], reference["value"], unit)
        text += f" (x{r:.2f})" if r is not None else " (n/a)"
    return text


def print_tables(results: Results, names: list[str], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    loops: list[str] = args.loops
    several = len(loops) > 1
    console = Console(width=max(100, 24 + (8 if several else 0) + 22 * len(names)))
    for role in ROLES:
        workloads = results.get(role)
        if not workloads:
            continue
        impls = [
            n
            for n in names
            if any(n in by_impl for by_loop in workloads.values() for by_impl in by_loop.values())
        ]
        title = ROLE_TITLES[role].format(
            driver=args.driver, fixed_server=args.fixed_server, loop=loops[0]
        )
        table = Table(title=title, title_justify="left")
        table.add_column("workload")
        if several and role != "core":
            table.add_column("loop")
        table.add_column("unit")
        for impl in impls:
            table.add_column(impl, justify="right")
        for workload, by_loop in workloads.items():
            for loop in [loop for loop in (*loops, "") if loop in by_loop]:
                by_impl = by_loop[loop]
                reference = by_impl.get(REFERENCE, {})
                unit = next((r["unit"] for r in by_impl.values() if "unit" in r), "")
                head = [TITLES.get(workload, workload)]
                if several and role != "core":
                    head.append(loop)
                cells = [cell(by_impl.get(impl), reference, unit) for impl in impls]
                table.add_row(*head, unit, *cells)
        console.print(table)
    console.print(
        f"ratios: (xR) = R times better than {REFERENCE} on the same loop (>1 better; for ms "
        "and KiB lower values are better, so the ratio is inverted)"
    )
    own = [n for n in names if n in IMPLEMENTATIONS and not IMPLEMENTATIONS[n].on_asyncio]
    if own:
        runtimes = ", ".join(f"{n} on {IMPLEMENTATIONS[n].runtime}" for n in own)
        console.print(
            f"own runtimes: {runtimes}; measured once, in the {loops[0]} rows; fixed driver "
            f"and fixed server on {loops[0]}"
        )


def parse_loops(text: str) -> list[str]:
    """``uvloop,asyncio`` -> the loops in order, each once; ``ValueError`` for unknown ones."""
    loops: list[str] = []
    for loop in (part.strip() for part in text.split(",")):
        if loop not in LOOPS:
            raise ValueError(f"unknown loop {loop!r} (loops: {', '.join(LOOPS)})")
        if loop not in loops:
            loops.append(loop)
    return loops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (~30 s in all)")
    parser.add_argument("--only", default="", help="comma-separated implementation names")
    parser.add_argument(
        "--loop",
        default=",".join(LOOPS),
        help="asyncio event loops, comma-separated: a row per loop (default uvloop,asyncio)",
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="write results as JSON")
    parser.add_argument("--driver", default="picows", help="client driving the server role")
    parser.add_argument("--fixed-server", default="picows", help="server for the client role")
    parser.add_argument("--roles", default=",".join(ROLES), help="server,client,core")
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=0,
        help=f"connections held open (default {IDLE.full}, quick {IDLE.quick})",
    )
    args = parser.parse_args(argv)
    args.roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    try:
        args.loops = parse_loops(args.loop)
    except ValueError as exc:
        parser.error(str(exc))
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [
        *IMPLEMENTATIONS,
        *(n for n in CORE_IMPLEMENTATIONS if n not in IMPLEMENTATIONS),
    ]
    known = set(IMPLEMENTATIONS) | set(CORE_IMPLEMENTATIONS)
    unknown = [n for n in names if n not in known] + [r for r in args.roles if r not in ROLES]
    for fixed in (args.driver, args.fixed_server):
        if fixed not in IMPLEMENTATIONS:
            unknown.append(fixed)
    if unknown:
        parser.error(
            f"unknown names: {', '.join(unknown)}; implementations: "
            f"{', '.join(sorted(known))}; roles: {', '.join(ROLES)}"
        )

    started = time.monotonic()
    header = {
        "command": " ".join(
            ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loops": args.loops,
        "fixed_loop": args.loops[0],
        "scale": "quick" if args.quick else "full",
        "driver": args.driver,
        "fixed_server": args.fixed_server,
        "messages": "binary, unfragmented, payload checked on every echo",
        "workloads": {w.name: w.spec(args.quick) for w in (*WORKLOADS, IDLE)},
    }
    print(
        f"settings: python {header['python']}, {header['cpus']} CPUs, "
        f"loops {','.join(args.loops)}, "
        f"scale {header['scale']}, driver {args.driver}, fixed server {args.fixed_server}",
        flush=True,
    )

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    results, impl_settings = run_all(args, names, log)
    for name in sorted(impl_settings):
        print(f"settings {name}: {json.dumps(impl_settings[name])}", flush=True)
    print_tables(results, names, args)
    header["elapsed_s"] = round(time.monotonic() - started, 1)
    print(f"total time {header['elapsed_s']} s", flush=True)
    if args.json_path is not None:
        payload = {
            "settings": header,
            "implementations": impl_settings,
            "results": flatten(results),
        }
        args.json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    errors = [r for r in flatten(results) if "error" in r]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
