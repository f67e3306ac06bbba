"""``zenws test``: the connectivity check, against the embedded default and a given URL."""

from __future__ import annotations

import subprocess
import sys

from tests.support.procs import free_port

ZENWS = [sys.executable, "-m", "zenws_adapters"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZENWS, *args], capture_output=True, text=True, timeout=60, check=False)


def test_embedded_default_passes_every_step() -> None:
    result = run("test", "--messages", "3", "--size", "2048")
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("connect", "echo text", "echo binary", "echo JSON", "ping", "request", "close"):
        assert step in result.stdout
    assert "FAIL" not in result.stdout
    assert "all steps passed" in result.stdout


def test_against_a_running_server_url() -> None:
    server = subprocess.Popen(
        [*ZENWS, "serve", "--echo", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        assert ready[0] == "READY"
        result = run("test", ready[1], "--token", "t0k", "-H", "X-Trace: 1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert ready[1] in result.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_unreachable_server_fails_with_status_1() -> None:
    result = run("test", f"ws://127.0.0.1:{free_port()}/", "--timeout", "3")
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "some steps failed" in result.stdout


def test_bad_arguments_exit_2_with_one_line() -> None:
    for args in (("test", "http://x/"), ("test", "--header", "no-colon"), ("test", "--size", "-1")):
        result = run(*args)
        assert result.returncode == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("zenws: error:")
