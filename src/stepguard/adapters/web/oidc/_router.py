"""Discovery, JWKS, authorize (and its continuation and consent), token, userinfo, logout,
and the admin API for clients (``/v1/oidc/clients``, behind the API key).

Thin: parse the HTTP request, call ``OidcService``, turn its typed outcome into a redirect, a
page or JSON. OAuth errors of the token and userinfo endpoints are the protocol's JSON
(``{"error", "error_description"}``), not StepGuard's API error body.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import Field

from stepguard.adapters.web.pages import SECURITY_HEADERS, PagesConfig, same_origin
from stepguard.adapters.web.schemas import IDENTIFIER_REGEX, Out, Strict
from stepguard.core.model import ApiKey
from stepguard.core.oidc.errors import InvalidClientError, InvalidTokenError, OAuthError
from stepguard.core.oidc.model import OidcClient
from stepguard.core.pages import csrf_token, csrf_valid
from stepguard.service.oidc import (
    AuthorizeOutcome,
    ErrorPage,
    LogoutOutcome,
    NeedsConsent,
    NeedsLogin,
    NeedsStepUp,
    OidcService,
    ToClient,
    continuation_url,
)

__all__ = ["oidc_router"]

BINDING_COOKIE: Final = "stepguard_oidc"
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# What the logout confirmation form carries over from the RP's request.
LOGOUT_PARAMS: Final = frozenset(
    {"id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales"}
)

_templates = Environment(
    loader=ChoiceLoader(
        [
            PackageLoader("stepguard.adapters.web.oidc", "templates"),
            PackageLoader("stepguard.adapters.web.pages", "templates"),
        ]
    ),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class ClientIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    client_id: str | None = Field(default=None, pattern=IDENTIFIER_REGEX)
    redirect_uris: list[str] = Field(min_length=1, max_length=20)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    public: bool = False
    refresh_tokens: bool = False
    consent_required: bool = False
    audience: str | None = Field(default=None, max_length=500)


class ClientOut(Out):
    client_id: str
    name: str
    public: bool
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    refresh_tokens: bool
    consent_required: bool
    audience: str
    client_secret: str | None = None  # only when created


def _client_out(client: OidcClient, secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=client.id,
        name=client.name,
        public=client.public,
        redirect_uris=list(client.redirect_uris),
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
        refresh_tokens=client.refresh_tokens,
        consent_required=client.consent_required,
        audience=client.access_audience,
        client_secret=secret,
    )


def _basic(header: str | None) -> tuple[str, str] | None:
    """``client_secret_basic`` credentials (RFC 6749 section 2.3.1: form-urlencoded, then
    base64). A malformed header is a failed authentication, not an absent one."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClientError() from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise InvalidClientError()
    return unquote(user.replace("+", " ")), unquote(password.replace("+", " "))


def _oauth_json(error: OAuthError, status: int) -> JSONResponse:
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = (
            f'Bearer error="{error.error}"' if isinstance(error, InvalidTokenError) else "Basic"
        )
    return JSONResponse(
        {"error": error.error, "error_description": error.message},
        status_code=status,
        headers=headers,
    )


def oidc_router(
    oidc: OidcService,
    pages: PagesConfig,
    *,
    caller: Callable[..., Awaitable[ApiKey]],
    responses: dict[int | str, dict[str, Any]],
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    admin = APIRouter(prefix="/v1/oidc", responses=responses, tags=["oidc"])
    Caller = Annotated[ApiKey, Depends(caller)]  # noqa: N806 - a type alias, as in app.py
    binding_cookie = f"__Host-{BINDING_COOKIE}" if pages.secure else BINDING_COOKIE

    def headers() -> dict[str, str]:
        return {"Content-Security-Policy": pages.csp, **SECURITY_HEADERS}

    def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = _templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=headers())

    def browser_cookie(request: Request) -> str | None:
        return request.cookies.get(pages.cookie_name)

    def respond(outcome: AuthorizeOutcome, request: Request) -> Response:
        if isinstance(outcome, ErrorPage):
            return render("oidc_error.html", status=400, message=outcome.message)
        if isinstance(outcome, ToClient):
            # After a form post on the pages (step-up, consent), CSP form-action would block
            # a redirect to the client's origin: return through a page instead.
            if request.headers.get("sec-fetch-site") == "same-origin" or request.method == "POST":
                response: Response = render("oidc_return.html", url=outcome.url)
            else:
                response = RedirectResponse(outcome.url, status_code=303, headers=headers())
            response.delete_cookie(binding_cookie, path="/")
            return response
        back = continuation_url(outcome.pending_id)
        if isinstance(outcome, NeedsLogin):
            response = RedirectResponse(
                f"/login?return_to={quote(back, safe='')}", status_code=303, headers=headers()
            )
        elif isinstance(outcome, NeedsStepUp):
            response = RedirectResponse(
                f"/challenge/{outcome.challenge_id}?return_to={quote(back, safe='')}",
                status_code=303,
                headers=headers(),
            )
        else:
            assert isinstance(outcome, NeedsConsent)
            value = (
                outcome.binding.reveal()
                if outcome.binding
                else request.cookies.get(binding_cookie, "")
            )
            response = render(
                "oidc_consent.html",
                client_name=outcome.client_name,
                scope=list(outcome.scope),
                pending_id=outcome.pending_id,
                csrf=csrf_token(value),
            )
        if outcome.binding is not None:
            response.set_cookie(
                binding_cookie,
                outcome.binding.reveal(),
                max_age=oidc.config.pending_ttl_seconds,
                path="/",
                secure=pages.secure,
                httponly=True,
                samesite="lax",
            )
        return response

    # --- discovery and keys ---------------------------------------------------------------

    @router.get("/.well-known/openid-configuration")
    async def discovery() -> JSONResponse:
        return JSONResponse(oidc.discovery(), headers={"Cache-Control": "public, max-age=300"})

    @router.get("/oidc/jwks")
    async def jwks() -> JSONResponse:
        return JSONResponse(await oidc.jwks(), headers={"Cache-Control": "public, max-age=60"})

    # --- authorization --------------------------------------------------------------------

    @router.get("/oidc/authorize")
    async def authorize(request: Request) -> Response:
        outcome = await oidc.authorize(
            list(request.query_params.multi_items()), cookie=browser_cookie(request)
        )
        return respond(outcome, request)

    @router.get("/oidc/authorize/continue")
    async def resume(request: Request, req: str = "") -> Response:
        outcome = await oidc.resume(
            req,
            binding=request.cookies.get(binding_cookie),
            cookie=browser_cookie(request),
        )
        return respond(outcome, request)

    @router.post("/oidc/authorize/consent")
    async def consent(request: Request) -> Response:
        raw = await request.form()
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        binding = request.cookies.get(binding_cookie)
        if (
            not binding
            or not same_origin(request, pages.public_origin)
            or not csrf_valid(binding, form.get("csrf", ""))
        ):
            return render(
                "oidc_error.html", status=403, message="For your security, the form was refused."
            )
        outcome = await oidc.resume(
            form.get("req", ""),
            binding=binding,
            cookie=browser_cookie(request),
            consent=form.get("decision") == "allow",
        )
        return respond(outcome, request)

    # --- tokens ---------------------------------------------------------------------------

    @router.post("/oidc/token")
    async def token(request: Request) -> Response:
        try:
            if not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"
            ):
                raise OAuthError("the body must be application/x-www-form-urlencoded")
            basic = _basic(request.headers.get("authorization"))
            raw = await request.form()
            params = [(k, v) for k, v in raw.multi_items() if isinstance(v, str)]
            result = await oidc.token(params, basic=basic)
        except InvalidClientError as error:
            return _oauth_json(error, 401)
        except OAuthError as error:
            return _oauth_json(error, 400)
        return JSONResponse(result.body, headers=NO_STORE)

    async def _userinfo(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        try:
            claims = await oidc.userinfo(value.strip() if scheme.lower() == "bearer" else None)
        except InvalidTokenError as error:
            return _oauth_json(error, 401)
        return JSONResponse(claims, headers=NO_STORE)

    router.add_api_route("/oidc/userinfo", _userinfo, methods=["GET", "POST"])

    def logged_out(outcome: LogoutOutcome, *, after_post: bool) -> Response:
        if outcome.redirect is None:
            response: Response = render("oidc_logged_out.html")
        elif after_post:  # CSP form-action: leave a form post through a page, not a 303
            response = render("oidc_return.html", url=outcome.redirect)
        else:
            response = RedirectResponse(outcome.redirect, status_code=303, headers=headers())
        if outcome.signed_out:
            response.delete_cookie(pages.cookie_name, path="/")
        return response

    @router.get("/oidc/logout")
    async def logout(request: Request) -> Response:
        params = list(request.query_params.multi_items())
        cookie = browser_cookie(request)
        outcome = await oidc.end_session(params, cookie=cookie)
        if outcome.needs_confirmation:
            return render(
                "oidc_logout_confirm.html",
                params=[(k, v) for k, v in params if k in LOGOUT_PARAMS],
                csrf=csrf_token(cookie or ""),
            )
        return logged_out(outcome, after_post=False)

    @router.post("/oidc/logout")
    async def confirm_logout(request: Request) -> Response:
        raw = await request.form()
        form = [(k, v) for k, v in raw.multi_items() if isinstance(v, str)]
        cookie = browser_cookie(request)
        csrf = next((v for k, v in form if k == "csrf"), "")
        if (
            not cookie
            or not same_origin(request, pages.public_origin)
            or not csrf_valid(cookie, csrf)
        ):
            return render(
                "oidc_error.html", status=403, message="For your security, the form was refused."
            )
        params = [(k, v) for k, v in form if k in LOGOUT_PARAMS]
        outcome = await oidc.end_session(params, cookie=cookie, confirmed=True)
        return logged_out(outcome, after_post=True)

    # --- admin API ------------------------------------------------------------------------

    @admin.post("/clients", response_model=ClientOut, status_code=201)
    async def add_client(body: ClientIn, key: Caller) -> ClientOut:
        created = await oidc.add_client(
            name=body.name,
            client_id=body.client_id,
            redirect_uris=body.redirect_uris,
            post_logout_redirect_uris=body.post_logout_redirect_uris,
            public=body.public,
            refresh_tokens=body.refresh_tokens,
            consent_required=body.consent_required,
            audience=body.audience,
            actor=key.id,
        )
        return _client_out(created.client, created.secret.reveal() if created.secret else None)

    @admin.get("/clients", response_model=list[ClientOut])
    async def list_clients(key: Caller) -> list[ClientOut]:
        return [_client_out(c) for c in await oidc.list_clients()]

    @admin.delete("/clients/{client_id}", status_code=204)
    async def remove_client(
        client_id: Annotated[str, Path(pattern=IDENTIFIER_REGEX)], key: Caller
    ) -> Response:
        await oidc.remove_client(client_id, actor=key.id)
        return Response(status_code=204)

    router.include_router(admin)
    return router
