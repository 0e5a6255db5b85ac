"""Signals and their combination into one explained score.

Every signal is a pure function of plain data (the request's features, the subject's history
snapshot, counts, lists already looked up) and returns a :class:`Signal` whose
``contribution`` is in log-odds units. The score is

    score = sigmoid(sum of contributions)

so ``freeman`` (the plain likelihood ratio ``S``) gives ``S / (1 + S)``, and every other
signal shifts the log-odds by its weight. Two signals act as floors instead of terms: an
active external alert (the score is at least the alert's) and degradation (a failed source:
the level is at least ``degraded_level``, ``high`` by default). Neither ever lowers the score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from stepguard.core.risk._assessment import (
    LevelThresholds,
    RiskAssessment,
    RiskLevel,
    Signal,
    sigmoid,
)
from stepguard.core.risk.features import IP_LEVELS, UA_LEVELS, LoginFeatures
from stepguard.core.risk.freeman import Population, hierarchy_ratio, user_prior

EARTH_RADIUS_KM = 6371.0088


class RiskModel(StrEnum):
    FULL = "full"
    FREEMAN = "freeman"  # only the plain Freeman ratio over the IP and UA hierarchies


def _default_reputation_weights() -> Mapping[str, float]:
    return MappingProxyType({"bad": 4.0, "tor": 3.0, "anonymizer": 2.0, "hosting": 1.0})


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskConfig:
    model: RiskModel = RiskModel.FULL
    alpha: float = 1.0
    thresholds: LevelThresholds = field(default_factory=LevelThresholds)
    degraded_level: RiskLevel = RiskLevel.HIGH
    travel_max_kmh: float = 1000.0
    travel_min_km: float = 200.0
    travel_weight: float = 3.0
    # Time of day and action are weaker evidence (24 buckets; actions are learned only from
    # satisfied step-ups): their log ratio is clamped to +-cap.
    time_of_day_cap: float = 1.0
    action_cap: float = 1.0
    new_device_weight: float = 1.0
    known_device_weight: float = -1.0
    reputation_weights: Mapping[str, float] = field(default_factory=_default_reputation_weights)
    # Velocity: log-odds per failure in the window, each capped.
    subject_failure_weight: float = 0.5
    ip_failure_weight: float = 0.25
    asn_failure_weight: float = 0.05
    velocity_cap: float = 3.0
    spraying_min_subjects: int = 3
    spraying_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ValueError("alpha must be positive")
        if self.travel_max_kmh <= 0 or self.travel_min_km < 0:
            raise ValueError("travel thresholds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class LastLocation:
    latitude: float
    longitude: float
    at: float
    proxied: bool = False  # a hosting, VPN or anonymizer network


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """A subject's history snapshot, built from its last (bounded) trusted logins."""

    counts: Mapping[str, int]
    logins: int
    devices: Mapping[str, float] = field(default_factory=dict)  # device id -> last seen
    last_location: LastLocation | None = None


EMPTY_PROFILE = Profile(counts=MappingProxyType({}), logins=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Velocity:
    """Failures in the sliding window, and distinct subjects failing from this IP."""

    subject_failures: int = 0
    ip_failures: int = 0
    asn_failures: int = 0
    ip_subjects: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """An external alert: raises the subject's risk to at least ``score`` until it expires."""

    id: str
    score: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskInputs:
    """Everything the engine looks at. ``None`` means the source failed (degraded)."""

    features: LoginFeatures
    profile: Profile | None
    population: Population | None
    reputation: frozenset[str] | None = frozenset()
    velocity: Velocity | None = field(default_factory=Velocity)
    alerts: tuple[Alert, ...] | None = ()
    failed_sources: tuple[str, ...] = ()


_IP_NAMES = tuple(reversed(IP_LEVELS))  # coarsest first, as the keys are
_UA_NAMES = tuple(reversed(UA_LEVELS))


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a sphere of the Earth's mean radius."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def behaviour_signal(
    features: LoginFeatures, profile: Profile, population: Population, *, alpha: float
) -> Signal:
    """Freeman's ratio over the IP and UA hierarchies, times the user prior."""
    prior = user_prior(user_logins=profile.logins, population=population)
    ip = hierarchy_ratio(
        "ip",
        features.ip_keys(),
        user=profile.counts,
        user_logins=profile.logins,
        population=population,
        alpha=alpha,
    )
    ua = hierarchy_ratio(
        "ua",
        features.ua_keys(),
        user=profile.counts,
        user_logins=profile.logins,
        population=population,
        alpha=alpha,
    )
    ratio = prior * ip.ratio * ua.ratio
    unfamiliar = []
    if ip.unfamiliar_level is not None:
        unfamiliar.append(_IP_NAMES[ip.unfamiliar_level].replace("_", " "))
    if ua.unfamiliar_level is not None:
        unfamiliar.append(_UA_NAMES[ua.unfamiliar_level].replace("_", " "))
    if profile.logins == 0:
        reason = "no login history for this subject yet"
    elif unfamiliar:
        reason = "unfamiliar " + ", ".join(unfamiliar)
    else:
        reason = "familiar network and user agent"
    return Signal(name="behaviour", value=ratio, contribution=math.log(ratio), reason=reason)


def _flat_signal(
    name: str,
    key: str,
    profile: Profile,
    population: Population,
    *,
    alpha: float,
    what: str,
    cap: float,
) -> Signal:
    r = hierarchy_ratio(
        name, (key,), user=profile.counts, user_logins=profile.logins,
        population=population, alpha=alpha,
    )  # fmt: skip
    reason = (
        f"unusual {what} for this subject" if r.unfamiliar_level is not None else f"usual {what}"
    )
    contribution = max(-cap, min(cap, math.log(r.ratio)))
    return Signal(name=name, value=r.ratio, contribution=contribution, reason=reason)


def time_of_day_signal(
    features: LoginFeatures, profile: Profile, population: Population, *, config: RiskConfig
) -> Signal:
    """The hour (UTC) as a one-level Freeman feature, clamped to +-``time_of_day_cap``."""
    return _flat_signal(
        "time_of_day",
        features.hour_keys()[0],
        profile,
        population,
        alpha=config.alpha,
        what="hour",
        cap=config.time_of_day_cap,
    )


def action_signal(
    features: LoginFeatures, profile: Profile, population: Population, *, config: RiskConfig
) -> Signal:
    """The action as a one-level Freeman feature, clamped to +-``action_cap``."""
    return _flat_signal(
        "action",
        features.action_keys()[0],
        profile,
        population,
        alpha=config.alpha,
        what="action",
        cap=config.action_cap,
    )


def device_signal(features: LoginFeatures, profile: Profile, config: RiskConfig) -> Signal | None:
    """A device id seen before for this subject lowers the risk; a new one raises it."""
    if not features.device_id:
        return None
    last_seen = profile.devices.get(features.device_id)
    if last_seen is None:
        return Signal(
            name="new_device",
            value=1.0,
            contribution=config.new_device_weight,
            reason="device never seen for this subject",
        )
    days = max(0.0, (features.at - last_seen) / 86400)
    return Signal(
        name="new_device",
        value=0.0,
        contribution=config.known_device_weight,
        reason=f"known device, last seen {days:.0f} days ago",
    )


def travel_signal(
    features: LoginFeatures,
    last: LastLocation | None,
    *,
    proxied: bool,
    config: RiskConfig,
) -> Signal | None:
    """Speed from the last trusted location; ``value`` is km/h.

    Short distances (under ``travel_min_km``, within geolocation error) are ignored. When
    either end is a hosting, VPN or anonymizer network the location says nothing about the
    person, so the speed is reported but contributes nothing (the reputation signal covers it).
    """
    place = features.place
    if last is None or place.latitude is None or place.longitude is None:
        return None
    distance = great_circle_km(last.latitude, last.longitude, place.latitude, place.longitude)
    if distance < config.travel_min_km:
        return Signal(
            name="impossible_travel",
            value=0.0,
            contribution=0.0,
            reason=f"{distance:.0f} km from the last trusted location",
        )
    hours = max(features.at - last.at, 1.0) / 3600
    speed = distance / hours
    if proxied or last.proxied:
        return Signal(
            name="impossible_travel",
            value=speed,
            contribution=0.0,
            reason="travel not assessed: a hosting or VPN network at one end",
        )
    if speed <= config.travel_max_kmh:
        return Signal(
            name="impossible_travel",
            value=speed,
            contribution=0.0,
            reason=f"{distance:.0f} km at {speed:.0f} km/h is possible",
        )
    return Signal(
        name="impossible_travel",
        value=speed,
        contribution=config.travel_weight,
        reason=f"{distance:.0f} km from the last trusted location at {speed:.0f} km/h",
    )


def reputation_signal(categories: frozenset[str], config: RiskConfig) -> Signal | None:
    if not categories:
        return None
    weights = config.reputation_weights
    worst = max(categories, key=lambda c: (weights.get(c, 1.0), c))
    contribution = weights.get(worst, 1.0)
    listed = ", ".join(sorted(categories))
    return Signal(
        name="ip_reputation",
        value=contribution,
        contribution=contribution,
        reason=f"IP address on the {listed} list",
    )


def velocity_signals(velocity: Velocity, config: RiskConfig) -> list[Signal]:
    out: list[Signal] = []
    cap = config.velocity_cap
    for name, count, weight, what in (
        ("failures_subject", velocity.subject_failures, config.subject_failure_weight, "subject"),
        ("failures_ip", velocity.ip_failures, config.ip_failure_weight, "IP address"),
        ("failures_asn", velocity.asn_failures, config.asn_failure_weight, "network"),
    ):
        if count > 0:
            out.append(
                Signal(
                    name=name,
                    value=float(count),
                    contribution=min(cap, weight * count),
                    reason=f"{count} recent failed verifications for this {what}",
                )
            )
    if velocity.ip_subjects >= config.spraying_min_subjects:
        out.append(
            Signal(
                name="spraying",
                value=float(velocity.ip_subjects),
                contribution=min(cap, config.spraying_weight * velocity.ip_subjects),
                reason=f"{velocity.ip_subjects} subjects failed from this IP address recently",
            )
        )
    return out


def assess(inputs: RiskInputs, config: RiskConfig) -> RiskAssessment:
    """Combine the signals into one explained assessment. Total: never raises on data."""
    features = inputs.features
    failed = list(inputs.failed_sources)
    signals: list[Signal] = []
    profile, population = inputs.profile, inputs.population
    if profile is None and "history" not in failed:
        failed.append("history")
    if population is None and "population" not in failed:
        failed.append("population")
    if profile is not None and population is not None:
        signals.append(behaviour_signal(features, profile, population, alpha=config.alpha))
        if config.model is RiskModel.FULL:
            signals.append(time_of_day_signal(features, profile, population, config=config))
            signals.append(action_signal(features, profile, population, config=config))

    alert_floor = 0.0
    if config.model is RiskModel.FULL:
        if profile is not None:
            device = device_signal(features, profile, config)
            if device is not None:
                signals.append(device)
        reputation = inputs.reputation
        if reputation is None:
            failed.append("reputation")
        else:
            rep = reputation_signal(reputation, config)
            if rep is not None:
                signals.append(rep)
        if profile is not None:
            proxied = bool(reputation and reputation & {"hosting", "anonymizer", "tor"})
            travel = travel_signal(features, profile.last_location, proxied=proxied, config=config)
            if travel is not None:
                signals.append(travel)
        if inputs.velocity is None:
            failed.append("velocity")
        else:
            signals.extend(velocity_signals(inputs.velocity, config))
        if inputs.alerts is None:
            failed.append("alerts")
        else:
            for alert in inputs.alerts:
                alert_floor = max(alert_floor, alert.score)
            if inputs.alerts:
                top = max(inputs.alerts, key=lambda a: a.score)
                signals.append(
                    Signal(
                        name="alert",
                        value=top.score,
                        contribution=0.0,
                        reason=f"external alert: {top.reason}",
                    )
                )

    z = math.fsum(s.contribution for s in signals)
    score = sigmoid(z)
    if alert_floor > score:
        score = alert_floor
    degraded = bool(failed)
    if degraded:
        score = max(score, config.thresholds.floor(config.degraded_level))
    level = config.thresholds.level(score)
    if degraded and level < config.degraded_level:
        level = config.degraded_level
    reasons = [
        s.reason for s in sorted(signals, key=lambda s: -s.contribution) if s.contribution > 0
    ]
    if any(s.name == "alert" for s in signals):
        reasons.insert(0, next(s.reason for s in signals if s.name == "alert"))
    if degraded:
        reasons.append("degraded: " + ", ".join(sorted(set(failed))) + " unavailable")
    return RiskAssessment(
        score=score,
        level=level,
        reasons=tuple(reasons),
        degraded=degraded,
        signals=tuple(signals),
    )
