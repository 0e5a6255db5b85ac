"""Enrolling, confirming and removing factors.

Once a subject has an active factor, every change needs a session that passed a fresh step-up
(the policy action ``stepguard.factors.manage``, never weaker than aal2 within
``management_max_age``), and a factor cannot vouch for its own enrollment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepguard.core.assurance import (
    AssuranceLevel,
    FactorType,
    Requirement,
    gates_changes,
    satisfies,
)
from stepguard.core.decision import strictest
from stepguard.core.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PolicyEvaluationError,
    StepUpRequiredError,
    VerificationFailedError,
)
from stepguard.core.factors.oob import CodePurpose
from stepguard.core.factors.recovery import generate_recovery_codes
from stepguard.core.factors.totp import TotpSpec, generate_totp_secret, totp_uri
from stepguard.core.ids import new_id
from stepguard.core.model import AuditEvent, Factor, FactorStatus, Subject
from stepguard.core.notices import Notice, NoticeType
from stepguard.core.policy.model import Outcome
from stepguard.core.risk import LOW_RISK
from stepguard.core.secret import Secret
from stepguard.service.attempts import RejectedAttemptError, attempt_locked_factor, check_code
from stepguard.service.decisions import policy_input
from stepguard.service.delivery import OOB_FACTOR_TYPES, DeliveryService, PendingSend, SentCode
from stepguard.service.deps import Deps
from stepguard.service.notifications import confirm_notices, enroll_notices
from stepguard.service.ports import UnitOfWork
from stepguard.service.push import begin_pairing
from stepguard.service.webauthn import (
    WebAuthnRegistrationRequest,
    begin_registration,
    consume_registration_ceremony,
    finish_registration,
)

MANAGE_ACTION = "stepguard.factors.manage"
# A policy that asks "every time" for management gets this freshness instead: enrollment has
# no transaction to bind a grant to.
EVERY_TIME_AS_SECONDS = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrollment:
    """A new or renewed factor, with what the user must see once (URI, codes)."""

    factor: Factor
    otpauth_uri: Secret[str] | None = None
    recovery_codes: tuple[Secret[str], ...] = ()
    webauthn_options: dict[str, Any] | None = None  # PublicKeyCredentialCreationOptions JSON
    sent: SentCode | None = None  # email/SMS: where the confirmation code went
    pairing_url: Secret[str] | None = None  # push: the one-time link the device opens


class FactorService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._delivery = DeliveryService(deps)

    async def list(self, subject_id: str) -> list[Factor]:
        async with self._deps.store.read() as uow:
            if await uow.subjects.get(subject_id) is None:
                raise NotFoundError("No such subject.")
            return await uow.factors.list_for_subject(subject_id)

    @asynccontextmanager
    async def _refusal_audited(
        self, change: str, subject_id: str, session_id: str | None, actor: str | None
    ) -> AsyncIterator[None]:
        """A refused factor change is a security decision too: record it durably, after the
        refused change's own transaction has rolled back."""
        try:
            yield
        except StepUpRequiredError as error:
            async with self._deps.store.transaction() as uow:
                await uow.audit.append(
                    AuditEvent(
                        type="factor.change_refused",
                        at=self._deps.clock.now(),
                        outcome="refused",
                        subject_id=subject_id,
                        session_id=session_id,
                        actor=actor,
                        details={"change": change, "reason": error.message},
                    )
                )
            raise

    async def _gate(
        self,
        uow: UnitOfWork,
        subject: Subject,
        session_id: str | None,
        *,
        proof_excludes: str | None,
        now: datetime,
    ) -> None:
        """Raise ``StepUpRequiredError`` unless the session may manage factors now."""
        factors = await uow.factors.list_for_subject(subject.id)
        if not any(f.status is FactorStatus.ACTIVE and gates_changes(f.type) for f in factors):
            return  # the first factor: nothing to step up with yet (email never is one)
        if session_id is None:
            raise StepUpRequiredError()
        session = await uow.sessions.get(session_id)
        if session is None or session.subject_id != subject.id or not session.is_active(now):
            raise StepUpRequiredError()
        requirement = Requirement(
            acr=AssuranceLevel.AAL2, max_age=self._deps.config.management_max_age
        )
        inp = policy_input(
            subject=subject,
            session=session,
            action=MANAGE_ACTION,
            resource=None,
            context={},
            ip=None,
            user_agent=None,
            risk=LOW_RISK,
            now=now,
        )
        try:
            rule = self._deps.policy.current.evaluate(inp)
        except PolicyEvaluationError:
            raise StepUpRequiredError("The policy could not be evaluated.") from None
        if rule.outcome is Outcome.DENY:
            raise StepUpRequiredError("The policy does not allow managing factors.")
        if rule.requirement is not None:
            policy_requirement = rule.requirement
            if policy_requirement.max_age == 0:
                policy_requirement = Requirement(
                    acr=policy_requirement.acr,
                    max_age=EVERY_TIME_AS_SECONDS,
                    methods=policy_requirement.methods,
                )
            requirement = strictest(requirement, policy_requirement)
        requirement = Requirement(
            acr=requirement.acr, max_age=requirement.max_age, methods=requirement.methods
        )
        active_ids = {f.id for f in factors if f.status is FactorStatus.ACTIVE}
        proofs = [
            f
            for f in session.factors
            if f.primary or (f.factor_id in active_ids and f.factor_id != proof_excludes)
        ]
        if not satisfies(proofs, requirement, now=now):
            raise StepUpRequiredError()

    async def _subject(self, uow: UnitOfWork, subject_id: str) -> Subject:
        subject = await uow.subjects.get(subject_id)
        if subject is None:
            raise NotFoundError("No such subject.")
        return subject

    async def enroll(
        self,
        subject_id: str,
        *,
        factor_type: FactorType,
        label: str,
        session_id: str | None,
        totp: TotpSpec | None,
        actor: str | None,
        webauthn: WebAuthnRegistrationRequest | None = None,
        destination: str | None = None,
    ) -> Enrollment:
        deps = self._deps
        now = deps.clock.now()
        pending: PendingSend | None = None
        async with (
            self._refusal_audited("enroll", subject_id, session_id, actor),
            self._delivery.refusals_audited(session_id=session_id, actor=actor),
            deps.store.transaction() as uow,
        ):
            subject = await self._subject(uow, subject_id)
            existing = await uow.factors.list_for_subject(subject_id)
            if webauthn is not None and factor_type is not FactorType.WEBAUTHN:
                raise InvalidRequestError("WebAuthn parameters apply to webauthn factors only")
            if factor_type is FactorType.TOTP:
                await self._gate(uow, subject, session_id, proof_excludes=None, now=now)
                spec = totp or TotpSpec()
                secret = generate_totp_secret(deps.rng)
                factor = Factor(
                    id=new_id(deps.rng, "fac"),
                    subject_id=subject_id,
                    type=FactorType.TOTP,
                    status=FactorStatus.PENDING,
                    label=label or "Authenticator app",
                    created_at=now,
                    totp=spec.to_parameters(),
                    secret=Secret(secret),
                )
                await uow.factors.add(factor)
                uri = totp_uri(
                    secret=secret,
                    spec=spec,
                    account_name=subject.email or subject.id,
                    issuer=deps.config.totp_issuer,
                )
                enrollment = Enrollment(factor=factor, otpauth_uri=Secret(uri))
            elif factor_type is FactorType.RECOVERY_CODE:
                if totp is not None:
                    raise InvalidRequestError("TOTP parameters apply to totp factors only")
                current = next((f for f in existing if f.type is FactorType.RECOVERY_CODE), None)
                await self._gate(
                    uow,
                    subject,
                    session_id,
                    proof_excludes=current.id if current else None,
                    now=now,
                )
                codes = generate_recovery_codes(deps.rng, count=deps.config.recovery_code_count)
                if current is None:
                    factor = Factor(
                        id=new_id(deps.rng, "fac"),
                        subject_id=subject_id,
                        type=FactorType.RECOVERY_CODE,
                        status=FactorStatus.ACTIVE,
                        label=label or "Recovery codes",
                        created_at=now,
                        confirmed_at=now,
                    )
                    await uow.factors.add(factor)
                else:
                    factor = current
                await uow.factors.replace_recovery_codes(factor.id, codes.hashes)
                enrollment = Enrollment(factor=factor, recovery_codes=codes.codes)
            elif factor_type is FactorType.WEBAUTHN:
                if totp is not None:
                    raise InvalidRequestError("TOTP parameters apply to totp factors only")
                await self._gate(uow, subject, session_id, proof_excludes=None, now=now)
                factor = Factor(
                    id=new_id(deps.rng, "fac"),
                    subject_id=subject_id,
                    type=FactorType.WEBAUTHN,
                    status=FactorStatus.PENDING,
                    label=label or "Security key",
                    created_at=now,
                )
                await uow.factors.add(factor)
                options = await begin_registration(
                    deps, uow, subject, factor, webauthn or WebAuthnRegistrationRequest(), now=now
                )
                enrollment = Enrollment(factor=factor, webauthn_options=options)
            elif factor_type is FactorType.PUSH:
                if totp is not None:
                    raise InvalidRequestError("TOTP parameters apply to totp factors only")
                await self._gate(uow, subject, session_id, proof_excludes=None, now=now)
                factor, pairing_url = await begin_pairing(deps, uow, subject, label=label, now=now)
                enrollment = Enrollment(factor=factor, pairing_url=pairing_url)
            elif factor_type in OOB_FACTOR_TYPES:
                await self._gate(uow, subject, session_id, proof_excludes=None, now=now)
                pending = await self._delivery.begin_enrollment(
                    uow,
                    subject,
                    factor_type,
                    destination=destination,
                    label=label,
                    now=now,
                    actor=actor,
                    session_id=session_id,
                )
                enrollment = Enrollment(factor=pending.factor)
            else:  # pragma: no cover - every FactorType has a branch
                raise InvalidRequestError(f"cannot enroll {factor_type}")
            await uow.audit.append(
                AuditEvent(
                    type="factor.enrolled",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    session_id=session_id,
                    actor=actor,
                    details={
                        "factor_id": enrollment.factor.id,
                        "factor_type": factor_type.value,
                        "status": enrollment.factor.status.value,
                        "renewed": bool(enrollment.recovery_codes)
                        and enrollment.factor.created_at != now,
                    },
                )
            )
        if pending is not None:
            enrollment = Enrollment(
                factor=enrollment.factor, sent=await self._delivery.dispatch(pending)
            )
        deps.notifier.notify(
            *enroll_notices(
                subject_id,
                factor_type,
                active=enrollment.factor.status is FactorStatus.ACTIVE,
                renewed=enrollment.factor.created_at != now,
            )
        )
        return enrollment

    async def confirm(
        self,
        subject_id: str,
        factor_id: str,
        *,
        code: str | None = None,
        credential: Mapping[str, Any] | None = None,
        session_id: str | None,
        actor: str | None,
    ) -> Factor:
        """Activate a pending factor: TOTP, email or SMS with its first valid code, WebAuthn
        with the browser's registration response (``PublicKeyCredential.toJSON()``) to its
        options.

        A WebAuthn response uses up its ceremony whether it verifies or not."""
        if (code is None) == (credential is None):
            raise InvalidRequestError("send either a code or a WebAuthn credential")
        deps = self._deps
        now = deps.clock.now()
        failure: RejectedAttemptError | None = None
        async with (
            self._refusal_audited("confirm", subject_id, session_id, actor),
            deps.store.transaction() as uow,
        ):
            subject = await self._subject(uow, subject_id)
            await self._gate(uow, subject, session_id, proof_excludes=factor_id, now=now)
            factor = await uow.factors.get_for_update(subject_id, factor_id)
            if factor is None:
                raise NotFoundError("No such factor.")
            if factor.status is not FactorStatus.PENDING:
                raise ConflictError("The factor is already confirmed.")
            if (factor.type is FactorType.WEBAUTHN) != (credential is not None):
                # Well-formed, but not what this factor's type takes: a conflict with the
                # factor's state, not a malformed request.
                raise ConflictError(
                    "a webauthn factor is confirmed with a credential, others with a code"
                )
            try:
                if credential is not None:
                    ceremony = await consume_registration_ceremony(uow, factor, credential, now=now)
                    await attempt_locked_factor(
                        uow,
                        factor,
                        lambda: finish_registration(
                            deps, uow, factor, ceremony, credential, now=now
                        ),
                        now=now,
                        lockout=deps.config.lockout,
                    )
                else:
                    assert code is not None
                    await attempt_locked_factor(
                        uow,
                        factor,
                        lambda: check_code(
                            uow,
                            factor,
                            code,
                            now=now,
                            purpose=CodePurpose.ENROLL,
                            challenge_id=None,
                            oob=deps.outbound.config,
                        ),
                        now=now,
                        lockout=deps.config.lockout,
                    )
            except RejectedAttemptError as rejected:
                failure = rejected
            else:
                await uow.factors.activate(factor_id, at=now)
            await uow.audit.append(
                AuditEvent(
                    type="factor.confirmed" if failure is None else "factor.confirm_failed",
                    at=now,
                    outcome="ok" if failure is None else "failure",
                    subject_id=subject_id,
                    session_id=session_id,
                    actor=actor,
                    details={
                        "factor_id": factor_id,
                        "reason": failure.reason if failure else None,
                    },
                )
            )
            updated = await uow.factors.get(subject_id, factor_id)
        deps.notifier.notify(*confirm_notices(subject_id, factor.type, failure))
        if failure is not None or updated is None:
            raise VerificationFailedError()
        return updated

    async def remove(
        self, subject_id: str, factor_id: str, *, session_id: str | None, actor: str | None
    ) -> None:
        deps = self._deps
        now = deps.clock.now()
        async with (
            self._refusal_audited("remove", subject_id, session_id, actor),
            deps.store.transaction() as uow,
        ):
            subject = await self._subject(uow, subject_id)
            factor = await uow.factors.get(subject_id, factor_id)
            if factor is None:
                raise NotFoundError("No such factor.")
            await self._gate(uow, subject, session_id, proof_excludes=None, now=now)
            await uow.factors.delete(factor_id)
            await uow.audit.append(
                AuditEvent(
                    type="factor.removed",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    session_id=session_id,
                    actor=actor,
                    details={"factor_id": factor_id, "factor_type": factor.type.value},
                )
            )
        deps.notifier.notify(
            Notice(
                subject_id=subject_id,
                type=NoticeType.FACTOR_REMOVED,
                details={"factor_type": factor.type.value},
            )
        )
