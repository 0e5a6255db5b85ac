"""The OpenID Connect provider over HTTP (httpx against the real app and store), on SQLite and
PostgreSQL: discovery, JWKS, the code flow with step-up, and every refusal."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from stepguard.sdk.errors import InvalidTokenError
from stepguard.sdk.rfc9068 import AsyncAccessTokenVerifier
from support.harness import Harness, start_harness
from support.oidc import (
    APP,
    LOGOUT_BACK,
    OIDC_POLICY,
    PUBLIC,
    REDIRECT,
    Client,
    Flow,
    User,
    add_client,
    browser,
    form_url,
    local,
    new_flow,
    new_user,
    query,
    redeem,
    sign_in,
    step_up_on_page,
)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Harness]:
    harness, runtime = await start_harness(
        database_url,
        policy=OIDC_POLICY,
        settings_overrides={"public_url": PUBLIC, "return_to_origins": [APP]},
    )
    try:
        yield harness
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


async def keyset(b: httpx.AsyncClient) -> KeySet:
    return KeySet.import_key_set((await b.get("/oidc/jwks")).json())


async def authorized_code(
    api: Harness, b: httpx.AsyncClient, flow: Flow, user: User, **extra: str
) -> str:
    """Authorize with ``extra`` parameters, stepping up when asked; returns the code."""
    response = await b.get(form_url("/oidc/authorize", flow.params(**extra)))
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    if location.startswith("/challenge/"):
        answered = await step_up_on_page(api, b, location, user)
        response = await b.get(answered.headers["location"])
        assert response.status_code == 303, response.text
        location = response.headers["location"]
    assert location.startswith(REDIRECT), location
    params = query(location)
    assert params["state"] == flow.state
    assert params["iss"] == PUBLIC
    return params["code"]


async def signed_in(api: Harness, subject: str = "alice") -> tuple[User, httpx.AsyncClient]:
    user = await new_user(api, subject)
    b = browser(api)
    await sign_in(api, b, user.session_id)
    return user, b


# --- discovery and keys -------------------------------------------------------------------


async def test_discovery_names_the_endpoints_and_step_up_levels(api: Harness) -> None:
    doc = (await api.anon.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == PUBLIC
    assert doc["jwks_uri"] == f"{PUBLIC}/oidc/jwks"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert {"phr", "phrh", "aal2"} <= set(doc["acr_values_supported"])
    assert doc["claims_parameter_supported"] is True
    assert doc["end_session_endpoint"] == f"{PUBLIC}/oidc/logout"


async def test_jwks_publishes_an_es256_key_without_private_parts(api: Harness) -> None:
    keys = (await api.anon.get("/oidc/jwks")).json()["keys"]
    assert len(keys) == 1
    assert keys[0]["alg"] == "ES256"
    assert keys[0]["kty"] == "EC"
    assert "d" not in keys[0]


# --- the code flow ------------------------------------------------------------------------


async def test_code_flow_with_step_up_issues_tokens_at_the_achieved_level(api: Harness) -> None:
    user, b = await signed_in(api)
    client = await add_client(api)
    flow = new_flow(client)
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user, acr_values="aal2")
        response = await redeem(b, flow, code)
        assert response.status_code == 200, response.text
        body = response.json()
        assert response.headers["cache-control"] == "no-store"
        ks = await keyset(b)
        id_token = jwt.decode(body["id_token"], ks, algorithms=["ES256"])
        claims = id_token.claims
        assert claims["iss"] == PUBLIC
        assert claims["aud"] == client.id
        assert claims["sub"] == "alice"
        assert claims["nonce"] == flow.nonce
        assert claims["acr"] == "aal2"
        assert {"pwd", "otp", "mfa"} <= set(claims["amr"])
        assert claims["sid"] == user.session_id
        assert "at_hash" in claims
        access = jwt.decode(body["access_token"], ks, algorithms=["ES256"])
        assert access.header["typ"] == "at+jwt"
        assert access.claims["client_id"] == client.id
        assert access.claims["acr"] == "aal2"
        assert access.claims["scope"] == "openid email groups offline_access"
        assert "refresh_token" in body
        info = await b.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert info.status_code == 200, info.text
        assert info.json() == {"sub": "alice", "email": "alice@example.com", "groups": ["staff"]}
    metrics = (await api.anon.get("/metrics")).text
    assert 'stepguard_oidc_events_total{event="code",outcome="redeemed"} 1.0' in metrics
    events = [e["type"] for e in await api.audit()]
    assert "decision.step_up" in events
    assert "oidc.code_issued" in events
    assert "oidc.code_redeemed" in events


async def test_same_origin_continuation_returns_through_a_page(api: Harness) -> None:
    """After the step-up form post, a 303 to the client's origin would be blocked by CSP
    form-action: the continuation answers with a meta refresh page."""
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params(acr_values="aal2")))
        answered = await step_up_on_page(api, b, response.headers["location"], user)
        page = await b.get(answered.headers["location"], headers={"Sec-Fetch-Site": "same-origin"})
        assert page.status_code == 200
        assert (
            '<meta http-equiv="refresh" content="0;url=https://app.example/callback?' in page.text
        )
        assert "script" not in page.text.split("<body>")[1].split("</body>")[0].replace(
            "pages.js", ""
        )


async def test_no_step_up_when_the_session_already_meets_the_level(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params()))
        assert response.status_code == 303
        assert response.headers["location"].startswith(REDIRECT)
        code = query(response.headers["location"])["code"]
        tokens = (await redeem(b, flow, code)).json()
        claims = jwt.decode(tokens["id_token"], await keyset(b), algorithms=["ES256"]).claims
        assert claims["acr"] == "aal1"


async def test_policy_rule_can_be_stricter_than_the_client(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api, "strict"))
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params(acr_values="aal1")))
        assert response.headers["location"].startswith("/challenge/")


async def test_policy_deny_is_access_denied(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api, "blocked"))
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params()))
        params = query(response.headers["location"])
        assert params["error"] == "access_denied"
        assert params["state"] == flow.state


async def test_public_client_uses_pkce_without_a_secret(api: Harness) -> None:
    user, b = await signed_in(api)
    client = await add_client(api, "spa", public=True)
    assert client.secret is None
    flow = new_flow(client)
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        response = await redeem(b, flow, code)
        assert response.status_code == 200, response.text


async def test_client_secret_post_works(api: Harness) -> None:
    user, b = await signed_in(api)
    client = await add_client(api)
    flow = new_flow(client)
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        response = await b.post(
            "/oidc/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": flow.verifier,
                "client_id": client.id,
                "client_secret": client.secret or "",
            },
        )
        assert response.status_code == 200, response.text


# --- refusals at the authorization endpoint -----------------------------------------------


async def test_unknown_client_or_redirect_uri_is_never_redirected(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        for params in (
            flow.params(redirect_uri=f"{REDIRECT}/x"),
            flow.params(redirect_uri=f"{REDIRECT}?a=1"),
            flow.params(redirect_uri="https://evil.example/callback"),
            flow.params(client_id="nobody"),
        ):
            response = await b.get(form_url("/oidc/authorize", params))
            assert response.status_code == 400
            assert "location" not in response.headers


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "email"}, "invalid_scope"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"prompt": "none login"}, "invalid_request"),
    ],
)
async def test_malformed_requests_are_redirected_errors(
    api: Harness, change: dict[str, str], error: str
) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        params = {k: v for k, v in flow.params(**change).items() if v != ""}
        response = await b.get(form_url("/oidc/authorize", params))
        assert response.status_code == 303
        got = query(response.headers["location"])
        assert got["error"] == error
        assert got["state"] == flow.state


async def test_prompt_none_without_sign_in_is_login_required(api: Harness) -> None:
    flow = new_flow(await add_client(api))
    async with browser(api) as b:
        response = await b.get(form_url("/oidc/authorize", flow.params(prompt="none")))
        assert query(response.headers["location"])["error"] == "login_required"


async def test_prompt_none_needing_step_up_is_interaction_required(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        response = await b.get(
            form_url("/oidc/authorize", flow.params(prompt="none", acr_values="aal2"))
        )
        assert query(response.headers["location"])["error"] == "interaction_required"


async def test_without_sign_in_the_browser_goes_to_login(api: Harness) -> None:
    flow = new_flow(await add_client(api))
    async with browser(api) as b:
        response = await b.get(form_url("/oidc/authorize", flow.params()))
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/login?return_to=%2Foidc%2Fauthorize%2Fcontinue%3Freq%3D")
        assert "stepguard_oidc" in response.cookies


async def test_essential_acr_that_no_factor_can_reach_is_unmet(api: Harness) -> None:
    _user, b = await signed_in(api)  # TOTP only: phr needs a phishing-resistant factor
    flow = new_flow(await add_client(api))
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": ["phr"]}}})
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params(claims=claims)))
        got = query(response.headers["location"])
        assert got["error"] == "unmet_authentication_requirements"
        assert got["state"] == flow.state


async def test_voluntary_acr_values_no_factor_can_reach_give_the_level_reached(
    api: Harness,
) -> None:
    user, b = await signed_in(api)  # TOTP only: phr needs a phishing-resistant factor
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user, acr_values="phr")
        tokens = (await redeem(b, flow, code)).json()
        claims = jwt.decode(tokens["id_token"], await keyset(b), algorithms=["ES256"]).claims
        assert claims["acr"] == "aal1"  # what the password reached; the client decides


async def test_acr_values_in_preference_order_falls_back_to_a_reachable_level(
    api: Harness,
) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user, acr_values="phrh aal2")
        tokens = (await redeem(b, flow, code)).json()
        claims = jwt.decode(tokens["id_token"], await keyset(b), algorithms=["ES256"]).claims
        assert claims["acr"] == "aal2"


async def test_tampered_acr_values_at_the_continuation_cannot_raise_the_level(
    api: Harness,
) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params(acr_values="aal2")))
        answered = await step_up_on_page(api, b, response.headers["location"], user)
        tampered = answered.headers["location"] + "&acr_values=aal3&client_id=other"
        response = await b.get(tampered)
        code = query(response.headers["location"])["code"]
        tokens = (await redeem(b, flow, code)).json()
        claims = jwt.decode(tokens["id_token"], await keyset(b), algorithms=["ES256"]).claims
        assert claims["acr"] == "aal2"


async def test_continuation_from_another_browser_or_twice_is_refused(api: Harness) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b), browser(api) as other:
        response = await b.get(form_url("/oidc/authorize", flow.params(acr_values="aal2")))
        answered = await step_up_on_page(api, b, response.headers["location"], user)
        await sign_in(api, other, user.session_id)
        stolen = await other.get(answered.headers["location"])
        assert stolen.status_code == 400
        first = await b.get(answered.headers["location"])
        assert first.status_code == 303
        assert "code=" in first.headers["location"]
        again = await b.get(answered.headers["location"])
        assert again.status_code == 400


async def test_max_age_exceeded_sends_the_browser_to_sign_in_again(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    api.clock.advance(600)
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params(max_age="60")))
        location = response.headers["location"]
        assert location.startswith("/login?return_to=")
        # Coming back without a fresh sign-in fails instead of looping.
        back = await b.get(
            location.split("return_to=")[1]
            .replace("%2F", "/")
            .replace("%3F", "?")
            .replace("%3D", "=")
        )
        assert query(back.headers["location"])["error"] == "login_required"


async def test_prompt_login_accepts_a_sign_in_made_after_the_request(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        response = await b.get(form_url("/oidc/authorize", flow.params(prompt="login")))
        location = response.headers["location"]
        assert location.startswith("/login?return_to=")
        continuation = (
            location.split("return_to=")[1].replace("%2F", "/").replace("%3F", "?")
        ).replace("%3D", "=")
        api.clock.advance(5)
        fresh = await api.open_session("alice")  # what /login does: a new session ...
        await sign_in(api, b, fresh)  # ... and a new browser cookie
        done = await b.get(continuation)
        code = query(done.headers["location"])["code"]
        tokens = (await redeem(b, flow, code)).json()
        claims = jwt.decode(tokens["id_token"], await keyset(b), algorithms=["ES256"]).claims
        assert claims["sid"] == fresh
        assert claims["auth_time"] == int(api.clock.now().timestamp())


# --- refusals at the token endpoint --------------------------------------------------------


async def test_wrong_verifier_redirect_uri_or_client_fail_and_burn_the_code(
    api: Harness,
) -> None:
    user, b = await signed_in(api)
    client = await add_client(api)
    other = await add_client(api, "other")
    async with aclosing(b):
        flow = new_flow(client)
        code = await authorized_code(api, b, flow, user)
        bad = await redeem(b, flow, code, code_verifier="x" * 43)
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_grant"
        assert (await redeem(b, flow, code)).status_code == 400  # burnt

        flow = new_flow(client)
        code = await authorized_code(api, b, flow, user)
        bad = await redeem(b, flow, code, redirect_uri=f"{REDIRECT}/x")
        assert bad.json()["error"] == "invalid_grant"

        flow = new_flow(client)
        code = await authorized_code(api, b, flow, user)
        stolen = Flow(client=other, verifier=flow.verifier, challenge=flow.challenge)
        assert (await redeem(b, stolen, code)).json()["error"] == "invalid_grant"

        flow = new_flow(client)
        code = await authorized_code(api, b, flow, user)
        missing = await b.post(
            "/oidc/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
            auth=client.auth or httpx.USE_CLIENT_DEFAULT,
        )
        assert missing.json()["error"] == "invalid_grant"


async def test_wrong_client_authentication_is_401(api: Harness) -> None:
    user, b = await signed_in(api)
    client = await add_client(api)
    flow = new_flow(client)
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        wrong = Flow(
            client=Client(id=client.id, secret="ocs_wrong"),
            verifier=flow.verifier,
            challenge=flow.challenge,
        )
        response = await redeem(b, wrong, code)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        no_secret = Flow(
            client=Client(id=client.id, secret=None), verifier=flow.verifier, challenge=""
        )
        assert (await redeem(b, no_secret, code)).status_code == 401
        assert (await redeem(b, flow, code)).status_code == 200  # the code was not burnt


async def test_expired_code_is_refused(api: Harness) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        api.clock.advance(61)
        assert (await redeem(b, flow, code)).json()["error"] == "invalid_grant"


async def test_code_reuse_fails_and_revokes_what_the_code_issued(api: Harness) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        tokens = (await redeem(b, flow, code)).json()
        again = await redeem(b, flow, code)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        info = await b.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert info.status_code == 401
        refreshed = await b.post(
            "/oidc/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=flow.client.auth or httpx.USE_CLIENT_DEFAULT,
        )
        assert refreshed.json()["error"] == "invalid_grant"
    reused = await api.audit(type="oidc.code_reused")
    assert reused
    assert reused[0]["details"]["grant_revoked"] is True


async def test_concurrent_redemptions_have_exactly_one_winner(api: Harness) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        results = await asyncio.gather(*(redeem(b, flow, code) for _ in range(8)))
        assert sorted(r.status_code for r in results) == [200] + [400] * 7


# --- refresh tokens -----------------------------------------------------------------------


async def refresh(b: httpx.AsyncClient, client: Client, token: str) -> httpx.Response:
    return await b.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=client.auth or httpx.USE_CLIENT_DEFAULT,
    )


async def test_refresh_rotates_keeps_acr_and_detects_reuse(api: Harness) -> None:
    user, b = await signed_in(api)
    client = await add_client(api)
    flow = new_flow(client)
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user, acr_values="aal2")
        first = (await redeem(b, flow, code)).json()
        ks = await keyset(b)
        original = jwt.decode(first["id_token"], ks, algorithms=["ES256"]).claims
        api.clock.advance(400)  # the step-up is no longer fresh; the token keeps its level
        second = await refresh(b, client, first["refresh_token"])
        assert second.status_code == 200, second.text
        body = second.json()
        assert body["refresh_token"] != first["refresh_token"]
        claims = jwt.decode(body["id_token"], ks, algorithms=["ES256"]).claims
        access = jwt.decode(body["access_token"], ks, algorithms=["ES256"]).claims
        for c in (claims, access):
            assert c["acr"] == original["acr"] == "aal2"
            assert c["amr"] == original["amr"]
            assert c["auth_time"] == original["auth_time"]
        # The rotated-out token again: the whole family dies.
        reused = await refresh(b, client, first["refresh_token"])
        assert reused.json()["error"] == "invalid_grant"
        assert (await refresh(b, client, body["refresh_token"])).json()["error"] == (
            "invalid_grant"
        )
    assert await api.audit(type="oidc.refresh_reused")


# --- access tokens at resource servers -----------------------------------------------------


async def test_sdk_verifier_accepts_the_access_token_only_for_its_audience(
    api: Harness,
) -> None:
    user, b = await signed_in(api)
    client_a = await add_client(api, "app-a")
    client_b = await add_client(api, "app-b")
    flow = new_flow(client_a)
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user, acr_values="aal2")
        tokens = (await redeem(b, flow, code)).json()
        http = httpx.AsyncClient(transport=api.anon._transport, base_url=PUBLIC)
        clock = lambda: api.clock.now().timestamp()  # noqa: E731
        async with AsyncAccessTokenVerifier(PUBLIC, "app-a", http=http, clock=clock) as ok:
            verified = await ok.verify(tokens["access_token"])
            assert verified.acr == "aal2"
            assert verified.subject == "alice"
        http = httpx.AsyncClient(transport=api.anon._transport, base_url=PUBLIC)
        async with AsyncAccessTokenVerifier(PUBLIC, client_b.id, http=http, clock=clock) as other:
            with pytest.raises(InvalidTokenError):
                await other.verify(tokens["access_token"])


async def test_key_rotation_keeps_old_tokens_verifiable_and_signs_with_the_new_key(
    api: Harness,
) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        old = (await redeem(b, flow, code)).json()
        old_kid = jwt.decode(old["id_token"], await keyset(b), algorithms=["ES256"]).header["kid"]
        oidc = api.runtime.oidc
        assert oidc is not None
        api.clock.advance(1)
        new_key = await oidc.rotate_keys(actor="tests")
        kids = {k["kid"] for k in (await b.get("/oidc/jwks")).json()["keys"]}
        assert kids == {old_kid, new_key.kid}
        jwt.decode(old["id_token"], await keyset(b), algorithms=["ES256"])  # still verifies
        flow = new_flow(flow.client)
        code = await authorized_code(api, b, flow, user)
        new = (await redeem(b, flow, code)).json()
        assert (
            jwt.decode(new["access_token"], await keyset(b), algorithms=["ES256"]).header["kid"]
            == new_key.kid
        )
        # Once the old key's tokens have all expired, the next rotation retires it.
        api.clock.advance(3600)
        newest = await oidc.rotate_keys(actor="tests", alg="RS256")
        keys = (await b.get("/oidc/jwks")).json()["keys"]
        assert {k["kid"] for k in keys} == {new_key.kid, newest.kid}
        assert {k["alg"] for k in keys} == {"ES256", "RS256"}


# --- logout and clients ---------------------------------------------------------------------


async def test_logout_revokes_the_session_and_returns_to_a_registered_uri(api: Harness) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        code = await authorized_code(api, b, flow, user)
        tokens = (await redeem(b, flow, code)).json()
        refused = await b.get(
            form_url(
                "/oidc/logout",
                {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": f"{APP}/x"},
            )
        )
        assert refused.status_code == 200  # signed out, but no redirect to an unregistered URI
        session = await api.client.get(f"/v1/sessions/{user.session_id}")
        assert session.status_code == 404 or session.json().get("revoked_at") is not None
        info = await b.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert info.status_code == 401
    user2, b2 = await signed_in(api, "bob")
    async with aclosing(b2):
        flow = new_flow(flow.client)
        code = await authorized_code(api, b2, flow, user2)
        tokens = (await redeem(b2, flow, code)).json()
        out = await b2.get(
            form_url(
                "/oidc/logout",
                {
                    "id_token_hint": tokens["id_token"],
                    "post_logout_redirect_uri": LOGOUT_BACK,
                    "state": "s1",
                },
            )
        )
        assert out.status_code == 303
        assert out.headers["location"] == f"{LOGOUT_BACK}?state=s1"
    assert await api.audit(type="oidc.logout")


async def test_logout_without_a_hint_for_this_session_asks_before_signing_out(
    api: Harness,
) -> None:
    user, b = await signed_in(api)
    flow = new_flow(await add_client(api))
    async with aclosing(b):
        # A bare GET (any site can make the browser send one) changes nothing: a form asks.
        asked = await b.get(
            form_url("/oidc/logout", {"post_logout_redirect_uri": LOGOUT_BACK, "state": "s2"})
        )
        assert asked.status_code == 200
        assert 'id="oidc-logout-confirm"' in asked.text
        assert "set-cookie" not in asked.headers
        assert (await api.client.get(f"/v1/sessions/{user.session_id}")).status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', asked.text)
        assert csrf is not None
        # A forged post (no CSRF token) is refused; the session lives on.
        forged = await b.post("/oidc/logout", data={"client_id": flow.client.id})
        assert forged.status_code == 403
        assert (await api.client.get(f"/v1/sessions/{user.session_id}")).status_code == 200
        # The user's own confirmation signs out and returns to the registered URI.
        confirmed = await b.post(
            "/oidc/logout",
            data={
                "client_id": flow.client.id,
                "post_logout_redirect_uri": LOGOUT_BACK,
                "state": "s2",
                "csrf": csrf.group(1),
            },
        )
        assert confirmed.status_code == 200
        assert f"{LOGOUT_BACK}?state=s2" in confirmed.text  # through the return page
        session = await api.client.get(f"/v1/sessions/{user.session_id}")
        assert session.status_code == 404 or session.json().get("revoked_at") is not None


async def test_clients_api_needs_the_api_key_and_hides_secrets(api: Harness) -> None:
    assert (await api.anon.get("/v1/oidc/clients")).status_code == 401
    created = await api.client.post(
        "/v1/oidc/clients", json={"name": "X", "redirect_uris": ["http://evil.example/cb"]}
    )
    assert created.status_code == 400
    client = await add_client(api)
    listed = (await api.client.get("/v1/oidc/clients")).json()
    assert [c["client_id"] for c in listed] == [client.id]
    assert listed[0]["client_secret"] is None
    assert (await api.client.delete(f"/v1/oidc/clients/{client.id}")).status_code == 204
    assert (await api.client.get("/v1/oidc/clients")).json() == []


async def test_consent_page_for_clients_that_require_it(api: Harness) -> None:
    _user, b = await signed_in(api)
    flow = new_flow(await add_client(api, consent_required=True))
    async with aclosing(b):
        page = await b.get(form_url("/oidc/authorize", flow.params()))
        assert page.status_code == 200
        assert 'id="oidc-consent"' in page.text
        import re

        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        req = re.search(r'name="req" value="([^"]+)"', page.text)
        assert csrf
        assert req
        forged = await b.post(
            "/oidc/authorize/consent",
            data={"req": req.group(1), "csrf": "0" * 64, "decision": "allow"},
        )
        assert forged.status_code == 403
        done = await b.post(
            "/oidc/authorize/consent",
            data={"req": req.group(1), "csrf": csrf.group(1), "decision": "allow"},
        )
        assert done.status_code == 200
        assert "http-equiv" in done.text
        url = done.text.split('content="0;url=')[1].split('"')[0].replace("&amp;", "&")
        code = query(url)["code"]
        assert (await redeem(b, flow, code)).status_code == 200


def _unused(_: Any) -> None:
    local("")


async def test_signing_keys_are_encrypted_at_rest_and_follow_secret_key_rotation(
    api: Harness,
) -> None:
    from sqlalchemy import select

    from stepguard.adapters.crypto import SecretBox
    from stepguard.adapters.storage import SqlStore
    from stepguard.adapters.storage.tables import oidc_keys

    published = (await api.anon.get("/oidc/jwks")).json()["keys"][0]
    async with api.runtime.store.read() as uow:
        rows = (await uow.execute(select(oidc_keys.c.private_enc))).all()
    assert len(rows) == 1
    assert published["x"] not in rows[0].private_enc  # not stored in the clear
    old = [k.get_secret_value() for k in api.runtime.settings.secret_keys]
    rotating = SqlStore(api.database_url, secret_box=SecretBox([SecretBox.generate_key(), *old]))
    try:
        assert await rotating.reencrypt_secrets() == 1
        assert await rotating.reencrypt_secrets() == 0
        async with rotating.read() as uow:
            keys = await uow.oidc.published_keys()
        assert [k.kid for k in keys] == [published["kid"]]
    finally:
        await rotating.close()
