"""The anyio adapter on both anyio backends: Trio (strict exception groups) and asyncio.

The scenario suite (tests/adapters) covers the shared behaviour through the Trio
harness; here are the anyio-specific promises: both ``async with connect(...)`` and
``await connect(...)``, no ``ExceptionGroup`` out of internal task groups, handler
errors closing with 1011, inbound backpressure, TLS without close_notify, wss through
an HTTP CONNECT proxy.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio

from tests.support.certs import TestPKI
from tests.support.proxy import HttpProxy
from zenws_adapters import ConnectError, ConnectionClosed, RequestTimeout
from zenws_adapters.anyio import INBOX_LIMIT, ServerWebSocket, connect, serve
from zenws_core import (
    ClientEvent,
    Connected,
    ConnectionConfig,
    Disconnected,
    Envelope,
    FailureKind,
    GaveUp,
    ReconnectConfig,
    Routed,
    TLSConfig,
)

BACKENDS = ["trio", "asyncio"]
NO_RECONNECT = ReconnectConfig(enabled=False)


def run(backend: str, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` on ``backend``; Trio with ``strict_exception_groups=True``."""
    if backend == "trio":
        trio.run(main, strict_exception_groups=True)
    else:
        anyio.run(main, backend="asyncio")


async def echo(ws: ServerWebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_context_manager_and_await_forms(backend: str) -> None:
    async def main() -> None:
        async with serve("127.0.0.1", 0, echo) as server:
            async with connect(server.url) as client:
                await client.send_text("a")
                await client.send_bytes(b"b")
                await client.send_json({"c": 1})
                got = [await client.recv(timeout=10) for _ in range(3)]
                assert got == ["a", b"b", '{"c":1}']
                assert server.status().connections == 1
            detached = await connect(server.url)  # no context manager: a background task
            await detached.send_text("x")
            received = []
            async for message in detached:
                received.append(message)
                break
            assert received == ["x"]
            assert await detached.ping() >= 0.0
            await detached.close(4000, "bye")
            assert detached.state.value == "closed"
            with pytest.raises(ConnectionClosed):
                await detached.recv(timeout=1)
            assert [message async for message in detached] == []

    run(backend, main)


def test_await_serve_and_serve_forever(backend: str) -> None:
    async def main() -> None:
        server = await serve("127.0.0.1", 0, echo)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve_forever)
            async with connect(server.url, reconnect=NO_RECONNECT) as client:
                await client.send_text("hi")
                assert await client.recv(timeout=10) == "hi"
                await server.shutdown()
                event = await _wait_for(client, Disconnected)
                assert event.code == 1001
        # serve_forever returned: the task group could end

    run(backend, main)


async def _wait_for(client: Any, kind: type[Any]) -> Any:
    done = anyio.Event()
    client.on_event(lambda event: done.set() if isinstance(event, kind) else None)
    if not any(isinstance(event, kind) for event in client.events_seen):
        with anyio.fail_after(10):
            await done.wait()
    return next(event for event in client.events_seen if isinstance(event, kind))


def test_errors_in_bodies_are_not_exception_groups(backend: str) -> None:
    async def main() -> None:
        async with serve("127.0.0.1", 0, echo) as server:
            with pytest.raises(ValueError, match="user error"):
                async with connect(server.url):
                    raise ValueError("user error")
        with pytest.raises(KeyError):
            async with serve("127.0.0.1", 0, echo):
                raise KeyError("server body")

    run(backend, main)


def test_refused_connection_raises_connect_error(backend: str) -> None:
    port = free_port()

    async def main() -> None:
        with pytest.raises(ConnectError) as info:
            async with connect(f"ws://127.0.0.1:{port}/", reconnect=NO_RECONNECT):
                pass  # pragma: no cover - never opens
        assert isinstance(info.value.event, GaveUp)
        assert info.value.event.failure.kind is FailureKind.CONNECT_REFUSED
        with pytest.raises(ConnectError):
            await connect(f"ws://127.0.0.1:{port}/", reconnect=NO_RECONNECT)

    run(backend, main)


def test_handlers_events_and_requests(backend: str) -> None:
    async def main() -> None:
        async def answer_nothing(ws: ServerWebSocket) -> None:
            async for message in ws:
                if isinstance(message, str) and '"silent"' in message:
                    continue
                await ws.send(message)

        async with serve("127.0.0.1", 0, answer_nothing) as server, connect(server.url) as client:
            routed: list[Any] = []
            raw: list[Any] = []
            seen: list[Any] = []
            got_async = anyio.Event()

            async def on_greet(envelope: Envelope) -> None:
                routed.append(envelope)
                got_async.set()

            client.on("greet.*", on_greet)
            client.on_raw(raw.append)
            client.on_event(seen.append)
            await client.send("greet.hello", {"n": 1})
            await client.send_text("{not json")
            await client.send_text("plain")  # raw handler takes it, not recv
            with anyio.fail_after(10):
                await got_async.wait()
            assert routed == [Envelope("greet.hello", {"n": 1})]
            reply = await client.request("sum", [1, 2], timeout=10)
            assert reply.data == [1, 2]
            with pytest.raises(RequestTimeout):
                await client.request("silent", timeout=0.05)
            assert raw == ["{not json", "plain"]
            assert any(isinstance(event, Connected) for event in client.events_seen)
            assert seen  # events after registration reached the callback
            with pytest.raises(TimeoutError):
                await client.recv(timeout=0.01)  # handlers consumed everything

    run(backend, main)


def test_handler_error_closes_1011_and_return_closes_1000(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async def handler(ws: ServerWebSocket) -> None:
            message = await ws.recv()
            if message == "fail":
                raise RuntimeError("handler bug (expected by the test)")

        async with serve("127.0.0.1", 0, handler) as server:
            for message, code, reason in (("fail", 1011, "internal error"), ("ok", 1000, "")):
                async with connect(server.url, reconnect=NO_RECONNECT) as client:
                    await client.send_text(message)
                    event = await _wait_for(client, Disconnected)
                    assert (event.code, event.reason) == (code, reason)

    with caplog.at_level(logging.ERROR, logger="zenws"):
        run(backend, main)
    failures = [r for r in caplog.records if r.name == "zenws" and "1011" in r.getMessage()]
    assert len(failures) == 1
    assert "handler bug" in (failures[0].exc_text or "")


def test_shutdown_drops_a_handler_that_never_returns(backend: str) -> None:
    async def main() -> None:
        async def stuck(ws: ServerWebSocket) -> None:
            await anyio.sleep_forever()

        async with (
            serve("127.0.0.1", 0, stuck, shutdown_timeout=0.2) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            await server.shutdown()
            assert server.status().connections == 0
            event = await _wait_for(client, Disconnected)
            assert event.code == 1001

    run(backend, main)


def test_server_pauses_reading_when_the_handler_does_not_consume(backend: str) -> None:
    async def main() -> None:
        go = anyio.Event()
        sockets: list[ServerWebSocket] = []
        received: list[str | bytes] = []

        async def slow(ws: ServerWebSocket) -> None:
            sockets.append(ws)
            await go.wait()
            async for message in ws:
                received.append(message)
                if len(received) == 200:
                    await ws.send("done")

        async with serve("127.0.0.1", 0, slow) as server, connect(server.url) as client:
            for i in range(200):
                await client.send_bytes(i.to_bytes(2, "big") * 5000)
            with anyio.move_on_after(0.3) as scope:
                await client.ping()  # the pong waits behind the paused reader
            assert scope.cancelled_caught
            assert INBOX_LIMIT <= len(sockets[0]._inbox) < INBOX_LIMIT + 10
            go.set()
            assert await client.recv(timeout=20) == "done"
            assert received == [i.to_bytes(2, "big") * 5000 for i in range(200)]

    run(backend, main)


def test_tls_close_without_close_notify_is_a_clean_close(backend: str, pki: TestPKI) -> None:
    """``standard_compatible=False`` both ways: the WebSocket close is the clean end."""

    async def main() -> None:
        async def closer(ws: ServerWebSocket) -> None:
            await ws.recv()
            await ws.close(4000, "tls done")

        async with serve("127.0.0.1", 0, closer, ssl=pki.server_context()) as server:
            assert server.url.startswith("wss://")
            tls = TLSConfig(ca_file=str(pki.files.ca_cert))
            async with connect(server.url, tls=tls, reconnect=NO_RECONNECT) as client:
                await client.send_text("x")
                event = await _wait_for(client, Disconnected)
                assert (event.code, event.reason, event.clean) == (4000, "tls done", True)
                assert event.failure.kind is FailureKind.CLOSED
                await _wait_for(client, GaveUp)  # the transport is gone too
                # a TCP close without close_notify was an EOF, not a transport error
                assert client.stats().last_error == "tls done"

    run(backend, main)


def test_wss_through_connect_proxy(backend: str, pki: TestPKI, http_proxy: HttpProxy) -> None:
    async def main() -> None:
        async with serve("127.0.0.1", 0, echo, ssl=pki.server_context()) as server:
            async with connect(
                server.url, ssl=pki.client_context(), proxy=http_proxy.url
            ) as client:
                await client.send_json({"via": "proxy"})
                assert json.loads(await client.recv(timeout=10)) == {"via": "proxy"}
            assert http_proxy.connects(port=server.port)

    run(backend, main)


def test_untrusted_certificate_is_a_tls_failure(backend: str, pki: TestPKI) -> None:
    async def main() -> None:
        async with serve("127.0.0.1", 0, echo, ssl=pki.server_context()) as server:
            tls = TLSConfig(ca_file=str(pki.files.other_ca_cert))
            with pytest.raises(ConnectError) as info:
                await connect(server.url, tls=tls, reconnect=NO_RECONNECT)
            assert info.value.event is not None
            assert info.value.event.failure.kind is FailureKind.TLS_ERROR

    run(backend, main)


def test_close_abandons_a_connect_in_progress(backend: str) -> None:
    """A TLS handshake that never ends does not hold ``close()`` for ``connect_timeout``."""
    listener = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never speaks TLS
    port = listener.getsockname()[1]

    async def main() -> None:
        client = await connect(f"wss://127.0.0.1:{port}/", wait_open=False, connect_timeout=60)
        accepted, _ = await anyio.to_thread.run_sync(listener.accept)  # now in the TLS handshake
        with anyio.fail_after(30):  # far below connect_timeout
            await client.close()
        assert client.state.value == "closed"
        assert not any(isinstance(event, Disconnected) for event in client.events_seen)
        accepted.close()

    try:
        run(backend, main)
    finally:
        listener.close()


def test_events_seen_and_on_event_leave_out_messages_and_wait_for(backend: str) -> None:
    async def main() -> None:
        async with serve("127.0.0.1", 0, echo) as server, connect(server.url) as client:
            seen: list[ClientEvent] = []
            client.on_event(seen.append)
            handled: list[Any] = []
            client.on("greet", handled.append)
            await client.send("greet", 1)
            await client.send_text("plain")
            assert await client.recv(timeout=10) == "plain"
            assert handled == [Envelope("greet", 1)]
            assert not any(isinstance(event, Routed) for event in client.events_seen + seen)
            opened = await client.wait_for(lambda event: isinstance(event, Connected), 10)
            assert isinstance(opened, Connected)
            assert any(event is opened for event in client.events_seen)
            with pytest.raises(TimeoutError):
                await client.wait_for(lambda event: isinstance(event, GaveUp), 0.05)

    run(backend, main)


def test_expired_queued_request_raises_request_timeout(backend: str) -> None:
    """A request queued while disconnected and never sent times out like any other."""
    port = free_port()

    async def main() -> None:
        retry_later = ReconnectConfig(initial_delay=60.0, max_delay=60.0)
        async with connect(
            f"ws://127.0.0.1:{port}/", wait_open=False, reconnect=retry_later
        ) as client:
            with anyio.fail_after(10), pytest.raises(RequestTimeout):
                await client.request("never.sent", timeout=0.05)
            stats = client.stats()
            assert (stats.queue_depth, stats.requests_timed_out) == (0, 1)

    run(backend, main)


def test_ping_fails_as_soon_as_the_connection_drops(backend: str) -> None:
    async def main() -> None:
        async def never_reads(ws: ServerWebSocket) -> None:
            await anyio.sleep_forever()

        async with (
            serve("127.0.0.1", 0, never_reads, shutdown_timeout=0.2) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            for i in range(200):  # fill the server's inbox: it stops reading, no pong comes
                await client.send_bytes(i.to_bytes(2, "big") * 5000)
            failed: list[BaseException] = []

            async def ping() -> None:
                with pytest.raises(ConnectionClosed) as info:
                    await client.ping()
                failed.append(info.value)

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ping)
                    await anyio.sleep(0.05)
                    assert not failed  # still waiting for its pong
                    await server.shutdown()  # the connection goes
            assert len(failed) == 1
            with anyio.fail_after(5):  # the server dropped its socket: no close_timeout wait
                await client.close()

    run(backend, main)


def test_client_inbox_pauses_reading_at_the_limit_and_resumes_at_half(backend: str) -> None:
    async def burst(ws: ServerWebSocket) -> None:
        for i in range(150):
            await ws.send(f"b{i}")
        await ws.recv()

    async def main() -> None:
        async with (
            serve("127.0.0.1", 0, burst) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            with anyio.fail_after(10):
                while not client._reading_paused:
                    await anyio.sleep(0.01)
            got = []
            while len(client._inbox) > INBOX_LIMIT // 2 + 1:
                got.append(await client.recv())
            assert client._reading_paused
            got.append(await client.recv())
            assert not client._reading_paused
            got += [await client.recv(timeout=10) for _ in range(150 - len(got))]
            assert got == [f"b{i}" for i in range(150)]

    run(backend, main)


def test_wildcard_bind_url_reads_as_loopback(backend: str) -> None:
    async def main() -> None:
        async with serve("0.0.0.0", 0, echo) as server:
            assert server.url == f"ws://127.0.0.1:{server.port}/"
            async with connect(server.url) as client:
                await client.send_text("via wildcard")
                assert await client.recv(timeout=10) == "via wildcard"

    run(backend, main)


def _count_writes(ws: Any) -> list[bytes]:
    """Record every ``send`` on the stream of ``ws`` (a client or a server connection)."""
    stream = ws._stream
    assert stream is not None
    writes: list[bytes] = []
    send = stream.send

    async def counting_send(data: bytes) -> None:
        writes.append(bytes(data))
        await send(data)

    stream.send = counting_send
    return writes


def test_a_burst_of_sends_is_written_in_a_few_writes_and_in_order(backend: str) -> None:
    """The first send since the last input is written at once, the rest of the burst together."""

    async def main() -> None:
        async with serve("127.0.0.1", 0, echo) as server:
            client = await connect(server.url, reconnect=NO_RECONNECT)
            writes = _count_writes(client)
            for i in range(100):
                await client.send_text(str(i))
            replies = [await client.recv(timeout=10) for _ in range(100)]
            assert replies == [str(i) for i in range(100)]
            assert len(writes) == 2  # the first send, then the other 99 in one write
            await client.send_text("alone")  # after input arrived: written at once again
            assert len(writes) == 3
            assert await client.recv(timeout=10) == "alone"
            await client.close()

    run(backend, main)


def test_a_handler_burst_is_written_together_after_input(backend: str) -> None:
    """Server side: each message in is answered with 50; they go out in two writes."""
    logs: list[list[bytes]] = []

    async def fan_out(ws: ServerWebSocket) -> None:
        message = await ws.recv()
        writes = _count_writes(ws)  # from here on: the handshake's answer is out
        logs.append(writes)
        while message != "end":
            assert isinstance(message, str)
            for i in range(50):
                await ws.send(f"{message}{i}")
            writes.append(b"--")  # the burst's sends returned: what was written until now
            message = await ws.recv()

    async def main() -> None:
        async with (
            serve("127.0.0.1", 0, fan_out) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            for name in "ab":
                await client.send_text(name)
                got = [await client.recv(timeout=10) for _ in range(50)]
                assert got == [f"{name}{i}" for i in range(50)]
            # per burst: its first message at once, the other 49 in one write after it
            assert [write == b"--" for write in logs[0]] == [False, True, False] * 2
            await client.send_text("end")

    run(backend, main)


def test_a_sender_waits_while_the_peer_is_behind_and_order_holds(backend: str) -> None:
    """A peer that stops reading holds the sender back: in its write, or beyond the core's
    high-water mark until the writer drained it; no byte is lost or reordered."""
    high_water, size, total = 64 * 1024, 16 * 1024, 1000  # 16 MiB: more than buffers hold

    async def main() -> None:
        release = anyio.Event()
        received: list[bytes] = []
        sockets: list[ServerWebSocket] = []

        async def lazy(ws: ServerWebSocket) -> None:
            sockets.append(ws)
            await release.wait()
            async for message in ws:
                if message == "end":
                    await ws.send(str(len(received)))
                    return
                assert isinstance(message, bytes)
                received.append(message)

        config = ConnectionConfig(write_high_water=high_water)
        async with serve("127.0.0.1", 0, lazy) as server:
            client = await connect(server.url, reconnect=NO_RECONNECT, connection=config)
            sent: list[int] = []
            most_pending = 0

            async def produce() -> None:
                nonlocal most_pending
                for n in range(total):
                    await client.send_bytes(bytes([n % 256]) * size)
                    sent.append(n)
                    conn = client._core.connection
                    assert conn is not None
                    most_pending = max(most_pending, conn.pending_bytes)

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                with anyio.fail_after(10):
                    while not (sockets and sockets[0]._reading_paused):  # the server stops
                        await anyio.sleep(0.01)
                    while not (client._core.writing_paused or client._write_lock.locked()):
                        await anyio.sleep(0.01)  # the sender waits (a write, or the core)
                assert len(sent) < total
                assert most_pending <= high_water + size + 64  # at most one message over the mark
                release.set()  # the server reads again: the producer goes on to the end
            await client.send_text("end")
            assert await client.recv(timeout=10) == str(total)
            assert [m[0] for m in received] == [n % 256 for n in range(total)]
            assert all(len(m) == size for m in received)
            await client.close()

    run(backend, main)


def test_concurrent_senders_keep_each_ones_order(backend: str) -> None:
    """Tasks sending at once, some while a write is in flight: nothing lost, each in order."""

    async def main() -> None:
        async with (
            serve("127.0.0.1", 0, echo) as server,
            connect(server.url, reconnect=NO_RECONNECT) as client,
        ):

            async def sender(name: int) -> None:
                for i in range(200):
                    await client.send_text(f"{name}:{i}")
                    if i % 7 == name % 7:
                        await anyio.sleep(0)  # let the others (and the flusher) run

            async with anyio.create_task_group() as tg:
                for name in range(10):
                    tg.start_soon(sender, name)
            got = [await client.recv(timeout=10) for _ in range(2000)]
            for name in range(10):
                mine = [m for m in got if isinstance(m, str) and m.startswith(f"{name}:")]
                assert mine == [f"{name}:{i}" for i in range(200)]

    run(backend, main)
