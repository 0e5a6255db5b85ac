"""The hosted pages' storage, on SQLite and PostgreSQL: page tokens and grants by challenge id
are single use (also between concurrent transactions of two stores), browser sessions revoke
once, and deleting a session takes its tokens and browser sessions with it."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from stepguard.adapters.storage import SqlStore, SqlUnitOfWork
from stepguard.core.model import Grant
from stepguard.core.pages import BrowserSession, PagePurpose, PageToken

from .conftest import StoreFactory
from .factories import NOW, World, build_world

N = 12
AT = NOW + timedelta(seconds=30)


def page_token(w: World, **overrides: object) -> PageToken:
    fields: dict[str, object] = {
        "token_hash": secrets.token_hex(32),
        "purpose": PagePurpose.CHALLENGE,
        "subject_id": w.subject.id,
        "session_id": w.session.id,
        "challenge_id": w.challenge.id,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=5),
    }
    fields.update(overrides)
    return PageToken(**fields)  # type: ignore[arg-type]


def browser_session(w: World) -> BrowserSession:
    return BrowserSession(
        id_hash=secrets.token_hex(32),
        subject_id=w.subject.id,
        session_id=w.session.id,
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


def binding(g: Grant) -> dict[str, str]:
    return {
        "subject_id": g.subject_id,
        "session_id": g.session_id,
        "action": g.action,
        "transaction_digest": g.transaction_digest,
    }


async def test_a_page_token_round_trips_and_is_consumed_once(store: SqlStore) -> None:
    w = await build_world(store)
    token = page_token(w)
    async with store.transaction() as uow:
        await uow.page_tokens.add(token)
    async with store.transaction() as uow:
        used = await uow.page_tokens.consume(token.token_hash, at=AT)
        again = await uow.page_tokens.consume(token.token_hash, at=AT)
    assert used == dataclasses.replace(token, used_at=AT)
    assert again is None


async def test_an_account_token_has_no_challenge(store: SqlStore) -> None:
    w = await build_world(store)
    token = page_token(w, purpose=PagePurpose.ACCOUNT, challenge_id=None)
    async with store.transaction() as uow:
        await uow.page_tokens.add(token)
        used = await uow.page_tokens.consume(token.token_hash, at=AT)
    assert used is not None
    assert used.purpose is PagePurpose.ACCOUNT
    assert used.challenge_id is None


async def test_an_expired_or_unknown_page_token_is_refused(store: SqlStore) -> None:
    w = await build_world(store)
    token = page_token(w)
    async with store.transaction() as uow:
        await uow.page_tokens.add(token)
        assert await uow.page_tokens.consume(token.token_hash, at=token.expires_at) is None
        assert await uow.page_tokens.consume("f" * 64, at=AT) is None
        # The refused attempts did not use it up.
        assert await uow.page_tokens.consume(token.token_hash, at=AT) is not None


async def test_a_browser_session_is_active_until_revoked_or_expired(store: SqlStore) -> None:
    w = await build_world(store)
    browser = browser_session(w)
    async with store.transaction() as uow:
        await uow.browser_sessions.add(browser)
    async with store.read() as uow:
        assert await uow.browser_sessions.get_active(browser.id_hash, at=AT) == browser
        assert await uow.browser_sessions.get_active(browser.id_hash, at=browser.expires_at) is None
        assert await uow.browser_sessions.get_active("f" * 64, at=AT) is None
    async with store.transaction() as uow:
        assert await uow.browser_sessions.revoke(browser.id_hash, at=AT) is True
        assert await uow.browser_sessions.revoke(browser.id_hash, at=AT) is False
    async with store.read() as uow:
        assert await uow.browser_sessions.get_active(browser.id_hash, at=AT) is None


@pytest.mark.parametrize(
    "mismatch",
    ["challenge_id", "subject_id", "session_id", "action", "transaction_digest", "expired"],
)
async def test_a_grant_by_challenge_is_refused_when_any_binding_differs(
    store: SqlStore, mismatch: str
) -> None:
    w = await build_world(store)
    g = w.grant
    bound = binding(g)
    challenge_id, at = g.challenge_id, AT
    if mismatch == "challenge_id":
        challenge_id = "chl_other"
    elif mismatch == "expired":
        at = g.expires_at
    else:
        bound[mismatch] = "other"
    async with store.transaction() as uow:
        assert await uow.grants.consume_for_challenge(challenge_id, at=at, **bound) is None
        used = await uow.grants.consume_for_challenge(g.challenge_id, at=AT, **binding(g))
    assert used == dataclasses.replace(g, used_at=AT)


async def test_a_grant_is_single_use_whichever_way_it_is_redeemed(store: SqlStore) -> None:
    w = await build_world(store)
    g = w.grant
    async with store.transaction() as uow:
        assert await uow.grants.consume_for_challenge(g.challenge_id, at=AT, **binding(g))
        assert await uow.grants.consume_for_challenge(g.challenge_id, at=AT, **binding(g)) is None
        assert await uow.grants.consume(g.token_hash, at=AT, **binding(g)) is None


async def test_deleting_a_session_deletes_its_tokens_and_browser_sessions(store: SqlStore) -> None:
    w = await build_world(store)
    token, browser = page_token(w), browser_session(w)
    async with store.transaction() as uow:
        await uow.page_tokens.add(token)
        await uow.browser_sessions.add(browser)
    async with store.transaction() as uow:
        assert await uow.subjects.delete(w.subject.id)
    async with store.transaction() as uow:
        assert await uow.page_tokens.consume(token.token_hash, at=AT) is None
        assert await uow.browser_sessions.get_active(browser.id_hash, at=AT) is None


Attempt = Callable[[SqlUnitOfWork], Awaitable[bool]]


async def _race(stores: list[SqlStore], attempt: Attempt) -> list[bool]:
    """N transactions, spread over independent stores (separate pools), that start together."""
    for store in stores:
        await asyncio.gather(*(store.ping() for _ in range(N // len(stores))))
    barrier = asyncio.Barrier(N)

    async def one(store: SqlStore) -> bool:
        hold_open = store.backend == "postgresql"
        if not hold_open:
            await barrier.wait()
        async with store.transaction() as uow:
            if hold_open:
                await barrier.wait()
            return await attempt(uow)

    async with asyncio.timeout(30):
        return list(await asyncio.gather(*(one(stores[i % len(stores)]) for i in range(N))))


@pytest.mark.parametrize("operation", ["page_token", "grant_by_challenge", "browser_revoke"])
async def test_exactly_one_concurrent_transaction_wins(
    make_store: StoreFactory, operation: str
) -> None:
    stores = [make_store(pool_size=N, max_overflow=0) for _ in range(2)]
    w = await build_world(stores[0])
    token, browser = page_token(w), browser_session(w)
    async with stores[0].transaction() as uow:
        await uow.page_tokens.add(token)
        await uow.browser_sessions.add(browser)

    async def attempt(uow: SqlUnitOfWork) -> bool:
        if operation == "page_token":
            return await uow.page_tokens.consume(token.token_hash, at=AT) is not None
        if operation == "browser_revoke":
            return await uow.browser_sessions.revoke(browser.id_hash, at=AT)
        g = w.grant
        return (
            await uow.grants.consume_for_challenge(g.challenge_id, at=AT, **binding(g)) is not None
        )

    results = await _race(stores, attempt)
    assert results.count(True) == 1
