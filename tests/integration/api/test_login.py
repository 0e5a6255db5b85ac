"""Password sign-in on StepGuard itself (``/login``) over HTTP against the real app and store,
on SQLite and PostgreSQL: the redirect and the browser cookie, ``return_to``, one answer for
every failure, the per-account lockout across addresses, the per-IP limit across accounts,
rehashing, CSRF and ``Origin``, concurrent guesses, the password API, and sign-out.

Each "browser" is an httpx client with its own cookie jar and its own client address (the
ASGI socket peer, which is all the sign-in limits look at)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher as RawArgon2
from sqlalchemy import select

from stepguard.adapters.storage.tables import passwords
from support.harness import Harness, start_harness

PUBLIC = "http://localhost"
APP = "https://app.example"
BROWSER_COOKIE = "stepguard_browser"
LOGIN_COOKIE = "stepguard_login"
PASSWORD = "correct horse battery staple"
FAILURE = "That email or password is not right."
CONTINUE = "/oidc/authorize/continue?req=abc123"
IP_LIMIT = 4


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Harness]:
    harness, runtime = await start_harness(
        database_url,
        settings_overrides={
            "public_url": PUBLIC,
            "return_to_origins": [APP],
            "password_hash_profile": "test",
            "dev_mode": True,
            "login_ip_max_failures": IP_LIMIT,
        },
    )
    await harness.put_subject("alice", email="Alice@Example.com")
    await set_password(harness, "alice", PASSWORD)
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


async def set_password(api: Harness, subject: str, password: str) -> None:
    response = await api.client.put(f"/v1/subjects/{subject}/password", json={"password": password})
    assert response.status_code == 204, response.text


def browser(api: Harness, ip: str = "198.51.100.7") -> httpx.AsyncClient:
    """A new browser at client address ``ip``: its own cookie jar, no API key."""
    app = api.anon._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url=PUBLIC)


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match, page.text
    return match.group(1)


async def login_form(b: httpx.AsyncClient, return_to: str | None = None) -> str:
    params = {"return_to": return_to} if return_to is not None else {}
    page = await b.get("/login", params=params)
    assert page.status_code == 200, page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY"
    return csrf_of(page)


async def sign_in(
    b: httpx.AsyncClient,
    identifier: str,
    password: str,
    *,
    return_to: str = "",
    csrf: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    token = csrf if csrf is not None else await login_form(b)
    return await b.post(
        "/login",
        data={
            "csrf": token,
            "identifier": identifier,
            "password": password,
            "return_to": return_to,
        },
        headers=headers,
    )


async def events(api: Harness, type_: str) -> list[dict[str, Any]]:
    return await api.audit(type=type_)


async def reasons(api: Harness) -> list[str]:
    return [e["details"]["reason"] for e in await events(api, "login.failed")]


# --- success ------------------------------------------------------------------------------


async def test_a_password_signs_in_sets_the_cookie_and_returns_to_the_continuation(
    api: Harness,
) -> None:
    async with browser(api) as b:
        csrf = await login_form(b, return_to=CONTINUE)
        page = await b.get("/login", params={"return_to": CONTINUE})
        assert f'name="return_to" value="{CONTINUE}"'.replace("&", "&amp;") in page.text or (
            "/oidc/authorize/continue?req=abc123" in page.text
        )
        response = await sign_in(b, "ALICE@example.com", PASSWORD, return_to=CONTINUE, csrf=csrf)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == CONTINUE
        assert BROWSER_COOKIE in response.cookies
        account = await b.get("/account/factors")
        assert account.status_code == 200, account.text
        assert '<strong id="signed-in-as">alice</strong>' in account.text

    created = await events(api, "session.created")
    assert created[-1]["subject_id"] == "alice"
    assert created[-1]["details"]["via"] == "password"
    assert created[-1]["details"]["amr"] == ["pwd"]
    session_id = created[-1]["session_id"]
    session = await api.client.get(f"/v1/sessions/{session_id}")
    assert session.status_code == 200
    assert session.json()["acr"] == "aal1"
    assert [e["details"]["via"] for e in await events(api, "page.signed_in")] == ["password"]
    succeeded = await events(api, "login.succeeded")
    assert succeeded[-1]["details"]["ip"] == "198.51.100.7"


async def test_the_subject_id_is_an_identifier_too_and_the_default_is_the_account_page(
    api: Harness,
) -> None:
    async with browser(api) as b:
        response = await sign_in(b, "alice", PASSWORD)
        assert response.status_code == 303
        assert response.headers["location"] == "/account/factors"


@pytest.mark.parametrize(
    ("return_to", "expected"),
    [
        (f"{APP}/done", f"{APP}/done"),
        ("https://evil.example/steal", "/account/factors"),
        ("//evil.example/x", "/account/factors"),
        ("/admin", "/account/factors"),
        ("javascript:alert(1)", "/account/factors"),
        (f"{APP}@evil.example/", "/account/factors"),
    ],
)
async def test_return_to_is_followed_only_when_the_allow_list_accepts_it(
    api: Harness, return_to: str, expected: str
) -> None:
    async with browser(api) as b:
        response = await sign_in(b, "alice@example.com", PASSWORD, return_to=return_to)
        assert response.status_code == 303
        assert response.headers["location"] == expected


# --- one answer for every failure ---------------------------------------------------------


async def test_wrong_password_unknown_user_and_no_password_answer_the_same(api: Harness) -> None:
    await api.put_subject("bob", email="bob@example.com")  # no password
    answers = []
    for identifier, password in [
        ("alice@example.com", "wrong password!"),
        ("nobody@example.com", "wrong password!"),
        ("bob@example.com", "wrong password!"),
    ]:
        async with browser(api) as b:
            csrf = await login_form(b)
            response = await sign_in(b, identifier, password, csrf=csrf)
            assert response.status_code == 401
            assert FAILURE in response.text
            assert BROWSER_COOKIE not in response.cookies
            # The page is the same but for the identifier it echoes and its CSRF token.
            answers.append(response.text.replace(identifier, "ID").replace(csrf, "CSRF"))
    assert answers[0] == answers[1] == answers[2]
    assert await reasons(api) == ["wrong_password", "unknown_identifier", "no_password"]
    audit_text = json.dumps(await api.audit())
    assert "wrong password!" not in audit_text
    assert PASSWORD not in audit_text


# --- guessing limits ----------------------------------------------------------------------


async def test_an_account_locks_after_five_failures_from_different_addresses(
    api: Harness,
) -> None:
    for n in range(5):
        async with browser(api, ip=f"203.0.113.{n + 1}") as b:
            response = await sign_in(b, "alice@example.com", f"guess number {n}")
            assert response.status_code == 401
    async with browser(api, ip="203.0.113.99") as b:
        # The right password, but the account is locked: the same answer, not evaluated.
        response = await sign_in(b, "alice@example.com", PASSWORD)
        assert response.status_code == 401
        assert FAILURE in response.text
    assert await reasons(api) == ["wrong_password"] * 5 + ["account_locked"]
    locked = await events(api, "login.locked")
    assert [(e["subject_id"], e["details"]["scope"]) for e in locked] == [("alice", "account")]

    api.clock.advance(31)
    async with browser(api, ip="203.0.113.99") as b:
        response = await sign_in(b, "alice@example.com", PASSWORD)
        assert response.status_code == 303
    # A success resets the counter: four more failures do not lock.
    for n in range(4):
        async with browser(api, ip=f"203.0.113.{n + 1}") as b:
            await sign_in(b, "alice", f"guess number {n}")
    async with browser(api) as b:
        assert (await sign_in(b, "alice", PASSWORD)).status_code == 303


async def test_one_address_is_limited_across_accounts(api: Harness) -> None:
    for n in range(IP_LIMIT + 1):
        await api.put_subject(f"user{n}", email=f"user{n}@example.com")
        await set_password(api, f"user{n}", f"{PASSWORD} {n}")
    spray = "192.0.2.50"
    for n in range(IP_LIMIT):
        async with browser(api, ip=spray) as b:
            assert (await sign_in(b, f"user{n}@example.com", "Winter2026!")).status_code == 401
    async with browser(api, ip=spray) as b:
        # Another account's right password from the same address: refused, not evaluated.
        response = await sign_in(b, f"user{IP_LIMIT}@example.com", f"{PASSWORD} {IP_LIMIT}")
        assert response.status_code == 401
    assert (await reasons(api))[-1] == "ip_limited"
    locked = await events(api, "login.locked")
    assert [e["details"]["scope"] for e in locked] == ["ip"]
    async with browser(api, ip="192.0.2.51") as b:  # another address is not affected
        response = await sign_in(b, f"user{IP_LIMIT}@example.com", f"{PASSWORD} {IP_LIMIT}")
        assert response.status_code == 303
    api.clock.advance(901)  # the window slides past the failures
    async with browser(api, ip=spray) as b:
        response = await sign_in(b, f"user{IP_LIMIT}@example.com", f"{PASSWORD} {IP_LIMIT}")
        assert response.status_code == 303


async def test_ipv6_addresses_count_per_64(api: Harness) -> None:
    for n in range(IP_LIMIT):
        async with browser(api, ip=f"2001:db8:1:2::{n + 1}") as b:
            await sign_in(b, "nobody@example.com", "Winter2026!")
    async with browser(api, ip="2001:db8:1:2:ffff::1") as b:
        assert (await sign_in(b, "alice", PASSWORD)).status_code == 401
    async with browser(api, ip="2001:db8:1:3::1") as b:
        assert (await sign_in(b, "alice", PASSWORD)).status_code == 303


async def test_twenty_concurrent_guesses_on_one_account_evaluate_only_five(
    api: Harness,
) -> None:
    async def guess(n: int) -> int:
        async with browser(api, ip=f"198.18.0.{n + 1}") as b:
            return (await sign_in(b, "alice@example.com", f"parallel guess {n}")).status_code

    statuses = await asyncio.gather(*(guess(n) for n in range(20)))
    assert statuses == [401] * 20
    found = await reasons(api)
    assert found.count("wrong_password") == 5
    assert found.count("account_locked") == 15


async def test_twenty_concurrent_guesses_from_one_address_evaluate_only_the_ip_limit(
    api: Harness,
) -> None:
    for n in range(20):
        await api.put_subject(f"p{n}", email=f"p{n}@example.com")

    async def guess(n: int) -> int:
        async with browser(api, ip="192.0.2.77") as b:
            return (await sign_in(b, f"p{n}@example.com", "Summer2026!")).status_code

    statuses = await asyncio.gather(*(guess(n) for n in range(20)))
    assert statuses == [401] * 20
    found = await reasons(api)
    assert len(found) == 20
    assert found.count("ip_limited") == 20 - IP_LIMIT


# --- hashing ------------------------------------------------------------------------------


async def test_a_hash_with_other_parameters_is_replaced_on_sign_in(api: Harness) -> None:
    old = RawArgon2(time_cost=2, memory_cost=128, parallelism=1).hash(PASSWORD)
    store = api.runtime.store
    async with store.transaction() as uow:
        await uow.execute(
            passwords.update().where(passwords.c.subject_id == "alice"), {"hash": old}
        )
    async with browser(api) as b:
        assert (await sign_in(b, "alice", PASSWORD)).status_code == 303
    async with store.read() as uow:
        stored = (await uow.execute(select(passwords.c.hash))).scalar_one()
    assert stored != old
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert len(await events(api, "password.rehashed")) == 1
    async with browser(api) as b:  # and the new hash verifies
        assert (await sign_in(b, "alice", PASSWORD)).status_code == 303
    assert len(await events(api, "password.rehashed")) == 1


# --- CSRF and Origin ----------------------------------------------------------------------


async def test_forms_without_the_pre_login_cookie_token_or_from_elsewhere_are_refused(
    api: Harness,
) -> None:
    async with browser(api) as b:
        csrf = await login_form(b)
        for data, headers in [
            ({"csrf": ""}, None),
            ({"csrf": "0" * 64}, None),
            ({"csrf": csrf}, {"Origin": "https://evil.example"}),
            ({"csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
            ({"csrf": csrf}, {"Origin": "null"}),
        ]:
            response = await b.post(
                "/login",
                data={**data, "identifier": "alice", "password": PASSWORD},
                headers=headers,
            )
            assert response.status_code == 403, (data, headers)
            assert BROWSER_COOKIE not in response.cookies
        same_origin = {"Origin": PUBLIC, "Sec-Fetch-Site": "same-origin"}
        ok = await sign_in(b, "alice", PASSWORD, csrf=csrf, headers=same_origin)
        assert ok.status_code == 303
    async with browser(api) as other:  # another browser's token does not fit this cookie
        await login_form(other)
        response = await other.post(
            "/login", data={"csrf": csrf, "identifier": "alice", "password": PASSWORD}
        )
        assert response.status_code == 403
    refused = [e["details"]["reason"] for e in await events(api, "page.refused")]
    assert refused.count("login: missing or wrong CSRF token") == 3
    assert refused.count("login: cross-origin form post") == 3
    assert await events(api, "login.failed") == []  # refused before any attempt


async def test_the_pre_login_cookie_is_httponly_and_lax(api: Harness) -> None:
    async with browser(api) as b:
        page = await b.get("/login")
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(f"{LOGIN_COOKIE}=sgl_")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        again = await b.get("/login")  # kept while it lives
        assert "set-cookie" not in again.headers


# --- the password API ---------------------------------------------------------------------


async def test_the_password_api_applies_the_policy_and_needs_an_api_key(api: Harness) -> None:
    # Lengths and NUL are in the published schema; the rest of the policy answers
    # password_rejected naming the rule.
    for password in ["short", "x" * 1025, "a password\x00with NUL"]:
        response = await api.client.put("/v1/subjects/alice/password", json={"password": password})
        assert response.status_code == 400, password
        assert response.json()["error"] == "invalid_request"
    for password in ["alice@example.COM", "  ALICE  "]:
        response = await api.client.put("/v1/subjects/alice/password", json={"password": password})
        assert response.status_code == 400, password
        assert response.json()["error"] == "password_rejected"
        assert "email or id" in response.json()["message"]
    missing = await api.client.put("/v1/subjects/nobody/password", json={"password": PASSWORD})
    assert missing.status_code == 404
    anonymous = await api.anon.put("/v1/subjects/alice/password", json={"password": PASSWORD})
    assert anonymous.status_code == 401
    extra = await api.client.put(
        "/v1/subjects/alice/password", json={"password": PASSWORD, "hash": "x"}
    )
    assert extra.status_code == 400

    assert (await api.client.delete("/v1/subjects/alice/password")).status_code == 204
    assert (await api.client.delete("/v1/subjects/alice/password")).status_code == 404
    async with browser(api) as b:
        assert (await sign_in(b, "alice", PASSWORD)).status_code == 401
    assert (await reasons(api))[-1] == "no_password"
    assert [e["type"] for e in await api.audit() if e["type"].startswith("password.")] == [
        "password.set",
        "password.deleted",
    ]
    assert PASSWORD not in json.dumps(await api.audit())


async def test_setting_a_password_unlocks_the_account(api: Harness) -> None:
    for n in range(5):
        async with browser(api, ip=f"203.0.113.{n + 1}") as b:
            await sign_in(b, "alice", f"guess {n} wrong")
    await set_password(api, "alice", "a brand new passphrase")
    async with browser(api) as b:
        assert (await sign_in(b, "alice", "a brand new passphrase")).status_code == 303


# --- sign-out -----------------------------------------------------------------------------


async def test_sign_out_ends_the_browser_session_and_the_stepguard_session(api: Harness) -> None:
    async with browser(api) as b:
        assert (await sign_in(b, "alice", PASSWORD)).status_code == 303
        account = await b.get("/account/factors")
        csrf = csrf_of(account)
        assert 'action="/logout"' in account.text
        refused = await b.post("/logout", data={"csrf": "0" * 64})
        assert refused.status_code == 403
        assert (await b.get("/account/factors")).status_code == 200
        response = await b.post("/logout", data={"csrf": csrf})
        assert response.status_code == 200
        assert "You&#39;re signed out" in response.text or "signed out" in response.text
        assert (await b.get("/account/factors")).status_code == 403
    session_id = (await events(api, "session.created"))[-1]["session_id"]
    assert (await api.client.get(f"/v1/sessions/{session_id}")).status_code == 404
    assert [e["session_id"] for e in await events(api, "login.signed_out")] == [session_id]


async def test_sign_in_metrics_count_outcomes(api: Harness) -> None:
    async with browser(api) as b:
        await sign_in(b, "alice", PASSWORD)
        await sign_in(b, "alice", "not the password")
    metrics = (await api.anon.get("/metrics")).text
    assert 'stepguard_logins_total{method="password",outcome="succeeded"} 1.0' in metrics
    assert 'stepguard_logins_total{method="password",outcome="failed"} 1.0' in metrics
