"""WebSocket URL parsing (RFC 6455 section 3): ``ws://`` and ``wss://`` only.

The parsed form carries exactly what a connection needs: whether to use TLS, the host
to connect to (IPv6 literals without brackets), the port (defaults 80 and 443) and the
resource name (path plus query) to put in the request line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

__all__ = ["WebSocketURL", "parse_url"]

_DEFAULT_PORTS = {False: 80, True: 443}
# Characters left alone when normalising the resource name: RFC 3986 pchar, "/" and "?" ("%"
# keeps existing escapes intact).
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


@dataclass(frozen=True, slots=True)
class WebSocketURL:
    """A parsed ``ws://`` / ``wss://`` URL (RFC 6455 section 3)."""

    secure: bool
    host: str
    """Host name or IP address; IPv6 literals are stored without brackets."""
    port: int
    resource: str = "/"
    """Path plus optional query: the request-target of the opening handshake."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("WebSocket URL needs a host")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if not self.resource.startswith("/"):
            raise ValueError(f"resource must start with '/': {self.resource!r}")

    @property
    def scheme(self) -> str:
        return "wss" if self.secure else "ws"

    @property
    def is_default_port(self) -> bool:
        return self.port == _DEFAULT_PORTS[self.secure]

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: brackets around IPv6, port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.is_default_port else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.resource}"


@lru_cache(maxsize=256)
def parse_url(url: str) -> WebSocketURL:
    """Parse a ``ws://`` or ``wss://`` URL; raise ``ValueError`` for anything else.

    Fragments are refused (RFC 6455 section 3: they have no meaning in WebSocket URIs),
    and so is user information (send credentials in an ``Authorization`` header instead).
    The result is immutable, so repeated URLs (every reconnect, every client of a pool)
    are parsed once (errors are not cached).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid WebSocket URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"WebSocket URL must use ws:// or wss://, not {url!r}")
    if parts.fragment or url.rstrip().endswith("#"):
        raise ValueError(f"WebSocket URL must not contain a fragment: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "WebSocket URL must not contain user information; use an Authorization header"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"WebSocket URL has no host: {url!r}")
    secure = scheme == "wss"
    path = quote(parts.path, safe=_SAFE_PATH) or "/"
    if not path.startswith("/"):  # pragma: no cover - urlsplit always yields "" or "/..." here
        path = "/" + path
    resource = path
    if parts.query:
        resource += "?" + quote(parts.query, safe=_SAFE_QUERY)
    return WebSocketURL(
        secure=secure,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[secure],
        resource=resource,
    )
