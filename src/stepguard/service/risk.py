"""Risk assessors: the live engine, and the static placeholder tests use.

:class:`RiskEngine` gathers a request's features (geolocation, IP lists, the parsed user
agent) and the subject's history snapshot, and hands them to the pure core
(:func:`stepguard.core.risk.engine.assess`). It fails closed: a source that raises or is too
slow is left out and the assessment is marked degraded, which never lowers the score (the
level is at least ``degraded_level``, ``high`` by default).

Hot path and freshness: a subject's profile (counts over its last ``history_size`` trusted
logins, devices, last location) and active alerts are cached per process for
``cache_seconds`` (default 5 s), and the population counts of each key for
``population_cache_seconds`` (default 60 s). This process's own writes (a trusted login, an
alert raised or cleared here) update or drop its cache at once; another worker's are seen
within those times. Velocity counters are in process memory (sliding windows, bounded): with
several workers each counts the failures it handled.

Histories change only from trusted outcomes: :meth:`RiskEngine.learn` is called after a
session is created (primary login asserted by the app) and after a satisfied step-up, never
for a denied or pending request.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from stepguard.core.model import Challenge, Session, Subject
from stepguard.core.risk import LOW_RISK, RiskAssessment
from stepguard.core.risk.engine import (
    Alert,
    Profile,
    RiskConfig,
    RiskInputs,
    Velocity,
    assess,
)
from stepguard.core.risk.features import Agent, LoginFeatures, Place
from stepguard.core.risk.freeman import Population
from stepguard.core.risk.model import (
    LOGINS_KEY,
    SUBJECTS_KEY,
    RiskAlert,
    RiskEvent,
    profile_from_events,
)
from stepguard.core.risk.velocity import DistinctCounter, SlidingCounter
from stepguard.service.ports import Store
from stepguard.service.risk_ports import AgentParser, GeoLocator, IpReputation


@lru_cache(maxsize=65536)
def _normal_ip(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


class StaticRiskAssessor:
    """Returns one fixed assessment (low by default) and learns nothing. A ``RiskAssessor``."""

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
        device_id: str | None = None,
    ) -> RiskAssessment:
        return self._assessment

    async def learn(
        self, *, session: Session, action: str, device_id: str | None, now: datetime
    ) -> None:
        pass

    async def learn_step_up(self, *, challenge: Challenge, session: Session, now: datetime) -> None:
        pass

    def failed(self, *, challenge: Challenge | None, now: datetime) -> None:
        pass

    def denied_push(self, *, challenge: Challenge, now: datetime) -> None:
        pass

    def new_device(self, *, challenge: Challenge) -> str | None:
        return None

    def forget(self, subject_id: str) -> None:
        pass


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    config: RiskConfig
    history_size: int = 100
    cache_seconds: float = 5.0
    population_cache_seconds: float = 60.0
    source_timeout_seconds: float = 0.2
    velocity_window_seconds: float = 900.0
    max_cached_subjects: int = 100_000


@dataclass(frozen=True, slots=True)
class _Snapshot:
    profile: Profile
    alerts: tuple[RiskAlert, ...]
    fetched: float


@dataclass(frozen=True, slots=True)
class _Request:
    """What a decision saw, remembered so a satisfied step-up can learn from it."""

    features: LoginFeatures
    proxied: bool
    new_device: bool = False


class RiskEngine:
    """The live ``RiskAssessor``."""

    def __init__(
        self,
        *,
        store: Store,
        geo: GeoLocator,
        reputation: IpReputation,
        agents: AgentParser,
        settings: EngineSettings,
        on_error: Callable[[str, BaseException], None] = lambda where, error: None,
    ) -> None:
        self._store = store
        self._geo = geo
        self._reputation = reputation
        self._agents = agents
        self._s = settings
        self._on_error = on_error
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._population: dict[str, tuple[int, float]] = {}
        window = settings.velocity_window_seconds
        self._failures = SlidingCounter(window=window)
        self._sprayers = DistinctCounter(window=window)
        self._requests: OrderedDict[tuple[str, str], _Request] = OrderedDict()

    # --- features ---------------------------------------------------------------------

    def _features(
        self,
        *,
        ip: str | None,
        user_agent: str | None,
        action: str,
        device_id: str | None,
        at: float,
        failed: list[str],
    ) -> tuple[LoginFeatures, frozenset[str] | None]:
        place = Place()
        categories: frozenset[str] | None = frozenset()
        if ip:
            normal = _normal_ip(ip)
            if normal is None:  # unparsable: nothing can be looked up; fail closed
                failed.append("ip address")
            else:
                ip = normal
                try:
                    place = self._geo.locate(ip)
                except Exception as error:
                    failed.append("geo")
                    self._on_error("risk.geo", error)
                try:
                    categories = self._reputation.categories(ip)
                except Exception as error:
                    categories = None
                    self._on_error("risk.reputation", error)
        try:
            agent = self._agents.parse(user_agent or "")
        except Exception as error:
            agent = Agent(user_agent=user_agent or "")
            failed.append("user agent")
            self._on_error("risk.user_agent", error)
        features = LoginFeatures(
            at=at, ip=ip or "", place=place, agent=agent, action=action, device_id=device_id
        )
        return features, categories

    # --- cached reads -----------------------------------------------------------------

    def _fresh_snapshot(self, subject_id: str, at: float) -> _Snapshot | None:
        cached = self._snapshots.get(subject_id)
        if cached is not None and at - cached.fetched < self._s.cache_seconds:
            return cached
        return None

    async def _snapshot(self, subject_id: str, now: datetime) -> _Snapshot:
        at = now.timestamp()
        async with self._store.lookup() as uow:
            events = await uow.risk.history(subject_id, limit=self._s.history_size)
            alerts = await uow.risk.alerts(subject_id, at=now)
        snapshot = _Snapshot(profile=profile_from_events(events), alerts=tuple(alerts), fetched=at)
        self._snapshots[subject_id] = snapshot
        self._snapshots.move_to_end(subject_id)
        if len(self._snapshots) > self._s.max_cached_subjects:
            self._snapshots.popitem(last=False)
        return snapshot

    def _missing_counts(self, keys: Sequence[str], at: float) -> list[str]:
        ttl = self._s.population_cache_seconds
        known = self._population
        return [
            k
            for k in (*keys, LOGINS_KEY, SUBJECTS_KEY)
            if (hit := known.get(k)) is None or at - hit[1] >= ttl
        ]

    async def _counts(self, missing: Sequence[str], at: float) -> None:
        async with self._store.lookup() as uow:
            found = await uow.risk.counts(missing)
        known = self._population
        if len(known) > 1_000_000:
            known.clear()
        for key in missing:
            known[key] = (found.get(key, 0), at)

    def _known_population(self, keys: Sequence[str]) -> Population:
        known = self._population
        return Population(
            counts={k: hit[0] for k in keys if (hit := known.get(k)) is not None},
            logins=known[LOGINS_KEY][0],
            subjects=known[SUBJECTS_KEY][0],
        )

    # --- RiskAssessor -----------------------------------------------------------------

    async def assess(
        self,
        *,
        subject: Subject,
        session: Session,
        action: str,
        ip: str | None,
        user_agent: str | None,
        now: datetime,
        device_id: str | None = None,
    ) -> RiskAssessment:
        at = now.timestamp()
        failed: list[str] = []
        features, categories = self._features(
            ip=ip, user_agent=user_agent, action=action, device_id=device_id, at=at, failed=failed
        )
        timeout = self._s.source_timeout_seconds
        profile: Profile | None = None
        alerts: tuple[Alert, ...] | None = None
        # Warm caches answer without awaiting anything; a miss reads the store, bounded by
        # the per-source timeout.
        snapshot = self._fresh_snapshot(subject.id, at)
        if snapshot is None:
            try:
                snapshot = await asyncio.wait_for(self._snapshot(subject.id, now), timeout)
            except Exception as error:
                # Degraded. The last snapshot, however old, keeps the signals it supports (its
                # alerts included), so a failing database does not make a known risk vanish.
                failed.append("history")
                snapshot = self._snapshots.get(subject.id)
                self._on_error("risk.history", error)
        if snapshot is not None:
            profile = snapshot.profile
            alerts = tuple(
                Alert(id=a.id, score=a.score, reason=a.reason)
                for a in snapshot.alerts
                if a.active(now)
            )
        population: Population | None = None
        keys = features.all_keys()
        missing = self._missing_counts(keys, at)
        if missing:
            try:
                await asyncio.wait_for(self._counts(missing, at), timeout)
            except Exception as error:
                failed.append("population")
                self._on_error("risk.population", error)
        if LOGINS_KEY in self._population and SUBJECTS_KEY in self._population:
            population = self._known_population(keys)
        velocity = Velocity(
            subject_failures=self._failures.count("s:" + subject.id, at),
            ip_failures=self._failures.count("i:" + features.ip, at) if features.ip else 0,
            asn_failures=(
                self._failures.count("a:" + features.place.asn, at) if features.place.asn else 0
            ),
            ip_subjects=self._sprayers.count(features.ip, at) if features.ip else 0,
        )
        proxied = bool(categories and categories & {"hosting", "anonymizer", "tor"})
        assessment = assess(
            RiskInputs(
                features=features,
                profile=profile,
                population=population,
                reputation=categories,
                velocity=velocity,
                alerts=alerts,
                failed_sources=tuple(failed),
            ),
            self._s.config,
        )
        new_device = assessment.signal_values().get("new_device") == 1.0
        self._requests[(session.id, action)] = _Request(
            features=features, proxied=proxied, new_device=new_device
        )
        if len(self._requests) > 10_000:
            self._requests.popitem(last=False)
        return assessment

    async def learn(
        self, *, session: Session, action: str, device_id: str | None, now: datetime
    ) -> None:
        """A trusted login (a session just created): add it to the subject's history."""
        failed: list[str] = []
        features, categories = self._features(
            ip=session.ip,
            user_agent=session.user_agent,
            action=action,
            device_id=device_id,
            at=now.timestamp(),
            failed=failed,
        )
        proxied = bool(categories and categories & {"hosting", "anonymizer", "tor"})
        await self._record(session.subject_id, features, proxied, "session", now)

    async def learn_step_up(self, *, challenge: Challenge, session: Session, now: datetime) -> None:
        """A satisfied step-up: learn the request that asked for it (or the session's)."""
        seen = self._requests.pop((challenge.session_id, challenge.action), None)
        if seen is None:
            failed: list[str] = []
            features, categories = self._features(
                ip=session.ip,
                user_agent=session.user_agent,
                action=challenge.action,
                device_id=None,
                at=now.timestamp(),
                failed=failed,
            )
            proxied = bool(categories and categories & {"hosting", "anonymizer", "tor"})
        else:
            features, proxied = seen.features, seen.proxied
        await self._record(challenge.subject_id, features, proxied, "step_up", now)

    async def _record(
        self, subject_id: str, features: LoginFeatures, proxied: bool, source: str, now: datetime
    ) -> None:
        place = features.place
        event = RiskEvent(
            subject_id=subject_id,
            at=now,
            source=source,
            keys=features.all_keys(),
            device_id=features.device_id,
            latitude=place.latitude,
            longitude=place.longitude,
            proxied=proxied,
        )
        try:
            async with self._store.transaction() as uow:
                await uow.risk.record(event, keep=self._s.history_size)
        except Exception as error:  # a lost history entry only makes later scores higher
            self._on_error("risk.learn", error)
        self.forget(subject_id)
        for key in (*event.keys, LOGINS_KEY, SUBJECTS_KEY):
            self._population.pop(key, None)

    def failed(self, *, challenge: Challenge | None, now: datetime) -> None:
        """A failed verification: feeds the velocity and spraying windows."""
        if challenge is None:
            return
        at = now.timestamp()
        self._failures.add("s:" + challenge.subject_id, at)
        seen = self._requests.get((challenge.session_id, challenge.action))
        if seen is not None and seen.features.ip:
            ip = seen.features.ip
            self._failures.add("i:" + ip, at)
            if seen.features.place.asn:
                self._failures.add("a:" + seen.features.place.asn, at)
            self._sprayers.add(ip, challenge.subject_id, at)

    def denied_push(self, *, challenge: Challenge, now: datetime) -> None:
        """A push denied on the subject's device counts like a failed guess: someone is
        asking for approvals the subject did not expect."""
        self.failed(challenge=challenge, now=now)

    def new_device(self, *, challenge: Challenge) -> str | None:
        """The device of the decision that opened ``challenge``, when it was new."""
        seen = self._requests.get((challenge.session_id, challenge.action))
        if seen is None or not seen.new_device:
            return None
        agent = seen.features.agent
        parts = [p for p in (agent.browser, agent.os) if p]
        return " on ".join(parts) or "an unrecognised device"

    def forget(self, subject_id: str) -> None:
        """Drop the cached profile and alerts of a subject (after a local write)."""
        self._snapshots.pop(subject_id, None)
