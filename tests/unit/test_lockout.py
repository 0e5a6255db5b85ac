"""The guessing limit: escalating locks, a hard limit, and a reset on success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.core.lockout import PERMANENT_LOCK, LockoutPolicy, LockState

POLICY = LockoutPolicy()
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def fail_times(policy: LockoutPolicy, count: int, *, now: datetime = NOW) -> LockState:
    state = policy.after_success()
    for _ in range(count):
        state = policy.after_failure(failed_attempts=state.failed_attempts, now=now)
    return state


def test_defaults_are_five_failures_thirty_seconds_an_hour_and_a_hundred() -> None:
    assert (
        LockoutPolicy(
            max_consecutive_failures=5, base_lock_seconds=30, max_lock_seconds=3600, hard_limit=100
        )
        == POLICY
    )


@pytest.mark.parametrize("failures", [1, 2, 3, 4])
def test_the_first_four_failures_do_not_lock(failures: int) -> None:
    state = fail_times(POLICY, failures)
    assert state == LockState(failed_attempts=failures, locked_until=None)
    assert not POLICY.is_locked(
        failed_attempts=state.failed_attempts, locked_until=state.locked_until, now=NOW
    )


def test_the_fifth_failure_locks_for_thirty_seconds() -> None:
    state = fail_times(POLICY, 5)

    assert state == LockState(failed_attempts=5, locked_until=NOW + timedelta(seconds=30))
    assert POLICY.is_locked(failed_attempts=5, locked_until=state.locked_until, now=NOW)


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(5, 30), (6, 60), (7, 120), (8, 240), (9, 480), (10, 960), (11, 1920), (12, 3600)],
)
def test_each_further_failure_doubles_the_lock(failures: int, seconds: int) -> None:
    assert POLICY.lock_seconds(failures) == seconds
    assert fail_times(POLICY, failures).locked_until == NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize("failures", [12, 13, 50, 99])
def test_the_lock_never_exceeds_an_hour_before_the_hard_limit(failures: int) -> None:
    assert POLICY.lock_seconds(failures) == 3600


def test_the_hundredth_failure_locks_for_good() -> None:
    state = fail_times(POLICY, 100)

    assert state == LockState(
        failed_attempts=100, locked_until=PERMANENT_LOCK, permanently_locked=True
    )
    assert POLICY.lock_seconds(100) is None
    assert POLICY.is_locked(failed_attempts=100, locked_until=PERMANENT_LOCK, now=NOW)


def test_the_ninety_ninth_failure_is_still_temporary() -> None:
    state = fail_times(POLICY, 99)
    assert not state.permanently_locked
    assert state.locked_until == NOW + timedelta(hours=1)


@pytest.mark.parametrize("locked_until", [None, NOW - timedelta(days=1)])
def test_a_permanent_lock_holds_whatever_the_stored_timestamp_says(
    locked_until: datetime | None,
) -> None:
    assert POLICY.is_locked(failed_attempts=100, locked_until=locked_until, now=NOW)
    assert POLICY.is_locked(failed_attempts=250, locked_until=locked_until, now=NOW)


def test_the_permanent_lock_sentinel_is_far_future_and_safe_to_convert() -> None:
    assert PERMANENT_LOCK.year == 9999
    assert PERMANENT_LOCK.tzinfo is not None
    PERMANENT_LOCK.astimezone(UTC)
    _ = PERMANENT_LOCK + timedelta(days=300)


def test_a_lock_ends_exactly_at_locked_until() -> None:
    until = NOW + timedelta(seconds=30)
    assert POLICY.is_locked(failed_attempts=5, locked_until=until, now=until - timedelta(0, 0, 1))
    assert not POLICY.is_locked(failed_attempts=5, locked_until=until, now=until)


def test_a_success_resets_everything() -> None:
    assert POLICY.after_success() == LockState(failed_attempts=0, locked_until=None)


def test_a_negative_stored_count_is_treated_as_zero() -> None:
    assert POLICY.after_failure(failed_attempts=-3, now=NOW).failed_attempts == 1


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2025, 6, 1, 12, 0, 0)  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        POLICY.is_locked(failed_attempts=0, locked_until=None, now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        POLICY.after_failure(failed_attempts=0, now=naive)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_consecutive_failures": 0},
        {"base_lock_seconds": 0},
        {"base_lock_seconds": 60, "max_lock_seconds": 30},
        {"max_consecutive_failures": 10, "hard_limit": 9},
    ],
)
def test_inconsistent_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be at least"):
        LockoutPolicy(**kwargs)


def test_huge_failure_counts_do_not_build_huge_numbers() -> None:
    policy = LockoutPolicy(hard_limit=10**9)
    assert policy.lock_seconds(10**9 - 1) == policy.max_lock_seconds


@given(
    max_failures=st.integers(1, 10),
    base=st.integers(1, 120),
    extra=st.integers(0, 7200),
    hard=st.integers(0, 200),
    failures=st.integers(0, 400),
)
def test_lock_duration_never_shrinks_as_failures_grow(
    max_failures: int, base: int, extra: int, hard: int, failures: int
) -> None:
    policy = LockoutPolicy(
        max_consecutive_failures=max_failures,
        base_lock_seconds=base,
        max_lock_seconds=base + extra,
        hard_limit=max_failures + hard,
    )
    now_seconds = policy.lock_seconds(failures)
    next_seconds = policy.lock_seconds(failures + 1)
    if now_seconds is None:
        assert next_seconds is None
    elif next_seconds is not None:
        assert now_seconds <= next_seconds <= policy.max_lock_seconds


@given(
    hard_limit=st.integers(5, 150),
    waits=st.lists(st.integers(0, 10_000), min_size=1, max_size=400),
)
def test_an_attacker_who_waits_out_every_lock_gets_at_most_hard_limit_guesses(
    hard_limit: int, waits: list[int]
) -> None:
    """Model: guess whenever the factor is unlocked, always wrong, with arbitrary pauses."""
    policy = LockoutPolicy(hard_limit=hard_limit)
    state = policy.after_success()
    now = NOW
    evaluated = 0
    for wait in waits * 3:
        now += timedelta(seconds=wait)
        if policy.is_locked(
            failed_attempts=state.failed_attempts, locked_until=state.locked_until, now=now
        ):
            continue
        evaluated += 1
        state = policy.after_failure(failed_attempts=state.failed_attempts, now=now)
    for _ in range(hard_limit + 1):  # then as long as it takes, waiting out every lock
        if state.permanently_locked:
            break
        now = (state.locked_until or now) + timedelta(seconds=1)
        assert not policy.is_locked(
            failed_attempts=state.failed_attempts, locked_until=state.locked_until, now=now
        )
        evaluated += 1
        state = policy.after_failure(failed_attempts=state.failed_attempts, now=now)

    assert evaluated == hard_limit
    assert state.permanently_locked
    assert policy.is_locked(
        failed_attempts=state.failed_attempts,
        locked_until=state.locked_until,
        now=datetime(9998, 1, 1, tzinfo=UTC),
    )
