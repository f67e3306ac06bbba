"""Runs ``examples/custom_event_loop.py`` as a user would and checks what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_event_loop.py"


def test_custom_event_loop_example() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "client: disconnected (connect-refused) code=1006",
        "server: now listening",
        "client: reconnect scheduled in 0.1s",
        "server: opened /chat",
        "client: connected (attempt 1)",
        "client: received 'hello'",
        "client: received b'\\x00\\x01\\x02'",
        'client: received \'{"type": "greeting", "data": 1}\'',
        "server: closed code=1000 reason='done'",
        "client: disconnected (local-close) code=1000",
        "server status: 1 connection(s), 3 in, 3 out",
        "custom loop OK",
    ]
