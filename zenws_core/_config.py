"""Per-connection limits and options for ``ClientConnection`` and ``ServerConnection``.

Safe limits are on by default: a maximum message size, a handshake size limit, bounded
decompression and close/handshake timeouts.  Both configs are frozen so one instance can be
shared by every connection of a server.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConnectionConfig", "DeflateConfig"]

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeflateConfig:
    """permessage-deflate parameters (RFC 7692 section 7), in the RFC's own terms.

    A client offers exactly these parameters; a server accepts an offer while honouring them.
    Window sizes are zlib window bits (9 to 15; RFC 7692 allows 8 but zlib cannot produce it).
    """

    #: Limit the client's compression window (a client offers it, a server requests it).
    client_max_window_bits: int | None = None
    #: Limit the server's compression window.
    server_max_window_bits: int | None = None
    #: The client resets its compression context after every message.
    client_no_context_takeover: bool = False
    #: The server resets its compression context after every message.
    server_no_context_takeover: bool = False
    #: zlib compression level for outgoing messages (0 to 9).
    compression_level: int = 6
    #: Outgoing messages shorter than this many bytes are sent uncompressed (RSV1 clear).
    min_size: int = 32

    def __post_init__(self) -> None:
        for name in ("client_max_window_bits", "server_max_window_bits"):
            bits = getattr(self, name)
            if bits is not None and not 9 <= bits <= 15:
                raise ValueError(f"{name} must be between 9 and 15, not {bits}")
        if not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be 0..9, not {self.compression_level}")
        if self.min_size < 0:
            raise ValueError("min_size must be >= 0")


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Limits and options of one protocol connection (either role).

    ``None`` disables a limit or a timeout; the defaults are safe for a public server.
    """

    #: Largest inbound message in bytes (after decompression); larger ones close with 1009.
    max_message_size: int | None = 1 * MiB
    #: Outbound messages larger than this are split into frames of this payload size.
    fragment_size: int | None = 1 * MiB
    #: Deliver ``FragmentReceived`` pieces instead of assembled ``MessageReceived`` messages.
    streaming: bool = False
    #: permessage-deflate settings; compression is off unless this is set.
    compression: DeflateConfig | None = None
    #: Seconds the closing handshake (and a client's wait for the server's EOF) may take.
    close_timeout: float | None = 10.0
    #: Seconds the opening handshake may take, from construction to ``Opened``.
    handshake_timeout: float | None = 10.0
    #: Largest HTTP head (request/response line plus headers) and plain HTTP body accepted.
    max_handshake_size: int = 64 * KiB
    #: ``writing_paused`` turns true when more than this many bytes wait in ``data_to_send()``.
    write_high_water: int = 1 * MiB
    #: ``User-Agent`` header of client requests (``None``: no header).
    user_agent: str | None = "zenws"
    #: ``Server`` header of server responses (``None``: no header).
    server_header: str | None = "zenws"

    def __post_init__(self) -> None:
        for name in ("max_message_size", "fragment_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, not {value}")
        for name in ("close_timeout", "handshake_timeout"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0 or None, not {value}")
        if self.max_handshake_size < 256:
            raise ValueError("max_handshake_size must be at least 256 bytes")
        if self.write_high_water < 0:
            raise ValueError("write_high_water must be >= 0")
