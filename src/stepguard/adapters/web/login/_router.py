"""``/login`` (password or passkey), ``/logout``, and the password API.

The sign-in page has no session yet, so its forms are protected by a *pre-login cookie*
(random, HttpOnly, ``__Host-`` on https) whose HMAC is the form's CSRF token (double submit,
as ``core.pages.csrf_token``), plus the pages' ``Origin``/``Sec-Fetch-Site`` check. The same
cookie binds a passkey sign-in's ceremony to the browser that asked for it. On success the
browser gets the pages' cookie (``set_browser_cookie``) and a 303 to ``return_to`` when the
pages' allow-list accepts it, else to the account page.

- ``GET  /login?return_to=``         the page (password form; passkey button with JS)
- ``POST /login``                    (csrf, identifier, password, return_to)
- ``POST /login/passkey/options``    (csrf) -> ``{"options": ...}``
- ``POST /login/passkey``            (csrf, credential, client_error, return_to)
- ``POST /logout``                   (csrf of the browser session) -> signed-out page
- ``PUT|DELETE /v1/subjects/{id}/password``  (API key)
"""

# No ``from __future__ import annotations`` here: the API routes' annotations name the
# dependency passed in, so they must be evaluated where the routes are defined.
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import Field

from stepguard.adapters.web.pages import (
    SECURITY_HEADERS,
    PagesConfig,
    safe_return_to,
    same_origin,
    set_browser_cookie,
    with_query,
)
from stepguard.adapters.web.pages._webauthn import parse_credential
from stepguard.adapters.web.schemas import IDENTIFIER_REGEX, NO_NUL, Strict
from stepguard.core.errors import LoginFailedError, PageLinkInvalidError
from stepguard.core.ids import new_token
from stepguard.core.model import ApiKey
from stepguard.core.pages import csrf_token, csrf_valid
from stepguard.core.secret import Secret
from stepguard.service.container import Services
from stepguard.service.login import LoginService, SignedIn

__all__ = ["PasswordIn", "login_cookie_name", "login_router", "password_api_router"]

ACCOUNT_PATH: Final = "/account/factors"
LOGIN_COOKIE_PREFIX: Final = "sgl"
PASSWORD_FAILURE: Final = "That email or password is not right."  # noqa: S105 - a message
PASSKEY_FAILURE: Final = "That didn't work. Try your passkey again, or use your password."
FORBIDDEN: Final = "For your security, the form was refused. Reload the page and try again."
MAX_FIELD: Final = 4096

_templates = Environment(
    loader=ChoiceLoader(
        [
            PackageLoader("stepguard.adapters.web.login", "templates"),
            PackageLoader("stepguard.adapters.web.pages", "templates"),
        ]
    ),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def login_cookie_name(config: PagesConfig) -> str:
    """The pre-login cookie (``__Host-``: Secure, Path=/, no Domain, when https)."""
    return "__Host-stepguard_login" if config.secure else "stepguard_login"


def _client_ip(request: Request) -> str | None:
    """The socket peer. Never a forwarding header: sign-in trusts no proxy."""
    return request.client.host if request.client else None


def login_router(
    services: Services,
    login: LoginService,
    config: PagesConfig,
    *,
    upstreams: Sequence[tuple[str, str]] = (),
) -> APIRouter:
    """The sign-in pages. ``upstreams``: ``(label, url)`` pairs shown as "Sign in with
    <label>" links (upstream identity providers)."""
    router = APIRouter(include_in_schema=False)
    deps = services.deps
    cookie_name = login_cookie_name(config)
    links = tuple((str(label), str(url)) for label, url in upstreams)

    def headers() -> dict[str, str]:
        return {"Content-Security-Policy": config.csp, **SECURITY_HEADERS}

    def allowed_return(value: str | None) -> str | None:
        return safe_return_to(value, allowed_origins=config.return_to_origins)

    def set_login_cookie(response: Response, value: str) -> None:
        response.set_cookie(
            cookie_name,
            value,
            max_age=3600,
            path="/",
            secure=config.secure,
            httponly=True,
            samesite="lax",
        )

    def page(
        value: str,
        *,
        fresh: bool,
        return_to: str | None,
        identifier: str = "",
        error: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        html = _templates.get_template("login.html").render(
            csrf=csrf_token(value),
            return_to=return_to or "",
            identifier=identifier,
            error=error,
            passkey=config.webauthn,
            upstreams=tuple(
                (label, with_query(url, return_to=return_to) if return_to else url)
                for label, url in links
            ),
        )
        response = HTMLResponse(html, status_code=status, headers=headers())
        if fresh:
            set_login_cookie(response, value)
        return response

    def login_value(request: Request) -> tuple[str, bool]:
        """The browser's pre-login cookie, or a new one (``True``: to set)."""
        value = request.cookies.get(cookie_name, "")
        if value.startswith(f"{LOGIN_COOKIE_PREFIX}_") and len(value) <= 128:
            return value, False
        return new_token(deps.rng, LOGIN_COOKIE_PREFIX).reveal(), True

    async def checked(request: Request) -> tuple[dict[str, str], str | None]:
        """The form's text fields and the pre-login cookie, or ``None`` when the CSRF token
        or ``Origin`` is wrong (audited)."""
        raw = await request.form()
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        value = request.cookies.get(cookie_name, "")
        reason = None
        if not same_origin(request, config.public_origin):
            reason = "cross-origin form post"
        elif not value or not csrf_valid(value, form.get("csrf", "")):
            reason = "missing or wrong CSRF token"
        if reason is not None:
            await services.pages.refuse(None, f"login: {reason}", path=request.url.path)
            return form, None
        return form, value

    def forbidden() -> HTMLResponse:
        html = _templates.get_template("message.html").render(
            kind="forbidden", title="We couldn't accept that form", text=FORBIDDEN
        )
        return HTMLResponse(html, status_code=403, headers=headers())

    async def signed_in(request: Request, result: SignedIn, back: str | None) -> Response:
        browser_login = await services.pages.sign_in(
            result.session,
            previous_cookie=request.cookies.get(config.cookie_name),
            via=result.via,
        )
        response = RedirectResponse(back or ACCOUNT_PATH, status_code=303, headers=headers())
        set_browser_cookie(response, browser_login, config=config, now=deps.clock.now())
        # The pre-login cookie has served its purpose: a new one for the next sign-in.
        response.delete_cookie(cookie_name, path="/", secure=config.secure, httponly=True)
        return response

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, return_to: str | None = None) -> Response:
        value, fresh = login_value(request)
        return page(value, fresh=fresh, return_to=allowed_return(return_to))

    @router.post("/login", response_class=HTMLResponse)
    async def password_sign_in(request: Request) -> Response:
        form, value = await checked(request)
        if value is None:
            return forbidden()
        back = allowed_return(form.get("return_to"))
        identifier = form.get("identifier", "")[:MAX_FIELD]
        password = form.get("password", "")[: MAX_FIELD * 4]
        try:
            result = await login.sign_in_with_password(
                identifier,
                Secret(password),
                ip=_client_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
        except LoginFailedError:
            shown = identifier.strip()[:320] if "\x00" not in identifier else ""
            return page(
                value,
                fresh=False,
                return_to=back,
                identifier=shown,
                error=PASSWORD_FAILURE,
                status=401,
            )
        return await signed_in(request, result, back)

    @router.post("/login/passkey/options")
    async def passkey_options(request: Request) -> Response:
        _form, value = await checked(request)
        if value is None or not config.webauthn:
            return JSONResponse({"error": "forbidden"}, status_code=403, headers=headers())
        options = await login.passkey_options(browser_binding=value)
        return JSONResponse({"options": options}, headers=headers())

    @router.post("/login/passkey", response_class=HTMLResponse)
    async def passkey_sign_in(request: Request) -> Response:
        form, value = await checked(request)
        if value is None:
            return forbidden()
        back = allowed_return(form.get("return_to"))
        credential = parse_credential(form)
        try:
            if credential is None or not config.webauthn:
                await services.pages.refuse(
                    None,
                    "login: no passkey credential from the browser",
                    client_error=_client_error(form),
                )
                raise LoginFailedError()
            result = await login.sign_in_with_passkey(
                credential,
                browser_binding=value,
                ip=_client_ip(request),
                user_agent=request.headers.get("user-agent"),
            )
        except LoginFailedError:
            return page(value, fresh=False, return_to=back, error=PASSKEY_FAILURE, status=401)
        return await signed_in(request, result, back)

    @router.post("/logout", response_class=HTMLResponse)
    async def sign_out(request: Request) -> Response:
        browser_cookie = request.cookies.get(config.cookie_name, "")
        raw = await request.form()
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        try:
            browser = await services.pages.browser(browser_cookie)
        except PageLinkInvalidError:
            browser = None
        if browser is not None and (
            not same_origin(request, config.public_origin)
            or not csrf_valid(browser_cookie, form.get("csrf", ""))
        ):
            await services.pages.refuse(browser, "logout: cross-origin or wrong CSRF token")
            return forbidden()
        if browser is not None:
            await login.sign_out(browser_cookie)
        html = _templates.get_template("signed_out.html").render()
        response = HTMLResponse(html, headers=headers())
        response.delete_cookie(config.cookie_name, path="/", secure=config.secure, httponly=True)
        return response

    return router


def _client_error(form: Mapping[str, str]) -> str:
    value = form.get("client_error", "")
    return value if value.isascii() and value.isalpha() and len(value) <= 40 else "none"


class PasswordIn(Strict):
    # The policy's bounds (the default minimum), in the published schema.
    password: str = Field(
        min_length=8, max_length=1024, pattern=NO_NUL, description="The new password."
    )


def password_api_router(
    services: Services,
    login: LoginService,
    *,
    caller: Callable[..., Awaitable[ApiKey]],
    responses: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """``caller`` is API v1's API-key dependency."""
    router = APIRouter(prefix="/v1", responses=responses)
    Caller = Annotated[ApiKey, Depends(caller)]  # noqa: N806 - a type alias, as in app.py
    SubjectId = Annotated[str, Path(pattern=IDENTIFIER_REGEX)]  # noqa: N806

    @router.put("/subjects/{subject_id}/password", status_code=204, tags=["subjects"])
    async def put_password(subject_id: SubjectId, body: PasswordIn, key: Caller) -> Response:
        await login.set_password(subject_id, Secret(body.password), actor=key.id)
        return Response(status_code=204)

    @router.delete("/subjects/{subject_id}/password", status_code=204, tags=["subjects"])
    async def delete_password(subject_id: SubjectId, key: Caller) -> Response:
        await login.delete_password(subject_id, actor=key.id)
        return Response(status_code=204)

    return router
