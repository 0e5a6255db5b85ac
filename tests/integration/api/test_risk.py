"""The live risk engine through the API, on SQLite and PostgreSQL: a policy reading
``risk.level`` and ``risk.signals.*``, training only from trusted outcomes, external alerts,
and degradation when a source fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stepguard.adapters.risk.geo import MaxMindGeo
from stepguard.adapters.risk.reputation import CidrLists
from stepguard.adapters.risk.useragent import UaParser
from stepguard.core.errors import StorageUnavailableError
from stepguard.core.risk import RiskLevel
from stepguard.core.risk.engine import RiskConfig
from stepguard.service.ports import Store, UnitOfWork
from stepguard.service.risk import EngineSettings, RiskEngine
from support.geo import write_city_db
from support.harness import Harness, start_harness

RISK_POLICY = """
version: 1
rules:
  - id: travel
    match: {actions: ["payments.*"]}
    when: "has(risk.signals.impossible_travel) && risk.signals.impossible_travel > 1000.0"
    step_up: {acr: aal2, max_age: 0}
  - id: critical
    match: {actions: ["*"]}
    when: "risk.level == 'critical'"
    deny: true
  - id: high
    match: {actions: ["*"]}
    when: "risk.level == 'high'"
    step_up: {acr: aal2, max_age: 0}
  - id: otherwise
    match: {actions: ["*"]}
    allow: true
default:
  deny: true
"""

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
BERLIN_IP = "1.1.1.7"
NEW_YORK_IP = "2.2.2.2"


def geo_and_lists(tmp_path: Path) -> dict[str, Any]:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "hosting.txt").write_text("5.5.5.0/24\n")
    return {
        "risk_engine": "live",
        "risk_geo_databases": [write_city_db(tmp_path / "city.mmdb")],
        "risk_lists_dir": lists,
        "risk_cache_seconds": 0,
        "risk_population_cache_seconds": 0,
        # Generous: a loaded CI machine must not turn a slow first read into degradation.
        "risk_source_timeout_seconds": 10.0,
        "risk_timeout_seconds": 20.0,
    }


@asynccontextmanager
async def live_harness(database_url: str, overrides: dict[str, Any]) -> AsyncIterator[Harness]:
    harness, runtime = await start_harness(
        database_url, policy=RISK_POLICY, settings_overrides=overrides
    )
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


async def open_session(api: Harness, ip: str, *, device_id: str = "dev-1") -> str:
    response = await api.client.post(
        "/v1/sessions",
        json={
            "subject_id": "alice",
            "amr": ["pwd"],
            "ip": ip,
            "user_agent": CHROME,
            "device_id": device_id,
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


async def history_length(api: Harness, subject_id: str = "alice") -> int:
    async with api.runtime.store.read() as uow:
        return len(await uow.risk.history(subject_id, limit=1000))


def signals(decision: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in decision["risk"]["signals"]}


async def test_policy_on_risk_signals_and_training_only_from_trusted_outcomes(
    database_url: str, tmp_path: Path
) -> None:
    async with live_harness(database_url, geo_and_lists(tmp_path)) as api:
        await api.put_subject("alice")
        factor_id, secret = await api.enroll_totp()
        for _ in range(5):  # five primary logins from Berlin: trusted outcomes
            session_id = await open_session(api, BERLIN_IP)
            api.clock.advance(60)
        assert await history_length(api) == 5

        home = await api.decide(
            session_id, "payments.transfer", ip=BERLIN_IP, user_agent=CHROME, device_id="dev-1"
        )
        assert home["decision"] == "allow", home
        assert home["rule"] == "otherwise"
        seen = signals(home)
        assert seen["behaviour"]["reason"] == "familiar network and user agent"
        assert seen["new_device"]["value"] == 0.0
        assert seen["impossible_travel"]["contribution"] == 0.0

        # An hour later from New York: 6,400 km in an hour.
        api.clock.advance(3600)
        away = await api.decide(
            session_id, "payments.transfer", ip=NEW_YORK_IP, user_agent=CHROME, device_id="dev-1"
        )
        assert away["decision"] == "step_up", away
        assert away["rule"] == "travel"
        travel = signals(away)["impossible_travel"]
        assert travel["value"] > 1000
        assert travel["contribution"] == 3.0
        assert signals(away)["behaviour"]["reason"] == "unfamiliar country"
        assert away["risk"]["level"] == "critical"
        step_up_events = await api.audit(type="decision.step_up")
        audited = step_up_events[-1]["details"]["risk"]
        assert {s["name"] for s in audited["signals"]} == set(signals(away))

        # Pending and denied requests teach nothing, however many.
        for _ in range(3):
            again = await api.decide(
                session_id, "account.view", ip=NEW_YORK_IP, user_agent=CHROME, device_id="dev-9"
            )
            assert again["decision"] == "deny", again  # critical
        assert await history_length(api) == 5
        still = await api.decide(
            session_id, "payments.transfer", ip=NEW_YORK_IP, user_agent=CHROME, device_id="dev-1"
        )
        assert signals(still)["behaviour"]["value"] == signals(away)["behaviour"]["value"]

        # A satisfied step-up does: the request that asked for it joins the history.
        response = await api.verify(still["challenge"]["id"], factor_id, api.code(secret))
        assert response.status_code == 200, response.text
        assert await history_length(api) == 6
        async with api.runtime.store.read() as uow:
            newest = (await uow.risk.history("alice", limit=1))[0]
        assert newest.source == "step_up"
        assert "ip.country:US" in newest.keys


async def test_failed_verifications_feed_velocity(database_url: str, tmp_path: Path) -> None:
    async with live_harness(database_url, geo_and_lists(tmp_path)) as api:
        await api.put_subject("alice")
        factor_id, _ = await api.enroll_totp()
        session_id = await open_session(api, BERLIN_IP)
        decision = await api.decide(session_id, "payments.transfer", ip=NEW_YORK_IP)
        assert decision["rule"] == "travel", decision
        challenge = decision["challenge"]
        for _ in range(2):
            response = await api.verify(challenge["id"], factor_id, "000000")
            assert response.status_code == 403
        after = await api.decide(session_id, "account.view", ip=BERLIN_IP)
        failures = signals(after)["failures_subject"]
        assert failures["value"] == 2.0
        assert failures["contribution"] == pytest.approx(1.0)


async def test_risk_alerts_raise_list_clear_and_audit(database_url: str, tmp_path: Path) -> None:
    async with live_harness(database_url, geo_and_lists(tmp_path)) as api:
        await api.put_subject("alice")
        session_id = await open_session(api, BERLIN_IP)
        expires = (api.clock.now() + timedelta(hours=1)).isoformat()
        created = await api.client.post(
            "/v1/subjects/alice/risk-alerts",
            json={
                "level": "critical",
                "reason": "password found in a breach",
                "expires_at": expires,
            },
        )
        assert created.status_code == 201, created.text
        alert = created.json()
        assert alert["score"] == 0.95
        listed = await api.client.get("/v1/subjects/alice/risk-alerts")
        assert [a["id"] for a in listed.json()["alerts"]] == [alert["id"]]

        denied = await api.decide(session_id, "account.view", ip=BERLIN_IP)
        assert denied["decision"] == "deny"
        assert denied["rule"] == "critical"
        assert denied["risk"]["reasons"][0] == "external alert: password found in a breach"

        cleared = await api.client.delete(f"/v1/subjects/alice/risk-alerts/{alert['id']}")
        assert cleared.status_code == 204
        again = await api.client.delete(f"/v1/subjects/alice/risk-alerts/{alert['id']}")
        assert again.status_code == 404
        assert (await api.client.get("/v1/subjects/alice/risk-alerts")).json()["alerts"] == []
        allowed = await api.decide(session_id, "account.view", ip=BERLIN_IP)
        assert allowed["decision"] != "deny", allowed

        by_score = await api.client.post(
            "/v1/subjects/alice/risk-alerts",
            json={"score": 0.85, "reason": "SSF session revoked", "expires_at": expires},
        )
        assert by_score.status_code == 201
        api.clock.advance(3601)  # expired
        assert (await api.client.get("/v1/subjects/alice/risk-alerts")).json()["alerts"] == []

        types = [e["type"] for e in await api.audit(subject_id="alice")]
        assert types.count("risk.alert_raised") == 2
        assert types.count("risk.alert_cleared") == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"level": "high", "score": 0.9, "reason": "x", "expires_at": "2030-01-01T00:00:00Z"}, 400),
        ({"level": "severe", "reason": "x", "expires_at": "2030-01-01T00:00:00Z"}, 400),
        ({"level": "high", "reason": "x", "expires_at": "2000-01-01T00:00:00Z"}, 409),
    ],
)
async def test_bad_alerts_are_refused(
    database_url: str, tmp_path: Path, body: dict[str, Any], status: int
) -> None:
    async with live_harness(database_url, geo_and_lists(tmp_path)) as api:
        await api.put_subject("alice")
        response = await api.client.post("/v1/subjects/alice/risk-alerts", json=body)
        assert response.status_code == status, response.text
        missing = await api.client.post(
            "/v1/subjects/nobody/risk-alerts",
            json={"level": "high", "reason": "x", "expires_at": "2030-01-01T00:00:00Z"},
        )
        assert missing.status_code == 404


async def test_a_missing_mmdb_degrades_to_a_step_up(database_url: str, tmp_path: Path) -> None:
    overrides = {**geo_and_lists(tmp_path), "risk_geo_databases": [tmp_path / "absent.mmdb"]}
    async with live_harness(database_url, overrides) as api:
        await api.put_subject("alice")
        session_id = await open_session(api, BERLIN_IP)
        decision = await api.decide(session_id, "account.view", ip=BERLIN_IP, user_agent=CHROME)
        assert decision["decision"] == "step_up", decision
        assert "risk assessment degraded" in decision["reasons"]
        assert decision["risk"]["level"] == "high"
        assert "degraded: geo unavailable" in decision["risk"]["reasons"]


class FaultyStore:
    """A real store whose lookups fail or stall (the risk engine's database reads)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.fail = False
        self.delay = 0.0

    def lookup(self) -> AbstractAsyncContextManager[UnitOfWork]:
        @asynccontextmanager
        async def faulty() -> AsyncIterator[UnitOfWork]:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail:
                raise StorageUnavailableError("database down")
            async with self._inner.lookup() as uow:
                yield uow

        return faulty()

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return self._inner.transaction()

    def read(self) -> AbstractAsyncContextManager[UnitOfWork]:
        return self._inner.read()

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()


def break_store(store: FaultyStore, fault: str) -> None:
    if fault == "error":
        store.fail = True
    else:
        store.delay = 3600.0  # hangs; the engine gives up after its per-source timeout


@pytest.mark.parametrize("fault", ["error", "slow"])
async def test_a_failing_or_slow_database_degrades_without_lowering_the_score(
    database_url: str, tmp_path: Path, fault: str
) -> None:
    async with live_harness(database_url, geo_and_lists(tmp_path)) as api:
        await api.put_subject("alice")
        for _ in range(3):
            session_id = await open_session(api, BERLIN_IP)
        async with api.runtime.store.read() as uow:
            session_and_subject = await uow.sessions.get_with_subject(session_id)
        assert session_and_subject is not None
        session, subject = session_and_subject
        store = FaultyStore(api.runtime.store)

        def engine() -> RiskEngine:
            return RiskEngine(
                store=store,
                geo=MaxMindGeo([tmp_path / "city.mmdb"]),
                reputation=CidrLists(tmp_path / "lists"),
                agents=UaParser(),
                settings=EngineSettings(
                    config=RiskConfig(),
                    source_timeout_seconds=2.0,
                    cache_seconds=0,
                    population_cache_seconds=0,
                ),
            )

        request: dict[str, Any] = {
            "subject": subject,
            "session": session,
            "action": "account.view",
            "ip": NEW_YORK_IP,
            "user_agent": CHROME,
            "now": api.clock.now(),
        }
        warm = engine()
        healthy = await warm.assess(**request)
        assert not healthy.degraded
        assert healthy.level is RiskLevel.CRITICAL  # impossible travel, unfamiliar country

        break_store(store, fault)
        # Warm: the last snapshot keeps every signal; the assessment says it is degraded.
        stale = await warm.assess(**request)
        assert stale.degraded
        assert stale.score >= healthy.score
        assert {s.name for s in stale.signals} == {s.name for s in healthy.signals}
        assert "degraded: history, population unavailable" in stale.reasons

        # Cold: nothing known, so the floor: at least high.
        cold = await engine().assess(**request)
        assert cold.degraded
        assert cold.level is RiskLevel.HIGH
        assert cold.score >= 0.8
        assert "degraded: alerts, history, population unavailable" in cold.reasons
