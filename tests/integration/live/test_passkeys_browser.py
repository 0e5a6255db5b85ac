"""Passkeys and security keys on the hosted pages in a real browser: Playwright drives Debian's
Chromium, whose CDP virtual authenticators play the platform authenticator (transport
``internal``, user verification) and a roaming security key (``usb``), against a live
``stepguard serve`` (SQLite) on its default ``public_url``, ``http://localhost:{port}``.

Every state is photographed into ``test-artifacts/screenshots/`` (``passkey-*``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from stepguard.core.factors.totp import TotpSpec, code_at_step
from support.browser import VirtualAuthenticators, new_page, screenshot, screenshot_variants
from support.server import (
    LiveServer,
    database,
    live_server,
    ok,
    safe_totp_step,
    secret_from_otpauth_uri,
)

pytestmark = pytest.mark.slow

SPEC = TotpSpec()
TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}
BUTTON = "Use your passkey or security key"
FAILURE = "That didn't work. Try your passkey or security key again, or use another way to confirm."
POLICY = """
version: 1
rules:
  - id: transfer
    match: {actions: ["payments.transfer"]}
    step_up: {acr: phr, max_age: 0, bind: true}
    summary: "Transfer {context.currency} {context.amount} to {context.payee}"
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default:
  deny: true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("passkeys-live")
    with (
        database("sqlite", workdir) as url,
        live_server(workdir, database_url=url, workers=1, policy=POLICY) as running,
    ):
        yield running


def new_subject(api: httpx.Client, *, totp: bool) -> tuple[str, bytes | None, str]:
    """A subject (with a confirmed TOTP factor if ``totp``) and a password session."""
    subject = f"passkey-{secrets.token_hex(4)}"
    ok(api.put(f"/v1/subjects/{subject}", json={"email": f"{subject}@example.com"}))
    secret = None
    if totp:
        step = safe_totp_step(SPEC, margin=10)
        enrolled = ok(api.post(f"/v1/subjects/{subject}/factors", json={"type": "totp"}), 201)
        secret = secret_from_otpauth_uri(enrolled["otpauth_uri"])
        confirm = {"code": code_at_step(secret, SPEC, step - 1)}
        factor = enrolled["factor"]["id"]
        ok(api.post(f"/v1/subjects/{subject}/factors/{factor}/confirm", json=confirm))
    session = ok(api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}), 201)
    return subject, secret, session["session_id"]


def open_account(api: httpx.Client, page: Page, session: str) -> None:
    link = ok(api.post(f"/v1/sessions/{session}/page-links", json={"page": "account"}), 201)
    assert link["url"].startswith("http://localhost:")  # the default public_url
    page.goto(link["url"])
    expect(page.get_by_role("heading", name="Your sign-in factors")).to_be_visible()


def add_passkey(page: Page, label: str) -> None:
    page.get_by_label("Passkey name (optional)").fill(label)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#notice")).to_have_text("Your passkey or security key is set up.")


def transfer(api: httpx.Client, session: str, **extra: Any) -> dict[str, Any]:
    body = {"session_id": session, "action": "payments.transfer", "context": TRANSFER, **extra}
    decision: dict[str, Any] = ok(api.post("/v1/decisions", json=body))
    return decision


def test_a_passkey_and_a_security_key_are_added_on_the_account_page_after_a_step_up(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject, secret, session = new_subject(api, totp=True)
    assert secret is not None
    context, page = new_page(browser)
    try:
        keys = VirtualAuthenticators(context, page)
        platform = keys.add("internal")
        open_account(api, page, session)
        expect(page.get_by_role("button", name="Add a passkey")).to_be_visible()
        screenshot_variants(page, "passkey-account-empty")

        # A change needs a fresh step-up with an existing factor (TOTP here).
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.locator(".summary")).to_have_text("Change your sign-in factors")
        code = code_at_step(secret, SPEC, safe_totp_step(SPEC, margin=5))
        page.get_by_label("Code from your authenticator app").fill(code)
        page.get_by_role("button", name="Verify").click()
        expect(page.locator("#notice")).to_contain_text("You're verified")

        add_passkey(page, "This laptop")
        assert len(keys.credentials(platform)) == 1
        assert keys.credentials(platform)[0]["isResidentCredential"] is True

        # A roaming key: a second authenticator on USB, through the same page.
        roaming = keys.add("usb")
        page.get_by_label("Security key name (optional)").fill("YubiKey")
        with page.expect_navigation():
            page.get_by_role("button", name="Add a security key").click()
        expect(page.locator("#notice")).to_have_text("Your passkey or security key is set up.")
        rows = page.locator(".factor-row[data-type=webauthn]")
        expect(rows).to_have_count(2)
        assert len(keys.credentials(roaming)) == 1
        assert len(keys.credentials(platform)) == 1  # not registered twice
        expect(rows.nth(0)).to_contain_text("Passkey")
        expect(rows.nth(0)).to_contain_text("This laptop")
        expect(rows.nth(1)).to_contain_text("Security key")
        expect(rows.nth(1)).to_contain_text("YubiKey")
        screenshot_variants(page, "passkey-account-listed")
    finally:
        context.close()

    factors = ok(api.get(f"/v1/subjects/{subject}/factors"))["factors"]
    webauthn = {f["label"]: f for f in factors if f["type"] == "webauthn"}
    assert set(webauthn) == {"This laptop", "YubiKey"}
    assert all(f["status"] == "active" for f in webauthn.values())
    assert webauthn["This laptop"]["webauthn"]["transports"] == ["internal"]
    assert webauthn["This laptop"]["webauthn"]["discoverable"] is True
    assert webauthn["YubiKey"]["webauthn"]["transports"] == ["usb"]


def test_a_passkey_satisfies_a_phr_step_up_with_the_keyboard_alone(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject, _, session = new_subject(api, totp=False)
    context, page = new_page(browser)
    try:
        keys = VirtualAuthenticators(context, page)
        platform = keys.add("internal")
        open_account(api, page, session)
        add_passkey(page, "Phone")  # the first factor needs no step-up

        decision = transfer(api, session)
        assert decision["decision"] == "step_up"
        challenge = decision["challenge"]
        page.goto(challenge["page_url"])
        assert urlsplit(page.url).path == f"/challenge/{challenge['id']}"
        expect(page.locator(".summary")).to_have_text("Transfer EUR 2500 to ACME GmbH")
        button = page.get_by_role("button", name=BUTTON)
        expect(button).to_be_focused()
        screenshot_variants(page, "passkey-challenge-prompt")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="You're verified")).to_be_visible()
        screenshot_variants(page, "passkey-challenge-done")
        assert keys.credentials(platform)[0]["signCount"] >= 1
    finally:
        context.close()

    status = ok(api.get(f"/v1/challenges/{challenge['id']}"))["status"]
    assert status == "satisfied"
    allowed = transfer(api, session, challenge_id=challenge["id"])
    assert allowed["decision"] == "allow", allowed
    assert transfer(api, session, challenge_id=challenge["id"])["decision"] == "step_up"
    events = ok(api.get("/v1/audit", params={"subject_id": subject, "limit": 100}))["events"]
    succeeded = [e for e in events if e["type"] == "verification.succeeded"]
    assert [e["actor"] for e in succeeded] == ["pages"], events


def test_without_user_verification_the_page_shows_the_failure_and_the_challenge_stays_pending(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    _, _, session = new_subject(api, totp=False)
    context, page = new_page(browser, scheme="dark")
    try:
        keys = VirtualAuthenticators(context, page)
        platform = keys.add("internal")
        open_account(api, page, session)
        add_passkey(page, "Phone")

        keys.set_user_verified(platform, False)
        challenge = transfer(api, session)["challenge"]
        page.goto(challenge["page_url"])
        page.get_by_role("button", name=BUTTON).click()
        error = page.get_by_role("alert")
        expect(error).to_have_text(FAILURE)
        button = page.get_by_role("button", name=BUTTON)
        expect(button).to_be_focused()
        assert "form-error" in (button.get_attribute("aria-describedby") or "")
        screenshot_variants(page, "passkey-challenge-error")
        status = ok(api.get(f"/v1/challenges/{challenge['id']}"))["status"]
        assert status == "pending"

        # With UV back, the same page succeeds: the failure left the challenge usable.
        keys.set_user_verified(platform, True)
        button.click()
        expect(page.get_by_role("heading", name="You're verified")).to_be_visible()
    finally:
        context.close()
    assert ok(api.get(f"/v1/challenges/{challenge['id']}"))["status"] == "satisfied"


def test_without_javascript_the_other_factors_still_work(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject, secret, session = new_subject(api, totp=True)
    assert secret is not None
    context, page = new_page(browser)
    try:
        keys = VirtualAuthenticators(context, page)
        keys.add("internal")
        open_account(api, page, session)
        page.get_by_role("button", name="Add a passkey").click()  # the step-up first
        first_step = safe_totp_step(SPEC, margin=10)
        code = code_at_step(secret, SPEC, first_step)
        page.get_by_label("Code from your authenticator app").fill(code)
        page.get_by_role("button", name="Verify").click()
        add_passkey(page, "Laptop")
    finally:
        context.close()

    no_js = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        page = no_js.new_page()
        # A phr step-up only a passkey can answer: the page says what to do.
        page.goto(transfer(api, session)["challenge"]["page_url"])
        expect(page.get_by_role("button", name=BUTTON)).to_be_hidden()
        expect(page.locator("#webauthn-noscript")).to_contain_text("Turn on JavaScript")
        screenshot(page, "passkey-challenge-no-js-light-narrow")

        # An aal2 step-up (managing factors, in a new session that has not stepped up yet):
        # the code form works without JavaScript.
        fresh = ok(api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}), 201)
        open_account(api, page, fresh["session_id"])
        expect(page.get_by_role("button", name="Add a passkey")).to_be_hidden()
        page.get_by_role("button", name="Add authenticator app").click()
        expect(page.get_by_role("button", name=BUTTON)).to_be_hidden()
        code = code_at_step(secret, SPEC, first_step + 1)  # the first one is spent
        page.get_by_label("Code from your authenticator app").fill(code)
        page.get_by_role("button", name="Verify").click()
        expect(page.locator("#notice")).to_contain_text("You're verified")
    finally:
        no_js.close()
