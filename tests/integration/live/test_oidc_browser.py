"""openid-client (npm, an independent OIDC implementation) signs a user in through StepGuard
with ``acr_values=phr``, in Chromium: the user registers a passkey with user verification on
the account page (CDP virtual authenticator), the client's authorization request steps them
up on the hosted page, and the client redeems the code and validates the ID token.

The step-up page's form post continues to the client's origin through the "Returning to the
app" page (a 303 there would be blocked by CSP ``form-action``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from support.browser import VirtualAuthenticators, new_page, screenshot, stand_in_app
from support.node import node_peer
from support.server import LiveServer, database, live_server

pytestmark = pytest.mark.slow

BUTTON = "Use your passkey or security key"
POLICY = """
version: 1
rules:
  - id: oidc
    match: {actions: ["oidc.authorize"]}
    allow: true
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default:
  deny: true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("oidc-browser")
    with (
        database("sqlite", workdir) as url,
        live_server(workdir, database_url=url, workers=1, policy=POLICY) as running,
    ):
        yield running


def rp(folder: Path, *args: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    env = {**os.environ, "NODE_OPTIONS": "--dns-result-order=ipv4first"}
    done = subprocess.run(
        [node, "rp.mjs", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_openid_client_gets_phr_after_a_passkey_step_up_in_chromium(
    server: LiveServer, browser: Browser
) -> None:
    folder = node_peer("openid_client")
    issuer = f"http://localhost:{server.port}"
    with (
        stand_in_app() as app,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}
        ) as api,
    ):
        redirect_uri = f"{app.origin}/callback"
        registered = api.post(
            "/v1/oidc/clients",
            json={"name": "Node RP", "redirect_uris": [redirect_uri]},
        ).json()
        subject = "oidc-node"
        assert api.put(f"/v1/subjects/{subject}", json={"email": "n@example.com"}).is_success
        session = api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}).json()
        link = api.post(
            f"/v1/sessions/{session['session_id']}/page-links", json={"page": "account"}
        ).json()

        context, page = new_page(browser)
        try:
            VirtualAuthenticators(context, page).add("internal")
            # Signed in (the page link sets the browser cookie); the first factor needs no
            # step-up.
            page.goto(link["url"])
            expect(page.get_by_role("heading", name="Your sign-in factors")).to_be_visible()
            page.get_by_label("Passkey name (optional)").fill("Laptop")
            page.get_by_role("button", name="Add a passkey").click()
            expect(page.locator("#notice")).to_have_text("Your passkey or security key is set up.")

            started = rp(
                folder,
                "start",
                issuer,
                registered["client_id"],
                registered["client_secret"],
                redirect_uri,
                "phr",
            )
            page.goto(started["url"])
            expect(page.get_by_role("button", name=BUTTON)).to_be_visible()
            assert "/challenge/" in page.url
            screenshot(page, "oidc-step-up")
            with page.expect_navigation(url=f"{redirect_uri}**", timeout=15000):
                page.get_by_role("button", name=BUTTON).click()
            expect(page.get_by_role("heading", name="Back in the app")).to_be_visible()
            callback = page.url
        finally:
            context.close()

    finished = rp(
        folder,
        "finish",
        issuer,
        registered["client_id"],
        registered["client_secret"],
        callback,
        started["verifier"],
        started["state"],
        started["nonce"],
    )
    claims = finished["claims"]
    assert claims["iss"] == issuer
    assert claims["sub"] == subject
    assert claims["aud"] == registered["client_id"]
    assert claims["acr"] == "phr"
    assert {"pwd", "swk", "user", "mfa"} <= set(claims["amr"])
    assert isinstance(claims["auth_time"], int)
    assert claims["auth_time"] <= claims["iat"]
    assert claims["nonce"] == started["nonce"]


def test_sign_in_on_stepguard_then_step_up_then_a_passkey_sign_in_meets_phr_at_once(
    server: LiveServer, browser: Browser
) -> None:
    """The whole provider in one browser: openid-client asks for ``phr``; the user signs in on
    StepGuard's own ``/login`` with a password, adds a passkey, and is stepped up with it;
    after signing out, the next request signs in with the passkey alone, which already is
    ``phr``: no second prompt, and ``auth_time`` is the passkey sign-in."""
    folder = node_peer("openid_client")
    issuer = f"http://localhost:{server.port}"
    subject = "oidc-login"
    password = "correct horse battery staple"
    with (
        stand_in_app() as app,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}
        ) as api,
    ):
        redirect_uri = f"{app.origin}/callback"
        registered = api.post(
            "/v1/oidc/clients", json={"name": "Node RP", "redirect_uris": [redirect_uri]}
        ).json()
        assert api.put(f"/v1/subjects/{subject}", json={"email": "l@example.com"}).is_success
        put = api.put(f"/v1/subjects/{subject}/password", json={"password": password})
        assert put.status_code == 204, put.text

        def start() -> dict[str, Any]:
            return rp(
                folder,
                "start",
                issuer,
                registered["client_id"],
                registered["client_secret"],
                redirect_uri,
                "phr",
            )

        def finish(started: dict[str, Any], callback: str, acr: str = "phr") -> dict[str, Any]:
            done = rp(
                folder,
                "finish",
                issuer,
                registered["client_id"],
                registered["client_secret"],
                callback,
                started["verifier"],
                started["state"],
                started["nonce"],
            )
            claims: dict[str, Any] = done["claims"]
            assert claims["sub"] == subject
            assert claims["acr"] == acr
            assert claims["nonce"] == started["nonce"]
            return claims

        context, page = new_page(browser)
        try:
            VirtualAuthenticators(context, page).add("internal")
            # 1. Not signed in: the provider sends the browser to /login, which comes back.
            first = start()
            page.goto(first["url"])
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            assert urlsplit(page.url).path == "/login"
            screenshot(page, "oidc-login")
            page.get_by_label("Email or user ID").fill("l@example.com")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in", exact=True).click()
            # 2. A password is not phr, and no factor can reach it yet: acr_values is
            #    voluntary, so the client gets the level reached and decides for itself.
            expect(page.get_by_role("heading", name="Back in the app")).to_be_visible()
            password_only = finish(first, page.url, acr="aal1")
            assert password_only["amr"] == ["pwd"]
            # 3. Add a passkey on the account page (the browser is signed in now).
            page.goto(f"{issuer}/account/factors")
            page.get_by_label("Passkey name (optional)").fill("Laptop")
            page.get_by_role("button", name="Add a passkey").click()
            expect(page.locator("#notice")).to_have_text("Your passkey or security key is set up.")
            # 4. Now phr is reachable: a step-up with the passkey, then back to the client.
            second = start()
            page.goto(second["url"])
            expect(page.get_by_role("button", name=BUTTON)).to_be_visible()
            with page.expect_navigation(url=f"{redirect_uri}**", timeout=15000):
                page.get_by_role("button", name=BUTTON).click()
            stepped = finish(second, page.url)
            assert {"pwd", "swk", "user", "mfa"} <= set(stepped["amr"])
            # 5. Sign out, then sign in with the passkey alone: phr at once, no prompt.
            page.goto(f"{issuer}/account/factors")
            page.get_by_role("button", name="Sign out").click()
            third = start()
            page.goto(third["url"])
            passkey = page.get_by_role("button", name="Sign in with a passkey")
            expect(passkey).to_be_visible()
            with page.expect_navigation(url=f"{redirect_uri}**", timeout=15000):
                passkey.click()
            signed_in = finish(third, page.url)
        finally:
            context.close()
    assert "pwd" not in signed_in["amr"]
    assert {"swk", "user"} <= set(signed_in["amr"])
    assert signed_in["auth_time"] > stepped["auth_time"]
