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

import httpx
import pytest
from playwright.sync_api import Browser, expect

from support.browser import chromium, launch, new_page, screenshot, stand_in_app
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
    server: LiveServer,
) -> None:
    folder = node_peer("openid_client")
    issuer = f"http://localhost:{server.port}"
    with (
        stand_in_app() as app,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}
        ) as api,
        chromium() as playwright,
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

        browser: Browser = launch(playwright)
        context, page = new_page(browser)
        try:
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable", {"enableUI": False})
            cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )
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
            browser.close()

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
