"""Passkeys and security keys on the hosted pages (``static/webauthn.js`` drives them).

Two routes per ceremony, as on the API: ``webauthn.js`` fetches the options (a CSRF-checked
POST answering JSON), runs ``navigator.credentials.get()`` / ``.create()``, and posts the
credential as an ordinary form, so success and failure take the code forms' paths: a
rotated cookie and a redirect, or the page again with the one generic error. When the
browser reports an error (the user cancelled, ``NotAllowedError``...), ``webauthn.js`` posts
the form without a credential and the name of the error, which goes to the audit log.

- ``POST /challenge/{id}/webauthn/options`` -> ``{"options": ...}`` (404 / 409 JSON)
- ``POST /challenge/{id}/webauthn``         (form: csrf, return_to, credential, client_error)
- ``POST /account/factors/webauthn``        (csrf, kind, label) -> ``{"factor_id", "options"}``
  or ``{"redirect": "/challenge/..."}`` when a fresh step-up is needed first
- ``POST /account/factors/{id}/webauthn``   (form: csrf, credential, client_error)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from stepguard.adapters.web.pages._urls import with_query
from stepguard.adapters.web.schemas import IDENTIFIER_REGEX
from stepguard.adapters.web.webauthn_schemas import PublicKeyCredentialJSON
from stepguard.core.assurance import FactorType
from stepguard.core.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PageLinkInvalidError,
    StepUpRequiredError,
    VerificationFailedError,
)
from stepguard.core.model import ChallengeStatus, FactorStatus
from stepguard.core.pages import BrowserSession
from stepguard.service.pages import PAGES_ACTOR, BrowserLogin
from stepguard.service.webauthn import WebAuthnRegistrationRequest

if TYPE_CHECKING:
    from stepguard.adapters.web.pages._router import PagesConfig
    from stepguard.service.challenges import ChallengeView
    from stepguard.service.container import Services

__all__ = ["WEBAUTHN_FAILURE", "PageKit", "webauthn_routes"]

PageId = Annotated[str, Path(pattern=IDENTIFIER_REGEX)]
ACCOUNT_PATH: Final = "/account/factors"
# One message for every failure: cancelled, timed out, wrong authenticator, no user
# verification, bad signature, locked. The precise reason is in the audit log.
WEBAUTHN_FAILURE: Final = (
    "That didn't work. Try your passkey or security key again, or use another way to confirm."
)
MAX_CREDENTIAL: Final = 16 * 1024  # characters of the posted JSON
_CLIENT_ERROR: Final = re.compile(r"[A-Za-z]{1,40}", re.ASCII)
_CREDENTIAL: Final = TypeAdapter[dict[str, Any]](PublicKeyCredentialJSON)
# What each "Add" button asks of the new credential.
KINDS: Final = {
    # A passkey on this device: platform authenticator, discoverable, user verification.
    "passkey": (
        "Passkey",
        WebAuthnRegistrationRequest(
            attachment="platform", resident_key="required", require_user_verification=True
        ),
    ),
    # A roaming key (USB, NFC, BLE): discoverable if it can, user verification (its PIN).
    "security-key": (
        "Security key",
        WebAuthnRegistrationRequest(
            attachment="cross-platform",
            resident_key="preferred",
            require_user_verification=True,
        ),
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PageKit:
    """The pages router's helpers, shared with these routes (see ``_router.pages_router``)."""

    services: Services
    config: PagesConfig
    headers: Callable[[Mapping[str, str] | None], dict[str, str]]
    render: Callable[..., HTMLResponse]
    message: Callable[[str, int], HTMLResponse]
    redirect: Callable[..., RedirectResponse]
    cookie: Callable[[Request], str | None]
    allowed_return: Callable[[str | None], str | None]
    browser_for: Callable[[Request], Awaitable[BrowserSession | None]]
    checked_form: Callable[
        [Request, BrowserSession], Awaitable[tuple[dict[str, str], Response | None]]
    ]
    prompt: Callable[..., HTMLResponse]
    account: Callable[..., Awaitable[HTMLResponse]]
    step_up_first: Callable[[BrowserSession], Awaitable[Response]]


def parse_credential(form: Mapping[str, str]) -> dict[str, Any] | None:
    """The posted ``PublicKeyCredential.toJSON()`` object, or ``None`` when it is missing or
    not of that shape (which then fails like a wrong credential)."""
    text = form.get("credential", "")
    if not text or len(text) > MAX_CREDENTIAL:
        return None
    try:
        return _CREDENTIAL.validate_json(text)
    except ValidationError:
        return None


def _client_error(form: Mapping[str, str]) -> str:
    """The DOMException name ``webauthn.js`` reported (only letters, for the audit log)."""
    value = form.get("client_error", "")
    return value if _CLIENT_ERROR.fullmatch(value) else "none"


def webauthn_routes(kit: PageKit) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    services = kit.services
    pages = services.pages

    def json(body: dict[str, Any], status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=kit.headers(None))

    def refused_json(response: Response) -> JSONResponse:
        """A CSRF or expired-session refusal, for a ``fetch`` caller."""
        return json({"error": "forbidden"}, response.status_code)

    # --- the step-up prompt -------------------------------------------------------------

    @router.post("/challenge/{challenge_id}/webauthn/options")
    async def challenge_options(request: Request, challenge_id: PageId) -> Response:
        browser = await kit.browser_for(request)
        if browser is None:
            return json({"error": "expired"}, 403)
        _form, refused = await kit.checked_form(request, browser)
        if refused is not None:
            return refused_json(refused)
        try:
            await pages.challenge(browser, challenge_id)
            options = await services.webauthn.assertion_options(
                challenge_id, factor_id=None, actor=PAGES_ACTOR
            )
        except NotFoundError:
            return json({"error": "not_found"}, 404)
        except ConflictError:
            # Not pending, or no passkey can satisfy it: the form post shows which page.
            return json({"error": "unavailable"}, 409)
        return json({"options": options})

    async def failed_prompt(
        browser: BrowserSession, challenge_id: str, value: str, back: str | None
    ) -> Response:
        try:
            view: ChallengeView = await pages.challenge(browser, challenge_id)
        except NotFoundError:
            return kit.message("not_found", 404)
        if view.status is not ChallengeStatus.PENDING:
            expired = view.status is ChallengeStatus.EXPIRED
            return kit.message("expired_challenge" if expired else "failed_challenge", 410)
        return kit.prompt(view, value, back, error=WEBAUTHN_FAILURE, status=403, chosen="webauthn")

    @router.post("/challenge/{challenge_id}/webauthn", response_class=HTMLResponse)
    async def challenge_webauthn(request: Request, challenge_id: PageId) -> Response:
        browser = await kit.browser_for(request)
        if browser is None:
            return kit.message("expired_link", 403)
        form, refused = await kit.checked_form(request, browser)
        if refused is not None:
            return refused
        value = kit.cookie(request) or ""
        back = kit.allowed_return(form.get("return_to"))
        credential = parse_credential(form)
        login: BrowserLogin
        try:
            if credential is None:
                # Nothing to verify (the browser reported an error, or sent garbage): the
                # ceremony is not touched, and no guess is counted.
                await pages.refuse(
                    browser,
                    "webauthn: no credential from the browser",
                    challenge_id=challenge_id,
                    client_error=_client_error(form),
                )
                raise VerificationFailedError()
            _, login = await pages.verify_webauthn(
                value, browser, challenge_id, credential=credential
            )
        except NotFoundError:
            return kit.message("not_found", 404)
        except PageLinkInvalidError:
            return kit.message("expired_link", 403)
        except VerificationFailedError:
            return await failed_prompt(browser, challenge_id, value, back)
        if back:
            return kit.redirect(with_query(back, stepguard_challenge=challenge_id), login)
        return kit.redirect(f"/challenge/{challenge_id}", login)

    # --- the account's factors ----------------------------------------------------------

    @router.post(f"{ACCOUNT_PATH}/webauthn")
    async def registration_options(request: Request) -> Response:
        browser = await kit.browser_for(request)
        if browser is None:
            return json({"error": "expired"}, 403)
        form, refused = await kit.checked_form(request, browser)
        if refused is not None:
            return refused_json(refused)
        kind = KINDS.get(form.get("kind", ""))
        if kind is None:
            return json({"error": "invalid"}, 400)
        default_label, registration = kind
        label = form.get("label", "").strip()[:64]
        if not label or "\x00" in label:
            label = default_label
        try:
            enrollment = await services.factors.enroll(
                browser.subject_id,
                factor_type=FactorType.WEBAUTHN,
                label=label,
                session_id=browser.session_id,
                totp=None,
                webauthn=registration,
                actor=PAGES_ACTOR,
            )
        except StepUpRequiredError:
            step_up = await kit.step_up_first(browser)
            location = step_up.headers.get("location")
            if location is None:  # the policy opens no step-up: the account page says so
                return json({"error": "forbidden"}, 403)
            return json({"redirect": location})
        return json({"factor_id": enrollment.factor.id, "options": enrollment.webauthn_options})

    @router.post(ACCOUNT_PATH + "/{factor_id}/webauthn", response_class=HTMLResponse)
    async def confirm_webauthn(request: Request, factor_id: PageId) -> Response:
        browser = await kit.browser_for(request)
        if browser is None:
            return kit.message("expired_link", 403)
        form, refused = await kit.checked_form(request, browser)
        if refused is not None:
            return refused
        value = kit.cookie(request) or ""
        credential = parse_credential(form)
        try:
            if credential is None:
                await pages.refuse(
                    browser,
                    "webauthn: no registration response from the browser",
                    factor_id=factor_id,
                    client_error=_client_error(form),
                )
                raise VerificationFailedError()
            await services.factors.confirm(
                browser.subject_id,
                factor_id,
                credential=credential,
                session_id=browser.session_id,
                actor=PAGES_ACTOR,
            )
        except StepUpRequiredError:
            return await kit.step_up_first(browser)
        except (VerificationFailedError, ConflictError, NotFoundError, InvalidRequestError):
            await _discard_pending(services, browser, factor_id)
            return await kit.account(browser, value, error=WEBAUTHN_FAILURE, status=403)
        return kit.redirect(with_query(ACCOUNT_PATH, notice="webauthn_added"))

    return router


async def _discard_pending(services: Services, browser: BrowserSession, factor_id: str) -> None:
    """Remove a WebAuthn factor whose registration failed or was cancelled: its ceremony is
    spent or abandoned, so it can never be confirmed. (Removal is gated like any change; if
    the step-up has gone stale, the factor stays listed as not confirmed.)"""
    factors = await services.factors.list(browser.subject_id)
    factor = next((f for f in factors if f.id == factor_id), None)
    if (
        factor is None
        or factor.type is not FactorType.WEBAUTHN
        or factor.status is not FactorStatus.PENDING
    ):
        return
    try:
        await services.factors.remove(
            browser.subject_id, factor_id, session_id=browser.session_id, actor=PAGES_ACTOR
        )
    except (StepUpRequiredError, NotFoundError):
        return
