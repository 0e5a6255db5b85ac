"""The Store contract: every entity round-trips, ownership cascades, single-use writes win once.

Runs against every backend (see conftest). Nothing here knows which backend it is on, except
where it reads a raw column to prove a secret is encrypted at rest.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import ReadOnlyTransactionError, SqlStore, verify_audit_chain
from stepguard.adapters.storage import tables as t
from stepguard.core.assurance import AssuranceLevel, Requirement
from stepguard.core.errors import ConflictError, NotFoundError
from stepguard.core.model import AuditEvent, ChallengeStatus, FactorStatus, Subject
from stepguard.service.ports import Store, UnitOfWork

from .conftest import POSTGRES, SQLITE, only_on
from .factories import (
    NOW,
    SEED,
    api_key,
    build_world,
    challenge,
    grant,
    primary,
    recovery_factor,
    session,
    step_up,
    subject,
    totp_factor,
)


def _assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is UTC


async def test_subject_round_trips_and_upsert_keeps_created_at(store: SqlStore) -> None:
    original = subject()
    async with store.transaction() as uow:
        await uow.subjects.upsert(original)
    async with store.read() as uow:
        loaded = await uow.subjects.get(original.id)
        assert await uow.subjects.get("nobody") is None
    assert loaded == original
    assert loaded is not None
    _assert_utc(loaded.created_at)

    later = NOW + timedelta(days=1)
    changed = subject(
        original.id, email=None, groups=(), created_at=later, updated_at=later, phone="+1"
    )
    async with store.transaction() as uow:
        await uow.subjects.upsert(changed)
    async with store.read() as uow:
        reloaded = await uow.subjects.get(original.id)
    assert reloaded is not None
    assert (reloaded.email, reloaded.phone, reloaded.groups) == (None, "+1", ())
    assert reloaded.updated_at == later
    assert reloaded.created_at == NOW  # a subject is created once


async def test_session_round_trips_with_factors_in_order(store: SqlStore) -> None:
    sub = subject()
    ses = session(sub.id, factors=(primary(NOW), step_up("fac_1", NOW + timedelta(seconds=1))))
    later = step_up("fac_2", NOW - timedelta(days=1))  # older timestamp, added last
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.sessions.add(ses)
        await uow.sessions.add_factor(ses.id, later)
    async with store.read() as uow:
        loaded = await uow.sessions.get(ses.id)
        assert await uow.sessions.get("nope") is None
    assert loaded is not None
    assert loaded == ses.__class__(
        id=ses.id,
        subject_id=ses.subject_id,
        created_at=ses.created_at,
        expires_at=ses.expires_at,
        ip=ses.ip,
        user_agent=ses.user_agent,
        factors=(*ses.factors, later),  # insertion order, not time order
    )
    for value in (loaded.created_at, loaded.expires_at, *(f.completed_at for f in loaded.factors)):
        _assert_utc(value)


async def test_a_session_and_its_subject_load_together(store: SqlStore) -> None:
    sub = subject(groups=("staff", "admins"))
    ses = session(sub.id, factors=(primary(NOW), step_up("fac_1", NOW + timedelta(seconds=1))))
    bare = session(sub.id, factors=())
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.sessions.add(ses)
        await uow.sessions.add(bare)
    async with store.read() as uow:
        found = await uow.sessions.get_with_subject(ses.id)
        found_bare = await uow.sessions.get_with_subject(bare.id)
        alone = await uow.sessions.get(ses.id)
        subject_alone = await uow.subjects.get(sub.id)
        assert await uow.sessions.get_with_subject("nope") is None
    assert found is not None
    assert found == (alone, subject_alone)
    assert found[1] == sub
    assert found_bare is not None
    assert found_bare[0].factors == ()
    assert found_bare[1] == sub


async def test_session_without_factors_and_revocation_wins_once(store: SqlStore) -> None:
    sub = subject()
    ses = session(sub.id, factors=(), ip=None, user_agent=None)
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.sessions.add(ses)
    at = NOW + timedelta(minutes=1)
    async with store.transaction() as uow:
        assert await uow.sessions.revoke(ses.id, at=at) is True
        assert await uow.sessions.revoke(ses.id, at=at + timedelta(seconds=1)) is False
        assert await uow.sessions.revoke("nope", at=at) is False
    async with store.read() as uow:
        loaded = await uow.sessions.get(ses.id)
    assert loaded is not None
    assert loaded.factors == ()
    assert loaded.revoked_at == at
    assert not loaded.is_active(at)


async def test_non_utc_datetimes_come_back_as_the_same_instant_in_utc(store: SqlStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 3, 14, 17, 9, 26, 535897, tzinfo=plus_two)
    sub = subject(created_at=local, updated_at=local)
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
    async with store.read() as uow:
        loaded = await uow.subjects.get(sub.id)
    assert loaded is not None
    assert loaded.created_at == local
    assert loaded.created_at.tzinfo is UTC
    assert loaded.created_at.isoformat() == "2025-03-14T15:09:26.535897+00:00"


async def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    naive = datetime(2025, 1, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        await _in_transaction(
            store, lambda uow: uow.subjects.upsert(subject(created_at=naive, updated_at=naive))
        )


async def test_totp_factor_round_trips_with_its_secret(store: SqlStore) -> None:
    sub = subject()
    factor = totp_factor(sub.id, last_step=55_555_555, failed_attempts=2)
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.factors.add(factor)
    async with store.read() as uow:
        loaded = await uow.factors.get(sub.id, factor.id)
        assert await uow.factors.get("someone-else", factor.id) is None
        listed = await uow.factors.list_for_subject(sub.id)
    assert loaded is not None
    assert loaded.secret is not None
    assert loaded.secret.reveal() == SEED
    assert "Secret('**********')" in repr(loaded)
    assert SEED.hex() not in repr(loaded)
    assert loaded.totp == factor.totp
    assert (loaded.type, loaded.status, loaded.label) == (factor.type, factor.status, "phone")
    assert (loaded.last_step, loaded.failed_attempts) == (55_555_555, 2)
    _assert_utc(loaded.created_at)
    assert [f.id for f in listed] == [factor.id]


async def test_factor_secret_is_encrypted_at_rest(store: SqlStore, box: SecretBox) -> None:
    sub = subject()
    factor = totp_factor(sub.id)
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.factors.add(factor)
    async with store.engine.connect() as conn:
        stored = (
            await conn.execute(select(t.factors.c.secret_enc).where(t.factors.c.id == factor.id))
        ).scalar_one()
    assert isinstance(stored, str)
    for encoding in (SEED, SEED.hex().encode(), base64.b32encode(SEED), base64.b64encode(SEED)):
        assert encoding not in stored.encode()
    assert box.decrypt(stored) == SEED


async def test_factor_listing_is_ordered_and_scoped_to_the_subject(store: SqlStore) -> None:
    sub, other = subject(), subject()
    first = recovery_factor(sub.id, created_at=NOW)
    second = totp_factor(sub.id, created_at=NOW + timedelta(seconds=1))
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.subjects.upsert(other)
        await uow.factors.add(second)
        await uow.factors.add(first)
        await uow.factors.add(totp_factor(other.id))
    async with store.read() as uow:
        listed = await uow.factors.list_for_subject(sub.id)
    assert [f.id for f in listed] == [first.id, second.id]
    assert listed[0].secret is None
    assert listed[0].totp is None


async def test_factor_state_changes(store: SqlStore) -> None:
    sub = subject()
    factor = totp_factor(sub.id)
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.factors.add(factor)
    locked = NOW + timedelta(minutes=15)
    async with store.transaction() as uow:
        await uow.factors.activate(factor.id, at=NOW)
        await uow.factors.record_failure(factor.id, failed_attempts=5, locked_until=locked)
    async with store.read() as uow:
        failed = await uow.factors.get(sub.id, factor.id)
    assert failed is not None
    assert (failed.status, failed.confirmed_at) == (FactorStatus.ACTIVE, NOW)
    assert (failed.failed_attempts, failed.locked_until) == (5, locked)
    used = NOW + timedelta(minutes=16)
    async with store.transaction() as uow:
        await uow.factors.record_success(factor.id, at=used)
    async with store.read() as uow:
        ok = await uow.factors.get(sub.id, factor.id)
    assert ok is not None
    assert (ok.failed_attempts, ok.locked_until, ok.last_used_at) == (0, None, used)


async def test_updating_a_missing_factor_raises_not_found(store: SqlStore) -> None:
    async with store.transaction() as uow:
        with pytest.raises(NotFoundError):
            await uow.factors.activate("missing", at=NOW)
        with pytest.raises(NotFoundError):
            await uow.factors.record_failure("missing", failed_attempts=1, locked_until=None)
        with pytest.raises(NotFoundError):
            await uow.factors.record_success("missing", at=NOW)
        assert await uow.factors.delete("missing") is False
        assert await uow.factors.advance_totp_step("missing", 1) is False


async def test_totp_step_only_moves_forward(store: SqlStore) -> None:
    world = await build_world(store)
    fid = world.totp.id
    async with store.transaction() as uow:
        assert await uow.factors.advance_totp_step(fid, 100) is True
        assert await uow.factors.advance_totp_step(fid, 100) is False  # replay
        assert await uow.factors.advance_totp_step(fid, 99) is False  # older
        assert await uow.factors.advance_totp_step(fid, 101) is True
    async with store.read() as uow:
        loaded = await uow.factors.get(world.subject.id, fid)
    assert loaded is not None
    assert loaded.last_step == 101


async def test_recovery_codes_are_single_use_and_replaceable(store: SqlStore) -> None:
    world = await build_world(store)
    fid, code = world.codes.id, world.code_hashes[3]
    async with store.transaction() as uow:
        assert await uow.factors.count_recovery_codes(fid) == 10
        assert await uow.factors.consume_recovery_code(fid, code, at=NOW) is True
        assert await uow.factors.consume_recovery_code(fid, code, at=NOW) is False
        assert await uow.factors.consume_recovery_code(fid, "0" * 64, at=NOW) is False
        assert await uow.factors.consume_recovery_code(world.totp.id, code, at=NOW) is False
        assert await uow.factors.count_recovery_codes(fid) == 9
    async with store.transaction() as uow:
        await uow.factors.replace_recovery_codes(fid, ["a" * 64, "b" * 64])
        assert await uow.factors.count_recovery_codes(fid) == 2
        assert await uow.factors.consume_recovery_code(fid, code, at=NOW) is False
        assert await uow.factors.consume_recovery_code(fid, "a" * 64, at=NOW) is True
        await uow.factors.replace_recovery_codes(fid, [])
        assert await uow.factors.count_recovery_codes(fid) == 0


async def test_deleting_a_factor_deletes_its_codes(store: SqlStore) -> None:
    world = await build_world(store)
    async with store.transaction() as uow:
        assert await uow.factors.delete(world.codes.id) is True
        assert await uow.factors.delete(world.codes.id) is False
    async with store.engine.connect() as conn:
        codes = (await conn.execute(select(func.count()).select_from(t.recovery_codes))).scalar()
    assert codes == 0


async def test_challenge_round_trips_with_its_requirement(store: SqlStore) -> None:
    world = await build_world(store)
    plain = challenge(
        world.subject.id,
        world.session.id,
        resource=None,
        requirement=Requirement(acr=AssuranceLevel.AAL2, max_age=0),
    )
    async with store.transaction() as uow:
        await uow.challenges.add(plain)
    async with store.read() as uow:
        loaded = await uow.challenges.get(world.challenge.id)
        loaded_plain = await uow.challenges.get(plain.id)
        assert await uow.challenges.get("nope") is None
    assert loaded == world.challenge
    assert loaded_plain == plain
    assert loaded_plain is not None
    assert loaded_plain.requirement.methods == frozenset()
    assert loaded_plain.requirement.max_age == 0


async def test_challenge_is_satisfied_once_and_never_after_expiry(store: SqlStore) -> None:
    world = await build_world(store)
    cid = world.challenge.id
    at = NOW + timedelta(seconds=30)
    expired = world.challenge.expires_at
    async with store.transaction() as uow:
        assert await uow.challenges.mark_satisfied(cid, at=expired, factor_id="f") is False
        assert await uow.challenges.mark_satisfied(cid, at=at, factor_id=world.totp.id) is True
        assert await uow.challenges.mark_satisfied(cid, at=at, factor_id=world.totp.id) is False
        assert await uow.challenges.mark_satisfied("nope", at=at, factor_id="f") is False
    async with store.read() as uow:
        loaded = await uow.challenges.get(cid)
    assert loaded is not None
    assert (loaded.status, loaded.satisfied_at, loaded.satisfied_by) == (
        ChallengeStatus.SATISFIED,
        at,
        world.totp.id,
    )


@pytest.mark.parametrize(
    "mismatch",
    ["token_hash", "subject_id", "session_id", "action", "transaction_digest", "expired"],
)
async def test_grant_is_refused_when_any_binding_differs(store: SqlStore, mismatch: str) -> None:
    world = await build_world(store)
    g = world.grant
    binding = {
        "subject_id": g.subject_id,
        "session_id": g.session_id,
        "action": g.action,
        "transaction_digest": g.transaction_digest,
    }
    token, at = g.token_hash, NOW + timedelta(seconds=10)
    if mismatch == "token_hash":
        token = "f" * 64
    elif mismatch == "expired":
        at = g.expires_at
    else:
        binding[mismatch] = "other"
    async with store.transaction() as uow:
        assert await uow.grants.consume(token, at=at, **binding) is None
        # ...and the refused attempt did not use it up.
        used = await uow.grants.consume(g.token_hash, at=NOW, **_binding(g))
    assert used is not None


def _binding(g: object) -> dict[str, str]:
    return {
        name: getattr(g, name)
        for name in ("subject_id", "session_id", "action", "transaction_digest")
    }


async def test_grant_is_consumed_exactly_once(store: SqlStore) -> None:
    world = await build_world(store)
    g = world.grant
    at = NOW + timedelta(seconds=10)
    async with store.transaction() as uow:
        used = await uow.grants.consume(g.token_hash, at=at, **_binding(g))
        again = await uow.grants.consume(g.token_hash, at=at, **_binding(g))
    assert again is None
    assert used is not None
    assert used.used_at == at
    assert used == dataclasses.replace(g, used_at=at)


async def test_api_keys_round_trip_and_revoke_once(store: SqlStore) -> None:
    first = api_key(created_at=NOW)
    second = api_key(created_at=NOW + timedelta(seconds=1))
    async with store.transaction() as uow:
        await uow.api_keys.add(second)
        await uow.api_keys.add(first)
    async with store.transaction() as uow:
        assert await uow.api_keys.get(first.id) == first
        assert await uow.api_keys.get("nope") is None
        assert await uow.api_keys.list() == [first, second]
        assert await uow.api_keys.revoke(first.id, at=NOW) is True
        assert await uow.api_keys.revoke(first.id, at=NOW) is False
        assert await uow.api_keys.revoke("nope", at=NOW) is False
    async with store.read() as uow:
        revoked = await uow.api_keys.get(first.id)
    assert revoked is not None
    assert revoked.revoked_at == NOW


async def test_deleting_a_subject_deletes_what_it_owns_but_not_its_audit(
    store: SqlStore,
) -> None:
    world = await build_world(store)
    keep = await build_world(store)  # another subject: untouched
    async with store.transaction() as uow:
        await uow.audit.append(
            AuditEvent(type="session.created", at=NOW, outcome="ok", subject_id=world.subject.id)
        )
    async with store.transaction() as uow:
        assert await uow.subjects.delete(world.subject.id) is True
        assert await uow.subjects.delete(world.subject.id) is False
    async with store.engine.connect() as conn:
        counts = {
            table.name: (await conn.execute(select(func.count()).select_from(table))).scalar()
            for table in (
                t.subjects,
                t.sessions,
                t.session_factors,
                t.factors,
                t.recovery_codes,
                t.challenges,
                t.grants,
                t.audit_events,
            )
        }
    assert counts == {
        "subjects": 1,
        "sessions": 1,
        "session_factors": 1,
        "factors": 2,
        "recovery_codes": 10,
        "challenges": 1,
        "grants": 1,
        "audit_events": 1,
    }
    async with store.read() as uow:
        assert await uow.sessions.get(world.session.id) is None
        assert await uow.sessions.get(keep.session.id) is not None
        records = await uow.audit.query(subject_id=world.subject.id)
    assert [r.event.type for r in records] == ["session.created"]


async def test_duplicate_keys_raise_conflict(store: SqlStore) -> None:
    world = await build_world(store)
    cases: list[Callable[[UnitOfWork], Awaitable[None]]] = [
        lambda uow: uow.sessions.add(world.session),
        lambda uow: uow.factors.add(world.totp),
        lambda uow: uow.challenges.add(world.challenge),
        lambda uow: uow.grants.add(world.grant),
        lambda uow: uow.factors.replace_recovery_codes(world.codes.id, ["x", "x"]),
    ]
    key = api_key()
    async with store.transaction() as uow:
        await uow.api_keys.add(key)
    cases.append(lambda uow: uow.api_keys.add(key))
    for case in cases:
        with pytest.raises(ConflictError):
            await _in_transaction(store, case)


async def _in_transaction(store: Store, action: Callable[[UnitOfWork], Awaitable[None]]) -> None:
    async with store.transaction() as uow:
        await action(uow)


async def test_rows_for_a_missing_owner_raise_not_found(store: SqlStore) -> None:
    cases: list[Callable[[UnitOfWork], Awaitable[None]]] = [
        lambda uow: uow.sessions.add(session("no-such-subject")),
        lambda uow: uow.factors.add(totp_factor("no-such-subject")),
        lambda uow: uow.sessions.add_factor("no-such-session", primary()),
    ]
    for case in cases:
        with pytest.raises(NotFoundError):
            await _in_transaction(store, case)


def test_sql_store_implements_the_store_port(store: SqlStore) -> None:
    port: Store = store  # mypy checks the structure; this checks nothing breaks at runtime
    assert callable(port.transaction)


class BoomError(Exception):
    pass


async def _write_then_fail(store: SqlStore, sub: Subject) -> None:
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.audit.append(AuditEvent(type="x", at=NOW, outcome="ok"))
        raise BoomError


async def test_a_failed_block_rolls_everything_back(store: SqlStore) -> None:
    sub = subject()
    with pytest.raises(BoomError):
        await _write_then_fail(store, sub)
    async with store.read() as uow:
        assert await uow.subjects.get(sub.id) is None
        assert await uow.audit.head() == (0, "0" * 64)


async def test_read_only_units_of_work_refuse_writes(store: SqlStore) -> None:
    async with store.read() as uow:
        with pytest.raises(ReadOnlyTransactionError):
            await uow.subjects.upsert(subject())
        with pytest.raises(ReadOnlyTransactionError):
            await uow.audit.append(AuditEvent(type="x", at=NOW, outcome="ok"))
        with pytest.raises(ReadOnlyTransactionError):
            await uow.factors.get_for_update("s", "f")
    async with store.read() as uow:
        assert await uow.subjects.get("any") is None


async def test_a_read_sees_one_snapshot(store: SqlStore) -> None:
    world = await build_world(store)
    async with store.read() as reader:
        before = await reader.sessions.get(world.session.id)
        async with store.transaction() as writer:
            await writer.sessions.revoke(world.session.id, at=NOW)
        during = await reader.sessions.get(world.session.id)
    assert before == during
    async with store.read() as uow:
        after = await uow.sessions.get(world.session.id)
    assert after is not None
    assert after.revoked_at == NOW


async def test_ping_and_repr(store: SqlStore) -> None:
    await store.ping()
    assert "://" not in repr(store)


async def test_grant_row_survives_challenge_ids_that_do_not_exist(store: SqlStore) -> None:
    """``challenge_id`` is informational: the grant's own bindings are what is checked."""
    world = await build_world(store)
    orphan = grant(world.subject.id, world.session.id, "no-such-challenge")
    async with store.transaction() as uow:
        await uow.grants.add(orphan)
        assert await uow.grants.consume(orphan.token_hash, at=NOW, **_binding(orphan))


@only_on([SQLITE])
async def test_raw_sql_sees_utc_text_on_sqlite(store: SqlStore) -> None:
    """On SQLite, times are fixed-width UTC text, so text order is time order."""
    sub = subject()
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
    async with store.engine.connect() as conn:
        raw = (
            await conn.execute(
                text("SELECT created_at FROM subjects WHERE id = :id"), {"id": sub.id}
            )
        ).scalar_one()
    assert raw == "2025-03-14T15:09:26.535897+00:00"


@only_on([POSTGRES])
async def test_postgres_stores_times_as_timestamptz(store: SqlStore) -> None:
    sub = subject()
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
    async with store.engine.connect() as conn:
        kind = (
            await conn.execute(
                text("SELECT pg_typeof(created_at)::text FROM subjects WHERE id = :id"),
                {"id": sub.id},
            )
        ).scalar_one()
    assert kind == "timestamp with time zone"


async def test_an_in_memory_store_serializes_its_single_connection(box: SecretBox) -> None:
    """``sqlite://`` is one shared connection: concurrent units of work take turns."""
    store = SqlStore("sqlite://", box)
    try:
        await store.create_schema()
        subjects = [subject() for _ in range(10)]

        async def add(sub: Subject) -> None:
            async with store.transaction() as uow:
                await uow.subjects.upsert(sub)
                await asyncio.sleep(0)  # let the others try to interleave
                await uow.audit.append(AuditEvent(type="x", at=NOW, outcome="ok"))

        async def read(sub: Subject) -> None:
            await store.ping()
            async with store.read() as uow:
                await uow.subjects.get(sub.id)

        await asyncio.gather(*(add(s) for s in subjects), *(read(s) for s in subjects))
        async with store.read() as uow:
            found = [await uow.subjects.get(s.id) for s in subjects]
            assert await uow.audit.head() != (0, "0" * 64)
        assert found == subjects
        assert (await verify_audit_chain(store)).records == 10
    finally:
        await store.close()


async def test_a_lookup_reads_committed_state_and_refuses_writes(store: SqlStore) -> None:
    sub = subject()
    ses = session(sub.id, factors=(primary(NOW),))
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.sessions.add(ses)
    async with store.lookup() as uow:
        found = await uow.sessions.get_with_subject(ses.id)
    assert found is not None
    assert found[0].id == ses.id
    with pytest.raises(ReadOnlyTransactionError):
        async with store.lookup() as uow:
            await uow.subjects.upsert(subject())
    async with store.read() as uow:
        assert await uow.subjects.get(sub.id) == sub
