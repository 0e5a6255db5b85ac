"""Sign-in on StepGuard in a real browser: Playwright drives Debian's Chromium against a live
``stepguard serve`` (SQLite) on its default ``public_url``, ``http://localhost:{port}``.
Chromium's CDP virtual authenticator plays the platform passkey (user verification on).

- a passkey registered on the account page signs the user in again after signing out, and
  from a new browser profile holding the same passkey, with "Sign in with a passkey";
- without user verification the sign-in is refused with the generic error;
- a password set with ``stepguard subjects set-password`` (from standard input) signs in,
  with JavaScript off (the passkey button then never shows).

Every state is photographed into ``test-artifacts/screenshots/`` (``login-*``).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from support.browser import VirtualAuthenticators, new_page, screenshot_variants
from support.server import LiveServer, database, live_server, ok, stepguard_executable

pytestmark = pytest.mark.slow

PASSKEY_BUTTON = "Sign in with a passkey"
PASSKEY_FAILURE = "That didn't work. Try your passkey again, or use your password."
POLICY = """
version: 1
rules:
  - id: admin
    match: {actions: ["admin.*"]}
    step_up: {acr: phr, max_age: 300}
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default:
  deny: true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("login-live")
    with (
        database("sqlite", workdir) as url,
        live_server(
            workdir,
            database_url=url,
            workers=1,
            policy=POLICY,
            settings={"password_hash_profile": "test", "dev_mode": "1"},
        ) as running,
    ):
        yield running


def new_subject(api: httpx.Client) -> tuple[str, str]:
    """A subject and an app-created password session for it."""
    subject = f"login-{secrets.token_hex(4)}"
    ok(api.put(f"/v1/subjects/{subject}", json={"email": f"{subject}@example.com"}))
    session = ok(api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}), 201)
    return subject, session["session_id"]


def register_passkey(api: httpx.Client, page: Page, session: str) -> None:
    """Open the account page from a page link and add a passkey (the first factor)."""
    link = ok(api.post(f"/v1/sessions/{session}/page-links", json={"page": "account"}), 201)
    page.goto(link["url"])
    expect(page.get_by_role("heading", name="Your sign-in factors")).to_be_visible()
    page.get_by_label("Passkey name (optional)").fill("This laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#notice")).to_have_text("Your passkey or security key is set up.")


def sign_in_with_passkey(server: LiveServer, page: Page, subject: str) -> None:
    page.goto(
        f"{server.base_url.replace('127.0.0.1', 'localhost')}/login?return_to=/account/factors"
    )
    button = page.get_by_role("button", name=PASSKEY_BUTTON)
    expect(button).to_be_visible()
    with page.expect_navigation():
        button.click()
    expect(page.get_by_role("heading", name="Your sign-in factors")).to_be_visible()
    assert urlsplit(page.url).path == "/account/factors"
    expect(page.locator("#signed-in-as")).to_have_text(subject)


def last_session(api: httpx.Client, subject: str) -> dict[str, Any]:
    events = ok(api.get("/v1/audit", params={"subject_id": subject, "limit": 1000}))["events"]
    created = [e for e in events if e["type"] == "session.created"]
    session: dict[str, Any] = ok(api.get(f"/v1/sessions/{created[-1]['session_id']}"))
    session["via"] = created[-1]["details"].get("via")
    return session


def test_a_passkey_signs_in_again_after_signing_out_and_from_a_new_profile(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject, session = new_subject(api)
    context, page = new_page(browser)
    try:
        keys = VirtualAuthenticators(context, page)
        key = keys.add("internal")
        register_passkey(api, page, session)
        [credential] = keys.credentials(key)
        assert credential["isResidentCredential"] is True

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="You're signed out")).to_be_visible()
        screenshot_variants(page, "login-signed-out")
        page.goto(f"{server.base_url.replace('127.0.0.1', 'localhost')}/account/factors")
        expect(page.get_by_role("heading", name="This link has expired")).to_be_visible()

        page.goto(f"{server.base_url.replace('127.0.0.1', 'localhost')}/login")
        expect(page.get_by_role("button", name=PASSKEY_BUTTON)).to_be_visible()
        expect(page.get_by_label("Email or user ID")).to_have_attribute(
            "autocomplete", "username webauthn"
        )
        screenshot_variants(page, "login-page")
        sign_in_with_passkey(server, page, subject)
        screenshot_variants(page, "login-passkey-signed-in")
        # The passkey as it is now (its counter moved on), to copy into another profile.
        [credential] = keys.credentials(key)
    finally:
        context.close()

    signed_in = last_session(api, subject)
    assert signed_in["via"] == "passkey"
    assert signed_in["acr"] == "phr"
    decision = ok(
        api.post("/v1/decisions", json={"session_id": signed_in["session_id"], "action": "admin.x"})
    )
    assert decision["decision"] == "allow", decision  # phr right after: no second prompt

    # A new browser profile whose authenticator holds the same passkey (as synced).
    context, page = new_page(browser)
    try:
        synced = VirtualAuthenticators(context, page)
        synced.add_credential(synced.add("internal"), credential)
        sign_in_with_passkey(server, page, subject)
    finally:
        context.close()
    assert last_session(api, subject)["via"] == "passkey"


def test_without_user_verification_the_passkey_sign_in_is_refused(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject, session = new_subject(api)
    context, page = new_page(browser, scheme="dark")
    try:
        keys = VirtualAuthenticators(context, page)
        key = keys.add("internal")
        register_passkey(api, page, session)
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="You're signed out")).to_be_visible()
        keys.set_user_verified(key, False)
        page.goto(f"{server.base_url.replace('127.0.0.1', 'localhost')}/login")
        page.get_by_role("button", name=PASSKEY_BUTTON).click()
        expect(page.get_by_role("alert")).to_have_text(PASSKEY_FAILURE)
        screenshot_variants(page, "login-passkey-refused")
    finally:
        context.close()
    # Chromium refuses to sign without user verification when the options require it: the
    # page posts no credential, and the refusal is audited with the browser's error name.
    refused = ok(api.get("/v1/audit", params={"type": "page.refused", "limit": 1000}))["events"]
    assert any(
        e["details"]["reason"] == "login: no passkey credential from the browser"
        and e["details"]["client_error"] == "NotAllowedError"
        for e in refused
    ), refused
    events = ok(api.get("/v1/audit", params={"subject_id": subject, "limit": 1000}))["events"]
    assert [e["type"] for e in events].count("session.created") == 1  # only the app's


def test_a_password_set_from_the_cli_signs_in_without_javascript(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject, _ = new_subject(api)
    password = "a long and memorable passphrase"
    done = subprocess.run(
        [str(stepguard_executable()), "subjects", "set-password", subject, "--stdin"],
        input=password + "\n",
        env=server.env,
        cwd=server.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr

    context = browser.new_context(java_script_enabled=False, locale="en-GB")
    try:
        page = context.new_page()
        page.goto(f"{server.base_url.replace('127.0.0.1', 'localhost')}/login")
        expect(page.get_by_role("button", name=PASSKEY_BUTTON)).to_be_hidden()
        page.get_by_label("Email or user ID").fill(f"{subject.upper()}@EXAMPLE.COM")
        page.get_by_label("Password").fill("not it at all")
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_role("alert")).to_have_text("That email or password is not right.")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_role("heading", name="Your sign-in factors")).to_be_visible()
        expect(page.locator("#signed-in-as")).to_have_text(subject)
    finally:
        context.close()
    signed_in = last_session(api, subject)
    assert signed_in["via"] == "password"
    assert signed_in["amr"] == ["pwd"]
