"""zenws_core inside your own event loop: one hand-written ``selectors`` loop, no adapter.

For programs that already own their event loop (a game loop, a GUI, an embedded system):
the loop below runs a tiny echo server (``ServerHub`` sessions) and a reconnecting client
(``ReconnectingClient``) on 127.0.0.1 in one thread.  The loop only moves bytes, opens and
closes sockets when the client core asks, and sleeps until the earliest core deadline; the
cores do everything else (handshakes, pings, close codes, reconnect timing).

Run:  python examples/custom_event_loop.py
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import sys
import time

from zenws_core import (
    ClientConfig,
    ClientState,
    Closed,
    CloseTransport,
    Connected,
    Disconnected,
    FailureKind,
    MessageReceived,
    Opened,
    OpenTransport,
    ReconnectingClient,
    ReconnectScheduled,
    Routed,
    ServerConfig,
    ServerHub,
    ServerSession,
)

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Transport:
    """One non-blocking socket and the bytes still to write on it."""

    def __init__(self, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        self.sock, self.selector, self.out = sock, selector, bytearray()
        self.connecting = self.closed = False
        selector.register(sock, READ, self)

    def write(self, data: bytes) -> None:
        self.out += data
        if self.out and not self.connecting:
            with contextlib.suppress(BlockingIOError):
                del self.out[: self.sock.send(self.out)]
        self.selector.modify(self.sock, READ | (WRITE if self.out or self.connecting else 0), self)

    def close(self) -> None:
        self.closed = True
        self.selector.unregister(self.sock)
        self.sock.close()


def main() -> int:
    clock = time.monotonic
    selector = selectors.DefaultSelector()
    # Bound but not listening yet: the client's first attempt is refused, and the core
    # schedules the reconnect (the loop just follows its deadline).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]

    hub = ServerHub(ServerConfig(), now=clock())
    sessions: dict[Transport, ServerSession] = {}
    client: ReconnectingClient[object] = ReconnectingClient(
        ClientConfig(url=f"ws://127.0.0.1:{port}/chat"), delays=[0.1] * 3
    )
    client_transport: Transport | None = None
    outgoing: list[str | bytes] = ["hello", b"\x00\x01\x02", '{"type": "greeting", "data": 1}']
    echoes: list[str | bytes] = []

    def pump_client(now: float) -> None:
        nonlocal client_transport
        for action in client.actions():
            if isinstance(action, OpenTransport):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex((action.host, action.port))  # completion shows as writable
                client_transport = Transport(sock, selector)
                client_transport.connecting = True
                client_transport.write(b"")
            elif isinstance(action, CloseTransport) and client_transport is not None:
                client_transport.write(client.data_to_send())
                client_transport.close()
                client_transport = None
        if client_transport is not None and not client_transport.connecting:
            client_transport.write(client.data_to_send())
        for event in client.events():
            if isinstance(event, Connected):
                print(f"client: connected (attempt {event.attempt})")
                for message in outgoing:
                    if isinstance(message, str):
                        client.send_text(message, now=now)
                    else:
                        client.send_bytes(message, now=now)
            elif isinstance(event, Routed):
                print(f"client: received {event.data!r}")
                echoes.append(event.data)
                if len(echoes) == len(outgoing):
                    client.close(1000, "done", now=now)
            elif isinstance(event, Disconnected):
                print(f"client: disconnected ({event.failure.kind.value}) code={event.code}")
                if event.failure.kind is FailureKind.CONNECT_REFUSED:
                    print("server: now listening")
                    listener.listen()
                    selector.register(listener, READ, None)
            elif isinstance(event, ReconnectScheduled):
                print(f"client: reconnect scheduled in {event.delay:.1f}s")
        if client_transport is not None and not client_transport.connecting:
            client_transport.write(client.data_to_send())

    def pump_session(transport: Transport, session: ServerSession, now: float) -> None:
        for event in session.events():
            if isinstance(event, Opened):
                assert session.request is not None
                print(f"server: opened {session.request.path}")
            elif isinstance(event, MessageReceived):
                session.send(event.data)  # echo
            elif isinstance(event, Closed):
                print(f"server: closed code={event.code} reason={event.reason!r}")
        transport.write(session.data_to_send())
        if session.should_close_transport:
            transport.close()
            del sessions[transport]

    client.start(clock())
    pump_client(clock())
    started = clock()
    while client_transport is not None or sessions or client.state is not ClientState.CLOSED:
        if clock() - started > 10:
            print("timed out")
            return 1
        deadlines = [d for d in [client.next_deadline()] if d is not None]
        deadlines += [d for s in sessions.values() if (d := s.next_deadline()) is not None]
        timeout = max(0.0, min(deadlines) - clock()) if deadlines else 1.0
        for key, mask in selector.select(timeout):
            now = clock()
            if key.data is None:  # the listener: a new server session
                sock, _ = listener.accept()
                sock.setblocking(False)
                sessions[Transport(sock, selector)] = hub.session(now)
                continue
            transport: Transport = key.data
            if transport.closed:  # closed earlier in this same turn
                continue
            if transport is client_transport and transport.connecting and mask & WRITE:
                transport.connecting = False
                error = transport.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    transport.close()
                    client_transport = None
                    refused = error == errno.ECONNREFUSED
                    client.connection_failed(os.strerror(error), now, refused=refused)
                else:
                    client.connection_made(now)
                pump_client(now)
                continue
            if mask & WRITE:
                transport.write(b"")
            if mask & READ:
                try:
                    data = transport.sock.recv(65536)
                except ConnectionError:
                    data = b""
                if transport is client_transport:
                    if data:
                        client.receive_data(data, now)
                    else:
                        transport.close()
                        client_transport = None
                        client.receive_eof(now)
                    pump_client(now)
                elif transport in sessions:
                    session = sessions[transport]
                    if data:
                        session.receive_data(data, now)
                    else:
                        session.receive_eof(now)
                    pump_session(transport, session, now)
        now = clock()  # timers: calling early is harmless, so call them every turn
        client.handle_timer(now)
        pump_client(now)
        for transport, session in list(sessions.items()):
            session.handle_timer(now)
            pump_session(transport, session, now)

    listener.close()
    status = hub.status(clock())
    print(
        f"server status: {status.connections_total} connection(s), "
        f"{status.messages_in} in, {status.messages_out} out"
    )
    ok = echoes == outgoing
    print("custom loop OK" if ok else "custom loop FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
