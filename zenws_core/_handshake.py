"""Opening-handshake helpers (RFC 6455 sections 1.3, 4.1 and 4.2): keys, header access and
HTTP response serialisation.

Requests and responses are parsed by h11; responses from a zenws server are written here so a
server can always answer, even after h11 has refused a malformed request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus

from ._events import Headers

__all__ = [
    "GUID",
    "accept_token",
    "check_header",
    "decode_headers",
    "header_tokens",
    "header_values",
    "http_response",
    "valid_key",
]

#: RFC 6455 section 1.3: appended to the client's key before hashing.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def accept_token(key: str | bytes) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2)."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + GUID).digest()).decode("ascii")


def valid_key(key: str) -> bool:
    """A key must be the base64 encoding of 16 bytes (RFC 6455 section 4.2.1, item 5)."""
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        return False


def is_token(value: str) -> bool:
    """RFC 7230 token, the syntax of header names, subprotocols and extension names."""
    return _TOKEN_RE.fullmatch(value) is not None


def check_header(name: str, value: str) -> None:
    """Raise ``ValueError`` for a header the application passed that cannot go on the wire."""
    if not is_token(name):
        raise ValueError(f"invalid header name {name!r}")
    if _BAD_VALUE_RE.search(value) or value != value.strip(" \t"):
        raise ValueError(f"invalid value for header {name!r}: {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header {name!r} value is not latin-1: {value!r}") from None


#: Headers whose values are usually the same on every connection of a process.
_SHARED_VALUES = frozenset(
    (
        b"host",
        b"upgrade",
        b"connection",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"user-agent",
        b"origin",
        b"server",
        b"pragma",
        b"cache-control",
        b"accept-encoding",
        b"accept-language",
    )
)
_NAMES: dict[bytes, str] = {}
_PAIRS: dict[tuple[bytes, bytes], tuple[str, str]] = {}
#: Bound of each cache; once full, new names and pairs are decoded as usual.
_CACHE_LIMIT = 512


def _name(raw: bytes) -> str:
    """A header name decoded, one ``str`` object per distinct name while the cache has room."""
    text = _NAMES.get(raw)
    if text is None:
        text = raw.decode("latin-1")
        if len(_NAMES) < _CACHE_LIMIT and len(raw) <= 64:
            _NAMES[raw] = text
    return text


def _pair(name: bytes, value: bytes) -> tuple[str, str]:
    if name not in _SHARED_VALUES or len(value) > 256:
        return (_name(name), value.decode("latin-1"))
    key = (name, value)
    pair = _PAIRS.get(key)
    if pair is None:
        pair = (_name(name), value.decode("latin-1"))
        if len(_PAIRS) < _CACHE_LIMIT:
            _PAIRS[key] = pair
    return pair


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    """h11 headers (already lower-cased names) as ``str`` pairs.

    Every connection keeps its handshake headers; names, and the whole pairs of headers
    whose values rarely differ between connections (``_SHARED_VALUES``), are shared
    between connections instead of decoded into new objects each time (about 1 KB per
    idle connection).
    """
    return tuple(_pair(name, value) for name, value in raw)


def header_values(headers: Headers, name: str) -> list[str]:
    """All values of header ``name`` (lower-case), in order."""
    return [value for key, value in headers if key == name]


def header_tokens(headers: Headers, name: str) -> list[str]:
    """Comma-separated list header ``name`` as lower-cased, stripped, non-empty items."""
    items: list[str] = []
    for value in header_values(headers, name):
        items.extend(item.strip().lower() for item in value.split(",") if item.strip())
    return items


def http_response(
    status: int,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    server: str | None = None,
    include_body: bool = True,
    upgrade: bool = False,
) -> bytes:
    """Serialise an HTTP/1.1 response.

    A final response always carries ``Content-Length`` and ``Connection: close`` (zenws does not
    keep plain HTTP connections alive); a 101 (``upgrade=True``) carries neither.  Headers are
    validated with ``check_header`` and may not set those framing headers themselves.
    """
    if not upgrade and not 200 <= status <= 599:
        raise ValueError(f"status must be in 200..599, not {status}")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}".rstrip()]
    names = set()
    for name, value in headers:
        check_header(name, value)
        lname = name.lower()
        if not upgrade and lname in ("content-length", "transfer-encoding", "connection"):
            raise ValueError(f"zenws sets the {name} header of a response itself")
        names.add(lname)
        lines.append(f"{name}: {value}")
    if server is not None and "server" not in names:
        lines.append(f"Server: {server}")
    if not upgrade:
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if include_body and not upgrade else head
