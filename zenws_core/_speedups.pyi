"""Type stub of the optional C accelerator (see ``_speedups.c``)."""

def apply_mask(data: bytes | bytearray | memoryview, key: bytes, /) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 section 5.3)."""

def mask_frame(
    head: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview, key: bytes, /
) -> bytes:
    """``head`` + ``data`` XORed with ``key``, in one allocation (RFC 6455 section 5.3)."""
