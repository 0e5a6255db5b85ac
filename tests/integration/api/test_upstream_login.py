"""Sign-in at an upstream OpenID Provider, against a small provider the test controls (real
HTTP on loopback, ID tokens signed with joserfc), through the real app on SQLite and
PostgreSQL.

Every way the sign-in can go wrong ends on the same generic page without a browser session,
and the audit log says why (``upstream.login_failed`` with its ``reason``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from support.fake_op import CLIENT_ID, CLIENT_SECRET, FakeProvider, TokenPlan, fake_provider
from support.harness import Harness, start_harness

FAILED_TITLE = "Sign-in with Corp SSO did not work"
BROWSER_COOKIE = "stepguard_browser"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with fake_provider() as running:
        yield running


def _upstream(provider: FakeProvider, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "corp",
        "label": "Corp SSO",
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "trusted_assurance": True,
        "acr_map": {"urn:test:mfa": "aal2"},
        **overrides,
    }


async def _harness(
    database_url: str, provider: FakeProvider, *more: dict[str, Any], **overrides: Any
) -> AsyncIterator[Harness]:
    harness, runtime = await start_harness(
        database_url,
        settings_overrides={
            "upstreams": [_upstream(provider, **overrides), *more],
            "upstream_timeout_seconds": 1.0,
        },
    )
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


@pytest.fixture
async def api(database_url: str, provider: FakeProvider) -> AsyncIterator[Harness]:
    async for harness in _harness(database_url, provider):
        yield harness


def _browser(api: Harness) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=api.anon._transport, base_url="http://stepguard.test")


async def _begin(browser: httpx.AsyncClient, **params: str) -> tuple[str, str, httpx.URL]:
    response = await browser.get("/login/upstream/corp", params=params)
    assert response.status_code == 303, response.text
    location = httpx.URL(response.headers["location"])
    return location.params["state"], location.params["nonce"], location


async def _finish(
    browser: httpx.AsyncClient, state: str, *, code: str = "code-1", **extra: str
) -> httpx.Response:
    params = {"code": code, "state": state, **extra}
    return await browser.get("/login/upstream/corp/callback", params=params)


async def _failures(api: Harness) -> list[str]:
    events = await api.audit(type="upstream.login_failed")
    return [e["details"]["reason"] for e in events]


def _assert_generic_failure(response: httpx.Response) -> None:
    assert response.status_code == 400
    assert FAILED_TITLE in response.text
    assert BROWSER_COOKIE not in response.headers.get("set-cookie", "")


async def _signed_in_session(api: Harness) -> dict[str, Any]:
    events = await api.audit(type="upstream.login_succeeded")
    assert events, "no upstream.login_succeeded event"
    response = await api.client.get(f"/v1/sessions/{events[-1]['session_id']}")
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def test_trusted_sign_in_lands_signed_in_with_the_upstream_assurance(
    api: Harness, provider: FakeProvider
) -> None:
    async with _browser(api) as browser:
        state, nonce, location = await _begin(browser)
        assert location.params["code_challenge_method"] == "S256"
        assert location.params["client_id"] == CLIENT_ID
        now = api.clock.now().timestamp()
        provider.next_token = TokenPlan(claims=provider.base_claims(nonce, now=now))
        response = await _finish(browser, state)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/account/factors"
        assert BROWSER_COOKIE in response.headers.get("set-cookie", "")
        page = await browser.get("/account/factors")
        assert page.status_code == 200
        assert "corp:alice" in page.text

    # PKCE: the verifier sent to the token endpoint hashes to the challenge; client auth basic.
    form, authorization = provider.token_requests[-1]
    verifier = form["code_verifier"][0]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert digest.decode() == location.params["code_challenge"]
    assert authorization is not None
    assert authorization.startswith("Basic ")
    assert "client_secret" not in form

    session = await _signed_in_session(api)
    assert session["subject_id"] == "corp:alice"
    assert {"pwd", "otp", "mfa"} <= set(session["amr"])
    assert session["acr"] == "aal2"
    auth_time = datetime.fromisoformat(session["auth_time"].replace("Z", "+00:00"))
    assert auth_time == datetime.fromtimestamp(int(now) - 30, tz=UTC)
    subject = (await api.client.get("/v1/subjects/corp:alice")).json()
    assert subject["email"] == "alice@example.test"


async def test_untrusted_upstream_counts_as_one_factor_now(
    database_url: str, provider: FakeProvider
) -> None:
    async for api in _harness(database_url, provider, trusted_assurance=False):
        async with _browser(api) as browser:
            state, nonce, _ = await _begin(browser)
            now = api.clock.now().timestamp()
            claims = provider.base_claims(nonce, now=now)
            claims["email_verified"] = False
            provider.next_token = TokenPlan(claims=claims)
            response = await _finish(browser, state)
            assert response.status_code == 303, response.text
        session = await _signed_in_session(api)
        assert session["amr"] == ["pwd"]
        assert session["acr"] == "aal1"
        assert session["auth_time"].startswith(api.clock.now().strftime("%Y-%m-%dT%H:%M:%S"))
        subject = (await api.client.get("/v1/subjects/corp:alice")).json()
        assert subject["email"] is None  # not verified upstream: not copied


Tamper = Callable[[FakeProvider, dict[str, Any], TokenPlan], None]


def _set(**values: Any) -> Tamper:
    def tamper(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
        claims.update(values)

    return tamper


def _expired(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    claims["iat"] -= 3600
    claims["exp"] = claims["iat"] + 300


def _future_iat(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    claims["iat"] += 3600
    claims["exp"] += 3600


def _bad_signature(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    plan.tamper = True


def _alg_none(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    plan.unsigned = True


def _hs256_with_secret(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    from joserfc.jwk import OctKey

    plan.key = OctKey.import_key(CLIENT_SECRET)  # type: ignore[assignment]
    plan.header = {"alg": "HS256"}


def _unknown_kid(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    plan.key = provider.add_key("never-published", publish=False)


def _other_key_same_kid(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    plan.key = provider.add_key("k1", publish=False)


def _no_auth_time(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    del claims["auth_time"]


def _server_error(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    plan.status = 500


def _timeout(provider: FakeProvider, claims: dict[str, Any], plan: TokenPlan) -> None:
    plan.stall_seconds = 2.5


BAD_TOKENS = [
    pytest.param(_bad_signature, "signature_invalid", id="bad-signature"),
    pytest.param(_other_key_same_kid, "signature_invalid", id="other-key-same-kid"),
    pytest.param(_set(iss="https://evil.example"), "issuer_mismatch", id="wrong-issuer"),
    pytest.param(_set(aud="someone-else"), "audience_mismatch", id="wrong-audience"),
    pytest.param(_set(aud=[CLIENT_ID, "other"], azp="other"), "azp_mismatch", id="azp-mismatch"),
    pytest.param(_set(aud=[CLIENT_ID, "other"]), "azp_mismatch", id="azp-missing"),
    pytest.param(_set(nonce="not-the-nonce"), "nonce_mismatch", id="wrong-nonce"),
    pytest.param(_expired, "expired", id="expired"),
    pytest.param(_future_iat, "issued_in_future", id="iat-in-future"),
    pytest.param(_alg_none, "algorithm_refused", id="alg-none"),
    pytest.param(_hs256_with_secret, "algorithm_refused", id="hs256-not-configured"),
    pytest.param(_unknown_kid, "unknown_key", id="unknown-kid-after-refresh"),
    pytest.param(_no_auth_time, "auth_time_missing", id="trusted-without-auth-time"),
    pytest.param(_set(sub="bad subject/!"), "subject_invalid", id="subject-not-id-safe"),
    pytest.param(_server_error, "token_endpoint_failed", id="token-endpoint-500"),
    pytest.param(_timeout, "token_endpoint_failed", id="token-endpoint-timeout"),
]


@pytest.mark.parametrize(("tamper", "reason"), BAD_TOKENS)
async def test_a_bad_answer_from_the_upstream_fails_closed(
    api: Harness, provider: FakeProvider, tamper: Tamper, reason: str
) -> None:
    async with _browser(api) as browser:
        state, nonce, _ = await _begin(browser)
        claims = provider.base_claims(nonce, now=api.clock.now().timestamp())
        plan = TokenPlan(claims=claims)
        tamper(provider, claims, plan)
        provider.next_token = plan
        jwks_before = provider.hits["/jwks"]
        response = await _finish(browser, state)
        _assert_generic_failure(response)
        assert (await browser.get("/account/factors")).status_code != 200
    assert await _failures(api) == [reason]
    assert await api.audit(type="upstream.login_succeeded") == []
    if reason == "unknown_key":
        assert provider.hits["/jwks"] == jwks_before + 1  # one refresh, then refused


async def test_a_rotated_key_is_fetched_and_accepted(api: Harness, provider: FakeProvider) -> None:
    async with _browser(api) as browser:
        state, nonce, _ = await _begin(browser)
        provider.next_token = TokenPlan(
            claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
        )
        assert (await _finish(browser, state)).status_code == 303
        fetches = provider.hits["/jwks"]
        provider.add_key("k2")  # the upstream rotates: new tokens name k2
        state, nonce, _ = await _begin(browser)
        provider.next_token = TokenPlan(
            claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
        )
        assert (await _finish(browser, state)).status_code == 303
    assert provider.hits["/jwks"] == fetches + 1


async def test_a_state_works_once(api: Harness, provider: FakeProvider) -> None:
    async with _browser(api) as browser:
        state, nonce, _ = await _begin(browser)
        provider.next_token = TokenPlan(
            claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
        )
        assert (await _finish(browser, state)).status_code == 303
        # The binding cookie is gone after the callback; replaying with it restored still fails.
        browser.cookies.set("stepguard_upstream", "x", domain="stepguard.test")
        _assert_generic_failure(await _finish(browser, state))
    assert await _failures(api) == ["state_invalid"]
    assert len(provider.token_requests) == 1  # the replay never reached the token endpoint


async def test_a_state_from_another_browser_is_refused(
    api: Harness, provider: FakeProvider
) -> None:
    async with _browser(api) as victim, _browser(api) as attacker:
        state, _, _ = await _begin(victim)
        _assert_generic_failure(await _finish(attacker, state))
        # And the victim's own callback now fails too: the state was consumed.
        _assert_generic_failure(await _finish(victim, state))
    assert await _failures(api) == ["browser_mismatch", "state_invalid"]
    assert provider.token_requests == []


async def test_an_expired_state_is_refused(api: Harness, provider: FakeProvider) -> None:
    async with _browser(api) as browser:
        state, _, _ = await _begin(browser)
        api.clock.advance(601)
        _assert_generic_failure(await _finish(browser, state))
    assert await _failures(api) == ["state_invalid"]


async def test_the_upstream_refusing_is_a_failure(api: Harness, provider: FakeProvider) -> None:
    async with _browser(api) as browser:
        state, _, _ = await _begin(browser)
        response = await browser.get(
            "/login/upstream/corp/callback", params={"error": "access_denied", "state": state}
        )
        _assert_generic_failure(response)
    events = await api.audit(type="upstream.login_failed")
    assert [e["details"]["reason"] for e in events] == ["upstream_error"]
    assert events[0]["details"]["detail"] == "access_denied"


async def test_missing_state_or_code_fails(api: Harness, provider: FakeProvider) -> None:
    async with _browser(api) as browser:
        _assert_generic_failure(await browser.get("/login/upstream/corp/callback"))
        state, _, _ = await _begin(browser)
        response = await browser.get("/login/upstream/corp/callback", params={"state": state})
        _assert_generic_failure(response)
    assert await _failures(api) == ["state_invalid", "missing_code"]


async def test_a_state_for_another_upstream_is_refused(
    database_url: str, provider: FakeProvider
) -> None:
    other = _upstream(provider, name="other", label="Other")
    async for api in _harness(database_url, provider, other):
        async with _browser(api) as browser:
            response = await browser.get("/login/upstream/other")
            state = httpx.URL(response.headers["location"]).params["state"]
            _assert_generic_failure(await _finish(browser, state))
        assert await _failures(api) == ["state_invalid"]


async def test_discovery_with_another_issuer_fails_before_redirecting(
    api: Harness, provider: FakeProvider
) -> None:
    provider.discovery_issuer = "https://impostor.example"
    async with _browser(api) as browser:
        response = await browser.get("/login/upstream/corp")
    assert response.status_code == 502
    assert FAILED_TITLE in response.text
    assert await _failures(api) == ["discovery_failed"]


async def test_an_unknown_upstream_is_not_found(api: Harness) -> None:
    async with _browser(api) as browser:
        response = await browser.get("/login/upstream/nope")
    assert response.status_code == 404
    assert "Sign-in did not work" in response.text


async def test_return_to_is_kept_when_internal_and_dropped_otherwise(
    api: Harness, provider: FakeProvider
) -> None:
    for return_to, expected in [
        ("/oidc/authorize/continue?request=abc", "/oidc/authorize/continue?request=abc"),
        ("https://evil.example/steal", "/account/factors"),
        ("//evil.example/", "/account/factors"),
    ]:
        async with _browser(api) as browser:
            state, nonce, _ = await _begin(browser, return_to=return_to)
            provider.next_token = TokenPlan(
                claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
            )
            response = await _finish(browser, state)
            assert response.status_code == 303
            assert response.headers["location"] == expected


async def test_unknown_users_are_refused_when_subjects_are_not_created(
    database_url: str, provider: FakeProvider
) -> None:
    async for api in _harness(database_url, provider, create_subjects=False):
        async with _browser(api) as browser:
            state, nonce, _ = await _begin(browser)
            provider.next_token = TokenPlan(
                claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
            )
            _assert_generic_failure(await _finish(browser, state))
            assert await _failures(api) == ["subject_unknown"]
            await api.put_subject("corp:alice")
            state, nonce, _ = await _begin(browser)
            provider.next_token = TokenPlan(
                claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
            )
            assert (await _finish(browser, state)).status_code == 303


async def test_client_secret_post_when_basic_is_not_offered(
    api: Harness, provider: FakeProvider
) -> None:
    provider.auth_methods = ["client_secret_post"]
    async with _browser(api) as browser:
        state, nonce, _ = await _begin(browser)
        provider.next_token = TokenPlan(
            claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
        )
        assert (await _finish(browser, state)).status_code == 303
    form, authorization = provider.token_requests[-1]
    assert authorization is None
    assert form["client_secret"] == [CLIENT_SECRET]


async def test_metrics_count_outcomes(api: Harness, provider: FakeProvider) -> None:
    async with _browser(api) as browser:
        state, _, _ = await _begin(browser)
        await browser.get(
            "/login/upstream/corp/callback", params={"error": "access_denied", "state": state}
        )
    text = (await api.anon.get("/metrics")).text
    assert 'stepguard_upstream_logins_total{outcome="started",upstream="corp"} 1.0' in text
    assert (
        'stepguard_upstream_logins_total{outcome="failed:upstream_error",upstream="corp"} 1.0'
        in text
    )


async def test_hs256_signed_with_the_client_secret_when_configured(
    database_url: str, provider: FakeProvider
) -> None:
    async for api in _harness(database_url, provider, algorithms=["HS256"]):
        async with _browser(api) as browser:
            state, nonce, _ = await _begin(browser)
            plan = TokenPlan(claims=provider.base_claims(nonce, now=api.clock.now().timestamp()))
            _hs256_with_secret(provider, plan.claims, plan)
            provider.next_token = plan
            assert (await _finish(browser, state)).status_code == 303
            # RS256 is now the refused one.
            state, nonce, _ = await _begin(browser)
            provider.next_token = TokenPlan(
                claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
            )
            _assert_generic_failure(await _finish(browser, state))
        assert await _failures(api) == ["algorithm_refused"]


async def test_concurrent_callbacks_with_one_state_sign_in_once(
    api: Harness, provider: FakeProvider
) -> None:
    async with _browser(api) as browser:
        state, nonce, _ = await _begin(browser)
        provider.next_token = TokenPlan(
            claims=provider.base_claims(nonce, now=api.clock.now().timestamp())
        )
        responses = await asyncio.gather(*(_finish(browser, state) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [303, 400, 400, 400, 400]
    assert len(await api.audit(type="upstream.login_succeeded")) == 1
    assert await _failures(api) == ["state_invalid"] * 4


async def test_expired_login_states_are_pruned_as_new_ones_start(
    api: Harness, provider: FakeProvider
) -> None:
    from sqlalchemy import func, select

    from stepguard.adapters.storage.tables import upstream_logins

    async def rows() -> int:
        async with api.runtime.store.read() as uow:
            result = await uow.execute(select(func.count()).select_from(upstream_logins))
            return int(result.scalar_one())

    async with _browser(api) as browser:
        await _begin(browser)
        await _begin(browser)
        assert await rows() == 2
        api.clock.advance(601)
        await _begin(browser)
    assert await rows() == 1
