"""Usernameless passkey sign-in on ``/login`` over HTTP against the real app and store, on
SQLite and PostgreSQL, with the software authenticator as the browser's passkey: the options
(no allowCredentials, user verification required), a session with a passkey step-up's proof
(a ``phr`` rule allows at once), and one failure for every cause: another origin, an
unknown credential, a user handle of someone else, a replayed or another browser's ceremony,
no user verification, nothing posted."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from support.authenticator import SoftAuthenticator
from support.harness import Harness, start_harness

PUBLIC = "http://localhost"
APP = "https://app.example"
BROWSER_COOKIE = "stepguard_browser"
FAILURE = "That didn&#39;t work. Try your passkey again, or use your password."
ADMIN = "admin.users.delete"  # a phr step-up (max_age 300) in the test policy


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Harness]:
    harness, runtime = await start_harness(
        database_url,
        settings_overrides={
            "public_url": PUBLIC,
            "return_to_origins": [APP],
            "password_hash_profile": "test",
            "dev_mode": True,
        },
    )
    await harness.put_subject("alice", email="alice@example.com")
    await harness.put_subject("bob", email="bob@example.com")
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


def browser(api: Harness, ip: str = "198.51.100.7") -> httpx.AsyncClient:
    app = api.anon._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url=PUBLIC
    )


async def register(api: Harness, key: SoftAuthenticator, subject: str = "alice") -> str:
    """A discoverable passkey for ``subject`` through the API (its first factor)."""
    response = await api.client.post(
        f"/v1/subjects/{subject}/factors",
        json={"type": "webauthn", "resident_key": "required", "user_verification": "required"},
    )
    assert response.status_code == 201, response.text
    factor_id = str(response.json()["factor"]["id"])
    credential = key.create(response.json()["webauthn_options"], origin=PUBLIC)
    confirmed = await api.client.post(
        f"/v1/subjects/{subject}/factors/{factor_id}/confirm", json={"credential": credential}
    )
    assert confirmed.status_code == 200, confirmed.text
    return factor_id


async def begin(b: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """The login page's CSRF token and fresh passkey options."""
    page = await b.get("/login")
    assert page.status_code == 200
    assert 'data-options-url="/login/passkey/options"' in page.text
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match
    csrf = match.group(1)
    response = await b.post("/login/passkey/options", data={"csrf": csrf})
    assert response.status_code == 200, response.text
    return csrf, response.json()["options"]


async def answer(
    b: httpx.AsyncClient, csrf: str, credential: dict[str, Any] | None, return_to: str = ""
) -> httpx.Response:
    return await b.post(
        "/login/passkey",
        data={
            "csrf": csrf,
            "credential": json.dumps(credential) if credential is not None else "",
            "client_error": "" if credential is not None else "NotAllowedError",
            "return_to": return_to,
        },
    )


def only_credential(key: SoftAuthenticator) -> bytes:
    return next(iter(key.credentials))


async def failures(api: Harness) -> list[str]:
    return [e["details"]["reason"] for e in await api.audit(type="login.failed")]


async def test_a_passkey_signs_in_without_a_username_with_phr(api: Harness) -> None:
    key = SoftAuthenticator(attachment="platform", transports=("internal",))
    factor_id = await register(api, key)
    async with browser(api) as b:
        csrf, options = await begin(b)
        assert options["allowCredentials"] == []
        assert options["userVerification"] == "required"
        assert options["rpId"] == "localhost"
        credential = key.get(options, origin=PUBLIC, credential_id=only_credential(key))
        response = await answer(b, csrf, credential, return_to="/oidc/authorize/continue?req=r1")
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/oidc/authorize/continue?req=r1"
        assert BROWSER_COOKIE in response.cookies
        account = await b.get("/account/factors")
        assert '<strong id="signed-in-as">alice</strong>' in account.text

    created = (await api.audit(type="session.created"))[-1]
    assert created["details"]["via"] == "passkey"
    session_id = created["session_id"]
    session = (await api.client.get(f"/v1/sessions/{session_id}")).json()
    assert session["acr"] == "phr"
    assert set(session["amr"]) == {"swk", "user", "mfa"}
    # A client asking for phr right after the passkey sign-in is not prompted again.
    assert (await api.decide(session_id, ADMIN))["decision"] == "allow"
    factors = (await api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert [f["last_used_at"] is not None for f in factors if f["id"] == factor_id] == [True]
    assert [e["details"]["method"] for e in await api.audit(type="login.succeeded")] == ["passkey"]


async def test_an_assertion_for_another_origin_is_refused(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    async with browser(api) as b:
        csrf, options = await begin(b)
        credential = key.get(
            options, origin="https://evil.example", credential_id=only_credential(key)
        )
        response = await answer(b, csrf, credential)
        assert response.status_code == 401
        assert FAILURE in response.text
        assert BROWSER_COOKIE not in response.cookies
    assert await failures(api) == ["invalid_assertion"]


async def test_an_unknown_credential_is_refused(api: Harness) -> None:
    registered = SoftAuthenticator()
    await register(api, registered)
    stranger = SoftAuthenticator()
    # A credential the stranger made for this rp, never registered with StepGuard.
    stranger.create(
        {
            "rp": {"id": "localhost", "name": "x"},
            "user": {"id": "AAAA", "name": "x", "displayName": "x"},
            "challenge": "AAAAAAAAAAAAAAAAAAAAAA",
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"residentKey": "required"},
        },
        origin=PUBLIC,
    )
    async with browser(api) as b:
        csrf, options = await begin(b)
        credential = stranger.get(options, origin=PUBLIC, credential_id=only_credential(stranger))
        response = await answer(b, csrf, credential)
        assert response.status_code == 401
        assert FAILURE in response.text
    assert await failures(api) == ["unknown_credential"]


async def test_a_user_handle_that_is_not_the_credentials_is_refused(api: Harness) -> None:
    alice_key = SoftAuthenticator()
    bob_key = SoftAuthenticator()
    await register(api, alice_key, "alice")
    await register(api, bob_key, "bob")
    bob_handle = next(iter(bob_key.credentials.values())).user_handle
    async with browser(api) as b:
        csrf, options = await begin(b)
        credential = alice_key.get(
            options, origin=PUBLIC, credential_id=only_credential(alice_key), user_handle=bob_handle
        )
        assert (await answer(b, csrf, credential)).status_code == 401
    async with browser(api) as b:
        csrf, options = await begin(b)
        credential = alice_key.get(
            options, origin=PUBLIC, credential_id=only_credential(alice_key), user_handle=None
        )
        assert (await answer(b, csrf, credential)).status_code == 401
    assert await failures(api) == ["user_handle_mismatch", "user_handle_mismatch"]
    assert await api.audit(type="session.created") == []


async def test_a_ceremony_works_once_and_only_for_the_browser_that_asked(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    async with browser(api) as b:
        csrf, options = await begin(b)
        credential = key.get(options, origin=PUBLIC, credential_id=only_credential(key))
        assert (await answer(b, csrf, credential)).status_code == 303
        # The same response again (a replay), from the same browser's new pre-login cookie.
        page = await b.get("/login")
        match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert match
        again = key.get(options, origin=PUBLIC, credential_id=only_credential(key))
        assert (await answer(b, match.group(1), again)).status_code == 401
    async with browser(api) as asker, browser(api, ip="203.0.113.9") as thief:
        _csrf, options = await begin(asker)
        thief_csrf, _ = await begin(thief)
        credential = key.get(options, origin=PUBLIC, credential_id=only_credential(key))
        # Another browser posts an assertion made for the asker's ceremony: refused, and the
        # asker's ceremony stays open for the asker only.
        assert (await answer(thief, thief_csrf, credential)).status_code == 401
    assert await failures(api) == ["no_ceremony", "no_ceremony"]


async def test_a_consumed_ceremony_is_gone_even_when_the_assertion_failed(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    async with browser(api) as b:
        csrf, options = await begin(b)
        bad = key.get(
            options, origin=PUBLIC, credential_id=only_credential(key), tamper_signature=True
        )
        assert (await answer(b, csrf, bad)).status_code == 401
        good = key.get(options, origin=PUBLIC, credential_id=only_credential(key))
        assert (await answer(b, csrf, good)).status_code == 401
    assert await failures(api) == ["invalid_assertion", "no_ceremony"]


async def test_without_user_verification_the_passkey_is_refused(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    async with browser(api) as b:
        csrf, options = await begin(b)
        credential = key.get(options, origin=PUBLIC, credential_id=only_credential(key), uv=False)
        response = await answer(b, csrf, credential)
        assert response.status_code == 401
        assert BROWSER_COOKIE not in response.cookies
    assert await failures(api) == ["invalid_assertion"]
    detail = (await api.audit(type="login.failed"))[-1]["details"]["detail"]
    assert "verif" in detail.lower()


async def test_nothing_posted_and_bad_csrf_are_refused(api: Harness) -> None:
    async with browser(api) as b:
        csrf, _options = await begin(b)
        response = await answer(b, csrf, None)
        assert response.status_code == 401
        assert FAILURE in response.text
        refused = await b.post("/login/passkey/options", data={"csrf": "0" * 64})
        assert refused.status_code == 403
        assert refused.json() == {"error": "forbidden"}
        cross = await b.post(
            "/login/passkey/options",
            data={"csrf": csrf},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
    reasons = [e["details"]["reason"] for e in await api.audit(type="page.refused")]
    assert "login: no passkey credential from the browser" in reasons


async def test_one_assertion_posted_five_times_at_once_signs_in_once(api: Harness) -> None:
    key = SoftAuthenticator(counter_step=0)  # a counter-less passkey: only the ceremony decides
    await register(api, key)
    async with browser(api) as b:
        csrf, options = await begin(b)
        credential = key.get(options, origin=PUBLIC, credential_id=only_credential(key))
        responses = await asyncio.gather(*(answer(b, csrf, credential) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [303, 401, 401, 401, 401]
    assert await failures(api) == ["no_ceremony"] * 4
    assert len(await api.audit(type="session.created")) == 1


async def test_one_client_cannot_start_unauthenticated_flows_without_end(api: Harness) -> None:
    """Each passkey sign-in start stores a ceremony before anyone has proven anything: one
    address gets ``flow_starts_per_minute`` (60 by default) a minute, then 429; another
    address, and other flows, are not affected."""
    async with browser(api, "203.0.113.9") as b, browser(api, "203.0.113.10") as other:
        page = await b.get("/login")
        match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert match
        statuses = [
            (await b.post("/login/passkey/options", data={"csrf": match.group(1)})).status_code
            for _ in range(61)
        ]
        assert statuses[:60] == [200] * 60
        assert statuses[60] == 429
        refused = await b.post("/login/passkey/options", data={"csrf": match.group(1)})
        assert refused.headers["retry-after"] == "60"
        assert (await b.get("/login")).status_code == 200  # the password form still works
        _csrf, options = await begin(other)
        assert options["challenge"]
