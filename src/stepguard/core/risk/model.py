"""Stored risk entities: trusted-login events and external alerts, and the profile they make."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from stepguard.core.risk.engine import LastLocation, Profile

# Reserved population count keys (no feature key starts with "#").
LOGINS_KEY = "#logins"
SUBJECTS_KEY = "#subjects"


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskEvent:
    """One trusted outcome: a session created after primary login, or a satisfied step-up."""

    subject_id: str
    at: datetime
    source: str  # "session" or "step_up"
    keys: tuple[str, ...]
    device_id: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    proxied: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskAlert:
    """An external alert: the subject's risk is at least ``score`` while it is active."""

    id: str
    subject_id: str
    score: float
    reason: str
    created_at: datetime
    expires_at: datetime
    cleared_at: datetime | None = None
    actor: str | None = None

    def active(self, now: datetime) -> bool:
        return self.cleared_at is None and now < self.expires_at


def profile_from_events(events: Iterable[RiskEvent]) -> Profile:
    """The counts, devices and last location of a history, oldest event first."""
    counts: dict[str, int] = {}
    devices: dict[str, float] = {}
    last: LastLocation | None = None
    logins = 0
    for event in events:
        logins += 1
        for key in event.keys:
            counts[key] = counts.get(key, 0) + 1
        at = event.at.timestamp()
        if event.device_id:
            devices[event.device_id] = max(at, devices.get(event.device_id, at))
        if event.latitude is not None and event.longitude is not None:
            last = LastLocation(
                latitude=event.latitude, longitude=event.longitude, at=at, proxied=event.proxied
            )
    return Profile(counts=counts, logins=logins, devices=devices, last_location=last)
