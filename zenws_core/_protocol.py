"""One WebSocket connection as a sans-IO state machine, in the client or the server role.

Bytes and time go in (``receive_data``, ``receive_eof``, ``handle_timer``); events, bytes and a
deadline come out (``events``, ``data_to_send``, ``next_deadline``).  h11 parses the HTTP
opening handshake, wsproto's frame decoder parses frames; everything a user of a WebSocket
library expects to be automatic lives here: answering pings, echoing the peer's close, size
limits, bounded decompression, close codes for every protocol violation and timeouts.

Nothing the peer sends raises out of this module; exceptions are for API misuse only
(``ConnectionStateError`` for a call in the wrong state, ``ValueError`` for a bad argument).
See ``docs/protocol.md`` for the state machine and the integration rules for adapters.
"""

from __future__ import annotations

import base64
import codecs
import enum
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import h11
from wsproto.frame_protocol import Opcode, ParseFailed

from . import _mask
from ._config import ConnectionConfig
from ._deflate import (
    BoundedDeflate,
    DeflateParameters,
    NegotiationError,
    client_accept,
    client_offer,
    parse_extension_header,
    server_negotiate,
)
from ._events import (
    CloseCause,
    Closed,
    CloseReceived,
    ConnectionEvent,
    FragmentReceived,
    Headers,
    HTTPRequestReceived,
    Initiator,
    MessageReceived,
    Opened,
    PingReceived,
    PongReceived,
    Rejected,
    RequestReceived,
)
from ._frames import FIN, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RSV1, Framer, mask
from ._handshake import (
    accept_token,
    check_header,
    decode_headers,
    header_tokens,
    header_values,
    http_response,
    is_token,
    valid_key,
)
from ._url import WebSocketURL, parse_url

__all__ = [
    "ClientConnection",
    "ConnectionState",
    "ConnectionStateError",
    "ConnectionStats",
    "ServerConnection",
    "validate_close_code",
]

MaskSource = Callable[[int], bytes]


class ConnectionState(enum.Enum):
    """The four states of RFC 6455 (sections 4 and 7)."""

    #: Opening handshake in progress (section 4).
    CONNECTING = "connecting"
    #: Handshake done; messages flow both ways (section 5).
    OPEN = "open"
    #: We sent a close frame and wait for the peer's (section 7.1.2).
    CLOSING = "closing"
    #: The connection is over; ``Closed`` has been emitted (section 7.1.4).
    CLOSED = "closed"


class ConnectionStateError(Exception):
    """An application call made in a state that does not allow it (API misuse)."""


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """A snapshot of one connection's counters.

    ``bytes_in``/``bytes_out`` count message payload bytes (after decompression);
    ``wire_bytes_in``/``wire_bytes_out`` count everything on the transport, handshake included.
    """

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    wire_bytes_in: int = 0
    wire_bytes_out: int = 0
    pings_sent: int = 0
    pings_received: int = 0
    pongs_sent: int = 0
    pongs_received: int = 0
    last_round_trip: float | None = None
    close_code: int | None = None
    close_reason: str | None = None


#: Allowed state transitions, with the RFC 6455 section each one implements.  ``_transition``
#: refuses anything else, so this table is the whole state machine (docs/protocol.md is made
#: from it).
_TRANSITIONS: Final[dict[ConnectionState, dict[ConnectionState, str]]] = {
    ConnectionState.CONNECTING: {
        ConnectionState.OPEN: "4.1 / 4.2.2: valid 101 response received or sent",
        ConnectionState.CLOSED: "4.1 / 4.2.2: handshake rejected, malformed, timed out or aborted",
    },
    ConnectionState.OPEN: {
        ConnectionState.CLOSING: "7.1.2: we sent a close frame",
        ConnectionState.CLOSED: "7.1.5 / 7.1.7 / 7.1.1: peer close echoed, connection failed, EOF",
    },
    ConnectionState.CLOSING: {
        ConnectionState.CLOSED: "7.1.4: peer's close received, close timeout, EOF or failure",
    },
    ConnectionState.CLOSED: {},
}

# RFC 6455 section 7.4: codes an endpoint may put in a close frame.  1004-1006 and 1015 are
# reserved; 1012-1014 are registered with IANA.  3000-4999 belong to libraries and apps.
_SENDABLE_CODES: Final = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)
_MAX_CONTROL_PAYLOAD = 125
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONTINUATION = Opcode.CONTINUATION
_PING = Opcode.PING
_PONG = Opcode.PONG
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
_H11_END = (h11.NEED_DATA, h11.PAUSED)
#: Largest data frame buffered whole when ``max_message_size`` is None (larger: in pieces).
_WHOLE_FRAME_LIMIT = 16 * 1024 * 1024


def _compact_dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def validate_close_code(code: int, reason: str = "") -> bytes:
    """Check a close code and reason we are about to send; return the close payload.

    RFC 6455 section 7.4: 1005, 1006 and 1015 never go on the wire and neither does anything
    outside 1000-4999 that is not registered; section 5.5: the reason fits in 123 UTF-8 bytes.
    """
    if not (code in _SENDABLE_CODES or 3000 <= code <= 4999):
        raise ValueError(f"close code {code} cannot be sent (RFC 6455 section 7.4)")
    raw = reason.encode("utf-8")
    if len(raw) > _MAX_CONTROL_PAYLOAD - 2:
        raise ValueError("close reason is longer than 123 UTF-8 bytes")
    return code.to_bytes(2, "big") + raw


class _Violation(Exception):
    """Internal: the peer broke a protocol rule; fail the connection with ``code``."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class _Connection:
    """Behaviour shared by both roles: framing, messages, ping/pong, closing, buffering."""

    __slots__ = (
        "_bytes_in",
        "_bytes_out",
        "_client",
        "_close_sent",
        "_closed",
        "_config",
        "_deadline",
        "_deferred",
        "_deflate",
        "_events",
        "_fragment_size",
        "_framer",
        "_high_water",
        "_mask_source",
        "_max_size",
        "_messages_in",
        "_messages_out",
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_out",
        "_pending",
        "_pings",
        "_pings_received",
        "_pings_sent",
        "_pongs_received",
        "_pongs_sent",
        "_round_trip",
        "_should_close",
        "_state",
        "_streaming",
        "_text_probe",
        "_utf8",
        "_wire_in",
        "_wire_out",
    )

    def __init__(
        self, *, client: bool, config: ConnectionConfig, mask_source: MaskSource | None, now: float
    ) -> None:
        self._config = config
        self._client = client
        self._state = ConnectionState.CONNECTING
        self._mask_source: MaskSource = mask_source or secrets.token_bytes
        self._events: list[ConnectionEvent] = []
        self._out: list[bytes] = []
        self._pending = 0
        self._high_water = config.write_high_water
        self._should_close = False
        timeout = config.handshake_timeout
        self._deadline: float | None = None if timeout is None else now + timeout
        self._deferred: tuple[int, str] | None = None
        self._framer: Framer | None = None
        self._deflate: BoundedDeflate | None = None
        self._max_size = config.max_message_size
        self._fragment_size = config.fragment_size
        self._streaming = config.streaming
        self._msg_opcode: Opcode | None = None
        self._msg_parts: list[Any] = []
        self._msg_size = 0
        self._utf8: codecs.IncrementalDecoder | None = None
        #: (header, bytes checked, decoder) of a text frame buffered whole but still partial.
        self._text_probe: tuple[Any, int, codecs.IncrementalDecoder] | None = None
        self._pings: dict[bytes, float] = {}
        self._close_sent = False
        self._closed: Closed | None = None
        self._messages_in = self._messages_out = 0
        self._bytes_in = self._bytes_out = 0
        self._wire_in = self._wire_out = 0
        self._pings_sent = self._pings_received = 0
        self._pongs_sent = self._pongs_received = 0
        self._round_trip: float | None = None

    # ------------------------------------------------------------------ outputs

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def should_close_transport(self) -> bool:
        """True once the adapter should write what is pending and close the transport."""
        return self._should_close

    @property
    def pending_bytes(self) -> int:
        """Bytes produced but not yet taken with ``data_to_send()``."""
        return self._pending

    @property
    def writing_paused(self) -> bool:
        """True while ``pending_bytes`` exceeds ``ConnectionConfig.write_high_water``."""
        return self._pending > self._high_water

    @property
    def config(self) -> ConnectionConfig:
        return self._config

    @property
    def closed_event(self) -> Closed | None:
        """The ``Closed`` event once the connection is over (also kept after draining)."""
        return self._closed

    def events(self) -> list[ConnectionEvent]:
        """Take the events that happened since the last call."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> bytes:
        """Take the bytes to write to the transport (``b""`` when there are none)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        self._pending = 0
        return out[0] if len(out) == 1 else b"".join(out)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must be called next (monotonic seconds), or None."""
        return None if self._should_close else self._deadline

    def stats(self) -> ConnectionStats:
        closed = self._closed
        return ConnectionStats(
            messages_in=self._messages_in,
            messages_out=self._messages_out,
            bytes_in=self._bytes_in,
            bytes_out=self._bytes_out,
            wire_bytes_in=self._wire_in,
            wire_bytes_out=self._wire_out,
            pings_sent=self._pings_sent,
            pings_received=self._pings_received,
            pongs_sent=self._pongs_sent,
            pongs_received=self._pongs_received,
            last_round_trip=self._round_trip,
            close_code=None if closed is None else closed.code,
            close_reason=None if closed is None else closed.reason,
        )

    # ------------------------------------------------------------------ inputs

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes read from the transport.  Never raises because of their content.

        What is kept is copied, so ``data`` may be a view of a buffer the caller reuses
        once this returns (the asyncio adapter reads into one buffer per thread).
        """
        if not data or self._should_close or self._deferred is not None:
            return
        self._wire_in += len(data)
        state = self._state
        if state is ConnectionState.OPEN or state is ConnectionState.CLOSING:
            framer = self._framer
            assert framer is not None
            if framer.decoder.collecting:
                framer.decoder.receive_bytes(data)
            else:
                framer.inbox += data
            self._process_frames(now)
        elif state is ConnectionState.CONNECTING:
            self._handshake_data(bytes(data), now)
        # CLOSED: RFC 6455 section 7.1.7 / 1.4 -- nothing after the close is processed.

    def receive_eof(self, now: float) -> None:
        """The transport reached EOF (or failed): the peer will send nothing more."""
        if self._should_close:
            return
        if self._deferred is not None:
            self._fail_deferred(now)
            self._close_transport()  # the peer's EOF already came: nothing to wait for
            return
        state = self._state
        if state is ConnectionState.CONNECTING:
            self._handshake_eof(now)
            if self._state is ConnectionState.CONNECTING:
                self._fail_handshake("transport closed during the opening handshake")
        elif state is ConnectionState.CLOSED:
            self._close_transport()
        else:
            detail = (
                "transport closed before the peer answered our close frame"
                if self._close_sent
                else "transport closed without a close frame"
            )
            self._finish(
                Closed(
                    code=1006,
                    reason="",
                    initiator=Initiator.LOCAL if self._close_sent else Initiator.NONE,
                    cause=CloseCause.EOF,
                    clean=False,
                    detail=detail,
                ),
                wait_for_eof=False,
            )

    def handle_timer(self, now: float) -> None:
        """Act on an expired deadline (handshake timeout, close timeout, EOF wait)."""
        deadline = self._deadline
        if deadline is None or now < deadline or self._should_close:
            return
        self._deadline = None
        state = self._state
        if self._deferred is not None:
            self._fail_deferred(now)
        elif state is ConnectionState.CONNECTING:
            self._fail_handshake("opening handshake timed out", initiator=Initiator.LOCAL)
        elif state is ConnectionState.CLOSING:
            # RFC 6455 section 7.1.1: give up on the peer's close and drop the connection.
            self._finish(
                Closed(
                    code=1006,
                    reason="",
                    initiator=Initiator.LOCAL,
                    cause=CloseCause.CLOSE_TIMEOUT,
                    clean=False,
                    detail="the peer did not answer our close frame within close_timeout",
                ),
                wait_for_eof=False,
            )
        else:  # CLOSED, a client waiting for the server's EOF (RFC 6455 section 7.1.1)
            self._close_transport()

    # ------------------------------------------------------------------ application calls

    def send_text(self, text: str) -> None:
        """Send a text message (opcode 0x1), split into frames above ``fragment_size``."""
        if self._state is not ConnectionState.OPEN:
            raise ConnectionStateError(f"cannot send a message in state {self._state.name}")
        self._send_message(OP_TEXT, text.encode("utf-8"))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message (opcode 0x2), split into frames above ``fragment_size``."""
        if self._state is not ConnectionState.OPEN:
            raise ConnectionStateError(f"cannot send a message in state {self._state.name}")
        self._send_message(OP_BINARY, data if type(data) is bytes else bytes(data))

    def send_json(self, obj: Any, *, dumps: Callable[[Any], str] = _compact_dumps) -> None:
        """Send ``obj`` serialised by ``dumps`` (compact ``json.dumps`` by default) as text."""
        self.send_text(dumps(obj))

    def ping(self, payload: bytes = b"", *, now: float) -> bytes:
        """Send a ping (RFC 6455 section 5.5.2) and return its payload.

        An empty ``payload`` is replaced by 4 bytes from the mask source so that the matching
        pong can be recognised and yield a round-trip time.
        """
        if self._state is not ConnectionState.OPEN:
            raise ConnectionStateError(f"cannot ping in state {self._state.name}")
        payload = bytes(payload)
        if len(payload) > _MAX_CONTROL_PAYLOAD:
            raise ValueError("ping payload is longer than 125 bytes")
        if not payload:
            payload = self._mask_source(4)
            counter = self._pings_sent
            while payload in self._pings:  # a colliding (or constant) source: count instead
                payload = counter.to_bytes(8, "big")
                counter += 1
        elif payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        self._pings[payload] = now
        self._pings_sent += 1
        self._write_frame(FIN | OP_PING, payload)
        return payload

    def close(self, code: int = 1000, reason: str = "", *, now: float) -> None:
        """Start the closing handshake (RFC 6455 section 7.1.2).

        The peer has ``close_timeout`` seconds to answer.  Before the opening handshake
        completes this aborts the connection instead; once closing or closed it does nothing
        (so adapters may call it unconditionally on shutdown).
        """
        payload = validate_close_code(code, reason)
        state = self._state
        if self._deferred is not None:
            self._fail_deferred(now)  # the peer's violation decides the close code
        elif state is ConnectionState.OPEN:
            self._write_frame(FIN | OP_CLOSE, payload)
            self._close_sent = True
            self._transition(ConnectionState.CLOSING)
            self._set_close_deadline(now)
        elif state is ConnectionState.CONNECTING:
            self._fail_handshake(
                "closed locally before the opening handshake completed", initiator=Initiator.LOCAL
            )

    def fail(self, code: int = 1011, reason: str = "", *, now: float) -> None:
        """Fail the connection because of a local error (RFC 6455 section 7.1.7).

        Sends a close frame with ``code`` (if none was sent yet) and ends the connection at
        once with ``Closed(cause=LOCAL_ERROR)``, without waiting for the peer's answer.
        """
        payload = validate_close_code(code, reason)
        self._deferred = None  # a local failure supersedes a deferred one
        state = self._state
        if state is ConnectionState.CONNECTING:
            self._fail_handshake(reason or "failed locally", initiator=Initiator.LOCAL)
        elif state is not ConnectionState.CLOSED:
            self._fail(code, CloseCause.LOCAL_ERROR, reason or "failed locally", now, payload)

    # ------------------------------------------------------------------ internals: output

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        size = len(data)
        self._pending += size
        self._wire_out += size

    def _write_frame(self, first_byte: int, payload: bytes) -> None:
        framer = self._framer
        assert framer is not None
        self._write(framer.encode(first_byte, payload))

    def _send_message(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        self._messages_out += 1
        self._bytes_out += size
        framer = self._framer
        assert framer is not None
        deflate = self._deflate
        if deflate is not None and size >= deflate.min_size:
            payload = deflate.compress(payload)
            opcode |= RSV1  # RFC 7692 section 6: RSV1 on the first frame only
            size = len(payload)
        fragment = self._fragment_size
        if fragment is None or size <= fragment:
            self._write(framer.encode(FIN | opcode, payload))
            return
        # RFC 6455 section 5.4: first frame carries the opcode, then continuation frames.
        start = 0
        while start < size:
            end = start + fragment
            self._write(framer.encode((FIN if end >= size else 0) | opcode, payload[start:end]))
            opcode = 0
            start = end

    # ------------------------------------------------------------------ internals: frames

    def _process_frames(self, now: float) -> None:
        framer = self._framer
        assert framer is not None
        next_frame = framer.next_frame
        decoder = framer.decoder
        inbox = framer.inbox
        events = self._events
        max_size = self._max_size
        plain = self._deflate is None and not self._streaming
        try:
            while True:
                if decoder.header is None:
                    if plain and self._msg_opcode is None:
                        self._plain_frames(inbox)
                    # A frame header needs 2 bytes: skip the parse attempt when they are missing.
                    if len(inbox) < 2:
                        break
                frame = next_frame()
                if frame is None:
                    break
                opcode = frame.opcode
                payload: bytes = frame.payload  # type: ignore[assignment]
                if opcode is _TEXT or opcode is _BINARY:
                    if self._msg_opcode is not None:
                        raise _Violation(1002, "new data frame inside a fragmented message")
                    if frame.message_finished and frame.frame_finished and not self._streaming:
                        # Fast path: a whole message in one frame (RFC 6455 section 5.6).
                        size = len(payload)
                        if max_size is not None and size > max_size:
                            raise _Violation(1009, self._too_big(size))
                        if opcode is _TEXT:
                            try:
                                events.append(MessageReceived(payload.decode("utf-8")))
                            except UnicodeDecodeError as exc:
                                raise _Violation(
                                    1007, f"invalid UTF-8 in text message: {exc}"
                                ) from None
                        else:
                            events.append(MessageReceived(payload))
                        self._messages_in += 1
                        self._bytes_in += size
                        continue
                    self._msg_opcode = opcode
                    self._msg_size = 0
                    self._utf8 = _Utf8Decoder() if opcode is _TEXT else None
                elif opcode is _CONTINUATION:
                    if self._msg_opcode is None:
                        raise _Violation(1002, "continuation frame without a message to continue")
                else:
                    self._control_frame(opcode, payload, now)
                    if self._state is ConnectionState.CLOSED:
                        return
                    continue
                self._message_piece(payload, frame.frame_finished and frame.message_finished)
            if max_size is not None:
                self._check_pending_header(max_size)
            if decoder.payload_required and decoder.header is not None:
                self._check_partial_text(decoder)
        except _Violation as exc:
            self._violation(exc.code, exc.detail, now)
        except ParseFailed as exc:
            detail = str(exc)
            if detail == "error in extension" and self._deflate is not None:
                detail = self._deflate.error_detail
            self._violation(int(exc.code), detail, now)

    def _plain_frames(self, inbox: bytearray) -> None:
        """Take the whole single-frame messages of up to 64 KiB at the head of ``inbox``.

        The common case, parsed straight from the buffer without the general decoder's
        objects: FIN set, no RSV bit, text or binary opcode, a 7- or 16-bit length, masked
        exactly when the peer is a client (RFC 6455 sections 5.2, 5.3), all of it received.
        Anything else (control frames, fragments, extensions, malformed headers, frames
        still arriving) is left to the decoder, which applies every check and error.
        """
        client = self._client
        events = self._events
        max_size = self._max_size
        avail = len(inbox)
        pos = 0
        try:
            while avail - pos >= 2:
                first = inbox[pos]
                if first != 0x82 and first != 0x81:  # FIN + binary / FIN + text
                    return
                second = inbox[pos + 1]
                if client:
                    if second & 0x80:
                        return  # a masked frame from a server: the decoder refuses it
                    start = pos + 2
                elif second & 0x80:
                    second &= 0x7F
                    start = pos + 6  # after the 4-byte masking key
                else:
                    return  # an unmasked frame from a client: the decoder refuses it
                if second < 126:
                    length = second
                elif second == 126 and avail - pos >= 4:
                    length = (inbox[pos + 2] << 8) | inbox[pos + 3]
                    if length < 126:
                        return  # not the minimal length encoding: the decoder refuses it
                    start += 2
                else:
                    return
                end = start + length
                if end > avail:
                    return
                if client:
                    payload = bytes(inbox[start:end])
                else:
                    payload = _mask.apply_mask(inbox[start:end], bytes(inbox[start - 4 : start]))
                pos = end
                if max_size is not None and length > max_size:
                    raise _Violation(1009, self._too_big(length))
                if first == 0x81:
                    try:
                        events.append(MessageReceived(payload.decode("utf-8")))
                    except UnicodeDecodeError as exc:
                        raise _Violation(1007, f"invalid UTF-8 in text message: {exc}") from None
                else:
                    events.append(MessageReceived(payload))
                self._messages_in += 1
                self._bytes_in += length
        finally:
            if pos:
                del inbox[:pos]

    def _violation(self, code: int, detail: str, now: float) -> None:
        """The peer broke the protocol: fail the connection (RFC 6455 section 7.1.7).

        Messages completed earlier in the same input are valid and delivered; if the
        application has not taken them with ``events()`` yet, failing is deferred to the
        next ``handle_timer`` (deadline ``now``) so that it can still answer them first, in
        wire order.  Further input is ignored meanwhile.
        """
        if self._state is ConnectionState.OPEN and any(
            isinstance(event, MessageReceived)
            or (isinstance(event, FragmentReceived) and event.final)
            for event in self._events
        ):
            self._deferred = (code, detail)
            self._deadline = now
            return
        self._fail(code, CloseCause.PROTOCOL_ERROR, detail, now)

    def _fail_deferred(self, now: float) -> None:
        deferred = self._deferred
        assert deferred is not None
        self._deferred = None
        self._fail(deferred[0], CloseCause.PROTOCOL_ERROR, deferred[1], now)

    def _too_big(self, size: int) -> str:
        return f"message of {size} bytes or more exceeds max_message_size ({self._max_size})"

    def _message_piece(self, payload: bytes, finished: bool) -> None:
        """One piece of a fragmented (or partially received) message (RFC 6455 section 5.4)."""
        size = self._msg_size + len(payload)
        if self._max_size is not None and size > self._max_size:
            raise _Violation(1009, self._too_big(size))
        self._msg_size = size
        piece: str | bytes
        if self._utf8 is not None:
            try:
                piece = self._utf8.decode(payload, finished)
            except UnicodeDecodeError as exc:
                raise _Violation(1007, f"invalid UTF-8 in text message: {exc}") from None
        else:
            piece = payload
        if self._streaming:
            if piece or finished:
                self._events.append(FragmentReceived(piece, finished))
        else:
            self._msg_parts.append(piece)
        if finished:
            if not self._streaming:
                parts = self._msg_parts
                data = "".join(parts) if self._utf8 is not None else b"".join(parts)
                self._events.append(MessageReceived(data))
                self._msg_parts = []
            self._msg_opcode = None
            self._utf8 = None
            self._messages_in += 1
            self._bytes_in += size

    def _check_partial_text(self, decoder: Any) -> None:
        """Fail fast on invalid UTF-8 in a text frame still arriving (RFC 6455 section 8.1).

        Data frames are buffered whole before they are parsed; a single text frame that
        arrives over several reads is meanwhile checked here, bytes not seen before only,
        so an invalid sequence closes the connection (1007) without waiting for the rest
        (Autobahn 6.4.3, 6.4.4).  Compressed frames are checked once inflated.
        """
        header = decoder.header
        if header.opcode is not _TEXT or header.rsv[0]:
            return
        probe = self._text_probe
        if probe is None or probe[0] is not header:
            probe = (header, 0, _Utf8Decoder())
        _, checked, utf8 = probe
        inbox = decoder.buffer.buffer
        available = len(inbox)
        if available > checked:
            chunk = bytes(inbox[checked:available])
            key = decoder.mask_key
            if key is not None:
                rotation = checked & 3
                chunk = mask(key[rotation:] + key[:rotation], chunk)
            try:
                utf8.decode(chunk, False)
            except UnicodeDecodeError as exc:
                raise _Violation(1007, f"invalid UTF-8 in text message: {exc}") from None
            probe = (header, available, utf8)
        self._text_probe = probe

    def _check_pending_header(self, max_size: int) -> None:
        """Refuse early a frame whose declared length already exceeds the limit."""
        framer = self._framer
        assert framer is not None
        header = framer.pending_header
        if header is None or header.opcode.iscontrol():
            return
        if self._deflate is not None and self._deflate.message_compressed:
            return  # the compressed length says nothing about the message size
        # Payload of this frame consumed so far is already counted in ``_msg_size``.
        size = header.payload_len - framer.decoder.payload_consumed
        if self._msg_opcode is not None:
            size += self._msg_size
        if size > max_size:
            raise _Violation(1009, self._too_big(size))

    def _control_frame(self, opcode: Opcode, payload: bytes, now: float) -> None:
        if opcode is _PING:
            # RFC 6455 section 5.5.2: answer with a pong carrying the same payload, unless we
            # already sent a close frame (section 5.5.1: nothing may follow it).
            self._pings_received += 1
            self._events.append(PingReceived(payload))
            if not self._close_sent:
                self._pongs_sent += 1
                self._write_frame(FIN | OP_PONG, payload)
        elif opcode is _PONG:
            # RFC 6455 section 5.5.3: a pong answers the most recent ping with that payload;
            # earlier pings are acknowledged with it.  Unsolicited pongs are fine.
            self._pongs_received += 1
            round_trip = None
            pings = self._pings
            if payload in pings:
                round_trip = now - pings[payload]
                while True:  # dicts keep insertion order: oldest pings first
                    key = next(iter(pings))
                    del pings[key]
                    if key == payload:
                        break
                self._round_trip = round_trip
            self._events.append(PongReceived(payload, round_trip))
        else:
            code, reason = self._parse_close(payload)
            self._close_frame(code, reason, now)

    @staticmethod
    def _parse_close(payload: bytes) -> tuple[int, str]:
        """Close frame body (RFC 6455 section 5.5.1): empty, or a code plus UTF-8 reason."""
        if not payload:
            return 1005, ""  # section 7.1.5: no status code means 1005
        if len(payload) == 1:
            raise _Violation(1002, "close frame with a 1-byte payload")
        code = int.from_bytes(payload[:2], "big")
        if not (code in _SENDABLE_CODES or 3000 <= code <= 4999):
            raise _Violation(1002, f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise _Violation(1007, "close reason is not valid UTF-8") from None
        return code, reason

    def _close_frame(self, code: int, reason: str, now: float) -> None:
        self._events.append(CloseReceived(code, reason))
        if self._close_sent:
            initiator = Initiator.LOCAL  # the answer to our close (or a simultaneous close)
        else:
            # RFC 6455 section 5.5.1: echo the close; an empty close is echoed empty.
            initiator = Initiator.REMOTE
            self._write_frame(FIN | OP_CLOSE, b"" if code == 1005 else code.to_bytes(2, "big"))
            self._close_sent = True
            self._set_close_deadline(now)
        self._finish(
            Closed(
                code=code, reason=reason, initiator=initiator, cause=CloseCause.NORMAL, clean=True
            ),
            wait_for_eof=True,
        )

    # ------------------------------------------------------------------ internals: ending

    def _transition(self, new: ConnectionState) -> None:
        if new not in _TRANSITIONS[self._state]:  # pragma: no cover - internal invariant
            raise AssertionError(f"illegal transition {self._state.name} -> {new.name}")
        self._state = new

    def _set_close_deadline(self, now: float) -> None:
        timeout = self._config.close_timeout
        self._deadline = None if timeout is None else now + timeout

    def _close_transport(self) -> None:
        self._should_close = True
        self._deadline = None

    def _finish(self, closed: Closed, *, wait_for_eof: bool) -> None:
        """Enter CLOSED and emit the final ``Closed`` event.

        RFC 6455 section 7.1.1: the server closes the TCP connection first; a client waits
        for the server's EOF until the close deadline.
        """
        self._transition(ConnectionState.CLOSED)
        self._closed = closed
        self._events.append(closed)
        self._pings.clear()
        self._msg_parts = []
        if not (wait_for_eof and self._client):
            self._close_transport()
        # else: the close deadline set when our close frame went out bounds the EOF wait

    def _fail(
        self, code: int, cause: CloseCause, detail: str, now: float, payload: bytes | None = None
    ) -> None:
        """Fail the WebSocket connection (RFC 6455 section 7.1.7) with close code ``code``."""
        if self._state is ConnectionState.CLOSED:  # pragma: no cover - callers check
            return
        if not self._close_sent:
            self._write_frame(FIN | OP_CLOSE, payload or code.to_bytes(2, "big"))
            self._close_sent = True
            self._set_close_deadline(now)
        reason = payload[2:].decode("utf-8") if payload else ""
        self._finish(
            Closed(
                code=code,
                reason=reason,
                initiator=Initiator.LOCAL,
                cause=cause,
                clean=False,
                detail=detail,
            ),
            wait_for_eof=True,
        )

    def _fail_handshake(self, detail: str, *, initiator: Initiator = Initiator.NONE) -> None:
        """The opening handshake did not complete: end with 1006 and close the transport."""
        self._transition(ConnectionState.CLOSED)
        closed = Closed(
            code=1006,
            reason="",
            initiator=initiator,
            cause=CloseCause.HANDSHAKE_FAILED,
            clean=False,
            detail=detail,
        )
        self._closed = closed
        self._events.append(closed)
        self._close_transport()

    def _open(self, deflate: DeflateParameters | None, opened: Opened) -> None:
        if deflate is not None:
            compression = self._config.compression
            assert compression is not None
            self._deflate = BoundedDeflate(
                deflate,
                client=self._client,
                compression_level=compression.compression_level,
                min_size=compression.min_size,
                max_message_size=self._max_size,
            )
        self._framer = Framer(
            client=self._client,
            deflate=self._deflate,
            mask_source=self._mask_source if self._client else None,
            # Without streaming, data frames are parsed once whole (bounded by the size limit).
            whole_frame_limit=0
            if self._streaming
            else (_WHOLE_FRAME_LIMIT if self._max_size is None else self._max_size),
        )
        self._transition(ConnectionState.OPEN)
        self._deadline = None
        self._events.append(opened)

    # ------------------------------------------------------------------ role hooks

    def _handshake_data(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def _handshake_eof(self, now: float) -> None:
        raise NotImplementedError


def _extension_values(
    offers: list[tuple[str, tuple[tuple[str, str | None], ...]]],
) -> tuple[str, ...]:
    rendered = []
    for name, params in offers:
        parts = [name] + [key if value is None else f"{key}={value}" for key, value in params]
        rendered.append("; ".join(parts))
    return tuple(rendered)


_RESERVED_REQUEST_HEADERS: Final = frozenset(
    (
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    )
)
_RESERVED_RESPONSE_HEADERS: Final = frozenset(
    (
        "upgrade",
        "connection",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    )
)


class ClientConnection(_Connection):
    """The client side of one WebSocket connection (RFC 6455 section 4.1).

    The upgrade request is ready in ``data_to_send()`` as soon as the object exists.
    ``mask_source(n)`` supplies the handshake key (16 bytes), the masking keys (4 bytes per
    frame) and automatic ping payloads; the default is ``secrets.token_bytes``.
    """

    __slots__ = ("_h11", "_key", "_offered", "_rejection", "_url")

    def __init__(
        self,
        url: str | WebSocketURL,
        *,
        config: ConnectionConfig = ConnectionConfig(),  # noqa: B008 - frozen, shared safely
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        origin: str | None = None,
        mask_source: MaskSource | None = None,
        now: float = 0.0,
    ) -> None:
        super().__init__(client=True, config=config, mask_source=mask_source, now=now)
        self._url = url if isinstance(url, WebSocketURL) else parse_url(url)
        raw_key = self._mask_source(16)
        if len(raw_key) != 16:
            raise ValueError("mask_source must return exactly the number of bytes asked for")
        self._key = base64.b64encode(raw_key).decode("ascii")
        self._offered = tuple(subprotocols)
        for proto in self._offered:
            if not is_token(proto):
                raise ValueError(f"invalid subprotocol {proto!r}")
        headers = [
            ("Host", self._url.host_header),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self._key),
            ("Sec-WebSocket-Version", "13"),
        ]
        if origin is not None:
            headers.append(("Origin", origin))
        if self._offered:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self._offered)))
        if config.compression is not None:
            headers.append(("Sec-WebSocket-Extensions", client_offer(config.compression)))
        names = set()
        for name, value in extra_headers:
            check_header(name, value)
            if name.lower() in _RESERVED_REQUEST_HEADERS:
                raise ValueError(f"the {name} header is set by the connection itself")
            names.add(name.lower())
        if config.user_agent is not None and "user-agent" not in names:
            headers.append(("User-Agent", config.user_agent))
        headers.extend(extra_headers)
        self._h11: h11.Connection | None = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=config.max_handshake_size
        )
        request = h11.Request(method="GET", target=self._url.resource, headers=headers)
        self._write(self._h11.send(request) + self._h11.send(h11.EndOfMessage()))
        self._rejection: tuple[int, Headers, bytearray] | None = None

    @property
    def url(self) -> WebSocketURL:
        return self._url

    def _handshake_data(self, data: bytes, now: float) -> None:
        limit = self._config.max_handshake_size
        start, total = 0, len(data)
        # Feed h11 at most max_handshake_size bytes at a time so an endless header is refused
        # before it is buffered (h11 checks its buffer size between events).
        while start < total:
            chunk = data if total <= limit else data[start : start + limit]
            start += len(chunk)
            h = self._h11
            assert h is not None
            h.receive_data(chunk)
            self._drain_h11(now)
            if self._state is ConnectionState.OPEN:
                trailing = h.trailing_data[0] + data[start:]
                self._h11 = None
                if trailing:
                    framer = self._framer
                    assert framer is not None
                    framer.receive_bytes(trailing)
                    self._process_frames(now)
                return
            if self._state is ConnectionState.CLOSED:
                return

    def _handshake_eof(self, now: float) -> None:
        h = self._h11
        assert h is not None
        if self._rejection is not None:
            h.receive_data(b"")  # a body delimited by EOF ends here
            self._drain_h11(now)
            if self._rejection is not None:
                self._finish_rejection()

    def _drain_h11(self, now: float) -> None:
        h = self._h11
        assert h is not None
        limit = self._config.max_handshake_size
        while self._state is ConnectionState.CONNECTING:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                if self._rejection is not None:
                    self._finish_rejection()
                else:
                    self._fail_handshake(f"invalid HTTP response: {exc}")
                return
            if event in _H11_END:
                return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    self._on_switching_protocols(decode_headers(event.headers))
                # other 1xx responses are skipped (RFC 7231 section 6.2)
            elif isinstance(event, h11.Response):
                self._rejection = (event.status_code, decode_headers(event.headers), bytearray())
            elif isinstance(event, h11.Data):
                assert self._rejection is not None
                body = self._rejection[2]
                body += event.data
                if len(body) >= limit:
                    del body[limit:]
                    self._finish_rejection()
            else:  # EndOfMessage or ConnectionClosed of the rejection
                self._finish_rejection()

    def _finish_rejection(self) -> None:
        assert self._rejection is not None
        status, headers, body = self._rejection
        self._rejection = None
        self._events.append(Rejected(status, headers, bytes(body)))
        self._fail_handshake(f"server rejected the WebSocket upgrade with HTTP {status}")

    def _on_switching_protocols(self, headers: Headers) -> None:
        """Validate the 101 response (RFC 6455 section 4.1, client requirements 1-6)."""
        if "websocket" not in header_tokens(headers, "upgrade"):
            return self._fail_handshake("101 response without Upgrade: websocket")
        if "upgrade" not in header_tokens(headers, "connection"):
            return self._fail_handshake("101 response without Connection: Upgrade")
        accept = header_values(headers, "sec-websocket-accept")
        if accept != [accept_token(self._key)]:
            return self._fail_handshake("101 response with a wrong Sec-WebSocket-Accept")
        subprotocol = None
        chosen = header_values(headers, "sec-websocket-protocol")
        if chosen:
            if len(chosen) != 1 or chosen[0].strip() not in self._offered:
                return self._fail_handshake(
                    f"server chose a subprotocol we did not offer: {chosen}"
                )
            subprotocol = chosen[0].strip()
        params: DeflateParameters | None = None
        ext_values = header_values(headers, "sec-websocket-extensions")
        extensions: tuple[str, ...] = ()
        if ext_values:
            try:
                offers = parse_extension_header(", ".join(ext_values))
                if offers:
                    if self._config.compression is None:
                        raise NegotiationError("server accepted extensions we did not offer")
                    params = client_accept(self._config.compression, offers)
                    extensions = (params.header_value(),)
            except NegotiationError as exc:
                return self._fail_handshake(f"extension negotiation failed: {exc}")
        self._open(params, Opened(subprotocol=subprotocol, extensions=extensions, headers=headers))
        return None


class ServerConnection(_Connection):
    """The server side of one WebSocket connection (RFC 6455 section 4.2).

    A valid upgrade request yields ``RequestReceived``; answer with ``accept()`` or
    ``reject()``.  Other HTTP requests yield ``HTTPRequestReceived``; answer with
    ``respond()``.  Malformed upgrades are answered (400, 426, 431) automatically.
    ``mask_source`` only supplies automatic ping payloads (servers do not mask).
    """

    __slots__ = (
        "_early",
        "_h11",
        "_pending_request",
        "_req_body",
        "_req_headers",
        "_req_http11",
        "_req_method",
        "_req_target",
        "_subprotocols_offered",
        "_ws_key",
    )

    def __init__(
        self,
        *,
        config: ConnectionConfig = ConnectionConfig(),  # noqa: B008 - frozen, shared safely
        mask_source: MaskSource | None = None,
        now: float = 0.0,
    ) -> None:
        super().__init__(client=False, config=config, mask_source=mask_source, now=now)
        self._h11: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=config.max_handshake_size
        )
        self._early = bytearray()
        self._pending_request: RequestReceived | HTTPRequestReceived | None = None
        self._req_method = ""
        self._req_target = ""
        self._req_headers: Headers = ()
        self._req_body = bytearray()
        self._req_http11 = False
        self._subprotocols_offered: tuple[str, ...] = ()
        self._ws_key = ""

    @property
    def request(self) -> RequestReceived | HTTPRequestReceived | None:
        """The request waiting for ``accept``/``reject``/``respond`` (None otherwise)."""
        if self._state is not ConnectionState.CONNECTING:
            return None
        return self._pending_request

    # -- application calls

    def accept(
        self,
        subprotocol: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        *,
        now: float,
    ) -> None:
        """Complete the opening handshake with a 101 response (RFC 6455 section 4.2.2)."""
        request = self._pending_request
        if self._state is not ConnectionState.CONNECTING or not isinstance(
            request, RequestReceived
        ):
            raise ConnectionStateError("accept() needs a pending WebSocket upgrade request")
        if subprotocol is not None and subprotocol not in request.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_token(self._ws_key)),
        ]
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        params = None
        extensions: tuple[str, ...] = ()
        compression = self._config.compression
        if compression is not None and request.extensions:
            offers = parse_extension_header(", ".join(request.extensions))
            params = server_negotiate(compression, offers)
            if params is not None:
                extensions = (params.header_value(),)
                headers.append(("Sec-WebSocket-Extensions", extensions[0]))
        for name, _value in extra_headers:
            if name.lower() in _RESERVED_RESPONSE_HEADERS:
                raise ValueError(f"the {name} header is set by the connection itself")
        headers.extend(extra_headers)
        response = http_response(101, headers, server=self._config.server_header, upgrade=True)
        self._pending_request = None
        self._write(response)
        self._open(
            params,
            Opened(subprotocol=subprotocol, extensions=extensions, headers=request.headers),
        )
        early = bytes(self._early)
        self._early = bytearray()
        self._h11 = None
        if early:
            framer = self._framer
            assert framer is not None
            framer.receive_bytes(early)
            self._process_frames(now)

    def reject(
        self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        """Refuse the upgrade with an HTTP response (e.g. 401, 403, 404), then close."""
        self._answer(status, headers, body, f"rejected the WebSocket upgrade with HTTP {status}")

    def respond(
        self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        """Answer a plain HTTP request (``HTTPRequestReceived``), then close the transport."""
        self._answer(status, headers, body, f"answered a plain HTTP request with {status}")

    def _answer(
        self, status: int, headers: Sequence[tuple[str, str]], body: bytes, detail: str
    ) -> None:
        if self._state is not ConnectionState.CONNECTING or self._pending_request is None:
            raise ConnectionStateError("no request is waiting for an answer")
        response = http_response(
            status,
            headers,
            bytes(body),
            server=self._config.server_header,
            include_body=self._req_method != "HEAD",
        )
        self._pending_request = None
        self._write(response)
        self._fail_handshake(detail, initiator=Initiator.LOCAL)

    # -- handshake input

    def _handshake_data(self, data: bytes, now: float) -> None:
        limit = self._config.max_handshake_size
        if self._pending_request is not None:
            # Bytes pipelined behind the request, kept until accept() (bounded).
            self._buffer_early(data)
            return
        start, total = 0, len(data)
        while start < total:
            chunk = data if total <= limit else data[start : start + limit]
            start += len(chunk)
            h = self._h11
            assert h is not None
            h.receive_data(chunk)
            self._drain_h11()
            if self._state is not ConnectionState.CONNECTING:
                return
            if self._pending_request is not None:
                self._buffer_early(h.trailing_data[0] + data[start:])
                return

    def _buffer_early(self, data: bytes) -> None:
        if len(self._early) + len(data) > self._config.max_handshake_size:
            self._auto_response(400, "too much data sent before the opening handshake completed")
            return
        self._early += data

    def _handshake_eof(self, now: float) -> None:
        """EOF before the request completed or before the app answered: nothing to send."""

    def _drain_h11(self) -> None:
        h = self._h11
        assert h is not None
        limit = self._config.max_handshake_size
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                self._auto_response(exc.error_status_hint, f"invalid HTTP request: {exc}")
                return
            if event in _H11_END:
                return
            if isinstance(event, h11.Request):
                self._req_method = event.method.decode("latin-1")
                self._req_target = event.target.decode("latin-1")
                self._req_headers = decode_headers(event.headers)
                self._req_http11 = event.http_version == b"1.1"
            elif isinstance(event, h11.Data):
                self._req_body += event.data
                if len(self._req_body) > limit:
                    self._auto_response(413, "request body exceeds max_handshake_size")
                    return
            else:  # EndOfMessage: the request is complete (no ConnectionClosed before EOF)
                self._request_complete()
                return

    def _request_complete(self) -> None:
        headers = self._req_headers
        upgrade_tokens = header_tokens(headers, "upgrade")
        is_websocket = (
            "websocket" in upgrade_tokens
            or bool(header_values(headers, "sec-websocket-key"))
            or bool(header_values(headers, "sec-websocket-version"))
        )
        if not is_websocket:
            self._pending_request = HTTPRequestReceived(
                method=self._req_method,
                target=self._req_target,
                headers=headers,
                body=bytes(self._req_body),
            )
            self._events.append(self._pending_request)
            return None
        # RFC 6455 section 4.2.1: requirements on the client's opening handshake.
        if self._req_method != "GET":
            return self._auto_response(400, f"WebSocket upgrade with method {self._req_method}")
        if not self._req_http11:
            return self._auto_response(400, "WebSocket upgrade needs HTTP/1.1")
        if "websocket" not in upgrade_tokens:
            return self._auto_response(400, "missing Upgrade: websocket header")
        if "upgrade" not in header_tokens(headers, "connection"):
            return self._auto_response(400, "missing Connection: Upgrade header")
        if header_values(headers, "sec-websocket-version") != ["13"]:
            # RFC 6455 section 4.4: announce the version we speak.
            return self._auto_response(
                426,
                "unsupported Sec-WebSocket-Version",
                (("Sec-WebSocket-Version", "13"),),
            )
        keys = header_values(headers, "sec-websocket-key")
        if len(keys) != 1 or not valid_key(keys[0]):
            return self._auto_response(400, "missing or invalid Sec-WebSocket-Key header")
        self._ws_key = keys[0]
        subprotocols = tuple(
            item.strip()
            for value in header_values(headers, "sec-websocket-protocol")
            for item in value.split(",")
            if item.strip()
        )
        try:
            offers = parse_extension_header(
                ", ".join(header_values(headers, "sec-websocket-extensions"))
            )
        except NegotiationError:
            offers = []
        self._pending_request = RequestReceived(
            method=self._req_method,
            target=self._req_target,
            headers=headers,
            subprotocols=subprotocols,
            extensions=_extension_values(offers),
        )
        self._events.append(self._pending_request)
        return None

    def _auto_response(
        self, status: int, detail: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Answer a malformed or oversized request ourselves and end the connection."""
        body = f"Failed to open a WebSocket connection: {detail}.\n".encode()
        self._pending_request = None
        self._write(
            http_response(
                status,
                (("Content-Type", "text/plain; charset=utf-8"), *headers),
                body,
                server=self._config.server_header,
            )
        )
        self._fail_handshake(detail)
