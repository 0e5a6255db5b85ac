"""The bank's web application (FastAPI), built only on the public SDK.

Routes (all pages server-rendered; every form carries a CSRF token):

- ``GET /login``, ``POST /login``, ``POST /logout``: password login; the login registers a
  StepGuard session (``amr: ["pwd"]``, IP, user agent, device id) through the SDK.
- ``GET /``: balances, payees and the forms (StepGuard action ``account.view``: allowed).
- ``POST /transfers`` stores a pending transfer and redirects to ``GET /transfers/{id}``,
  which the SDK guards with that transfer's context (``payments.transfer``: amount, currency,
  payee; resource ``transfers/{id}``). A step-up sends the browser to StepGuard's page, which
  shows the amount and payee; the browser comes back to the same URL with
  ``stepguard_challenge`` and the SDK redeems it for exactly this transfer, which then
  executes once.
- ``POST /profile/email`` -> ``GET /profile/email/{id}`` (``account.email.change``, a fresh
  step-up every time) and ``POST /payees`` -> ``GET /payees/{id}`` (``payees.add``): the same
  pattern.
- ``POST /travel``: the demo switch "pretend I'm abroad": decisions then carry a foreign IP
  address, so the risk engine scores them high and the policy asks for a step-up.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import jinja2
from email_validator import EmailNotValidError, validate_email
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.middleware.sessions import SessionMiddleware

from stepguard.demo.bank.ledger import Bank, BankError, Status, parse_amount, parse_iban
from stepguard.demo.bank.passwords import verify_password
from stepguard.demo.bank.settings import BankSettings
from stepguard.sdk import AsyncStepGuardClient, Decision, StepGuardSDKError
from stepguard.sdk.guard import Reply
from stepguard.sdk.starlette import StepUpGuard, response_for

__all__ = ["build_app", "create_app"]

HERE: Final = Path(__file__).parent
SESSION_COOKIE: Final = "acme_session"
DEVICE_COOKIE: Final = "acme_device"
_DEVICE_ID_LENGTH: Final = 43  # secrets.token_urlsafe(32)


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["money"] = _money
    return Jinja2Templates(env=env)


def _csp(stepguard_public_url: str) -> str:
    # form-action must allow StepGuard: Chromium applies it to the redirects that follow a
    # form submission (POST /transfers -> 303 /transfers/{id} -> 303 StepGuard's page).
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action 'self' {stepguard_public_url}; frame-ancestors 'none'; base-uri 'none'"
    )


def build_app(settings: BankSettings, *, client: AsyncStepGuardClient | None = None) -> FastAPI:
    """The bank. ``client`` defaults to one :class:`AsyncStepGuardClient` for the process."""
    sg = client or AsyncStepGuardClient(settings.stepguard_url, settings.api_key.get_secret_value())
    bank = Bank(sorted(settings.users))
    templates = _templates()
    origin = settings.public_url
    csp = _csp(settings.stepguard_public_url)

    def client_ip(request: Request) -> str | None:
        if request.session.get("abroad"):
            return settings.abroad_ip
        return request.client.host if request.client else None

    def device_id(request: Request) -> str | None:
        value = request.cookies.get(DEVICE_COOKIE)
        if value and len(value) == _DEVICE_ID_LENGTH and value.isascii() and value.isprintable():
            return value
        return None

    guard = StepUpGuard(
        sg,
        session_id=lambda request: request.session.get("sg_session"),
        public_url=settings.stepguard_public_url,
        app_url=settings.public_url,
        client_ip=client_ip,
        device_id=device_id,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await sg.aclose()

    app = FastAPI(
        title="Acme Bank (StepGuard demo)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    guard.install(app)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if device_id(request) is None:
            response.set_cookie(
                DEVICE_COOKIE,
                secrets.token_urlsafe(32),
                max_age=365 * 24 * 3600,
                httponly=True,
                samesite="lax",
                secure=origin.startswith("https://"),
            )
        return response

    # Added last, so it runs first: the session is there for the middleware above.
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=8 * 3600,
        same_site="lax",
        https_only=origin.startswith("https://"),
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # -- helpers ----------------------------------------------------------------------------

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    async def checked_form(request: Request) -> FormData | None:
        """The form, if its CSRF token matches the session's and it comes from our origin."""
        sent_origin = request.headers.get("origin")
        if sent_origin is not None and sent_origin != origin:
            return None
        form = await request.form()
        token = form.get("csrf")
        expected = request.session.get("csrf")
        if not isinstance(token, str) or not isinstance(expected, str):
            return None
        return form if hmac.compare_digest(token.encode(), expected.encode()) else None

    def page(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        username = signed_in(request)
        values.setdefault("customer", bank.customer(username) if username else None)
        values.setdefault("flash", request.session.pop("flash", None))
        values.setdefault("error", None)
        return templates.TemplateResponse(
            request,
            name,
            {
                "csrf": csrf_token(request),
                "abroad": bool(request.session.get("abroad")),
                "abroad_ip": settings.abroad_ip,
                **values,
            },
            status_code=status,
        )

    def to(path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)

    def forbidden(request: Request) -> HTMLResponse:
        return page(
            request,
            "message.html",
            403,
            title="Request refused",
            message="The form expired or did not come from this site. Try again.",
        )

    async def allowed(
        request: Request,
        *,
        action: str,
        resource: str | None = None,
        context: dict[str, object] | None = None,
    ) -> Decision | Response:
        """Ask StepGuard (through the SDK). The decision, or the response that replaces the
        page: the redirect to the step-up page, the login page, a refusal."""
        result = await guard.evaluate(request, action=action, resource=resource, context=context)
        if not isinstance(result, Reply):
            request.state.stepguard = result.decision
            return result.decision
        if result.status == 401 and result.header("WWW-Authenticate") is None:
            # No StepGuard session, or it ended: sign in again.
            request.session.clear()
            return to("/login")
        if result.status == 403:
            return page(
                request,
                "message.html",
                403,
                title="Not allowed",
                message="The bank's security policy does not allow this.",
            )
        if result.status == 503:
            return page(
                request,
                "message.html",
                503,
                title="Try again later",
                message="We cannot check this request right now, so it was not done.",
            )
        return response_for(result)

    def signed_in(request: Request) -> str | None:
        username = request.session.get("user")
        return username if isinstance(username, str) and username in bank.customers else None

    # -- login ------------------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/login")
    async def login_page(request: Request) -> Response:
        if signed_in(request):
            return to("/")
        return page(request, "login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return forbidden(request)
        username = str(form.get("username", "")).strip().lower()
        password = str(form.get("password", ""))
        if not verify_password(password, settings.users.get(username)):
            return page(request, "login.html", 401, error="Wrong username or password.")
        try:
            session = await sg.create_session(
                username,
                amr=["pwd"],
                ip=client_ip(request),
                user_agent=request.headers.get("user-agent"),
                device_id=device_id(request),
            )
        except StepGuardSDKError:
            return page(
                request,
                "login.html",
                503,
                error="Signing in is unavailable right now. Try again later.",
            )
        request.session.clear()  # a new session: nothing carries over from before the login
        request.session.update({"user": username, "sg_session": session.session_id})
        return to("/")

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return forbidden(request)
        sg_session = request.session.get("sg_session")
        request.session.clear()
        if isinstance(sg_session, str):
            # If this fails, the session expires on its own; the bank's is gone either way.
            with contextlib.suppress(StepGuardSDKError):
                await sg.revoke_session(sg_session)
        return to("/login")

    @app.post("/travel")
    async def travel(request: Request) -> Response:
        form = await checked_form(request)
        if form is None or not signed_in(request):
            return forbidden(request)
        request.session["abroad"] = form.get("abroad") == "on"
        return to("/")

    # -- the account ------------------------------------------------------------------------

    @app.get("/")
    async def home(request: Request) -> Response:
        username = signed_in(request)
        if username is None:
            return to("/login")
        decision = await allowed(request, action="account.view")
        if isinstance(decision, Response):
            return decision
        return page(request, "home.html", risk=decision.risk)

    # -- transfers --------------------------------------------------------------------------

    @app.post("/transfers")
    async def create_transfer(request: Request) -> Response:
        username = signed_in(request)
        form = await checked_form(request)
        if form is None or username is None:
            return forbidden(request)
        try:
            transfer = bank.create_transfer(
                username,
                account_id=str(form.get("account", "")),
                payee_id=str(form.get("payee", "")),
                amount=parse_amount(str(form.get("amount", ""))),
            )
        except BankError as error:
            return page(request, "home.html", 400, error=str(error), risk=None)
        return to(f"/transfers/{transfer.id}")

    @app.get("/transfers/{transfer_id}")
    async def confirm_transfer(request: Request, transfer_id: str) -> Response:
        username = signed_in(request)
        if username is None:
            return to("/login")
        transfer = bank.transfer(username, transfer_id)
        if transfer is None:
            return page(
                request,
                "message.html",
                404,
                title="Not found",
                message="There is no such transfer.",
            )
        if transfer.status is Status.PENDING:
            decision = await allowed(
                request,
                action="payments.transfer",
                resource=f"transfers/{transfer.id}",
                context=transfer.context(),
            )
            if isinstance(decision, Response):
                return decision
            try:
                bank.execute(transfer)
            except BankError as error:
                return page(request, "transfer.html", 409, transfer=transfer, error=str(error))
            return to(f"/transfers/{transfer.id}")  # the receipt, without the query
        return page(request, "transfer.html", transfer=transfer)

    # -- email ------------------------------------------------------------------------------

    @app.post("/profile/email")
    async def create_email_change(request: Request) -> Response:
        username = signed_in(request)
        form = await checked_form(request)
        if form is None or username is None:
            return forbidden(request)
        try:
            email = validate_email(
                str(form.get("email", "")), check_deliverability=False
            ).normalized
        except EmailNotValidError:
            return page(request, "home.html", 400, error="Enter a valid email address.", risk=None)
        change = bank.create_email_change(username, email)
        return to(f"/profile/email/{change.id}")

    @app.get("/profile/email/{change_id}")
    async def confirm_email_change(request: Request, change_id: str) -> Response:
        username = signed_in(request)
        if username is None:
            return to("/login")
        change = bank.email_change(username, change_id)
        if change is None or change.status is not Status.PENDING:
            return page(
                request,
                "message.html",
                404,
                title="Not found",
                message="There is no such pending change.",
            )
        decision = await allowed(
            request,
            action="account.email.change",
            resource=f"email-changes/{change.id}",
            context={"email": change.email},
        )
        if isinstance(decision, Response):
            return decision
        bank.apply_email_change(change)
        request.session["flash"] = f"Your email address is now {change.email}."
        return to("/")

    # -- payees -----------------------------------------------------------------------------

    @app.post("/payees")
    async def create_payee(request: Request) -> Response:
        username = signed_in(request)
        form = await checked_form(request)
        if form is None or username is None:
            return forbidden(request)
        try:
            addition = bank.create_new_payee(
                username,
                name=str(form.get("name", "")),
                iban=parse_iban(str(form.get("iban", ""))),
            )
        except BankError as error:
            return page(request, "home.html", 400, error=str(error), risk=None)
        return to(f"/payees/{addition.id}")

    @app.get("/payees/{addition_id}")
    async def confirm_payee(request: Request, addition_id: str) -> Response:
        username = signed_in(request)
        if username is None:
            return to("/login")
        addition = bank.new_payee(username, addition_id)
        if addition is None or addition.status is not Status.PENDING:
            return page(
                request,
                "message.html",
                404,
                title="Not found",
                message="There is no such pending payee.",
            )
        decision = await allowed(
            request,
            action="payees.add",
            resource=f"payees/{addition.id}",
            context={"name": addition.name, "iban": addition.iban},
        )
        if isinstance(decision, Response):
            return decision
        payee = bank.add_payee(addition)
        request.session["flash"] = f"{payee.name} is now one of your payees."
        return to("/")

    return app


def create_app() -> FastAPI:
    """The ASGI factory (``uvicorn --factory stepguard.demo.bank.app:create_app``)."""
    return build_app(BankSettings())  # type: ignore[call-arg]  # from ACME_BANK_* variables
