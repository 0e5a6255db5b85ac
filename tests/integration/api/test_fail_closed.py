"""When a component fails, the decision fails closed: a deny or a step-up, never an allow.

Every failure here is a real failure of a real component: a CEL program that errors at run
time, a risk port that raises or hangs (the risk port is an external dependency; what is under
test is how the decision service reacts), a table the database no longer has, a database that
was dropped or a database file that was replaced. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from stepguard.bootstrap import app_for, build_runtime
from stepguard.core.model import Session, Subject
from stepguard.core.risk import RiskAssessment
from stepguard.service.decisions import FAIL_CLOSED_RULE
from stepguard.service.ports import RiskAssessor
from stepguard.service.risk import StaticRiskAssessor
from support.harness import TEST_POLICY, Harness, start_harness
from support.services import postgres_admin_url

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


@asynccontextmanager
async def harness(
    database_url: str, *, policy: str = TEST_POLICY, risk: RiskAssessor | None = None
) -> AsyncIterator[Harness]:
    api, runtime = await start_harness(database_url, policy=policy, risk=risk)
    try:
        yield api
    finally:
        await api.client.aclose()
        await api.anon.aclose()
        await runtime.store.close()


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite")


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.split(":///", 1)[1])


async def execute_elsewhere(database_url: str, statement: str) -> None:
    """Run one statement on a connection of its own (not the app's pool)."""
    if is_sqlite(database_url):

        def run() -> None:
            connection = sqlite3.connect(sqlite_path(database_url), timeout=10)
            try:
                connection.execute(statement)
                connection.commit()
            finally:
                connection.close()

        await asyncio.to_thread(run)
        return
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def table_gone(database_url: str, table: str) -> AsyncIterator[None]:
    """The table is renamed away for the block (every query on it fails), then restored."""
    await execute_elsewhere(database_url, f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        await execute_elsewhere(database_url, f"ALTER TABLE {table}_away RENAME TO {table}")


# --- the policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "context",
    [
        pytest.param({"amount": "lots", "payee": "X"}, id="string-compared-to-int"),
        pytest.param({"payee": "X"}, id="missing-key"),
        pytest.param({"amount": [2500], "payee": "X"}, id="list-compared-to-int"),
    ],
)
async def test_a_cel_runtime_error_denies_and_names_the_rule(
    api: Harness, context: dict[str, Any]
) -> None:
    """``transfer-large`` (``context.amount > 100``) fails; the next rule would allow."""
    await api.put_subject("alice")
    session_id = await api.open_session()
    small = await api.decide(session_id, "payments.transfer", context={"amount": 5})
    assert (small["decision"], small["rule"]) == ("allow", "transfer-small")

    decision = await api.decide(session_id, "payments.transfer", context=context)

    assert decision["decision"] == "deny"
    assert decision["rule"] == "transfer-large"
    assert decision["reasons"] == ["the policy could not be evaluated"]
    denied = await api.audit(type="decision.deny")
    assert [e["details"]["rule"] for e in denied] == ["transfer-large"]
    assert denied[0]["session_id"] == session_id


async def test_the_what_if_endpoint_denies_on_a_cel_runtime_error_as_decisions_do(
    api: Harness,
) -> None:
    response = await api.client.post(
        "/v1/policy/evaluate", json={"action": "payments.transfer", "context": {"amount": "x"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["decision"] == "deny"
    assert body["rule"] == "transfer-large"
    assert "could not be evaluated" in body["reasons"][0]


NON_BOOL_POLICY = """
version: 1
rules:
  - id: gate
    match: {actions: ["orders.refund"]}
    when: "context.flag"
    step_up: {acr: aal2, max_age: 300}
  - id: open
    match: {actions: ["orders.refund"]}
    allow: true
default:
  deny: true
"""


@pytest.mark.parametrize(
    "flag",
    [
        pytest.param(1, id="int"),
        pytest.param(0.5, id="double"),
        pytest.param("true", id="string"),
        pytest.param(None, id="null"),
        pytest.param([True], id="list"),
        pytest.param({"value": True}, id="map"),
    ],
)
async def test_a_condition_that_returns_a_non_bool_denies(database_url: str, flag: object) -> None:
    async with harness(database_url, policy=NON_BOOL_POLICY) as api:
        await api.put_subject("alice")
        session_id = await api.open_session()
        # The rule works when the condition is a bool (so the deny below is not the default).
        assert (await api.decide(session_id, "orders.refund", context={"flag": True}))[
            "decision"
        ] == "step_up"
        assert (await api.decide(session_id, "orders.refund", context={"flag": False}))[
            "decision"
        ] == "allow"

        decision = await api.decide(session_id, "orders.refund", context={"flag": flag})

        assert decision["decision"] == "deny"
        assert decision["rule"] == "gate"


# --- the risk port ------------------------------------------------------------------------


class FailingRisk(StaticRiskAssessor):
    """A risk engine whose backend is down."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

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
        self.calls += 1
        raise ConnectionRefusedError("risk backend refused the connection")


class HangingRisk(StaticRiskAssessor):
    """A risk engine that never answers (until it is cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

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
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")  # pragma: no cover


def assert_degraded_step_up(decision: dict[str, Any], rule: str) -> None:
    assert decision["decision"] == "step_up", decision
    assert decision["rule"] == rule
    assert "risk assessment degraded" in decision["reasons"]
    assert decision["risk"] == {
        "score": 1.0,
        "level": "high",
        "reasons": ["risk assessment unavailable"],
        "signals": [],
    }
    assert decision["requirement"]["acr"] == "aal2"
    assert decision["requirement"]["max_age"] is not None
    assert decision["requirement"]["max_age"] <= 300
    assert decision["challenge"] is not None


async def test_a_risk_port_that_raises_gets_a_step_up_for_an_allowed_action(
    database_url: str,
) -> None:
    risk = FailingRisk()
    async with harness(database_url, risk=risk) as api:
        await api.put_subject("alice")
        session_id = await api.open_session()

        assert_degraded_step_up(await api.decide(session_id, "account.view"), "view")
        assert_degraded_step_up(
            await api.decide(session_id, "payments.transfer", context={"amount": 5}),
            "transfer-small",
        )
        assert risk.calls == 2
        metrics = (await api.client.get("/metrics")).text
        assert 'stepguard_fail_closed_total{where="risk"} 2.0' in metrics


async def test_a_risk_port_that_raises_never_weakens_a_step_up(database_url: str) -> None:
    async with harness(database_url, risk=FailingRisk()) as api:
        await api.put_subject("alice")
        session_id = await api.open_session()
        decision = await api.decide(session_id, "admin.users")
        assert decision["decision"] == "step_up"
        assert decision["requirement"]["acr"] == "phr"  # the rule's level, not the floor's


async def test_a_risk_port_that_hangs_past_the_timeout_gets_a_step_up(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings read the environment, so the harness's server gets a short timeout.
    monkeypatch.setenv("STEPGUARD_RISK_TIMEOUT_SECONDS", "0.2")
    risk = HangingRisk()
    async with harness(database_url, risk=risk) as api:
        assert api.runtime.settings.risk_timeout_seconds == 0.2
        await api.put_subject("alice")
        session_id = await api.open_session()

        started = time.monotonic()
        decision = await api.decide(session_id, "account.view")
        elapsed = time.monotonic() - started

        assert_degraded_step_up(decision, "view")
        assert 0.2 <= elapsed < 2.0, elapsed
        assert risk.cancelled == 1  # the hung call is not left running


# --- the database -------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["sessions", "subjects", "session_factors"])
async def test_a_database_error_during_a_decision_denies(
    api: Harness, database_url: str, table: str
) -> None:
    await api.put_subject("alice")
    session_id = await api.open_session()
    assert (await api.decide(session_id, "account.view"))["decision"] == "allow"

    async with table_gone(database_url, table):
        decision = await api.decide(session_id, "account.view")

    assert decision["decision"] == "deny"
    assert decision["rule"] == FAIL_CLOSED_RULE
    assert decision["reasons"][0].startswith("failed closed: the database is unavailable")
    assert decision["risk"]["level"] == "high"
    # Nothing else was wrong: with the table back, the same request is allowed again.
    assert (await api.decide(session_id, "account.view"))["decision"] == "allow"


async def test_a_database_error_while_redeeming_a_grant_denies_and_keeps_the_grant(
    api: Harness, database_url: str
) -> None:
    await api.put_subject("alice")
    factor_id, secret = await api.enroll_totp()
    session_id = await api.open_session()
    decision = await api.decide(session_id, "payments.transfer", context=TRANSFER)
    response = await api.verify(decision["challenge"]["id"], factor_id, api.code(secret))
    grant = response.json()["grant"]

    async with table_gone(database_url, "grants"):
        failed = await api.decide(session_id, "payments.transfer", context=TRANSFER, grant=grant)
    assert failed["decision"] == "deny"
    assert failed["rule"] == FAIL_CLOSED_RULE

    # The failed attempt rolled back: the grant still works, once.
    used = await api.decide(session_id, "payments.transfer", context=TRANSFER, grant=grant)
    assert used["decision"] == "allow"


async def test_a_database_error_while_opening_a_challenge_denies(
    api: Harness, database_url: str
) -> None:
    """A step-up whose challenge or audit record cannot be written is not half-made."""
    await api.put_subject("alice")
    session_id = await api.open_session()
    async with table_gone(database_url, "audit_events"):
        decision = await api.decide(session_id, "settings.change")
    assert decision["decision"] == "deny"
    assert decision["rule"] == FAIL_CLOSED_RULE
    assert await api.audit(type="decision.step_up") == []


def assert_storage_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "storage_unavailable"
    assert "://" not in body["message"]  # never the database URL


def replace_with_a_directory(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.mkdir()


async def break_database(database_url: str) -> None:
    """Make the database unreachable for real: drop it, or put a directory where it was."""
    if is_sqlite(database_url):
        await asyncio.to_thread(replace_with_a_directory, sqlite_path(database_url))
        return
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_admin_url())
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_readyz_answers_503_when_the_database_is_gone(database_url: str) -> None:
    """A worker that starts while the database is gone is not ready, and says why."""
    async with harness(database_url) as api:
        assert (await api.client.get("/readyz")).status_code == 200
        await break_database(database_url)
        runtime = build_runtime(
            api.runtime.settings,
            clock=api.clock,
            policy=api.runtime.services.deps.policy.current,
        )
        transport = httpx.ASGITransport(app=app_for(runtime))
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://stepguard.test"
            ) as client:
                assert_storage_unavailable(await client.get("/readyz"))
                assert (await client.get("/healthz")).status_code == 200  # alive, not ready
        finally:
            await runtime.store.close()
            if is_sqlite(database_url):
                await asyncio.to_thread(shutil.rmtree, sqlite_path(database_url))


async def test_a_running_worker_answers_503_once_the_database_is_gone(
    database_url: str,
) -> None:
    """Its pooled connections do not hide the loss (on SQLite they hold the unlinked file)."""
    async with harness(database_url) as api:
        await api.put_subject("alice")
        assert (await api.client.get("/readyz")).status_code == 200
        await break_database(database_url)
        try:
            assert_storage_unavailable(await api.client.get("/readyz"))
        finally:
            if is_sqlite(database_url):
                await asyncio.to_thread(shutil.rmtree, sqlite_path(database_url))
