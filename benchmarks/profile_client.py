"""Reproducible in-process profiling of zenws_core in the client role (and its server peer).

No sockets and no event loop: a ``ReconnectingClient`` talks to a ``ServerHub`` session
through byte strings, and every step an adapter takes after an input is taken here too
(``data_to_send``, ``actions``, ``events``, ``next_deadline``).  Incoming bytes are cut into
``--read-size`` pieces, as a socket read would deliver them.  Three measures:

- ``memory``: ``tracemalloc`` bytes retained per idle client (``ReconnectingClient`` with its
  ``ClientConnection`` and everything reachable) and per idle server session, after the
  opening handshake and one 32 B echo; ``--sites`` lists the allocation sites that keep them.
- ``speed``: echo round trips per second, client -> server -> client (32 B x 20,000 and
  1 MiB x 50 by default), both directions through the reconnecting client and the session.
- ``--profile NAME``: cProfile of one workload (call counts and cumulative time).

Wall-clock figures on a shared machine are noisy; ratios are what this script is for.
``--baseline REF`` loads the core as it is at git ``REF`` beside the working tree (as a
second package, in this same process) and runs both in alternating rounds, keeping each
side's best round, so "before/after" comes from one run::

    python benchmarks/profile_client.py --baseline HEAD~3
    python benchmarks/profile_client.py --profile echo_1m
    python benchmarks/profile_client.py --only memory --sites
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import importlib.util
import io
import pstats
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from core import timed_round_trips

ROOT = Path(__file__).resolve().parent.parent
URL = "ws://localhost/"
#: (name, payload size, round trips)
WORKLOADS: tuple[tuple[str, int, int], ...] = (
    ("echo_32", 32, 20_000),
    ("echo_64k", 64 * 1024, 1_000),
    ("echo_1m", 1024 * 1024, 50),
)


# ----------------------------------------------------------------------------- loading


def load_core(ref: str | None) -> ModuleType:
    """The working tree's ``zenws_core``, or the one at git ``ref`` as a separate package."""
    if ref is None:
        sys.path.insert(0, str(ROOT))
        return importlib.import_module("zenws_core")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target = Path(tempfile.mkdtemp(prefix="zenws-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "zenws_core"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    package = target / "zenws_core"
    for built in (ROOT / "zenws_core").glob("_speedups*.so"):
        # The C masking is built, not tracked: both sides use the working tree's build.
        shutil.copy(built, package / built.name)
    name = f"zenws_core_{commit}"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- wiring


@dataclass
class Pair:
    """One reconnecting client and the server session it talks to, past the handshake."""

    core: ModuleType
    client: Any
    session: Any
    read_size: int
    now: float = 0.0

    @classmethod
    def open(cls, core: ModuleType, hub: Any, read_size: int, seed: int) -> Pair:
        connection = core.ConnectionConfig(max_message_size=4 * 1024 * 1024, fragment_size=None)
        config = core.ClientConfig(url=URL, connection=connection)
        # Production defaults: masking keys from secrets.token_bytes, jitter unseeded.
        client = core.ReconnectingClient(config)
        pair = cls(core, client, hub.session(0.0), read_size)
        client.start(0.0)
        pair.drive_client()
        client.connection_made(0.0)
        pair.pump()
        return pair

    def drive_client(self) -> list[Any]:
        """What an adapter does after any client input: bytes, actions, events, deadline."""
        client = self.client
        data = client.data_to_send()
        client.actions()
        events = client.events()
        client.next_deadline()
        if data:
            self.feed(self.session, data)
        return events

    def drive_session(self) -> list[Any]:
        session = self.session
        events = session.events()
        data = session.data_to_send()
        session.next_deadline()
        received = []
        MessageReceived = self.core.MessageReceived
        for event in events:
            if type(event) is MessageReceived:
                received.append(event.data)
        for message in received:
            session.send(message)
        data += session.data_to_send()
        if data:
            self.feed(self.client, data)
        return events

    def feed(self, target: Any, data: bytes) -> None:
        size = self.read_size
        now = self.now
        if len(data) <= size:
            target.receive_data(data, now)
            return
        view = memoryview(data)
        for start in range(0, len(data), size):
            # A socket read yields a fresh bytes object.
            target.receive_data(bytes(view[start : start + size]), now)

    def pump(self) -> list[Any]:
        """Move bytes both ways until nothing moves; return the client's events."""
        events: list[Any] = []
        for _ in range(10):
            self.drive_session()
            got = self.drive_client()
            events.extend(got)
            if not got and not self.client.data_to_send():
                break
        return events

    def round_trip(self, payload: bytes) -> Any:
        """The client sends ``payload``; the session echoes it; return what the client got."""
        client = self.client
        client.send_bytes(payload, now=self.now)
        self.drive_client()  # -> session
        self.drive_session()  # echo -> client
        Routed = self.core.Routed
        for event in self.drive_client():
            if type(event) is Routed:
                return event.data
        raise AssertionError("no message came back")


# ----------------------------------------------------------------------------- measures


def memory_per_connection(core: ModuleType, count: int, sites: int) -> dict[str, float]:
    """Bytes retained per idle client and per idle server session (tracemalloc)."""
    hub = core.ServerHub(now=0.0)
    probe = bytes(range(32))
    warm = Pair.open(core, hub, 1 << 30, 0)
    warm.round_trip(probe)
    results: dict[str, float] = {}
    for side in ("client", "session"):
        gc.collect()
        tracemalloc.start(8)
        before = tracemalloc.take_snapshot() if sites else None
        base = tracemalloc.get_traced_memory()[0]
        kept = []
        for seed in range(count):
            pair = Pair.open(core, hub, 1 << 30, seed + 1)
            if pair.round_trip(probe) != probe:
                raise AssertionError("echo mismatch")
            kept.append(pair.client if side == "client" else pair.session)
            del pair
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - base
        if sites and before is not None:
            after = tracemalloc.take_snapshot()
            print(f"\n{core.__name__}: allocation sites kept per idle {side} (bytes)")
            for stat in after.compare_to(before, "lineno")[:sites]:
                frame = stat.traceback[0]
                where = f"{Path(frame.filename).name}:{frame.lineno}"
                size, objects = stat.size_diff / count, stat.count_diff / count
                print(f"  {size:9.1f}  {objects:6.2f} obj  {where}")
        tracemalloc.stop()
        results[side] = retained / count
        del kept
    return results


def speed(core: ModuleType, size: int, count: int, read_size: int) -> float:
    """Round trips per second of ``size``-byte messages through one pair."""
    pair = Pair.open(core, core.ServerHub(now=0.0), read_size, 1)
    return count / timed_round_trips(pair, size, count)


def profile(core: ModuleType, name: str, read_size: int, lines: int) -> None:
    size, count = next((s, c) for n, s, c in WORKLOADS if n == name)
    pair = Pair.open(core, core.ServerHub(now=0.0), read_size, 1)
    payload = (bytes(range(256)) * (size // 256 + 1))[:size]
    pair.round_trip(payload)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        pair.round_trip(payload)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    print(f"{core.__name__}: {name} ({count} round trips of {size} B), by own time")
    print(out.getvalue())


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git ref of the core to compare against")
    parser.add_argument("--only", choices=("memory", "speed"), help="run one measure")
    parser.add_argument("--connections", type=int, default=500, help="idle pairs for memory")
    parser.add_argument("--rounds", type=int, default=3, help="alternating speed rounds")
    parser.add_argument("--read-size", type=int, default=256 * 1024, help="bytes per read")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply round-trip counts")
    parser.add_argument("--sites", type=int, default=0, help="show N allocation sites")
    parser.add_argument("--profile", choices=[w[0] for w in WORKLOADS], help="cProfile one")
    parser.add_argument("--lines", type=int, default=30, help="profile lines to print")
    args = parser.parse_args(argv)

    cores = [load_core(None)]
    if args.baseline:
        cores.append(load_core(args.baseline))
    labels = ["working tree"] + ([f"baseline {args.baseline}"] if args.baseline else [])
    mask = importlib.import_module(cores[0].__name__ + "._mask")
    print(f"Python {sys.version.split()[0]}, C masking: {mask.using_speedups()}")

    if args.profile:
        for core in cores:
            profile(core, args.profile, args.read_size, args.lines)
        return

    if args.only in (None, "memory"):
        print(f"\nmemory per idle connection (tracemalloc, {args.connections} connections)")
        memory = [memory_per_connection(c, args.connections, args.sites) for c in cores]
        for label, figures in zip(labels, memory, strict=True):
            print(
                f"  {label:>24}: client {figures['client']:8.0f} B"
                f"   server session {figures['session']:8.0f} B"
            )

    if args.only in (None, "speed"):
        print(f"\nround trips/s, best of {args.rounds} alternating rounds (higher is better)")
        for name, size, count in WORKLOADS:
            count = max(1, int(count * args.scale))
            best = [0.0] * len(cores)
            for _ in range(args.rounds):
                for i, core in enumerate(cores):
                    best[i] = max(best[i], speed(core, size, count, args.read_size))
            cells = "   ".join(
                f"{label}: {rate:9.0f}" for label, rate in zip(labels, best, strict=True)
            )
            ratio = f"   ratio {best[0] / best[1]:.2f}x" if len(best) > 1 else ""
            print(f"  {name:>9} x {count:>6}: {cells}{ratio}")


if __name__ == "__main__":
    main()
