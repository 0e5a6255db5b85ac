"""Real-browser helpers: Playwright for Python driving Debian's Chromium (never a downloaded
browser build), screenshots into ``test-artifacts/screenshots/``, and a stand-in application
that a step-up page can send the browser back to.

:func:`chromium` skips (or fails under ``STEPGUARD_REQUIRE_ALL=1``) when ``/usr/bin/chromium``
is missing. The WebAuthn tests can reuse :func:`launch` and :func:`new_page` and add Chromium's
CDP virtual authenticator on a page's context (``context.new_cdp_session(page)``, then
``WebAuthn.enable`` and ``WebAuthn.addVirtualAuthenticator``).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from playwright.sync_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    Playwright,
    sync_playwright,
)

from support.services import unavailable

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "NARROW",
    "SCREENSHOTS",
    "WIDE",
    "StandInApp",
    "VirtualAuthenticators",
    "chromium",
    "launch",
    "new_page",
    "running_browser",
    "screenshot",
    "screenshot_variants",
    "stand_in_app",
]

CHROMIUM: Final = Path(os.environ.get("STEPGUARD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
NARROW: Final = {"width": 390, "height": 844}
WIDE: Final = {"width": 1280, "height": 900}
Scheme = Literal["light", "dark"]


@contextlib.contextmanager
def chromium() -> Iterator[Playwright]:
    """Playwright, when Debian's Chromium is installed (skip or fail otherwise)."""
    if not CHROMIUM.is_file():
        unavailable(f"chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        yield playwright


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
    )


def new_page(
    browser: Browser, *, scheme: Scheme = "light", viewport: dict[str, int] | None = None
) -> tuple[BrowserContext, Page]:
    """A fresh context (its own cookies) and page; downloads allowed."""
    context = browser.new_context(
        color_scheme=scheme,
        viewport=viewport or NARROW,  # type: ignore[arg-type]
        accept_downloads=True,
        locale="en-GB",
    )
    return context, context.new_page()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``<name>.png`` in :data:`SCREENSHOTS`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def screenshot_variants(page: Page, name: str) -> list[Path]:
    """The same state in light and dark, narrow and wide (restores light and narrow)."""
    paths = []
    for scheme in ("light", "dark"):
        for label, size in (("narrow", NARROW), ("wide", WIDE)):
            page.emulate_media(color_scheme=scheme)
            page.set_viewport_size(size)  # type: ignore[arg-type]
            paths.append(screenshot(page, f"{name}-{scheme}-{label}"))
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    return paths


@dataclass(frozen=True, slots=True)
class StandInApp:
    """An application's origin that answers every GET with a small page."""

    origin: str


class _AppHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>App</title><h1>Back in the app</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def stand_in_app() -> Iterator[StandInApp]:
    """A real HTTP server on a free local port, in a thread, for ``return_to``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AppHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandInApp(origin=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def running_browser() -> Iterator[Browser]:
    """A launched headless Chromium (skip or fail like :func:`chromium`), closed on exit."""
    with chromium() as playwright:
        launched = launch(playwright)
        try:
            yield launched
        finally:
            launched.close()


class VirtualAuthenticators:
    """Chromium's virtual authenticators on one page (CDP ``WebAuthn`` domain)."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.cdp: CDPSession = context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})

    def add(self, transport: str, *, user_verified: bool = True) -> str:
        answer = self.cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": transport,
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": user_verified,
                    "automaticPresenceSimulation": True,
                }
            },
        )
        return str(answer["authenticatorId"])

    def credentials(self, authenticator: str) -> list[dict[str, Any]]:
        answer = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
        return list(answer["credentials"])

    def add_credential(self, authenticator: str, credential: dict[str, Any]) -> None:
        """Put a credential (as :meth:`credentials` returned it) into an authenticator, as a
        synced passkey arrives on another device."""
        self.cdp.send(
            "WebAuthn.addCredential", {"authenticatorId": authenticator, "credential": credential}
        )

    def set_user_verified(self, authenticator: str, verified: bool) -> None:
        self.cdp.send(
            "WebAuthn.setUserVerified",
            {"authenticatorId": authenticator, "isUserVerified": verified},
        )
