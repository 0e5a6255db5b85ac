"""Email and SMS codes: enrollment of a destination, and codes sent for a step-up challenge.

A send has three steps, so that no transaction waits on a provider:

1. One transaction checks the send limits (per subject, per destination, per channel
   globally: sliding windows over the send log, serialized across processes), records the
   send, invalidates the factor's live codes (a resend replaces the previous code), and stores
   the new code as an HMAC over the code and its binding (subject, factor, purpose,
   challenge), with its audit record.
2. The sender hands the message to the provider, outside any transaction, under a timeout.
3. A second transaction records the outcome. A failed send invalidates its code and raises
   ``DeliveryFailedError`` (503): no provider answer, code or secret reaches the caller, and
   nothing falls back to another factor; the user may pick another enrolled factor.

A refusal by a send limit is ``DeliveryRateLimitedError`` whichever limit refused (so it
reveals nothing about a destination), audited as ``delivery.refused`` with the limit's scope.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from stepguard.core.assurance import FactorType, can_reach, step_up_factor
from stepguard.core.errors import (
    ConflictError,
    DeliveryFailedError,
    DeliveryRateLimitedError,
    InvalidRequestError,
    NotFoundError,
)
from stepguard.core.factors.oob import (
    Channel,
    CodeBinding,
    CodePurpose,
    code_hash,
    destination_key,
    generate_code,
    mask,
    normalize_destination,
)
from stepguard.core.ids import new_id
from stepguard.core.model import (
    AuditEvent,
    Challenge,
    ChallengeStatus,
    DeliveryCode,
    Factor,
    FactorStatus,
    Subject,
)
from stepguard.core.secret import Secret
from stepguard.service.deps import Deps
from stepguard.service.ports import CodeMessage, SendError, UnitOfWork

__all__ = ["OOB_FACTOR_TYPES", "DeliveryService", "PendingSend", "SentCode"]

OOB_FACTOR_TYPES: dict[FactorType, Channel] = {
    FactorType.EMAIL_OTP: Channel.EMAIL,
    FactorType.SMS_OTP: Channel.SMS,
}
CODE_KIND = "code"
_ENROLL_SUMMARY = {
    Channel.EMAIL: "Confirm this email address for sign-in codes",
    Channel.SMS: "Confirm this phone number for sign-in codes",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SentCode:
    """A code handed to the provider. ``destination`` is masked."""

    delivery_id: str
    factor_id: str
    channel: Channel
    destination: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingSend:
    """A code stored and committed, not yet handed to the provider."""

    sent: SentCode
    message: CodeMessage
    subject_id: str
    session_id: str | None
    actor: str | None
    factor: Factor
    remove_factor_on_failure: bool

    def __repr__(self) -> str:
        return f"PendingSend(delivery_id={self.sent.delivery_id!r})"


class _RateLimitedError(DeliveryRateLimitedError):
    """Carries what the audit record needs; callers only ever see the plain error."""

    def __init__(self, *, scope: str, subject_id: str, factor_id: str, channel: Channel) -> None:
        super().__init__()
        self.scope = scope
        self.subject_id = subject_id
        self.factor_id = factor_id
        self.channel = channel


class DeliveryService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    # --- step-up codes ------------------------------------------------------------------

    async def send(self, challenge_id: str, factor_id: str, *, actor: str | None) -> SentCode:
        """Send a fresh code for ``challenge_id`` to the factor's destination."""
        deps = self._deps
        now = deps.clock.now()
        async with (
            self.refusals_audited(session_id=None, actor=actor),
            deps.store.transaction() as uow,
        ):
            challenge = await uow.challenges.get(challenge_id)
            if challenge is None:
                raise NotFoundError("No such challenge.")
            if challenge.effective_status(now) is not ChallengeStatus.PENDING:
                raise ConflictError("The challenge is no longer pending.")
            factor = await self._usable_factor(uow, challenge, factor_id, now=now)
            subject = await uow.subjects.get(challenge.subject_id)
            if subject is None:
                raise NotFoundError("No such subject.")
            pending = await self._prepare(
                uow,
                subject=subject,
                factor=factor,
                purpose=CodePurpose.STEP_UP,
                challenge=challenge,
                now=now,
                actor=actor,
                session_id=challenge.session_id,
                remove_factor_on_failure=False,
            )
        return await self.dispatch(pending)

    async def _usable_factor(
        self, uow: UnitOfWork, challenge: Challenge, factor_id: str, *, now: datetime
    ) -> Factor:
        """The active email/SMS factor that can satisfy the challenge, or a refusal."""
        factor = await uow.factors.get(challenge.subject_id, factor_id)
        session = await uow.sessions.get(challenge.session_id)
        if (
            factor is None
            or factor.status is not FactorStatus.ACTIVE
            or factor.type not in OOB_FACTOR_TYPES
            or factor.destination is None
            or session is None
            or not session.is_active(now)
            or not can_reach(
                session.factors,
                step_up_factor(factor.type, factor_id=factor.id, at=now),
                challenge.requirement,
            )
        ):
            raise ConflictError(
                "This factor cannot receive a code for this challenge; pick another factor."
            )
        return factor

    # --- enrollment -----------------------------------------------------------------------

    async def begin_enrollment(
        self,
        uow: UnitOfWork,
        subject: Subject,
        factor_type: FactorType,
        *,
        destination: str | None,
        label: str,
        now: datetime,
        actor: str | None,
        session_id: str | None,
    ) -> PendingSend:
        """Store a pending email/SMS factor and its first code (purpose ``enroll``) in the
        caller's transaction. Send with :meth:`dispatch` after the commit."""
        channel = OOB_FACTOR_TYPES[factor_type]
        if self._deps.outbound.sender(channel) is None:
            raise InvalidRequestError(f"{channel.value} delivery is not configured on this server")
        if destination is None:
            raise InvalidRequestError(f"{factor_type.value} needs a destination")
        normalized = normalize_destination(channel, destination)
        factor = Factor(
            id=new_id(self._deps.rng, "fac"),
            subject_id=subject.id,
            type=factor_type,
            status=FactorStatus.PENDING,
            label=label or mask(channel, normalized),
            created_at=now,
            destination=Secret(normalized),
        )
        await uow.factors.add(factor)
        return await self._prepare(
            uow,
            subject=subject,
            factor=factor,
            purpose=CodePurpose.ENROLL,
            challenge=None,
            now=now,
            actor=actor,
            session_id=session_id,
            remove_factor_on_failure=True,
        )

    # --- the shared steps -----------------------------------------------------------------

    async def _prepare(
        self,
        uow: UnitOfWork,
        *,
        subject: Subject,
        factor: Factor,
        purpose: CodePurpose,
        challenge: Challenge | None,
        now: datetime,
        actor: str | None,
        session_id: str | None,
        remove_factor_on_failure: bool,
    ) -> PendingSend:
        deps = self._deps
        config = deps.outbound.config
        channel = OOB_FACTOR_TYPES[factor.type]
        if config.code_key is None or deps.outbound.sender(channel) is None:
            raise DeliveryFailedError()
        if factor.destination is None:
            raise DeliveryFailedError()
        key = config.code_key.reveal()
        destination = factor.destination.reveal()
        dest_key = destination_key(key=key, channel=channel, destination=destination)

        sends = uow.deliveries
        await sends.lock_sends()
        await sends.prune_sends(before=now - config.longest_window)
        scope: str | None = None
        if (
            await sends.count_sends(
                since=now - config.per_subject.window, kind=CODE_KIND, subject_id=subject.id
            )
            >= config.per_subject.count
        ):
            scope = "subject"
        elif (
            await sends.count_sends(
                since=now - config.per_destination.window,
                kind=CODE_KIND,
                destination_key=dest_key,
            )
            >= config.per_destination.count
        ):
            scope = "destination"
        else:
            limit = config.global_limits.get(channel)
            if (
                limit is not None
                and await sends.count_sends(since=now - limit.window, channel=channel)
                >= limit.count
            ):
                scope = "global"
        if scope is not None:
            raise _RateLimitedError(
                scope=scope, subject_id=subject.id, factor_id=factor.id, channel=channel
            )
        await sends.record_send(
            at=now, channel=channel, kind=CODE_KIND, subject_id=subject.id, destination_key=dest_key
        )

        replaced = await sends.invalidate_codes(factor.id, at=now)
        delivery_id = new_id(deps.rng, "dlv")
        expires_at = now + config.code_ttl
        if challenge is not None:
            expires_at = min(expires_at, challenge.expires_at)
        binding = CodeBinding(
            delivery_id=delivery_id,
            subject_id=subject.id,
            factor_id=factor.id,
            purpose=purpose,
            challenge_id=challenge.id if challenge else None,
        )
        code = generate_code(deps.rng, digits=config.code_digits)
        await sends.add_code(
            DeliveryCode(
                id=delivery_id,
                subject_id=subject.id,
                factor_id=factor.id,
                purpose=purpose.value,
                challenge_id=binding.challenge_id,
                code_hash=code_hash(key=key, binding=binding, code=code.reveal()),
                created_at=now,
                expires_at=expires_at,
            )
        )
        masked = mask(channel, destination)
        await uow.audit.append(
            AuditEvent(
                type="delivery.code_issued",
                at=now,
                outcome="ok",
                subject_id=subject.id,
                session_id=session_id,
                actor=actor,
                details={
                    "delivery_id": delivery_id,
                    "factor_id": factor.id,
                    "channel": channel.value,
                    "destination": masked,
                    "purpose": purpose.value,
                    "challenge_id": binding.challenge_id,
                    "replaced_codes": replaced,
                    "expires_at": expires_at.isoformat(),
                },
            )
        )
        summary = challenge.summary if challenge else _ENROLL_SUMMARY[channel]
        message = CodeMessage(
            to=destination,
            code=code,
            purpose=purpose,
            summary=summary,
            action=challenge.action if challenge else None,
            expires_at=expires_at,
            ttl_minutes=max(1, math.ceil((expires_at - now).total_seconds() / 60)),
            issuer=config.issuer,
        )
        return PendingSend(
            sent=SentCode(
                delivery_id=delivery_id,
                factor_id=factor.id,
                channel=channel,
                destination=masked,
                expires_at=expires_at,
            ),
            message=message,
            subject_id=subject.id,
            session_id=session_id,
            actor=actor,
            factor=factor,
            remove_factor_on_failure=remove_factor_on_failure,
        )

    async def dispatch(self, pending: PendingSend) -> SentCode:
        """Hand a committed code to its provider; record the outcome.

        On failure the code is invalidated (and a factor being enrolled is removed), the
        failure is audited with a safe reason, and ``DeliveryFailedError`` is raised.
        """
        deps = self._deps
        sent = pending.sent
        sender = deps.outbound.sender(sent.channel)
        reason: str | None = None
        try:
            if sender is None:
                raise SendError("no sender configured")
            async with asyncio.timeout(deps.outbound.config.send_timeout_seconds):
                await sender.send_code(pending.message)
        except SendError as error:
            reason = error.reason
        except TimeoutError:
            reason = "timeout"
        except Exception as error:  # any sender bug is a failed send, never a success
            reason = f"sender error ({type(error).__name__})"
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            if reason is not None:
                await uow.deliveries.invalidate_code(sent.delivery_id, at=now)
                if pending.remove_factor_on_failure:
                    await uow.factors.delete(sent.factor_id)
            await uow.audit.append(
                AuditEvent(
                    type="delivery.sent" if reason is None else "delivery.failed",
                    at=now,
                    outcome="ok" if reason is None else "failure",
                    subject_id=pending.subject_id,
                    session_id=pending.session_id,
                    actor=pending.actor,
                    details={
                        "delivery_id": sent.delivery_id,
                        "factor_id": sent.factor_id,
                        "channel": sent.channel.value,
                        "purpose": pending.message.purpose.value,
                        "reason": reason,
                        "factor_removed": reason is not None and pending.remove_factor_on_failure,
                    },
                )
            )
        if reason is not None:
            raise DeliveryFailedError()
        return sent

    @asynccontextmanager
    async def refusals_audited(
        self, *, session_id: str | None, actor: str | None
    ) -> AsyncIterator[None]:
        """Audit a send-limit refusal after the refused transaction rolled back; the caller
        gets a plain ``DeliveryRateLimitedError`` that names no limit."""
        try:
            yield
        except _RateLimitedError as refused:
            async with self._deps.store.transaction() as uow:
                await uow.audit.append(
                    AuditEvent(
                        type="delivery.refused",
                        at=self._deps.clock.now(),
                        outcome="refused",
                        subject_id=refused.subject_id,
                        session_id=session_id,
                        actor=actor,
                        details={
                            "scope": refused.scope,
                            "factor_id": refused.factor_id,
                            "channel": refused.channel.value,
                        },
                    )
                )
            raise DeliveryRateLimitedError() from None
