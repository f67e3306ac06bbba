"""permessage-deflate (RFC 7692): negotiation and a decompression-bounded extension.

wsproto's ``PerMessageDeflate`` inflates whatever the peer sends, so a few kilobytes of
compressed zeros can allocate gigabytes.  ``BoundedDeflate`` inflates with ``max_length`` and
a per-message budget equal to ``max_message_size`` and fails with 1009 when a message would
exceed it.  Outbound, zenws compresses whole messages (``compress``) before fragmenting them,
so messages below ``DeflateConfig.min_size`` can go out uncompressed.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ._config import DeflateConfig

__all__ = [
    "EXTENSION_NAME",
    "BoundedDeflate",
    "DeflateParameters",
    "NegotiationError",
    "client_accept",
    "client_offer",
    "parse_extension_header",
    "server_negotiate",
]

EXTENSION_NAME = "permessage-deflate"
_SYNC_TAIL = b"\x00\x00\xff\xff"

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_NAME_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*")
_PARAM_RE = re.compile(rf";[ \t]*({_TOKEN})[ \t]*(?:=[ \t]*({_TOKEN}|{_QUOTED})[ \t]*)?")
_BITS_RE = re.compile(r"[1-9][0-9]?")

ExtensionOffer = tuple[str, tuple[tuple[str, str | None], ...]]


class NegotiationError(ValueError):
    """The peer's extension header is malformed or its parameters are unacceptable."""


def parse_extension_header(value: str) -> list[ExtensionOffer]:
    """Parse a ``Sec-WebSocket-Extensions`` value (RFC 6455 section 9.1) into offers.

    Each offer is ``(name, ((param, value-or-None), ...))``; quoted values are unquoted.
    Raises ``NegotiationError`` when the value does not follow the grammar.
    """
    offers: list[ExtensionOffer] = []
    pos, end = 0, len(value)
    while pos < end:
        if value[pos] in ", \t":  # empty list elements are allowed by the #rule
            pos += 1
            continue
        match = _NAME_RE.match(value, pos)
        if match is None:
            raise NegotiationError(f"malformed extension header: {value!r}")
        name = match.group(1).lower()
        pos = match.end()
        params: list[tuple[str, str | None]] = []
        while (param := _PARAM_RE.match(value, pos)) is not None:
            raw = param.group(2)
            if raw is not None and raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params.append((param.group(1).lower(), raw))
            pos = param.end()
        if pos < end and value[pos] != ",":
            raise NegotiationError(f"malformed extension header: {value!r}")
        offers.append((name, tuple(params)))
    return offers


@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """The agreed permessage-deflate parameters (RFC 7692 section 7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def header_value(self) -> str:
        """Render as a ``Sec-WebSocket-Extensions`` element (the server's response)."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


def client_offer(config: DeflateConfig) -> str:
    """The client's offer (RFC 7692 section 7.1); it always advertises client_max_window_bits."""
    parts = [EXTENSION_NAME]
    if config.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if config.client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if config.server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={config.server_max_window_bits}")
    if config.client_max_window_bits is not None:
        parts.append(f"client_max_window_bits={config.client_max_window_bits}")
    else:
        parts.append("client_max_window_bits")
    return "; ".join(parts)


def _bits(name: str, value: str | None) -> int:
    if value is None or _BITS_RE.fullmatch(value) is None or not 8 <= int(value) <= 15:
        raise NegotiationError(f"invalid {name} value {value!r}")
    return int(value)


def _checked_params(params: tuple[tuple[str, str | None], ...]) -> dict[str, str | None]:
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name in seen:
            raise NegotiationError(f"duplicate parameter {name}")
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise NegotiationError(f"{name} takes no value")
        elif name not in ("server_max_window_bits", "client_max_window_bits"):
            raise NegotiationError(f"unknown parameter {name}")
        seen[name] = value
    return seen


def client_accept(config: DeflateConfig, offers: list[ExtensionOffer]) -> DeflateParameters:
    """Validate the server's accepted extensions against our offer (RFC 7692 section 7.1).

    Exactly one permessage-deflate element is allowed and nothing we did not offer.
    """
    if len(offers) != 1 or offers[0][0] != EXTENSION_NAME:
        names = ", ".join(name for name, _ in offers)
        raise NegotiationError(f"server accepted extensions we did not offer: {names}")
    params = _checked_params(offers[0][1])
    server_bits = None
    if "server_max_window_bits" in params:
        server_bits = _bits("server_max_window_bits", params["server_max_window_bits"])
        limit = config.server_max_window_bits
        if limit is not None and server_bits > limit:
            raise NegotiationError(f"server_max_window_bits={server_bits} exceeds our {limit}")
    elif config.server_max_window_bits is not None:
        raise NegotiationError("server ignored our server_max_window_bits")
    client_bits = None
    if "client_max_window_bits" in params:
        client_bits = _bits("client_max_window_bits", params["client_max_window_bits"])
        if client_bits < 9:
            raise NegotiationError("client_max_window_bits=8 is not supported by zlib")
        limit = config.client_max_window_bits
        if limit is not None and client_bits > limit:
            raise NegotiationError(f"client_max_window_bits={client_bits} exceeds our {limit}")
    server_no_context = "server_no_context_takeover" in params
    if config.server_no_context_takeover and not server_no_context:
        raise NegotiationError("server ignored our server_no_context_takeover")
    return DeflateParameters(
        server_no_context_takeover=server_no_context,
        client_no_context_takeover=(
            "client_no_context_takeover" in params or config.client_no_context_takeover
        ),
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


def _server_accept_one(
    config: DeflateConfig, params_raw: tuple[tuple[str, str | None], ...]
) -> DeflateParameters:
    params = _checked_params(params_raw)
    server_bits = config.server_max_window_bits
    if "server_max_window_bits" in params:
        offered = _bits("server_max_window_bits", params["server_max_window_bits"])
        if offered < 9:
            raise NegotiationError("server_max_window_bits=8 is not supported by zlib")
        server_bits = offered if server_bits is None else min(offered, server_bits)
    client_bits = None
    if "client_max_window_bits" in params:
        raw = params["client_max_window_bits"]
        offered_client = 15 if raw is None else _bits("client_max_window_bits", raw)
        if config.client_max_window_bits is not None:
            client_bits = min(offered_client, config.client_max_window_bits)
        elif raw is not None:
            client_bits = offered_client
    return DeflateParameters(
        server_no_context_takeover=(
            "server_no_context_takeover" in params or config.server_no_context_takeover
        ),
        client_no_context_takeover=(
            "client_no_context_takeover" in params or config.client_no_context_takeover
        ),
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


def server_negotiate(
    config: DeflateConfig, offers: list[ExtensionOffer]
) -> DeflateParameters | None:
    """Accept the first acceptable permessage-deflate offer (RFC 7692 section 5), if any."""
    for name, params in offers:
        if name != EXTENSION_NAME:
            continue
        try:
            return _server_accept_one(config, params)
        except NegotiationError:
            continue
    return None


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflation never produces more than ``max_message_size`` bytes.

    Plugged into wsproto's frame decoder; ``error_detail`` explains the last failure.
    """

    def __init__(
        self,
        params: DeflateParameters,
        *,
        client: bool,
        compression_level: int = 6,
        min_size: int = 32,
        max_message_size: int | None = None,
    ) -> None:
        super().__init__(
            client_no_context_takeover=params.client_no_context_takeover,
            client_max_window_bits=max(9, params.client_max_window_bits or 15),
            server_no_context_takeover=params.server_no_context_takeover,
            server_max_window_bits=max(9, params.server_max_window_bits or 15),
        )
        self.params = params
        self.min_size = min_size
        self._level = compression_level
        self._max = max_message_size
        if client:
            self._out_bits = self.client_max_window_bits
            self._out_reset = params.client_no_context_takeover
            self._in_bits = self.server_max_window_bits
            self._in_reset = params.server_no_context_takeover
        else:
            self._out_bits = self.server_max_window_bits
            self._out_reset = params.server_no_context_takeover
            self._in_bits = self.client_max_window_bits
            self._in_reset = params.client_no_context_takeover
        self._deflater: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None
        self._frame_is_data = False
        self._message_compressed = False
        self._message_size = 0
        self._enabled = True
        self.error_detail = ""

    @property
    def message_compressed(self) -> bool:
        """Whether the inbound message being received has RSV1 set."""
        return self._message_compressed

    # -- outbound ---------------------------------------------------------------------

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message (RFC 7692 section 7.2.1): sync-flush, drop the tail."""
        deflater = self._deflater
        if deflater is None:
            deflater = zlib.compressobj(self._level, zlib.DEFLATED, -self._out_bits)
            self._deflater = deflater
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if self._out_reset:
            self._deflater = None
        return out[:-4] if out.endswith(_SYNC_TAIL) else out

    # -- inbound (called by wsproto's FrameDecoder) -------------------------------------

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            self._frame_is_data = False
            if rsv.rsv1:
                self.error_detail = "RSV1 set on a control frame"
                return CloseReason.PROTOCOL_ERROR
        else:
            self._frame_is_data = True
            if opcode is Opcode.CONTINUATION:
                if rsv.rsv1:
                    self.error_detail = "RSV1 set on a continuation frame"
                    return CloseReason.PROTOCOL_ERROR
            else:
                self._message_compressed = rsv.rsv1
                self._message_size = 0
        return RsvBits(True, False, False)

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        inflater = self._inflater
        if inflater is None:
            inflater = zlib.decompressobj(-self._in_bits)
            self._inflater = inflater
        try:
            if self._max is None:
                out = inflater.decompress(data)
            else:
                room = self._max - self._message_size
                out = inflater.decompress(data, room + 1)
                if len(out) > room:
                    self.error_detail = (
                        f"decompressed message exceeds max_message_size ({self._max} bytes)"
                    )
                    return CloseReason.MESSAGE_TOO_BIG
        except zlib.error as exc:
            self.error_detail = f"invalid compressed data: {exc}"
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._message_size += len(out)
        return out

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not (self._frame_is_data and self._message_compressed):
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._frame_is_data):
            return None
        if not self._message_compressed:
            return None
        self._message_compressed = False
        tail = self._inflate(_SYNC_TAIL)
        assert self._inflater is not None
        if self._in_reset or self._inflater.eof:
            self._inflater = None
        return tail
