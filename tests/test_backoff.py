"""Tests of zenws_core._backoff: reconnect timing, the failure classifier, Retry-After."""

from __future__ import annotations

import calendar
import datetime
import itertools
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zenws_core._backoff import (
    GIVE_UP_CLOSE_CODES,
    MAX_RETRY_AFTER,
    RETRY_CLOSE_CODES,
    Decision,
    Failure,
    FailureKind,
    ReconnectConfig,
    ReconnectPolicy,
    default_classifier,
    parse_http_date,
    parse_retry_after,
)

# ---------------------------------------------------------------------------------------------
# ReconnectConfig
# ---------------------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = ReconnectConfig()
    assert config.enabled is True
    assert config.initial_delay == 1.0
    assert config.multiplier == 2.0
    assert config.max_delay == 30.0
    assert config.max_attempts is None
    assert config.stable_after == 5.0
    assert config.jitter == "full"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"initial_delay": -1.0}, ValueError),
        ({"initial_delay": float("nan")}, ValueError),
        ({"initial_delay": "1"}, TypeError),
        ({"multiplier": 0.5}, ValueError),
        ({"max_delay": float("inf")}, ValueError),
        ({"max_delay": True}, TypeError),
        ({"stable_after": -0.1}, ValueError),
        ({"max_attempts": -1}, ValueError),
        ({"max_attempts": 2.0}, TypeError),
        ({"max_attempts": True}, TypeError),
        ({"jitter": "equal"}, ValueError),
        ({"enabled": 1}, TypeError),
    ],
)
def test_config_rejects_invalid_values(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        ReconnectConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    config = ReconnectConfig()
    with pytest.raises(AttributeError):
        config.max_delay = 1.0  # type: ignore[misc]


def test_delay_cap_grows_then_saturates() -> None:
    config = ReconnectConfig(initial_delay=1.0, multiplier=2.0, max_delay=30.0)
    assert [config.delay_cap(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_delay_cap_survives_huge_attempt_numbers() -> None:
    config = ReconnectConfig(initial_delay=1.0, multiplier=10.0, max_delay=60.0)
    assert config.delay_cap(10_000) == 60.0


def test_delay_cap_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        ReconnectConfig().delay_cap(0)


# ---------------------------------------------------------------------------------------------
# ReconnectPolicy: exact sequences
# ---------------------------------------------------------------------------------------------


def test_full_jitter_sequence_matches_formula_with_seeded_rng() -> None:
    config = ReconnectConfig()
    policy = ReconnectPolicy(config, rng=random.Random(0))
    oracle = random.Random(0)
    expected = [oracle.uniform(0, min(30.0, 1.0 * 2.0 ** (n - 1))) for n in range(1, 11)]
    assert [policy.next_delay() for _ in range(10)] == expected
    assert policy.attempt == 10


def test_full_jitter_sequence_pinned_values() -> None:
    # Literal numbers pin the formula against an accidental change in how the cap is computed
    # (random.Random(0).random() starts 0.8444218515250481, 0.7579544029403025, ...).
    policy = ReconnectPolicy(ReconnectConfig(), rng=random.Random(0))
    delays = [policy.next_delay() for _ in range(6)]
    assert delays == pytest.approx(
        [
            0.8444218515250481 * 1,
            0.7579544029403025 * 2,
            0.420571580830845 * 4,
            0.25891675029296335 * 8,
            0.5112747213686085 * 16,
            0.4049341374504143 * 30,
        ],
        rel=1e-12,
    )


def test_no_jitter_gives_the_caps() -> None:
    policy = ReconnectPolicy(
        ReconnectConfig(jitter="none", initial_delay=0.5, multiplier=3.0, max_delay=10.0),
        rng=random.Random(1),
    )
    assert [policy.next_delay() for _ in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_injected_delays_are_used_and_exhaustion_gives_up() -> None:
    policy = ReconnectPolicy(ReconnectConfig(), delays=[0.1, 0.2, 0.3])
    assert [policy.next_delay() for _ in range(3)] == [0.1, 0.2, 0.3]
    assert policy.next_delay() is None
    assert policy.attempt == 3


def test_injected_delays_are_still_bounded_by_max_attempts() -> None:
    policy = ReconnectPolicy(ReconnectConfig(max_attempts=2), delays=iter([5.0, 5.0, 5.0]))
    assert [policy.next_delay(), policy.next_delay(), policy.next_delay()] == [5.0, 5.0, None]


def test_injected_negative_delay_is_api_misuse() -> None:
    policy = ReconnectPolicy(ReconnectConfig(), delays=[-1.0])
    with pytest.raises(ValueError, match="delay"):
        policy.next_delay()


def test_rng_and_delays_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        ReconnectPolicy(ReconnectConfig(), rng=random.Random(0), delays=[1.0])


def test_default_policy_without_rng_stays_within_cap() -> None:
    policy = ReconnectPolicy()
    delay = policy.next_delay()
    assert delay is not None
    assert 0.0 <= delay <= 1.0


def test_floor_raises_the_delay_beyond_max_delay() -> None:
    policy = ReconnectPolicy(ReconnectConfig(jitter="none"), rng=random.Random(0))
    assert policy.next_delay(floor=120.0) == 120.0
    assert policy.next_delay(floor=0.5) == 2.0  # a floor below the delay changes nothing


def test_floor_must_be_valid() -> None:
    policy = ReconnectPolicy(ReconnectConfig(), rng=random.Random(0))
    with pytest.raises(ValueError, match="floor"):
        policy.next_delay(floor=-1.0)
    assert policy.attempt == 0


def test_disabled_policy_never_retries() -> None:
    policy = ReconnectPolicy(ReconnectConfig(enabled=False), rng=random.Random(0))
    assert policy.exhausted
    assert policy.next_delay() is None
    assert policy.attempt == 0


def test_max_attempts_zero_never_retries() -> None:
    policy = ReconnectPolicy(ReconnectConfig(max_attempts=0), rng=random.Random(0))
    assert policy.next_delay() is None


def test_max_attempts_exhaustion_does_not_advance() -> None:
    policy = ReconnectPolicy(ReconnectConfig(max_attempts=3), rng=random.Random(0))
    assert all(policy.next_delay() is not None for _ in range(3))
    assert policy.exhausted
    assert policy.next_delay() is None
    assert policy.attempt == 3
    policy.reset()
    assert policy.attempt == 0
    assert policy.next_delay() is not None


def test_stable_connection_resets_attempts() -> None:
    policy = ReconnectPolicy(ReconnectConfig(stable_after=5.0, jitter="none"), rng=random.Random())
    for _ in range(4):
        policy.next_delay()
    policy.connection_opened(100.0)
    assert policy.connection_closed(105.0) is True  # exactly stable_after counts as stable
    assert policy.attempt == 0
    assert policy.next_delay() == 1.0


def test_short_lived_connection_keeps_backing_off() -> None:
    policy = ReconnectPolicy(ReconnectConfig(stable_after=5.0, jitter="none"), rng=random.Random())
    for _ in range(3):
        policy.next_delay()
    policy.connection_opened(100.0)
    assert policy.connection_closed(104.999) is False
    assert policy.attempt == 3
    assert policy.next_delay() == 8.0


def test_close_without_open_does_not_reset() -> None:
    policy = ReconnectPolicy(ReconnectConfig(jitter="none"), rng=random.Random())
    policy.next_delay()
    policy.connection_opened(0.0)
    policy.connection_closed(1.0)
    # A second close (e.g. a failed attempt) must not measure from the old open time.
    assert policy.connection_closed(1000.0) is False
    assert policy.attempt == 1


def test_reset_forgets_open_time() -> None:
    policy = ReconnectPolicy(ReconnectConfig(jitter="none"), rng=random.Random())
    policy.next_delay()
    policy.connection_opened(0.0)
    policy.reset()
    policy.next_delay()
    assert policy.connection_closed(100.0) is False
    assert policy.attempt == 1


def test_policy_exposes_config() -> None:
    config = ReconnectConfig(max_delay=3.0)
    assert ReconnectPolicy(config, rng=random.Random(0)).config is config


# ---------------------------------------------------------------------------------------------
# ReconnectPolicy: properties
# ---------------------------------------------------------------------------------------------

configs = st.builds(
    ReconnectConfig,
    initial_delay=st.floats(0.0, 100.0),
    multiplier=st.floats(1.0, 10.0),
    max_delay=st.floats(0.0, 1000.0),
    max_attempts=st.none() | st.integers(0, 30),
    stable_after=st.floats(0.0, 100.0),
    jitter=st.sampled_from(["full", "none"]),
)


@settings(max_examples=200, deadline=None)
@given(config=configs, seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_every_delay_is_within_zero_and_its_cap(config: ReconnectConfig, seed: int, n: int) -> None:
    policy = ReconnectPolicy(config, rng=random.Random(seed))
    for _ in range(n):
        before = policy.attempt
        delay = policy.next_delay()
        if delay is None:
            assert config.max_attempts is not None
            assert before == config.max_attempts
            assert policy.attempt == before
            continue
        assert policy.attempt == before + 1
        cap = config.delay_cap(policy.attempt)
        assert 0.0 <= delay <= cap <= config.max_delay
        if config.jitter == "none":
            assert delay == cap


@settings(max_examples=200, deadline=None)
@given(config=configs)
def test_cap_grows_then_stays_at_max_delay(config: ReconnectConfig) -> None:
    caps = [config.delay_cap(n) for n in range(1, 80)]
    assert all(a <= b for a, b in itertools.pairwise(caps))
    assert all(cap <= config.max_delay for cap in caps)
    if config.initial_delay >= 0.001 and config.multiplier >= 1.5:
        assert caps[-1] == config.max_delay
    first_max = next((i for i, cap in enumerate(caps) if cap == config.max_delay), None)
    if first_max is not None:
        assert all(cap == config.max_delay for cap in caps[first_max:])


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(0, 40), seed=st.integers(0, 1000))
def test_max_attempts_is_honoured(limit: int, seed: int) -> None:
    policy = ReconnectPolicy(ReconnectConfig(max_attempts=limit), rng=random.Random(seed))
    delays = [policy.next_delay() for _ in range(limit + 5)]
    assert all(d is not None for d in delays[:limit])
    assert all(d is None for d in delays[limit:])


@settings(max_examples=200, deadline=None)
@given(
    stable_after=st.floats(0.0, 100.0),
    attempts=st.integers(0, 20),
    opened=st.floats(-1e6, 1e6),
    duration=st.floats(0.0, 200.0),
)
def test_stable_after_reset_rule(
    stable_after: float, attempts: int, opened: float, duration: float
) -> None:
    policy = ReconnectPolicy(ReconnectConfig(stable_after=stable_after), rng=random.Random(0))
    for _ in range(attempts):
        policy.next_delay()
    policy.connection_opened(opened)
    closed = opened + duration
    reset = policy.connection_closed(closed)
    assert reset == (closed - opened >= stable_after)
    assert policy.attempt == (0 if reset else attempts)


# ---------------------------------------------------------------------------------------------
# Classifier
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "retry"),
    [
        (FailureKind.CONNECT_REFUSED, True),
        (FailureKind.CONNECT_TIMEOUT, True),
        (FailureKind.CONNECT_ERROR, True),
        (FailureKind.TLS_ERROR, False),
        (FailureKind.HANDSHAKE_EOF, True),
        (FailureKind.HANDSHAKE_TIMEOUT, True),
        (FailureKind.HANDSHAKE_ERROR, False),
        (FailureKind.HEARTBEAT_TIMEOUT, True),
        (FailureKind.TRANSPORT_LOST, True),
        (FailureKind.LOCAL_CLOSE, False),
    ],
)
def test_classifier_by_kind(kind: FailureKind, retry: bool) -> None:
    decision = default_classifier(Failure(kind, detail="x"))
    assert decision.retry is retry
    assert decision.floor == 0.0
    assert decision.reason


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
        (429, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (405, False),
        (408, False),
        (426, False),
        (499, False),
        (200, False),
        (301, False),
        (302, False),
        (100, False),
        (999, False),
    ],
)
def test_classifier_http_status(status: int, retry: bool) -> None:
    decision = default_classifier(Failure(FailureKind.HTTP_STATUS, status=status))
    assert decision.retry is retry
    assert str(status) in decision.reason


@pytest.mark.parametrize("status", [429, 503, 500])
def test_classifier_honours_retry_after_as_floor(status: int) -> None:
    failure = Failure(FailureKind.HTTP_STATUS, status=status, retry_after=42.0)
    assert default_classifier(failure) == Decision(True, default_classifier(failure).reason, 42.0)


def test_classifier_ignores_retry_after_when_giving_up() -> None:
    decision = default_classifier(Failure(FailureKind.HTTP_STATUS, status=403, retry_after=9.0))
    assert decision.retry is False
    assert decision.floor == 0.0


def test_classifier_http_status_without_status_gives_up() -> None:
    assert default_classifier(Failure(FailureKind.HTTP_STATUS)).retry is False


@pytest.mark.parametrize(
    ("code", "retry"),
    [
        (1000, True),
        (1001, True),
        (1005, True),
        (1006, True),
        (1011, True),
        (1012, True),
        (1013, True),
        (1014, True),
        (1002, False),
        (1003, False),
        (1007, False),
        (1008, False),
        (1009, False),
        (1010, False),
        (1015, False),
        (1004, False),
        (2999, False),
        (3000, False),
        (3999, False),
        (4000, False),
        (4999, False),
        (5000, False),
    ],
)
def test_classifier_close_codes(code: int, retry: bool) -> None:
    decision = default_classifier(Failure(FailureKind.CLOSED, close_code=code))
    assert decision.retry is retry
    assert str(code) in decision.reason


def test_close_code_tables_are_disjoint() -> None:
    assert not set(RETRY_CLOSE_CODES) & set(GIVE_UP_CLOSE_CODES)


def test_close_without_code_counts_as_1005() -> None:
    decision = default_classifier(Failure(FailureKind.CLOSED))
    assert decision.retry is True
    assert "1005" in decision.reason


def test_every_kind_is_classified() -> None:
    for kind in FailureKind:
        decision = default_classifier(Failure(kind, status=503, close_code=1001))
        assert isinstance(decision, Decision)


def test_local_close_never_retries_even_with_retry_after() -> None:
    decision = default_classifier(Failure(FailureKind.LOCAL_CLOSE, retry_after=1.0))
    assert decision.retry is False


def test_failure_validation() -> None:
    with pytest.raises(TypeError):
        Failure("closed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_after"):
        Failure(FailureKind.HTTP_STATUS, status=503, retry_after=-1.0)


def test_policy_and_classifier_compose() -> None:
    policy = ReconnectPolicy(ReconnectConfig(jitter="none"), rng=random.Random(0))
    decision = default_classifier(Failure(FailureKind.HTTP_STATUS, status=429, retry_after=10.0))
    assert decision.retry
    assert policy.next_delay(decision.floor) == 10.0


# ---------------------------------------------------------------------------------------------
# Retry-After
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("  7 ", 7.0),
        ("0042", 42.0),
        ("2147483648", MAX_RETRY_AFTER),
        ("99999999999", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),
        ("", None),
        ("   ", None),
        ("-5", None),
        ("1.5", None),
        ("+3", None),
        ("٣", None),  # a non-ASCII digit
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # a date without a reference
    ],
)
def test_parse_retry_after_delta_seconds(value: str, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def _epoch(year: int, month: int, day: int, h: int, m: int, s: int) -> int:
    return calendar.timegm((year, month, day, h, m, s, 0, 0, 0))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", _epoch(1994, 11, 6, 8, 49, 37)),
        ("Sunday, 06-Nov-94 08:49:37 GMT", _epoch(1994, 11, 6, 8, 49, 37)),
        ("Sun Nov  6 08:49:37 1994", _epoch(1994, 11, 6, 8, 49, 37)),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Tue, 29 Feb 2000 23:59:59 GMT", _epoch(2000, 2, 29, 23, 59, 59)),
        ("Wed, 21 Oct 2015 07:28:00 GMT", _epoch(2015, 10, 21, 7, 28, 0)),
        ("Friday, 01-Mar-30 12:00:00 GMT", _epoch(2030, 3, 1, 12, 0, 0)),
        ("fri, 31 dec 2100 00:00:01 GMT", _epoch(2100, 12, 31, 0, 0, 1)),
        ("Sun, 29 Feb 1900 00:00:00 GMT", None),  # 1900 is not a leap year
        ("Sun, 31 Apr 2020 00:00:00 GMT", None),
        ("Sun, 06 Nov 1994 24:00:00 GMT", None),
        ("Sun, 06 Nov 1994 08:49 GMT", None),
        ("Sun, 06 Foo 1994 08:49:37 GMT", None),
        ("Sun 06 Nov 1994 08:49:37 GMT", None),
        ("Xyz, 06 Nov 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 94 08:49:37 GMT", None),
        ("Sun, 6x Nov 1994 08:49:37 GMT", None),
        ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
        ("Sunday, 06/Nov/94 08:49:37 GMT", None),
        ("Sun, 06-Nov-94 08:49:37 GMT", None),
        ("Sun Nov  6 08:49:37 94", None),
        ("Foo Nov  6 08:49:37 1994", None),
        ("Sun Nov  6 08:49:37 UTC", None),
        ("", None),
    ],
)
def test_parse_http_date(value: str, expected: int | None) -> None:
    assert parse_http_date(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 253402300799))  # up to 9999-12-31T23:59:59
def test_parse_http_date_round_trips_every_second(epoch: int) -> None:
    days, rest = divmod(epoch, 86400)
    moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(days=days, seconds=rest)
    text = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_http_date(text) == epoch


def test_parse_retry_after_http_date_against_response_date() -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", date) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", date) == 0.0  # already past
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", "garbage") is None
    assert parse_retry_after("not a date", date) is None
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", date) == MAX_RETRY_AFTER
    assert parse_retry_after("30", date) == 30.0  # delta-seconds ignore the reference


@settings(max_examples=500, deadline=None)
@given(value=st.text(max_size=40), reference=st.none() | st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str, reference: str | None) -> None:
    result = parse_retry_after(value, reference)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER


def test_examples_in_docs_run() -> None:
    text = (Path(__file__).parents[1] / "docs" / "reconnect.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import" in b]
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/reconnect.md", "exec"), {})
