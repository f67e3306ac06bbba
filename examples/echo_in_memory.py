"""Echo over two sans-IO connections wired back to back in memory: no sockets, no threads.

A ``ClientConnection`` and a ``ServerConnection`` exchange bytes through plain function
calls.  The server echoes every message; the client sends text, binary and JSON, pings,
then closes cleanly.  Time is a fake clock, so the output is the same on every run.

Run:  python examples/echo_in_memory.py
"""

from __future__ import annotations

import json
import random
import sys

from zenws_core import (
    ClientConnection,
    Closed,
    CloseReceived,
    ConnectionConfig,
    ConnectionEvent,
    DeflateConfig,
    MessageReceived,
    Opened,
    PingReceived,
    PongReceived,
    RequestReceived,
    ServerConnection,
)


def describe(data: str | bytes) -> str:
    return f"text {data!r}" if isinstance(data, str) else f"binary {data!r}"


def main() -> int:
    now = 0.0  # the fake clock, in seconds
    config = ConnectionConfig(compression=DeflateConfig())
    client = ClientConnection(
        "ws://localhost:8765/echo",
        config=config,
        subprotocols=("echo.v1",),
        mask_source=random.Random(6455).randbytes,  # reproducible masks and key
        now=now,
    )
    server = ServerConnection(config=config, now=now)
    received: list[str | bytes] = []

    def server_handle(event: ConnectionEvent) -> None:
        if isinstance(event, RequestReceived):
            print(f"server: upgrade request for {event.path} offering {list(event.subprotocols)}")
            server.accept(subprotocol="echo.v1", now=now)
        elif isinstance(event, MessageReceived):
            print(f"server: echoing {describe(event.data)}")
            if isinstance(event.data, str):
                server.send_text(event.data)
            else:
                server.send_bytes(event.data)
        elif isinstance(event, PingReceived):
            print(f"server: ping {event.payload.hex()} (pong sent automatically)")
        elif isinstance(event, CloseReceived):
            print(f"server: close frame {event.code} {event.reason!r} (echoed automatically)")
        elif isinstance(event, Closed):
            print(
                f"server: closed code={event.code} clean={event.clean} by {event.initiator.value}"
            )

    def client_handle(event: ConnectionEvent) -> None:
        if isinstance(event, Opened):
            print(
                f"client: open, subprotocol={event.subprotocol} extensions={list(event.extensions)}"
            )
        elif isinstance(event, MessageReceived):
            print(f"client: received {describe(event.data)}")
            received.append(event.data)
        elif isinstance(event, PongReceived):
            print(f"client: pong after {event.round_trip:.3f} s")
        elif isinstance(event, Closed):
            print(f"client: closed code={event.code} clean={event.clean} cause={event.cause.value}")

    def shuttle() -> None:
        """Move bytes both ways until both sides are quiet (what an adapter does with I/O)."""
        while True:
            to_server = client.data_to_send()
            if to_server:
                server.receive_data(to_server, now)
            for event in server.events():
                server_handle(event)
            to_client = server.data_to_send()
            if to_client:
                client.receive_data(to_client, now)
            for event in client.events():
                client_handle(event)
            if not to_server and not to_client:
                return

    shuttle()  # opening handshake
    client.send_text("Hello, zenws!")
    client.send_bytes(b"\x00\x01\x02\xff")
    client.send_json({"type": "greeting", "data": [1, 2, 3]})
    shuttle()

    client.ping(now=now)
    now += 0.005  # the pong "arrives" 5 ms later on the fake clock
    shuttle()

    client.close(1000, "done", now=now)
    shuttle()
    # The server closes the transport first; the client sees that EOF (RFC 6455 section 7.1.1).
    if server.should_close_transport:
        client.receive_eof(now)
    print(
        f"transport: server closes={server.should_close_transport}, "
        f"client closes={client.should_close_transport}"
    )

    stats = client.stats()
    print(
        f"client stats: {stats.messages_out} sent, {stats.messages_in} received, "
        f"{stats.bytes_out} payload bytes out, {stats.wire_bytes_out} bytes on the wire"
    )

    expected: list[str | bytes] = [
        "Hello, zenws!",
        b"\x00\x01\x02\xff",
        json.dumps({"type": "greeting", "data": [1, 2, 3]}, separators=(",", ":")),
    ]
    ok = received == expected and client.should_close_transport
    print("echo OK" if ok else "echo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
