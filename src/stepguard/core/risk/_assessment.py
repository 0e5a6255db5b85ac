"""Risk assessment results: a score, its level, the signals behind it, and degradation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum


class RiskLevel(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, label: str) -> RiskLevel:
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown risk level {label!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """One piece of evidence: what was measured, how much it moved the score, and why.

    ``contribution`` is in log-odds units: the score is ``sigmoid(sum of contributions)``, so
    contributions add up and each one can be read on its own. ``value`` is what CEL sees as
    ``risk.signals.<name>``.
    """

    name: str
    value: float
    contribution: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelThresholds:
    """Score thresholds: at or above ``medium`` is medium, and so on."""

    medium: float = 0.5
    high: float = 0.8
    critical: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 < self.medium < self.high < self.critical <= 1.0:
            raise ValueError("risk thresholds must satisfy 0 < medium < high < critical <= 1")

    def level(self, score: float) -> RiskLevel:
        if score >= self.critical:
            return RiskLevel.CRITICAL
        if score >= self.high:
            return RiskLevel.HIGH
        if score >= self.medium:
            return RiskLevel.MEDIUM
        return RiskLevel.LOW

    def floor(self, level: RiskLevel) -> float:
        """The lowest score that has ``level``."""
        return {
            RiskLevel.LOW: 0.0,
            RiskLevel.MEDIUM: self.medium,
            RiskLevel.HIGH: self.high,
            RiskLevel.CRITICAL: self.critical,
        }[level]


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskAssessment:
    """A score in [0, 1], its level, the signals and human reasons behind it.

    ``degraded`` says a signal source failed: the assessment never lowers risk because of
    that, and a degraded assessment never lets a request through without a step-up.
    """

    score: float
    level: RiskLevel
    reasons: tuple[str, ...] = ()
    degraded: bool = False
    signals: tuple[Signal, ...] = field(default=())

    def signal_values(self) -> Mapping[str, float]:
        return {signal.name: signal.value for signal in self.signals}

    def as_cel(self) -> dict[str, object]:
        return {
            "score": self.score,
            "level": self.level.label,
            "reasons": list(self.reasons),
            "degraded": self.degraded,
            "signals": {signal.name: signal.value for signal in self.signals},
        }

    def details(self) -> dict[str, object]:
        """For the audit log: every signal with its value, contribution and reason."""
        return {
            "score": self.score,
            "level": self.level.label,
            "degraded": self.degraded,
            "signals": [
                {
                    "name": s.name,
                    "value": s.value,
                    "contribution": s.contribution,
                    "reason": s.reason,
                }
                for s in self.signals
            ],
        }


def sigmoid(z: float) -> float:
    """The logistic function, without overflow for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


LOW_RISK = RiskAssessment(score=0.0, level=RiskLevel.LOW)

# What a failed assessment becomes: treated as high risk, never as low.
UNAVAILABLE_RISK = RiskAssessment(
    score=1.0, level=RiskLevel.HIGH, reasons=("risk assessment unavailable",), degraded=True
)
