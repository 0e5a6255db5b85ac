"""What one login or request looks like to the risk model: plain, already-resolved values.

Hierarchical features are paths from the most specific value to the coarsest (Freeman et al.,
NDSS 2016, section IV): the IP hierarchy ``IP -> ASN -> country`` and the user-agent hierarchy
``full string -> browser + version -> OS + version -> device type``. A value is counted under
its whole path (``"ip:1.2.3.4|3320|DE"``), so a count at one level never exceeds its parent's
and ``p(x_j | x_(j+1))`` is a ratio of counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

_SEP: Final = "\x1f"

IP_LEVELS: Final = ("ip", "asn", "country")
UA_LEVELS: Final = ("user_agent", "browser", "os", "device_type")


@lru_cache(maxsize=65536)
def path_keys(feature: str, levels: tuple[str, ...], values: tuple[str, ...]) -> tuple[str, ...]:
    """Count keys for each level, coarsest first: ``feature.level:value|parent|...``.

    Memoized (a bounded LRU): the same users, networks and browsers come back."""
    keys: list[str] = []
    for i in range(len(values) - 1, -1, -1):
        keys.append(f"{feature}.{levels[i]}:{_SEP.join(values[i:])}")
    return tuple(keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """Where an IP address is, as far as the geo source knows. Empty strings mean unknown."""

    country: str = ""
    asn: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None

    @property
    def has_coordinates(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Agent:
    """A parsed user agent: the levels of the UA hierarchy."""

    user_agent: str = ""
    browser: str = ""
    os: str = ""
    device_type: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginFeatures:
    """One request's features. ``at`` is seconds since the epoch (UTC), passed in."""

    at: float
    ip: str
    place: Place
    agent: Agent
    action: str = "login"
    device_id: str | None = None

    @property
    def hour(self) -> int:
        return int(self.at // 3600) % 24

    def ip_keys(self) -> tuple[str, ...]:
        return path_keys("ip", IP_LEVELS, (self.ip, self.place.asn, self.place.country))

    def ua_keys(self) -> tuple[str, ...]:
        a = self.agent
        return path_keys("ua", UA_LEVELS, (a.user_agent, a.browser, a.os, a.device_type))

    def hour_keys(self) -> tuple[str, ...]:
        return (f"hour:{self.hour}",)

    def action_keys(self) -> tuple[str, ...]:
        return (f"action:{self.action}",)

    def all_keys(self) -> tuple[str, ...]:
        """Every count key a trusted login of these features increments."""
        return (*self.ip_keys(), *self.ua_keys(), *self.hour_keys(), *self.action_keys())
