"""asyncio-specific behaviour of ``zenws_adapters.asyncio`` (the shared suite covers the rest).

Backpressure both ways, handler outcomes (return -> 1000, raise -> 1011), handlers and
lifecycle callbacks, request timeouts, the connect() patterns, IPv6 and uvloop.
Waits are bounded polls on a condition, never timing assertions.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import pytest

from tests.support.certs import TestPKI
from tests.support.proxy import HttpProxy
from zenws_adapters import asyncio as zenws_asyncio
from zenws_adapters.asyncio import (
    Client,
    ClientClosedError,
    ConnectError,
    ConnectionClosed,
    RequestTimeout,
    Server,
    ServerWebSocket,
    connect,
    run,
    serve,
)
from zenws_core import (
    ClientState,
    Connected,
    ConnectionConfig,
    Disconnected,
    Envelope,
    FailureKind,
    GaveUp,
    HeartbeatConfig,
    ReconnectConfig,
    ServerStatus,
)

NO_RECONNECT = ReconnectConfig(enabled=False)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until ``condition()`` holds (bounded, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def echo(ws: ServerWebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def run_test(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


# ------------------------------------------------------------------ backpressure


def test_server_stops_reading_when_handler_does_not_consume() -> None:
    release = asyncio.Event()
    sockets: list[ServerWebSocket] = []
    received: list[str | bytes] = []

    async def stalled(ws: ServerWebSocket) -> None:
        sockets.append(ws)
        await release.wait()
        async for message in ws:
            received.append(message)

    async def main() -> None:
        async with (
            await serve("127.0.0.1", 0, stalled) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            for i in range(200):
                await client.send_text(f"m{i}")
            await until(lambda: bool(sockets) and sockets[0]._reading_paused)
            assert len(sockets[0]._inbox) >= 64
            release.set()
            await until(lambda: len(received) == 200)
            assert received == [f"m{i}" for i in range(200)]
            assert not sockets[0]._reading_paused

    run_test(main)


def test_client_stops_reading_when_app_does_not_recv() -> None:
    async def burst(ws: ServerWebSocket) -> None:
        for i in range(150):
            await ws.send(f"b{i}")
        await ws.recv()

    async def main() -> None:
        async with (
            await serve("127.0.0.1", 0, burst) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            await until(lambda: client._reading_paused)
            got = [await client.recv(timeout=10) for _ in range(150)]
            assert got == [f"b{i}" for i in range(150)]
            assert not client._reading_paused

    run_test(main)


def test_client_send_waits_while_the_transport_is_paused() -> None:
    release = asyncio.Event()
    count = 0

    async def stalled(ws: ServerWebSocket) -> None:
        nonlocal count
        await release.wait()
        async for _ in ws:
            count += 1

    async def main() -> None:
        chunk = b"x" * (512 * 1024)
        async with (
            await serve("127.0.0.1", 0, stalled) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            sent = 0

            async def sender() -> None:
                nonlocal sent
                for _ in range(120):
                    await client.send_bytes(chunk)
                    sent += 1

            task = asyncio.create_task(sender())
            await until(lambda: client._paused)
            assert sent < 120  # the sender is held back by pause_writing
            release.set()
            await task
            await until(lambda: count == 120)

    run_test(main)


def test_a_burst_of_sends_is_written_in_a_few_writes_and_in_order() -> None:
    """The first send since the last drive is written at once, the rest of the burst together."""

    async def main() -> None:
        async with await serve("127.0.0.1", 0, echo) as server:
            client = await connect(server.url, reconnect=NO_RECONNECT)
            transport = client._transport
            assert transport is not None
            writes: list[bytes] = []
            write = transport.write

            def counting_write(data: Any) -> None:
                writes.append(bytes(data))
                write(data)

            transport.write = counting_write  # type: ignore[method-assign]
            for i in range(100):  # no await below yields: the transport is not paused
                await client.send_text(str(i))
            replies = [await client.recv(timeout=10) for _ in range(100)]
            assert replies == [str(i) for i in range(100)]
            assert len(writes) == 2  # the first send, then the other 99 in one write
            await client.send_text("alone")  # after input arrived: written at once again
            assert len(writes) == 3
            assert await client.recv(timeout=10) == "alone"
            await client.close()

    run_test(main)


def test_close_releases_a_sender_paused_by_a_peer_that_stopped_reading() -> None:
    """The core gives up on the close handshake and drops the transport: the send ends."""

    async def stalled(ws: ServerWebSocket) -> None:
        assert ws._transport is not None
        ws._transport.pause_reading()  # a peer that stops reading altogether
        await asyncio.Event().wait()

    async def main() -> None:
        chunk = b"x" * (512 * 1024)
        server = await serve("127.0.0.1", 0, stalled)
        config = ConnectionConfig(close_timeout=0.2)
        client = await connect(server.url, connection=config, reconnect=NO_RECONNECT)

        async def sender() -> None:
            while True:
                await client.send_bytes(chunk)

        task = asyncio.create_task(sender())
        await until(lambda: client._paused)
        await asyncio.wait_for(client.close(), 10)  # the close frame cannot get through
        with pytest.raises(ClientClosedError):
            await asyncio.wait_for(task, 10)
        assert not client._paused
        await server.shutdown(0.1)

    run_test(main)


def test_a_closed_server_connection_keeps_no_timer() -> None:
    sockets: list[ServerWebSocket] = []

    async def keep(ws: ServerWebSocket) -> None:
        sockets.append(ws)
        async for _ in ws:
            pass

    async def main() -> None:
        async with await serve(
            "127.0.0.1", 0, keep, heartbeat=HeartbeatConfig(interval=5.0)
        ) as server:
            async with connect(server.url, reconnect=NO_RECONNECT):
                await until(lambda: bool(sockets))
                assert sockets[0]._timer is not None  # the heartbeat's
            await until(lambda: sockets[0]._transport is None)
            assert sockets[0]._timer is None

    run_test(main)


# ------------------------------------------------------------------ handler outcomes


def _close_code_after(handler: Callable[[ServerWebSocket], Awaitable[None]]) -> Disconnected:
    result: list[Disconnected] = []

    async def main() -> None:
        async with await serve("127.0.0.1", 0, handler) as server:
            client = await connect(server.url, reconnect=NO_RECONNECT)
            await client.send_text("go")
            event = await client.wait_for(lambda e: isinstance(e, Disconnected), 10)
            assert isinstance(event, Disconnected)
            result.append(event)
            await client.close()

    run_test(main)
    return result[0]


def test_handler_exception_closes_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(ws: ServerWebSocket) -> None:
        await ws.recv()
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="zenws"):
        event = _close_code_after(broken)
    assert event.code == 1011
    assert any("boom" in (r.exc_text or "") for r in caplog.records)


def test_a_plain_function_handler_closes_1011_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def not_async(ws: ServerWebSocket) -> None:
        pass

    handler = cast(Callable[[ServerWebSocket], Awaitable[None]], not_async)
    with caplog.at_level(logging.ERROR, logger="zenws"):
        event = _close_code_after(handler)
    assert event.code == 1011
    assert any("must be an async function" in (r.exc_text or "") for r in caplog.records)


def test_handler_return_closes_1000() -> None:
    async def short(ws: ServerWebSocket) -> None:
        await ws.recv()

    assert _close_code_after(short).code == 1000


def test_server_websocket_attributes_and_ping() -> None:
    seen: dict[str, Any] = {}

    async def inspect(ws: ServerWebSocket) -> None:
        seen.update(path=ws.path, auth=ws.headers.get("x-token"), peer=ws.remote_address)
        seen["rtt"] = await ws.ping()
        await ws.send_json({"ok": True})
        await ws.close(4000, "done")
        seen["close"] = (ws.close_code, ws.close_reason)
        with pytest.raises(ConnectionClosed):
            await ws.recv()

    async def main() -> None:
        async with await serve("127.0.0.1", 0, inspect) as server:
            url = server.url + "room?x=1"
            async with connect(url, headers={"X-Token": "t"}, reconnect=NO_RECONNECT) as client:
                assert await client.recv(timeout=10) == '{"ok":true}'
                await client.wait_for(lambda e: isinstance(e, Disconnected), 10)
            assert server.status().connections_total == 1

    run_test(main)
    assert seen["path"] == "/room"
    assert seen["auth"] == "t"
    assert seen["peer"][0] == "127.0.0.1"
    assert seen["rtt"] >= 0.0
    assert seen["close"] == (4000, "")  # the code the client echoed (RFC 6455 5.5.1)


# ------------------------------------------------------------------ client API


def test_handlers_callbacks_and_iteration() -> None:
    routed: list[Any] = []
    events: list[Any] = []

    async def on_async(envelope: Envelope) -> None:
        await asyncio.sleep(0)
        routed.append(("async", envelope.type))

    async def main() -> None:
        async with (
            await serve("127.0.0.1", 0, echo) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            client.on("task.*", lambda env: routed.append(("sync", env.type)))
            client.on("job", on_async)
            client.on_event(events.append)
            await client.send("task.done", {"n": 1})
            await client.send("job", None)
            await client.send_text("plain")
            await client.send_bytes(b"raw")
            got = []
            async for message in client:
                got.append(message)
                if len(got) == 2:
                    break
            assert got == ["plain", b"raw"]
            await until(lambda: len(routed) == 2)
            assert routed == [("sync", "task.done"), ("async", "job")]
            assert await client.ping() >= 0.0
            assert client.stats().messages_out == 4
        assert client.state is ClientState.CLOSED
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert any(isinstance(e, Disconnected) for e in events)

    run_test(main)


def test_request_timeout_raises() -> None:
    async def silent(ws: ServerWebSocket) -> None:
        async for _ in ws:
            pass

    async def main() -> None:
        async with (
            await serve("127.0.0.1", 0, silent) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            with pytest.raises(RequestTimeout):
                await client.request("sum", {"a": 1}, timeout=0.05)

    run_test(main)


def test_connect_refused_raises_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        with pytest.raises(ConnectError) as info:
            await connect(f"ws://127.0.0.1:{port}/", reconnect=NO_RECONNECT)
        assert isinstance(info.value.event, GaveUp)

    run_test(main)


def test_wait_open_false_returns_before_open() -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, echo) as server:
            client = await connect(server.url, wait_open=False)
            assert client.state is ClientState.CONNECTING
            await client.send_text("queued")  # queued until open
            assert await client.recv(timeout=10) == "queued"
            await client.close()

    run_test(main)


def test_ipv6_literal() -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 support")

    async def main() -> None:
        async with await serve("::1", 0, echo) as server:
            assert server.url.startswith("ws://[::1]:")
            async with connect(server.url, reconnect=NO_RECONNECT) as client:
                await client.send_text("six")
                assert await client.recv(timeout=10) == "six"

    run_test(main)


def test_shutdown_status_and_serve_forever() -> None:
    async def main() -> None:
        server: Server = await serve("127.0.0.1", 0, echo)
        client = await connect(server.url, reconnect=NO_RECONNECT)
        status = server.status()
        assert isinstance(status, ServerStatus)
        assert status.connections == 1
        forever = asyncio.create_task(server.serve_forever())
        await server.shutdown()
        await forever
        event = await client.wait_for(lambda e: isinstance(e, Disconnected), 10)
        assert isinstance(event, Disconnected)
        assert event.code == 1001

    run_test(main)


# ------------------------------------------------------------------ proxies


def test_wss_through_http_connect_proxy(pki: TestPKI, http_proxy: HttpProxy) -> None:
    """TCP to the proxy, CONNECT, then ``loop.start_tls`` over the tunnel."""

    async def main() -> None:
        async with await serve("127.0.0.1", 0, echo, ssl=pki.server_context()) as server:
            assert server.url.startswith("wss://")
            async with connect(
                server.url, ssl=pki.client_context(), proxy=http_proxy.url, reconnect=NO_RECONNECT
            ) as client:
                await client.send_bytes(b"tunnelled")
                assert await client.recv(timeout=10) == b"tunnelled"
        assert http_proxy.connects(port=server.port)

    run_test(main)


def test_proxy_refusal_is_a_connect_failure(authenticated_http_proxy: HttpProxy) -> None:
    async def main() -> None:
        async with await serve("127.0.0.1", 0, echo) as server:
            with pytest.raises(ConnectError) as info:
                await connect(
                    server.url, proxy=authenticated_http_proxy.url, reconnect=NO_RECONNECT
                )
            assert info.value.event is not None
            assert "407" in info.value.event.failure.detail

    run_test(main)


def test_connect_timeout_cancels_a_connect_stuck_in_the_proxy_exchange() -> None:
    """A proxy that accepts TCP and never answers CONNECT: the core's connect timeout fires,
    ``CloseTransport`` cancels the connect task, and its transport is dropped."""
    accepted: list[asyncio.Transport] = []

    class Silent(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(cast(asyncio.Transport, transport))

    async def main() -> None:
        listener = await asyncio.get_running_loop().create_server(Silent, "127.0.0.1", 0)
        proxy = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        with pytest.raises(ConnectError) as info:
            await connect(
                "ws://127.0.0.1:9/", proxy=proxy, connect_timeout=0.2, reconnect=NO_RECONNECT
            )
        assert info.value.event is not None
        assert info.value.event.failure.kind is FailureKind.CONNECT_TIMEOUT
        await until(lambda: len(accepted) == 1 and accepted[0].is_closing())
        listener.close()
        await listener.wait_closed()

    run_test(main)


# ------------------------------------------------------------------ uvloop


def test_reads_go_through_one_buffer_per_thread() -> None:
    """Two loops in two threads echo messages larger than the read buffer at once.

    Reads land in the thread's buffer (``BufferedProtocol``, no 256 KiB allocation per
    read on the standard loop) and are copied out before the next read: every echo comes
    back intact, and each thread has a buffer of its own.
    """
    sizes = [1, 125, 70_000, 300_000, 1_000_000, 32, 262_144, 262_145]
    big = ConnectionConfig(max_message_size=2**21)
    buffers: dict[str, int] = {}
    failures: list[BaseException] = []

    async def session(name: str) -> None:
        async with (
            await serve("127.0.0.1", 0, echo, connection=big) as server,
            connect(server.url, connection=big) as client,
        ):
            for round_ in range(3):
                payloads = [bytes([(n + round_) % 251]) * n for n in sizes]
                for payload in payloads:  # all in flight at once: reads hold several
                    await client.send_bytes(payload)
                for payload in payloads:
                    assert await client.recv(timeout=20) == payload
        buffers[name] = id(zenws_asyncio._READ_BUFFER.view.obj)

    def thread_main(name: str) -> None:
        try:
            asyncio.run(asyncio.wait_for(session(name), 60))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=thread_main, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert failures == []
    assert issubclass(ServerWebSocket, asyncio.BufferedProtocol)  # the server's protocol
    assert issubclass(zenws_asyncio._Protocol, asyncio.BufferedProtocol)  # a client transport's
    assert len(buffers) == 2
    assert buffers["a"] != buffers["b"]


def test_echo_under_uvloop() -> None:
    import uvloop

    async def main() -> str:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with (
            await serve("127.0.0.1", 0, echo) as server,
            connect(server.url) as client,
        ):
            connected = await client.wait_for(lambda e: isinstance(e, Connected))
            assert isinstance(connected, Connected)
            await client.send_bytes(b"\x00" * 100_000)
            assert await client.recv(timeout=10) == b"\x00" * 100_000
            await client.send_text("uv")
            reply = await client.recv(timeout=10)
            assert isinstance(reply, str)
            return reply

    assert run(main()) == "uv"


def test_ping_round_trip_is_measured_finely_under_uvloop() -> None:
    """uvloop's loop.time() ticks in milliseconds; a loopback ping must not read as 0."""

    async def main() -> list[float]:
        async with (
            await serve("127.0.0.1", 0, echo) as server,
            connect(server.url) as client,
        ):
            return [await client.ping() for _ in range(5)]

    rtts = run(main())
    assert all(0.0 < rtt < 1.0 for rtt in rtts), rtts


def test_client_type_is_exported() -> None:
    assert Client.__module__.startswith("zenws_adapters")
