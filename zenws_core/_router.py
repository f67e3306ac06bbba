"""JSON envelopes, typed message routing and request/response matching.

A zenws application message is a JSON object ``{"type": str, "data": any, "id"?: str}``
sent in a WebSocket text frame (RFC 6455 section 5.6).  This module is pure: it decodes
envelopes without ever raising on peer input, tells an adapter *which* handlers should see a
message (calling them is the adapter's job), and tracks requests awaiting a reply under an
injected clock (``now`` is always an argument, in monotonic seconds).
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

__all__ = [
    "Envelope",
    "MessageRouter",
    "PendingRequest",
    "RawReason",
    "RequestStats",
    "RequestTracker",
    "Route",
    "decode_envelope",
    "encode_envelope",
]

H = TypeVar("H")

RawReason: TypeAlias = str
"""Why a message is not a valid envelope; ``decode_envelope`` returns one instead of raising."""

_ROUTE_CACHE_LIMIT = 1024

#: A binary message can only be an envelope if it opens like a JSON object; checking this
#: first keeps large binary payloads from being decoded as UTF-8 just to be refused.
_OPENS_LIKE_OBJECT = re.compile(rb"[ \t\r\n]*\{")
"""Most distinct message types whose handler lists are cached (peers choose the types)."""


# --------------------------------------------------------------------------------------------
# Envelopes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """One application message: its ``type``, its JSON ``data`` and an optional request ``id``.

    A reply carries the same ``id`` as the request it answers; its ``type`` is free.
    Constructing an envelope with a non-``str`` type or id is API misuse and raises
    ``TypeError``.  ``data`` is not checked here; ``encode_envelope`` rejects what JSON cannot
    carry.
    """

    type: str
    data: Any = None
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.type, str):
            raise TypeError(f"envelope type must be str, not {type(self.type).__name__}")
        if self.id is not None and not isinstance(self.id, str):
            raise TypeError(f"envelope id must be str or None, not {type(self.id).__name__}")

    def reply(self, type: str, data: Any = None) -> Envelope:
        """Build the reply to this envelope: same ``id``, the given ``type`` and ``data``.

        Raises ``ValueError`` if this envelope has no ``id`` (it is not a request).
        """
        if self.id is None:
            raise ValueError("cannot reply to an envelope without an id")
        return Envelope(type, data, self.id)


def encode_envelope(envelope: Envelope) -> str:
    """Encode an envelope as compact JSON text, ready for a text frame (RFC 6455 section 5.6).

    ``id`` is omitted when ``None``.  Non-ASCII characters are written as UTF-8 unless the text
    holds lone surrogates, which UTF-8 cannot carry; those are escaped so the result is always
    a valid text-frame payload.  Data JSON cannot represent (objects of other classes,
    NaN, infinities, circular structures) is API misuse: ``TypeError`` or ``ValueError``.
    """
    obj: dict[str, Any] = {"type": envelope.type, "data": envelope.data}
    if envelope.id is not None:
        obj["id"] = envelope.id
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text


def _reject_constant(name: str) -> Any:
    """``json.loads`` hook: ``NaN`` and ``Infinity`` are not JSON (RFC 8259 section 6)."""
    raise ValueError(f"non-standard JSON constant {name}")


def decode_envelope(message: str | bytes) -> Envelope | RawReason:
    """Decode a received message into an ``Envelope``, or return why it is not one.

    Never raises on any input: invalid UTF-8, invalid or non-standard JSON, nesting too deep
    for the parser, JSON that is not an object, a missing or non-string ``type`` and a
    non-string ``id`` each yield a short reason string.  A missing ``data`` decodes as ``None``;
    other members are ignored so peers can extend the envelope.
    """
    if isinstance(message, bytes | bytearray | memoryview):
        try:
            text = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            return "not UTF-8"
    elif isinstance(message, str):
        text = message
    else:
        return f"unsupported message type {type(message).__name__}"
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, oversized integers
        return f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return f"JSON {_json_kind(obj)} is not an object"
    if "type" not in obj:
        return "missing type"
    kind = obj["type"]
    if not isinstance(kind, str):
        return f"type is a JSON {_json_kind(kind)}, not a string"
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        return f"id is a JSON {_json_kind(request_id)}, not a string"
    return Envelope(kind, obj.get("data"), request_id)


def _json_kind(value: object) -> str:
    """Name a decoded JSON value the way JSON does (for reason strings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route(Generic[H]):
    """Where one received message goes.

    For a valid envelope, ``envelope`` is set, ``raw_reason`` is ``None`` and ``handlers`` are
    the matching handlers (or the default handlers if none matched).  For a malformed message,
    ``envelope`` is ``None``, ``raw_reason`` says why and ``handlers`` are the raw handlers.
    """

    envelope: Envelope | None
    handlers: tuple[H, ...]
    raw_reason: RawReason | None = None

    @property
    def is_raw(self) -> bool:
        """True when the message was not a valid envelope."""
        return self.envelope is None


def _parse_pattern(pattern: str) -> tuple[bool, str]:
    """Split a pattern into (is_prefix, key); ``"task.*"`` -> (True, ``"task."``)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be str, not {type(pattern).__name__}")
    if not pattern:
        raise ValueError("pattern must not be empty")
    if pattern == "*":
        return True, ""
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        if "*" in prefix or prefix == ".":
            raise ValueError(f"invalid pattern {pattern!r}: '*' only as the last segment")
        return True, prefix
    if "*" in pattern:
        raise ValueError(f"invalid pattern {pattern!r}: use 'prefix.*' or '*'")
    return False, pattern


#: The table of a router or tracker that has none yet: shared by all of them, never written
#: (the owner puts a dict of its own in its place first).  Most clients route nothing, and
#: five empty containers cost ~350 bytes per connection.
_NO_TABLE: dict[str, Any] = {}


def _add(table: dict[str, list[H]], key: str, handler: H) -> None:
    handlers = table.setdefault(key, [])
    if handler not in handlers:
        handlers.append(handler)


def _remove(table: dict[str, list[H]], key: str, handler: H) -> bool:
    handlers = table.get(key)
    if handlers is None or handler not in handlers:
        return False
    handlers.remove(handler)
    if not handlers:
        del table[key]
    return True


class MessageRouter(Generic[H]):
    """A routing table from envelope types to handlers of any type ``H``.

    Patterns: an exact type (``"task.update"``), a prefix (``"task.*"`` matches ``task.x`` and
    ``task.x.y`` but not ``task``) or ``"*"`` (every type).  A message goes to its exact
    handlers first, then to prefix handlers from the longest prefix to ``"*"``; the default
    handlers get it only if nothing matched, and malformed messages go to the raw handlers.
    Within one pattern handlers keep registration order; a handler appears at most once per
    route (at its first position) and registering it twice for one pattern is a no-op.
    """

    __slots__ = ("_cache", "_default", "_exact", "_prefix", "_raw")

    def __init__(self) -> None:
        self._exact: dict[str, list[H]] = _NO_TABLE
        self._prefix: dict[str, list[H]] = _NO_TABLE
        self._default: tuple[H, ...] = ()
        self._raw: tuple[H, ...] = ()
        self._cache: dict[str, tuple[H, ...]] = _NO_TABLE

    def on(self, pattern: str, handler: H) -> None:
        """Send messages whose type matches ``pattern`` to ``handler``.

        A pattern that is empty or has ``*`` anywhere but a final ``.*`` segment (or alone)
        is API misuse and raises ``ValueError``.
        """
        is_prefix, key = _parse_pattern(pattern)
        if is_prefix and self._prefix is _NO_TABLE:
            self._prefix = {}
        elif not is_prefix and self._exact is _NO_TABLE:
            self._exact = {}
        _add(self._prefix if is_prefix else self._exact, key, handler)
        self._cache.clear()

    def off(self, pattern: str, handler: H) -> bool:
        """Stop sending ``pattern`` to ``handler``; returns whether it was registered."""
        is_prefix, key = _parse_pattern(pattern)
        removed = _remove(self._prefix if is_prefix else self._exact, key, handler)
        if removed:
            self._cache.clear()
        return removed

    def on_default(self, handler: H) -> None:
        """Send valid envelopes that no pattern matched to ``handler``."""
        if handler not in self._default:
            self._default += (handler,)
            self._cache.clear()

    def off_default(self, handler: H) -> bool:
        """Remove a default handler; returns whether it was registered."""
        if handler not in self._default:
            return False
        self._default = tuple(h for h in self._default if h != handler)
        self._cache.clear()
        return True

    def on_raw(self, handler: H) -> None:
        """Send messages that are not valid envelopes (non-JSON, malformed) to ``handler``."""
        if handler not in self._raw:
            self._raw += (handler,)

    def off_raw(self, handler: H) -> bool:
        """Remove a raw handler; returns whether it was registered."""
        if handler not in self._raw:
            return False
        self._raw = tuple(h for h in self._raw if h != handler)
        return True

    def handlers_for(self, type: str) -> tuple[H, ...]:
        """The handlers a message of this ``type`` goes to, in call order (may be empty)."""
        cached = self._cache.get(type)
        if cached is not None:
            return cached
        found: list[H] = []
        exact = self._exact.get(type)
        if exact is not None:
            found.extend(exact)
        if self._prefix:
            end = len(type)
            while True:
                end = type.rfind(".", 0, end)
                if end < 0:
                    break
                self._extend_unique(found, self._prefix.get(type[: end + 1]))
            self._extend_unique(found, self._prefix.get(""))
        if not found:
            found.extend(self._default)
        result = tuple(found)
        if self._cache is _NO_TABLE or len(self._cache) >= _ROUTE_CACHE_LIMIT:
            self._cache = {}
        self._cache[type] = result
        return result

    @staticmethod
    def _extend_unique(found: list[H], handlers: Iterable[H] | None) -> None:
        if handlers is None:
            return
        for handler in handlers:
            if handler not in found:
                found.append(handler)

    @property
    def has_handlers(self) -> bool:
        """Whether any handler (exact, prefix, default or raw) is registered."""
        return bool(self._exact or self._prefix or self._default or self._raw)

    def route_envelope(self, envelope: Envelope) -> Route[H]:
        """Route an already decoded envelope (e.g. one that matched no pending request)."""
        return Route(envelope, self.handlers_for(envelope.type))

    def route(self, message: str | bytes) -> Route[H]:
        """Decode ``message`` and say which handlers get it; never raises on peer input."""
        if isinstance(message, bytes) and not _OPENS_LIKE_OBJECT.match(message):
            return Route(None, self._raw, "binary message that is not a JSON object")
        decoded = decode_envelope(message)
        if isinstance(decoded, Envelope):
            return self.route_envelope(decoded)
        return Route(None, self._raw, decoded)

    @property
    def patterns(self) -> tuple[str, ...]:
        """Registered patterns: exact types, then prefixes (longest first), then ``"*"``."""
        prefixes = sorted(self._prefix, key=len, reverse=True)
        return (*self._exact, *(p + "*" for p in prefixes))


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request sent and awaiting its reply (an envelope carrying the same ``id``).

    ``sent_at`` and ``deadline`` are in the caller's monotonic seconds.  ``data`` is kept so
    the request can be encoded with ``envelope()``; it takes no part in equality or hashing.
    """

    id: str
    type: str
    deadline: float
    sent_at: float
    data: Any = field(default=None, compare=False)

    def envelope(self) -> Envelope:
        """The envelope to send for this request."""
        return Envelope(self.type, self.data, self.id)


@dataclass(frozen=True, slots=True)
class RequestStats:
    """Counters of a ``RequestTracker``: every request ends exactly one way."""

    sent: int = 0
    replied: int = 0
    timed_out: int = 0
    cancelled: int = 0
    pending: int = 0


class _Counter:
    """Default id factory: ``prefix`` followed by 1, 2, 3, ... (deterministic)."""

    __slots__ = ("_next", "_prefix")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next}"


class RequestTracker:
    """Requests awaiting replies, matched by ``id`` and expired by deadline.

    Pure: ``now`` is passed in, ids come from an injectable factory (by default
    ``id_prefix`` + a sequence number, so runs are reproducible).  A reply is any envelope
    whose ``id`` names a pending request; once matched, expired or cancelled a request is
    forgotten, so a late reply matches nothing and can be routed as an ordinary message.
    """

    __slots__ = (
        "_cancelled",
        "_heap",
        "_id_factory",
        "_pending",
        "_replied",
        "_sent",
        "_seq",
        "_timed_out",
    )

    def __init__(
        self, *, id_factory: Callable[[], str] | None = None, id_prefix: str = "req-"
    ) -> None:
        self._id_factory: Callable[[], str] = (
            id_factory if id_factory is not None else _Counter(id_prefix)
        )
        self._pending: dict[str, PendingRequest] = _NO_TABLE  # a dict of its own when used
        # (deadline, sequence, id); entries whose id is gone are skipped lazily.
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._sent = 0
        self._replied = 0
        self._timed_out = 0
        self._cancelled = 0

    def new_request(self, type: str, data: Any, timeout: float, *, now: float) -> PendingRequest:
        """Register a request expiring ``timeout`` seconds after ``now``; send its envelope.

        API misuse raises: a non-positive or non-finite ``timeout`` (``ValueError``), an id
        factory returning a non-``str`` (``TypeError``) or an id already pending
        (``ValueError``).
        """
        if not isinstance(type, str):
            raise TypeError(f"request type must be str, not {_type_name(type)}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive finite number of seconds: {timeout!r}")
        request_id = self._id_factory()
        if not isinstance(request_id, str):
            raise TypeError(f"id factory returned {_type_name(request_id)}, not str")
        if request_id in self._pending:
            raise ValueError(f"id factory returned an id already pending: {request_id!r}")
        request = PendingRequest(request_id, type, now + timeout, now, data)
        if self._pending is _NO_TABLE:
            self._pending = {}
        self._pending[request_id] = request
        self._seq += 1
        heapq.heappush(self._heap, (request.deadline, self._seq, request_id))
        self._sent += 1
        return request

    def match(self, envelope: Envelope) -> PendingRequest | None:
        """Return and forget the request ``envelope`` replies to, or ``None`` if none."""
        if envelope.id is None:
            return None
        request = self._pending.pop(envelope.id, None)
        if request is not None:
            self._replied += 1
            self._drop_stale()
        return request

    def get(self, request_id: str) -> PendingRequest | None:
        """The pending request with this id, if any (it stays pending)."""
        return self._pending.get(request_id)

    def cancel(self, request_id: str) -> PendingRequest | None:
        """Forget one pending request (its caller gave up); returns it, or ``None``."""
        request = self._pending.pop(request_id, None)
        if request is not None:
            self._cancelled += 1
            self._drop_stale()
        return request

    def expire(self, now: float) -> list[PendingRequest]:
        """Forget and return the requests whose deadline is at or before ``now``, oldest first."""
        expired: list[PendingRequest] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, request_id = heapq.heappop(heap)
            request = self._pending.pop(request_id, None)
            if request is not None:
                expired.append(request)
        self._timed_out += len(expired)
        self._drop_stale()
        return expired

    def next_deadline(self) -> float | None:
        """The earliest deadline among pending requests; call ``expire(now)`` at or after it."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def cancel_all(self) -> list[PendingRequest]:
        """Forget every pending request (e.g. the connection is gone), oldest first."""
        cancelled = list(self._pending.values())
        self._pending.clear()
        self._heap.clear()
        self._cancelled += len(cancelled)
        return cancelled

    def stats(self) -> RequestStats:
        """A snapshot of the counters."""
        return RequestStats(
            sent=self._sent,
            replied=self._replied,
            timed_out=self._timed_out,
            cancelled=self._cancelled,
            pending=len(self._pending),
        )

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._pending

    def _drop_stale(self) -> None:
        """Pop heap heads whose request is no longer pending; bound the heap's garbage."""
        heap = self._heap
        pending = self._pending
        while heap and heap[0][2] not in pending:
            heapq.heappop(heap)
        if len(heap) > 2 * len(pending) + 64:
            self._heap = [entry for entry in heap if entry[2] in pending]
            heapq.heapify(self._heap)


def _type_name(value: object) -> str:
    """The class name of ``value`` (parameters named ``type`` shadow the builtin)."""
    return value.__class__.__name__
