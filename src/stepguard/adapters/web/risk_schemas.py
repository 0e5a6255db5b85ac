"""Wire models of the risk engine: signals in decisions, external alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from stepguard.adapters.web.schemas import NO_NUL, Out, QueryTime, Strict

Reason = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1, max_length=512)]


class RiskAlertByLevel(Strict):
    level: Literal["low", "medium", "high", "critical"] = Field(
        description="The subject's level is at least this while the alert is active."
    )
    reason: Reason
    expires_at: QueryTime


class RiskAlertByScore(Strict):
    score: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        description="The subject's score is at least this while the alert is active."
    )
    reason: Reason
    expires_at: QueryTime


RiskAlertIn = RiskAlertByLevel | RiskAlertByScore


class RiskAlertOut(Out):
    id: str
    subject_id: str
    score: float
    reason: str
    created_at: datetime
    expires_at: datetime


class RiskAlertList(Out):
    alerts: list[RiskAlertOut]
