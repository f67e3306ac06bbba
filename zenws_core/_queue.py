"""Bounded outbound queue: messages the application sent while the client was not open.

The queue is bounded by message count and by payload bytes; what happens when a new
message does not fit is the ``OverflowPolicy``. Messages may carry a time to live.
Every message that leaves the queue other than by ``popleft`` comes back to the caller
as a ``Dropped`` with its ``DropCause`` and is counted, so nothing is lost silently.
Delivery is at most once: a message handed out by ``popleft`` is the caller's.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Payload = str | bytes
"""A text (``str``) or binary (``bytes``) message."""


class OverflowPolicy(enum.Enum):
    """What ``OutboundQueue.put`` does when a new message would exceed a bound."""

    #: Refuse the new message: ``put`` raises ``QueueFull`` and enqueues nothing.
    REJECT = "reject"
    #: Evict the oldest messages until the new one fits.
    DROP_OLDEST = "drop-oldest"
    #: Drop the new message itself (returned as ``Dropped``), keep the queue as it is.
    DROP_NEWEST = "drop-newest"


def _check_limit(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")


def _check_ttl(ttl: float | None) -> None:
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be a number or None, got {ttl!r}")
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be a finite number > 0, got {ttl!r}")


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Bounds and policies of the outbound queue."""

    #: Most messages held at once (1000, as in the original zenws design).
    max_messages: int = 1000
    #: Most payload bytes held at once (text counts its UTF-8 length).
    max_bytes: int = 16 * 1024 * 1024
    #: What to do with a message that does not fit.
    overflow: OverflowPolicy = OverflowPolicy.REJECT
    #: Default time to live of a message in seconds; ``None`` keeps messages until sent.
    ttl: float | None = None

    def __post_init__(self) -> None:
        _check_limit("max_messages", self.max_messages)
        _check_limit("max_bytes", self.max_bytes)
        if not isinstance(self.overflow, OverflowPolicy):
            raise TypeError(f"overflow must be an OverflowPolicy, got {self.overflow!r}")
        _check_ttl(self.ttl)


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message waiting to be sent, as the queue recorded it."""

    #: Order of arrival, assigned by the queue; strictly increasing.
    seq: int
    payload: str | bytes
    #: Bytes on the wire: ``len`` for binary, UTF-8 length for text.
    size: int
    enqueued_at: float
    #: Monotonic time after which the message is stale; ``None`` never expires.
    expires_at: float | None
    #: Caller's marker (the client puts a request id here).
    tag: object | None = None

    @property
    def is_text(self) -> bool:
        return isinstance(self.payload, str)


class DropCause(enum.Enum):
    """Why a message left the queue without being sent."""

    #: Evicted by ``DROP_OLDEST``, or refused by ``DROP_NEWEST``, to respect a bound.
    OVERFLOW = "overflow"
    #: Larger than ``max_bytes`` on its own; it could never fit (``DROP_*`` policies).
    TOO_LARGE = "too-large"
    #: Its time to live ran out.
    EXPIRED = "expired"
    #: The queue was cleared because the client closed.
    CLOSED = "closed"
    #: Refused by ``put`` under ``REJECT`` (counted only; ``QueueFull`` carries the news).
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message that will never be sent, and why."""

    message: QueuedMessage
    cause: DropCause


class QueueFull(Exception):
    """``put`` refused a message under ``OverflowPolicy.REJECT``; nothing was enqueued.

    ``limit`` names the bound that was hit (``"messages"`` or ``"bytes"``); ``reason`` says
    it in words, e.g. ``"queue full: 1000 messages"``.
    """

    def __init__(self, limit: Literal["messages", "bytes"], reason: str, size: int) -> None:
        super().__init__(reason)
        self.limit: Literal["messages", "bytes"] = limit
        self.reason = reason
        #: Size in bytes of the refused payload.
        self.size = size


def _payload_size(payload: str | bytes) -> int:
    if isinstance(payload, str):
        return len(payload.encode("utf-8", "surrogatepass"))
    if isinstance(payload, bytes):
        return len(payload)
    raise TypeError(f"payload must be str or bytes, got {type(payload).__name__}")


#: The order of an empty queue: shared by every queue, never mutated (see ``_order``).
_NO_ORDER: deque[int] = deque(maxlen=0)


class OutboundQueue:
    """FIFO of outbound messages bounded by count and bytes, with optional expiry.

    Amortised O(1) ``put``/``popleft`` (O(log n) with expiring messages). Expiry only
    happens in ``expire(now)``: call it before ``put`` and before flushing so stale messages
    neither take room nor get sent.
    """

    __slots__ = (
        "_bytes",
        "_config",
        "_drops",
        "_enqueued_total",
        "_expiry",
        "_items",
        "_next_seq",
        "_order",
    )

    def __init__(self, config: QueueConfig | None = None) -> None:
        self._config = config if config is not None else QueueConfig()
        # Arrival order of seqs; seqs removed out of order (expiry) stay as tombstones
        # until they reach the front or a compaction drops them.  While nothing waits this
        # is the shared, never-mutated ``_NO_ORDER`` (an idle client's queue is empty, and
        # an empty deque costs 600 bytes).
        self._order: deque[int] = _NO_ORDER
        self._items: dict[int, QueuedMessage] = {}
        # Min-heap of (expires_at, seq); entries of messages already gone are skipped lazily.
        self._expiry: list[tuple[float, int]] = []
        self._bytes = 0
        self._next_seq = 0
        self._enqueued_total = 0
        # Counters per cause, made by the first drop or look (most queues never drop).
        self._drops: dict[DropCause, int] | None = None

    # -- observation ------------------------------------------------------------------

    @property
    def config(self) -> QueueConfig:
        return self._config

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Payload bytes currently held."""
        return self._bytes

    @property
    def enqueued_total(self) -> int:
        """Messages ever accepted by ``put`` (dropped-newest and refused ones excluded)."""
        return self._enqueued_total

    @property
    def dropped_by_cause(self) -> Mapping[DropCause, int]:
        """Cumulative count of messages dropped or refused, per cause (read-only view)."""
        return MappingProxyType(self._counters())

    @property
    def dropped_total(self) -> int:
        return sum(self._drops.values()) if self._drops is not None else 0

    def peek(self) -> QueuedMessage | None:
        """The oldest message, left in place; ``None`` when empty."""
        self._skip_tombstones()
        return self._items[self._order[0]] if self._order else None

    def next_deadline(self) -> float | None:
        """Earliest ``expires_at`` of the messages held; ``None`` if none expires."""
        expiry = self._expiry
        while expiry and expiry[0][1] not in self._items:
            heapq.heappop(expiry)
        return expiry[0][0] if expiry else None

    def __iter__(self) -> Iterator[QueuedMessage]:
        """The messages held, oldest first (do not mutate the queue while iterating)."""
        return (self._items[seq] for seq in self._order if seq in self._items)

    # -- mutation ---------------------------------------------------------------------

    def put(
        self,
        payload: Payload,
        now: float,
        *,
        ttl: float | None = None,
        tag: object | None = None,
    ) -> tuple[QueuedMessage, list[Dropped]]:
        """Enqueue ``payload``; return the message and whatever overflow dropped.

        ``ttl`` overrides ``QueueConfig.ttl`` for this message. Under ``DROP_OLDEST`` the
        list holds the evicted messages; under ``DROP_NEWEST`` (or for a payload larger
        than ``max_bytes``) it holds the new message itself, which was *not* enqueued.
        Under ``REJECT`` a message that does not fit raises ``QueueFull`` instead.
        """
        size = _payload_size(payload)
        _check_ttl(ttl)
        config = self._config
        lifetime = ttl if ttl is not None else config.ttl
        expires_at = now + lifetime if lifetime is not None else None
        policy = config.overflow

        if size > config.max_bytes:
            reason = f"message of {size} bytes exceeds max_bytes {config.max_bytes}"
            if policy is OverflowPolicy.REJECT:
                self._counters()[DropCause.REJECTED] += 1
                raise QueueFull("bytes", reason, size)
            message = self._make(payload, size, now, expires_at, tag)
            return message, [self._count(message, DropCause.TOO_LARGE)]

        fits = self._fits(size)
        dropped: list[Dropped] = []
        if not fits:
            if policy is OverflowPolicy.REJECT:
                self._counters()[DropCause.REJECTED] += 1
                if len(self._items) >= config.max_messages:
                    raise QueueFull("messages", f"queue full: {config.max_messages} messages", size)
                raise QueueFull("bytes", f"queue full: {config.max_bytes} bytes", size)
            if policy is OverflowPolicy.DROP_NEWEST:
                message = self._make(payload, size, now, expires_at, tag)
                return message, [self._count(message, DropCause.OVERFLOW)]
            while not self._fits(size):
                oldest = self._pop_oldest()
                assert oldest is not None  # size <= max_bytes, so an empty queue fits
                dropped.append(self._count(oldest, DropCause.OVERFLOW))

        message = self._make(payload, size, now, expires_at, tag)
        if self._order is _NO_ORDER:
            self._order = deque()
        self._order.append(message.seq)
        self._items[message.seq] = message
        self._bytes += size
        self._enqueued_total += 1
        if expires_at is not None:
            heapq.heappush(self._expiry, (expires_at, message.seq))
        return message, dropped

    def popleft(self) -> QueuedMessage | None:
        """Remove and return the oldest message (now the caller's to send); ``None`` if empty."""
        message = self._pop_oldest()
        if not self._items:
            self._expiry.clear()
            self._order = _NO_ORDER  # only tombstones can be left in it
        else:
            self._compact()
        return message

    def expire(self, now: float) -> list[Dropped]:
        """Drop every message whose ``expires_at`` is at or before ``now``, earliest first."""
        dropped: list[Dropped] = []
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, seq = heapq.heappop(expiry)
            message = self._items.pop(seq, None)
            if message is None:
                continue
            self._bytes -= message.size
            dropped.append(self._count(message, DropCause.EXPIRED))
        if dropped:
            self._compact()
        return dropped

    def clear(self, cause: DropCause = DropCause.CLOSED) -> list[Dropped]:
        """Drop everything, oldest first, counting each message under ``cause``."""
        dropped = [self._count(message, cause) for message in self]
        self._order = _NO_ORDER
        self._items.clear()
        self._expiry.clear()
        self._bytes = 0
        return dropped

    # -- internals --------------------------------------------------------------------

    def _fits(self, size: int) -> bool:
        config = self._config
        return len(self._items) < config.max_messages and self._bytes + size <= config.max_bytes

    def bypass(self, payload: Payload, now: float, *, tag: object | None = None) -> QueuedMessage:
        """Number a message that goes straight out without waiting in the queue.

        Its ``seq`` shares the queue's sequence, so queued and direct messages are ordered
        on one scale. Nothing is stored or counted as enqueued.
        """
        return self._make(payload, _payload_size(payload), now, None, tag)

    def take_seq(self) -> int:
        """The next sequence number, for a message sent straight out with no record at all.

        As ``bypass`` without building the ``QueuedMessage`` (the client's per-message fast
        path; it builds one later only if it has to report the message).
        """
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    def _make(
        self, payload: Payload, size: int, now: float, expires_at: float | None, tag: object
    ) -> QueuedMessage:
        seq = self._next_seq
        self._next_seq += 1
        return QueuedMessage(seq, payload, size, now, expires_at, tag)

    def _count(self, message: QueuedMessage, cause: DropCause) -> Dropped:
        self._counters()[cause] += 1
        return Dropped(message, cause)

    def _counters(self) -> dict[DropCause, int]:
        drops = self._drops
        if drops is None:
            drops = self._drops = dict.fromkeys(DropCause, 0)
        return drops

    def _skip_tombstones(self) -> None:
        order = self._order
        while order and order[0] not in self._items:
            order.popleft()

    def _pop_oldest(self) -> QueuedMessage | None:
        self._skip_tombstones()
        if not self._order:
            return None
        message = self._items.pop(self._order.popleft())
        self._bytes -= message.size
        return message

    def _compact(self) -> None:
        # Keep tombstones and stale heap entries within a constant factor of the live
        # messages, so memory stays bounded by the limits whatever the expiry pattern.
        live = len(self._items)
        if len(self._order) > 2 * live + 16:
            self._order = deque(seq for seq in self._order if seq in self._items)
        if len(self._expiry) > 2 * live + 16:
            self._expiry = [entry for entry in self._expiry if entry[1] in self._items]
            heapq.heapify(self._expiry)
