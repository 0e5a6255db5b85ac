"""The audit log's hash chain as stored: appends, queries, and tampering found by verification."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import delete, update

from stepguard.adapters.storage import SqlStore, verify_audit_chain
from stepguard.adapters.storage import _repositories as repositories
from stepguard.adapters.storage.tables import audit_events, audit_head
from stepguard.core.audit import GENESIS_HASH, chain_hash
from stepguard.core.model import AuditEvent, RecordedAuditEvent

from .factories import NOW


def _event(n: int, **overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "type": "factor.verified" if n % 2 else "session.created",
        "at": NOW + timedelta(seconds=n),
        "outcome": "ok",
        "subject_id": f"sub_{n % 3}",
        "session_id": f"ses_{n}",
        "actor": "key_1",
        "details": {"n": n, "ip": "203.0.113.7", "nested": {"list": [1, "two", None, True]}},
    }
    fields.update(overrides)
    return AuditEvent(**fields)


async def _append(store: SqlStore, count: int, **overrides: Any) -> list[RecordedAuditEvent]:
    async with store.transaction() as uow:
        return [await uow.audit.append(_event(n, **overrides)) for n in range(1, count + 1)]


async def test_an_empty_chain_verifies(store: SqlStore) -> None:
    report = await verify_audit_chain(store)
    assert (report.ok, report.records) == (True, 0)
    async with store.read() as uow:
        assert await uow.audit.head() == (0, GENESIS_HASH)


async def test_appended_records_chain_and_verify(store: SqlStore) -> None:
    recorded = await _append(store, 12)
    assert [r.seq for r in recorded] == list(range(1, 13))
    assert recorded[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(recorded):
        assert after.prev_hash == before.hash
    report = await verify_audit_chain(store)
    assert (report.ok, report.records) == (True, 12)
    async with store.read() as uow:
        assert await uow.audit.head() == (12, recorded[-1].hash)
        stored = [r async for r in uow.audit.iterate()]
    assert stored == recorded  # what append returned is exactly what reads back


async def test_records_read_back_hash_the_same(store: SqlStore) -> None:
    """Details and times are normalized at append, so the stored form hashes identically."""
    plus_five = timezone(timedelta(hours=5, minutes=30))
    awkward = _event(
        1,
        at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=plus_five),  # no microseconds, not UTC
        details={
            "float": 1.0,
            "tiny": 1e-7,
            "tuple": (1, 2),
            "unicode": "Zürich 🏔",
            "z": {"b": 1, "a": [{}]},
        },
    )
    async with store.transaction() as uow:
        recorded = await uow.audit.append(awkward)
    assert recorded.event.at.tzinfo is UTC
    assert recorded.event.at == awkward.at
    assert recorded.event.details["tuple"] == [1, 2]
    async with store.read() as uow:
        (stored,) = [r async for r in uow.audit.iterate()]
    assert stored == recorded
    assert chain_hash(GENESIS_HASH, 1, stored.event) == stored.hash
    assert (await verify_audit_chain(store)).ok


async def test_details_that_are_not_json_are_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError, match=r".+"):
        async with store.transaction() as uow:
            await uow.audit.append(_event(1, details={"nan": float("nan")}))
    assert (await verify_audit_chain(store)).records == 0


async def test_query_filters_and_pages_in_chain_order(store: SqlStore) -> None:
    await _append(store, 9)
    async with store.read() as uow:
        by_subject = await uow.audit.query(subject_id="sub_1")
        by_type = await uow.audit.query(type="session.created")
        window = await uow.audit.query(
            since=NOW + timedelta(seconds=3), until=NOW + timedelta(seconds=6)
        )
        page1 = await uow.audit.query(limit=4)
        page2 = await uow.audit.query(after_seq=page1[-1].seq, limit=4)
        both = await uow.audit.query(subject_id="sub_1", type="factor.verified")
        none = await uow.audit.query(limit=0)
    assert [r.seq for r in by_subject] == [1, 4, 7]
    assert [r.seq for r in by_type] == [2, 4, 6, 8]
    assert [r.seq for r in window] == [3, 4, 5]  # since inclusive, until exclusive
    assert [r.seq for r in page1 + page2] == list(range(1, 9))
    assert [r.seq for r in both] == [1, 7]
    assert none == []


async def test_verification_streams_in_pages(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repositories, "AUDIT_PAGE_SIZE", 4)
    await _append(store, 11)
    async with store.read() as uow:
        assert [r.seq async for r in uow.audit.iterate()] == list(range(1, 12))
    report = await verify_audit_chain(store)
    assert (report.ok, report.records) == (True, 11)


async def test_an_altered_record_is_found(store: SqlStore) -> None:
    await _append(store, 6)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(audit_events).where(audit_events.c.seq == 4).values(details='{"n":400}')
        )
    report = await verify_audit_chain(store)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 4, "record altered")
    assert report.records == 3


async def test_an_altered_time_is_found(store: SqlStore) -> None:
    await _append(store, 3)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(audit_events).where(audit_events.c.seq == 2).values(at=NOW - timedelta(days=1))
        )
    report = await verify_audit_chain(store)
    assert (report.ok, report.first_bad_seq) == (False, 2)


async def test_a_deleted_middle_record_is_found(store: SqlStore) -> None:
    await _append(store, 6)
    async with store.engine.begin() as conn:
        await conn.execute(delete(audit_events).where(audit_events.c.seq == 3))
    report = await verify_audit_chain(store)
    assert (report.ok, report.first_bad_seq, report.problem) == (False, 3, "record missing")


async def test_a_deleted_last_record_is_found_through_the_head(store: SqlStore) -> None:
    await _append(store, 6)
    async with store.engine.begin() as conn:
        await conn.execute(delete(audit_events).where(audit_events.c.seq == 6))
    report = await verify_audit_chain(store)
    assert (report.ok, report.first_bad_seq, report.records) == (False, 6, 5)
    assert report.problem is not None
    assert "head" in report.problem


async def test_a_rewritten_head_is_found(store: SqlStore) -> None:
    await _append(store, 2)
    async with store.engine.begin() as conn:
        await conn.execute(update(audit_head).values(hash="f" * 64))
    report = await verify_audit_chain(store)
    assert report.ok is False


class AbortError(Exception):
    pass


async def _append_then_fail(store: SqlStore) -> None:
    async with store.transaction() as uow:
        await uow.audit.append(_event(99))
        raise AbortError


async def test_a_rolled_back_append_leaves_no_gap(store: SqlStore) -> None:
    await _append(store, 2)
    with pytest.raises(AbortError):
        await _append_then_fail(store)
    recorded = await _append(store, 1)
    assert recorded[0].seq == 3
    assert (await verify_audit_chain(store)).records == 3
