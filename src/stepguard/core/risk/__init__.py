"""The risk engine's pure core: features, the Freeman model, signals, score and levels.

Nothing here does I/O or reads the clock: histories, counts, list memberships and the time
are passed in. The live assessor (``service/risk.py``) and the replay CLI gather them.
"""

from stepguard.core.risk._assessment import (
    LOW_RISK,
    UNAVAILABLE_RISK,
    LevelThresholds,
    RiskAssessment,
    RiskLevel,
    Signal,
    sigmoid,
)

__all__ = [
    "LOW_RISK",
    "UNAVAILABLE_RISK",
    "LevelThresholds",
    "RiskAssessment",
    "RiskLevel",
    "Signal",
    "sigmoid",
]
