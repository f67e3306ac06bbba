"""The masking XOR of RFC 6455 section 5.3, in C when the accelerator is built.

Every client-to-server payload byte is XORed with a 4-byte key, repeated; the server undoes
it the same way.  ``zenws_core._speedups`` (optional, built by ``setup.py`` when a compiler
is present) does this 8 bytes at a time; otherwise a pure-Python version with identical
results is used.  ``use_speedups(False)`` selects the pure-Python path (tests run the whole
protocol suite both ways); nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "apply_mask",
    "mask_frame",
    "python_apply_mask",
    "python_mask_frame",
    "speedups_available",
    "use_speedups",
    "using_speedups",
]

Buffer = bytes | bytearray | memoryview
MaskFunction = Callable[[Buffer, bytes], bytes]
FrameFunction = Callable[[Buffer, Buffer, bytes], bytes]

_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]
# Measured on CPython 3.11: one big-integer XOR wins below ~600 bytes, four
# ``bytearray.translate`` passes over strided slices win above (70 us vs 115 us per 64 KiB).
_SMALL = 512


def python_apply_mask(data: Buffer, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated, in pure Python (RFC 6455 section 5.3)."""
    if len(key) != 4:
        raise ValueError("the masking key must be exactly 4 bytes")
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
    tables = _XOR_TABLES
    out[0::4] = out[0::4].translate(tables[key[0]])
    out[1::4] = out[1::4].translate(tables[key[1]])
    out[2::4] = out[2::4].translate(tables[key[2]])
    out[3::4] = out[3::4].translate(tables[key[3]])
    return bytes(out)


def python_mask_frame(head: Buffer, data: Buffer, key: bytes) -> bytes:
    """``head`` followed by ``data`` masked with ``key``: a whole masked client frame."""
    return bytes(head) + python_apply_mask(data, key)


_c_apply_mask: MaskFunction | None
_c_mask_frame: FrameFunction | None
try:
    from ._speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - depends on whether the extension was built
    _c_apply_mask = None
try:
    from ._speedups import mask_frame as _c_mask_frame
except ImportError:  # pragma: no cover - an extension built before mask_frame existed
    _c_mask_frame = None


def _joined_mask_frame(head: Buffer, data: Buffer, key: bytes) -> bytes:  # pragma: no cover
    assert _c_apply_mask is not None
    return bytes(head) + _c_apply_mask(data, key)


#: The implementation in use; rebound by ``use_speedups``.  Call sites look it up as
#: ``_mask.apply_mask`` at call time so that switching takes effect everywhere at once.
apply_mask: MaskFunction = _c_apply_mask if _c_apply_mask is not None else python_apply_mask
#: ``mask_frame(head, data, key)``: ``head + apply_mask(data, key)`` in one allocation in C.
#: A large client frame built as a masked copy plus a join costs two fresh buffers of the
#: payload's size at once, which the allocator hands back to the system each time
#: (page faults on every message: 0.9 ms instead of 35 us per 1 MiB, measured).
mask_frame: FrameFunction = python_mask_frame


def _select(enabled: bool) -> None:
    global apply_mask, mask_frame
    if enabled and _c_apply_mask is not None:
        apply_mask = _c_apply_mask
        mask_frame = _c_mask_frame if _c_mask_frame is not None else _joined_mask_frame
    else:
        apply_mask = python_apply_mask
        mask_frame = python_mask_frame


_select(True)


def speedups_available() -> bool:
    """True when the C accelerator ``zenws_core._speedups`` was built and imports."""
    return _c_apply_mask is not None


def using_speedups() -> bool:
    """True when masking currently runs in C."""
    return _c_apply_mask is not None and apply_mask is _c_apply_mask


def use_speedups(enabled: bool = True) -> bool:
    """Select the C masking (``True``, when available) or pure Python (``False``).

    Returns whether the C path is now in use.  Meant for tests and benchmarks; the default
    is the C path whenever it is available.  Affects every connection in the process.
    """
    _select(enabled)
    return using_speedups()
