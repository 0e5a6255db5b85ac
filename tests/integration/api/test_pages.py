"""The hosted pages over HTTP (httpx against the real app and store), on SQLite and PostgreSQL:
page links, browser cookies, CSRF, open redirects, rotation, redemption by challenge id."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select

from stepguard.adapters.storage.tables import browser_sessions, page_tokens
from support.harness import Harness, start_harness

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}
APP = "https://app.example"
PUBLIC = "http://localhost"  # WebAuthn needs a host name, and https or localhost
COOKIE = "stepguard_browser"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self' https://app.example:443; frame-ancestors 'none'; "
    "base-uri 'none'"
)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Harness]:
    harness, runtime = await start_harness(
        database_url, settings_overrides={"public_url": PUBLIC, "return_to_origins": [APP]}
    )
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


def browser(api: Harness) -> httpx.AsyncClient:
    """A new browser: its own cookie jar, no API key."""
    return httpx.AsyncClient(transport=api.anon._transport, base_url=PUBLIC)


@dataclass
class User:
    session_id: str
    factor_id: str
    secret: bytes


async def user(api: Harness) -> User:
    await api.put_subject("alice", email="alice@example.com")
    factor_id, secret = await api.enroll_totp()
    return User(session_id=await api.open_session(), factor_id=factor_id, secret=secret)


async def step_up(api: Harness, session_id: str, context: dict[str, Any] = TRANSFER) -> Any:
    decision = await api.decide(session_id, "payments.transfer", context=context)
    assert decision["decision"] == "step_up", decision
    return decision["challenge"]


def local(url: str) -> str:
    """The path and query of a page URL (the app under test is mounted at PUBLIC)."""
    assert url.startswith(PUBLIC + "/"), url
    return url[len(PUBLIC) :]


async def open_link(b: httpx.AsyncClient, page_url: str, **params: str) -> httpx.Response:
    # The app appends its parameters to the page URL (httpx's params= would replace the query).
    suffix = "&" + urlencode(params) if params else ""
    return await b.get(local(page_url) + suffix)


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match, page.text
    return match.group(1)


async def opened(api: Harness, u: User, b: httpx.AsyncClient, **params: str) -> tuple[str, str]:
    """Open a new challenge's page in ``b``; returns (challenge id, csrf token)."""
    challenge = await step_up(api, u.session_id)
    response = await open_link(b, challenge["page_url"], **params)
    assert response.status_code == 303, response.text
    page = await b.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return challenge["id"], csrf_of(page)


async def submit(
    b: httpx.AsyncClient,
    challenge_id: str,
    csrf: str | None,
    factor_id: str,
    code: str,
    *,
    return_to: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    form = {"factor_id": factor_id, "code": code, "return_to": return_to, "method": "totp"}
    if csrf is not None:
        form["csrf"] = csrf
    return await b.post(f"/challenge/{challenge_id}/verify", data=form, headers=headers)


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


# --- links and cookies ------------------------------------------------------------------


async def test_a_step_up_carries_a_single_use_page_url(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    url = urlsplit(challenge["page_url"])
    assert f"{url.scheme}://{url.netloc}" == PUBLIC
    assert url.path == f"/challenge/{challenge['id']}"
    token = parse_qs(url.query)["t"][0]
    assert token.startswith("sgp_")
    assert len(token) == 56


async def test_opening_a_link_sets_the_cookie_and_drops_the_token(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    async with browser(api) as b:
        response = await open_link(b, challenge["page_url"], return_to=f"{APP}/pay?x=1")
        assert response.status_code == 303
        assert_page_headers(response)
        location = response.headers["location"]
        assert "t=" not in location
        assert (
            location
            == f"/challenge/{challenge['id']}?return_to=https%3A%2F%2Fapp.example%2Fpay%3Fx%3D1"
        )
        set_cookie = response.headers["set-cookie"]
        assert set_cookie.startswith(f"{COOKIE}=sgb_")
        attributes = {a.strip().lower() for a in set_cookie.split(";")[1:]}
        assert {"httponly", "path=/", "samesite=lax"} <= attributes
        assert "secure" not in attributes  # public_url is http here

        page = await b.get(location)
        assert page.status_code == 200
        assert_page_headers(page)
        assert "Transfer EUR 2500 to ACME GmbH" in page.text
        assert "payments.transfer" in page.text
        assert 'autocomplete="one-time-code"' in page.text
        assert 'inputmode="numeric"' in page.text
        assert "<script>" not in page.text
        assert "style=" not in page.text


async def test_a_link_works_once(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    async with browser(api) as first, browser(api) as second:
        assert (await open_link(first, challenge["page_url"])).status_code == 303
        again = await open_link(second, challenge["page_url"])
    assert again.status_code == 403
    assert "This link has expired" in again.text
    assert "set-cookie" not in again.headers
    assert_page_headers(again)
    rejected = await api.audit(type="page.link_rejected")
    assert [e["details"]["reason"] for e in rejected] == ["unknown, used or expired page link"]


async def test_a_link_expires_after_five_minutes(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    api.clock.advance(301)
    async with browser(api) as b:
        response = await open_link(b, challenge["page_url"])
    assert response.status_code == 403
    assert "This link has expired" in response.text


async def test_unknown_tokens_and_missing_cookies_get_the_same_page(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    async with browser(api) as b:
        forged = await b.get(f"/challenge/{challenge['id']}", params={"t": "sgp_" + "a" * 52})
        no_cookie = await b.get(f"/challenge/{challenge['id']}")
    assert forged.status_code == no_cookie.status_code == 403
    assert "This link has expired" in forged.text
    assert forged.text == no_cookie.text


async def test_a_challenge_link_does_not_open_the_account_page(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    token = parse_qs(urlsplit(challenge["page_url"]).query)["t"][0]
    async with browser(api) as b:
        response = await b.get("/account/factors", params={"t": token})
        assert response.status_code == 403
        # ... and the token is spent, so it cannot be tried on its own page either.
        assert (await open_link(b, challenge["page_url"])).status_code == 403


async def test_an_https_public_url_makes_a_host_prefixed_secure_cookie(database_url: str) -> None:
    harness, runtime = await start_harness(
        database_url, settings_overrides={"public_url": "https://login.example"}
    )
    try:
        u = await user(harness)
        challenge = await step_up(harness, u.session_id)
        assert challenge["page_url"].startswith("https://login.example/challenge/")
        async with httpx.AsyncClient(
            transport=harness.anon._transport, base_url="https://login.example"
        ) as b:
            response = await b.get(
                urlsplit(challenge["page_url"])._replace(scheme="", netloc="").geturl()
            )
        set_cookie = response.headers["set-cookie"]
        assert set_cookie.startswith("__Host-stepguard_browser=sgb_")
        attributes = {a.strip().lower() for a in set_cookie.split(";")[1:]}
        assert {"secure", "httponly", "path=/", "samesite=lax"} <= attributes
        assert not any(a.startswith("domain") for a in attributes)
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


async def test_opening_a_link_rotates_an_existing_cookie(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await opened(api, u, b)
        old = b.cookies[COOKIE]
        challenge_id, _ = await opened(api, u, b)
        new = b.cookies[COOKIE]
        assert new != old
        b.cookies.clear()
        b.cookies.set(COOKIE, old)
        assert (await b.get(f"/challenge/{challenge_id}")).status_code == 403


async def test_page_tokens_and_cookies_are_stored_only_as_hashes(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    token = parse_qs(urlsplit(challenge["page_url"]).query)["t"][0]
    async with browser(api) as b:
        await open_link(b, challenge["page_url"])
        cookie = b.cookies[COOKIE]
    async with api.runtime.store.read() as uow:
        tokens = [tuple(r) for r in (await uow.execute(select(page_tokens))).all()]
        browsers = [tuple(r) for r in (await uow.execute(select(browser_sessions))).all()]
    dump = repr(tokens) + repr(browsers)
    assert token not in dump
    assert cookie not in dump
    assert len(tokens) == 1
    assert len(browsers) == 1


# --- the step-up on the page, and redemption by challenge id -------------------------------


async def test_a_totp_step_up_on_the_page_returns_to_the_app(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b, return_to=f"{APP}/transfer?id=7")
        old_cookie = b.cookies[COOKIE]
        response = await submit(
            b, challenge_id, csrf, u.factor_id, api.code(u.secret), return_to=f"{APP}/transfer?id=7"
        )
        assert response.status_code == 303, response.text
        assert_page_headers(response)
        location = urlsplit(response.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == f"{APP}/transfer"
        assert parse_qs(location.query) == {"id": ["7"], "stepguard_challenge": [challenge_id]}
        # The step-up rotated the cookie; the old value no longer works.
        new_cookie = b.cookies[COOKIE]
        assert new_cookie != old_cookie
        assert (await b.get(f"/challenge/{challenge_id}")).status_code == 200
        b.cookies.set(COOKIE, old_cookie)
        assert (await b.get(f"/challenge/{challenge_id}")).status_code == 403

    allowed = await api.decide(
        u.session_id, "payments.transfer", context=TRANSFER, challenge_id=challenge_id
    )
    assert allowed["decision"] == "allow", allowed
    replay = await api.decide(
        u.session_id, "payments.transfer", context=TRANSFER, challenge_id=challenge_id
    )
    assert replay["decision"] == "step_up"
    used = await api.audit(type="grant.used")
    assert [e["details"]["via"] for e in used] == ["challenge_id"]


async def test_a_redemption_for_another_amount_is_refused(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        response = await submit(b, challenge_id, csrf, u.factor_id, api.code(u.secret))
        assert response.status_code == 303
        assert response.headers["location"] == f"/challenge/{challenge_id}"
        done = await b.get(response.headers["location"])
        assert "You're verified" in done.text
    other = {**TRANSFER, "amount": 10000}
    refused = await api.decide(
        u.session_id, "payments.transfer", context=other, challenge_id=challenge_id
    )
    assert refused["decision"] == "step_up"
    # The mismatch did not spend the grant: the transaction it was issued for still goes.
    allowed = await api.decide(
        u.session_id, "payments.transfer", context=TRANSFER, challenge_id=challenge_id
    )
    assert allowed["decision"] == "allow"


async def test_a_redemption_from_another_session_is_refused(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        assert (
            await submit(b, challenge_id, csrf, u.factor_id, api.code(u.secret))
        ).status_code == 303
    other_session = await api.open_session()
    refused = await api.decide(
        other_session, "payments.transfer", context=TRANSFER, challenge_id=challenge_id
    )
    assert refused["decision"] == "step_up"
    rejected = await api.audit(type="grant.rejected")
    assert rejected[-1]["details"]["via"] == "challenge_id"


async def test_an_unsatisfied_challenge_cannot_be_redeemed(api: Harness) -> None:
    u = await user(api)
    challenge = await step_up(api, u.session_id)
    decision = await api.decide(
        u.session_id, "payments.transfer", context=TRANSFER, challenge_id=challenge["id"]
    )
    assert decision["decision"] == "step_up"


async def test_a_wrong_code_shows_one_generic_error_and_the_challenge_stays_pending(
    api: Harness,
) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        wrong = "000000" if api.code(u.secret) != "000000" else "111111"
        response = await submit(b, challenge_id, csrf, u.factor_id, wrong)
        unknown_factor = await submit(b, challenge_id, csrf, "fac_nope", api.code(u.secret))
    assert response.status_code == unknown_factor.status_code == 403
    assert "That didn&#39;t work. Check the code and try again." in response.text
    assert 'aria-describedby="totp-hint form-error"' in response.text
    assert "That didn&#39;t work" in unknown_factor.text
    assert_page_headers(response)
    status = (await api.client.get(f"/v1/challenges/{challenge_id}")).json()["status"]
    assert status == "pending"


async def test_the_lockout_is_shown_in_minutes(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        good = api.code(u.secret)
        wrong = "000000" if good != "000000" else "111111"
        for _ in range(5):
            response = await submit(b, challenge_id, csrf, u.factor_id, wrong)
        assert "Too many attempts. Try again in 1 minute." in response.text
        # Even the right code is not evaluated while locked, and the page says so.
        locked = await submit(b, challenge_id, csrf, u.factor_id, good)
        assert "Too many attempts" in locked.text
        assert "That didn&#39;t work" in locked.text


async def test_a_recovery_code_works_on_the_page(api: Harness) -> None:
    await api.put_subject("alice")
    enrolled = await api.client.post("/v1/subjects/alice/factors", json={"type": "recovery_code"})
    codes = enrolled.json()["recovery_codes"]
    factor_id = enrolled.json()["factor"]["id"]
    u = User(session_id=await api.open_session(), factor_id=factor_id, secret=b"")
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        page = await b.get(f"/challenge/{challenge_id}")
        assert "Use a recovery code" in page.text
        response = await submit(b, challenge_id, csrf_of(page), factor_id, codes[0])
        assert response.status_code == 303, response.text
    del csrf


# --- CSRF, origins, other sessions --------------------------------------------------------


@pytest.mark.parametrize(
    ("csrf", "origin"),
    [
        pytest.param(None, None, id="no-token"),
        pytest.param("0" * 64, None, id="wrong-token"),
        pytest.param("", None, id="empty-token"),
        pytest.param("ok", "https://evil.example", id="cross-origin"),
        pytest.param("ok", "null", id="opaque-origin"),
        pytest.param("ok", "cross-site", id="sec-fetch-site-cross-site"),
        pytest.param("ok", "same-site", id="sec-fetch-site-same-site"),
    ],
)
async def test_a_form_without_a_valid_csrf_token_or_from_elsewhere_is_refused(
    api: Harness, csrf: str | None, origin: str | None
) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, real = await opened(api, u, b)
        headers: dict[str, str] | None = None
        if origin in ("cross-site", "same-site"):
            headers = {"Sec-Fetch-Site": origin}
        elif origin:
            headers = {"Origin": origin}
        response = await submit(
            b,
            challenge_id,
            real if csrf == "ok" else csrf,
            u.factor_id,
            api.code(u.secret),
            headers=headers,
        )
    assert response.status_code == 403
    assert "We couldn&#39;t accept that form" in response.text
    assert_page_headers(response)
    refused = await api.audit(type="page.refused")
    assert len(refused) == 1
    status = (await api.client.get(f"/v1/challenges/{challenge_id}")).json()["status"]
    assert status == "pending"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": PUBLIC}, id="origin"),
        # What Chromium sends under Referrer-Policy: no-referrer.
        pytest.param({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, id="null-same-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="fetch-metadata-only"),
    ],
)
async def test_a_same_origin_form_is_accepted(api: Harness, headers: dict[str, str]) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        response = await submit(
            b, challenge_id, csrf, u.factor_id, api.code(u.secret), headers=headers
        )
    assert response.status_code == 303


async def test_a_browser_sees_only_its_own_sessions_challenges(api: Harness) -> None:
    u = await user(api)
    mallory_session = await api.open_session()  # the same subject, another session
    theirs = await step_up(api, u.session_id)
    async with browser(api) as b:
        mine = await step_up(api, mallory_session)
        assert (await open_link(b, mine["page_url"])).status_code == 303
        page = await b.get(f"/challenge/{mine['id']}")
        csrf = csrf_of(page)
        seen = await b.get(f"/challenge/{theirs['id']}")
        posted = await submit(b, theirs["id"], csrf, u.factor_id, api.code(u.secret))
    assert seen.status_code == posted.status_code == 404
    assert "TRANSFER" not in seen.text.upper() or "couldn&#39;t find" in seen.text
    status = (await api.client.get(f"/v1/challenges/{theirs['id']}")).json()["status"]
    assert status == "pending"
    reasons = [e["details"]["reason"] for e in await api.audit(type="page.refused")]
    assert reasons == ["challenge of another session", "challenge of another session"]


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example/",
        "//evil.example/",
        "///evil.example/",
        "javascript:alert(1)",
        "https://app.example@evil.example/",
        "https://app.example\\@evil.example/",
        "https:\\\\evil.example",
        "http://app.example/",
        "https://app.example:8443/",
        "https://app.example.evil.example/",
        " https://app.example/",
        "https://app.example\t/",
        "/challenge/other",
        "data:text/html,hi",
    ],
)
async def test_return_to_outside_the_allow_list_is_never_a_redirect(
    api: Harness, return_to: str
) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b, return_to=return_to)
        page = await b.get(f"/challenge/{challenge_id}", params={"return_to": return_to})
        assert 'name="return_to" value=""' in page.text
        response = await submit(
            b, challenge_id, csrf_of(page), u.factor_id, api.code(u.secret), return_to=return_to
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/challenge/{challenge_id}"
        done = await b.get(response.headers["location"], params={"return_to": return_to})
    assert "You can close this page" in done.text
    assert 'id="continue"' not in done.text
    del csrf


async def test_static_files_are_served_with_nosniff(api: Harness) -> None:
    async with browser(api) as b:
        css = await b.get("/static/pages/pages.css")
        js = await b.get("/static/pages/pages.js")
        missing = await b.get("/static/pages/../app.py")
    assert css.status_code == js.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert js.headers["content-type"].startswith("text/javascript")
    assert css.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404


# --- the account page -----------------------------------------------------------------------


async def account_browser(api: Harness, session_id: str, b: httpx.AsyncClient) -> str:
    """Open the account page in ``b`` through the page-link API; returns its CSRF token."""
    response = await api.client.post(
        f"/v1/sessions/{session_id}/page-links", json={"page": "account"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["url"].startswith(f"{PUBLIC}/account/factors?t=sgp_")
    opened_page = await b.get(local(body["url"]))
    assert opened_page.status_code == 303
    assert opened_page.headers["location"] == "/account/factors"
    page = await b.get("/account/factors")
    assert page.status_code == 200
    assert_page_headers(page)
    return csrf_of(page)


async def test_the_page_link_api_refuses_unknown_sessions_and_pages(api: Harness) -> None:
    u = await user(api)
    unknown = await api.client.post("/v1/sessions/ses_nope/page-links", json={"page": "account"})
    other_page = await api.client.post(
        f"/v1/sessions/{u.session_id}/page-links", json={"page": "admin"}
    )
    no_key = await api.anon.post(
        f"/v1/sessions/{u.session_id}/page-links", json={"page": "account"}
    )
    assert unknown.status_code == 404
    assert other_page.status_code == 400
    assert no_key.status_code == 401


async def test_adding_totp_on_the_account_page_needs_a_step_up_first(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        csrf = await account_browser(api, u.session_id, b)
        refused = await b.post("/account/factors/totp", data={"csrf": csrf, "label": "Laptop"})
        assert refused.status_code == 303
        target = urlsplit(refused.headers["location"])
        assert target.path.startswith("/challenge/chl_")
        assert parse_qs(target.query) == {"return_to": ["/account/factors"]}
        page = await b.get(refused.headers["location"])
        assert '<p class="summary">Change your sign-in factors</p>' in page.text
        challenge_id = target.path.rsplit("/", 1)[1]
        done = await submit(
            b,
            challenge_id,
            csrf_of(page),
            u.factor_id,
            api.code(u.secret),
            return_to="/account/factors",
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/account/factors?stepguard_challenge={challenge_id}"
        account = await b.get(done.headers["location"])
        assert "You're verified" in account.text
        csrf = csrf_of(account)  # the cookie rotated, and its CSRF token with it

        added = await b.post("/account/factors/totp", data={"csrf": csrf, "label": "Laptop"})
        assert added.status_code == 200, added.text
        assert_page_headers(added)
        assert 'src="data:image/svg+xml' in added.text
        secret_text = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', added.text)
        assert secret_text
        raw = secret_text.group(1).replace(" ", "")
        secret = base64.b32decode(raw + "=" * (-len(raw) % 8))
        factor_id = re.search(r'action="/account/factors/(fac_[a-z0-9]+)/confirm"', added.text)
        assert factor_id
        confirmed = await b.post(
            f"/account/factors/{factor_id.group(1)}/confirm",
            data={"csrf": csrf, "code": api.code(secret)},
        )
        assert confirmed.status_code == 303, confirmed.text
        assert confirmed.headers["location"] == "/account/factors?notice=confirmed"
    factors = (await api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert sorted((f["label"], f["status"]) for f in factors) == [
        ("Authenticator app", "active"),
        ("Laptop", "active"),
    ]


async def test_recovery_codes_are_shown_once_with_a_download_and_a_factor_can_be_removed(
    api: Harness,
) -> None:
    u = await user(api)
    session = await api.stepped_up_session(u.factor_id, api.code(u.secret))
    async with browser(api) as b:
        csrf = await account_browser(api, session, b)
        codes_page = await b.post("/account/factors/recovery-codes", data={"csrf": csrf})
        assert codes_page.status_code == 200, codes_page.text
        codes = re.findall(r"<li><code>([^<]+)</code></li>", codes_page.text)
        assert len(codes) == 10
        link = re.search(r'href="(data:text/plain;charset=utf-8,[^"]+)"', codes_page.text)
        assert link
        assert 'download="stepguard-recovery-codes.txt"' in codes_page.text
        assert all(code in unquote(link.group(1)) for code in codes)

        factors = (await api.client.get("/v1/subjects/alice/factors")).json()["factors"]
        recovery_id = next(f["id"] for f in factors if f["type"] == "recovery_code")
        removed = await b.post(f"/account/factors/{recovery_id}/remove", data={"csrf": csrf})
        assert removed.status_code == 303
        assert removed.headers["location"] == "/account/factors?notice=removed"
        page = await b.get(removed.headers["location"])
        assert "The factor was removed." in page.text
    remaining = (await api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert [f["type"] for f in remaining] == ["totp"]
    removed_events = await api.audit(type="factor.removed")
    assert removed_events[-1]["actor"] == "pages"


async def test_account_changes_need_the_csrf_token(api: Harness) -> None:
    u = await user(api)
    session = await api.stepped_up_session(u.factor_id, api.code(u.secret))
    async with browser(api) as b:
        await account_browser(api, session, b)
        response = await b.post(f"/account/factors/{u.factor_id}/remove", data={})
    assert response.status_code == 403
    factors = (await api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert len(factors) == 1


async def test_an_expired_challenge_has_its_own_page(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        api.clock.advance(601)  # past the challenge's ten minutes, within the cookie's hour
        page = await b.get(f"/challenge/{challenge_id}")
        posted = await submit(b, challenge_id, csrf, u.factor_id, api.code(u.secret))
    assert page.status_code == posted.status_code == 410
    assert "This request has expired" in page.text
    assert "This request has expired" in posted.text
    assert_page_headers(page)


async def test_revoking_the_session_ends_the_browser_session(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        challenge_id, csrf = await opened(api, u, b)
        assert (await api.client.delete(f"/v1/sessions/{u.session_id}")).status_code == 204
        page = await b.get(f"/challenge/{challenge_id}")
        posted = await submit(b, challenge_id, csrf, u.factor_id, api.code(u.secret))
    assert page.status_code == posted.status_code == 403
    assert "This link has expired" in page.text
    status = (await api.client.get(f"/v1/challenges/{challenge_id}")).json()["status"]
    assert status == "pending"
