"""The hosted pages in a real browser: Playwright drives Debian's Chromium against a live
``stepguard serve`` (SQLite), with a stand-in application to return to.

Every state is photographed into ``test-artifacts/screenshots/`` (the step-up prompt in light
and dark, narrow and wide).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from stepguard.core.factors.totp import TotpSpec, code_at_step
from stepguard.sdk import StepGuardClient
from support.browser import (
    StandInApp,
    new_page,
    screenshot,
    screenshot_variants,
    stand_in_app,
)
from support.server import (
    LiveServer,
    database,
    live_server,
    ok,
    safe_totp_step,
    secret_from_otpauth_uri,
    wrong_totp_code,
)

pytestmark = pytest.mark.slow

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}
SPEC = TotpSpec()


@pytest.fixture(scope="module")
def app() -> Iterator[StandInApp]:
    with stand_in_app() as running:
        yield running


@pytest.fixture(scope="module")
def server(app: StandInApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("pages-live")
    with (
        database("sqlite", workdir) as url,
        live_server(
            workdir,
            database_url=url,
            workers=1,
            settings={"return_to_origins": json.dumps([app.origin])},
        ) as running,
    ):
        yield running


def subject_with_totp(api: httpx.Client) -> tuple[str, str, bytes, str]:
    """A subject whose TOTP was confirmed with the previous step's code, and a password
    session: (subject, factor, seed, session)."""
    subject = f"pages-{secrets.token_hex(4)}"
    ok(api.put(f"/v1/subjects/{subject}", json={"email": f"{subject}@example.com"}))
    step = safe_totp_step(SPEC, margin=10)
    enrolled = ok(api.post(f"/v1/subjects/{subject}/factors", json={"type": "totp"}), 201)
    secret = secret_from_otpauth_uri(enrolled["otpauth_uri"])
    factor = enrolled["factor"]["id"]
    confirm = {"code": code_at_step(secret, SPEC, step - 1)}
    ok(api.post(f"/v1/subjects/{subject}/factors/{factor}/confirm", json=confirm))
    session = ok(api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}), 201)
    return subject, factor, secret, session["session_id"]


def transfer(api: httpx.Client, session: str, **extra: Any) -> dict[str, Any]:
    body = {"session_id": session, "action": "payments.transfer", "context": TRANSFER, **extra}
    decision: dict[str, Any] = ok(api.post("/v1/decisions", json=body))
    return decision


def current_code(secret: bytes) -> str:
    return code_at_step(secret, SPEC, safe_totp_step(SPEC, margin=5))


def test_a_totp_step_up_returns_to_the_app_which_then_redeems_it(
    server: LiveServer, app: StandInApp, browser: Browser, api: httpx.Client
) -> None:
    _, _, secret, session = subject_with_totp(api)
    decision = transfer(api, session)
    assert decision["decision"] == "step_up"
    challenge = decision["challenge"]
    back = f"{app.origin}/transfers/7"
    context, page = new_page(browser)
    try:
        page.goto(challenge["page_url"] + "&return_to=" + quote(back, safe=""))
        # The token is gone from the address bar (and so from history and Referer).
        assert urlsplit(page.url).path == f"/challenge/{challenge['id']}"
        assert "t" not in parse_qs(urlsplit(page.url).query)
        expect(page.locator(".summary")).to_have_text("Transfer EUR 2500 to ACME GmbH")
        expect(page.get_by_label("Code from your authenticator app")).to_be_focused()
        cookie = next(c for c in context.cookies() if c["name"] == "stepguard_browser")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"
        screenshot_variants(page, "challenge-prompt")

        page.get_by_label("Code from your authenticator app").fill(current_code(secret))
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(f"{back}?stepguard_challenge={challenge['id']}")
        expect(page.get_by_role("heading")).to_have_text("Back in the app")
        rotated = next(c for c in context.cookies() if c["name"] == "stepguard_browser")
        assert rotated["value"] != cookie["value"]
    finally:
        context.close()

    # The application redeems it with the SDK: once, for exactly this transaction.
    with StepGuardClient(server.base_url, server.api_key) as sg:
        other = sg.decide(
            session,
            "payments.transfer",
            context={**TRANSFER, "amount": 9999},
            challenge_id=challenge["id"],
        )
        allowed = sg.decide(
            session, "payments.transfer", context=TRANSFER, challenge_id=challenge["id"]
        )
        replay = sg.decide(
            session, "payments.transfer", context=TRANSFER, challenge_id=challenge["id"]
        )
    assert other.step_up_required
    assert allowed.allowed, allowed
    assert replay.step_up_required
    assert replay.challenge is not None
    assert replay.challenge.page_url is not None
    # The default public_url: localhost (a host name WebAuthn accepts), the server's port.
    page_url = replay.challenge.page_url.reveal()
    assert page_url.startswith(f"http://localhost:{server.port}/challenge/")
    assert "sgp_" not in repr(replay)


def test_a_wrong_code_shows_the_error_and_the_challenge_stays_pending(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    _, _, secret, session = subject_with_totp(api)
    challenge = transfer(api, session)["challenge"]
    context, page = new_page(browser)
    try:
        page.goto(challenge["page_url"])
        field = page.get_by_label("Code from your authenticator app")
        field.fill(wrong_totp_code(secret, safe_totp_step(SPEC)))
        field.press("Enter")
        error = page.get_by_role("alert")
        expect(error).to_have_text("That didn't work. Check the code and try again.")
        field = page.get_by_label("Code from your authenticator app")
        expect(field).to_have_attribute("aria-invalid", "true")
        assert "form-error" in (field.get_attribute("aria-describedby") or "")
        screenshot_variants(page, "challenge-error")
        status = ok(api.get(f"/v1/challenges/{challenge['id']}"))["status"]
        assert status == "pending"

        for _ in range(4):
            page.get_by_label("Code from your authenticator app").fill("000000")
            page.get_by_role("button", name="Verify").click()
            page.wait_for_load_state()
        expect(page.locator("#lock-message")).to_contain_text("Too many attempts. Try again in")
        screenshot(page, "challenge-locked-light-narrow")
    finally:
        context.close()


def test_a_recovery_code_step_up_ends_in_the_done_state(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject = f"pages-{secrets.token_hex(4)}"
    ok(api.put(f"/v1/subjects/{subject}", json={}))
    enrolled = ok(api.post(f"/v1/subjects/{subject}/factors", json={"type": "recovery_code"}), 201)
    session = ok(api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}), 201)
    challenge = transfer(api, session["session_id"])["challenge"]
    context, page = new_page(browser, scheme="dark")
    try:
        page.goto(challenge["page_url"])
        page.get_by_label("Recovery code").fill(enrolled["recovery_codes"][0])
        page.get_by_role("button", name="Use recovery code").click()
        expect(page.get_by_role("heading", name="You're verified")).to_be_visible()
        expect(page.locator("#continue")).to_have_count(0)
        screenshot_variants(page, "challenge-done")

        # The link was single use: opening it again, even in a new browser, is refused.
        other, again = new_page(browser)
        try:
            again.goto(challenge["page_url"])
            expect(again.get_by_role("heading")).to_have_text("This link has expired")
            screenshot(again, "link-expired-light-narrow")
        finally:
            other.close()
    finally:
        context.close()


def test_the_account_page_adds_totp_makes_recovery_codes_and_removes_a_factor(
    server: LiveServer, browser: Browser, api: httpx.Client, tmp_path: Path
) -> None:
    subject, first_factor, secret, session = subject_with_totp(api)
    link = ok(api.post(f"/v1/sessions/{session}/page-links", json={"page": "account"}), 201)
    context, page = new_page(browser)
    try:
        page.goto(link["url"])
        assert urlsplit(page.url).path == "/account/factors"
        assert urlsplit(page.url).query == ""
        expect(page.get_by_role("heading", name="Your sign-in factors")).to_be_visible()
        screenshot_variants(page, "account-list")

        # A change needs a fresh step-up first: the page sends the browser to one.
        page.get_by_role("button", name="Add authenticator app").click()
        expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
        expect(page.locator(".summary")).to_have_text("Change your sign-in factors")
        screenshot(page, "account-step-up-light-narrow")
        page.get_by_label("Code from your authenticator app").fill(current_code(secret))
        page.get_by_role("button", name="Verify").click()
        expect(page.locator("#notice")).to_contain_text("You're verified")

        page.get_by_label("Name (optional)", exact=True).fill("Work phone")
        page.get_by_role("button", name="Add authenticator app").click()
        expect(page.get_by_role("heading", name="Set up your authenticator app")).to_be_visible()
        expect(page.get_by_role("img", name="QR code")).to_be_visible()
        screenshot_variants(page, "account-totp")
        shown = (page.locator("#totp-secret").text_content() or "").replace(" ", "")
        new_secret = base64.b32decode(shown + "=" * (-len(shown) % 8))
        page.get_by_label("Enter the 6-digit code the app shows").fill(current_code(new_secret))
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("#notice")).to_have_text("Your authenticator app is set up.")

        page.get_by_role("button", name="Generate recovery codes").click()
        expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
        codes = page.locator("#recovery-codes code").all_text_contents()
        assert len(codes) == 10
        screenshot_variants(page, "account-codes")
        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download as .txt").click()
        download = download_info.value
        assert download.suggested_filename == "stepguard-recovery-codes.txt"
        saved = tmp_path / "codes.txt"
        download.save_as(saved)
        assert all(code in saved.read_text() for code in codes)
        page.get_by_role("link", name="I've saved them").click()

        page.locator(f"#factor-{first_factor}").get_by_role("button", name="Remove").click()
        expect(page.locator("#notice")).to_have_text("The factor was removed.")
        screenshot_variants(page, "account-removed")
    finally:
        context.close()

    factors = ok(api.get(f"/v1/subjects/{subject}/factors"))["factors"]
    assert sorted((f["type"], f["label"], f["status"]) for f in factors) == [
        ("recovery_code", "Recovery codes", "active"),
        ("totp", "Work phone", "active"),
    ]
