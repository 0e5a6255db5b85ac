"""Verifying a step-up challenge: the single-use, rate-limited heart of StepGuard.

All of one attempt happens in one transaction that holds the factor's row lock, so attempts on
one factor are serialized across processes: the lockout check, the code check, the replay
floor, the failure counter and the audit record cannot interleave with another attempt.

Callers see one failure, ``VerificationFailedError``, whatever went wrong; the audit log gets
the precise reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from stepguard.core.assurance import (
    CompletedFactor,
    SessionAssurance,
    can_reach,
    summarize,
)
from stepguard.core.errors import VerificationFailedError
from stepguard.core.ids import new_token, token_hash
from stepguard.core.model import (
    AuditEvent,
    Challenge,
    ChallengeStatus,
    Factor,
    FactorStatus,
    Grant,
    Session,
)
from stepguard.core.notices import Notice, NoticeType
from stepguard.service.attempts import RejectedAttemptError, attempt_locked_factor
from stepguard.service.deps import Deps
from stepguard.service.notifications import attempt_notices
from stepguard.service.ports import UnitOfWork
from stepguard.service.webauthn import CodeProof, WebAuthnProof


class Proof(Protocol):
    """What a verification presents: it names its factor (``prepare``), says how that factor
    would count at best (``candidate``, to refuse early) and is checked under the factor's
    lock and the guessing limit (``check``, returning how it actually counts)."""

    factor_id: str | None

    async def prepare(self, uow: UnitOfWork, challenge: Challenge, *, now: datetime) -> str: ...

    def candidate(self, deps: Deps, factor: Factor, *, now: datetime) -> CompletedFactor: ...

    async def check(
        self, deps: Deps, uow: UnitOfWork, factor: Factor, *, now: datetime
    ) -> CompletedFactor: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedStepUp:
    """A satisfied challenge: the session's new assurance, and a grant when one is needed."""

    challenge: Challenge
    session: Session
    assurance: SessionAssurance
    grant: str | None = None
    grant_expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"VerifiedStepUp(challenge={self.challenge.id!r}, grant=<redacted>)"


class _LostRaceError(Exception):
    """Another attempt satisfied the challenge first; this one's writes must roll back."""


class VerificationService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def verify(
        self, challenge_id: str, *, factor_id: str, code: str, actor: str | None
    ) -> VerifiedStepUp:
        """Answer a challenge with a code of ``factor_id``."""
        return await self._verify(
            challenge_id, CodeProof(factor_id=factor_id, code=code), actor=actor
        )

    async def verify_webauthn(
        self,
        challenge_id: str,
        *,
        credential: Mapping[str, Any],
        factor_id: str | None = None,
        actor: str | None,
    ) -> VerifiedStepUp:
        """Answer a challenge with a WebAuthn assertion (``PublicKeyCredential.toJSON()``)
        to options from ``WebAuthnService.assertion_options``. Its credential id names the
        factor; ``factor_id``, if given, must agree."""
        return await self._verify(
            challenge_id, WebAuthnProof(credential=credential, factor_id=factor_id), actor=actor
        )

    async def verify_push(
        self, challenge_id: str, *, proof: Proof, actor: str | None
    ) -> VerifiedStepUp:
        """Answer a challenge with an approver device's signed answer
        (``service.push.PushProof``)."""
        return await self._verify(challenge_id, proof, actor=actor)

    async def _verify(
        self, challenge_id: str, proof: Proof, *, actor: str | None
    ) -> VerifiedStepUp:
        deps = self._deps
        now = deps.clock.now()
        factor_type: str | None = None
        failure: RejectedAttemptError | None = None
        try:
            async with deps.store.transaction() as uow:
                challenge = await uow.challenges.get(challenge_id)
                try:
                    if challenge is None:
                        raise RejectedAttemptError("unknown challenge", guess=False)
                    factor_id = await proof.prepare(uow, challenge, now=now)
                    factor = await uow.factors.get_for_update(challenge.subject_id, factor_id)
                    factor_type = factor.type.value if factor else None
                    if factor is not None:
                        # Read the challenge again under the factor's lock: a concurrent
                        # attempt may have satisfied it while this one waited, and losing
                        # that race must not count as a guess (READ COMMITTED sees it now).
                        challenge = await uow.challenges.get(challenge_id) or challenge
                    result = await self._attempt(uow, challenge, factor, proof, now=now)
                except RejectedAttemptError as rejected:
                    # Leave the block normally: the failure counter commits with its audit.
                    failure = rejected
                    await uow.audit.append(
                        _failure_event(
                            challenge_id, challenge, proof.factor_id, rejected.reason, now, actor
                        )
                    )
                else:
                    await uow.audit.append(
                        _success_event(result, factor_id, factor_type, now, actor)
                    )
        except _LostRaceError:
            failure = RejectedAttemptError(
                "challenge satisfied by a concurrent attempt", guess=False
            )
            async with deps.store.transaction() as uow:
                await uow.audit.append(
                    _failure_event(challenge_id, None, proof.factor_id, failure.reason, now, actor)
                )
        deps.notifier.notify(
            *attempt_notices(challenge.subject_id if challenge else None, factor_type, failure)
        )
        if failure is not None:
            deps.risk.failed(challenge=challenge if failure.guess else None, now=now)
            deps.observer.verification(outcome="failure", factor_type=factor_type)
            raise VerificationFailedError()
        deps.observer.verification(outcome="success", factor_type=factor_type)
        device = deps.risk.new_device(challenge=result.challenge)
        if device is not None:
            deps.notifier.notify(
                Notice(
                    subject_id=result.challenge.subject_id,
                    type=NoticeType.NEW_DEVICE_STEP_UP,
                    details={"device": device},
                )
            )
        await deps.risk.learn_step_up(challenge=result.challenge, session=result.session, now=now)
        return result

    async def _attempt(
        self,
        uow: UnitOfWork,
        challenge: Challenge,
        factor: Factor | None,
        proof: Proof,
        *,
        now: datetime,
    ) -> VerifiedStepUp:
        deps = self._deps
        if challenge.effective_status(now) is not ChallengeStatus.PENDING:
            raise RejectedAttemptError(
                f"challenge {challenge.effective_status(now).value}", guess=False
            )
        session = await uow.sessions.get(challenge.session_id)
        if session is None or not session.is_active(now):
            raise RejectedAttemptError("session no longer active", guess=False)
        if factor is None or factor.status is not FactorStatus.ACTIVE:
            raise RejectedAttemptError("unknown or inactive factor", guess=False)
        if not can_reach(
            session.factors, proof.candidate(deps, factor, now=now), challenge.requirement
        ):
            raise RejectedAttemptError("factor cannot satisfy the requirement", guess=False)

        completed = await attempt_locked_factor(
            uow,
            factor,
            lambda: proof.check(deps, uow, factor, now=now),
            now=now,
            lockout=deps.config.lockout,
        )
        if not can_reach(session.factors, completed, challenge.requirement):
            # A WebAuthn assertion without UV where only UV reaches the level (the options
            # asked for it, so the library refused it already; kept as a second lock).
            raise RejectedAttemptError("proof cannot satisfy the requirement", guess=False)

        if not await uow.challenges.mark_satisfied(challenge.id, at=now, factor_id=factor.id):
            raise _LostRaceError()
        await uow.sessions.add_factor(session.id, completed)
        session_factors = (*session.factors, completed)
        grant: str | None = None
        grant_expires_at: datetime | None = None
        if challenge.requirement.needs_grant:
            ttl = deps.config.grant_ttl
            if challenge.requirement.max_age:
                ttl = min(ttl, timedelta(seconds=challenge.requirement.max_age))
            token = new_token(deps.rng, "sgg")
            grant_expires_at = now + ttl
            await uow.grants.add(
                Grant(
                    token_hash=token_hash(token.reveal()),
                    subject_id=challenge.subject_id,
                    session_id=challenge.session_id,
                    action=challenge.action,
                    transaction_digest=challenge.transaction_digest,
                    challenge_id=challenge.id,
                    created_at=now,
                    expires_at=grant_expires_at,
                )
            )
            grant = token.reveal()
        return VerifiedStepUp(
            challenge=challenge,
            session=session,
            assurance=summarize(session_factors),
            grant=grant,
            grant_expires_at=grant_expires_at,
        )


def _failure_event(
    challenge_id: str,
    challenge: Challenge | None,
    factor_id: str | None,
    reason: str,
    now: datetime,
    actor: str | None,
) -> AuditEvent:
    return AuditEvent(
        type="verification.failed",
        at=now,
        outcome="failure",
        subject_id=challenge.subject_id if challenge else None,
        session_id=challenge.session_id if challenge else None,
        actor=actor,
        details={"challenge_id": challenge_id, "factor_id": factor_id, "reason": reason},
    )


def _success_event(
    result: VerifiedStepUp,
    factor_id: str,
    factor_type: str | None,
    now: datetime,
    actor: str | None,
) -> AuditEvent:
    challenge = result.challenge
    return AuditEvent(
        type="verification.succeeded",
        at=now,
        outcome="ok",
        subject_id=challenge.subject_id,
        session_id=challenge.session_id,
        actor=actor,
        details={
            "challenge_id": challenge.id,
            "factor_id": factor_id,
            "factor_type": factor_type,
            "action": challenge.action,
            "rule": challenge.rule,
            "grant_issued": result.grant is not None,
            "acr": result.assurance.level.acr if result.assurance.level else None,
        },
    )
