"""Tests of tests/support/node.py and the Node peers (ws package and built-in WebSocket)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.certs import CLIENT_IDENTITY, TestPKI
from tests.support.echo import PEERS_DIR, ClientOptions, EchoServer, plan
from tests.support.fixtures import (  # noqa: F401
    _no_leaked_peer_processes,
    node_echo_server,
    node_peers,
    pki,
)
from tests.support.node import (
    INSTALLER,
    NODE,
    node_env,
    node_major_version,
    run_node_client,
    start_node_echo_server,
)
from tests.support.peers import echo_roundtrip
from tests.support.procs import free_port, run_process

MIXED = (("text", 0), ("text", 100), ("utf8", 50), ("binary", 0), ("binary", 70_000))


def test_installer_is_idempotent(node_peers: Path) -> None:  # noqa: F811
    assert (node_peers / "ws" / "package.json").is_file()
    again = subprocess.run(
        ["bash", str(INSTALLER)], capture_output=True, text=True, timeout=120, check=True
    )
    assert again.stdout.strip() == str(node_peers)
    assert "installing" not in again.stderr


def test_node_is_new_enough_for_the_native_client() -> None:
    assert node_major_version() >= 20


@pytest.mark.parametrize("native", [False, True], ids=["ws", "native"])
def test_clients_echo_every_kind(node_echo_server: EchoServer, native: bool) -> None:  # noqa: F811
    summary = run_node_client(
        node_echo_server.url("/echo"), ClientOptions(sends=MIXED), native=native
    )
    assert summary.ok, summary.run
    assert (summary.sent, summary.echoed, summary.mismatches) == (5, 5, ())
    assert summary.close_code == 1000
    assert node_echo_server.requests()[0]["path"] == "/echo"
    assert node_echo_server.wait_for_closes(1) == [{"code": 1000, "reason": "done"}]


def test_deflate_subprotocol_headers_and_close_code(node_peers: Path) -> None:  # noqa: F811
    with start_node_echo_server(deflate=True, subprotocols=("v2", "v1")) as server:
        options = ClientOptions(
            sends=(("text", 2000),),
            repeat=3,
            subprotocols=("v1", "v2"),
            headers=(("X-Zenws-Test", "yes"),),
            deflate=True,
            close_code=4001,
            close_reason="custom",
        )
        summary = run_node_client(server.url(), options)
        assert summary.ok, summary.run
        assert summary.subprotocol == "v2"
        assert summary.extensions.startswith("permessage-deflate")
        assert summary.close_code == 4001
        request = server.requests()[0]
        assert request["headers"]["x-zenws-test"] == "yes"
        assert request["subprotocol"] == "v2"
        assert server.wait_for_closes(1) == [{"code": 4001, "reason": "custom"}]


@pytest.mark.parametrize("native", [False, True], ids=["ws", "native"])
def test_wss_with_test_ca(pki: TestPKI, native: bool) -> None:  # noqa: F811
    with start_node_echo_server(pki=pki) as server:
        for host in ("127.0.0.1", "localhost"):
            options = ClientOptions(ca_file=pki.files.ca_cert)
            summary = run_node_client(server.url(host=host), options, native=native)
            assert summary.ok, summary.run


def test_wss_without_trust_fails(pki: TestPKI) -> None:  # noqa: F811
    with start_node_echo_server(pki=pki) as server:
        summary = run_node_client(server.url(), ClientOptions(ca_file=pki.files.other_ca_cert))
        assert not summary.ok
        assert summary.run.returncode != 0
        assert summary.error


def test_mutual_tls_client_certificate(pki: TestPKI) -> None:  # noqa: F811
    with start_node_echo_server(pki=pki, require_client_cert=True) as server:
        cert = (pki.files.client_cert, pki.files.client_key)
        ok = run_node_client(
            server.url(), ClientOptions(ca_file=pki.files.ca_cert, client_cert=cert)
        )
        assert ok.ok, ok.run
        assert server.requests()[0]["client_cert"] == CLIENT_IDENTITY
        refused = run_node_client(server.url(), ClientOptions(ca_file=pki.files.ca_cert))
        assert not refused.ok


def test_server_close_command(node_echo_server: EchoServer) -> None:  # noqa: F811
    with pytest.raises(ConnectionClosed, match="4002"):
        echo_roundtrip(node_echo_server.url(), ["__close__ 4002 bye"])
    assert node_echo_server.wait_for_closes(1) == [{"code": 4002, "reason": "bye"}]


def test_client_reports_failure_on_refused_connection(node_peers: Path) -> None:  # noqa: F811
    url = f"ws://127.0.0.1:{free_port()}/"
    for native in (False, True):
        summary = run_node_client(url, ClientOptions(timeout=5), native=native)
        assert not summary.ok
        assert summary.run.returncode == 1
        assert summary.echoed == 0


def test_client_refuses_non_loopback_url(node_peers: Path) -> None:  # noqa: F811
    argv = [NODE, str(PEERS_DIR / "ws_client.js"), "ws://example.com/"]
    result = run_process(argv, env=node_env())
    assert result.returncode == 2
    assert "non-loopback" in result.stderr


def test_js_and_python_payloads_are_identical() -> None:
    sends = (("text", 40), ("utf8", 12), ("binary", 300))
    script = (
        "const c = require(process.argv[1]);"
        "const out = c.plan({sends: JSON.parse(process.argv[2]), repeat: 2})"
        ".map(m => typeof m.data === 'string' ? ['s', m.data] : ['b', m.data.toString('hex')]);"
        "console.log(JSON.stringify(out));"
    )
    specs = json.dumps([{"kind": k, "size": n} for k, n in sends])
    out = subprocess.run(
        [NODE, "-e", script, str(PEERS_DIR / "_client_common.js"), specs],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    from_js = [s if t == "s" else bytes.fromhex(s) for t, s in json.loads(out.stdout)]
    assert from_js == plan(sends, repeat=2)
    assert len(from_js[1]) == 12  # utf8 sizes count characters
