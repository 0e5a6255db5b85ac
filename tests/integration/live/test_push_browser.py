"""Push approval in a real browser: Playwright drives Debian's Chromium against a live
``stepguard serve`` (SQLite). One context is the approver device (paired through
``/approve#pair=...``: a WebCrypto key kept in IndexedDB), another is the requester's step-up
page showing the number; the approver receives the request over server-sent events. A wrong
number fails; the right one satisfies the challenge and the requester goes back to the app.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from stepguard.sdk import StepGuardClient
from support.browser import StandInApp, new_page, screenshot, stand_in_app
from support.server import LiveServer, database, live_server, ok

pytestmark = pytest.mark.slow

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


@pytest.fixture(scope="module")
def app() -> Iterator[StandInApp]:
    with stand_in_app() as running:
        yield running


@pytest.fixture(scope="module")
def server(app: StandInApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("push-live")
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


def number_on(page: Page) -> int:
    text = page.locator("#push-number").inner_text().strip()
    return int(text)


def test_the_approver_pwa_is_served_with_its_content_types_and_csp(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        page = client.get("/approve")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "manifest-src 'self'" in csp
        assert "worker-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        manifest = client.get("/approve/manifest.webmanifest")
        assert manifest.headers["content-type"].startswith("application/manifest+json")
        assert manifest.json()["start_url"] == "/approve"
        worker = client.get("/approve/sw.js")
        assert worker.headers["content-type"].startswith("text/javascript")
        assert worker.headers["service-worker-allowed"] == "/approve"
        assert client.get("/approve/icon.svg").headers["content-type"] == "image/svg+xml"
        assert client.get("/approve/nothing.js").status_code == 404


def test_a_wrong_number_fails_and_the_right_one_satisfies_the_challenge(
    server: LiveServer, app: StandInApp, browser: Browser, api: httpx.Client
) -> None:
    subject = f"push-{secrets.token_hex(4)}"
    ok(api.put(f"/v1/subjects/{subject}", json={}))
    enrolled = ok(api.post(f"/v1/subjects/{subject}/factors", json={"type": "push"}), 201)
    pairing_url = enrolled["pairing_url"]
    # Pairing links use the public URL, which defaults to http://localhost:{port}.
    assert pairing_url.startswith(f"http://localhost:{server.port}/approve#pair=")

    phone_context, phone = new_page(browser)
    desk_context, desk = new_page(browser)
    try:
        # Pair: the page makes a key, signs the pairing nonce and keeps the key.
        phone.goto(pairing_url)
        expect(phone.locator("#approve-state")).to_have_text("This device is paired.")
        assert "#pair" not in phone.url  # the token left the address bar
        factors = ok(api.get(f"/v1/subjects/{subject}/factors"))["factors"]
        assert [(f["type"], f["status"]) for f in factors] == [("push", "active")]
        device_cookie = next(c for c in phone_context.cookies() if c["name"] == "stepguard_device")
        assert device_cookie["httpOnly"]
        assert device_cookie["sameSite"] == "Strict"
        worker_scopes = phone.evaluate(
            "navigator.serviceWorker.ready.then(r => r.scope)"
        )  # the PWA's service worker is installed for /approve
        assert worker_scopes == f"http://localhost:{server.port}/approve"
        screenshot(phone, "push-approver-paired")

        session = ok(api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}), 201)
        decision = ok(
            api.post(
                "/v1/decisions",
                json={
                    "session_id": session["session_id"],
                    "action": "payments.transfer",
                    "context": TRANSFER,
                },
            )
        )
        challenge = decision["challenge"]
        back = f"{app.origin}/transfers/9"
        desk.goto(challenge["page_url"] + "&return_to=" + quote(back, safe=""))
        desk.get_by_role("button", name="Approve on your device").click()
        expect(desk.locator("#push-number")).to_be_visible()
        first = number_on(desk)
        screenshot(desk, "push-requester-number")

        # The approver receives it over SSE: summary, origin, three numbers.
        card = phone.locator(".push-request")
        expect(card).to_have_count(1)
        expect(card.locator(".summary")).to_have_text("Transfer EUR 2500 to ACME GmbH")
        expect(card.locator(".push-origin")).to_contain_text("HeadlessChrome")
        choices = [int(t) for t in card.locator(".push-choices button").all_inner_texts()]
        assert len(choices) == 3
        assert first in choices
        screenshot(phone, "push-approver-request")
        wrong = next(c for c in choices if c != first)
        card.get_by_role("button", name=str(wrong), exact=True).click()
        expect(card.locator(".push-result")).to_have_text(
            "That didn't work. The request is closed."
        )
        # The requesting page learns it by polling and says so.
        expect(desk.get_by_role("heading", name="Not approved")).to_be_visible()
        expect(desk.locator(".lead")).to_have_text("A different number was picked on your device.")
        assert ok(api.get(f"/v1/challenges/{challenge['id']}"))["status"] == "pending"

        desk.get_by_role("link", name="Try again").click()
        browser_cookie = next(c for c in desk_context.cookies() if c["name"] == "stepguard_browser")
        desk.get_by_role("button", name="Approve on your device").click()
        expect(desk.locator("#push-number")).to_be_visible()
        second = number_on(desk)
        pending = phone.locator(".push-request:not([data-outcome])")
        expect(pending).to_have_count(1)
        card = phone.locator(f".push-request[data-push='{pending.get_attribute('data-push')}']")
        # Typing the number works as well as picking it.
        card.get_by_label("Or type it").fill(str(second))
        card.get_by_role("button", name="Approve", exact=True).click()
        expect(card.locator(".push-result")).to_have_text("Approved.")

        desk.wait_for_url(f"{back}?stepguard_challenge={challenge['id']}")
        expect(desk.get_by_role("heading")).to_have_text("Back in the app")
        rotated = next(c for c in desk_context.cookies() if c["name"] == "stepguard_browser")
        assert rotated["value"] != browser_cookie["value"]
        expect(phone.locator(".push-request:not([data-outcome])")).to_have_count(0)
    finally:
        phone_context.close()
        desk_context.close()

    with StepGuardClient(server.base_url, server.api_key) as sg:
        allowed = sg.decide(
            session["session_id"],
            "payments.transfer",
            context=TRANSFER,
            challenge_id=challenge["id"],
        )
    assert allowed.allowed, allowed
    failures = ok(api.get("/v1/audit", params={"type": "verification.failed", "limit": 100}))
    reasons = [e["details"]["reason"] for e in failures["events"]]
    assert "push: wrong number picked" in reasons


def test_denying_on_the_device_tells_the_requesting_page(
    server: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    subject = f"push-{secrets.token_hex(4)}"
    ok(api.put(f"/v1/subjects/{subject}", json={}))
    enrolled = ok(api.post(f"/v1/subjects/{subject}/factors", json={"type": "push"}), 201)
    phone_context, phone = new_page(browser)
    desk_context, desk = new_page(browser)
    try:
        phone.goto(enrolled["pairing_url"])
        expect(phone.locator("#approve-state")).to_have_text("This device is paired.")
        session = ok(api.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]}), 201)
        decision = ok(
            api.post(
                "/v1/decisions",
                json={
                    "session_id": session["session_id"],
                    "action": "payments.transfer",
                    "context": TRANSFER,
                },
            )
        )
        desk.goto(decision["challenge"]["page_url"])
        desk.get_by_role("button", name="Approve on your device").click()
        card = phone.locator(".push-request")
        expect(card).to_have_count(1)
        card.get_by_role("button", name="Deny, it wasn't me").click()
        expect(card.locator(".push-result")).to_have_text("Denied.")
        expect(desk.locator(".lead")).to_have_text("The request was denied on your device.")
        screenshot(desk, "push-requester-denied")
    finally:
        phone_context.close()
        desk_context.close()
