"""Purging expired rows, on SQLite and PostgreSQL: what expired before the cut-off goes,
what is still valid (or expired after it) stays, factors and the audit log are never touched,
and a purged single-use token is as unusable as a used one."""

from __future__ import annotations

from datetime import timedelta

from stepguard.adapters.storage import SqlStore
from stepguard.adapters.storage.tables import audit_events, factors
from stepguard.core.model import AuditEvent
from stepguard.core.pages import PagePurpose, PageToken

from .factories import NOW, build_world, challenge, grant, session


async def test_rows_expired_before_the_cut_off_are_deleted_and_the_rest_stay(
    store: SqlStore,
) -> None:
    w = await build_world(store)  # session and challenge valid after NOW
    old_session = session(w.subject.id, expires_at=NOW - timedelta(days=3))
    old_challenge = challenge(w.subject.id, old_session.id, expires_at=NOW - timedelta(days=3))
    old_grant = grant(
        w.subject.id, old_session.id, old_challenge.id, expires_at=NOW - timedelta(days=3)
    )
    stale_token = PageToken(
        token_hash="a" * 64,
        purpose=PagePurpose.CHALLENGE,
        subject_id=w.subject.id,
        session_id=w.session.id,
        challenge_id=w.challenge.id,
        created_at=NOW - timedelta(days=2),
        expires_at=NOW - timedelta(days=2),
    )
    recent_token = PageToken(
        token_hash="b" * 64,
        purpose=PagePurpose.CHALLENGE,
        subject_id=w.subject.id,
        session_id=w.session.id,
        challenge_id=w.challenge.id,
        created_at=NOW - timedelta(minutes=10),
        expires_at=NOW - timedelta(minutes=5),  # expired, but after the cut-off
    )
    async with store.transaction() as uow:
        await uow.sessions.add(old_session)
        await uow.challenges.add(old_challenge)
        await uow.grants.add(old_grant)
        await uow.page_tokens.add(stale_token)
        await uow.page_tokens.add(recent_token)
        await uow.audit.append(AuditEvent(type="test.kept", at=NOW, outcome="ok"))

    async with store.transaction() as uow:
        deleted = await uow.expired.purge(before=NOW - timedelta(days=1))
    assert deleted["sessions"] == 1
    assert deleted["challenges"] == 1
    assert deleted["grants"] == 1
    assert deleted["page_tokens"] == 1
    assert deleted["webauthn_ceremonies"] == 0

    async with store.transaction() as uow:
        assert await uow.sessions.get(old_session.id) is None
        assert await uow.challenges.get(old_challenge.id) is None
        assert await uow.sessions.get(w.session.id) is not None
        assert await uow.challenges.get(w.challenge.id) is not None
        # Purged or not, an expired token is refused; the recent one stays until its turn.
        assert await uow.page_tokens.consume("a" * 64, at=NOW) is None
        audit_rows = (await uow.execute(audit_events.select())).all()
        factor_rows = (await uow.execute(factors.select())).all()
    assert [row.type for row in audit_rows] == ["test.kept"]
    assert len(factor_rows) == 2

    async with store.transaction() as uow:
        again = await uow.expired.purge(before=NOW - timedelta(days=1))
    assert sum(again.values()) == 0
