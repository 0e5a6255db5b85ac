"""Ports of the risk engine: its storage and its (in-process) lookup sources.

The lookups are synchronous and local (an ``.mmdb`` reader, CIDR lists, a UA parser); each
raises when its source is unusable, and the engine then marks the assessment degraded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from stepguard.core.risk.features import Agent, Place
from stepguard.core.risk.model import RiskAlert, RiskEvent


class RiskRepository(Protocol):
    async def history(self, subject_id: str, *, limit: int) -> list[RiskEvent]:
        """The subject's last ``limit`` trusted events, oldest first."""
        ...

    async def record(self, event: RiskEvent, *, keep: int) -> None:
        """Store the event, count its keys in the population, keep the newest ``keep``."""
        ...

    async def counts(self, keys: Sequence[str]) -> dict[str, int]:
        """Population counts of these keys (absent keys are left out)."""
        ...

    async def add_alert(self, alert: RiskAlert) -> None: ...

    async def clear_alert(self, subject_id: str, alert_id: str, *, at: datetime) -> bool:
        """Clear an active alert. ``True`` if this call did."""
        ...

    async def alerts(self, subject_id: str, *, at: datetime) -> list[RiskAlert]:
        """The subject's alerts active at ``at``."""
        ...


class GeoLocator(Protocol):
    def locate(self, ip: str) -> Place:
        """Country, ASN and coordinates when known. Raises when the database is unusable."""
        ...


class IpReputation(Protocol):
    def categories(self, ip: str) -> frozenset[str]:
        """The lists (``tor``, ``anonymizer``, ``hosting``, ``bad``...) the address is on."""
        ...


class AgentParser(Protocol):
    def parse(self, user_agent: str) -> Agent: ...
