"""The hosted pages: the step-up prompt (``/challenge/{id}``) and the account's factors
(``/account/factors``), server-rendered with Jinja2.

Thin, like the API routes: read the cookie and the form, call one use case in
``service.pages`` / ``service.factors``, render or redirect. Every response carries the
security headers; every state-changing POST checks the CSRF token and ``Origin``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Final
from urllib.parse import parse_qs, quote, urlsplit

import segno
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from stepguard.adapters.web.pages._urls import (
    normalize_origin,
    origin_of,
    safe_return_to,
    with_query,
)
from stepguard.adapters.web.pages._webauthn import PageKit, webauthn_routes
from stepguard.core.assurance import FactorType
from stepguard.core.errors import (
    ConflictError,
    NotFoundError,
    PageLinkInvalidError,
    StepUpRequiredError,
    VerificationFailedError,
)
from stepguard.core.model import Challenge, ChallengeStatus, FactorStatus
from stepguard.core.pages import BrowserSession, PagePurpose, csrf_token, csrf_valid
from stepguard.service.challenges import ChallengeView
from stepguard.service.container import Services
from stepguard.service.factors import MANAGE_ACTION
from stepguard.service.pages import PAGES_ACTOR, BrowserLogin

__all__ = ["SECURITY_HEADERS", "PagesConfig", "pages_router", "same_origin", "set_browser_cookie"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$"
_ID_PATTERN: Final = re.compile(_ID, re.ASCII)
PageId = Annotated[str, Path(pattern=_ID)]
MAX_CODE: Final = 64
ACCOUNT_PATH: Final = "/account/factors"
STATIC_FILES: Final = {
    "pages.css": "text/css",
    "pages.js": "text/javascript",
    "webauthn.js": "text/javascript",
}
GENERIC_FAILURE: Final = "That didn't work. Check the code and try again."
MESSAGES: Final = {
    "expired_link": (
        "This link has expired",
        "Links to this page work once and only for a few minutes. "
        "Go back to the app and start again.",
    ),
    "expired_challenge": (
        "This request has expired",
        "It was not confirmed in time. Go back to the app and try again.",
    ),
    "failed_challenge": (
        "This request can no longer be confirmed",
        "Go back to the app and try again.",
    ),
    "not_found": ("We couldn't find that request", "Go back to the app and start again."),
    "forbidden": (
        "We couldn't accept that form",
        "For your security, the form was refused. Reload the page and try again.",
    ),
    "no_factor": (
        "No second factor can confirm this",
        "Add an authenticator app or another factor to your account, then try again.",
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PagesConfig:
    """What the pages need from the settings.

    ``public_url`` is where browsers reach StepGuard; ``return_to_origins`` the origins a
    step-up may return to (normalized here; a malformed one is a configuration error).
    ``webauthn_origins`` are the relying party's origins: the pages offer passkeys only when
    their own origin is one of them (``webauthn``)."""

    public_url: str
    return_to_origins: tuple[str, ...] = ()
    webauthn_origins: tuple[str, ...] = ()
    webauthn: bool = field(init=False)
    public_origin: str = field(init=False)
    secure: bool = field(init=False)
    cookie_name: str = field(init=False)
    csp: str = field(init=False)

    def __post_init__(self) -> None:
        public = self.public_url.rstrip("/")
        origins = tuple(normalize_origin(o) for o in self.return_to_origins)
        secure = public.lower().startswith("https://")
        object.__setattr__(self, "public_url", public)
        object.__setattr__(self, "return_to_origins", origins)
        object.__setattr__(self, "public_origin", normalize_origin(public))
        object.__setattr__(self, "secure", secure)
        rp_origins = {origin_of(o) for o in self.webauthn_origins}
        object.__setattr__(self, "webauthn", normalize_origin(public) in rp_origins)
        # __Host-: Secure, Path=/, no Domain: no subdomain can set or shadow the cookie.
        object.__setattr__(
            self, "cookie_name", "__Host-stepguard_browser" if secure else "stepguard_browser"
        )
        # form-action also governs the redirect after a form post: the allowed return_to
        # origins must be listed, or the browser blocks the way back to the application.
        form_action = " ".join(["'self'", *origins])
        object.__setattr__(
            self,
            "csp",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
            "base-uri 'none'",
        )

    def page_url(self, path: str, token: str) -> str:
        return f"{self.public_url}{path}?t={quote(token, safe='')}"


def set_browser_cookie(
    response: Response, login: BrowserLogin, *, config: PagesConfig, now: datetime
) -> None:
    """Give the browser its session cookie (shared by every router that signs a browser in)."""
    response.set_cookie(
        config.cookie_name,
        login.cookie.reveal(),
        max_age=max(1, int((login.browser.expires_at - now).total_seconds())),
        path="/",
        secure=config.secure,
        httponly=True,
        samesite="lax",
    )


SECURITY_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}

_templates = Environment(
    loader=PackageLoader("stepguard.adapters.web.pages", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def same_origin(request: Request, public_origin: str) -> bool:
    """Whether a form post comes from the pages themselves, as far as the browser says.

    ``Origin`` is checked when it names an origin. Under ``Referrer-Policy: no-referrer``
    browsers send ``Origin: null`` even for same-origin form posts, so ``null`` counts only
    with ``Sec-Fetch-Site: same-origin``. ``Sec-Fetch-Site``, when sent, must say
    ``same-origin``. (The CSRF token is checked in every case.)"""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return site == "same-origin"
    return origin_of(origin) == public_origin


def _summary(challenge: Challenge) -> str:
    """What the user approves. A rule without a summary template yields the bare action name;
    StepGuard's own action gets words instead."""
    if challenge.summary and challenge.summary != challenge.action:
        return challenge.summary
    if challenge.action == MANAGE_ACTION:
        return "Change your sign-in factors"
    return challenge.summary or challenge.action


def _minutes(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds() / 60))


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def pages_router(services: Services, config: PagesConfig) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    pages = services.pages
    static = {
        name: (resources.files(__package__ or "").joinpath("static", name).read_bytes(), media)
        for name, media in STATIC_FILES.items()
    }

    # --- responses ----------------------------------------------------------------------

    def headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Content-Security-Policy": config.csp, **SECURITY_HEADERS, **(extra or {})}

    def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = _templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=headers())

    def message(kind: str, status: int) -> HTMLResponse:
        title, text = MESSAGES[kind]
        return render("message.html", status=status, kind=kind, title=title, text=text)

    def redirect(url: str, login: BrowserLogin | None = None) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303, headers=headers())
        if login is not None:
            set_cookie(response, login)
        return response

    def set_cookie(response: Response, login: BrowserLogin) -> None:
        set_browser_cookie(response, login, config=config, now=services.deps.clock.now())

    def cookie(request: Request) -> str | None:
        return request.cookies.get(config.cookie_name)

    def allowed_return(value: str | None) -> str | None:
        return safe_return_to(value, allowed_origins=config.return_to_origins)

    async def browser_for(request: Request) -> BrowserSession | None:
        try:
            return await pages.browser(cookie(request))
        except PageLinkInvalidError:
            return None

    async def checked_form(
        request: Request, browser: BrowserSession
    ) -> tuple[dict[str, str], Response | None]:
        """The form's text fields, or a 403 page when the CSRF token or Origin is wrong."""
        raw = await request.form()
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        value = cookie(request) or ""
        reason = None
        if not same_origin(request, config.public_origin):
            reason = "cross-origin form post"
        elif not csrf_valid(value, form.get("csrf", "")):
            reason = "missing or wrong CSRF token"
        if reason is not None:
            await pages.refuse(browser, reason, path=request.url.path)
            return form, message("forbidden", 403)
        return form, None

    # --- static files -------------------------------------------------------------------

    @router.get("/static/pages/{name}")
    async def static_file(name: str) -> Response:
        if name not in static:
            return Response(status_code=404, headers={"X-Content-Type-Options": "nosniff"})
        body, media = static[name]
        return Response(
            body,
            media_type=media,
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    # --- the step-up prompt -------------------------------------------------------------

    def prompt(
        view: ChallengeView,
        value: str,
        back: str | None,
        *,
        error: str | None = None,
        status: int = 200,
        chosen: str | None = None,
    ) -> HTMLResponse:
        deps = services.deps
        totp = [f for f in view.factors if f.type is FactorType.TOTP]
        webauthn = [f for f in view.factors if f.type is FactorType.WEBAUTHN and config.webauthn]
        recovery = [f for f in view.factors if f.type is FactorType.RECOVERY_CODE]
        locks = [until for f in view.factors if (until := view.locked_until(f, deps)) is not None]
        all_locked = bool(view.factors) and len(locks) == len(view.factors)
        locked_minutes = _minutes(max(locks), view.now) if all_locked else None
        return render(
            "challenge.html",
            status=status,
            challenge=view.challenge,
            summary=_summary(view.challenge),
            totp=totp,
            recovery=recovery,
            webauthn=webauthn,
            csrf=csrf_token(value),
            return_to=back or "",
            error=error,
            locked_minutes=locked_minutes,
            chosen=chosen
            or ("webauthn" if webauthn else "recovery" if recovery and not totp else "totp"),
            factors=view.factors,
        )

    @router.get("/challenge/{challenge_id}", response_class=HTMLResponse)
    async def challenge_page(
        request: Request,
        challenge_id: PageId,
        t: str | None = None,
        return_to: str | None = None,
    ) -> Response:
        if t is not None:
            try:
                opened = await pages.open(
                    t,
                    purpose=PagePurpose.CHALLENGE,
                    challenge_id=challenge_id,
                    previous_cookie=cookie(request),
                )
            except PageLinkInvalidError:
                return message("expired_link", 403)
            # The same page without the token, so it stays out of history and Referer.
            target = f"/challenge/{challenge_id}"
            if return_to:
                target = with_query(target, return_to=return_to)
            return redirect(target, opened.login)
        browser = await browser_for(request)
        if browser is None:
            return message("expired_link", 403)
        try:
            view = await pages.challenge(browser, challenge_id)
        except NotFoundError:
            return message("not_found", 404)
        value = cookie(request) or ""
        allowed = allowed_return(return_to)
        if view.status is ChallengeStatus.SATISFIED:
            done_url = with_query(allowed, stepguard_challenge=challenge_id) if allowed else None
            return render(
                "done.html",
                challenge=view.challenge,
                summary=_summary(view.challenge),
                return_url=done_url,
            )
        if view.status is ChallengeStatus.EXPIRED:
            return message("expired_challenge", 410)
        if view.status is ChallengeStatus.FAILED:
            return message("failed_challenge", 410)
        if not view.factors:
            return message("no_factor", 409)
        return prompt(view, value, allowed)

    @router.post("/challenge/{challenge_id}/verify", response_class=HTMLResponse)
    async def challenge_verify(request: Request, challenge_id: PageId) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return message("expired_link", 403)
        form, refused = await checked_form(request, browser)
        if refused is not None:
            return refused
        value = cookie(request) or ""
        back = allowed_return(form.get("return_to"))
        factor_id = form.get("factor_id", "")
        code = form.get("code", "")
        chosen = "recovery" if form.get("method") == "recovery" else "totp"
        try:
            if not _ID_PATTERN.fullmatch(factor_id) or not 0 < len(code) <= MAX_CODE:
                # Shape errors fail like wrong codes: the same message, nothing to probe.
                await services.pages.refuse(
                    browser, "malformed verification form", challenge_id=challenge_id
                )
                raise VerificationFailedError()
            _, login = await pages.verify(
                value, browser, challenge_id, factor_id=factor_id, code=code.strip()
            )
        except NotFoundError:
            return message("not_found", 404)
        except PageLinkInvalidError:
            return message("expired_link", 403)
        except VerificationFailedError:
            try:
                view = await pages.challenge(browser, challenge_id)
            except NotFoundError:
                return message("not_found", 404)
            if view.status is not ChallengeStatus.PENDING:
                return message(
                    "expired_challenge"
                    if view.status is ChallengeStatus.EXPIRED
                    else "failed_challenge",
                    410,
                )
            return prompt(view, value, back, error=GENERIC_FAILURE, status=403, chosen=chosen)
        if back:
            return redirect(with_query(back, stepguard_challenge=challenge_id), login)
        target = f"/challenge/{challenge_id}"
        return redirect(target, login)

    # --- the account's factors ----------------------------------------------------------

    async def account(
        browser: BrowserSession,
        value: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        factors = await services.factors.list(browser.subject_id)
        credentials = await services.webauthn.credentials(browser.subject_id)
        return render(
            "account.html",
            status=status,
            factors=sorted(factors, key=lambda f: (f.created_at, f.id)),
            csrf=csrf_token(value),
            notice=notice,
            error=error,
            has_recovery=any(f.type is FactorType.RECOVERY_CODE for f in factors),
            credentials=credentials,
            webauthn=config.webauthn,
            signed_in_as=browser.subject_id,
            FactorType=FactorType,
            FactorStatus=FactorStatus,
        )

    async def step_up_first(browser: BrowserSession) -> Response:
        """The change needs a fresh step-up: open one and send the browser to it."""
        challenge = await pages.manage_challenge(browser)
        if challenge is None:
            return await account(
                browser,
                "",
                error="Your organisation's policy does not allow changing factors here.",
                status=403,
            )
        return redirect(with_query(f"/challenge/{challenge.id}", return_to=ACCOUNT_PATH))

    @router.get(ACCOUNT_PATH, response_class=HTMLResponse)
    async def account_page(
        request: Request,
        t: str | None = None,
        notice: str | None = None,
        stepguard_challenge: str | None = None,
    ) -> Response:
        if t is not None:
            try:
                opened = await pages.open(
                    t,
                    purpose=PagePurpose.ACCOUNT,
                    challenge_id=None,
                    previous_cookie=cookie(request),
                )
            except PageLinkInvalidError:
                return message("expired_link", 403)
            return redirect(ACCOUNT_PATH, opened.login)
        browser = await browser_for(request)
        if browser is None:
            return message("expired_link", 403)
        known = {"removed", "confirmed", "webauthn_added"}
        shown = notice if notice in known else ("verified" if stepguard_challenge else None)
        return await account(browser, cookie(request) or "", notice=shown)

    @router.post(f"{ACCOUNT_PATH}/totp", response_class=HTMLResponse)
    async def add_totp(request: Request) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return message("expired_link", 403)
        form, refused = await checked_form(request, browser)
        if refused is not None:
            return refused
        label = form.get("label", "").strip()[:64] or "Authenticator app"
        if "\x00" in label:
            label = "Authenticator app"
        try:
            enrollment = await services.factors.enroll(
                browser.subject_id,
                factor_type=FactorType.TOTP,
                label=label,
                session_id=browser.session_id,
                totp=None,
                actor=PAGES_ACTOR,
            )
        except StepUpRequiredError:
            return await step_up_first(browser)
        assert enrollment.otpauth_uri is not None  # a TOTP enrollment always has one
        uri = enrollment.otpauth_uri.reveal()
        secret = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
        return render(
            "totp.html",
            factor=enrollment.factor,
            qr=segno.make(uri, error="m").svg_data_uri(scale=5, border=2),
            secret=_grouped(secret),
            csrf=csrf_token(cookie(request) or ""),
            error=None,
        )

    @router.post(ACCOUNT_PATH + "/{factor_id}/confirm", response_class=HTMLResponse)
    async def confirm_totp(request: Request, factor_id: PageId) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return message("expired_link", 403)
        form, refused = await checked_form(request, browser)
        if refused is not None:
            return refused
        value = cookie(request) or ""
        code = form.get("code", "").strip()
        try:
            if not 0 < len(code) <= MAX_CODE:
                raise VerificationFailedError()
            await services.factors.confirm(
                browser.subject_id,
                factor_id,
                code=code,
                session_id=browser.session_id,
                actor=PAGES_ACTOR,
            )
        except StepUpRequiredError:
            return await step_up_first(browser)
        except (VerificationFailedError, ConflictError, NotFoundError):
            return await account(browser, value, error=GENERIC_FAILURE, status=403)
        return redirect(with_query(ACCOUNT_PATH, notice="confirmed"))

    @router.post(f"{ACCOUNT_PATH}/recovery-codes", response_class=HTMLResponse)
    async def new_recovery_codes(request: Request) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return message("expired_link", 403)
        _form, refused = await checked_form(request, browser)
        if refused is not None:
            return refused
        try:
            enrollment = await services.factors.enroll(
                browser.subject_id,
                factor_type=FactorType.RECOVERY_CODE,
                label="",
                session_id=browser.session_id,
                totp=None,
                actor=PAGES_ACTOR,
            )
        except StepUpRequiredError:
            return await step_up_first(browser)
        codes = [c.reveal() for c in enrollment.recovery_codes]
        text = "StepGuard recovery codes. Each works once.\n\n" + "\n".join(codes) + "\n"
        return render(
            "codes.html",
            codes=codes,
            download="data:text/plain;charset=utf-8," + quote(text, safe=""),
        )

    @router.post(ACCOUNT_PATH + "/{factor_id}/remove", response_class=HTMLResponse)
    async def remove_factor(request: Request, factor_id: PageId) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return message("expired_link", 403)
        _form, refused = await checked_form(request, browser)
        if refused is not None:
            return refused
        try:
            await services.factors.remove(
                browser.subject_id, factor_id, session_id=browser.session_id, actor=PAGES_ACTOR
            )
        except StepUpRequiredError:
            return await step_up_first(browser)
        except NotFoundError:
            return message("not_found", 404)
        return redirect(with_query(ACCOUNT_PATH, notice="removed"))

    router.include_router(
        webauthn_routes(
            PageKit(
                services=services,
                config=config,
                headers=headers,
                render=render,
                message=message,
                redirect=redirect,
                cookie=cookie,
                allowed_return=allowed_return,
                browser_for=browser_for,
                checked_form=checked_form,
                prompt=prompt,
                account=account,
                step_up_first=step_up_first,
            )
        )
    )
    return router
