"""Risk assessment results. The engine that computes them lives behind a port."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class RiskLevel(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskAssessment:
    """A score in [0, 1], its level, and the human reasons behind it.

    ``degraded`` says a signal source failed: the assessment never lowers risk because of
    that, and a degraded assessment never lets a request through without a step-up.
    """

    score: float
    level: RiskLevel
    reasons: tuple[str, ...] = ()
    degraded: bool = False

    def as_cel(self) -> dict[str, object]:
        return {
            "score": self.score,
            "level": self.level.label,
            "reasons": list(self.reasons),
            "degraded": self.degraded,
        }


LOW_RISK = RiskAssessment(score=0.0, level=RiskLevel.LOW)

# What a failed assessment becomes: treated as high risk, never as low.
UNAVAILABLE_RISK = RiskAssessment(
    score=1.0, level=RiskLevel.HIGH, reasons=("risk assessment unavailable",), degraded=True
)
