"""``zenws serve --echo`` as a real subprocess, talked to by the ``websockets`` library.

The client is one nobody here wrote; the server is the console script itself.
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.certs import TestPKI
from tests.support.procs import ReadyProcess, run_process, start_ready_process

MiB = 1024 * 1024
ZENWS = [sys.executable, "-m", "zenws_adapters"]


def ready_url(peer: ReadyProcess) -> str:
    words = peer.ready_line.split()
    assert len(words) == 2, peer.ready_line
    assert words[0] == "READY"
    return words[1]


@pytest.fixture
def echo_server() -> Iterator[ReadyProcess]:
    with start_ready_process([*ZENWS, "serve", "--echo", "--port", "0"]) as peer:
        yield peer


def test_ready_line_names_a_free_port(echo_server: ReadyProcess) -> None:
    url = ready_url(echo_server)
    assert url.startswith("ws://127.0.0.1:")
    assert url.endswith("/")
    assert int(url.rsplit(":", 1)[1].rstrip("/")) > 0
    assert [line for line in echo_server.stdout_lines if line.startswith("READY")] == [
        echo_server.ready_line
    ]


def test_echo_text_binary_and_16_mib(echo_server: ReadyProcess) -> None:
    with connect(ready_url(echo_server), max_size=32 * MiB, compression=None) as ws:
        ws.send("héllo ✓")
        assert ws.recv() == "héllo ✓"
        ws.send(b"\x00\xff\x01")
        assert ws.recv() == b"\x00\xff\x01"
        big = bytes(i % 253 for i in range(16 * MiB))
        ws.send(big)
        assert ws.recv(timeout=60) == big


def test_permessage_deflate_accepted_when_offered(echo_server: ReadyProcess) -> None:
    with connect(ready_url(echo_server)) as ws:  # websockets offers permessage-deflate
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in extensions
        text = "compress me " * 5000
        ws.send(text)
        assert ws.recv() == text


def test_no_compression_option_refuses_deflate() -> None:
    argv = [*ZENWS, "serve", "--echo", "--port", "0", "--no-compression"]
    with start_ready_process(argv) as peer, connect(ready_url(peer)) as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send("plain")
        assert ws.recv() == "plain"


def test_over_max_size_closes_1009() -> None:
    argv = [*ZENWS, "serve", "--echo", "--port", "0", "--max-size", "1000"]
    with start_ready_process(argv) as peer, connect(ready_url(peer)) as ws:
        ws.send(b"x" * 2000)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1009


def test_health_on_the_same_port(echo_server: ReadyProcess) -> None:
    http = ready_url(echo_server).replace("ws://", "http://")
    with urllib.request.urlopen(http + "health", timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok"}


def test_sigint_closes_clients_with_1001_and_exits_0(echo_server: ReadyProcess) -> None:
    with connect(ready_url(echo_server)) as ws:
        ws.send("x")
        assert ws.recv() == "x"
        echo_server.proc.send_signal(signal.SIGINT)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1001
    assert echo_server.proc.wait(timeout=10) == 0


def test_sigterm_exits_0(echo_server: ReadyProcess) -> None:
    echo_server.proc.send_signal(signal.SIGTERM)
    assert echo_server.proc.wait(timeout=10) == 0


def test_tls(pki: TestPKI) -> None:
    files = pki.files
    argv = [*ZENWS, "serve", "--echo", "--port", "0"]
    argv += ["--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key)]
    with start_ready_process(argv) as peer:
        url = ready_url(peer)
        assert url.startswith("wss://")
        with connect(url, ssl=pki.client_context()) as ws:
            ws.send("secure")
            assert ws.recv() == "secure"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--echo", "--port", "70000"], "--port"),
        (["serve", "--echo", "--port", "abc"], "--port"),
        (["serve", "--echo", "--max-size", "0"], "--max-size"),
        (["serve", "--echo", "--tls-key", __file__], "--tls-cert"),
        (["serve", "--echo", "--tls-cert", "/nonexistent/cert.pem"], "--tls-cert"),
        (["serve"], "--echo"),
        (["serve", "--echo", "--bogus"], "--bogus"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], needle: str) -> None:
    result = run_process([*ZENWS, *args], timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert result.stdout == ""


def test_console_script_is_declared() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert 'zenws = "zenws_adapters.cli:main"' in pyproject.read_text()
