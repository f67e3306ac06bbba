"""The blocking-sockets adapter behind the synchronous ``Harness`` interface.

The sync client does its I/O inside its calls, so ``wait_for`` drives it with
``Client.poll`` while it looks for the event; everything else calls straight through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import monotonic
from typing import Any

from tests.adapters.harness import ServerRecord, handle_message, server_options
from zenws_adapters import sync
from zenws_core import ClientEvent, ClientState, ClientStats, Envelope, ServerStatus


class SyncClientHandle:
    def __init__(self, client: sync.Client) -> None:
        self.client = client

    def send_text(self, text: str) -> None:
        self.client.send_text(text)

    def send_bytes(self, data: bytes) -> None:
        self.client.send_bytes(data)

    def send_json(self, obj: Any) -> None:
        self.client.send_json(obj)

    def send(self, type: str, data: Any = None) -> None:
        self.client.send(type, data)

    def request(self, type: str, data: Any = None, timeout: float | None = None) -> Envelope:
        return self.client.request(type, data, timeout)

    def recv(self, timeout: float = 10.0) -> str | bytes:
        return self.client.recv(timeout)

    def ping(self, timeout: float = 10.0) -> float:
        return self.client.ping(timeout)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.client.close(code, reason)

    def stats(self) -> ClientStats:
        return self.client.stats()

    @property
    def state(self) -> ClientState:
        return self.client.state

    @property
    def subprotocol(self) -> str | None:
        return self.client.subprotocol

    def events(self) -> list[ClientEvent]:
        return list(self.client.events_seen)

    def wait_for(
        self, predicate: Callable[[ClientEvent], bool], timeout: float = 10.0
    ) -> ClientEvent:
        end = monotonic() + timeout
        seen = 0
        while True:
            events = self.client.events_seen
            for event in events[seen:]:
                if predicate(event):
                    return event
            seen = len(events)
            remaining = end - monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching event")
            self.client.poll(min(remaining, 0.5))


class SyncServerHandle:
    def __init__(self, server: sync.Server, record: ServerRecord) -> None:
        self.server = server
        self._record = record

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def record(self) -> ServerRecord:
        return self._record

    def status(self) -> ServerStatus:
        return self.server.status()

    def stop(self, timeout: float = 5.0) -> None:
        self.server.shutdown(timeout)


class SyncHarness:
    name = "sync"

    def __init__(self) -> None:
        self._clients: list[SyncClientHandle] = []
        self._servers: list[SyncServerHandle] = []
        self._lock = threading.Lock()

    def start_server(
        self, *, port: int = 0, ssl: Any = None, host: str = "127.0.0.1", **options: Any
    ) -> SyncServerHandle:
        record = ServerRecord()
        server_options(options)
        lock = self._lock

        def handler(ws: sync.ServerWebSocket) -> None:
            with lock:
                record.requests.append(
                    {"path": ws.path, "headers": ws.headers, "subprotocol": ws.subprotocol}
                )
            for message in ws:
                with lock:
                    record.messages.append(message)
                command = handle_message(message, ws.path, ws.headers, ws.subprotocol)
                for reply in command.replies:
                    ws.send(reply)
                if command.close is not None:
                    ws.close(*command.close)
            with lock:
                record.closes.append((ws.close_code, ws.close_reason))

        server = sync.serve(host, port, handler, ssl=ssl, **options)
        handle = SyncServerHandle(server, record)
        self._servers.append(handle)
        return handle

    def connect(self, url: str, *, ssl: Any = None, **options: Any) -> SyncClientHandle:
        handle = SyncClientHandle(sync.connect(url, ssl=ssl, **options))
        self._clients.append(handle)
        return handle

    def close_all(self) -> None:
        clients, self._clients = self._clients, []
        servers, self._servers = self._servers, []
        for client in clients:
            client.client.close()
        for server in servers:
            server.server.shutdown(2.0)


HARNESS = SyncHarness()
