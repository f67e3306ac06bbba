"""The curio adapter's own API, beyond the shared scenario suite.

Each test runs one ``curio.run`` with a curio server and curio clients on 127.0.0.1 (or
::1).  Waits are bounded by ``curio.timeout_after``; nothing asserts on elapsed time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import curio
import pytest

from tests.adapters.harness_curio import CurioHarness
from tests.support.certs import TestPKI
from tests.support.proxy import HttpProxy
from zenws_adapters import curio as zc
from zenws_adapters._driver import EVENTS_SEEN_LIMIT, INBOX_LIMIT
from zenws_adapters._errors import ConnectError, ConnectionClosed, QueueFull, RequestTimeout
from zenws_core import (
    ClientClosedError,
    ClientState,
    Connected,
    ConnectionConfig,
    Disconnected,
    Envelope,
    GaveUp,
    MessageDropped,
    QueueConfig,
    ReconnectConfig,
    Routed,
    ServerConfig,
)

NO_RECONNECT = ReconnectConfig(enabled=False)


def run(main: Callable[[], Awaitable[None]], timeout: float = 20) -> None:
    async def bounded() -> None:
        await curio.timeout_after(timeout, main)

    curio.run(bounded)


async def echo(ws: zc.ServerWebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_async_with_connect_and_serve_and_iteration_end() -> None:
    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, echo) as server:
            assert server.url == f"ws://127.0.0.1:{server.port}/"
            async with zc.connect(server.url, reconnect=NO_RECONNECT) as client:
                await client.send_text("a")
                await client.send_bytes(b"b")
                await client.send_json({"c": 1})
                got = [await client.recv(), await client.recv(), json.loads(await client.recv())]
                assert got == ["a", b"b", {"c": 1}]
                await client.send_text("last")
            # the context manager closed the client: iteration yields what is left, then ends
            assert client.state is ClientState.CLOSED
            assert [m async for m in client] in ([], ["last"])
            with pytest.raises(ConnectionClosed):
                await client.recv()
            with pytest.raises(ClientClosedError):
                await client.send_text("too late")

    run(main)


def test_await_connect_and_await_serve() -> None:
    async def main() -> None:
        server = await zc.serve("127.0.0.1", 0, echo)
        client = await zc.connect(server.url, reconnect=NO_RECONNECT)
        assert client.subprotocol is None
        rtt = await client.ping()
        assert rtt >= 0.0
        await client.close(4000, "bye")
        await server.shutdown()
        await server.serve_forever()  # returns at once: the server is shut down
        assert server.status().connections == 0

    run(main)


def test_handlers_consume_messages_and_raw_and_async_handlers_run_in_order() -> None:
    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, echo) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            chats: list[Any] = []
            later: list[Any] = []
            raw: list[Any] = []
            done = curio.Event()

            async def slow(envelope: Envelope) -> None:
                await curio.sleep(0)
                later.append(envelope.data)
                if len(later) == 3:
                    await done.set()

            client.on("chat.*", chats.append)
            client.on("job", slow)
            client.on_raw(raw.append)
            await client.send("chat.message", {"text": "hi"})
            for i in range(3):
                await client.send("job", i)
            await client.send_text("not json")
            await client.send("other", 1)  # no handler: goes to recv()
            reply = json.loads(await client.recv(timeout=5))
            assert reply["type"] == "other"
            await curio.timeout_after(5, done.wait())
            assert [e.data for e in chats] == [{"text": "hi"}]
            assert later == [0, 1, 2]
            assert raw == ["not json"]
            await client.close()

    run(main)


def test_request_timeout_and_lifecycle_callbacks() -> None:
    async def silent(ws: zc.ServerWebSocket) -> None:
        async for _message in ws:
            pass  # never answers

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, silent) as server:
            seen: list[Any] = []
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            client.on_event(seen.append)
            with pytest.raises(RequestTimeout):
                await client.request("sum", [1, 2], timeout=0.2)
            assert client.stats().requests_timed_out == 1
            await client.close()
            assert any(isinstance(e, Disconnected) for e in seen)

    run(main)


def test_refused_without_reconnect_raises_connect_error() -> None:
    async def main() -> None:
        with pytest.raises(ConnectError) as caught:
            await zc.connect(f"ws://127.0.0.1:{free_port()}/", reconnect=NO_RECONNECT)
        assert isinstance(caught.value.event, GaveUp)

    run(main)


def test_open_timeout_raises_connect_error() -> None:
    async def main() -> None:
        port = free_port()
        with pytest.raises(ConnectError, match="not open within"):
            await zc.connect(f"ws://127.0.0.1:{port}/", delays=[0.05] * 1000, open_timeout=0.3)

    run(main)


def test_queue_full_while_disconnected() -> None:
    async def main() -> None:
        client = await zc.connect(
            f"ws://127.0.0.1:{free_port()}/",
            wait_open=False,
            delays=[0.05] * 1000,
            queue=QueueConfig(max_messages=2),
        )
        await client.send_text("1")
        await client.send_text("2")
        with pytest.raises(QueueFull):
            await client.send_text("3")
        assert client.stats().queue_depth == 2
        await client.close()

    run(main)


@pytest.mark.parametrize(
    ("behaviour", "code", "reason"), [("return", 1000, ""), ("raise", 1011, "internal error")]
)
def test_handler_end_closes_connection(
    behaviour: str, code: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: zc.ServerWebSocket) -> None:
        await ws.recv()
        if behaviour == "raise":
            raise RuntimeError("handler bug (expected by the test)")

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, handler) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            await client.send_text("go")
            event = await client.wait_for(lambda e: isinstance(e, Disconnected), timeout=5)
            assert isinstance(event, Disconnected)
            assert (event.code, event.reason) == (code, reason)
            await client.close()

    with caplog.at_level(logging.ERROR, logger="zenws"):
        run(main)
    logged = [r for r in caplog.records if r.name == "zenws" and "1011" in r.getMessage()]
    assert len(logged) == (1 if behaviour == "raise" else 0)


def test_server_ping_and_close_from_handler() -> None:
    results: list[Any] = []

    async def handler(ws: zc.ServerWebSocket) -> None:
        results.append(await ws.ping())
        await ws.close(4005, "enough")
        results.append((ws.close_code, ws.close_reason))
        with pytest.raises(ConnectionClosed):
            await ws.send("after close")

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, handler) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            event = await client.wait_for(lambda e: isinstance(e, Disconnected), timeout=5)
            assert isinstance(event, Disconnected)
            assert (event.code, event.reason) == (4005, "enough")
            await client.close()

    run(main)
    assert isinstance(results[0], float)
    assert results[1] == (4005, "")  # the client's echo: same code, no reason (7.1.2)


def test_server_stops_reading_when_the_handler_does_not_consume() -> None:
    """Backpressure end to end: the server stops reading, the client's writer pauses."""
    size = 64 * 1024

    async def main() -> None:
        release = curio.Event()
        received: list[bytes] = []

        async def lazy(ws: zc.ServerWebSocket) -> None:
            await release.wait()
            async for message in ws:
                if message == "end":
                    await ws.send(str(len(received)))
                    return
                assert isinstance(message, bytes)
                received.append(message)

        async with zc.serve("127.0.0.1", 0, lazy) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            sent: list[int] = []
            stop = False

            async def produce() -> None:
                while not stop:
                    await client.send_bytes(bytes([len(sent) % 256]) * size)
                    sent.append(len(sent))

            producer = await curio.spawn(produce)
            while not client._core.writing_paused:  # the server stopped reading
                await curio.sleep(0.01)
            stop = True
            assert server.status().messages_in < len(sent)
            await release.set()
            await producer.join()  # its last send completes once the server reads again
            await client.send_text("end")
            assert await client.recv(timeout=10) == str(len(sent))
            assert [m[0] for m in received] == [i % 256 for i in sent]
            await client.close()

    run(main, timeout=30)


def test_shutdown_drops_connections_whose_handler_never_returns() -> None:
    async def stuck(ws: zc.ServerWebSocket) -> None:
        await curio.Event().wait()

    async def main() -> None:
        server = await zc.serve("127.0.0.1", 0, stuck)
        client = await zc.connect(server.url, reconnect=NO_RECONNECT)
        await server.shutdown(timeout=0.2)
        assert server.status().connections == 0
        event = await client.wait_for(lambda e: isinstance(e, Disconnected), timeout=5)
        assert isinstance(event, Disconnected)
        assert event.code == 1001
        await client.close()

    run(main)


def test_ipv6_loopback() -> None:
    async def main() -> None:
        async with zc.serve("::1", 0, echo) as server:
            assert server.url == f"ws://[::1]:{server.port}/"
            async with zc.connect(server.url, reconnect=NO_RECONNECT) as client:
                await client.send_text("six")
                assert await client.recv(timeout=5) == "six"

    run(main)


def test_harness_teardown_stops_the_kernel_thread() -> None:
    harness = CurioHarness()
    server = harness.start_server()
    client = harness.connect(server.url, reconnect=NO_RECONNECT)
    client.send_text("x")
    assert client.recv() == "x"
    thread = harness.kernel.thread
    harness.close_all()
    assert not thread.is_alive()
    assert server.record.closes == [(1000, "")]


def test_wss_through_http_connect_proxy_with_ssl_context(
    pki: TestPKI, http_proxy: HttpProxy
) -> None:
    """Plain TCP to the proxy, CONNECT, then curio-side TLS over the tunnel (explicit ssl=)."""

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, echo, ssl=pki.server_context()) as server:
            assert server.url.startswith("wss://")
            async with zc.connect(
                server.url, ssl=pki.client_context(), proxy=http_proxy.url, reconnect=NO_RECONNECT
            ) as client:
                await client.send_bytes(b"tunnelled")
                assert await client.recv(timeout=5) == b"tunnelled"
        assert http_proxy.connects(port=server.port)

    run(main)


def test_proxy_refusal_is_a_connect_failure(authenticated_http_proxy: HttpProxy) -> None:
    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, echo) as server:
            with pytest.raises(ConnectError):
                await zc.connect(
                    server.url, proxy=authenticated_http_proxy.url, reconnect=NO_RECONNECT
                )

    run(main)


def test_hostname_resolution_and_config_with_overrides() -> None:
    async def main() -> None:
        config = ServerConfig(subprotocols=("a",))
        async with zc.serve("127.0.0.1", 0, echo, config=config, max_connections=5) as server:
            url = f"ws://localhost:{server.port}/"  # resolved through curio's getaddrinfo
            async with zc.connect(url, subprotocols=("a",), reconnect=NO_RECONNECT) as client:
                assert client.subprotocol == "a"

    run(main)


def test_plain_client_against_tls_server_fails_both_sides_cleanly(pki: TestPKI) -> None:
    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, echo, ssl=pki.server_context()) as server:
            url = server.url.replace("wss://", "ws://")
            with pytest.raises(ConnectError):
                await zc.connect(url, reconnect=NO_RECONNECT)
            assert server.status().connections == 0

    run(main)


def test_failing_user_code_is_logged_and_the_client_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(envelope: Envelope) -> None:
        raise ValueError("sync handler bug (expected by the test)")

    async def broken_async(envelope: Envelope) -> None:
        raise ValueError("async handler bug (expected by the test)")

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, echo) as server:
            client = await zc.connect(
                f"ws://127.0.0.1:{free_port()}/", wait_open=False, delays=[0.05] * 1000
            )
            with pytest.raises(ConnectionClosed):
                await client.ping()  # not open yet
            await client.close()
            async with zc.connect(server.url, reconnect=NO_RECONNECT) as client:
                client.on("a", broken)
                client.on("b", broken_async)
                await client.send("a")
                await client.send("b")
                await client.send_text("plain")
                assert await client.recv(timeout=5) == "plain"

    run(main)
    messages = [record.getMessage() for record in caplog.records]
    assert any("handler" in m and "failed" in m for m in messages)
    assert any("async handler failed" in m for m in messages)


def test_events_seen_leaves_out_messages_and_keeps_the_latest() -> None:
    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, echo) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            seen: list[Any] = []
            client.on_event(seen.append)
            handled: list[Any] = []
            client.on("greet", handled.append)
            await client.send("greet", 1)
            await client.send_text("plain")
            assert await client.recv(timeout=5) == "plain"
            assert handled == [Envelope("greet", 1)]
            assert not any(isinstance(e, Routed) for e in client.events_seen + seen)
            first = client.events_seen[0]
            await client.close()
            refused = EVENTS_SEEN_LIMIT + 5
            for _ in range(refused):  # each refused send is one MessageDropped event
                with pytest.raises(ClientClosedError):
                    await client.send_text("late")
            assert len(client.events_seen) == EVENTS_SEEN_LIMIT
            assert first not in client.events_seen
            assert all(isinstance(e, MessageDropped) for e in client.events_seen)
            assert sum(isinstance(e, MessageDropped) for e in seen) == refused
            with pytest.raises(TimeoutError):
                await client.wait_for(lambda e: isinstance(e, Connected), timeout=0.05)

    run(main)


def test_expired_queued_request_raises_request_timeout() -> None:
    """A request queued while disconnected and never sent times out like any other."""

    async def main() -> None:
        retry_later = ReconnectConfig(initial_delay=60.0, max_delay=60.0)
        url = f"ws://127.0.0.1:{free_port()}/"
        async with zc.connect(url, wait_open=False, reconnect=retry_later) as client:
            with pytest.raises(RequestTimeout):
                await client.request("never.sent", timeout=0.05)
            stats = client.stats()
            assert (stats.queue_depth, stats.requests_timed_out) == (0, 1)

    run(main)


def test_ping_fails_as_soon_as_the_connection_drops() -> None:
    async def never_reads(ws: zc.ServerWebSocket) -> None:
        await curio.Event().wait()

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, never_reads, shutdown_timeout=0.2) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            for i in range(200):  # fill the server's inbox: it stops reading, no pong comes
                await client.send_bytes(i.to_bytes(2, "big") * 5000)
            pinging = await curio.spawn(client.ping)
            await curio.sleep(0.05)
            assert not pinging.terminated  # still waiting for its pong
            await server.shutdown()  # the connection goes
            with pytest.raises(curio.TaskError) as failed:
                await pinging.join()
            assert isinstance(failed.value.__cause__, ConnectionClosed)
            await client.close()

    run(main)


def test_client_inbox_pauses_reading_at_the_limit_and_resumes_at_half() -> None:
    async def burst(ws: zc.ServerWebSocket) -> None:
        for i in range(150):
            await ws.send(f"b{i}")
        await ws.recv()

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, burst) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            while not client._reading_paused:
                await curio.sleep(0.01)
            assert len(client._inbox) >= INBOX_LIMIT  # whole reads: one may overshoot
            got = []
            while len(client._inbox) > INBOX_LIMIT // 2 + 1:
                got.append(await client.recv())
            assert client._reading_paused
            got.append(await client.recv())
            assert not client._reading_paused
            got += [await client.recv(timeout=5) for _ in range(150 - len(got))]
            assert got == [f"b{i}" for i in range(150)]
            await client.close()

    run(main)


@pytest.mark.parametrize(("host", "loopback"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]")])
def test_wildcard_bind_url_reads_as_loopback(host: str, loopback: str) -> None:
    async def main() -> None:
        async with zc.serve(host, 0, echo) as server:
            assert server.url == f"ws://{loopback}:{server.port}/"
            async with zc.connect(server.url, reconnect=NO_RECONNECT) as client:
                await client.send_text("via wildcard")
                assert await client.recv(timeout=5) == "via wildcard"

    run(main)


def test_reconnect_after_giving_up() -> None:
    """``reconnect()`` (from the shared async API) opens again once the client gave up."""

    async def main() -> None:
        port = free_port()
        client = await zc.connect(
            f"ws://127.0.0.1:{port}/", wait_open=False, reconnect=NO_RECONNECT
        )
        await client.wait_for(lambda e: isinstance(e, GaveUp), timeout=5)
        assert client.state is ClientState.CLOSED
        async with zc.serve("127.0.0.1", port, echo):
            await client.reconnect()
            await client.wait_for(lambda e: isinstance(e, Connected), timeout=5)
            await client.send_text("again")
            assert await client.recv(timeout=5) == "again"
            await client.close()

    run(main)


def test_the_handler_finishes_after_its_connection_ended() -> None:
    """The connection task waits for the handler: code after the message loop still runs."""
    finished = curio.Event()

    async def handler(ws: zc.ServerWebSocket) -> None:
        async for _message in ws:
            pass
        await curio.sleep(0.05)  # the transport is gone by now; the handler is not cut
        await finished.set()

    async def main() -> None:
        async with zc.serve("127.0.0.1", 0, handler) as server:
            async with zc.connect(server.url, reconnect=NO_RECONNECT) as client:
                await client.send_text("one")
            await curio.timeout_after(5, finished.wait())
            while server._connections:  # the connection task ends right after its handler
                await curio.sleep(0.01)
            assert server.status().connections == 0

    run(main)


def test_a_silent_tls_client_is_dropped_at_the_handshake_deadline(pki: TestPKI) -> None:
    """TCP open, no ClientHello: the session's handshake timeout also bounds the TLS handshake."""

    async def main() -> None:
        fast = ConnectionConfig(handshake_timeout=0.2)
        async with zc.serve(
            "127.0.0.1", 0, echo, ssl=pki.server_context(), connection=fast
        ) as server:
            sock = await curio.open_connection("127.0.0.1", server.port)
            async with sock:
                with contextlib.suppress(ConnectionResetError):  # a reset is a drop too
                    assert await curio.timeout_after(5, sock.recv(1024)) == b""
            while server._connections:
                await curio.sleep(0.01)

    run(main)


class _CountingSocket:
    """Stands in for a curio socket's raw socket: records what each ``send`` wrote."""

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        self.writes: list[bytes] = []

    def send(self, data: Any, flags: int = 0) -> int:
        sent = self.raw.send(data, flags)
        self.writes.append(bytes(data[:sent]))
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def _count_writes(transport: Any) -> list[bytes]:
    """Every write to ``transport``'s socket from now on: direct (``flush``) or the writer's."""
    counting = _CountingSocket(transport.sock._socket)
    transport.sock._socket, transport.sock._socket_send = counting, counting.send
    return counting.writes


def test_a_burst_of_sends_is_two_writes_and_a_send_after_input_is_written_at_once() -> None:
    """The first send since the transport's tasks last ran goes out from the sending task; the
    rest of the burst waits for the writer task, which sends it in one write."""

    async def main() -> None:
        async with (
            zc.serve("127.0.0.1", 0, echo) as server,
            zc.connect(server.url, reconnect=NO_RECONNECT) as client,
        ):
            await client.send_text("warm-up")
            assert await client.recv(timeout=5) == "warm-up"
            assert client._transport is not None
            writes = _count_writes(client._transport)
            for i in range(100):
                await client.send_text(f"m{i}")
            assert len(writes) == 1  # the first one, before the task yielded
            assert [await client.recv(timeout=5) for _ in range(100)] == [
                f"m{i}" for i in range(100)
            ]
            assert len(writes) == 2  # the other 99: one write by the writer task
            await client.send_text("after input")
            assert len(writes) == 3  # written before send_text returned, no task switch
            assert await client.recv(timeout=5) == "after input"

    run(main)


@pytest.mark.parametrize("tls", [False, True])
def test_large_and_small_messages_in_a_burst_keep_their_order(tls: bool, pki: TestPKI) -> None:
    """Writes the socket takes only in part (TCP, or TLS wanting to write) finish on the writer
    task, and what the core produces meanwhile goes out after them, in order."""
    big = ConnectionConfig(max_message_size=None, write_high_water=64 * 1024)
    messages = [bytes([i]) * (3 * 1024 * 1024 if i % 3 == 0 else 10) for i in range(9)]

    async def main() -> None:
        server_ssl = pki.server_context() if tls else None
        client_ssl = pki.client_context() if tls else None
        async with (
            zc.serve("127.0.0.1", 0, echo, ssl=server_ssl, connection=big) as server,
            zc.connect(
                server.url, ssl=client_ssl, connection=big, reconnect=NO_RECONNECT
            ) as client,
        ):
            assert client._transport is not None
            writes = _count_writes(client._transport)
            for message in messages:
                await client.send_bytes(message)
            assert [await client.recv(timeout=10) for _ in messages] == messages
            assert len(writes) > len(messages) // 3  # partial writes happened

    run(main, timeout=30)


def test_a_sender_waiting_for_the_writer_is_released_when_the_transport_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Backpressure waits end with the transport (not after the close grace period)."""
    monkeypatch.setattr(zc, "CLOSE_GRACE", 60.0)
    size = 256 * 1024

    async def main() -> None:
        release = curio.Event()

        async def lazy(ws: zc.ServerWebSocket) -> None:
            await release.wait()
            async for _message in ws:
                pass

        async with zc.serve("127.0.0.1", 0, lazy) as server:
            client = await zc.connect(server.url, reconnect=NO_RECONNECT)
            stop = False

            async def produce() -> None:
                while not stop:
                    await client.send_bytes(b"x" * size)

            producer = await curio.spawn(produce)
            while not client._core.writing_paused:  # the server stopped reading
                await curio.sleep(0.01)
            stop = True
            assert not producer.terminated  # its send waits for the writer
            closer = await curio.spawn(client.close)
            await curio.timeout_after(10, producer.join())  # released long before 60 s
            await release.set()  # the server reads again: the writer drains, close completes
            await curio.timeout_after(10, closer.join())

    run(main, timeout=40)


def test_the_application_runs_between_two_chunks_even_when_the_second_is_read_at_once() -> None:
    """A chunk that is there at once is processed only after the application had a turn since
    the last one (a message, then a protocol violation in the next read: strict peers answer
    the message first); a read that waited gave it that turn already."""
    log: list[object] = []

    async def main() -> None:
        first_read, first_data, message = curio.Event(), curio.Event(), curio.Event()

        class Sock:
            reads = [b"message", b"violation", b""]

            def setsockopt(self, *args: Any) -> None:
                pass

            async def recv(self, size: int) -> bytes:
                if len(self.reads) == 3:  # the first read waits for data
                    await first_read.set()
                    await first_data.wait()
                return self.reads.pop(0)  # the others find it there at once

            async def sendall(self, data: bytes) -> None:
                pass

            async def close(self) -> None:
                pass

        class Owner:
            _reading_paused = False
            _io = type("Core", (), {"data_to_send": staticmethod(lambda: b"")})()

            async def _until(self, take: Callable[[], Any]) -> Any:
                return take()

            async def _feed(self, t: Any, data: bytes) -> None:
                log.append(data)
                if data == b"message":
                    await message.set()

        async def application() -> None:
            await message.wait()
            log.append("answered")

        answering = await curio.spawn(application)
        t = zc._Transport(cast(Any, Owner()))
        t.sock = Sock()
        t.reader = await curio.spawn(t.run)
        await first_read.wait()  # the reader waits in its first read
        await first_data.set()
        await t.reader.join()
        await answering.join()
        await t.done.wait()

    run(main)
    assert log == [b"message", "answered", b"violation", b""]
