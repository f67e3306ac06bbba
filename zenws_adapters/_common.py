"""Runtime-neutral helpers shared by every adapter.

Nothing here blocks or waits: building TLS contexts, choosing a proxy from the
environment, speaking the HTTP CONNECT exchange as bytes (through h11), and turning
``connect(url, **options)`` keywords into one ``ClientConfig``.  Each adapter only adds
the I/O of its runtime around these.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import os
import secrets
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

from zenws_core import ClientConfig, TLSConfig

__all__ = [
    "ConnectTunnel",
    "ProxyConfig",
    "ProxyError",
    "build_client_config",
    "classify_os_error",
    "client_ssl_context",
    "mask_keys",
    "proxy_for",
    "root_cause",
    "server_ssl_context",
]


# --------------------------------------------------------------------------- masking keys

#: Unused 4-byte masking keys, cut from one 4 KiB draw of the OS's CSPRNG.
_KEYS: list[bytes] = []
os.register_at_fork(after_in_child=_KEYS.clear)  # a child must never reuse its parent's keys


def mask_keys(n: int) -> bytes:
    """``n`` random bytes from ``secrets``, served from a pool of 4-byte pieces.

    The default ``mask_source`` of every adapter's client: masking keys (4 bytes a frame)
    and handshake nonces (16 bytes a connection).  RFC 6455 sections 4.1 and 5.3 want both
    unpredictable, from a strong source: every byte here is ``secrets`` output, used once.
    Drawing 1,024 pieces per system call saves a ``getrandom`` call (several microseconds
    on a VM) per frame sent.  ``list.pop`` is atomic, so threads never share a piece; a
    forked child starts with an empty pool.
    """
    if n == 4:
        return _key()
    if n % 4 or n > 64:
        return secrets.token_bytes(n)
    return b"".join([_key() for _ in range(n // 4)])


def _key() -> bytes:
    try:
        return _KEYS.pop()
    except IndexError:
        pool = secrets.token_bytes(4096)
        _KEYS.extend([pool[i : i + 4] for i in range(4, 4096, 4)])
        return pool[:4]


# --------------------------------------------------------------------------- config


_CLIENT_FIELDS = {f.name for f in dataclasses.fields(ClientConfig)}


def build_client_config(url: str, options: Mapping[str, Any]) -> ClientConfig:
    """``connect(url, **options)``: a ``config=`` object, or ``ClientConfig`` fields by name.

    Unknown option names raise ``TypeError`` naming them (a typo is not silently ignored).
    """
    options = dict(options)
    config = options.pop("config", None)
    unknown = set(options) - _CLIENT_FIELDS
    if unknown:
        raise TypeError(f"unknown connect() options: {', '.join(sorted(unknown))}")
    if "headers" in options:
        options["headers"] = normalise_headers(options["headers"])
    if config is None:
        return ClientConfig(url=url, **options)
    if not isinstance(config, ClientConfig):
        raise TypeError("config must be a ClientConfig")
    return dataclasses.replace(config, url=url, **options)


def normalise_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    """Accept a mapping or pairs; return lower-cased ``(name, value)`` pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name).lower(), str(value)) for name, value in items)


# --------------------------------------------------------------------------- TLS


def client_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for a ``wss://`` client from ``TLSConfig``.

    The system CA store unless ``ca_file``/``ca_data`` are given; ``verify=False`` turns
    certificate and hostname checks off (explicit insecure mode).
    """
    if tls.ca_file is not None or tls.ca_data is not None:
        context = ssl.create_default_context(cafile=tls.ca_file, cadata=tls.ca_data)
    else:
        context = ssl.create_default_context()
    if tls.certfile is not None:
        context.load_cert_chain(tls.certfile, tls.keyfile)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def server_ssl_context(
    certfile: str, keyfile: str | None = None, *, client_ca_file: str | None = None
) -> ssl.SSLContext:
    """A TLS server context; with ``client_ca_file`` it requires client certificates."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_ca_file is not None:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def classify_os_error(exc: BaseException) -> dict[str, bool]:
    """Keyword flags for ``ReconnectingClient.connection_failed`` from a connect error."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return {"tls": True}
    if isinstance(exc, TimeoutError):
        return {"timed_out": True}
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED
    ):
        return {"refused": True}
    return {}


def root_cause(exc: BaseException) -> BaseException:
    """The error under wrappers (``raise Wrapper from cause``; a group stands for its first).

    Runtimes wrap connect errors (anyio: ``OSError("All connection attempts failed")`` from a
    group of per-address errors); the root's type and errno are what ``classify_os_error``
    and the failure's detail need.
    """
    while (cause := exc.__cause__) is not None:
        exc = cause.exceptions[0] if isinstance(cause, BaseExceptionGroup) else cause
    return exc


# --------------------------------------------------------------------------- proxies


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """An HTTP proxy reached with CONNECT (RFC 9110 section 9.3.6)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ProxyConfig:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", ""):
            raise ValueError(f"only http:// proxies are supported, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"proxy URL has no host: {url!r}")
        return cls(
            parts.hostname,
            parts.port or 8080,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )


def _bypass(host: str, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def proxy_for(
    host: str, secure: bool, *, proxy: str | None = None, environ: Mapping[str, str] | None = None
) -> ProxyConfig | None:
    """The proxy to use for ``host``: the explicit one, else ``https_proxy``/``http_proxy``.

    ``no_proxy`` (comma-separated hosts or domain suffixes, ``*`` for all) bypasses the
    environment's proxies; ``proxy=""`` disables proxies for this connection.
    """
    if proxy is not None:
        return ProxyConfig.from_url(proxy) if proxy else None
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name.lower()) or env.get(name.upper())

    value = get("https_proxy") if secure else get("http_proxy")
    if not value and secure:
        value = get("http_proxy")
    if not value or _bypass(host, get("no_proxy") or ""):
        return None
    return ProxyConfig.from_url(value)


class ProxyError(ConnectionError):
    """The proxy refused or broke the CONNECT exchange."""


class ConnectTunnel:
    """The CONNECT exchange as bytes: ``request()`` to write, ``receive(data)`` until done.

    ``receive`` returns ``None`` while the response is incomplete, else the bytes that
    followed the response (the first bytes of the tunnelled stream). A non-2xx answer
    raises ``ProxyError``.
    """

    def __init__(self, proxy: ProxyConfig, host: str, port: int) -> None:
        self._proxy = proxy
        self._authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)

    def request(self) -> bytes:
        headers = [("Host", self._authority)]
        if self._proxy.username is not None:
            creds = f"{self._proxy.username}:{self._proxy.password or ''}".encode()
            headers.append(("Proxy-Authorization", "Basic " + base64.b64encode(creds).decode()))
        return (
            self._conn.send(h11.Request(method="CONNECT", target=self._authority, headers=headers))
            or b""
        )

    async def exchange(
        self,
        send: Callable[[bytes], Awaitable[Any]],
        receive: Callable[[int], Awaitable[bytes]],
        eof: type[BaseException] | tuple[type[BaseException], ...] = (),
    ) -> bytes:
        """The whole exchange over a connected stream's ``send(data)`` and ``receive(max)``.

        Returns the bytes that followed the response; ``ProxyError`` as ``receive`` does.
        ``eof``: the exception ``receive`` raises at the end of the stream, if it does not
        return ``b""`` there.
        """
        await send(self.request())
        while True:
            try:
                data = await receive(64 * 1024)
            except eof:
                data = b""
            if (rest := self.receive(data)) is not None:
                return rest

    def receive(self, data: bytes) -> bytes | None:
        if not data:
            raise ProxyError("proxy closed the connection during CONNECT")
        self._conn.receive_data(data)
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ProxyError(f"bad CONNECT response from proxy: {exc}") from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                if not 200 <= event.status_code < 300:
                    raise ProxyError(f"proxy refused CONNECT: HTTP {event.status_code}")
                trailing, _closed = self._conn.trailing_data
                return bytes(trailing)
            raise ProxyError(f"unexpected CONNECT response event {type(event).__name__}")
