"""Notices to users about security events (the ``Notifier`` port's implementation).

``notify`` only schedules: the notice is sent by a background task after the triggering
operation committed, under a timeout, so sending never blocks or breaks the security
operation. Each notice goes to the subject's active email factors (or, with none, the
subject's ``email``) and active SMS factors; per subject, type and channel it is rate-limited
(``DeliveryConfig.notice_limit``) and counted in the channel's global budget. Every outcome is
audited: ``notice.sent``, ``notice.suppressed`` (a limit, or nowhere to send it) or
``notice.failed``; a failure is never raised. Notices carry no code, secret or link.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stepguard.core.assurance import FactorType
from stepguard.core.factors.oob import Channel, destination_key
from stepguard.core.model import AuditEvent, FactorStatus
from stepguard.core.notices import Notice, NoticeType
from stepguard.service.attempts import RejectedAttemptError
from stepguard.service.deps import Deps
from stepguard.service.ports import NoticeMessage, SendError

__all__ = ["NotificationService", "attempt_notices", "confirm_notices", "enroll_notices"]

_CHANNELS = {FactorType.EMAIL_OTP: Channel.EMAIL, FactorType.SMS_OTP: Channel.SMS}


def attempt_notices(
    subject_id: str | None, factor_type: str | None, failure: RejectedAttemptError | None
) -> list[Notice]:
    """What a step-up attempt tells the user: recovery codes used, or a lockout reached."""
    if subject_id is None:
        return []
    details = {"factor_type": factor_type or "unknown"}
    if failure is None and factor_type == FactorType.RECOVERY_CODE.value:
        return [Notice(subject_id=subject_id, type=NoticeType.RECOVERY_CODES_USED, details={})]
    if failure is not None and failure.locked:
        return [Notice(subject_id=subject_id, type=NoticeType.LOCKOUT_REACHED, details=details)]
    return []


def confirm_notices(
    subject_id: str, factor_type: FactorType | None, failure: RejectedAttemptError | None
) -> list[Notice]:
    """A confirmed factor was added; a failed confirmation may have reached the lockout."""
    details = {"factor_type": factor_type.value if factor_type else "unknown"}
    if failure is None:
        return [Notice(subject_id=subject_id, type=NoticeType.FACTOR_ADDED, details=details)]
    if failure.locked:
        return [Notice(subject_id=subject_id, type=NoticeType.LOCKOUT_REACHED, details=details)]
    return []


def enroll_notices(
    subject_id: str, factor_type: FactorType, *, active: bool, renewed: bool
) -> list[Notice]:
    """Only factors active at enrollment (recovery codes) are news; the others on confirm."""
    if not active:
        return []
    if renewed:
        return [Notice(subject_id=subject_id, type=NoticeType.RECOVERY_CODES_REGENERATED)]
    details = {"factor_type": factor_type.value}
    return [Notice(subject_id=subject_id, type=NoticeType.FACTOR_ADDED, details=details)]


class NotificationService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, *notices: Notice) -> None:
        outbound = self._deps.outbound
        if outbound.email is None and outbound.sms is None:
            return  # no channel configured: notices are off (nothing to schedule or audit)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing can be sent (never raise)
            return
        for notice in notices:
            task = loop.create_task(self._deliver(notice))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def new_device_step_up(self, subject_id: str, *, device: str) -> None:
        """The hook for the risk engine's new-device signal: call it after a step-up
        satisfied from a device the subject has not used before."""
        self.notify(
            Notice(
                subject_id=subject_id,
                type=NoticeType.NEW_DEVICE_STEP_UP,
                details={"device": device},
            )
        )

    async def _deliver(self, notice: Notice) -> None:
        try:
            await self._send_all(notice)
        except Exception as error:  # a notice never breaks anything: audit, do not raise
            await self._audit(notice, "notice.failed", "failure", reason=type(error).__name__)

    async def _audit(self, notice: Notice, event: str, outcome: str, **details: Any) -> None:
        try:
            async with self._deps.store.transaction() as uow:
                await uow.audit.append(
                    AuditEvent(
                        type=event,
                        at=self._deps.clock.now(),
                        outcome=outcome,
                        subject_id=notice.subject_id,
                        details={"notice": notice.type.value, **details},
                    )
                )
        except Exception:  # noqa: S110 - the store is down: nothing more can be done here
            pass

    async def _send_all(self, notice: Notice) -> None:
        deps = self._deps
        outbound = deps.outbound
        async with deps.store.read() as uow:
            subject = await uow.subjects.get(notice.subject_id)
            factors = await uow.factors.list_for_subject(notice.subject_id)
        destinations: list[tuple[Channel, str]] = []
        for factor in factors:
            channel = _CHANNELS.get(factor.type)
            if (
                channel is not None
                and factor.status is FactorStatus.ACTIVE
                and factor.destination is not None
            ):
                destinations.append((channel, factor.destination.reveal()))
        if (
            subject is not None
            and subject.email
            and Channel.EMAIL not in {c for c, _ in destinations}
        ):
            destinations.append((Channel.EMAIL, subject.email))
        destinations = [(c, d) for c, d in dict.fromkeys(destinations) if outbound.sender(c)]
        if not destinations or outbound.config.code_key is None:
            await self._audit(notice, "notice.suppressed", "suppressed", reason="no destination")
            return
        for channel, destination in destinations:
            await self._send_one(notice, channel, destination)

    async def _send_one(self, notice: Notice, channel: Channel, destination: str) -> None:
        deps = self._deps
        config = deps.outbound.config
        sender = deps.outbound.sender(channel)
        if sender is None or config.code_key is None:  # _send_all filtered these out
            return
        now = deps.clock.now()
        kind = f"notice:{notice.type.value}"
        scope: str | None = None
        async with deps.store.transaction() as uow:
            sends = uow.deliveries
            await sends.lock_sends()
            limit = config.global_limits.get(channel)
            if (
                await sends.count_sends(
                    since=now - config.notice_limit.window,
                    kind=kind,
                    subject_id=notice.subject_id,
                    channel=channel,
                )
                >= config.notice_limit.count
            ):
                scope = "subject"
            elif (
                limit is not None
                and await sends.count_sends(since=now - limit.window, channel=channel)
                >= limit.count
            ):
                scope = "global"
            else:
                await sends.record_send(
                    at=now,
                    channel=channel,
                    kind=kind,
                    subject_id=notice.subject_id,
                    destination_key=destination_key(
                        key=config.code_key.reveal(), channel=channel, destination=destination
                    ),
                )
            if scope is not None:
                await uow.audit.append(
                    AuditEvent(
                        type="notice.suppressed",
                        at=now,
                        outcome="suppressed",
                        subject_id=notice.subject_id,
                        details={
                            "notice": notice.type.value,
                            "channel": channel.value,
                            "reason": f"{scope} limit",
                        },
                    )
                )
        if scope is not None:
            return
        message = NoticeMessage(
            to=destination,
            type=notice.type,
            at=now,
            issuer=config.issuer,
            details=dict(notice.details),
        )
        reason: str | None = None
        try:
            async with asyncio.timeout(config.send_timeout_seconds):
                await sender.send_notice(message)
        except SendError as error:
            reason = error.reason
        except TimeoutError:
            reason = "timeout"
        except Exception as error:
            reason = f"sender error ({type(error).__name__})"
        if reason is None:
            await self._audit(notice, "notice.sent", "ok", channel=channel.value)
        else:
            await self._audit(
                notice, "notice.failed", "failure", channel=channel.value, reason=reason
            )
