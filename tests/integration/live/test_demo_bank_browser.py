"""The demo bank end to end in a real browser: ``stepguard demo`` starts StepGuard (SQLite) and
Acme Bank as the demo does (subprocesses on free ports); Playwright drives Debian's Chromium.

The bank uses the public SDK only; StepGuard's hosted page asks for the second factor. What is
proven: a small transfer passes on the login alone; a large one is prompted (the page shows
the amount and payee) and executes once; the step-up cannot be replayed for another transfer
(another amount, or the same amount on another pending transfer); the email change prompts
every time; a new payee is prompted; the "abroad" switch makes even a small transfer prompt.
Screenshots go to ``test-artifacts/screenshots/bank-*.png``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from stepguard.core.factors.totp import TotpSpec, code_at_step
from support.browser import new_page, screenshot
from support.server import cli_env, safe_totp_step, stepguard_executable
from support.services import free_port

pytestmark = pytest.mark.slow

SPEC = TotpSpec()
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


@dataclass(slots=True, kw_only=True)
class Demo:
    """The running ``stepguard demo``: where things are and the demo's secrets."""

    stepguard: str
    bank: str
    password: str = field(repr=False)
    totp_secret: bytes = field(repr=False)
    recovery_codes: list[str] = field(repr=False)
    last_step: int = -1

    def totp_code(self) -> str:
        """A code for a time step the server has not seen used (TOTP codes are single use):
        the current step, else the next one (inside the server's window), else wait."""
        while True:
            now = safe_totp_step(SPEC)
            step = max(now, self.last_step + 1)
            if step <= now + 1:
                self.last_step = step
                return code_at_step(self.totp_secret, SPEC, step)
            time.sleep(SPEC.period - time.time() % SPEC.period + 0.1)

    def recovery_code(self) -> str:
        return self.recovery_codes.pop()


def _wait_ready(process: subprocess.Popen[bytes], urls: list[str], output: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(urls)
    while pending:
        if process.poll() is not None:
            raise AssertionError(f"stepguard demo exited:\n{output.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"stepguard demo did not come up:\n{output.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(pending[0], timeout=1.0).status_code == 200:
                pending.pop(0)
                continue
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("demo-bank")
    port, bank_port = free_port(), free_port()
    output = workdir / "demo.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(stepguard_executable()),
                "demo",
                "--port",
                str(port),
                "--bank-port",
                str(bank_port),
                "--var",
                str(workdir / "var"),
            ],
            cwd=workdir,
            env=cli_env(workdir),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal would make it
        )
    try:
        _wait_ready(
            process,
            [f"http://127.0.0.1:{bank_port}/healthz", f"http://127.0.0.1:{port}/readyz"],
            output,
        )
        text = output.read_text()
        password = re.search(r"Sign in as\s+alice / (\S+)", text)
        assert password is not None, text
        codes = re.findall(r"^\s+([0-9A-Z]{4}(?:-[0-9A-Z]{4}){3})$", text, re.MULTILINE)
        assert len(codes) >= 4, text
        data = json.loads((workdir / "var" / "demo.json").read_text())
        yield Demo(
            stepguard=f"http://localhost:{port}",
            bank=f"http://localhost:{bank_port}",
            password=password.group(1),
            totp_secret=base64.b32decode(data["totp_secret"]),
            recovery_codes=codes,
        )
        # Stopping StepGuard (the demo's main process) stops the bank too.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{bank_port}/healthz", timeout=2.0)
    finally:
        _stop(process)


@pytest.fixture
def page(browser: Browser, demo: Demo) -> Iterator[Page]:
    context, page = new_page(browser, viewport={"width": 1000, "height": 900})
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.bank}/")
    expect(page).to_have_url(f"{demo.bank}/login")
    page.fill("#username", "alice")
    page.fill("#password", demo.password)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(f"{demo.bank}/")
    expect(page.locator("#accounts-title")).to_have_text("Your accounts")


def balance(page: Page, demo: Demo) -> str:
    page.goto(f"{demo.bank}/")
    return page.locator("#balance-checking").inner_text()


def send(page: Page, *, amount: str, payee: str = "acme") -> None:
    page.select_option("#payee", payee)
    page.fill("#amount", amount)
    page.click("#transfer-form button[type=submit]")


def on_step_up_page(page: Page, demo: Demo) -> None:
    expect(page).to_have_url(
        re.compile(re.escape(demo.stepguard) + r"/challenge/chl_[a-z0-9]+(\?.*)?$")
    )


def answer_with_totp(page: Page, demo: Demo) -> None:
    page.fill("#totp-code", demo.totp_code())
    page.click("#totp-form button[type=submit]")


def answer_with_recovery_code(page: Page, demo: Demo) -> None:
    page.click("#recovery summary")
    page.fill("#recovery-code", demo.recovery_code())
    page.click("#recovery-form button[type=submit]")


def transfer_ids(urls: list[str], demo: Demo) -> list[str]:
    prefix = f"{demo.bank}/transfers/"
    return list(dict.fromkeys(u[len(prefix) :].split("?")[0] for u in urls if u.startswith(prefix)))


def challenge_ids(urls: list[str]) -> list[str]:
    found = [parse_qs(urlsplit(u).query).get("stepguard_challenge") for u in urls]
    return [ids[0] for ids in found if ids]


def test_a_small_transfer_passes_on_the_login_alone(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.bank}/")
    screenshot(page, "bank-login")
    sign_in(page, demo)
    before = balance(page, demo)
    screenshot(page, "bank-home")
    send(page, amount="50")

    expect(page).to_have_url(re.compile(re.escape(demo.bank) + r"/transfers/tr_"))
    expect(page.locator("#receipt")).to_have_attribute("data-status", "done")
    expect(page.locator("#receipt .big")).to_have_text("EUR 50.00 to ACME GmbH")
    screenshot(page, "bank-transfer-50")
    assert _amount(balance(page, demo)) == _amount(before) - 50


def test_a_large_transfer_is_prompted_bound_and_executes_once(page: Page, demo: Demo) -> None:
    sign_in(page, demo)
    before = _amount(balance(page, demo))
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    send(page, amount="5000")
    on_step_up_page(page, demo)
    expect(page.locator(".summary")).to_have_text("Transfer EUR 5000 to ACME GmbH")
    screenshot(page, "bank-stepup-5000")
    answer_with_totp(page, demo)

    expect(page).to_have_url(re.compile(re.escape(demo.bank) + r"/transfers/tr_[\w-]+$"))
    expect(page.locator("#receipt")).to_have_attribute("data-status", "done")
    expect(page.locator("#receipt .big")).to_have_text("EUR 5,000.00 to ACME GmbH")
    screenshot(page, "bank-transfer-5000-done")
    assert _amount(balance(page, demo)) == before - 5000
    (executed,) = transfer_ids(urls, demo)
    (redeemed,) = challenge_ids(urls)

    # The browser's return URL again: the transfer is done, nothing executes twice.
    page.goto(f"{demo.bank}/transfers/{executed}?stepguard_challenge={redeemed}")
    expect(page.locator("#receipt")).to_have_attribute("data-status", "done")
    assert _amount(balance(page, demo)) == before - 5000

    # The same step-up for another amount: a pending 6,000 transfer, then its confirmation
    # URL with the used challenge. StepGuard refuses to redeem it: a new prompt, for 6,000.
    urls.clear()
    send(page, amount="6000")
    on_step_up_page(page, demo)
    (other,) = transfer_ids(urls, demo)
    page.goto(f"{demo.bank}/transfers/{other}?stepguard_challenge={redeemed}")
    on_step_up_page(page, demo)
    expect(page.locator(".summary")).to_have_text("Transfer EUR 6000 to ACME GmbH")
    screenshot(page, "bank-replay-6000")

    # ... and for the very same amount and payee on another pending transfer: refused too
    # (the grant is bound to the transfer it was issued for, and it is used up).
    page.goto(f"{demo.bank}/")
    urls.clear()
    send(page, amount="5000")
    on_step_up_page(page, demo)
    (same_amount,) = transfer_ids(urls, demo)
    page.goto(f"{demo.bank}/transfers/{same_amount}?stepguard_challenge={redeemed}")
    on_step_up_page(page, demo)
    assert _amount(balance(page, demo)) == before - 5000


def test_changing_the_email_is_prompted_every_time(page: Page, demo: Demo) -> None:
    sign_in(page, demo)
    for number, answer in enumerate((answer_with_totp, answer_with_recovery_code), start=1):
        page.fill("#new-email", f"alice{number}@example.org")
        page.click("#email-form button[type=submit]")
        on_step_up_page(page, demo)
        if number == 1:
            screenshot(page, "bank-email-stepup")
        answer(page, demo)
        expect(page).to_have_url(f"{demo.bank}/")
        expect(page.locator("#email")).to_have_text(f"alice{number}@example.org")
        expect(page.locator("#flash")).to_contain_text(f"alice{number}@example.org")


def test_adding_a_payee_is_prompted_and_shows_the_payee(page: Page, demo: Demo) -> None:
    sign_in(page, demo)
    page.fill("#payee-name", "Eve Example")
    page.fill("#payee-iban", "DE02 1203 0000 0000 2020 51")
    page.click("#payee-form button[type=submit]")
    on_step_up_page(page, demo)
    expect(page.locator(".summary")).to_have_text(
        "Add Eve Example (DE02120300000000202051) as a payee"
    )
    screenshot(page, "bank-payee-stepup")
    answer_with_recovery_code(page, demo)
    expect(page).to_have_url(f"{demo.bank}/")
    expect(page.locator("#payees")).to_contain_text("Eve Example")


def test_abroad_even_a_small_transfer_is_prompted(page: Page, demo: Demo) -> None:
    sign_in(page, demo)
    page.click("#travel-on")
    expect(page.locator("#risk strong")).to_have_text(re.compile("^(high|critical)$"))
    screenshot(page, "bank-abroad-home")
    before = _amount(balance(page, demo))

    send(page, amount="50")
    on_step_up_page(page, demo)
    expect(page.locator(".summary")).to_contain_text("amount=50")
    expect(page.locator(".summary")).to_contain_text("ACME GmbH")
    screenshot(page, "bank-abroad-stepup")
    answer_with_recovery_code(page, demo)
    expect(page.locator("#receipt")).to_have_attribute("data-status", "done")
    assert _amount(balance(page, demo)) == before - 50

    page.click("#travel-off")
    expect(page.locator("#travel-on")).to_be_visible()


def test_forms_without_the_csrf_token_are_refused(demo: Demo) -> None:
    with httpx.Client(base_url=demo.bank) as client:
        login = client.post("/login", data={"username": "alice", "password": demo.password})
        assert login.status_code == 403
        assert "acme_session" not in login.cookies or "user" not in login.text
        page = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        cross_site = client.post(
            "/login",
            data={"csrf": token.group(1), "username": "alice", "password": demo.password},
            headers={"Origin": "http://evil.example"},
        )
        assert cross_site.status_code == 403
        wrong = client.post(
            "/login", data={"csrf": token.group(1), "username": "alice", "password": "nope"}
        )
        assert wrong.status_code == 401
        assert "Content-Security-Policy" in page.headers
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def _amount(text: str) -> float:
    return float(text.removeprefix("EUR ").replace(",", ""))
