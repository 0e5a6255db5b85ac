"""The placeholder risk engine: every request is low risk until the real engine lands."""

from __future__ import annotations

from datetime import datetime

from stepguard.core.model import Session, Subject
from stepguard.core.risk import LOW_RISK, RiskAssessment


class StaticRiskAssessor:
    """Returns one fixed assessment (low by default). Satisfies ``RiskAssessor``."""

    def __init__(self, assessment: RiskAssessment = LOW_RISK) -> None:
        self._assessment = assessment

    async def assess(
        self,
        *,
        subject: Subject,
        session: Session,
        action: str,
        ip: str | None,
        user_agent: str | None,
        now: datetime,
    ) -> RiskAssessment:
        return self._assessment
