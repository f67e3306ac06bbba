"""Reconnect timing and retry decisions for the resilient client.

Two independent pieces, both pure:

* ``ReconnectPolicy`` answers *when* to try again: capped exponential backoff with
  full jitter (or delays from an injected iterator), bounded by ``max_attempts``.
* ``default_classifier`` answers *whether* to try again: it maps a ``Failure``
  (refused connect, HTTP status, close code, dead heartbeat, ...) to a ``Decision``.

Neither reads a clock nor owns a source of randomness: ``now`` is an argument and
the ``random.Random`` is injected (see ``ReconnectPolicy``).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

JitterMode = Literal["full", "none"]
"""``"full"``: uniform in ``[0, cap]``; ``"none"``: exactly the cap."""


def _check_number(name: str, value: float, *, minimum: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ReconnectConfig:
    """How a client reconnects after it lost (or never got) a connection.

    The delay cap of attempt ``n`` (1-based) is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``; with ``jitter="full"``
    the delay is drawn uniformly from ``[0, cap]`` so that many clients cut off at once
    do not reconnect in lockstep.
    """

    #: Reconnect at all; when false the policy never offers a delay.
    enabled: bool = True
    #: Cap of the first attempt, in seconds.
    initial_delay: float = 1.0
    #: Growth factor of the cap from one attempt to the next (>= 1).
    multiplier: float = 2.0
    #: Upper bound of every cap, in seconds.
    max_delay: float = 30.0
    #: Consecutive attempts before giving up; ``None`` retries forever.
    max_attempts: int | None = None
    #: A connection open at least this long counts as stable and resets the attempt count.
    stable_after: float = 5.0
    #: ``"full"`` jitter (the default) or ``"none"``.
    jitter: JitterMode = "full"

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError(f"enabled must be a bool, got {self.enabled!r}")
        _check_number("initial_delay", self.initial_delay)
        _check_number("multiplier", self.multiplier, minimum=1.0)
        _check_number("max_delay", self.max_delay)
        _check_number("stable_after", self.stable_after)
        if self.max_attempts is not None:
            if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
                raise TypeError(f"max_attempts must be an int or None, got {self.max_attempts!r}")
            if self.max_attempts < 0:
                raise ValueError(f"max_attempts must be >= 0, got {self.max_attempts!r}")
        if self.jitter not in ("full", "none"):
            raise ValueError(f'jitter must be "full" or "none", got {self.jitter!r}')

    def delay_cap(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` (1-based) may wait."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt!r}")
        try:
            grown = self.initial_delay * self.multiplier ** (attempt - 1)
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, grown)


_SHARED_RNG: list[random.Random] = []


def _shared_rng() -> random.Random:
    """The process-wide default jitter source, created on first use."""
    if not _SHARED_RNG:
        _SHARED_RNG.append(random.Random())
    return _SHARED_RNG[0]


class ReconnectPolicy:
    """Backoff state of one reconnecting client: which attempt we are at, and its delay.

    Delays come either from ``rng`` (full jitter) or from an injected ``delays``
    iterable (tests, or a fixed schedule; an exhausted iterable means give up).
    Without either, one ``random.Random()`` shared by every such policy in the process
    (seeded by the standard library from the operating system) is used: acceptable as a
    default, never in tests.  Shared because its 2.5 KB of state per client would be most
    of an idle client's memory.
    """

    __slots__ = ("_attempt", "_config", "_delays", "_opened_at", "_rng")

    def __init__(
        self,
        config: ReconnectConfig | None = None,
        *,
        rng: random.Random | None = None,
        delays: Iterable[float] | None = None,
    ) -> None:
        if rng is not None and delays is not None:
            raise ValueError("pass rng or delays, not both")
        self._config = config if config is not None else ReconnectConfig()
        self._delays: Iterator[float] | None = iter(delays) if delays is not None else None
        self._rng: random.Random | None = (
            rng if rng is not None or delays is not None else _shared_rng()
        )
        self._attempt = 0
        self._opened_at: float | None = None

    @property
    def config(self) -> ReconnectConfig:
        return self._config

    @property
    def attempt(self) -> int:
        """Attempts handed out since the last reset (0 before the first ``next_delay``)."""
        return self._attempt

    @property
    def exhausted(self) -> bool:
        """True once ``max_attempts`` attempts were handed out (or reconnect is disabled)."""
        if not self._config.enabled:
            return True
        limit = self._config.max_attempts
        return limit is not None and self._attempt >= limit

    def next_delay(self, floor: float = 0.0) -> float | None:
        """Advance to the next attempt and return how long to wait before it.

        Returns ``None`` (without advancing) when reconnecting is disabled, when
        ``max_attempts`` attempts were already handed out, or when the injected delay
        iterable is exhausted. ``floor`` raises the delay, e.g. to honour a server's
        ``Retry-After`` (RFC 9110 section 10.2.3); it is not capped by ``max_delay``.
        """
        _check_number("floor", floor)
        if self.exhausted:
            return None
        attempt = self._attempt + 1
        if self._delays is not None:
            try:
                delay = next(self._delays)
            except StopIteration:
                return None
            _check_number("injected delay", delay)
        else:
            cap = self._config.delay_cap(attempt)
            if self._config.jitter == "full":
                assert self._rng is not None
                delay = self._rng.uniform(0.0, cap)
            else:
                delay = cap
        self._attempt = attempt
        return max(float(delay), float(floor))

    def connection_opened(self, now: float) -> None:
        """The connection (handshake included) is open; stability is measured from ``now``."""
        self._opened_at = now

    def connection_closed(self, now: float) -> bool:
        """The connection ended; reset the attempt count if it had been stable.

        A connection that stayed open at least ``stable_after`` seconds resets the count,
        so one flaky reconnect after hours of service starts again from ``initial_delay``
        while a server that accepts and drops at once keeps backing off. Returns whether
        the count was reset.
        """
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and now - opened_at >= self._config.stable_after:
            self._attempt = 0
            return True
        return False

    def reset(self) -> None:
        """Forget all attempts (e.g. the application asked for an immediate reconnect)."""
        self._attempt = 0
        self._opened_at = None


class FailureKind(enum.Enum):
    """What went wrong with a connection or a connection attempt."""

    #: TCP connect refused (nothing listens).
    CONNECT_REFUSED = "connect-refused"
    #: TCP connect (or DNS) did not complete in time.
    CONNECT_TIMEOUT = "connect-timeout"
    #: Any other connect error (DNS failure, unreachable network, reset).
    CONNECT_ERROR = "connect-error"
    #: TLS certificate or verification failure (bad chain, hostname mismatch).
    TLS_ERROR = "tls-error"
    #: The server closed the transport during the opening handshake.
    HANDSHAKE_EOF = "handshake-eof"
    #: The opening handshake did not complete in time.
    HANDSHAKE_TIMEOUT = "handshake-timeout"
    #: The server's handshake response broke RFC 6455 section 4.1 (bad accept key, ...).
    HANDSHAKE_ERROR = "handshake-error"
    #: The server answered the upgrade with a non-101 HTTP status.
    HTTP_STATUS = "http-status"
    #: An open connection ended with a close code (RFC 6455 section 7.4).
    CLOSED = "closed"
    #: No pong nor data from the peer within the heartbeat timeout.
    HEARTBEAT_TIMEOUT = "heartbeat-timeout"
    #: The transport of an open connection failed without a close frame.
    TRANSPORT_LOST = "transport-lost"
    #: The application closed the client.
    LOCAL_CLOSE = "local-close"


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed connection attempt or one lost connection, as the classifier sees it."""

    kind: FailureKind
    #: HTTP status for ``HTTP_STATUS``.
    status: int | None = None
    #: Close code for ``CLOSED`` (``None`` when the close frame had no code, i.e. 1005).
    close_code: int | None = None
    #: Seconds from the server's ``Retry-After`` header (see ``parse_retry_after``).
    retry_after: float | None = None
    #: Human-readable description (the error text, the close reason, ...).
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FailureKind):
            raise TypeError(f"kind must be a FailureKind, got {self.kind!r}")
        if self.retry_after is not None:
            _check_number("retry_after", self.retry_after)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to reconnect after a ``Failure``, why, and the least delay to wait."""

    retry: bool
    reason: str
    #: Lower bound of the next delay in seconds (``ReconnectPolicy.next_delay(floor)``).
    floor: float = 0.0


Classifier = Callable[[Failure], Decision]
"""Maps a failure to a decision; replace ``default_classifier`` to change the table."""

#: Close codes after which the default classifier reconnects (RFC 6455 section 7.4.1, IANA).
RETRY_CLOSE_CODES: dict[int, str] = {
    1000: "the server closed normally; a long-lived client reconnects",
    1001: "the server is going away (restart, redeploy)",
    1005: "the server closed without a status code",
    1006: "the connection closed abnormally",
    1011: "the server hit an internal error",
    1012: "the server is restarting",
    1013: "the server asked to try again later",
    1014: "a gateway got a bad response from upstream",
}

#: Close codes after which the default classifier gives up: the same client would fail again.
GIVE_UP_CLOSE_CODES: dict[int, str] = {
    1002: "protocol error",
    1003: "the server cannot accept this data type",
    1007: "invalid payload data (e.g. bad UTF-8)",
    1008: "policy violation",
    1009: "message too big for the peer's limits",
    1010: "a required extension was not negotiated",
    1015: "TLS handshake failure",
}


def _classify_status(failure: Failure) -> Decision:
    status = failure.status
    floor = failure.retry_after or 0.0
    if status is None:
        return Decision(False, "HTTP rejection without a status")
    if status == 429:
        return Decision(True, "HTTP 429 Too Many Requests", floor)
    if 500 <= status <= 599:
        return Decision(True, f"HTTP {status}: server-side error", floor)
    if 400 <= status <= 499:
        return Decision(False, f"HTTP {status}: the request itself is refused")
    if 300 <= status <= 399:
        return Decision(False, f"HTTP {status}: redirect not followed")
    return Decision(False, f"HTTP {status} is not a WebSocket upgrade")


def _classify_close(failure: Failure) -> Decision:
    code = 1005 if failure.close_code is None else failure.close_code
    if code in RETRY_CLOSE_CODES:
        return Decision(True, f"close {code}: {RETRY_CLOSE_CODES[code]}")
    if code in GIVE_UP_CLOSE_CODES:
        return Decision(False, f"close {code}: {GIVE_UP_CLOSE_CODES[code]}")
    if 3000 <= code <= 4999:
        return Decision(False, f"close {code}: application-defined code; supply a classifier")
    return Decision(False, f"close {code}: unknown close code")


_RETRY_KINDS: dict[FailureKind, str] = {
    FailureKind.CONNECT_REFUSED: "connection refused",
    FailureKind.CONNECT_TIMEOUT: "connect timed out",
    FailureKind.CONNECT_ERROR: "connect failed",
    FailureKind.HANDSHAKE_EOF: "the server hung up during the handshake",
    FailureKind.HANDSHAKE_TIMEOUT: "the handshake timed out",
    FailureKind.HEARTBEAT_TIMEOUT: "the peer stopped answering pings",
    FailureKind.TRANSPORT_LOST: "the transport was lost",
}

_GIVE_UP_KINDS: dict[FailureKind, str] = {
    FailureKind.TLS_ERROR: "TLS certificate verification failed",
    FailureKind.HANDSHAKE_ERROR: "the server's handshake response is invalid",
    FailureKind.LOCAL_CLOSE: "the application closed the client",
}


def default_classifier(failure: Failure) -> Decision:
    """Decide whether a failure is worth another attempt.

    Retry what time can fix (refused or failed connects, handshake EOF/timeout, HTTP 5xx
    and 429 with ``Retry-After`` as the floor, going-away/restart/abnormal closes, dead
    heartbeats, lost transports); give up on what the same request would hit again
    (TLS certificate errors, invalid handshakes, other HTTP statuses, protocol and policy
    closes, application close codes 3000-4999) and always on a local close.
    """
    kind = failure.kind
    if kind is FailureKind.HTTP_STATUS:
        return _classify_status(failure)
    if kind is FailureKind.CLOSED:
        return _classify_close(failure)
    if kind in _RETRY_KINDS:
        return Decision(True, _RETRY_KINDS[kind])
    return Decision(False, _GIVE_UP_KINDS[kind])


#: Largest delay ``parse_retry_after`` returns (2**31 seconds, as RFC 9111 caps delta-seconds).
MAX_RETRY_AFTER = float(2**31)

_MONTHS = {
    name: index
    for index, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_WEEKDAYS = frozenset(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
_WEEKDAYS_LONG = frozenset(
    ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (pure arithmetic, no clock)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _parse_clock(text: str) -> int | None:
    parts = text.split(":")
    if len(parts) != 3 or not all(len(p) == 2 and p.isascii() and p.isdigit() for p in parts):
        return None
    hour, minute, second = (int(p) for p in parts)
    if hour > 23 or minute > 59 or second > 60:
        return None
    return hour * 3600 + minute * 60 + second


def _epoch(year: int, month: int | None, day: str, clock: str) -> int | None:
    if month is None or not (day.isascii() and day.isdigit() and 1 <= len(day) <= 2):
        return None
    mday = int(day)
    if not 1 <= mday <= _days_in_month(year, month):
        return None
    seconds = _parse_clock(clock)
    if seconds is None:
        return None
    return _days_from_civil(year, month, mday) * 86400 + seconds


def _is_digits(text: str, length: int) -> bool:
    return len(text) == length and text.isascii() and text.isdigit()


def parse_http_date(value: str) -> int | None:
    """Seconds since the Unix epoch of an HTTP-date (RFC 9110 section 5.6.7), or ``None``.

    Accepts the IMF-fixdate form (``Sun, 06 Nov 1994 08:49:37 GMT``) and the two obsolete
    forms (RFC 850 ``Sunday, 06-Nov-94 08:49:37 GMT`` and asctime
    ``Sun Nov  6 08:49:37 1994``); anything else, including invalid dates, gives ``None``.
    """
    fields = value.split()
    if len(fields) == 6 and fields[5] == "GMT":
        # IMF-fixdate: day-name "," SP day SP month SP year SP time SP "GMT"
        wkday, day, month, year, clock = fields[0], fields[1], fields[2], fields[3], fields[4]
        if wkday[:-1].lower() not in _WEEKDAYS or not wkday.endswith(","):
            return None
        if not _is_digits(year, 4):
            return None
        return _epoch(int(year), _MONTHS.get(month.lower()), day, clock)
    if len(fields) == 4 and fields[3] == "GMT":
        # RFC 850: day-name-l "," SP date2 SP time SP "GMT", date2 = day "-" month "-" 2DIGIT
        wkday, date, clock = fields[0], fields[1], fields[2]
        if wkday[:-1].lower() not in _WEEKDAYS_LONG or not wkday.endswith(","):
            return None
        pieces = date.split("-")
        if len(pieces) != 3 or not _is_digits(pieces[2], 2):
            return None
        # Two-digit years: RFC 9110 lets recipients pick the century; 00-69 means 20xx.
        short = int(pieces[2])
        full_year = 2000 + short if short < 70 else 1900 + short
        return _epoch(full_year, _MONTHS.get(pieces[1].lower()), pieces[0], clock)
    if len(fields) == 5:
        # asctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time SP year
        wkday, month, day, clock, year = fields
        if wkday.lower() not in _WEEKDAYS or not _is_digits(year, 4):
            return None
        return _epoch(int(year), _MONTHS.get(month.lower()), day, clock)
    return None


def parse_retry_after(value: str, now_http_date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` if unusable.

    ``Retry-After`` is either delta-seconds or an HTTP-date (RFC 9110 section 10.2.3).
    Delta-seconds are returned as is (capped at ``MAX_RETRY_AFTER``). An HTTP-date can only
    be turned into a delay against the current wall-clock time, which the core never reads:
    pass the response's own ``Date`` header as ``now_http_date`` (the server's notion of now,
    so clock skew between client and server does not matter); without it, or if either date
    is invalid, the result is ``None``. A date in the past gives ``0.0``. Never raises on
    header content.
    """
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        if len(text) > 12:  # also keeps int() far from its digit limit
            return MAX_RETRY_AFTER
        return min(float(int(text)), MAX_RETRY_AFTER)
    if now_http_date is None:
        return None
    target = parse_http_date(text)
    reference = parse_http_date(now_http_date.strip())
    if target is None or reference is None:
        return None
    return min(float(max(0, target - reference)), MAX_RETRY_AFTER)
