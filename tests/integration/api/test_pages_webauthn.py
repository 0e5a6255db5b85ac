"""Passkeys and security keys on the hosted pages over HTTP (httpx against the real app and
store, on SQLite and PostgreSQL), with the software authenticator as the browser and key:
the options and form routes, CSRF, other sessions' challenges, challenges without WebAuthn
factors, one failure for every cause, and registration from the account page."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support.authenticator import SoftAuthenticator
from support.harness import Harness, start_harness

PUBLIC = "http://localhost"  # the relying party (rp id, origin) derives from it
APP = "https://app.example"
COOKIE = "stepguard_browser"
FAILURE = (
    "That didn&#39;t work. Try your passkey or security key again, or use another way to confirm."
)
ADMIN = "admin.users.delete"  # a phr step-up in the test policy
TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Harness]:
    harness, runtime = await start_harness(
        database_url, settings_overrides={"public_url": PUBLIC, "return_to_origins": [APP]}
    )
    await harness.put_subject("alice", email="alice@example.com")
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


def browser(api: Harness) -> httpx.AsyncClient:
    """A new browser: its own cookie jar, no API key."""
    return httpx.AsyncClient(transport=api.anon._transport, base_url=PUBLIC)


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match, page.text
    return match.group(1)


async def register(api: Harness, key: SoftAuthenticator, **body: Any) -> str:
    """A WebAuthn factor through the API (the subject's first factor needs no step-up)."""
    response = await api.client.post(
        "/v1/subjects/alice/factors", json={"type": "webauthn", **body}
    )
    assert response.status_code == 201, response.text
    factor_id = str(response.json()["factor"]["id"])
    credential = key.create(response.json()["webauthn_options"], origin=PUBLIC)
    confirmed = await api.client.post(
        f"/v1/subjects/alice/factors/{factor_id}/confirm", json={"credential": credential}
    )
    assert confirmed.status_code == 200, confirmed.text
    return factor_id


async def open_challenge(
    api: Harness, b: httpx.AsyncClient, session_id: str, action: str = ADMIN, **extra: Any
) -> tuple[str, httpx.Response]:
    """A step-up for ``action``, its page opened in ``b``: (challenge id, the prompt)."""
    decision = await api.decide(session_id, action, **extra)
    assert decision["decision"] == "step_up", decision
    challenge = decision["challenge"]
    url = urlsplit(challenge["page_url"])
    opened = await b.get(f"{url.path}?{url.query}")
    assert opened.status_code == 303, opened.text
    page = await b.get(opened.headers["location"])
    assert page.status_code == 200, page.text
    return str(challenge["id"]), page


async def options(b: httpx.AsyncClient, challenge_id: str, csrf: str | None) -> httpx.Response:
    data = {} if csrf is None else {"csrf": csrf}
    return await b.post(f"/challenge/{challenge_id}/webauthn/options", data=data)


async def answer(
    b: httpx.AsyncClient,
    challenge_id: str,
    csrf: str,
    credential: dict[str, Any] | str | None,
    *,
    client_error: str = "",
    return_to: str = "",
) -> httpx.Response:
    text = credential if isinstance(credential, str) else json.dumps(credential or "")
    return await b.post(
        f"/challenge/{challenge_id}/webauthn",
        data={
            "csrf": csrf,
            "return_to": return_to,
            "credential": "" if credential is None else text,
            "client_error": client_error,
        },
    )


async def status(api: Harness, challenge_id: str) -> str:
    response = await api.client.get(f"/v1/challenges/{challenge_id}")
    return str(response.json()["status"])


# --- the step-up prompt -------------------------------------------------------------------


async def test_a_passkey_satisfies_a_phr_step_up_and_the_app_redeems_it(api: Harness) -> None:
    key = SoftAuthenticator(attachment="platform", transports=("internal",))
    await register(api, key, authenticator_attachment="platform", resident_key="required")
    session_id = await api.open_session()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(
            api, b, session_id, "payments.transfer", context=TRANSFER
        )
        # The passkey button, hidden until webauthn.js shows it; the script is same-origin.
        assert 'id="webauthn" hidden' in page.text
        assert "Use your passkey or security key" in page.text
        assert '<script src="/static/pages/webauthn.js" defer></script>' in page.text
        csrf = csrf_of(page)
        got = await options(b, challenge_id, csrf)
        assert got.status_code == 200, got.text
        assert got.headers["cache-control"] == "no-store"
        request_options = got.json()["options"]
        assert request_options["rpId"] == "localhost"
        assert request_options["userVerification"] == "preferred"  # aal2 is reachable by UP
        old_cookie = b.cookies[COOKIE]
        response = await answer(
            b,
            challenge_id,
            csrf,
            key.get(request_options, origin=PUBLIC),
            return_to=f"{APP}/transfers/7",
        )
        assert response.status_code == 303, response.text
        location = urlsplit(response.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == f"{APP}/transfers/7"
        assert parse_qs(location.query) == {"stepguard_challenge": [challenge_id]}
        assert b.cookies[COOKIE] != old_cookie  # rotated on success
    allowed = await api.decide(
        session_id, "payments.transfer", context=TRANSFER, challenge_id=challenge_id
    )
    assert allowed["decision"] == "allow", allowed
    again = await api.decide(
        session_id, "payments.transfer", context=TRANSFER, challenge_id=challenge_id
    )
    assert again["decision"] == "step_up"


async def test_a_phr_step_up_without_a_return_to_ends_in_the_done_state(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    session_id = await api.open_session()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(api, b, session_id)
        csrf = csrf_of(page)
        request_options = (await options(b, challenge_id, csrf)).json()["options"]
        assert request_options["userVerification"] == "required"  # phr needs UV
        response = await answer(b, challenge_id, csrf, key.get(request_options, origin=PUBLIC))
        assert response.status_code == 303
        assert response.headers["location"] == f"/challenge/{challenge_id}"
        done = await b.get(response.headers["location"])
        assert "You're verified" in done.text
    assert await status(api, challenge_id) == "satisfied"
    session = (await api.client.get(f"/v1/sessions/{session_id}")).json()
    assert session["acr"] == "phr"


async def test_every_failure_shows_the_same_error_and_the_challenge_stays_pending(
    api: Harness,
) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    session_id = await api.open_session()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(api, b, session_id)
        bodies = []
        for attempt in ("no-uv", "cancelled", "garbage", "spent-options"):
            csrf = csrf_of(page)
            request_options = (await options(b, challenge_id, csrf)).json()["options"]
            if attempt == "no-uv":
                response = await answer(
                    b, challenge_id, csrf, key.get(request_options, origin=PUBLIC, uv=False)
                )
            elif attempt == "cancelled":
                response = await answer(b, challenge_id, csrf, None, client_error="NotAllowedError")
            elif attempt == "garbage":
                response = await answer(b, challenge_id, csrf, '{"id": 1}')
            else:
                stale = key.get(request_options, origin=PUBLIC)
                await options(b, challenge_id, csrf)  # newer options replace these
                response = await answer(b, challenge_id, csrf, stale)
            assert response.status_code == 403, (attempt, response.text)
            assert FAILURE in response.text
            assert 'role="alert" id="form-error"' in response.text
            assert "data-autofocus" in response.text  # focus returns to the passkey button
            bodies.append(re.sub(r'value="[0-9a-f]{64}"', "", response.text))
            page = response
        assert len(set(bodies)) == 1, "a failure's page must not say what failed"
    assert await status(api, challenge_id) == "pending"
    failed = [e["details"]["reason"] for e in await api.audit(type="verification.failed")]
    assert any("user verification" in r.lower() or "uv" in r.lower() for r in failed), failed
    refused = [e["details"] for e in await api.audit(type="page.refused")]
    assert {"client_error": "NotAllowedError"}.items() <= refused[0].items()
    assert refused[1]["client_error"] == "none"


async def test_the_options_and_the_form_need_the_csrf_token(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    session_id = await api.open_session()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(api, b, session_id)
        for csrf in (None, "0" * 64):
            refused = await options(b, challenge_id, csrf)
            assert refused.status_code == 403
            assert refused.json() == {"error": "forbidden"}
        cross_site = await b.post(
            f"/challenge/{challenge_id}/webauthn/options",
            data={"csrf": csrf_of(page)},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross_site.status_code == 403
        # Options fetched legitimately, then a forged form post without the token.
        request_options = (await options(b, challenge_id, csrf_of(page))).json()["options"]
        forged = await answer(b, challenge_id, "", key.get(request_options, origin=PUBLIC))
        assert forged.status_code == 403
        assert "We couldn&#39;t accept that form" in forged.text
    assert len(await api.audit(type="page.refused")) == 4
    assert await status(api, challenge_id) == "pending"


async def test_another_sessions_challenge_is_not_found(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    mine, theirs = await api.open_session(), await api.open_session()
    decision = await api.decide(theirs, ADMIN)
    other = decision["challenge"]["id"]
    async with browser(api) as b:
        challenge_id, page = await open_challenge(api, b, mine)
        csrf = csrf_of(page)
        refused = await options(b, other, csrf)
        assert refused.status_code == 404
        assert refused.json() == {"error": "not_found"}
        # Options for my own challenge do not answer theirs either.
        request_options = (await options(b, challenge_id, csrf)).json()["options"]
        response = await answer(b, other, csrf, key.get(request_options, origin=PUBLIC))
        assert response.status_code == 404
    assert await status(api, other) == "pending"
    reasons = [e["details"]["reason"] for e in await api.audit(type="page.refused")]
    assert reasons == ["challenge of another session", "challenge of another session"]


async def test_a_challenge_without_webauthn_factors_offers_no_passkey(api: Harness) -> None:
    await api.enroll_totp()
    session_id = await api.open_session()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(
            api, b, session_id, "payments.transfer", context=TRANSFER
        )
        assert "webauthn" not in page.text
        refused = await options(b, challenge_id, csrf_of(page))
        assert refused.status_code == 409
        assert refused.json() == {"error": "unavailable"}
        # A form post anyway fails like any other failure.
        response = await answer(b, challenge_id, csrf_of(page), None, client_error="Error")
        assert response.status_code == 403
        assert FAILURE in response.text
    assert await status(api, challenge_id) == "pending"


async def test_a_locked_factor_shows_the_lockout_with_the_same_error(api: Harness) -> None:
    key = SoftAuthenticator()
    await register(api, key)
    session_id = await api.open_session()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(api, b, session_id)
        for _ in range(5):
            csrf = csrf_of(page)
            request_options = (await options(b, challenge_id, csrf)).json()["options"]
            page = await answer(
                b, challenge_id, csrf, key.get(request_options, origin=PUBLIC, uv=False)
            )
            assert page.status_code == 403
        assert FAILURE in page.text
        assert "Too many attempts. Try again in" in page.text
        # Locked: even a good assertion is not evaluated.
        csrf = csrf_of(page)
        request_options = (await options(b, challenge_id, csrf)).json()["options"]
        locked = await answer(b, challenge_id, csrf, key.get(request_options, origin=PUBLIC))
        assert locked.status_code == 403
    assert await status(api, challenge_id) == "pending"


# --- the account page ---------------------------------------------------------------------


async def account(api: Harness, session_id: str, b: httpx.AsyncClient) -> httpx.Response:
    link = await api.client.post(f"/v1/sessions/{session_id}/page-links", json={"page": "account"})
    assert link.status_code == 201, link.text
    url = urlsplit(link.json()["url"])
    assert (await b.get(f"{url.path}?{url.query}")).status_code == 303
    page = await b.get("/account/factors")
    assert page.status_code == 200
    return page


async def add(b: httpx.AsyncClient, csrf: str, kind: str, label: str = "") -> httpx.Response:
    return await b.post(
        "/account/factors/webauthn", data={"csrf": csrf, "kind": kind, "label": label}
    )


async def test_adding_a_passkey_needs_a_step_up_then_registers_it(api: Harness) -> None:
    first = SoftAuthenticator()
    await register(api, first)
    session_id = await api.open_session()
    platform = SoftAuthenticator(attachment="platform", transports=("internal",))
    async with browser(api) as b:
        page = await account(api, session_id, b)
        assert 'id="webauthn-add" hidden' in page.text
        needs = await add(b, csrf_of(page), "passkey", "Laptop")
        assert needs.status_code == 200
        target = urlsplit(needs.json()["redirect"])
        assert target.path.startswith("/challenge/chl_")
        assert parse_qs(target.query) == {"return_to": ["/account/factors"]}
        assert len((await api.client.get("/v1/subjects/alice/factors")).json()["factors"]) == 1

        # The step-up, with the existing key on the same page.
        prompt = await b.get(needs.json()["redirect"])
        challenge_id = target.path.rsplit("/", 1)[1]
        csrf = csrf_of(prompt)
        request_options = (await options(b, challenge_id, csrf)).json()["options"]
        done = await answer(
            b,
            challenge_id,
            csrf,
            first.get(request_options, origin=PUBLIC),
            return_to="/account/factors",
        )
        assert done.headers["location"] == f"/account/factors?stepguard_challenge={challenge_id}"
        page = await b.get(done.headers["location"])

        begun = await add(b, csrf_of(page), "passkey", "Laptop")
        assert begun.status_code == 200, begun.text
        creation = begun.json()["options"]
        assert creation["authenticatorSelection"] == {
            "authenticatorAttachment": "platform",
            "residentKey": "required",
            "requireResidentKey": True,
            "userVerification": "required",
        }
        assert len(creation["excludeCredentials"]) == 1  # the key already registered
        confirmed = await b.post(
            f"/account/factors/{begun.json()['factor_id']}/webauthn",
            data={
                "csrf": csrf_of(page),
                "credential": json.dumps(platform.create(creation, origin=PUBLIC)),
                "client_error": "",
            },
        )
        assert confirmed.status_code == 303, confirmed.text
        assert confirmed.headers["location"] == "/account/factors?notice=webauthn_added"
        listed = await b.get(confirmed.headers["location"])
        assert "Your passkey or security key is set up." in listed.text
        row = re.search(rf'id="factor-{begun.json()["factor_id"]}".*?</li>', listed.text, re.DOTALL)
        assert row
        assert "Passkey" in row.group(0)
        assert "Laptop" in row.group(0)
    factors = (await api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert sorted((f["label"], f["status"]) for f in factors) == [
        ("Laptop", "active"),
        ("Security key", "active"),
    ]


async def test_a_security_key_asks_for_a_roaming_authenticator(api: Harness) -> None:
    session_id = await api.open_session()  # no factor yet: no step-up needed
    async with browser(api) as b:
        page = await account(api, session_id, b)
        begun = await add(b, csrf_of(page), "security-key")
        assert begun.status_code == 200, begun.text
        selection = begun.json()["options"]["authenticatorSelection"]
        assert selection["authenticatorAttachment"] == "cross-platform"
        assert selection["residentKey"] == "preferred"
        assert (await add(b, csrf_of(page), "fingerprint-reader")).status_code == 400
        assert (await add(b, "0" * 64, "passkey")).status_code == 403


async def test_a_cancelled_or_failed_registration_discards_the_pending_factor(
    api: Harness,
) -> None:
    session_id = await api.open_session()
    key = SoftAuthenticator()
    async with browser(api) as b:
        page = await account(api, session_id, b)
        for outcome in ("cancelled", "wrong-origin"):
            begun = await add(b, csrf_of(page), "security-key")
            factor_id = begun.json()["factor_id"]
            credential = (
                ""
                if outcome == "cancelled"
                else json.dumps(key.create(begun.json()["options"], origin="https://evil.example"))
            )
            page = await b.post(
                f"/account/factors/{factor_id}/webauthn",
                data={
                    "csrf": csrf_of(page),
                    "credential": credential,
                    "client_error": "AbortError",
                },
            )
            assert page.status_code == 403
            assert FAILURE in page.text
            assert f"factor-{factor_id}" not in page.text
    assert (await api.client.get("/v1/subjects/alice/factors")).json()["factors"] == []


async def test_a_possibly_cloned_key_is_flagged_on_the_account_page(api: Harness) -> None:
    key = SoftAuthenticator()
    factor_id = await register(api, key)
    session_id = await api.open_session()
    clone = key.clone()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(api, b, session_id)
        csrf = csrf_of(page)
        first = key.get((await options(b, challenge_id, csrf)).json()["options"], origin=PUBLIC)
        assert (await answer(b, challenge_id, csrf, first)).status_code == 303
    session_id = await api.open_session()
    async with browser(api) as b:
        challenge_id, page = await open_challenge(api, b, session_id)
        csrf = csrf_of(page)
        replayed = clone.get(
            (await options(b, challenge_id, csrf)).json()["options"], origin=PUBLIC
        )
        assert (await answer(b, challenge_id, csrf, replayed)).status_code == 403
        listed = await account(api, session_id, b)
        assert f'id="clone-{factor_id}"' in listed.text
        assert "Possibly cloned" in listed.text
