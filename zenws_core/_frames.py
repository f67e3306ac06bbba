"""Frame encoding and decoding on top of wsproto's ``FrameProtocol`` (RFC 6455 section 5).

zenws parses frames with wsproto's frame decoder and serialises them with its own lean
encoder, so that client masking keys come from an injected source (reproducible bytes in
tests, ``secrets.token_bytes`` in production) and the per-frame hot path stays short.

The decoder is wsproto's ``FrameDecoder`` with its two per-frame methods (``parse_header``,
``process_buffer``) rewritten for speed: the same checks in the same order with the same
``ParseFailed`` messages and codes, the same extension hooks, but payloads are unmasked by
``zenws_core._mask`` (C when built) in one pass instead of wsproto's four-pass XOR, and
without the intermediate copies.  wsproto's ``Buffer``, ``Header``, ``Frame`` and extension
interface are kept, so permessage-deflate (``BoundedDeflate``) plugs in unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    Frame,
    FrameDecoder,
    FrameProtocol,
    Header,
    Opcode,
    ParseFailed,
    RsvBits,
)

from . import _mask
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

_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
_unpack_short = struct.Struct("!H").unpack_from
_unpack_long = struct.Struct("!Q").unpack_from
_OPCODES: dict[int, Opcode] = {int(op): op for op in Opcode}
_CONTINUATION = Opcode.CONTINUATION
#: ``_FrameDecoder.pieces`` while not collecting: shared, never appended to.
_NO_PIECES: list[bytes] = []
_NO_RSV = RsvBits(False, False, False)
_ONE_PASS_ABOVE = 1024  # above this, one allocation beats a masked copy and a concatenation


def mask(key: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` repeated (RFC 6455 section 5.3)."""
    return _mask.apply_mask(data, key)


class _FrameDecoder(FrameDecoder):
    """wsproto's frame decoder with a faster header parser and one-pass unmasking.

    Behaviour matches ``wsproto.frame_protocol.FrameDecoder`` (RFC 6455 section 5.2): a
    frame is returned in pieces as its payload arrives (control frames whole), protocol
    violations raise ``ParseFailed`` with wsproto's messages and close codes.
    """

    def __init__(
        self,
        client: bool,
        extensions: list[Extension] | None = None,
        whole_frame_limit: int = 0,
    ) -> None:
        super().__init__(client, extensions)
        #: Masking key of the frame being received (server side), else None.
        self.mask_key: bytes | None = None
        #: Data frames up to this size are returned whole, once all their payload arrived
        #: (one copy instead of one per read plus a join); 0 returns pieces as wsproto does.
        self.whole_frame_limit = whole_frame_limit
        #: Reads that arrive while an unmasked, non-text frame of at least ``pieces_above``
        #: bytes is awaited whole are kept as they are and joined once complete, instead of
        #: growing the buffer read by read and copying the payload out of it (the growth
        #: costs fresh memory as large as the frame every time).  ``collecting`` says so.
        self.pieces: list[bytes] = _NO_PIECES  # a list of its own while collecting
        self.pieces_size = 0
        self.pieces_above = 64 * 1024
        self.collecting = False

    def receive_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the transport (kept aside, as bytes, while ``collecting``)."""
        if self.collecting:
            self.pieces.append(bytes(data))  # a copy only when given a view or a bytearray
            self.pieces_size += len(data)
        else:
            self.buffer.buffer += data

    def parse_header(self) -> bool:
        """Parse one frame header from the buffer (RFC 6455 section 5.2); False if incomplete."""
        data = self.buffer.buffer
        avail = len(data)
        if avail < 2:
            return False
        first = data[0]
        second = data[1]
        fin = first & 0x80 != 0
        opcode = _OPCODES.get(first & 0x0F)
        if opcode is None:
            raise ParseFailed(f"Invalid opcode {first & 0x0F:#x}")
        control = first & 0x08 != 0
        if control and not fin:
            raise ParseFailed("Invalid attempt to fragment control frame")
        payload_len = second & 0x7F
        if control and payload_len > 125:
            raise ParseFailed("Control frame with payload len > 125")
        pos = 2
        if payload_len == 126:
            if avail < 4:
                return False
            (payload_len,) = _unpack_short(data, 2)
            if payload_len <= 125:
                raise ParseFailed("Payload length used 2 bytes when 1 would have sufficed")
            pos = 4
        elif payload_len == 127:
            if avail < 10:
                return False
            (payload_len,) = _unpack_long(data, 2)
            if payload_len <= 0xFFFF:
                raise ParseFailed("Payload length used 8 bytes when 2 would have sufficed")
            if payload_len >> 63:
                raise ParseFailed("8-byte payload length with non-zero MSB")
            pos = 10
        if self.extensions:
            rsv = RsvBits(first & 0x40 != 0, first & 0x20 != 0, first & 0x10 != 0)
            self.extension_processing(opcode, rsv, payload_len)
        elif first & 0x70:
            raise ParseFailed("Reserved bit set unexpectedly")
        else:
            rsv = _NO_RSV
        masked = second & 0x80 != 0
        if masked:
            if self.client:
                raise ParseFailed("client received unexpected masked frame")
            if avail < pos + 4:
                return False
            self.mask_key = bytes(data[pos : pos + 4])
            pos += 4
        elif not self.client:
            raise ParseFailed("server received unexpected unmasked frame")
        else:
            self.mask_key = None
        del data[:pos]
        self.header = Header(fin, rsv, opcode, payload_len, None)
        self.effective_opcode = opcode
        self.payload_required = (
            payload_len if control or payload_len <= self.whole_frame_limit else 0
        )
        self.payload_consumed = 0
        return True

    def process_buffer(self) -> Frame | None:
        """The next frame, or the part of a data frame's payload available so far, or None."""
        header = self.header
        if header is None:
            if not self.parse_header():
                return None
            header = self.header
            assert header is not None
        data = self.buffer.buffer
        avail = len(data)
        if avail < self.payload_required:
            if self.collecting:
                if avail + self.pieces_size < self.payload_required:
                    return None
                return self._joined_frame(header)
            if (
                self.payload_required >= self.pieces_above
                and self.mask_key is None
                and header.opcode is not Opcode.TEXT  # partial text is probed in the buffer
            ):
                self.collecting = True
                self.pieces = []
            return None
        consumed = self.payload_consumed
        payload_len = header.payload_len
        remaining = payload_len - consumed
        if remaining > avail:
            if not avail:
                return None
            remaining = avail
        key = self.mask_key
        payload: bytes
        with memoryview(data) as view:  # one copy of the payload, even with bytes behind it
            source = view if remaining == avail else view[:remaining]
            if key is None:
                payload = bytes(source)
            else:
                rotation = consumed & 3
                if rotation:  # a frame received in pieces: continue where the key left off
                    key = key[rotation:] + key[:rotation]
                payload = _mask.apply_mask(source, key)
            source.release()
        del data[:remaining]
        consumed += remaining
        self.payload_consumed = consumed
        return self._frame(header, payload, consumed == payload_len)

    def _joined_frame(self, header: Header) -> Frame:
        """The awaited frame, from the buffer and the reads kept aside (``collecting``)."""
        data = self.buffer.buffer
        pieces = self.pieces
        need = header.payload_len - len(data)  # bytes of the payload in the pieces
        parts: list[bytes | bytearray | memoryview] = [data]
        rest: list[bytes] = []  # what follows the frame
        for piece in pieces:
            if not need:
                rest.append(piece)
            elif len(piece) <= need:
                parts.append(piece)
                need -= len(piece)
            else:
                parts.append(memoryview(piece)[:need])
                rest.append(piece[need:])
                need = 0
        payload = b"".join(parts)
        parts.clear()
        self.pieces = _NO_PIECES
        self.pieces_size = 0
        self.collecting = False
        del data[:]
        for piece in rest:
            data += piece
        self.payload_consumed = header.payload_len
        return self._frame(header, payload, True)

    def _frame(self, header: Header, payload: bytes, finished: bool) -> Frame:
        if self.extensions:
            payload = self._extensions_inbound(payload, finished, header.fin)
        frame = Frame(self.effective_opcode, payload, finished, header.fin)  # type: ignore[arg-type]
        if finished:
            self.header = None
            self.effective_opcode = None
            self.mask_key = None
        else:
            self.effective_opcode = _CONTINUATION
        return frame

    def _extensions_inbound(self, payload: bytes, finished: bool, fin: bool) -> bytes:
        """Run the extensions' inbound hooks as wsproto does (RFC 6455 section 9)."""
        for extension in self.extensions:
            result = extension.frame_inbound_payload_data(self, payload)
            if isinstance(result, CloseReason):
                raise ParseFailed("error in extension", result)
            payload = bytes(result)
        if finished:
            for extension in self.extensions:
                tail = extension.frame_inbound_complete(self, fin)
                if isinstance(tail, CloseReason):
                    raise ParseFailed("error in extension", tail)
                if tail is not None:
                    payload += tail
        return payload


class Framer(FrameProtocol):
    """wsproto's frame protocol with injected masking keys and a direct frame encoder."""

    def __init__(
        self,
        *,
        client: bool,
        deflate: BoundedDeflate | None = None,
        mask_source: Callable[[int], bytes] | None = None,
        whole_frame_limit: int = 0,
    ) -> None:
        # wsproto's FrameProtocol.__init__ is not called: it builds a frame decoder, a
        # message decoder and a parsing generator that zenws never uses (about 1 KB per
        # connection, kept alive by a reference cycle).  These are the attributes its
        # send helpers (``send_data``, ``ping``, ``close``) read.
        self.client = client
        self.extensions = [deflate] if deflate is not None else []
        self._outbound_opcode: Opcode | None = None
        if client and mask_source is None:
            raise ValueError("a client framer needs a mask source")
        self._mask_source = mask_source
        decoder = _FrameDecoder(client, self.extensions, whole_frame_limit)
        self._frame_decoder = decoder
        self.decoder = decoder
        self.next_frame: Callable[[], Frame | None] = decoder.process_buffer
        #: The bytes received and not yet parsed (the decoder's bytearray, fed in place).
        self.inbox: bytearray = decoder.buffer.buffer

    def receive_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the transport to the receive buffer (copied)."""
        self.decoder.receive_bytes(data)

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
        if n < _ONE_PASS_ABOVE:
            return header + key + _mask.apply_mask(payload, key)
        # One allocation for the whole frame (see ``_mask.mask_frame``).
        return _mask.mask_frame(header + key, payload, key)

    def _serialize_frame(
        self, opcode: Opcode, payload: bytes | bytearray = b"", fin: bool = True
    ) -> bytearray:
        # wsproto's own send helpers land here; zenws compresses whole messages before
        # framing, so frames serialised this way are never compressed.
        return bytearray(self.encode((FIN if fin else 0) | int(opcode), bytes(payload)))
