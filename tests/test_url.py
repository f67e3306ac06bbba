"""``ws://`` / ``wss://`` URL parsing (RFC 6455 section 3)."""

from __future__ import annotations

import pytest

from zenws_core._url import WebSocketURL, parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://example.com", WebSocketURL(False, "example.com", 80, "/")),
        ("wss://example.com", WebSocketURL(True, "example.com", 443, "/")),
        ("WS://Example.COM:8080/chat", WebSocketURL(False, "example.com", 8080, "/chat")),
        ("wss://h:443/a/b?x=1&y=2", WebSocketURL(True, "h", 443, "/a/b?x=1&y=2")),
        ("ws://h/?", WebSocketURL(False, "h", 80, "/")),
        ("ws://h?only=query", WebSocketURL(False, "h", 80, "/?only=query")),
        ("ws://[::1]:9000/x?y=1", WebSocketURL(False, "::1", 9000, "/x?y=1")),
        ("wss://[2001:db8::7]/", WebSocketURL(True, "2001:db8::7", 443, "/")),
        ("ws://127.0.0.1:1/", WebSocketURL(False, "127.0.0.1", 1, "/")),
        ("ws://h/a b", WebSocketURL(False, "h", 80, "/a%20b")),
        ("ws://h/caf%C3%A9", WebSocketURL(False, "h", 80, "/caf%C3%A9")),
        ("  ws://h/  ", WebSocketURL(False, "h", 80, "/")),
    ],
)
def test_parse_url(url: str, expected: WebSocketURL) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/", "ws:// or wss://"),
        ("example.com", "ws:// or wss://"),
        ("ws://h/#frag", "fragment"),
        ("ws://h/#", "fragment"),
        ("ws://user:pw@h/", "user information"),
        ("ws://user@h/", "user information"),
        ("ws:///path", "no host"),
        ("ws://h:99999/", "invalid WebSocket URL"),
        ("ws://h:0/", "port out of range"),
        ("ws://h:abc/", "invalid WebSocket URL"),
        ("ws://[::1/", "invalid WebSocket URL"),
    ],
)
def test_parse_url_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(url)


@pytest.mark.parametrize(
    ("url", "host_header", "text"),
    [
        ("ws://h/", "h", "ws://h/"),
        ("ws://h:80/", "h", "ws://h/"),
        ("ws://h:443/", "h:443", "ws://h:443/"),
        ("wss://h:443/", "h", "wss://h/"),
        ("wss://h:8443/p?q", "h:8443", "wss://h:8443/p?q"),
        ("ws://[::1]:9000/x?y=1", "[::1]:9000", "ws://[::1]:9000/x?y=1"),
        ("ws://[::1]/", "[::1]", "ws://[::1]/"),
    ],
)
def test_host_header_and_str(url: str, host_header: str, text: str) -> None:
    parsed = parse_url(url)
    assert parsed.host_header == host_header
    assert str(parsed) == text
    assert parse_url(str(parsed)) == parsed


def test_properties() -> None:
    parsed = parse_url("wss://h:443/")
    assert parsed.scheme == "wss"
    assert parsed.is_default_port
    assert parse_url("ws://h:81/").is_default_port is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": ""}, "needs a host"),
        ({"port": 70000}, "port out of range"),
        ({"resource": "nope"}, "must start with"),
    ],
)
def test_direct_construction_validates(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"secure": False, "host": "h", "port": 80, "resource": "/"}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        WebSocketURL(**fields)  # type: ignore[arg-type]
