"""Tests of tests/support/procs.py: READY handshake, timeouts, output capture, no leaks."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.support.fixtures import _no_leaked_peer_processes  # noqa: F401
from tests.support.procs import (
    PeerError,
    free_port,
    live_processes,
    run_process,
    start_ready_process,
    wait_for_port,
)

PY = sys.executable


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie awaiting its reaper)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_port_ipv6() -> None:
    port = free_port("::1")
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", port))


def test_ready_line_parsed_output_collected_and_process_killed() -> None:
    script = "import time; print('noise'); print('READY 4242 extra', flush=True); time.sleep(60)"
    with start_ready_process([PY, "-c", script]) as peer:
        assert peer.port == 4242
        assert peer.ready_fields == ["4242", "extra"]
        assert peer.stdout_lines[:2] == ["noise", "READY 4242 extra"]
        assert peer.pid in live_processes()
        pid = peer.pid
    assert peer.proc.returncode is not None
    assert pid not in live_processes()


def test_custom_ready_prefix_and_json_lines() -> None:
    script = (
        "import time; print('REQUEST {\"a\": 1}'); print('UP', flush=True); "
        "print('REQUEST {\"a\": 2}', flush=True); time.sleep(60)"
    )
    with start_ready_process([PY, "-c", script], ready_prefix="UP") as peer:
        peer.wait_for_line("REQUEST", count=2)
        assert peer.json_lines("REQUEST") == [{"a": 1}, {"a": 2}]


def test_exit_before_ready_raises_with_output() -> None:
    script = "import sys; print('boom on stdout'); sys.exit(3)"
    with pytest.raises(PeerError, match=r"exited \(3\)"), start_ready_process([PY, "-c", script]):
        pass  # pragma: no cover - never reached


def test_silent_process_times_out_and_is_killed() -> None:
    script = "import time; time.sleep(60)"
    with (
        pytest.raises(PeerError, match="no 'READY' line"),
        start_ready_process([PY, "-c", script], timeout=0.5),
    ):
        pass  # pragma: no cover - never reached
    assert live_processes() == []


def test_process_group_is_killed_including_grandchildren() -> None:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('READY', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    with start_ready_process([PY, "-c", script]) as peer:
        grandchild = int(peer.ready_fields[0])
        assert not _gone(grandchild)
    deadline = time.monotonic() + 10
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(grandchild)


def test_run_process_collects_output_and_status() -> None:
    result = run_process([PY, "-c", "import sys; print('{\"ok\": true}'); sys.exit(1)"])
    assert result.returncode == 1
    assert result.last_json() == {"ok": True}
    with pytest.raises(PeerError, match="exited 1"):
        result.check()


def test_run_process_timeout_kills() -> None:
    with pytest.raises(PeerError, match="did not finish"):
        run_process([PY, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert live_processes() == []


def test_run_process_env_is_passed_and_proxies_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    script = (
        "import json, os; print(json.dumps([os.environ.get('X'), os.environ.get('HTTP_PROXY')]))"
    )
    result = run_process([PY, "-c", script], env={"X": "1"}).check()
    assert result.last_json() == ["1", None]


def test_wait_for_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        wait_for_port("127.0.0.1", listener.getsockname()[1], timeout=5)
    with pytest.raises(PeerError, match="did not accept"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)


def test_last_json_without_summary_raises() -> None:
    result = run_process([PY, "-c", "print('no json here')"])
    with pytest.raises(PeerError, match="no JSON summary"):
        result.last_json()


def test_env_of_this_process_untouched() -> None:
    before = dict(os.environ)
    run_process([PY, "-c", "pass"], env={"ZENWS_SOMETHING": "1"})
    assert dict(os.environ) == before
