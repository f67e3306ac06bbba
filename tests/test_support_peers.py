"""Tests of tests/support/peers.py: websockets peers as subprocesses and in-process threads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.certs import TestPKI
from tests.support.echo import ClientOptions, EchoServer, plan
from tests.support.fixtures import (  # noqa: F401
    _no_leaked_peer_processes,
    echo_server_factory,
    pki,
    threaded_websockets_echo_server,
    websockets_echo_server,
)
from tests.support.node import run_node_client
from tests.support.peers import (
    ThreadedEchoServer,
    echo_roundtrip,
    run_websockets_client,
    threaded_echo_server,
)
from tests.support.procs import free_port

MIXED = (("text", 10), ("utf8", 33), ("binary", 0), ("binary", 100_000))


def test_subprocess_server_with_python_and_node_clients(
    websockets_echo_server: EchoServer,  # noqa: F811
) -> None:
    options = ClientOptions(sends=MIXED, repeat=2)
    py = run_websockets_client(websockets_echo_server.url("/py"), options)
    js = run_node_client(websockets_echo_server.url("/js"), options)
    assert py.ok, py.run
    assert js.ok, js.run
    assert (py.echoed, js.echoed) == (8, 8)
    assert [r["path"] for r in websockets_echo_server.requests()] == ["/py", "/js"]
    assert len(websockets_echo_server.wait_for_closes(2)) == 2


@pytest.mark.parametrize("implementation", ["node-ws", "websockets"])
def test_both_servers_share_one_contract(
    echo_server_factory: Callable[..., EchoServer],  # noqa: F811
    pki: TestPKI,  # noqa: F811
    implementation: str,
) -> None:
    server = echo_server_factory(implementation, pki=pki, deflate=True, subprotocols=("b", "a"))
    options = ClientOptions(
        sends=MIXED,
        subprotocols=("a",),
        deflate=True,
        ca_file=pki.files.ca_cert,
        headers=(("X-Trace", "t1"),),
    )
    summary = run_websockets_client(server.url(host="localhost"), options)
    assert summary.ok, summary.run
    assert summary.subprotocol == "a"
    assert summary.extensions.startswith("permessage-deflate")
    record = server.requests()[0]
    assert record["headers"]["x-trace"] == "t1"
    assert record["subprotocol"] == "a"
    assert server.tls
    assert server.implementation == implementation


@pytest.mark.parametrize("implementation", ["node-ws", "websockets"])
def test_mutual_tls_on_both_servers(
    echo_server_factory: Callable[..., EchoServer],  # noqa: F811
    pki: TestPKI,  # noqa: F811
    implementation: str,
) -> None:
    server = echo_server_factory(implementation, pki=pki, require_client_cert=True)
    cert = (pki.files.client_cert, pki.files.client_key)
    summary = run_websockets_client(
        server.url(), ClientOptions(ca_file=pki.files.ca_cert, client_cert=cert)
    )
    # On failure, the server's own output too (a stall once timed out with no cause shown).
    assert summary.ok, f"{summary.run}\n{server.process.describe('the echo server')}"
    assert server.requests()[0]["client_cert"] == "client@zenws.test"


def test_threaded_server_in_process(
    threaded_websockets_echo_server: ThreadedEchoServer,  # noqa: F811
) -> None:
    server = threaded_websockets_echo_server
    messages = plan(MIXED)
    result = echo_roundtrip(server.url("/t"), messages)
    assert result["echoes"] == messages
    assert server.requests[0][0] == "/t"
    assert server.wait_for_closes(1) == [(1000, "")]
    summary = run_node_client(server.url(), ClientOptions(sends=MIXED), native=True)
    assert summary.ok, summary.run


def test_threaded_server_with_tls_and_subprotocols(pki: TestPKI) -> None:  # noqa: F811
    with threaded_echo_server(ssl_context=pki.server_context(), subprotocols=("x",)) as server:
        result = echo_roundtrip(
            server.url(), ["secure"], ssl_context=pki.client_context(), subprotocols=("y", "x")
        )
        assert result == {"echoes": ["secure"], "subprotocol": "x", "close_code": 1000}


def test_python_client_reports_failure(pki: TestPKI) -> None:  # noqa: F811
    refused = run_websockets_client(f"ws://127.0.0.1:{free_port()}/", ClientOptions(timeout=5))
    assert not refused.ok
    assert refused.run.returncode == 1
    assert refused.error
