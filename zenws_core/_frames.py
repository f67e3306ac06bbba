"""Frame encoding and decoding on top of wsproto's ``FrameProtocol`` (RFC 6455 section 5).

zenws parses frames with wsproto's frame decoder and serialises them with its own lean
encoder, so that client masking keys come from an injected source (reproducible bytes in
tests, ``secrets.token_bytes`` in production) and the per-frame hot path stays short.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from wsproto.frame_protocol import Frame, FrameProtocol, Header, Opcode

from ._deflate import BoundedDeflate

__all__ = [
    "FIN",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "RSV1",
    "Framer",
    "mask",
]

FIN = 0x80
RSV1 = 0x40
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]
_SMALL = 1024  # below this, one big-int XOR beats four translate() passes
_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


def mask(key: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` repeated (RFC 6455 section 5.3)."""
    n = len(data)
    if n < _SMALL:
        if not n:
            return b""
        repeated = key * ((n + 3) >> 2)
        if len(repeated) != n:
            repeated = repeated[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
            n, "little"
        )
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLES[key[i]])
    return bytes(out)


class Framer(FrameProtocol):
    """wsproto's frame protocol with injected masking keys and a direct frame encoder."""

    def __init__(
        self,
        *,
        client: bool,
        deflate: BoundedDeflate | None = None,
        mask_source: Callable[[int], bytes] | None = None,
    ) -> None:
        super().__init__(client, [deflate] if deflate is not None else [])
        if client and mask_source is None:
            raise ValueError("a client framer needs a mask source")
        self._mask_source = mask_source
        decoder = self._frame_decoder
        self.decoder = decoder
        self.next_frame: Callable[[], Frame | None] = decoder.process_buffer
        #: wsproto's receive buffer; peeked at so an empty buffer costs no parse attempt.
        self.buffer = decoder.buffer

    @property
    def pending_header(self) -> Header | None:
        """Header of a frame whose payload has not fully arrived yet (for early size checks)."""
        return self._frame_decoder.header

    def encode(self, first_byte: int, payload: bytes) -> bytes:
        """One frame: ``first_byte`` holds FIN, RSV and the opcode (RFC 6455 section 5.2)."""
        n = len(payload)
        if self._mask_source is None or not self.client:
            if n < 126:
                return bytes((first_byte, n)) + payload
            if n < 65536:
                return _pack_short(first_byte, 126, n) + payload
            return _pack_long(first_byte, 127, n) + payload
        key = self._mask_source(4)
        if len(key) != 4:
            raise ValueError("mask_source must return exactly the number of bytes asked for")
        if n < 126:
            header = bytes((first_byte, 0x80 | n))
        elif n < 65536:
            header = _pack_short(first_byte, 0xFE, n)
        else:
            header = _pack_long(first_byte, 0xFF, n)
        return header + key + mask(key, payload)

    def _serialize_frame(
        self, opcode: Opcode, payload: bytes | bytearray = b"", fin: bool = True
    ) -> bytearray:
        # wsproto's own send helpers land here; zenws compresses whole messages before
        # framing, so frames serialised this way are never compressed.
        return bytearray(self.encode((FIN if fin else 0) | int(opcode), bytes(payload)))
