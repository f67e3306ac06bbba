"""Tests of zenws_core._heartbeat under a fake clock (plain floats as ``now``)."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zenws_core._heartbeat import (
    DeadCause,
    Heartbeat,
    HeartbeatConfig,
    HeartbeatState,
    LoopLate,
    PeerDead,
    RoundTripSnapshot,
    RoundTripStats,
    SendPing,
)

# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = HeartbeatConfig()
    assert (config.interval, config.timeout, config.late_tolerance) == (30.0, 10.0, 1.0)
    assert config.enabled


@pytest.mark.parametrize("interval", [None, 0, 0.0])
def test_interval_none_or_zero_disables(interval: float | None) -> None:
    config = HeartbeatConfig(interval=interval)
    assert not config.enabled
    heartbeat = Heartbeat(config)
    heartbeat.start(0.0)
    assert state_of(heartbeat) is HeartbeatState.STOPPED
    assert heartbeat.next_deadline() is None
    heartbeat.activity(5.0)
    heartbeat.ping_sent(5.0)
    assert heartbeat.handle_timer(1e9) == []
    assert state_of(heartbeat) is HeartbeatState.STOPPED


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"interval": -1.0}, ValueError),
        ({"interval": float("nan")}, ValueError),
        ({"interval": "30"}, TypeError),
        ({"timeout": 0.0}, ValueError),
        ({"timeout": float("inf")}, ValueError),
        ({"timeout": True}, TypeError),
        ({"late_tolerance": -0.5}, ValueError),
    ],
)
def test_config_rejects_invalid_values(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        HeartbeatConfig(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Ping and dead-peer timing
# ---------------------------------------------------------------------------------------------


def state_of(heartbeat: Heartbeat) -> HeartbeatState:
    """Read the state through a call so mypy does not narrow it across calls."""
    return heartbeat.state


def make(interval: float = 30.0, timeout: float = 10.0, late: float = 1.0) -> Heartbeat:
    return Heartbeat(HeartbeatConfig(interval=interval, timeout=timeout, late_tolerance=late))


def test_not_started_does_nothing() -> None:
    heartbeat = make()
    assert state_of(heartbeat) is HeartbeatState.STOPPED
    assert heartbeat.next_deadline() is None
    assert heartbeat.handle_timer(100.0) == []


def test_pings_at_exactly_interval_and_declares_dead_at_interval_plus_timeout() -> None:
    heartbeat = make()
    heartbeat.start(1000.0)
    assert state_of(heartbeat) is HeartbeatState.IDLE
    assert heartbeat.next_deadline() == 1030.0
    assert heartbeat.handle_timer(1029.999) == []  # early call: nothing
    assert heartbeat.handle_timer(1030.0) == [SendPing()]
    assert state_of(heartbeat) is HeartbeatState.AWAITING_PONG
    assert heartbeat.next_deadline() == 1040.0
    assert heartbeat.handle_timer(1039.5) == []
    assert heartbeat.handle_timer(1040.0) == [PeerDead(DeadCause.NO_PONG, 40.0)]
    assert state_of(heartbeat) is HeartbeatState.DEAD
    assert heartbeat.next_deadline() is None
    assert heartbeat.handle_timer(2000.0) == []


def test_slightly_late_call_within_tolerance_is_not_loop_late() -> None:
    heartbeat = make(late=1.0)
    heartbeat.start(0.0)
    assert heartbeat.handle_timer(31.0) == [SendPing()]  # exactly the tolerance
    assert heartbeat.next_deadline() == 41.0  # the pong timeout runs from the real send
    assert heartbeat.handle_timer(41.5) == [PeerDead(DeadCause.NO_PONG, 41.5)]


def test_pong_rearms_the_interval() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    assert heartbeat.handle_timer(30.0) == [SendPing()]
    heartbeat.pong_received(30.2, 0.2)
    assert state_of(heartbeat) is HeartbeatState.IDLE
    assert heartbeat.next_deadline() == pytest.approx(60.2)
    assert heartbeat.last_heard == 30.2
    assert heartbeat.round_trips.snapshot().last == 0.2


def test_any_activity_postpones_the_ping() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.activity(20.0)
    assert heartbeat.next_deadline() == 50.0
    assert heartbeat.handle_timer(30.0) == []  # the old deadline no longer fires
    assert heartbeat.handle_timer(50.0) == [SendPing()]


def test_data_while_awaiting_pong_proves_the_peer_alive() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    heartbeat.activity(35.0)
    assert state_of(heartbeat) is HeartbeatState.IDLE
    assert heartbeat.handle_timer(40.0) == []
    assert heartbeat.next_deadline() == 65.0


def test_busy_connection_never_pings() -> None:
    heartbeat = make(interval=5.0)
    heartbeat.start(0.0)
    now = 0.0
    for _ in range(1000):
        now += 4.9
        heartbeat.activity(now)
        assert heartbeat.handle_timer(now) == []
    assert state_of(heartbeat) is HeartbeatState.IDLE


def test_activity_out_of_order_never_moves_backwards() -> None:
    heartbeat = make()
    heartbeat.start(10.0)
    heartbeat.activity(5.0)
    assert heartbeat.next_deadline() == 40.0
    assert heartbeat.last_heard == 10.0


def test_pong_without_round_trip_counts_as_activity_only() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    heartbeat.pong_received(31.0)
    assert state_of(heartbeat) is HeartbeatState.IDLE
    assert heartbeat.round_trips.count == 0


def test_application_ping_arms_the_pong_timeout() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.ping_sent(12.0)
    assert state_of(heartbeat) is HeartbeatState.AWAITING_PONG
    assert heartbeat.next_deadline() == 22.0
    heartbeat.ping_sent(20.0)  # a second ping does not postpone the verdict
    assert heartbeat.next_deadline() == 22.0
    assert heartbeat.handle_timer(22.0) == [PeerDead(DeadCause.NO_PONG, 22.0)]


def test_stop_silences_everything() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    heartbeat.stop()
    assert state_of(heartbeat) is HeartbeatState.STOPPED
    assert heartbeat.next_deadline() is None
    assert heartbeat.handle_timer(100.0) == []
    heartbeat.activity(101.0)
    assert state_of(heartbeat) is HeartbeatState.STOPPED


def test_start_again_after_dead_for_a_new_connection() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    heartbeat.handle_timer(40.0)
    assert state_of(heartbeat) is HeartbeatState.DEAD
    heartbeat.activity(41.0)  # late data after the verdict is ignored
    assert state_of(heartbeat) is HeartbeatState.DEAD
    heartbeat.start(50.0)
    assert state_of(heartbeat) is HeartbeatState.IDLE
    assert heartbeat.next_deadline() == 80.0


# ---------------------------------------------------------------------------------------------
# Loop-late detection
# ---------------------------------------------------------------------------------------------


def test_late_ping_timer_reports_lag_and_still_pings() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    assert heartbeat.handle_timer(45.0) == [LoopLate(15.0), SendPing()]
    assert heartbeat.next_deadline() == 55.0


def test_late_pong_timeout_is_not_a_dead_peer_but_rearms() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    # The loop stalled: the timer for 40.0 runs at 47.0.
    assert heartbeat.handle_timer(47.0) == [LoopLate(7.0)]
    assert state_of(heartbeat) is HeartbeatState.AWAITING_PONG
    assert heartbeat.next_deadline() == 57.0
    # The data that sat unread during the stall is now processed: the peer was alive.
    heartbeat.activity(47.1)
    assert state_of(heartbeat) is HeartbeatState.IDLE


def test_dead_after_grace_on_time_is_no_pong() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    heartbeat.handle_timer(47.0)
    assert heartbeat.handle_timer(57.0) == [PeerDead(DeadCause.NO_PONG, 57.0)]


def test_late_again_after_grace_is_dead_with_loop_late_cause() -> None:
    # A loop that is always late must not keep a dead peer alive forever.
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    assert heartbeat.handle_timer(47.0) == [LoopLate(7.0)]
    assert heartbeat.handle_timer(64.0) == [PeerDead(DeadCause.LOOP_LATE, 64.0)]
    assert state_of(heartbeat) is HeartbeatState.DEAD


def test_grace_is_granted_again_for_the_next_ping() -> None:
    heartbeat = make()
    heartbeat.start(0.0)
    heartbeat.handle_timer(30.0)
    heartbeat.handle_timer(47.0)  # grace used
    heartbeat.pong_received(48.0, 18.0)
    assert heartbeat.handle_timer(78.0) == [SendPing()]
    assert heartbeat.handle_timer(95.0) == [LoopLate(7.0)]  # a fresh grace


@settings(max_examples=300, deadline=None)
@given(
    interval=st.floats(0.1, 100.0),
    timeout=st.floats(0.1, 100.0),
    tolerance=st.floats(0.0, 10.0),
    lags=st.lists(st.floats(0.0, 50.0), min_size=3, max_size=3),
)
def test_silent_peer_is_always_declared_dead(
    interval: float, timeout: float, tolerance: float, lags: list[float]
) -> None:
    # Whatever the loop's lateness, a peer that never answers is dead after at most one ping
    # and two timeouts, and never before interval + timeout.
    heartbeat = make(interval, timeout, tolerance)
    heartbeat.start(0.0)
    verdicts: list[tuple[PeerDead, float]] = []
    now = 0.0
    for lag in lags:
        deadline = heartbeat.next_deadline()
        if deadline is None:
            break
        now = deadline + lag
        actual_lag = now - deadline  # what the heartbeat sees after float rounding
        for action in heartbeat.handle_timer(now):
            if isinstance(action, LoopLate):
                assert action.lag == actual_lag
                assert actual_lag > tolerance
            elif isinstance(action, PeerDead):
                verdicts.append((action, actual_lag))
    assert len(verdicts) == 1
    verdict, verdict_lag = verdicts[0]
    assert verdict.silent_for >= interval + timeout
    assert verdict.cause is (DeadCause.LOOP_LATE if verdict_lag > tolerance else DeadCause.NO_PONG)
    assert state_of(heartbeat) is HeartbeatState.DEAD


# ---------------------------------------------------------------------------------------------
# Round-trip statistics
# ---------------------------------------------------------------------------------------------


def test_round_trip_snapshot_empty() -> None:
    assert RoundTripStats().snapshot() == RoundTripSnapshot(0, None, None, None, None, None)


def test_round_trip_snapshot_values() -> None:
    stats = RoundTripStats(window=100)
    for rtt in range(1, 101):  # 0.01 .. 1.00
        stats.record(rtt / 100)
    snap = stats.snapshot()
    assert snap.count == 100
    assert snap.last == 1.0
    assert snap.min == 0.01
    assert snap.max == 1.0
    assert snap.mean == pytest.approx(0.505)
    assert snap.p95 == 0.95


def test_round_trip_window_slides() -> None:
    stats = RoundTripStats(window=3)
    assert stats.window == 3
    for rtt in (9.0, 1.0, 2.0, 3.0):
        stats.record(rtt)
    snap = stats.snapshot()
    assert snap.count == 4  # cumulative
    assert (snap.min, snap.max, snap.last) == (1.0, 3.0, 3.0)
    assert snap.mean == 2.0
    assert snap.p95 == 3.0


def test_round_trip_single_sample() -> None:
    stats = RoundTripStats()
    stats.record(0)
    assert stats.snapshot() == RoundTripSnapshot(1, 0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_round_trip_window_must_be_positive_int(window: object) -> None:
    with pytest.raises(ValueError, match="window"):
        RoundTripStats(window)  # type: ignore[arg-type]


@pytest.mark.parametrize("rtt", [-0.1, float("nan"), float("inf")])
def test_round_trip_rejects_invalid_samples(rtt: float) -> None:
    stats = RoundTripStats()
    with pytest.raises(ValueError, match="rtt"):
        stats.record(rtt)
    assert stats.count == 0


def test_snapshot_is_frozen() -> None:
    snap = RoundTripStats().snapshot()
    with pytest.raises(AttributeError):
        snap.count = 3  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(1, 20),
    samples=st.lists(st.floats(0.0, 1e3), min_size=1, max_size=60),
)
def test_round_trip_stats_match_a_direct_computation(window: int, samples: list[float]) -> None:
    stats = RoundTripStats(window)
    for rtt in samples:
        stats.record(rtt)
    recent = samples[-window:]
    snap = stats.snapshot()
    assert snap.count == len(samples)
    assert snap.last == samples[-1]
    assert snap.min == min(recent)
    assert snap.max == max(recent)
    assert snap.mean == pytest.approx(statistics.fmean(recent), rel=1e-9, abs=1e-9)
    ordered = sorted(recent)
    assert snap.p95 == ordered[math.ceil(0.95 * len(ordered)) - 1]
    assert sum(1 for x in recent if x <= snap.p95) >= 0.95 * len(recent)


def test_heartbeat_rtt_window_is_configurable() -> None:
    heartbeat = Heartbeat(HeartbeatConfig(), rtt_window=2)
    assert heartbeat.round_trips.window == 2
    assert heartbeat.config == HeartbeatConfig()


def test_examples_in_docs_run() -> None:
    text = (Path(__file__).parents[1] / "docs" / "heartbeat.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import" in b]
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/heartbeat.md", "exec"), {})
