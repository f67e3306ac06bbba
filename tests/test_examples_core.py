"""Runs ``examples/echo_in_memory.py`` as a user would and checks what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "echo_in_memory.py"


def test_echo_in_memory_example() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "server: upgrade request for /echo offering ['echo.v1']"
    assert lines[1] == "client: open, subprotocol=echo.v1 extensions=['permessage-deflate']"
    assert "client: received text 'Hello, zenws!'" in lines
    assert "client: received binary b'\\x00\\x01\\x02\\xff'" in lines
    assert 'client: received text \'{"type":"greeting","data":[1,2,3]}\'' in lines
    assert "client: pong after 0.005 s" in lines
    assert "server: close frame 1000 'done' (echoed automatically)" in lines
    assert "client: closed code=1000 clean=True cause=normal" in lines
    assert "transport: server closes=True, client closes=True" in lines
    assert lines[-1] == "echo OK"


def test_echo_in_memory_example_is_deterministic() -> None:
    runs = {
        subprocess.run(
            [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1
