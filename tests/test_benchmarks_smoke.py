"""Smoke test of the benchmark harness: it runs end to end and prints its ratio tables.

Correctness only: the numbers are not checked (timings belong in benchmarks, not tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_prints_ratio_tables(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--only",
            "websockets,wsproto",
            "--idle-connections",
            "10",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    stdout = proc.stdout
    for title in ("Server role", "Client role", "Core throughput without sockets"):
        assert title in stdout
    assert "(x1.00)" in stdout  # websockets is the reference column
    assert "times better than websockets" in stdout
    assert '"compression": null' in stdout  # the settings used are printed

    data = json.loads(out.read_text(encoding="utf-8"))
    rows = data["results"]
    assert not [row for row in rows if "error" in row]
    implementations = {row["implementation"] for row in rows}
    assert implementations == {"websockets", "wsproto"}
    workloads = {(row["role"], row["workload"]) for row in rows}
    for role in ("server", "client"):
        for name in ("echo_32", "echo_1m", "pipelined_32", "concurrent_100", "connect"):
            assert (role, name) in workloads
        assert (role, "idle_memory") in workloads
    assert ("core", "core_echo_32") in workloads
    for row in rows:
        assert row["value"] > 0 or row["unit"] == "KiB"  # RSS deltas can be noisy near 0
        if row["implementation"] == "websockets" and row["ratio_to_websockets"] is not None:
            assert row["ratio_to_websockets"] == 1.0


def test_unknown_implementation_is_rejected() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "nosuchlib"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown names: nosuchlib" in proc.stderr
