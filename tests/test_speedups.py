"""The masking accelerator and the fast frame decoder.

* ``zenws_core._speedups.apply_mask`` (C) and ``python_apply_mask`` agree with a byte-by-byte
  reference for any data, key, alignment and split point (key rotated across pieces).
* zenws' frame decoder returns exactly what wsproto's ``FrameDecoder`` returns (frames,
  pieces, ``ParseFailed`` message and code) on random valid and invalid byte streams, split
  anywhere, in both roles and with either masking implementation.
* The whole protocol test suite passes with masking forced to pure Python (the default run
  uses C), and client/server echo gives the same events both ways.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameDecoder, ParseFailed

from tests.test_protocol_helpers import masked, open_pair
from zenws_core import _mask
from zenws_core._config import ConnectionConfig
from zenws_core._events import MessageReceived
from zenws_core._frames import Framer, _FrameDecoder, mask
from zenws_core._mask import (
    python_apply_mask,
    python_mask_frame,
    speedups_available,
    use_speedups,
    using_speedups,
)
from zenws_core._protocol import ConnectionState, ConnectionStats, _Connection

ROOT = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = ["c", "python"]


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once with C masking and once with pure-Python masking."""
    assert use_speedups(request.param == "c") is (request.param == "c")
    try:
        yield request.param
    finally:
        use_speedups(True)


def c_apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    from zenws_core._speedups import apply_mask

    return apply_mask(data, key)


# -- the accelerator is there and selectable ----------------------------------------------


def test_accelerator_is_built_and_used_by_default() -> None:
    # `pip install -e .` compiles it wherever a C compiler exists (CI has gcc).
    assert speedups_available()
    assert using_speedups()
    from zenws_core._speedups import apply_mask

    assert _mask.apply_mask is apply_mask


def test_use_speedups_switches_every_call_site() -> None:
    key = b"\x01\x02\x03\x04"
    try:
        assert use_speedups(False) is False
        assert not using_speedups()
        assert _mask.apply_mask is python_apply_mask
        assert mask(key, b"abcd") == bytes((0x60, 0x60, 0x60, 0x60))
        assert use_speedups(True) is True
        assert using_speedups()
        assert _mask.apply_mask is not python_apply_mask
        assert mask(key, b"abcd") == bytes((0x60, 0x60, 0x60, 0x60))
    finally:
        use_speedups(True)


@pytest.mark.parametrize("function", [c_apply_mask, python_apply_mask])
@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_key_must_be_four_bytes(function: object, key: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        function(b"data", key)  # type: ignore[operator]


@pytest.mark.parametrize("function", [c_apply_mask, python_apply_mask])
def test_c_refuses_non_buffers(function: object) -> None:
    with pytest.raises(TypeError):
        function("text", b"abcd")  # type: ignore[operator]


def test_c_wrong_argument_count() -> None:
    from zenws_core._speedups import apply_mask

    with pytest.raises(TypeError, match="exactly 2 arguments"):
        apply_mask(b"x")  # type: ignore[call-arg]


# -- C and Python give identical results ---------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 511, 512, 513, 1024, 4099, 65536]
)
def test_every_length_boundary(size: int) -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    key = bytes.fromhex("a1b2c3d4")
    expected = masked(data, key)
    assert c_apply_mask(data, key) == expected
    assert python_apply_mask(data, key) == expected
    assert c_apply_mask(expected, key) == data  # masking twice gives the data back


@given(
    data=st.binary(max_size=3000),
    key=st.binary(min_size=4, max_size=4),
    offset=st.integers(min_value=0, max_value=7),
)
def test_c_and_python_agree_at_any_alignment(data: bytes, key: bytes, offset: int) -> None:
    # A memoryview at an odd offset makes the C loop read unaligned 8-byte words.
    view = memoryview(b"\x00" * offset + data)[offset:]
    expected = masked(data, key)
    assert c_apply_mask(view, key) == expected
    assert c_apply_mask(bytearray(data), key) == expected
    assert python_apply_mask(view, key) == expected
    assert python_apply_mask(bytearray(data), key) == expected


@given(
    data=st.binary(max_size=2000),
    key=st.binary(min_size=4, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
)
def test_pieces_with_rotated_keys_equal_the_whole(data: bytes, key: bytes, cuts: list[int]) -> None:
    # How the decoder unmasks a frame that arrives in pieces: rotate the key by the offset.
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for function in (c_apply_mask, python_apply_mask):
        out = b""
        for start, end in itertools.pairwise(bounds):
            r = start & 3
            out += function(data[start:end], key[r:] + key[:r])
        assert out == masked(data, key)


def c_mask_frame(
    head: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview, key: bytes
) -> bytes:
    from zenws_core._speedups import mask_frame

    return mask_frame(head, data, key)


@given(
    head=st.binary(max_size=20),
    data=st.binary(max_size=3000),
    key=st.binary(min_size=4, max_size=4),
    offset=st.integers(min_value=0, max_value=7),
)
def test_mask_frame_is_head_plus_masked_data(
    head: bytes, data: bytes, key: bytes, offset: int
) -> None:
    view = memoryview(b"\x00" * offset + data)[offset:]
    expected = head + masked(data, key)
    assert c_mask_frame(head, view, key) == expected
    assert c_mask_frame(bytearray(head), bytearray(data), key) == expected
    assert python_mask_frame(head, view, key) == expected
    assert python_mask_frame(bytearray(head), data, key) == expected


@pytest.mark.parametrize("function", [c_mask_frame, python_mask_frame])
def test_mask_frame_checks_its_arguments(function: Any) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        function(b"h", b"data", b"abc")
    with pytest.raises(TypeError):
        function("h", b"data", b"abcd")


def test_mask_frame_wrong_argument_count() -> None:
    from zenws_core._speedups import mask_frame

    with pytest.raises(TypeError, match="exactly 3 arguments"):
        mask_frame(b"", b"x")  # type: ignore[call-arg]


def test_use_speedups_switches_mask_frame_too() -> None:
    from zenws_core._speedups import mask_frame as c_version

    try:
        use_speedups(False)
        assert _mask.mask_frame is python_mask_frame
        use_speedups(True)
        assert _mask.mask_frame is c_version
    finally:
        use_speedups(True)


@pytest.mark.parametrize("size", [1023, 1024, 1025, 70_000])
def test_large_client_frames_are_built_in_one_pass(implementation: str, size: int) -> None:
    key = b"\x0a\x0b\x0c\x0d"
    framer = Framer(client=True, mask_source=lambda n: key)
    payload = bytes(i & 0xFF for i in range(size))
    length = (
        bytes((0xFE,)) + size.to_bytes(2, "big")
        if size < 65536
        else (bytes((0xFF,)) + size.to_bytes(8, "big"))
    )
    assert framer.encode(0x82, payload) == b"\x82" + length + key + masked(payload, key)


# -- the frame decoder matches wsproto's ------------------------------------------------


@st.composite
def raw_frame(draw: st.DrawFn, masked_frames: bool) -> bytes:
    """One frame, usually valid, sometimes breaking one rule of RFC 6455 section 5.2."""
    # Each rule is broken rarely enough that the frames behind the broken one get parsed too.
    opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10] * 4 + [3, 7, 11, 15]))
    fin = draw(st.integers(0, 9)) > 0 or (opcode < 8 and draw(st.booleans()))
    rsv = draw(st.sampled_from([0] * 20 + [0x10, 0x20, 0x40]))
    payload = draw(st.binary(max_size=300) | st.binary(min_size=126, max_size=700))
    n = len(payload)
    length_form = draw(st.sampled_from(["minimal"] * 12 + ["two", "eight", "msb"]))
    if length_form == "minimal":
        length = bytes((n,)) if n < 126 else bytes((126,)) + n.to_bytes(2, "big")
    elif length_form == "two":
        length = bytes((126,)) + n.to_bytes(2, "big")
    elif length_form == "eight":
        length = bytes((127,)) + n.to_bytes(8, "big")
    else:
        length = bytes((127,)) + (n | 1 << 63).to_bytes(8, "big")
    is_masked = masked_frames if draw(st.integers(0, 19)) else not masked_frames
    head = bytes(((0x80 if fin else 0) | rsv | opcode,)) + bytes((length[0] | (0x80 * is_masked),))
    head += length[1:]
    if not is_masked:
        return head + payload
    key = draw(st.binary(min_size=4, max_size=4))
    return head + key + masked(payload, key)


def run_decoder(
    decoder: FrameDecoder, stream: bytes, cuts: list[int]
) -> tuple[list[tuple[int, bytes, bool, bool]], tuple[str, int] | None]:
    frames: list[tuple[int, bytes, bool, bool]] = []
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        decoder.receive_bytes(stream[start:end])
        try:
            while (frame := decoder.process_buffer()) is not None:
                assert isinstance(frame.payload, bytes)
                frames.append(
                    (int(frame.opcode), frame.payload, frame.frame_finished, frame.message_finished)
                )
        except ParseFailed as exc:
            return frames, (str(exc), int(exc.code))
    return frames, None


# The fixture only selects the masking implementation for the whole test: sharing it
# between generated inputs is what is wanted.
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    client=st.booleans(),
    data=st.data(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_decoder_matches_wsproto(
    implementation: str, client: bool, data: st.DataObject, cuts: list[int]
) -> None:
    frames = data.draw(st.lists(raw_frame(masked_frames=not client), max_size=6))
    stream = b"".join(frames)
    expected = run_decoder(FrameDecoder(client), stream, cuts)
    assert run_decoder(_FrameDecoder(client), stream, cuts) == expected


def merge_pieces(
    frames: list[tuple[int, bytes, bool, bool]],
) -> list[tuple[int, bytes, bool, bool]]:
    """Join the pieces of each frame (wsproto returns a frame's payload as it arrives)."""
    merged: list[tuple[int, bytes, bool, bool]] = []
    partial: tuple[int, bytes] | None = None
    for opcode, payload, frame_finished, message_finished in frames:
        if partial is not None:
            opcode, payload = partial[0], partial[1] + payload
        partial = None if frame_finished else (opcode, payload)
        if frame_finished:
            merged.append((opcode, payload, True, message_finished))
    return merged


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    client=st.booleans(),
    limit=st.sampled_from([0, 1, 200, 1 << 20]),
    pieces_above=st.sampled_from([1, 150, 64 * 1024]),
    data=st.data(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_whole_frame_mode_joins_the_pieces(
    implementation: str,
    client: bool,
    limit: int,
    pieces_above: int,
    data: st.DataObject,
    cuts: list[int],
) -> None:
    frames = data.draw(st.lists(raw_frame(masked_frames=not client), max_size=6))
    stream = b"".join(frames)
    expected, error = run_decoder(FrameDecoder(client), stream, cuts)
    decoder = _FrameDecoder(client, whole_frame_limit=limit)
    decoder.pieces_above = pieces_above  # reads kept aside and joined (client role)
    got, got_error = run_decoder(decoder, stream, cuts)
    assert got_error == error
    assert merge_pieces(got) == merge_pieces(expected)
    if limit == 1 << 20:
        assert all(finished for _, _, finished, _ in got)


def test_decoder_waits_for_an_incomplete_masking_key() -> None:
    decoder = _FrameDecoder(client=False)
    decoder.receive_bytes(b"\x82\x83\x01\x02")
    assert decoder.process_buffer() is None
    decoder.receive_bytes(b"\x03\x04" + masked(b"abc", b"\x01\x02\x03\x04"))
    frame = decoder.process_buffer()
    assert frame is not None
    assert frame.payload == b"abc"
    assert decoder.mask_key is None


def test_framer_uses_the_fast_decoder() -> None:
    framer = Framer(client=False)
    assert type(framer.decoder) is _FrameDecoder
    framer.receive_bytes(b"\x82\x80\x00\x00\x00\x00")
    assert framer.inbox == bytearray(b"\x82\x80\x00\x00\x00\x00")
    frame = framer.next_frame()
    assert frame is not None
    assert frame.payload == b""
    assert frame.frame_finished


# -- the protocol with either implementation --------------------------------------------


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=st.lists(st.binary(max_size=5000) | st.text(max_size=300), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=5),
)
def test_echo_through_client_and_server(
    implementation: str, messages: list[bytes | str], cuts: list[int]
) -> None:
    client, server = open_pair()
    for message in messages:
        if isinstance(message, str):
            client.send_text(message)
        else:
            client.send_bytes(message)
    wire = client.data_to_send()
    bounds = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    received = []
    for start, end in itertools.pairwise(bounds):
        server.receive_data(wire[start:end], 0.0)
        received += server.events()
    assert received == [MessageReceived(m) for m in messages]
    for event in received:
        assert isinstance(event, MessageReceived)
        if isinstance(event.data, str):
            server.send_text(event.data)
        else:
            server.send_bytes(event.data)
    client.receive_data(server.data_to_send(), 0.0)
    assert client.events() == [MessageReceived(m) for m in messages]


def feed_connection(
    role: str, max_size: int | None, stream: bytes, cuts: list[int], pieces_above: int = 0
) -> tuple[list[Any], bytes, ConnectionState, ConnectionStats]:
    """Open a connection of ``role``, feed it ``stream`` split at ``cuts``; what came out."""
    config = ConnectionConfig(max_message_size=max_size)
    client, server = open_pair(config, config)
    conn = client if role == "client" else server
    conn.events()
    if pieces_above:
        framer = conn._framer
        assert framer is not None
        framer.decoder.pieces_above = pieces_above
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    events: list[Any] = []
    out = b""
    for start, end in itertools.pairwise(bounds):
        conn.receive_data(stream[start:end], 1.0)
        events += conn.events()
        out += conn.data_to_send()
    conn.handle_timer(1.0)  # a deferred failure happens here
    events += conn.events()
    out += conn.data_to_send()
    return events, out, conn.state, conn.stats()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    role=st.sampled_from(["client", "server"]),
    max_size=st.sampled_from([None, 100, 300]),
    pieces_above=st.sampled_from([0, 1, 130]),
    data=st.data(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_plain_frame_path_matches_the_general_decoder(
    implementation: str,
    role: str,
    max_size: int | None,
    pieces_above: int,
    data: st.DataObject,
    cuts: list[int],
) -> None:
    # Whole small data frames are parsed straight from the buffer; everything the peer can
    # send must give the same events, bytes and state as the general decoder alone.
    text_frame = st.text(max_size=200).map(
        lambda t: frame_bytes(0x81, t.encode(), role == "server")
    )
    frames = data.draw(st.lists(raw_frame(masked_frames=role == "server") | text_frame, max_size=8))
    stream = b"".join(frames)
    # ... and with reads kept aside for large frames (``pieces_above`` lowered to reach them).
    fast = feed_connection(role, max_size, stream, cuts, pieces_above)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_Connection, "_plain_frames", lambda self, inbox: None)
        general = feed_connection(role, max_size, stream, cuts)
    assert fast == general


def frame_bytes(first: int, payload: bytes, masked_frame: bool) -> bytes:
    n = len(payload)
    length = bytes((n,)) if n < 126 else bytes((126,)) + n.to_bytes(2, "big")
    if not masked_frame:
        return bytes((first, length[0])) + length[1:] + payload
    key = b"\x11\x22\x33\x44"
    return bytes((first, length[0] | 0x80)) + length[1:] + key + masked(payload, key)


def test_plain_frames_of_both_length_forms_in_one_read() -> None:
    client, server = open_pair()
    big, small = bytes(range(256)) * 3, b"hi"
    for conn, masked_frame in ((server, True), (client, False)):
        stream = (
            frame_bytes(0x82, big, masked_frame)
            + frame_bytes(0x81, "h\u00e9".encode(), masked_frame)
            + frame_bytes(0x82, small, masked_frame)
        )
        conn.receive_data(stream, 0.0)
        assert conn.events() == [
            MessageReceived(big),
            MessageReceived("h\u00e9"),
            MessageReceived(small),
        ]
        assert conn.stats().messages_in == 3
        assert conn.stats().bytes_in == len(big) + 3 + len(small)


def test_a_large_frame_read_in_pieces_is_joined_once() -> None:
    client, server = open_pair()
    big = bytes(range(256)) * 800  # 200 KiB: above pieces_above
    server.send_bytes(big)
    server.send_text("next")
    wire = server.data_to_send()
    framer = client._framer
    assert framer is not None
    decoder = framer.decoder
    reads = [wire[i : i + 30_000] for i in range(0, len(wire), 30_000)]
    for data in reads[:-1]:
        client.receive_data(data, 0.0)
        assert client.events() == []
    assert decoder.collecting
    assert len(decoder.pieces) == len(reads) - 2  # the first read went to the buffer
    client.receive_data(reads[-1], 0.0)  # the end of the frame and the next frame
    assert client.events() == [MessageReceived(big), MessageReceived("next")]
    assert not decoder.collecting
    assert decoder.pieces == []
    assert framer.inbox == bytearray()


def test_reads_kept_aside_beyond_the_frame_go_back_to_the_buffer() -> None:
    decoder = _FrameDecoder(client=True, whole_frame_limit=1 << 20)
    decoder.pieces_above = 10
    payload = bytes(range(40))
    decoder.receive_bytes(b"\x82\x28" + payload[:5])
    assert decoder.process_buffer() is None
    assert decoder.collecting
    for data in (payload[5:20], payload[20:], b"\x82\x01", b"!"):  # read before parsing
        decoder.receive_bytes(data)
    frame = decoder.process_buffer()
    assert frame is not None
    assert (frame.payload, frame.frame_finished) == (payload, True)
    frame = decoder.process_buffer()
    assert frame is not None
    assert frame.payload == b"!"


def test_protocol_suite_passes_with_pure_python_masking() -> None:
    # The default run uses the C path; here every protocol test runs again in pure Python.
    script = (
        "import sys, pytest\n"
        "from zenws_core import _mask\n"
        "assert _mask.use_speedups(False) is False\n"
        "code = pytest.main(['-q', '-p', 'no:cacheprovider', '--no-cov', '-x', *sys.argv[1:]])\n"
        "assert not _mask.using_speedups(), 'a test switched the C path back on'\n"
        "sys.exit(int(code))\n"
    )
    files = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tests/test_protocol_*.py"))
    assert len(files) >= 5
    result = subprocess.run(
        [sys.executable, "-c", script, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
