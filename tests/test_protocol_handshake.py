"""The opening handshake (RFC 6455 section 4) in both roles: exact request/response bytes,
101 validation, rejection, plain HTTP, malformed upgrades, size limits and timeouts."""

from __future__ import annotations

import pytest

from tests.test_protocol_helpers import (
    MODES,
    RFC_ACCEPT,
    RFC_WS_KEY,
    fixed_mask,
    frame,
    pump,
    request_bytes,
    response_101,
    seeded_mask,
)
from zenws_core import _handshake
from zenws_core._config import ConnectionConfig
from zenws_core._events import (
    CloseCause,
    Closed,
    HTTPRequestReceived,
    Initiator,
    MessageReceived,
    Opened,
    Rejected,
    RequestReceived,
)
from zenws_core._handshake import accept_token, decode_headers, http_response
from zenws_core._protocol import (
    ClientConnection,
    ConnectionState,
    ConnectionStateError,
    ServerConnection,
)
from zenws_core._url import parse_url

KEY16 = fixed_mask()(16)


def _client(**kwargs: object) -> ClientConnection:
    kwargs.setdefault("mask_source", fixed_mask())
    return ClientConnection("ws://example.com/path?q=1", **kwargs)  # type: ignore[arg-type]


def _client_accept(client: ClientConnection) -> str:
    request = client.data_to_send()
    for line in request.decode().split("\r\n"):
        if line.startswith("Sec-WebSocket-Key: "):
            return accept_token(line.split(": ", 1)[1])
    raise AssertionError("no key")


def _handshake_failed(events: list[object]) -> Closed:
    closed = events[-1]
    assert isinstance(closed, Closed)
    assert closed.cause is CloseCause.HANDSHAKE_FAILED
    assert closed.code == 1006
    assert not closed.clean
    return closed


# -- client request ------------------------------------------------------------------------


def test_client_request_bytes_are_reproducible() -> None:
    client = ClientConnection(
        "ws://example.com/path?q=1",
        subprotocols=("chat", "superchat"),
        extra_headers=(("Authorization", "Bearer s3cret"),),
        origin="https://example.com",
        mask_source=fixed_mask(),
    )
    assert client.state is ConnectionState.CONNECTING
    assert client.data_to_send() == (
        b"GET /path?q=1 HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: N/ohPTf6IT03+iE9N/ohPQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: https://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"User-Agent: zenws\r\n"
        b"Authorization: Bearer s3cret\r\n"
        b"\r\n"
    )
    assert client.next_deadline() == 10.0


def test_client_request_ipv6_host_header() -> None:
    client = ClientConnection("ws://[::1]:9000/x?y=1", mask_source=fixed_mask())
    request = client.data_to_send()
    assert request.startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: [::1]:9000\r\n")
    assert client.url == parse_url("ws://[::1]:9000/x?y=1")


def test_client_custom_user_agent_and_none() -> None:
    request = _client(extra_headers=(("User-Agent", "mine/1"),)).data_to_send()
    assert b"User-Agent: mine/1\r\n" in request
    assert request.count(b"User-Agent") == 1
    no_agent = _client(config=ConnectionConfig(user_agent=None)).data_to_send()
    assert b"User-Agent" not in no_agent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_headers": (("Sec-WebSocket-Key", "x"),)}, "set by the connection"),
        ({"extra_headers": (("Bad Name", "x"),)}, "invalid header name"),
        ({"extra_headers": (("X-A", "line\r\nbreak"),)}, "invalid value"),
        ({"extra_headers": (("X-A", "snow☃"),)}, "latin-1"),
        ({"subprotocols": ("has space",)}, "invalid subprotocol"),
        ({"mask_source": lambda n: b"short"}, "number of bytes"),
    ],
)
def test_client_constructor_misuse(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _client(**kwargs)


def test_client_default_mask_source_is_random() -> None:
    first = ClientConnection("ws://h/").data_to_send()
    second = ClientConnection("ws://h/").data_to_send()
    assert first != second


# -- server response -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_server_parses_rfc_request_and_accepts(mode: str) -> None:
    server = ServerConnection()
    data = request_bytes(extra=["Sec-WebSocket-Protocol: chat, superchat", "Origin: http://x"])
    if mode == "bytewise":
        for i in range(len(data)):
            server.receive_data(data[i : i + 1], 0.0)
    else:
        server.receive_data(
            data + (b"" if mode == "whole" else frame(0x1, b"hi", key=b"abcd")), 0.0
        )
    (request,) = server.events()
    assert isinstance(request, RequestReceived)
    assert request.method == "GET"
    assert request.path == "/chat"
    assert request.subprotocols == ("chat", "superchat")
    assert ("origin", "http://x") in request.headers
    assert server.request == request
    server.accept("chat", extra_headers=(("X-Trace", "1"),), now=0.0)
    assert server.data_to_send() == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"X-Trace: 1\r\n"
        b"Server: zenws\r\n"
        b"\r\n"
    )
    events = server.events()
    assert events[0] == Opened(subprotocol="chat", extensions=(), headers=request.headers)
    if mode == "trailing":  # a frame pipelined behind the request is delivered after accept
        assert events[1:] == [MessageReceived("hi")]
    assert server.state is ConnectionState.OPEN
    assert server.next_deadline() is None
    assert server.request is None


def test_accept_token_rfc_example() -> None:
    assert accept_token(RFC_WS_KEY) == RFC_ACCEPT
    assert accept_token(RFC_WS_KEY.encode()) == RFC_ACCEPT


def test_accept_refuses_unoffered_subprotocol_and_reserved_headers() -> None:
    server = ServerConnection()
    server.receive_data(request_bytes(extra=["Sec-WebSocket-Protocol: chat"]), 0.0)
    with pytest.raises(ValueError, match="not offered"):
        server.accept("other", now=0.0)
    with pytest.raises(ValueError, match="set by the connection"):
        server.accept(extra_headers=(("Sec-WebSocket-Accept", "x"),), now=0.0)
    assert server.state is ConnectionState.CONNECTING


def test_server_api_misuse() -> None:
    server = ServerConnection()
    with pytest.raises(ConnectionStateError):
        server.accept(now=0.0)
    with pytest.raises(ConnectionStateError):
        server.respond(200)
    with pytest.raises(ConnectionStateError):
        server.send_text("early")
    with pytest.raises(ConnectionStateError):
        server.ping(now=0.0)
    server.receive_data(request_bytes(), 0.0)
    server.accept(now=0.0)
    with pytest.raises(ConnectionStateError):
        server.accept(now=0.0)
    with pytest.raises(ConnectionStateError):
        server.reject(403)


def test_server_without_server_header() -> None:
    server = ServerConnection(config=ConnectionConfig(server_header=None))
    server.receive_data(request_bytes(), 0.0)
    server.accept(now=0.0)
    assert b"Server:" not in server.data_to_send()


# -- end to end ------------------------------------------------------------------------


def test_authorization_header_visible_to_server() -> None:
    client = _client(extra_headers=(("Authorization", "Bearer token-123"),))
    server = ServerConnection()
    server.receive_data(client.data_to_send(), 0.0)
    (request,) = server.events()
    assert isinstance(request, RequestReceived)
    assert ("authorization", "Bearer token-123") in request.headers


def test_subprotocol_negotiated_end_to_end() -> None:
    client2 = _client(subprotocols=("v2", "v1"))
    server2 = ServerConnection()
    server2.receive_data(client2.data_to_send(), 0.0)
    server2.events()
    server2.accept("v1", now=0.0)
    client2.receive_data(server2.data_to_send(), 0.0)
    (opened,) = client2.events()
    assert isinstance(opened, Opened)
    assert opened.subprotocol == "v1"
    assert ("sec-websocket-protocol", "v1") in opened.headers


def test_no_subprotocol_chosen() -> None:
    client = _client(subprotocols=("v1",))
    accept = _client_accept(client)
    client.receive_data(response_101(accept=accept), 0.0)
    (opened,) = client.events()
    assert isinstance(opened, Opened)
    assert opened.subprotocol is None


@pytest.mark.parametrize("mode", MODES)
def test_client_parses_101_with_trailing_frames(mode: str) -> None:
    client = _client()
    data = response_101(accept=_client_accept(client)) + frame(0x1, b"Hello")
    if mode == "bytewise":
        for i in range(len(data)):
            client.receive_data(data[i : i + 1], 0.0)
    else:
        client.receive_data(data + (b"\x8a" if mode == "trailing" else b""), 0.0)
    events = client.events()
    assert isinstance(events[0], Opened)
    assert events[1:] == [MessageReceived("Hello")]
    assert client.next_deadline() is None


def test_client_skips_100_continue() -> None:
    client = _client()
    accept = _client_accept(client)
    client.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n" + response_101(accept=accept), 0.0)
    assert isinstance(client.events()[0], Opened)


@pytest.mark.parametrize(
    ("response", "detail"),
    [
        (response_101(accept="wrong"), "Sec-WebSocket-Accept"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
            "Upgrade: websocket",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Accept: {accept}\r\n\r\n",
            "Connection: Upgrade",
        ),
        (response_101(accept="{accept}", extra=["Sec-WebSocket-Protocol: nope"]), "subprotocol"),
        (
            response_101(accept="{accept}", extra=["Sec-WebSocket-Extensions: permessage-deflate"]),
            "did not offer",
        ),
        (b"HTTP/1.1 1x1 Nope\r\n\r\n", "invalid HTTP response"),
    ],
)
def test_client_refuses_bad_101(response: bytes, detail: str) -> None:
    client = _client(subprotocols=("chat",))
    accept = _client_accept(client)
    client.receive_data(response.replace(b"{accept}", accept.encode()), 0.0)
    events = client.events()
    assert not any(isinstance(e, (Opened, Rejected)) for e in events)
    closed = _handshake_failed(events)
    assert detail in closed.detail
    assert client.should_close_transport
    assert client.next_deadline() is None


# -- rejection (client side) -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_client_sees_rejection_with_body(mode: str) -> None:
    client = _client()
    client.data_to_send()
    data = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\ngo awa"
    if mode == "bytewise":
        for i in range(len(data)):
            client.receive_data(data[i : i + 1], 0.0)
    else:
        client.receive_data(data + (b"HTTP/1.1 200" if mode == "trailing" else b""), 0.0)
    events = client.events()
    assert events[0] == Rejected(
        403, (("content-type", "text/plain"), ("content-length", "6")), b"go awa"
    )
    assert isinstance(events[0], Rejected)
    assert events[0].header("Content-Type") == "text/plain"
    assert events[0].header("x-missing") is None
    closed = _handshake_failed(events)
    assert "403" in closed.detail
    assert client.should_close_transport


def test_client_rejection_chunked_and_until_eof() -> None:
    client = _client()
    client.receive_data(
        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0.0
    )
    assert client.events()[0] == Rejected(401, (("transfer-encoding", "chunked"),), b"abc")
    client = _client()
    client.receive_data(b"HTTP/1.0 503 Busy\r\n\r\npartial", 0.0)
    assert client.events() == []
    client.receive_data(b" body", 0.0)
    client.receive_eof(1.0)
    events = client.events()
    assert events[0] == Rejected(503, (), b"partial body")
    _handshake_failed(events)


def test_client_rejection_body_truncated_at_limit() -> None:
    client = _client(config=ConnectionConfig(max_handshake_size=1024))
    client.receive_data(b"HTTP/1.1 500 Oops\r\nContent-Length: 5000\r\n\r\n" + b"x" * 3000, 0.0)
    events = client.events()
    assert events[0] == Rejected(500, (("content-length", "5000"),), b"x" * 1024)
    _handshake_failed(events)


def test_client_rejection_with_broken_body_still_reported() -> None:
    client = _client()
    client.receive_data(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0.0)
    events = client.events()
    assert events[0] == Rejected(400, (("transfer-encoding", "chunked"),), b"")
    _handshake_failed(events)


def test_client_eof_mid_rejection_body() -> None:
    client = _client()
    client.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nabc", 0.0)
    client.receive_eof(0.0)
    events = client.events()
    assert events[0] == Rejected(404, (("content-length", "10"),), b"abc")
    _handshake_failed(events)


def test_reject_end_to_end() -> None:
    client = _client()
    server = ServerConnection()
    server.receive_data(client.data_to_send(), 0.0)
    server.events()
    server.reject(401, (("WWW-Authenticate", 'Bearer realm="zenws"'),), b"login first")
    response = server.data_to_send()
    assert response == (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b'WWW-Authenticate: Bearer realm="zenws"\r\n'
        b"Server: zenws\r\n"
        b"Content-Length: 11\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"login first"
    )
    closed = _handshake_failed(server.events())
    assert closed.initiator is Initiator.LOCAL
    assert server.should_close_transport
    client.receive_data(response, 0.0)
    events = client.events()
    assert isinstance(events[0], Rejected)
    assert events[0].status == 401
    assert events[0].body == b"login first"
    assert events[0].header("www-authenticate") == 'Bearer realm="zenws"'


# -- plain HTTP on the server ----------------------------------------------------------------


def test_http_get_health() -> None:
    server = ServerConnection()
    server.receive_data(b"GET /health?full=1 HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    (request,) = server.events()
    assert request == HTTPRequestReceived("GET", "/health?full=1", (("host", "x"),), b"")
    assert isinstance(request, HTTPRequestReceived)
    assert request.path == "/health"
    server.respond(200, (("Content-Type", "application/json"),), b'{"ok":true}')
    assert server.data_to_send() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nServer: zenws\r\n"
        b'Content-Length: 11\r\nConnection: close\r\n\r\n{"ok":true}'
    )
    closed = _handshake_failed(server.events())
    assert "plain HTTP" in closed.detail
    assert server.should_close_transport
    with pytest.raises(ConnectionStateError):
        server.accept(now=0.0)


def test_http_head_has_no_body_and_post_body_is_read() -> None:
    server = ServerConnection()
    server.receive_data(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    server.events()
    server.respond(200, body=b"hello")
    assert server.data_to_send().endswith(b"Content-Length: 5\r\nConnection: close\r\n\r\n")
    server = ServerConnection()
    server.receive_data(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab", 0.0)
    assert server.events() == []
    server.receive_data(b"cd", 0.0)
    (request,) = server.events()
    assert isinstance(request, HTTPRequestReceived)
    assert request.body == b"abcd"


def test_http_body_over_limit_is_413() -> None:
    server = ServerConnection(config=ConnectionConfig(max_handshake_size=1024))
    server.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 0.0)
    server.receive_data(b"x" * 2000, 0.0)
    assert server.data_to_send().startswith(b"HTTP/1.1 413 ")
    _handshake_failed(server.events())


@pytest.mark.parametrize(
    ("status", "headers", "message"),
    [
        (101, (), "200..599"),
        (200, (("Content-Length", "3"),), "sets the Content-Length"),
        (200, (("X", "a\nb"),), "invalid value"),
    ],
)
def test_respond_misuse(status: int, headers: tuple[tuple[str, str], ...], message: str) -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    with pytest.raises(ValueError, match=message):
        server.respond(status, headers)


def test_http_response_unknown_status_phrase() -> None:
    assert http_response(599).startswith(b"HTTP/1.1 599\r\n")


# -- malformed upgrades (answered automatically) ------------------------------------------


@pytest.mark.parametrize(
    ("request_data", "status", "detail"),
    [
        (request_bytes().replace(b"GET", b"POST"), 400, "method POST"),
        (request_bytes().replace(b"HTTP/1.1", b"HTTP/1.0"), 400, "HTTP/1.1"),
        (request_bytes().replace(b"Upgrade: websocket", b"Upgrade: h2c"), 400, "Upgrade"),
        (
            request_bytes().replace(b"Connection: Upgrade", b"Connection: keep-alive"),
            400,
            "Connection",
        ),
        (request_bytes(key="c2hvcnQ="), 400, "Sec-WebSocket-Key"),
        (request_bytes(key="not base64!!"), 400, "Sec-WebSocket-Key"),
        (
            request_bytes().replace(b"Sec-WebSocket-Key: " + RFC_WS_KEY.encode() + b"\r\n", b""),
            400,
            "Key",
        ),
        (request_bytes().replace(b"Version: 13", b"Version: 8"), 426, "Version"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 400, "invalid HTTP request"),
    ],
)
def test_bad_upgrade_answered_automatically(request_data: bytes, status: int, detail: str) -> None:
    server = ServerConnection()
    server.receive_data(request_data, 0.0)
    closed = _handshake_failed(server.events())
    assert detail in closed.detail
    response = server.data_to_send()
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close\r\n" in response
    if status == 426:
        assert b"Sec-WebSocket-Version: 13\r\n" in response
    assert server.should_close_transport
    server.receive_data(b"more", 0.0)
    assert server.events() == []


# -- handshake size limit ------------------------------------------------------------------


def test_server_refuses_huge_request_line_without_buffering_it() -> None:
    server = ServerConnection()
    line = b"GET /" + b"a" * (1024 * 1024) + b" HTTP/1.1\r\n"
    server.receive_data(line, 0.0)
    response = server.data_to_send()
    assert response.startswith(b"HTTP/1.1 431 ")
    _handshake_failed(server.events())
    assert server.should_close_transport


def test_server_size_limit_hit_while_streaming_in() -> None:
    server = ServerConnection(config=ConnectionConfig(max_handshake_size=4096))
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n", 0.0)
    sent = 0
    while not server.should_close_transport:
        server.receive_data(b"X-Filler: " + b"f" * 1000 + b"\r\n", 0.0)
        sent += 1
        assert sent < 20
    assert sent <= 6  # refused as soon as the head outgrows 4 KiB, not at the end
    assert server.data_to_send().startswith(b"HTTP/1.1 431 ")


def test_client_refuses_huge_response_head() -> None:
    client = _client()
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nX: " + b"y" * (1024 * 1024), 0.0)
    closed = _handshake_failed(client.events())
    assert "invalid HTTP response" in closed.detail
    assert client.should_close_transport


def test_server_bounds_data_pipelined_before_accept() -> None:
    server = ServerConnection(config=ConnectionConfig(max_handshake_size=1024))
    server.receive_data(request_bytes(), 0.0)
    server.receive_data(b"x" * 600, 0.0)
    assert server.state is ConnectionState.CONNECTING
    server.receive_data(b"x" * 600, 0.0)
    assert server.data_to_send().startswith(b"HTTP/1.1 400 ")
    _handshake_failed(server.events()[1:])


# -- timeouts, EOF and aborts -------------------------------------------------------------


def test_client_handshake_timeout() -> None:
    client = _client(now=100.0)
    assert client.next_deadline() == 110.0
    client.handle_timer(109.9)
    assert client.events() == []
    client.handle_timer(110.0)
    closed = _handshake_failed(client.events())
    assert "timed out" in closed.detail
    assert client.should_close_transport
    assert client.next_deadline() is None


def test_server_handshake_timeout_while_app_decides() -> None:
    server = ServerConnection(config=ConnectionConfig(handshake_timeout=2.0), now=5.0)
    server.receive_data(request_bytes(), 6.0)
    server.events()
    assert server.next_deadline() == 7.0
    server.handle_timer(6.5)
    assert server.state is ConnectionState.CONNECTING
    server.handle_timer(7.0)
    assert server.state is ConnectionState.CLOSED
    _handshake_failed(server.events())
    assert server.data_to_send() == b""  # no response: the transport just closes
    assert server.should_close_transport
    with pytest.raises(ConnectionStateError):
        server.accept(now=8.0)


def test_no_handshake_timeout() -> None:
    client = _client(config=ConnectionConfig(handshake_timeout=None))
    assert client.next_deadline() is None
    client.handle_timer(1e9)
    assert client.state is ConnectionState.CONNECTING


@pytest.mark.parametrize("role", ["client", "server"])
def test_eof_during_handshake(role: str) -> None:
    conn: ClientConnection | ServerConnection = (
        _client() if role == "client" else ServerConnection()
    )
    conn.receive_data(b"HTTP/1.1 1" if role == "client" else b"GET / HT", 0.0)
    conn.receive_eof(1.0)
    closed = _handshake_failed(conn.events())
    assert "during the opening handshake" in closed.detail
    assert conn.should_close_transport
    conn.receive_eof(2.0)  # idempotent
    assert conn.events() == []


def test_eof_while_app_decides() -> None:
    server = ServerConnection()
    server.receive_data(request_bytes(), 0.0)
    server.receive_eof(0.0)
    events = server.events()
    assert isinstance(events[0], RequestReceived)
    _handshake_failed(events)
    assert server.request is None


@pytest.mark.parametrize("method", ["close", "fail"])
def test_close_during_handshake_aborts(method: str) -> None:
    client = _client()
    getattr(client, method)(now=0.0)
    closed = _handshake_failed(client.events())
    assert closed.initiator is Initiator.LOCAL
    assert client.should_close_transport


def test_pump_full_handshake_and_message() -> None:
    client = ClientConnection("ws://h/", mask_source=seeded_mask(3))
    server = ServerConnection()
    _, server_events = pump(client, server)
    assert isinstance(server_events[0], RequestReceived)
    server.accept(now=0.0)
    server.send_text("welcome")
    client_events, _ = pump(client, server)
    assert isinstance(client_events[0], Opened)
    assert client_events[1] == MessageReceived("welcome")


# ------------------------------------------------------------------ header strings shared


@pytest.fixture
def empty_header_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_handshake, "_NAMES", {})
    monkeypatch.setattr(_handshake, "_PAIRS", {})


@pytest.mark.usefixtures("empty_header_caches")
def test_decoded_headers_share_common_pairs_between_connections() -> None:
    raw = [
        (b"host", b"example.com"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"x-custom", b"\xe9t\xe9"),
    ]
    first, second = decode_headers(raw), decode_headers(list(raw))
    assert first == (
        ("host", "example.com"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("x-custom", "\u00e9t\u00e9"),  # latin-1, as h11 hands bytes over
    )
    assert first == second
    assert first[0] is second[0]  # a header whose value is usually the same: one pair
    assert first[1] is second[1]
    assert first[2] is not second[2]  # a per-connection value is decoded each time
    assert first[2][0] is second[2][0]  # ... under a shared name
    assert first[3][0] is second[3][0]


@pytest.mark.usefixtures("empty_header_caches")
def test_header_caches_stay_bounded() -> None:
    for i in range(2 * _handshake._CACHE_LIMIT):
        headers = decode_headers([(b"x-name-%d" % i, b"v"), (b"host", b"h%d" % i)])
        assert headers == ((f"x-name-{i}", "v"), ("host", f"h{i}"))
    assert len(_handshake._NAMES) <= _handshake._CACHE_LIMIT
    assert len(_handshake._PAIRS) <= _handshake._CACHE_LIMIT
