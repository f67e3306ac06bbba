"""Keep-alive pings and dead-peer detection for one open connection.

After ``interval`` seconds without hearing from the peer, ``Heartbeat`` asks for a ping
(RFC 6455 section 5.5.2); if neither a pong nor any other data arrives within ``timeout``
after it, the peer is declared dead. Anything received proves the peer alive, so a busy
connection never pings. A timer call that comes much later than its deadline means our
own event loop stalled: the peer is then given one more ``timeout`` instead of being
blamed for our lateness.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass


def _check_seconds(name: str, value: float, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """Timing of keep-alive pings (seconds)."""

    #: Idle time before a ping (30 s, as in the original zenws design); ``None`` or 0 disables.
    interval: float | None = 30.0
    #: How long to wait for a pong (or any data) after a ping before the peer is dead.
    timeout: float = 10.0
    #: How far past its deadline ``handle_timer`` may run before our loop counts as late.
    late_tolerance: float = 1.0

    def __post_init__(self) -> None:
        if self.interval is not None:
            _check_seconds("interval", self.interval, positive=False)
        _check_seconds("timeout", self.timeout, positive=True)
        _check_seconds("late_tolerance", self.late_tolerance, positive=False)

    @property
    def enabled(self) -> bool:
        return bool(self.interval)


class DeadCause(enum.Enum):
    """Why the heartbeat gave up on the peer."""

    #: No pong or data from the peer within ``timeout`` of a ping.
    NO_PONG = "no-pong"
    #: As ``NO_PONG``, but our loop was late again after the grace ``timeout`` it had been
    #: given: the peer may be fine and our process starved. Distinguished so the
    #: application can tell a dead network from an overloaded host.
    LOOP_LATE = "loop-late"


@dataclass(frozen=True, slots=True)
class SendPing:
    """Send a ping now (``ClientConnection.ping``); the pong timeout already runs."""


@dataclass(frozen=True, slots=True)
class PeerDead:
    """The peer is considered gone; the client fails the connection (close code 1011)."""

    cause: DeadCause
    #: Seconds since we last heard from the peer.
    silent_for: float


@dataclass(frozen=True, slots=True)
class LoopLate:
    """``handle_timer`` ran ``lag`` seconds after its deadline (more than ``late_tolerance``).

    When a pong was awaited, the pong timeout was re-armed from this call instead of
    declaring the peer dead.
    """

    lag: float


HeartbeatAction = SendPing | PeerDead | LoopLate


class HeartbeatState(enum.Enum):
    #: Not started, stopped, or disabled by config.
    STOPPED = "stopped"
    #: Waiting for ``interval`` of peer silence before pinging.
    IDLE = "idle"
    #: A ping is out; waiting for a pong or any data.
    AWAITING_PONG = "awaiting-pong"
    #: The peer was declared dead; ``start`` again for a new connection.
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class RoundTripSnapshot:
    """Round-trip times (seconds) over the last ``window`` pongs; ``None`` before any."""

    #: Pongs ever recorded.
    count: int
    last: float | None
    min: float | None
    max: float | None
    mean: float | None
    #: 95th percentile by nearest rank.
    p95: float | None


class RoundTripStats:
    """Sliding window of ping round-trip times."""

    __slots__ = ("_count", "_samples", "_window")

    def __init__(self, window: int = 100) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        self._window = window
        #: Created with the first sample: most connections never ping (600 bytes saved).
        self._samples: deque[float] | None = None
        self._count = 0

    @property
    def window(self) -> int:
        return self._window

    @property
    def count(self) -> int:
        return self._count

    def record(self, rtt: float) -> None:
        """Add one round-trip time in seconds."""
        _check_seconds("rtt", rtt, positive=False)
        samples = self._samples
        if samples is None:
            samples = self._samples = deque(maxlen=self._window)
        samples.append(float(rtt))
        self._count += 1

    def snapshot(self) -> RoundTripSnapshot:
        samples = self._samples
        if not samples:
            return RoundTripSnapshot(self._count, None, None, None, None, None)
        ordered = sorted(samples)
        rank = math.ceil(0.95 * len(ordered))
        return RoundTripSnapshot(
            count=self._count,
            last=samples[-1],
            min=ordered[0],
            max=ordered[-1],
            mean=math.fsum(ordered) / len(ordered),
            p95=ordered[rank - 1],
        )


class Heartbeat:
    """Keep-alive timer of one connection: when to ping, when the peer is dead.

    Drive it with ``start(now)`` when the connection opens, ``activity(now)`` for every
    frame received, ``pong_received(now, rtt)`` for pongs, and ``handle_timer(now)`` at or
    after ``next_deadline()``; act on the returned ``HeartbeatAction`` list.
    """

    __slots__ = (
        "_config",
        "_deadline",
        "_grace_used",
        "_last_heard",
        "_round_trips",
        "_state",
    )

    def __init__(self, config: HeartbeatConfig | None = None, *, rtt_window: int = 100) -> None:
        self._config = config if config is not None else HeartbeatConfig()
        self._state = HeartbeatState.STOPPED
        self._deadline: float | None = None
        self._last_heard = 0.0
        self._grace_used = False
        self._round_trips = RoundTripStats(rtt_window)

    @property
    def config(self) -> HeartbeatConfig:
        return self._config

    @property
    def state(self) -> HeartbeatState:
        return self._state

    @property
    def round_trips(self) -> RoundTripStats:
        return self._round_trips

    @property
    def last_heard(self) -> float:
        """When the peer was last heard from (start time if never)."""
        return self._last_heard

    def start(self, now: float) -> None:
        """The connection opened: begin counting peer silence from ``now``."""
        if not self._config.enabled:
            self._state = HeartbeatState.STOPPED
            self._deadline = None
            return
        self._last_heard = now
        self._idle_from(now)

    def stop(self) -> None:
        """The connection is closing or closed: no more pings, no more verdicts."""
        self._state = HeartbeatState.STOPPED
        self._deadline = None

    def activity(self, now: float) -> None:
        """Something arrived from the peer: it is alive, postpone the next ping."""
        if self._state not in (HeartbeatState.IDLE, HeartbeatState.AWAITING_PONG):
            return
        self._last_heard = max(self._last_heard, now)
        self._idle_from(self._last_heard)

    def pong_received(self, now: float, round_trip: float | None = None) -> None:
        """A pong arrived; ``round_trip`` (if it matched one of our pings) is recorded."""
        if round_trip is not None:
            self._round_trips.record(round_trip)
        self.activity(now)

    def ping_sent(self, now: float) -> None:
        """A ping went out outside ``handle_timer`` (the application's own ``ping``).

        Its pong is awaited like a heartbeat ping. A ping already awaited keeps its
        earlier timeout, so repeated pings cannot postpone a verdict.
        """
        if self._state is HeartbeatState.IDLE:
            self._await_pong(now)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` should run next; ``None`` when stopped or dead."""
        return self._deadline

    def handle_timer(self, now: float) -> list[HeartbeatAction]:
        """Act on an expired deadline; calls before the deadline do nothing."""
        deadline = self._deadline
        if deadline is None or now < deadline:
            return []
        lag = now - deadline
        late = lag > self._config.late_tolerance
        actions: list[HeartbeatAction] = [LoopLate(lag)] if late else []
        if self._state is HeartbeatState.IDLE:
            self._await_pong(now)
            actions.append(SendPing())
            return actions
        # AWAITING_PONG: the pong timeout ran out.
        if late and not self._grace_used:
            # Our loop stalled: data from the peer may be sitting unread. One more timeout.
            self._grace_used = True
            self._deadline = now + self._config.timeout
            return actions
        self._state = HeartbeatState.DEAD
        self._deadline = None
        cause = DeadCause.LOOP_LATE if late else DeadCause.NO_PONG
        return [PeerDead(cause, now - self._last_heard)]

    def _idle_from(self, now: float) -> None:
        interval = self._config.interval
        assert interval
        self._state = HeartbeatState.IDLE
        self._deadline = now + interval
        self._grace_used = False

    def _await_pong(self, now: float) -> None:
        self._state = HeartbeatState.AWAITING_PONG
        self._deadline = now + self._config.timeout
        self._grace_used = False
