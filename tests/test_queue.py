"""Tests of zenws_core._queue: bounds, overflow policies, expiry, counters and order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zenws_core._queue import (
    DropCause,
    Dropped,
    OutboundQueue,
    OverflowPolicy,
    QueueConfig,
    QueuedMessage,
    QueueFull,
)

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = QueueConfig()
    assert config.max_messages == 1000
    assert config.max_bytes == 16 * 1024 * 1024
    assert config.overflow is OverflowPolicy.REJECT
    assert config.ttl is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_messages": 0}, ValueError),
        ({"max_messages": 1.0}, TypeError),
        ({"max_messages": True}, TypeError),
        ({"max_bytes": 0}, ValueError),
        ({"overflow": "reject"}, TypeError),
        ({"ttl": 0.0}, ValueError),
        ({"ttl": -1.0}, ValueError),
        ({"ttl": float("inf")}, ValueError),
        ({"ttl": "1"}, TypeError),
    ],
)
def test_config_rejects_invalid_values(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        QueueConfig(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Basics
# ---------------------------------------------------------------------------------------------


def test_fifo_order_and_sequence_numbers() -> None:
    queue = OutboundQueue()
    first, dropped = queue.put("a", 1.0)
    second, _ = queue.put(b"bc", 2.0, tag="req-7")
    assert dropped == []
    assert (first.seq, second.seq) == (0, 1)
    assert first == QueuedMessage(0, "a", 1, 1.0, None, None)
    assert second.tag == "req-7"
    assert second.is_text is False
    assert first.is_text is True
    assert len(queue) == 2
    assert queue.bytes == 3
    assert queue.peek() is first
    assert list(queue) == [first, second]
    assert queue.popleft() is first
    assert queue.popleft() is second
    assert queue.popleft() is None
    assert queue.peek() is None
    assert len(queue) == 0
    assert queue.bytes == 0
    assert queue.enqueued_total == 2
    assert queue.dropped_total == 0


def test_text_size_is_its_utf8_length() -> None:
    queue = OutboundQueue()
    message, _ = queue.put("héllo €", 0.0)
    assert message.size == len("héllo €".encode())
    assert queue.bytes == message.size


def test_lone_surrogate_text_is_sized_not_refused() -> None:
    message, _ = OutboundQueue().put("\ud800", 0.0)
    assert message.size == 3


@pytest.mark.parametrize("payload", [bytearray(b"x"), memoryview(b"x"), 3, None])
def test_payload_type_is_checked(payload: object) -> None:
    queue = OutboundQueue()
    with pytest.raises(TypeError, match="payload"):
        queue.put(payload, 0.0)  # type: ignore[arg-type]
    assert len(queue) == 0


def test_default_config_is_used() -> None:
    assert OutboundQueue().config == QueueConfig()


def test_dropped_by_cause_is_a_read_only_view_with_every_cause() -> None:
    queue = OutboundQueue()
    counts = queue.dropped_by_cause
    assert dict(counts) == dict.fromkeys(DropCause, 0)
    with pytest.raises(TypeError):
        counts[DropCause.EXPIRED] = 3  # type: ignore[index]


def test_drop_counters_start_empty_and_a_view_taken_early_stays_live() -> None:
    queue = OutboundQueue(QueueConfig(max_messages=1, overflow=OverflowPolicy.DROP_NEWEST))
    assert queue.dropped_total == 0  # no counters exist yet
    counts = queue.dropped_by_cause
    queue.put("a", 0.0)
    queue.put("b", 0.0)  # dropped: the queue holds one message
    assert counts[DropCause.OVERFLOW] == 1
    assert queue.dropped_total == 1


# ---------------------------------------------------------------------------------------------
# Overflow policies
# ---------------------------------------------------------------------------------------------


def test_reject_by_message_count() -> None:
    queue = OutboundQueue(QueueConfig(max_messages=2))
    queue.put("a", 0.0)
    queue.put("b", 0.0)
    with pytest.raises(QueueFull) as info:
        queue.put("c", 0.0)
    assert info.value.limit == "messages"
    assert info.value.reason == "queue full: 2 messages"
    assert str(info.value) == info.value.reason
    assert info.value.size == 1
    assert [m.payload for m in queue] == ["a", "b"]
    assert queue.dropped_by_cause[DropCause.REJECTED] == 1
    assert queue.enqueued_total == 2
    # A refused put consumes no sequence number.
    queue.popleft()
    assert queue.put("d", 0.0)[0].seq == 2


def test_reject_by_bytes() -> None:
    queue = OutboundQueue(QueueConfig(max_bytes=10))
    queue.put(b"123456", 0.0)
    with pytest.raises(QueueFull) as info:
        queue.put(b"12345", 0.0)
    assert info.value.limit == "bytes"
    assert "10 bytes" in info.value.reason
    assert queue.bytes == 6
    queue.put(b"1234", 0.0)  # exactly max_bytes fits
    assert queue.bytes == 10


def test_reject_message_larger_than_max_bytes() -> None:
    queue = OutboundQueue(QueueConfig(max_bytes=4))
    with pytest.raises(QueueFull) as info:
        queue.put(b"12345", 0.0)
    assert info.value.limit == "bytes"
    assert "exceeds max_bytes 4" in info.value.reason
    assert queue.dropped_by_cause[DropCause.REJECTED] == 1


def test_drop_oldest_evicts_until_the_count_fits() -> None:
    queue = OutboundQueue(QueueConfig(max_messages=2, overflow=OverflowPolicy.DROP_OLDEST))
    a, _ = queue.put("a", 0.0)
    queue.put("b", 0.0)
    c, dropped = queue.put("c", 0.0)
    assert dropped == [Dropped(a, DropCause.OVERFLOW)]
    assert [m.payload for m in queue] == ["b", "c"]
    assert c.seq == 2
    assert queue.dropped_by_cause[DropCause.OVERFLOW] == 1


def test_drop_oldest_evicts_several_for_bytes() -> None:
    queue = OutboundQueue(QueueConfig(max_bytes=10, overflow=OverflowPolicy.DROP_OLDEST))
    a, _ = queue.put(b"xxx", 0.0)
    b, _ = queue.put(b"yyy", 0.0)
    queue.put(b"zzz", 0.0)
    _, dropped = queue.put(b"wwwwwww", 0.0)
    assert [d.message for d in dropped] == [a, b]
    assert [m.payload for m in queue] == [b"zzz", b"wwwwwww"]
    assert queue.bytes == 10


def test_drop_newest_keeps_the_queue_and_returns_the_new_message() -> None:
    queue = OutboundQueue(QueueConfig(max_messages=1, overflow=OverflowPolicy.DROP_NEWEST))
    a, _ = queue.put("a", 0.0)
    b, dropped = queue.put("b", 1.0, tag=9)
    assert dropped == [Dropped(b, DropCause.OVERFLOW)]
    assert b.tag == 9
    assert list(queue) == [a]
    assert queue.enqueued_total == 1
    assert queue.dropped_by_cause[DropCause.OVERFLOW] == 1


@pytest.mark.parametrize("policy", [OverflowPolicy.DROP_OLDEST, OverflowPolicy.DROP_NEWEST])
def test_too_large_message_is_dropped_without_evicting(policy: OverflowPolicy) -> None:
    queue = OutboundQueue(QueueConfig(max_bytes=4, overflow=policy))
    a, _ = queue.put(b"12", 0.0)
    big, dropped = queue.put(b"12345", 0.0)
    assert dropped == [Dropped(big, DropCause.TOO_LARGE)]
    assert list(queue) == [a]
    assert queue.dropped_by_cause[DropCause.TOO_LARGE] == 1


# ---------------------------------------------------------------------------------------------
# Expiry
# ---------------------------------------------------------------------------------------------


def test_config_ttl_and_per_message_override() -> None:
    queue = OutboundQueue(QueueConfig(ttl=10.0))
    a, _ = queue.put("a", 100.0)
    b, _ = queue.put("b", 101.0, ttl=2.0)
    c, _ = queue.put("c", 102.0)
    assert (a.expires_at, b.expires_at, c.expires_at) == (110.0, 103.0, 112.0)
    assert queue.next_deadline() == 103.0
    assert queue.expire(102.999) == []
    assert queue.expire(103.0) == [Dropped(b, DropCause.EXPIRED)]  # at the deadline exactly
    assert [m.payload for m in queue] == ["a", "c"]
    assert queue.next_deadline() == 110.0
    assert queue.expire(200.0) == [Dropped(a, DropCause.EXPIRED), Dropped(c, DropCause.EXPIRED)]
    assert queue.next_deadline() is None
    assert len(queue) == 0
    assert queue.bytes == 0
    assert queue.dropped_by_cause[DropCause.EXPIRED] == 3


def test_messages_without_ttl_never_expire() -> None:
    queue = OutboundQueue()
    queue.put("a", 0.0)
    queue.put("b", 0.0, ttl=1.0)
    assert [d.message.payload for d in queue.expire(1e12)] == ["b"]
    assert [m.payload for m in queue] == ["a"]
    assert queue.next_deadline() is None


def test_invalid_per_message_ttl_is_refused() -> None:
    queue = OutboundQueue()
    with pytest.raises(ValueError, match="ttl"):
        queue.put("a", 0.0, ttl=0.0)
    assert len(queue) == 0


def test_popped_messages_do_not_expire_or_set_deadlines() -> None:
    queue = OutboundQueue(QueueConfig(ttl=5.0))
    queue.put("a", 0.0)
    queue.put("b", 1.0)
    queue.popleft()
    assert queue.next_deadline() == 6.0
    assert [d.message.payload for d in queue.expire(100.0)] == ["b"]


def test_expire_skips_entries_of_popped_messages() -> None:
    queue = OutboundQueue(QueueConfig(ttl=5.0))
    queue.put("a", 0.0)
    queue.put("b", 1.0)
    queue.popleft()
    expired = queue.expire(100.0)
    assert [d.message.payload for d in expired] == ["b"]
    assert queue.dropped_by_cause[DropCause.EXPIRED] == 1


def test_expired_middle_message_is_skipped_by_popleft_and_peek() -> None:
    queue = OutboundQueue()
    queue.put("a", 0.0)
    queue.put("b", 0.0, ttl=1.0)
    queue.put("c", 0.0)
    queue.expire(1.0)
    assert queue.popleft() is not None
    peeked = queue.peek()
    assert peeked is not None
    assert peeked.payload == "c"
    assert len(queue) == 1


def test_expiry_in_the_middle_keeps_memory_bounded() -> None:
    # A head that never leaves while short-lived messages keep expiring behind it: the
    # tombstones must not pile up without bound (white-box check of the internals).
    queue = OutboundQueue(QueueConfig(max_messages=10))
    queue.put("head", 0.0)
    for step in range(5000):
        now = float(step)
        queue.put("x", now, ttl=0.5)
        queue.expire(now + 0.5)
        assert len(queue) == 1
        assert len(queue._order) <= 2 * len(queue) + 17
    peeked = queue.peek()
    assert peeked is not None
    assert peeked.payload == "head"


def test_put_pop_churn_keeps_the_expiry_heap_bounded() -> None:
    queue = OutboundQueue(QueueConfig(ttl=1e6))
    queue.put("keep", 0.0)
    for step in range(5000):
        queue.put("x", float(step))
        queue.popleft()
        assert len(queue._expiry) <= 2 * len(queue) + 17


# ---------------------------------------------------------------------------------------------
# clear
# ---------------------------------------------------------------------------------------------


def test_clear_drops_everything_in_order_with_the_cause() -> None:
    queue = OutboundQueue(QueueConfig(ttl=3.0))
    a, _ = queue.put("a", 0.0)
    b, _ = queue.put("b", 0.0)
    assert queue.clear() == [Dropped(a, DropCause.CLOSED), Dropped(b, DropCause.CLOSED)]
    assert len(queue) == 0
    assert queue.bytes == 0
    assert queue.next_deadline() is None
    assert queue.expire(10.0) == []
    assert queue.dropped_by_cause[DropCause.CLOSED] == 2
    queue.put("c", 1.0)
    assert [d.cause for d in queue.clear(DropCause.EXPIRED)] == [DropCause.EXPIRED]


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

payloads = st.one_of(st.binary(max_size=40), st.text(max_size=20))

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            payloads,
            st.none() | st.floats(0.5, 20.0),
        ),
        st.tuples(st.just("pop")),
        st.tuples(st.just("expire")),
        st.tuples(st.just("tick"), st.floats(0.0, 5.0)),
        st.tuples(st.just("clear")),
    ),
    max_size=120,
)


@dataclass
class Ledger:
    """What happened to every message that the queue ever saw."""

    queued: list[QueuedMessage] = field(default_factory=list)
    popped: list[QueuedMessage] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    rejected: int = 0


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(list(OverflowPolicy)),
    max_messages=st.integers(1, 8),
    max_bytes=st.integers(1, 100),
    ttl=st.none() | st.floats(0.5, 10.0),
    ops=operations,
)
def test_queue_never_exceeds_bounds_and_never_loses_or_duplicates(
    policy: OverflowPolicy,
    max_messages: int,
    max_bytes: int,
    ttl: float | None,
    ops: list[tuple[object, ...]],
) -> None:
    config = QueueConfig(max_messages=max_messages, max_bytes=max_bytes, overflow=policy, ttl=ttl)
    queue = OutboundQueue(config)
    ledger = Ledger()
    now = 0.0
    for op in ops:
        if op[0] == "put":
            payload, message_ttl = op[1], op[2]
            assert isinstance(payload, str | bytes)
            assert message_ttl is None or isinstance(message_ttl, float)
            size_before = len(queue)
            try:
                message, dropped = queue.put(payload, now, ttl=message_ttl)
            except QueueFull:
                assert policy is OverflowPolicy.REJECT
                assert len(queue) == size_before
                ledger.rejected += 1
            else:
                ledger.queued.append(message)
                ledger.dropped.extend(dropped)
                for drop in dropped:
                    if drop.message is message:
                        assert drop is dropped[-1]
                        assert policy is not OverflowPolicy.REJECT
                    else:
                        assert policy is OverflowPolicy.DROP_OLDEST
                        assert drop.cause is DropCause.OVERFLOW
        elif op[0] == "pop":
            popped = queue.popleft()
            if popped is not None:
                ledger.popped.append(popped)
        elif op[0] == "expire":
            expired = queue.expire(now)
            assert all(d.cause is DropCause.EXPIRED for d in expired)
            assert all(d.message.expires_at is not None for d in expired)
            assert all(d.message.expires_at <= now for d in expired)  # type: ignore[operator]
            ledger.dropped.extend(expired)
        elif op[0] == "tick":
            step = op[1]
            assert isinstance(step, float)
            now += step
        else:
            ledger.dropped.extend(queue.clear())

        # Bounds hold after every operation.
        held = list(queue)
        assert len(held) == len(queue) <= max_messages
        assert sum(m.size for m in held) == queue.bytes <= max_bytes
        # FIFO: what is held is in arrival order.
        assert [m.seq for m in held] == sorted(m.seq for m in held)
        deadline = queue.next_deadline()
        expiring = [m.expires_at for m in held if m.expires_at is not None]
        assert deadline == (min(expiring) if expiring else None)

    # Conservation: every accepted message is held, popped or dropped, exactly once.
    held_seqs = [m.seq for m in queue]
    popped_seqs = [m.seq for m in ledger.popped]
    dropped_seqs = [d.message.seq for d in ledger.dropped]
    everything = held_seqs + popped_seqs + dropped_seqs
    assert sorted(everything) == sorted(m.seq for m in ledger.queued)
    assert len(set(everything)) == len(everything)
    # Popped messages leave in arrival order.
    assert popped_seqs == sorted(popped_seqs)
    # The counters tell the same story.
    counts = queue.dropped_by_cause
    assert counts[DropCause.REJECTED] == ledger.rejected
    for cause in (DropCause.OVERFLOW, DropCause.TOO_LARGE, DropCause.EXPIRED, DropCause.CLOSED):
        assert counts[cause] == sum(1 for d in ledger.dropped if d.cause is cause)
    assert queue.enqueued_total == len(ledger.queued) - sum(
        1 for d in ledger.dropped if d.cause is DropCause.TOO_LARGE or _was_newest(d, policy)
    )


def _was_newest(drop: Dropped, policy: OverflowPolicy) -> bool:
    return policy is OverflowPolicy.DROP_NEWEST and drop.cause is DropCause.OVERFLOW


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30), max_size=60),
    max_messages=st.integers(1, 10),
    max_bytes=st.integers(30, 120),
)
def test_drop_oldest_keeps_the_newest_suffix(
    sizes: list[int], max_messages: int, max_bytes: int
) -> None:
    queue = OutboundQueue(
        QueueConfig(
            max_messages=max_messages, max_bytes=max_bytes, overflow=OverflowPolicy.DROP_OLDEST
        )
    )
    for size in sizes:
        queue.put(b"x" * size, 0.0)
    held = [m.seq for m in queue]
    # The held messages are always the longest suffix of the arrivals that fits both bounds.
    expected: list[int] = []
    total = 0
    for seq in range(len(sizes) - 1, -1, -1):
        if len(expected) == max_messages or total + sizes[seq] > max_bytes:
            break
        expected.insert(0, seq)
        total += sizes[seq]
    assert held == expected


def test_examples_in_docs_run() -> None:
    text = (Path(__file__).parents[1] / "docs" / "queue.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import" in b]
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/queue.md", "exec"), {})
