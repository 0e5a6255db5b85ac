"""External risk alerts: raise or clear a subject's risk with a reason and an expiry.

The hook a Shared Signals (CAEP/RISC) receiver will use. An active alert is a floor on the
subject's score. Raising and clearing are audited in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from stepguard.core.errors import ConflictError, InvalidRequestError, NotFoundError
from stepguard.core.ids import new_id
from stepguard.core.model import AuditEvent
from stepguard.core.risk import LevelThresholds, RiskLevel
from stepguard.core.risk.model import RiskAlert
from stepguard.service.deps import Deps


class RiskAlertService:
    def __init__(self, deps: Deps, *, thresholds: LevelThresholds) -> None:
        self._deps = deps
        self._thresholds = thresholds

    def score_for(self, *, score: float | None, level: str | None) -> float:
        """An alert's score: given directly, or the lowest score of the given level."""
        if (score is None) == (level is None):
            raise InvalidRequestError("give exactly one of score and level")
        if level is not None:
            try:
                return self._thresholds.floor(RiskLevel.parse(level))
            except ValueError as error:
                raise InvalidRequestError(str(error)) from None
        assert score is not None
        if not 0.0 <= score <= 1.0:
            raise InvalidRequestError("score must be within [0, 1]")
        return score

    async def raise_alert(
        self,
        subject_id: str,
        *,
        score: float | None,
        level: str | None,
        reason: str,
        expires_at: datetime,
        actor: str | None,
    ) -> RiskAlert:
        deps = self._deps
        now = deps.clock.now()
        value = self.score_for(score=score, level=level)
        if expires_at <= now:
            raise ConflictError("expires_at is not in the future")
        alert = RiskAlert(
            id=new_id(deps.rng, "ral"),
            subject_id=subject_id,
            score=value,
            reason=reason,
            created_at=now,
            expires_at=expires_at,
            actor=actor,
        )
        async with deps.store.transaction() as uow:
            if await uow.subjects.get(subject_id) is None:
                raise NotFoundError("No such subject.")
            await uow.risk.add_alert(alert)
            await uow.audit.append(
                AuditEvent(
                    type="risk.alert_raised",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    actor=actor,
                    details={
                        "alert_id": alert.id,
                        "score": value,
                        "reason": reason,
                        "expires_at": expires_at.isoformat(),
                    },
                )
            )
        deps.risk.forget(subject_id)
        return alert

    async def clear(self, subject_id: str, alert_id: str, *, actor: str | None) -> None:
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            if not await uow.risk.clear_alert(subject_id, alert_id, at=now):
                raise NotFoundError("No such active alert.")
            await uow.audit.append(
                AuditEvent(
                    type="risk.alert_cleared",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    actor=actor,
                    details={"alert_id": alert_id},
                )
            )
        deps.risk.forget(subject_id)

    async def active(self, subject_id: str) -> list[RiskAlert]:
        now = self._deps.clock.now()
        async with self._deps.store.read() as uow:
            if await uow.subjects.get(subject_id) is None:
                raise NotFoundError("No such subject.")
            return await uow.risk.alerts(subject_id, at=now)
