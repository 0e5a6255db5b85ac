"""The audit log records every security event, holds no secret, and proves its own integrity.

One full flow through the HTTP API (enroll and confirm TOTP, a management step-up, recovery
codes, a bound step-up with a grant, a failed verification, a fail-closed decision, the grant
used, a denied action, a factor removed, a second API key) and then: every event has its
record; no secret of the flow is in the audit log (API pages and raw rows), in any table, or
in anything logged, even at debug level; the hash chain verifies, and edits to the stored
rows are found at the exact record. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog

from stepguard.adapters.observability import configure_logging
from stepguard.adapters.storage.tables import metadata
from stepguard.core.audit import chain_hash
from stepguard.core.model import AuditEvent
from stepguard.service.decisions import FAIL_CLOSED_RULE
from support.harness import Harness

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


# --- raw database access, on a connection of its own -------------------------------------


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite")


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.split(":///", 1)[1])


async def execute_elsewhere(database_url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement outside the app's pool (``?`` placeholders); return its rows."""
    if is_sqlite(database_url):

        def run() -> list[tuple[Any, ...]]:
            connection = sqlite3.connect(sqlite_path(database_url), timeout=10)
            try:
                rows = connection.execute(statement, args).fetchall()
                connection.commit()
                return rows
            finally:
                connection.close()

        return await asyncio.to_thread(run)
    numbered = statement
    for index in range(1, statement.count("?") + 1):
        numbered = numbered.replace("?", f"${index}", 1)
    connection = await asyncpg.connect(database_url)
    try:
        return [tuple(row) for row in await connection.fetch(numbered, *args)]
    finally:
        await connection.close()


@asynccontextmanager
async def table_gone(database_url: str, table: str) -> AsyncIterator[None]:
    await execute_elsewhere(database_url, f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        await execute_elsewhere(database_url, f"ALTER TABLE {table}_away RENAME TO {table}")


# --- the flow -------------------------------------------------------------------------------


@dataclass
class Flow:
    """What the flow made, and every secret that crossed the API."""

    session_id: str = ""
    totp_factor: str = ""
    recovery_factor: str = ""
    extra_key_id: str = ""
    secrets: set[str] = field(default_factory=set)  # matched anywhere, case-insensitively
    codes: set[str] = field(default_factory=set)  # digit codes, matched as whole numbers


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def add_token(flow: Flow, token: str) -> None:
    """A bearer token, and its random part on its own."""
    flow.secrets.add(token)
    flow.secrets.add(token.split("_", 1)[1].split(".", 1)[0])


async def full_flow(api: Harness, database_url: str) -> Flow:
    flow = Flow()
    add_token(flow, api.api_key)
    client = api.client
    await api.put_subject("alice", email="alice@example.com")

    # Enroll and confirm TOTP: the seed travels once, in the otpauth URI.
    enrolled = await client.post("/v1/subjects/alice/factors", json={"type": "totp"})
    assert enrolled.status_code == 201, enrolled.text
    uri = enrolled.json()["otpauth_uri"]
    flow.totp_factor = enrolled.json()["factor"]["id"]
    seed_b32 = httpx.URL(uri).params["secret"]
    seed = base64.b32decode(seed_b32 + "=" * (-len(seed_b32) % 8))
    flow.secrets |= {
        uri,
        seed_b32,
        seed.hex(),
        base64.b64encode(seed).decode(),
        base64.urlsafe_b64encode(seed).decode().rstrip("="),
    }
    code = api.code(seed)
    flow.codes.add(code)
    confirmed = await client.post(
        f"/v1/subjects/alice/factors/{flow.totp_factor}/confirm", json={"code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    api.clock.advance(30)

    # A session steps up to manage factors, then gets recovery codes.
    flow.session_id = session_id = await api.open_session()
    manage = await api.decide(session_id, "stepguard.factors.manage")
    assert manage["decision"] == "step_up"
    code = api.code(seed)
    flow.codes.add(code)
    response = await api.verify(manage["challenge"]["id"], flow.totp_factor, code)
    assert response.status_code == 200, response.text
    recovery = await client.post(
        "/v1/subjects/alice/factors", json={"type": "recovery_code", "session_id": session_id}
    )
    assert recovery.status_code == 201, recovery.text
    flow.recovery_factor = recovery.json()["factor"]["id"]
    recovery_codes: list[str] = recovery.json()["recovery_codes"]
    assert len(recovery_codes) >= 4
    flow.secrets |= set(recovery_codes) | {c.replace("-", "") for c in recovery_codes}
    api.clock.advance(30)

    # A bound step-up, passed with a recovery code, gives a grant.
    transfer = await api.decide(session_id, "payments.transfer", context=TRANSFER)
    assert transfer["decision"] == "step_up"
    response = await api.verify(
        transfer["challenge"]["id"], flow.recovery_factor, recovery_codes[0].lower()
    )
    assert response.status_code == 200, response.text
    grant: str = response.json()["grant"]
    add_token(flow, grant)

    # A failed verification.
    email = await api.decide(session_id, "account.email.change")
    code = wrong(api.code(seed))
    flow.codes.add(code)
    failed = await api.verify(email["challenge"]["id"], flow.totp_factor, code)
    assert failed.status_code == 403

    # The grant presented while its table is unreadable: the decision fails closed (and logs).
    async with table_gone(database_url, "grants"):
        closed = await api.decide(session_id, "payments.transfer", context=TRANSFER, grant=grant)
    assert closed["decision"] == "deny"
    assert closed["rule"] == FAIL_CLOSED_RULE

    # The grant used, a denied action, a factor removed after the step-up.
    used = await api.decide(session_id, "payments.transfer", context=TRANSFER, grant=grant)
    assert used["decision"] == "allow"
    denied = await api.decide(session_id, "nothing.here")
    assert denied["decision"] == "deny"
    removed = await client.delete(
        f"/v1/subjects/alice/factors/{flow.recovery_factor}", params={"session_id": session_id}
    )
    assert removed.status_code == 204, removed.text

    # A second API key, used once.
    created = await api.runtime.services.api_keys.create("ci-bot")
    flow.extra_key_id = created.key.id
    add_token(flow, created.token.reveal())
    response = await api.anon.get(
        "/v1/subjects/alice", headers={"Authorization": f"Bearer {created.token.reveal()}"}
    )
    assert response.status_code == 200
    return flow


def leaked(flow: Flow, text: str) -> list[str]:
    """Which secrets of the flow occur in ``text``."""
    lowered = text.lower()
    found = [secret for secret in flow.secrets if secret.lower() in lowered]
    # A code is a whole word: not six digits inside a hex digest or a longer number.
    found += [
        code for code in flow.codes if re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", text)
    ]
    return found


async def all_audit_pages(api: Harness, page_size: int = 7) -> tuple[list[dict[str, Any]], str]:
    """Every event through GET /v1/audit, page by page, and the raw text of all pages."""
    events: list[dict[str, Any]] = []
    texts: list[str] = []
    after = 0
    while True:
        response = await api.client.get(
            "/v1/audit", params={"after_seq": after, "limit": page_size}
        )
        assert response.status_code == 200, response.text
        texts.append(response.text)
        page = response.json()
        events += page["events"]
        if page["next_after_seq"] is None:
            return events, "\n".join(texts)
        after = page["next_after_seq"]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every library logging at debug level; structlog put back as it was afterwards.

    Tests call ``configure_logging`` themselves, in the test body: it binds the ``sys.stderr``
    of that moment, which is the captured one only while the test itself runs.
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # SQLAlchemy sets its own to WARNING
    try:
        yield
    finally:
        structlog.reset_defaults()


# --- (a), (b), (c): the records, and no secret anywhere -----------------------------------


async def test_a_full_flow_is_audited_without_a_single_secret(
    logs: None,
    database_url: str,
    api: Harness,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_logging(level="debug", json=True)  # production's logs: JSON lines on stderr
    flow = await full_flow(api, database_url)
    events, pages = await all_audit_pages(api)
    # The search finds every one of the secrets when it is there.
    everything = flow.secrets | flow.codes
    assert len(flow.codes) == 3
    assert len(flow.secrets) >= 25
    assert sorted(leaked(flow, " ".join(sorted(everything)))) == sorted(everything)

    # (a) Every event has its record, with the subject and session it concerns.
    session_events = {
        "session.created",
        "decision.step_up",
        "verification.succeeded",
        "verification.failed",
        "grant.used",
        "decision.deny",
        "factor.removed",
    }
    for event_type in (*session_events, "factor.enrolled", "factor.confirmed"):
        matching = [e for e in events if e["type"] == event_type]
        assert matching, f"no {event_type} record"
        for event in matching:
            assert event["subject_id"] == "alice", event
            assert event["actor"] is not None, event
            if event_type in session_events:
                assert event["session_id"] == flow.session_id, event
    by_type = {e["type"]: e for e in events}
    assert by_type["decision.deny"]["details"]["rule"] == "default"
    assert by_type["factor.removed"]["details"]["factor_id"] == flow.recovery_factor
    assert by_type["factor.confirmed"]["details"]["factor_id"] == flow.totp_factor
    enrolled = [e for e in events if e["type"] == "factor.enrolled"]
    assert [(e["details"]["factor_type"], e["session_id"]) for e in enrolled] == [
        ("totp", None),  # the first factor needs no session
        ("recovery_code", flow.session_id),
    ]
    assert by_type["verification.failed"]["details"]["factor_id"] == flow.totp_factor
    assert [e["details"]["key_id"] for e in events if e["type"] == "api_key.created"][-1] == (
        flow.extra_key_id
    )
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    # (b) No secret in the audit log, read through the API or straight from the table.
    assert leaked(flow, pages) == []
    rows = await execute_elsewhere(database_url, "SELECT * FROM audit_events ORDER BY seq")
    assert len(rows) == len(events)
    assert leaked(flow, repr(rows)) == []
    # ... nor in any other table: seeds are encrypted, codes and tokens hashed.
    for table in metadata.sorted_tables:
        query = f"SELECT * FROM {table.name}"  # noqa: S608 - names from our own metadata
        table_rows = await execute_elsewhere(database_url, query)
        assert leaked(flow, repr(table_rows)) == [], table.name

    # (c) No secret in anything logged, the fail-closed warning included.
    out, err = capfd.readouterr()
    logged = "\n".join((out, err, caplog.text))
    assert '"event": "failed_closed"' in err
    assert '"where": "decision"' in err
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    assert leaked(flow, logged) == []


# --- (d): the hash chain ------------------------------------------------------------------


async def some_events(api: Harness) -> int:
    """A few audited events; returns the number of records."""
    await api.put_subject("alice")
    for _ in range(3):
        session_id = await api.open_session()
        await api.decide(session_id, "nothing.here")
    report = await api.runtime.services.audit.verify()
    assert report.ok, report
    assert report.records == len(await api.audit())
    return report.records


async def test_the_chain_of_a_full_flow_verifies(database_url: str, api: Harness) -> None:
    await full_flow(api, database_url)
    events, _ = await all_audit_pages(api)
    report = await api.runtime.services.audit.verify()
    assert report.ok
    assert report.records == len(events) == events[-1]["seq"]
    assert report.first_bad_seq is None
    assert report.problem is None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("details", '{"tampered":true}'),
        ("type", "decision.allow"),
        ("subject_id", "mallory"),
        ("outcome", "ok"),
    ],
)
async def test_an_edited_record_is_found_at_its_seq(
    api: Harness, database_url: str, column: str, value: str
) -> None:
    count = await some_events(api)
    target = count // 2
    edit = f"UPDATE audit_events SET {column} = ? WHERE seq = ?"  # noqa: S608 - fixed names
    await execute_elsewhere(database_url, edit, value, target)
    report = await api.runtime.services.audit.verify()
    assert not report.ok
    assert report.first_bad_seq == target
    assert report.problem == "record altered"
    assert report.records == target - 1


async def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(
    api: Harness, database_url: str
) -> None:
    count = await some_events(api)
    target = count // 2
    (
        (prev_hash, at, event_type, outcome, subject_id, session_id, actor),
    ) = await execute_elsewhere(
        database_url,
        "SELECT prev_hash, at, type, outcome, subject_id, session_id, actor "
        "FROM audit_events WHERE seq = ?",
        target,
    )
    forged = AuditEvent(
        type=event_type,
        at=at if isinstance(at, datetime) else datetime.fromisoformat(at),
        outcome=outcome,
        subject_id=subject_id,
        session_id=session_id,
        actor=actor,
        details={"forged": True},
    )
    await execute_elsewhere(
        database_url,
        "UPDATE audit_events SET details = ?, hash = ? WHERE seq = ?",
        '{"forged":true}',
        chain_hash(prev_hash, target, forged),
        target,
    )
    report = await api.runtime.services.audit.verify()
    assert not report.ok
    assert report.first_bad_seq == target + 1
    assert report.problem == "broken link"


async def test_a_deleted_middle_record_is_found_at_its_seq(api: Harness, database_url: str) -> None:
    count = await some_events(api)
    target = count // 2
    await execute_elsewhere(database_url, "DELETE FROM audit_events WHERE seq = ?", target)
    report = await api.runtime.services.audit.verify()
    assert not report.ok
    assert report.first_bad_seq == target
    assert report.problem == "record missing"
    assert report.records == target - 1


async def test_a_deleted_last_record_is_found_through_the_head(
    api: Harness, database_url: str
) -> None:
    count = await some_events(api)
    await execute_elsewhere(database_url, "DELETE FROM audit_events WHERE seq = ?", count)
    report = await api.runtime.services.audit.verify()
    assert not report.ok
    assert report.first_bad_seq == count
    assert report.problem == "records after the last one were removed, or the head was altered"
    assert report.records == count - 1


# --- (e): queries ---------------------------------------------------------------------------


async def test_audit_queries_filter_by_subject_type_and_time(api: Harness) -> None:
    start = api.clock.now()
    await api.put_subject("alice")
    await api.put_subject("bob")
    api.clock.advance(60)
    alice = await api.open_session("alice")
    api.clock.advance(60)
    bob = await api.open_session("bob")
    api.clock.advance(60)
    await api.decide(alice, "nothing.here")
    await api.decide(bob, "nothing.here")

    assert [e["type"] for e in await api.audit(subject_id="alice")] == [
        "subject.created",
        "session.created",
        "decision.deny",
    ]
    assert [e["subject_id"] for e in await api.audit(type="session.created")] == ["alice", "bob"]
    assert [e["session_id"] for e in await api.audit(type="decision.deny", subject_id="bob")] == [
        bob
    ]
    assert await api.audit(subject_id="nobody") == []
    assert await api.audit(type="no.such.type") == []

    # since is inclusive, until exclusive; any offset names the same instant.
    plus_two = timezone(timedelta(hours=2))
    second_session = start + timedelta(seconds=120)
    since = second_session.astimezone(plus_two).isoformat()
    until = (start + timedelta(seconds=180)).astimezone(timezone(timedelta(hours=-5))).isoformat()
    window = await api.audit(since=since, until=until)
    assert [(e["type"], e["subject_id"]) for e in window] == [("session.created", "bob")]
    assert [e["type"] for e in await api.audit(since=since)] == [
        "session.created",
        "decision.deny",
        "decision.deny",
    ]
    utc = (start + timedelta(seconds=60)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert [e["type"] for e in await api.audit(until=utc)][-1] == "subject.created"
    assert all(
        datetime.fromisoformat(e["at"]) < start + timedelta(seconds=60)
        for e in await api.audit(until=utc)
    )
    for params in ({"since": "2026-11-28T12:00:00"}, {"until": "2026-11-28"}):
        response = await api.client.get("/v1/audit", params=params)
        assert response.status_code == 400, params


@pytest.mark.parametrize("page_size", [1, 2, 3, 100])
async def test_audit_pages_follow_next_after_seq(api: Harness, page_size: int) -> None:
    await api.put_subject("alice")
    for _ in range(2):
        await api.open_session()
    everything = await api.audit()
    assert len(everything) == 4  # the harness's API key, the subject, two sessions

    paged, _ = await all_audit_pages(api, page_size=page_size)
    assert paged == everything

    first = (await api.client.get("/v1/audit", params={"limit": 2})).json()
    assert [e["seq"] for e in first["events"]] == [1, 2]
    assert first["next_after_seq"] == 2
    rest = (await api.client.get("/v1/audit", params={"after_seq": 2, "limit": 2})).json()
    assert [e["seq"] for e in rest["events"]] == [3, 4]
    last = (await api.client.get("/v1/audit", params={"after_seq": 4, "limit": 2})).json()
    assert last == {"events": [], "next_after_seq": None}
    short = (await api.client.get("/v1/audit", params={"after_seq": 3, "limit": 2})).json()
    assert [e["seq"] for e in short["events"]] == [4]
    assert short["next_after_seq"] is None
    filtered = (
        await api.client.get(
            "/v1/audit", params={"type": "session.created", "limit": 1, "after_seq": 0}
        )
    ).json()
    assert [e["seq"] for e in filtered["events"]] == [3]
    assert filtered["next_after_seq"] == 3
