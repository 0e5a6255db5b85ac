"""Sign-in with an upstream OpenID Provider: ``GET /login/upstream/{name}`` sends the browser
there, ``GET /login/upstream/{name}/callback`` brings it back signed in (docs/upstream.md).

Every failure shows the same page ("Sign-in with <label> did not work"); the precise reason
is in the audit log (``upstream.login_failed``).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from stepguard.adapters.web.pages import (
    SECURITY_HEADERS,
    PagesConfig,
    safe_return_to,
    set_browser_cookie,
)
from stepguard.core.upstream import UpstreamLoginFailedError
from stepguard.service.container import Services
from stepguard.service.upstream import UpstreamService

__all__ = ["upstream_router"]

ACCOUNT_PATH: Final = "/account/factors"
_NAME = r"^[a-z0-9][a-z0-9-]{0,31}$"
_MAX_PARAM: Final = 4096
_COOKIE: Final = "stepguard_upstream"
_COOKIE_MAX_AGE: Final = 600

_templates = Environment(
    loader=PackageLoader("stepguard.adapters.web.pages", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

Param = Annotated[str | None, Query(max_length=_MAX_PARAM)]


def upstream_router(
    services: Services, upstream: UpstreamService, config: PagesConfig
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # __Host-: Secure, Path=/, no Domain (https only, like the pages' own cookie).
    cookie_name = f"__Host-{_COOKIE}" if config.secure else _COOKIE

    def headers() -> dict[str, str]:
        return {"Content-Security-Policy": config.csp, **SECURITY_HEADERS}

    def failed(name: str, status: int = 400) -> HTMLResponse:
        known = upstream.get(name)
        title = f"Sign-in with {known.label} did not work" if known else "Sign-in did not work"
        html = _templates.get_template("message.html").render(
            kind="upstream_failed",
            title=title,
            text="Go back and try again. If it keeps failing, contact your administrator.",
        )
        response = HTMLResponse(html, status_code=status, headers=headers())
        response.delete_cookie(cookie_name, path="/", secure=config.secure, httponly=True)
        return response

    def redirect_uri(name: str) -> str:
        return f"{config.public_url}/login/upstream/{name}/callback"

    def client(request: Request) -> tuple[str | None, str | None]:
        # The direct peer only: proxy headers are not trusted here.
        ip = request.client.host if request.client else None
        return ip, request.headers.get("user-agent")

    @router.get("/login/upstream/{name}")
    async def start(
        request: Request, name: Annotated[str, Path(pattern=_NAME)], return_to: Param = None
    ) -> Response:
        allowed = safe_return_to(return_to, allowed_origins=config.return_to_origins)
        ip, _ = client(request)
        try:
            started = await upstream.start(
                name, return_to=allowed, redirect_uri=redirect_uri(name), ip=ip
            )
        except UpstreamLoginFailedError:
            return failed(name, 404 if upstream.get(name) is None else 502)
        response = RedirectResponse(started.redirect_url, status_code=303, headers=headers())
        response.set_cookie(
            cookie_name,
            started.browser_cookie.reveal(),
            max_age=_COOKIE_MAX_AGE,
            path="/",
            secure=config.secure,
            httponly=True,
            samesite="lax",  # the callback is a top-level GET navigation from the provider
        )
        return response

    @router.get("/login/upstream/{name}/callback")
    async def callback(
        request: Request,
        name: Annotated[str, Path(pattern=_NAME)],
        code: Param = None,
        state: Param = None,
        error: Param = None,
    ) -> Response:
        ip, user_agent = client(request)
        try:
            finished = await upstream.finish(
                name,
                state=state,
                code=code,
                error=error,
                browser_cookie=request.cookies.get(cookie_name),
                redirect_uri=redirect_uri(name),
                ip=ip,
                user_agent=user_agent,
            )
        except UpstreamLoginFailedError:
            return failed(name)
        login = await services.pages.sign_in(
            finished.session,
            previous_cookie=request.cookies.get(config.cookie_name),
            via=f"upstream:{name}",
        )
        allowed = safe_return_to(finished.return_to, allowed_origins=config.return_to_origins)
        target = allowed or ACCOUNT_PATH
        response = RedirectResponse(target, status_code=303, headers=headers())
        set_browser_cookie(response, login, config=config, now=services.deps.clock.now())
        response.delete_cookie(cookie_name, path="/", secure=config.secure, httponly=True)
        return response

    return router
