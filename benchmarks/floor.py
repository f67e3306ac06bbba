"""How fast can a sequential echo be on this machine? Server CPU per message beside two floors.

A sequential echo has one message in flight, so each round trip pays the fixed costs (the
loopback, the driver's own work, waking each process) plus the server's CPU per message.
This probe measures, for each server, the round-trip rate with the fixed client driver
(picows, as in ``run.py``'s server role) and the server's user and system CPU per message
from ``/proc/<pid>/stat``, beside two servers that do almost no WebSocket work at all:

* ``floor-callback``: an ``asyncio.Protocol`` that unmasks each frame (C) and writes the echo
  from ``data_received``: the least any server on this event loop can spend;
* ``floor-task``: the same, but each message goes to a handler task through a future and the
  task writes the echo, as every ``async for message in ws: await ws.send(message)`` API
  (websockets, aiohttp, zenws) must do.

From these it prints the fixed cost of a round trip and the server CPU per message a given
ratio to websockets would need.  Neither floor is a WebSocket implementation (no limits, no
close handshake, no validation); they are measuring sticks.

    python benchmarks/floor.py                       # 20,000 echoes of 32 B per server, uvloop
    python benchmarks/floor.py --count 2000 --loop asyncio --target 1.3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
PEERS = [sys.executable, str(HERE / "peers.py")]
MEASURED = ["websockets", "aiohttp", "picows", "zenws"]
FLOORS = ["floor-callback", "floor-task"]


# --------------------------------------------------------------------------- the floors


class _FloorProtocol(asyncio.Protocol):
    """Opening handshake through wsproto, then frames echoed with a minimal parser."""

    def __init__(self, via_task: bool) -> None:
        self._via_task = via_task
        self._buffer = bytearray()
        self._open = False
        self._outbox: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from wsproto import ConnectionType, WSConnection

        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._ws = WSConnection(ConnectionType.SERVER)
        if self._via_task:
            self._task = asyncio.get_running_loop().create_task(self._handler())

    def data_received(self, data: bytes) -> None:
        if not self._open:
            self._handshake(data)
            return
        buffer = self._buffer
        buffer += data
        while (frame := self._next_frame(buffer)) is not None:
            if frame[0] & 0x0F == 0x8:  # close: echo it and hang up
                self._transport.write(frame)
                self._transport.close()
                return
            if not self._via_task:
                self._transport.write(frame)
                continue
            self._outbox.append(frame)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._via_task:
            self._task.cancel()

    def _handshake(self, data: bytes) -> None:
        from wsproto.events import AcceptConnection, Request

        self._ws.receive_data(data)
        for event in self._ws.events():
            if isinstance(event, Request):
                self._transport.write(self._ws.send(AcceptConnection()))
                self._open = True

    @staticmethod
    def _next_frame(buffer: bytearray) -> bytes | None:
        """One complete masked client frame from ``buffer``, unmasked as a server frame."""
        from zenws_core._mask import apply_mask

        if len(buffer) < 2:
            return None
        length, at = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, at = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, at = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < at + 4 + length:
            return None
        key, payload = bytes(buffer[at : at + 4]), buffer[at + 4 : at + 4 + length]
        header = bytes((buffer[0], buffer[1] & 0x7F)) + bytes(buffer[2:at])
        del buffer[: at + 4 + length]
        return header + apply_mask(payload, key)

    async def _handler(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._outbox:
                self._waiter = loop.create_future()
                await self._waiter
            self._transport.write(self._outbox.pop(0))


def serve_floor(mode: str, loop_name: str) -> None:
    """``floor.py serve floor-task``: print ``READY <port>`` and echo until killed."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _FloorProtocol(mode == "floor-task"), "127.0.0.1", 0
        )
        print("READY", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    if loop_name == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


# --------------------------------------------------------------------------- the probe


def _cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _ready(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            return int(line.split()[1])
    raise RuntimeError(f"server exited with {proc.wait()} before READY")


def measure(server: str, count: int, loop_name: str) -> dict[str, Any]:
    """Rate and server CPU per message for ``count`` sequential 32 B echoes."""
    argv = (
        [sys.executable, __file__, "serve", server, "--loop", loop_name]
        if server in FLOORS
        else [*PEERS, "server", server, "--loop", loop_name]
    )
    srv = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = _ready(srv)
        plan = [
            {"name": "warm-up", "kind": "echo", "size": 32, "count": min(2000, count)},
            {"name": "timed", "kind": "echo", "size": 32, "count": count},
        ]
        client = [*PEERS, "client", "picows", "--port", str(port), "--plan", json.dumps(plan)]
        cli = subprocess.Popen([*client, "--loop", "uvloop"], stdout=subprocess.PIPE, text=True)
        assert cli.stdout is not None
        before: tuple[float, float] | None = None
        result: dict[str, Any] = {}
        for line in cli.stdout:
            if not line.startswith("RESULT"):
                continue
            result = json.loads(line.split(" ", 1)[1])
            if "error" in result:
                raise RuntimeError(f"{server}: {result['error']}")
            if result["workload"] == "warm-up":
                before = _cpu(srv.pid)
            else:
                break
        after = _cpu(srv.pid)
        cli.wait(timeout=60)
        assert before is not None, f"{server}: no result"
    finally:
        srv.kill()
        srv.wait()
    user, system = ((a - b) / count * 1e6 for a, b in zip(after, before, strict=True))
    return {"server": server, "rate": result["value"], "user_us": user, "sys_us": system}


def report(rows: list[dict[str, Any]], target: float, out: Callable[[str], None]) -> None:
    from rich.console import Console
    from rich.table import Table

    reference = next(r for r in rows if r["server"] == "websockets")
    table = Table(title="Sequential echo of 32 B (fixed client driver: picows on uvloop)")
    for name in ("server", "msg/s", "x websockets", "server CPU/msg", "user", "system"):
        table.add_column(name, justify="left" if name == "server" else "right")
    fixed = []
    for r in rows:
        cpu = r["user_us"] + r["sys_us"]
        fixed.append(1e6 / r["rate"] - cpu)
        table.add_row(
            r["server"],
            f"{r['rate']:,.0f}",
            f"{r['rate'] / reference['rate']:.2f}",
            f"{cpu:.1f} us",
            f"{r['user_us']:.1f} us",
            f"{r['sys_us']:.1f} us",
        )
    Console(width=120).print(table)
    fixed_us = sum(fixed) / len(fixed)
    budget = 1e6 / (reference["rate"] * target) - fixed_us
    out(f"fixed cost of a round trip (1/rate - server CPU, mean): {fixed_us:.1f} us")
    out(f"{target:.2f}x websockets needs a server CPU per message of at most {budget:.1f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", nargs="?", default="probe", choices=["probe", "serve"])
    parser.add_argument("server", nargs="?", choices=FLOORS, help="with serve: which floor")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--target", type=float, default=1.3, help="ratio to websockets")
    parser.add_argument("--only", default=",".join(MEASURED + FLOORS))
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.server is None:
            parser.error("serve needs floor-callback or floor-task")
        serve_floor(args.server, args.loop)
        return
    names = args.only.split(",")
    if "websockets" not in names:
        names.insert(0, "websockets")  # the reference of every ratio
    rows = [measure(name, args.count, args.loop) for name in names]
    report(rows, args.target, print)


if __name__ == "__main__":
    main()
