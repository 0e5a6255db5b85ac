"""Sign in at an upstream IdP, land in StepGuard, step up here.

The upstream is the npm package ``oidc-provider`` (a certified OpenID Provider, pinned in
``tests/peers/oidc_provider``), started as a subprocess; StepGuard is a live ``stepguard
serve`` on SQLite and on PostgreSQL; Chromium (headless, Debian's) signs in at the upstream,
lands on StepGuard's account page, then answers a TOTP step-up on ``/challenge/{id}``.

Two upstream entries point at the same provider: ``corp`` is trusted for assurance (its
``amr``/``acr``/``auth_time`` carry into the StepGuard session), ``corp-plain`` is not.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from stepguard.core.factors.totp import TotpSpec, code_at_step
from support.browser import new_page, running_browser, screenshot
from support.node import node_peer
from support.server import (
    LiveServer,
    database,
    live_server,
    ok,
    safe_totp_step,
    secret_from_otpauth_uri,
)
from support.services import free_port

pytestmark = pytest.mark.slow

CLIENT_ID = "stepguard"
CLIENT_SECRET = secrets.token_urlsafe(24)
UPSTREAM_AMR = ["pwd", "otp"]
UPSTREAM_ACR = "urn:test:loa:2"
SPEC = TotpSpec()


@contextmanager
def oidc_provider(port: int, redirect_uris: list[str], workdir: Path) -> Iterator[str]:
    """``node op.mjs`` on ``port``; yields its issuer once it listens."""
    folder = node_peer("oidc_provider")
    config = workdir / "op.json"
    config.write_text(
        json.dumps(
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": redirect_uris,
                "acr": UPSTREAM_ACR,
                "amr": UPSTREAM_AMR,
            }
        )
    )
    log = (workdir / "op.log").open("w")
    process = subprocess.Popen(
        ["node", "op.mjs", str(port), str(config)],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    issuer = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "op.log").read_text())
            time.sleep(0.2)
        yield issuer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live StepGuard with two upstream entries, and oidc-provider as the upstream."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"upstream-{backend}")
    op_port = free_port()
    issuer = f"http://localhost:{op_port}"
    common = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    upstreams = [
        {
            "name": "corp",
            "label": "Corp IdP",
            "trusted_assurance": True,
            "acr_map": {UPSTREAM_ACR: "aal2"},
            **common,
        },
        {"name": "corp-plain", "label": "Corp IdP (untrusted)", **common},
    ]
    with ExitStack() as stack:
        url = stack.enter_context(database(backend, workdir))
        server = stack.enter_context(
            live_server(
                workdir,
                database_url=url,
                workers=1,
                settings={"upstreams": json.dumps(upstreams)},
            )
        )
        redirect_uris = [
            f"http://localhost:{server.port}/login/upstream/{name}/callback"
            for name in ("corp", "corp-plain")
        ]
        stack.enter_context(oidc_provider(op_port, redirect_uris, workdir))
        yield server


@pytest.fixture
def browser(stack: LiveServer) -> Iterator[Browser]:
    """Per test, after the stack: Playwright's sync API runs an event loop in this thread
    while it is open, and the PostgreSQL stack's set-up needs the thread free of one."""
    with running_browser() as launched:
        yield launched


@pytest.fixture
def api(stack: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.base_url,
        headers={"Authorization": f"Bearer {stack.api_key}"},
        timeout=10,
    ) as client:
        yield client


def sign_in_upstream(page: Page, server: LiveServer, upstream: str, login: str) -> None:
    page.goto(f"http://localhost:{server.port}/login/upstream/{upstream}")
    # At the upstream: its own login form.
    expect(page.locator("h1")).to_have_text("Upstream IdP")
    page.locator("#login").fill(login)
    page.locator("#sign-in").click()
    page.wait_for_url(f"http://localhost:{server.port}/account/factors")


def session_of(api: httpx.Client, subject: str) -> dict[str, Any]:
    events = ok(
        api.get("/v1/audit", params={"type": "upstream.login_succeeded", "subject_id": subject})
    )["events"]
    assert len(events) == 1, events
    session: dict[str, Any] = ok(api.get(f"/v1/sessions/{events[0]['session_id']}"))
    return session


def test_sign_in_upstream_then_step_up_here(
    stack: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    login = f"alice-{secrets.token_hex(3)}"
    subject = f"corp:{login}"
    context, page = new_page(browser)
    try:
        sign_in_upstream(page, stack, "corp", login)
        expect(page.locator("#signed-in-as")).to_contain_text(subject)
        assert any(c["name"] == "stepguard_browser" for c in context.cookies())
        screenshot(page, f"upstream-signed-in-{stack.backend}")

        # Trusted upstream: its amr, acr (mapped) and auth_time are the session's.
        session = session_of(api, subject)
        assert {"pwd", "otp", "mfa"} <= set(session["amr"])
        assert session["acr"] == "aal2"
        auth_time = datetime.fromisoformat(session["auth_time"].replace("Z", "+00:00"))
        assert auth_time.microsecond == 0  # the upstream's NumericDate, not StepGuard's now
        assert ok(api.get(f"/v1/subjects/{subject}"))["email"] == f"{login}@example.test"

        # A TOTP factor enrolled over the API; a TOTP-only rule still asks for a step-up.
        step = safe_totp_step(SPEC, margin=10)
        enrolled = ok(api.post(f"/v1/subjects/{subject}/factors", json={"type": "totp"}), 201)
        secret = secret_from_otpauth_uri(enrolled["otpauth_uri"])
        factor = enrolled["factor"]["id"]
        confirm = {"code": code_at_step(secret, SPEC, step - 1)}
        ok(api.post(f"/v1/subjects/{subject}/factors/{factor}/confirm", json=confirm))
        body = {"session_id": session["session_id"], "action": "secure.totp"}
        decision = ok(api.post("/v1/decisions", json=body))
        assert decision["decision"] == "step_up"
        challenge = decision["challenge"]

        page.goto(challenge["page_url"])
        page.get_by_label("Code from your authenticator app").fill(
            code_at_step(secret, SPEC, safe_totp_step(SPEC, margin=5))
        )
        page.get_by_role("button", name="Verify").click()
        expect(page.locator("h1")).not_to_have_text("Upstream IdP")
        for _ in range(50):
            if ok(api.get(f"/v1/challenges/{challenge['id']}"))["status"] != "pending":
                break
            time.sleep(0.1)
        assert ok(api.get(f"/v1/challenges/{challenge['id']}"))["status"] == "satisfied"
        assert ok(api.post("/v1/decisions", json=body))["decision"] == "allow"
    finally:
        context.close()


def test_an_untrusted_upstream_gives_a_plain_sign_in(
    stack: LiveServer, browser: Browser, api: httpx.Client
) -> None:
    login = f"bob-{secrets.token_hex(3)}"
    subject = f"corp-plain:{login}"
    context, page = new_page(browser)
    try:
        sign_in_upstream(page, stack, "corp-plain", login)
        expect(page.locator("#signed-in-as")).to_contain_text(subject)
    finally:
        context.close()
    session = session_of(api, subject)
    assert session["amr"] == ["pwd"]  # the configured untrusted_amr: one factor, not "otp"
    assert session["acr"] == "aal1"
    decision = ok(
        api.post(
            "/v1/decisions",
            json={"session_id": session["session_id"], "action": "settings.profile"},
        )
    )
    assert decision["decision"] == "step_up"  # aal2 needed; the upstream's MFA is not trusted
