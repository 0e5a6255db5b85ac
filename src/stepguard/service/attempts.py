"""One attempt against one factor, under the guessing limit.

Shared by challenge verification and factor confirmation, for every factor type: the caller
passes the check (``check_code`` for codes, a WebAuthn check for credentials). The caller holds
the factor's row lock (``FactorRepository.get_for_update``) and commits the outcome with its
audit record. ``purpose`` and ``challenge_id`` say what a code must have been issued for:
email and SMS codes are bound to them (TOTP and recovery codes are not bound to anything).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from stepguard.core.assurance import FactorType
from stepguard.core.errors import InvalidCodeError
from stepguard.core.factors.oob import CodeBinding, CodePurpose, verify_code
from stepguard.core.factors.recovery import recovery_code_hash
from stepguard.core.factors.totp import TotpSpec, verify_totp
from stepguard.core.lockout import LockoutPolicy
from stepguard.core.model import Factor
from stepguard.service.outbound import DeliveryConfig
from stepguard.service.ports import UnitOfWork

T = TypeVar("T")
_OOB_TYPES = frozenset({FactorType.EMAIL_OTP, FactorType.SMS_OTP})


class RejectedAttemptError(Exception):
    """An attempt that failed; ``guess`` says whether it counts against the guessing limit."""

    def __init__(self, reason: str, *, guess: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.guess = guess
        self.locked = False  # this failure locked the factor (set by attempt_locked_factor)


async def _check_oob_code(
    uow: UnitOfWork,
    factor: Factor,
    code: str,
    *,
    now: datetime,
    purpose: CodePurpose,
    challenge_id: str | None,
    oob: DeliveryConfig,
) -> None:
    """An email/SMS code: the live code for exactly this binding, checked, then used once."""
    label = factor.type.value
    stored = await uow.deliveries.live_code(
        factor.id, purpose=purpose, challenge_id=challenge_id, at=now
    )
    # Counted as a guess either way: with no live code every submission is a guess.
    if stored is None:
        raise RejectedAttemptError(f"{label}: no live code for this purpose", guess=True)
    if oob.code_key is None:
        raise RejectedAttemptError(f"{label}: no code key configured", guess=False)
    binding = CodeBinding(
        delivery_id=stored.id,
        subject_id=factor.subject_id,
        factor_id=factor.id,
        purpose=purpose,
        challenge_id=challenge_id,
    )
    try:
        verify_code(
            key=oob.code_key.reveal(),
            binding=binding,
            code=code,
            digits=oob.code_digits,
            expected_hash=stored.code_hash,
        )
    except InvalidCodeError as error:
        raise RejectedAttemptError(f"{label}: {error.message}", guess=True) from None
    if not await uow.deliveries.use_code(stored.id, at=now):
        raise RejectedAttemptError(f"{label}: code already used", guess=True)


async def check_code(
    uow: UnitOfWork,
    factor: Factor,
    code: str,
    *,
    now: datetime,
    purpose: CodePurpose,
    challenge_id: str | None,
    oob: DeliveryConfig,
) -> None:
    """Check a code against a locked factor and burn it (replay floor or used code).

    Raises ``RejectedAttemptError(guess=True)`` when the code is wrong, malformed or already used.
    """
    if factor.type is FactorType.TOTP:
        if factor.secret is None or factor.totp is None:
            raise RejectedAttemptError("factor has no secret", guess=False)
        try:
            verified = verify_totp(
                code=code,
                secret=factor.secret,
                spec=TotpSpec.from_parameters(factor.totp),
                now=now,
                last_accepted_step=factor.last_step,
            )
        except InvalidCodeError as error:
            raise RejectedAttemptError(f"totp: {error.message}", guess=True) from None
        if not await uow.factors.advance_totp_step(factor.id, verified.step):
            raise RejectedAttemptError("totp: code already used", guess=True)
    elif factor.type is FactorType.RECOVERY_CODE:
        try:
            code_hash = recovery_code_hash(code)
        except InvalidCodeError:
            raise RejectedAttemptError("recovery code: malformed", guess=True) from None
        if not await uow.factors.consume_recovery_code(factor.id, code_hash, at=now):
            raise RejectedAttemptError("recovery code: unknown or already used", guess=True)
    elif factor.type in _OOB_TYPES:
        await _check_oob_code(
            uow, factor, code, now=now, purpose=purpose, challenge_id=challenge_id, oob=oob
        )
    else:  # pragma: no cover - every FactorType has a branch
        raise RejectedAttemptError(f"unsupported factor type {factor.type}", guess=False)


async def attempt_locked_factor(
    uow: UnitOfWork,
    factor: Factor,
    check: Callable[[], Awaitable[T]],
    *,
    now: datetime,
    lockout: LockoutPolicy,
) -> T:
    """The guessing limit around ``check`` (e.g. ``lambda: check_code(uow, factor, code,
    now=now)``): locked factors are not even checked.

    ``check`` raises ``RejectedAttemptError``; one with ``guess=True`` updates the counter (and
    maybe the lock) in the caller's transaction. Returns what ``check`` returned.
    """
    if lockout.is_locked(
        failed_attempts=factor.failed_attempts, locked_until=factor.locked_until, now=now
    ):
        raise RejectedAttemptError("factor locked after repeated failures", guess=False)
    try:
        result = await check()
    except RejectedAttemptError as rejected:
        if rejected.guess:
            state = lockout.after_failure(failed_attempts=factor.failed_attempts, now=now)
            await uow.factors.record_failure(
                factor.id, failed_attempts=state.failed_attempts, locked_until=state.locked_until
            )
            rejected.locked = lockout.is_locked(
                failed_attempts=state.failed_attempts, locked_until=state.locked_until, now=now
            )
        raise
    await uow.factors.record_success(factor.id, at=now)
    return result
