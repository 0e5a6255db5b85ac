"""The guessing limit on a factor, as a pure policy over its stored failure state.

A factor stores ``failed_attempts`` (consecutive failures) and ``locked_until``. The caller:

1. asks :meth:`LockoutPolicy.is_locked` before evaluating a code, and if locked, rejects the
   attempt *without evaluating it and without counting it*;
2. after a wrong code, stores :meth:`LockoutPolicy.after_failure`;
3. after a right code, stores :meth:`LockoutPolicy.after_success` (a reset).

Schedule, with the defaults: failures 1-4 do not lock; the 5th locks for 30 s, and each
further failure (made once the lock has passed) doubles it, up to one hour: 30 s, 60 s,
2 min, ..., 1 h, 1 h, ... The 100th consecutive failure locks the factor for good: it is then
locked whatever ``locked_until`` says, and ``locked_until`` is set to
:data:`PERMANENT_LOCK` (a far-future sentinel, so storage needs no extra column and
"locked until" displays sensibly). So no more than ``hard_limit`` consecutive guesses are
ever evaluated. Only an administrator (deleting or re-enrolling the factor) lifts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["PERMANENT_LOCK", "LockState", "LockoutPolicy"]

# Far enough to be "never", far enough from datetime.max that adding a day or converting
# to another time zone cannot overflow.
PERMANENT_LOCK = datetime(9999, 1, 1, tzinfo=UTC)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime (UTC), not a naive one")


@dataclass(frozen=True, slots=True, kw_only=True)
class LockState:
    """A factor's failure state, to store as ``Factor.failed_attempts``/``locked_until``."""

    failed_attempts: int
    locked_until: datetime | None
    permanently_locked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutPolicy:
    """How many consecutive failures a factor tolerates and for how long it then locks."""

    max_consecutive_failures: int = 5
    base_lock_seconds: int = 30
    max_lock_seconds: int = 3600
    hard_limit: int = 100

    def __post_init__(self) -> None:
        if self.max_consecutive_failures < 1:
            raise ValueError("max_consecutive_failures must be at least 1")
        if self.base_lock_seconds < 1:
            raise ValueError("base_lock_seconds must be at least 1")
        if self.max_lock_seconds < self.base_lock_seconds:
            raise ValueError("max_lock_seconds must be at least base_lock_seconds")
        if self.hard_limit < self.max_consecutive_failures:
            raise ValueError("hard_limit must be at least max_consecutive_failures")

    def lock_seconds(self, failed_attempts: int) -> int | None:
        """How long ``failed_attempts`` consecutive failures lock the factor for.

        ``0`` below the threshold, ``None`` (for ever) at or above ``hard_limit``.
        """
        if failed_attempts >= self.hard_limit:
            return None
        excess = failed_attempts - self.max_consecutive_failures
        if excess < 0:
            return 0
        # Cap the exponent before shifting: 2**excess for a large excess is a huge int.
        if excess >= self.max_lock_seconds.bit_length():
            return self.max_lock_seconds
        return min(self.base_lock_seconds << excess, self.max_lock_seconds)

    def is_locked(
        self, *, failed_attempts: int, locked_until: datetime | None, now: datetime
    ) -> bool:
        """Whether the factor may not be tried at ``now``.

        True at or past ``hard_limit`` failures whatever ``locked_until`` says (so a lost or
        edited timestamp cannot reopen a permanently locked factor), or while ``now`` is
        before ``locked_until``.
        """
        _require_aware(now)
        if failed_attempts >= self.hard_limit:
            return True
        return locked_until is not None and now < locked_until

    def after_failure(self, *, failed_attempts: int, now: datetime) -> LockState:
        """The state after one more wrong code, given the count stored before it."""
        _require_aware(now)
        attempts = max(failed_attempts, 0) + 1
        seconds = self.lock_seconds(attempts)
        if seconds is None:
            return LockState(
                failed_attempts=attempts, locked_until=PERMANENT_LOCK, permanently_locked=True
            )
        locked_until = now + timedelta(seconds=seconds) if seconds else None
        return LockState(failed_attempts=attempts, locked_until=locked_until)

    def after_success(self) -> LockState:
        """The state after a right code: no failures, no lock."""
        return LockState(failed_attempts=0, locked_until=None)
