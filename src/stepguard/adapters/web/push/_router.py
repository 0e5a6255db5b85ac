"""Push approval over HTTP (docs/push.md), and the email/SMS buttons of the step-up page.

- API (API key): ``POST /v1/challenges/{id}/pushes`` starts a push for an application that
  draws its own prompt; ``GET /v1/challenges/{id}/pushes/{push_id}`` polls it.
- The requesting page (browser cookie, CSRF): ``POST /challenge/{id}/push`` starts a push and
  shows the number; ``GET /challenge/{id}/push/{push_id}`` is polled by ``push.js``;
  ``POST /challenge/{id}/push/{push_id}/finish`` rotates the cookie and goes back to the app.
- The approver page ``/approve`` (an installable PWA: manifest, service worker) and its JSON:
  pairing, the pending pushes (server-sent events, or polled), signed answers, the Web Push
  subscription. Answers are authenticated by their signature; listing needs the device cookie.
- Email/SMS on the step-up page: ``POST /challenge/{id}/send`` sends a code (DeliveryService)
  and shows the code field; limits and outages get one generic message.

``build_app`` includes this router (it imports this module when it runs, since this module
uses ``app.py``'s caller and path dependencies).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sse_starlette import EventSourceResponse

from stepguard.adapters.web.app import Caller, PathId
from stepguard.adapters.web.pages import PagesConfig
from stepguard.adapters.web.pages._router import (
    _ID_PATTERN,
    MAX_CODE,
    SECURITY_HEADERS,
    PageId,
    same_origin,
)
from stepguard.adapters.web.pages._urls import safe_return_to, with_query
from stepguard.adapters.web.push_schemas import (
    AnswerIn,
    AnswerOut,
    PairIn,
    PairOut,
    PendingOut,
    PushOut,
    PushStartIn,
    SubscriptionIn,
)
from stepguard.core.assurance import FactorType
from stepguard.core.errors import (
    ConflictError,
    DeliveryFailedError,
    DeliveryRateLimitedError,
    NotFoundError,
    PageLinkInvalidError,
    PushRateLimitedError,
)
from stepguard.core.factors.push import PushAnswer, PushStatus
from stepguard.core.model import ChallengeStatus, PushDevice
from stepguard.core.pages import BrowserSession, csrf_token, csrf_valid
from stepguard.service.container import Services
from stepguard.service.pages import PAGES_ACTOR, BrowserLogin
from stepguard.service.push import decode_signature, summary_of

__all__ = ["push_router"]

STATIC: Final = {
    "approve.js": "text/javascript",
    "push.js": "text/javascript",
    "push.css": "text/css",
}
APPROVE_FILES: Final = {
    "sw.js": "text/javascript",
    "manifest.webmanifest": "application/manifest+json",
    "icon.svg": "image/svg+xml",
}
POLL_SECONDS: Final = 1.0
UNAVAILABLE: Final = (
    "Push approval isn't available right now",
    "Use another way to confirm, or try again later.",
)
NOT_SENT: Final = (
    "We couldn't send a code right now",
    "Try again in a few minutes, or use another way to confirm.",
)

_templates = Environment(
    loader=PackageLoader("stepguard.adapters.web.pages", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _approve_csp() -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; manifest-src 'self'; worker-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def push_router(
    services: Services, config: PagesConfig, *, responses: dict[int | str, dict[str, Any]]
) -> APIRouter:
    router = APIRouter()
    pages = services.pages
    push = services.push
    package = resources.files(__package__ or "").joinpath("static")
    files = {name: package.joinpath(name).read_bytes() for name in (*STATIC, *APPROVE_FILES)}
    device_cookie = "__Host-stepguard_device" if config.secure else "stepguard_device"
    approve_csp = _approve_csp()

    # --- API ----------------------------------------------------------------------------

    def push_out(state: Any) -> PushOut:
        return PushOut(
            push_id=state.push_id,
            challenge_id=state.challenge_id,
            status=state.status,
            number=state.number,
            expires_at=state.expires_at,
        )

    @router.post(
        "/v1/challenges/{challenge_id}/pushes",
        response_model=PushOut,
        status_code=201,
        tags=["challenges"],
        responses=responses,
        summary="Send a push approval (number matching) to the subject's approver devices",
        description=(
            "Show `number` on the requesting screen; the person picks it on their device. "
            "Replaces the challenge's earlier pending push. 409 when no paired push factor "
            "can satisfy the challenge; 429 `push_rate_limited` when the push-bombing limits "
            "refuse (offer another factor)."
        ),
    )
    async def api_start(challenge_id: PathId, body: PushStartIn, caller: Caller) -> PushOut:
        started = await push.start(
            challenge_id, ip=body.ip, user_agent=body.user_agent, actor=caller.id
        )
        return push_out(await push.state(challenge_id, started.push_id))

    @router.get(
        "/v1/challenges/{challenge_id}/pushes/{push_id}",
        response_model=PushOut,
        tags=["challenges"],
        responses=responses,
        summary="A push's status; `approved` means the challenge is satisfied",
    )
    async def api_state(challenge_id: PathId, push_id: PathId, caller: Caller) -> PushOut:
        return push_out(await push.state(challenge_id, push_id))

    # --- responses for the pages ----------------------------------------------------------

    def headers(csp: str | None = None) -> dict[str, str]:
        return {"Content-Security-Policy": csp or config.csp, **SECURITY_HEADERS}

    def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = _templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=headers())

    def message(title: str, text: str, status: int, kind: str = "push") -> HTMLResponse:
        return render("message.html", status=status, kind=kind, title=title, text=text)

    def expired() -> HTMLResponse:
        return message(
            "This link has expired",
            "Links to this page work once and only for a few minutes. "
            "Go back to the app and start again.",
            403,
            kind="expired_link",
        )

    def set_cookie(response: Response, login: BrowserLogin) -> None:
        now = services.deps.clock.now()
        response.set_cookie(
            config.cookie_name,
            login.cookie.reveal(),
            max_age=max(1, int((login.browser.expires_at - now).total_seconds())),
            path="/",
            secure=config.secure,
            httponly=True,
            samesite="lax",
        )

    async def browser_for(request: Request) -> BrowserSession | None:
        try:
            return await pages.browser(request.cookies.get(config.cookie_name))
        except PageLinkInvalidError:
            return None

    async def form_of(
        request: Request, browser: BrowserSession
    ) -> tuple[dict[str, str], Response | None]:
        raw = await request.form()
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        value = request.cookies.get(config.cookie_name) or ""
        reason = None
        if not same_origin(request, config.public_origin):
            reason = "cross-origin form post"
        elif not csrf_valid(value, form.get("csrf", "")):
            reason = "missing or wrong CSRF token"
        if reason is not None:
            await pages.refuse(browser, reason, path=request.url.path)
            return form, message(
                "We couldn't accept that form",
                "For your security, the form was refused. Reload the page and try again.",
                403,
                kind="forbidden",
            )
        return form, None

    def back_to(value: str | None) -> str | None:
        return safe_return_to(value, allowed_origins=config.return_to_origins)

    # --- the requesting page: push --------------------------------------------------------

    def waiting(
        request: Request,
        challenge_id: str,
        summary: str,
        push_id: str,
        number: int,
        back: str | None,
        *,
        status: int = 200,
        note: str | None = None,
    ) -> HTMLResponse:
        return render(
            "push_wait.html",
            status=status,
            challenge_id=challenge_id,
            summary=summary,
            push_id=push_id,
            number=number,
            csrf=csrf_token(request.cookies.get(config.cookie_name) or ""),
            return_to=back or "",
            note=note,
        )

    @router.post(
        "/challenge/{challenge_id}/push", include_in_schema=False, response_class=HTMLResponse
    )
    async def page_start(request: Request, challenge_id: PageId) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return expired()
        form, refused = await form_of(request, browser)
        if refused is not None:
            return refused
        back = back_to(form.get("return_to"))
        try:
            view = await pages.challenge(browser, challenge_id)
            client = request.client.host if request.client else None
            started = await push.start(
                challenge_id,
                ip=client,
                user_agent=request.headers.get("user-agent"),
                actor=PAGES_ACTOR,
            )
        except NotFoundError:
            return message("We couldn't find that request", "Go back to the app.", 404)
        except (ConflictError, PushRateLimitedError):
            return message(*UNAVAILABLE, 429)
        return waiting(
            request,
            challenge_id,
            summary_of(view.challenge),
            started.push_id,
            started.number,
            back,
        )

    @router.get("/challenge/{challenge_id}/push/{push_id}", include_in_schema=False)
    async def page_state(request: Request, challenge_id: PageId, push_id: PageId) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return JSONResponse({"status": "unknown"}, status_code=403, headers=headers())
        try:
            await pages.challenge(browser, challenge_id)
            state = await push.state(challenge_id, push_id)
        except NotFoundError:
            return JSONResponse({"status": "unknown"}, status_code=404, headers=headers())
        return JSONResponse({"status": state.status}, headers=headers())

    @router.post(
        "/challenge/{challenge_id}/push/{push_id}/finish",
        include_in_schema=False,
        response_class=HTMLResponse,
    )
    async def page_finish(request: Request, challenge_id: PageId, push_id: PageId) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return expired()
        form, refused = await form_of(request, browser)
        if refused is not None:
            return refused
        back = back_to(form.get("return_to"))
        try:
            view = await pages.challenge(browser, challenge_id)
            state = await push.state(challenge_id, push_id)
        except NotFoundError:
            return message("We couldn't find that request", "Go back to the app.", 404)
        if state.status == PushStatus.APPROVED and await push.finish(challenge_id, push_id):
            try:
                login = await pages.rotate(
                    request.cookies.get(config.cookie_name) or "", browser, why="step_up"
                )
            except PageLinkInvalidError:
                return expired()
            target = (
                with_query(back, stepguard_challenge=challenge_id)
                if back
                else f"/challenge/{challenge_id}"
            )
            response = RedirectResponse(target, status_code=303, headers=headers())
            set_cookie(response, login)
            return response
        if state.status == PushStatus.PENDING:
            return waiting(
                request,
                challenge_id,
                summary_of(view.challenge),
                push_id,
                state.number,
                back,
                note="Not approved yet. Pick the number on your device, then try again.",
            )
        if view.status is ChallengeStatus.SATISFIED:
            target = f"/challenge/{challenge_id}"
            return RedirectResponse(
                with_query(target, return_to=back) if back else target,
                status_code=303,
                headers=headers(),
            )
        text = {
            PushStatus.DENIED: "The request was denied on your device.",
            PushStatus.WRONG_NUMBER: "A different number was picked on your device.",
        }.get(PushStatus(state.status), "The request was not approved in time.")
        return render(
            "push_failed.html",
            status=403,
            challenge_id=challenge_id,
            text=text,
            return_to=back or "",
        )

    # --- the requesting page: email and SMS codes -----------------------------------------

    @router.post(
        "/challenge/{challenge_id}/send", include_in_schema=False, response_class=HTMLResponse
    )
    async def page_send(request: Request, challenge_id: PageId) -> Response:
        browser = await browser_for(request)
        if browser is None:
            return expired()
        form, refused = await form_of(request, browser)
        if refused is not None:
            return refused
        back = back_to(form.get("return_to"))
        factor_id = form.get("factor_id", "")
        if not _ID_PATTERN.fullmatch(factor_id):
            await pages.refuse(browser, "malformed send form", challenge_id=challenge_id)
            return message(*NOT_SENT, 409, kind="not_sent")
        try:
            view = await pages.challenge(browser, challenge_id)
            sent = await services.delivery.send(challenge_id, factor_id, actor=PAGES_ACTOR)
        except NotFoundError:
            return message("We couldn't find that request", "Go back to the app.", 404)
        except (ConflictError, DeliveryRateLimitedError, DeliveryFailedError):
            # One message for limits, outages and factors that cannot serve: nothing here
            # says whether a destination exists or which limit refused.
            return render(
                "oob_sent.html",
                status=429,
                challenge_id=challenge_id,
                summary=summary_of(view.challenge),
                factor=None,
                destination="",
                channel="",
                csrf=csrf_token(request.cookies.get(config.cookie_name) or ""),
                return_to=back or "",
                error=NOT_SENT,
                max_code=MAX_CODE,
            )
        factor = next((f for f in view.factors if f.id == factor_id), None)
        return render(
            "oob_sent.html",
            challenge_id=challenge_id,
            summary=summary_of(view.challenge),
            factor=factor,
            destination=sent.destination,
            channel=sent.channel.value,
            csrf=csrf_token(request.cookies.get(config.cookie_name) or ""),
            return_to=back or "",
            error=None,
            max_code=MAX_CODE,
        )

    # --- the account page: add an approver device -----------------------------------------

    @router.post("/account/factors/push", include_in_schema=False, response_class=HTMLResponse)
    async def add_device(request: Request) -> Response:
        import segno

        from stepguard.core.errors import StepUpRequiredError

        browser = await browser_for(request)
        if browser is None:
            return expired()
        form, refused = await form_of(request, browser)
        if refused is not None:
            return refused
        label = form.get("label", "").strip()[:64].replace("\x00", "") or "Approver device"
        try:
            enrollment = await services.factors.enroll(
                browser.subject_id,
                factor_type=FactorType.PUSH,
                label=label,
                session_id=browser.session_id,
                totp=None,
                actor=PAGES_ACTOR,
            )
        except StepUpRequiredError:
            challenge = await pages.manage_challenge(browser)
            if challenge is None:
                return message(
                    "Your organisation's policy does not allow changing factors here.", "", 403
                )
            return RedirectResponse(
                with_query(f"/challenge/{challenge.id}", return_to="/account/factors"),
                status_code=303,
                headers=headers(),
            )
        assert enrollment.pairing_url is not None  # a push enrollment always has one
        url = enrollment.pairing_url.reveal()
        return render(
            "push_pair.html",
            factor=enrollment.factor,
            url=url,
            qr=segno.make(url, error="m").svg_data_uri(scale=4, border=2),
        )

    # --- the approver page ------------------------------------------------------------------

    def approve_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Content-Security-Policy": approve_csp, **SECURITY_HEADERS, **(extra or {})}

    @router.get("/approve", include_in_schema=False, response_class=HTMLResponse)
    async def approve_page() -> Response:
        html = _templates.get_template("approve.html").render(
            vapid=services.deps.push.sender.public_key if services.deps.push.sender else ""
        )
        return HTMLResponse(html, headers=approve_headers())

    @router.get("/approve/{name}", include_in_schema=False)
    async def approve_file(name: str) -> Response:
        media = APPROVE_FILES.get(name)
        if media is None:
            return Response(status_code=404, headers={"X-Content-Type-Options": "nosniff"})
        extra = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if name == "sw.js":
            extra["Service-Worker-Allowed"] = "/approve"
        return Response(files[name], media_type=media, headers=extra)

    @router.get("/static/push/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        media = STATIC.get(name)
        if media is None:
            return Response(status_code=404, headers={"X-Content-Type-Options": "nosniff"})
        return Response(
            files[name],
            media_type=media,
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    async def device_of(request: Request) -> PushDevice | None:
        return await push.device(request.cookies.get(device_cookie))

    def json_error(status: int, code: str) -> JSONResponse:
        return JSONResponse(
            {"error": code, "message": "The request was refused."},
            status_code=status,
            headers=approve_headers(),
        )

    @router.post("/approve/api/pair", include_in_schema=False, response_model=PairOut)
    async def pair(request: Request, body: PairIn) -> Response:
        paired = await push.pair(
            body.pairing,
            public_key=body.public_key.model_dump(exclude_none=True),
            signature=decode_signature(body.signature),
            user_agent=request.headers.get("user-agent", ""),
        )
        sender = services.deps.push.sender
        out = PairOut(
            factor_id=paired.factor_id, vapid_public_key=sender.public_key if sender else None
        )
        response = JSONResponse(out.model_dump(), headers=approve_headers())
        response.set_cookie(
            device_cookie,
            paired.device_token.reveal(),
            max_age=400 * 86400,
            path="/",
            secure=config.secure,
            httponly=True,
            samesite="strict",
        )
        return response

    @router.get("/approve/api/pending", include_in_schema=False, response_model=PendingOut)
    async def pending(request: Request) -> Response:
        device = await device_of(request)
        if device is None:
            return json_error(403, "device_unknown")
        prompts = await push.prompts(device)
        out = PendingOut(factor_id=device.factor_id, requests=[p.as_json() for p in prompts])
        return JSONResponse(out.model_dump(), headers=approve_headers())

    @router.get("/approve/api/events", include_in_schema=False)
    async def events(request: Request) -> Response:
        device = await device_of(request)
        if device is None:
            return json_error(403, "device_unknown")
        token = request.cookies.get(device_cookie)

        async def stream() -> AsyncIterator[dict[str, str]]:
            last: str | None = None
            while not await request.is_disconnected():
                current = await push.device(token)
                if current is None:
                    yield {"event": "revoked", "data": "{}"}
                    return
                prompts = await push.prompts(current)
                data = json.dumps(
                    {"factor_id": current.factor_id, "requests": [p.as_json() for p in prompts]}
                )
                if data != last:
                    last = data
                    yield {"event": "requests", "data": data}
                await push.wait_for_change(POLL_SECONDS)

        return EventSourceResponse(stream(), ping=15, headers=approve_headers())

    @router.post("/approve/api/answer", include_in_schema=False, response_model=AnswerOut)
    async def answer(body: AnswerIn) -> Response:
        answered = await push.answer(
            body.push_id,
            factor_id=body.factor_id,
            number=body.number,
            answer=PushAnswer(body.answer),
            signature=decode_signature(body.signature),
        )
        out = AnswerOut.model_validate(
            {"push_id": answered.push_id, "status": answered.status.value}
        )
        return JSONResponse(out.model_dump(), headers=approve_headers())

    @router.post("/approve/api/subscription", include_in_schema=False, status_code=204)
    async def subscription(request: Request, body: SubscriptionIn) -> Response:
        device = await device_of(request)
        if device is None or not same_origin(request, config.public_origin):
            return json_error(403, "device_unknown")
        await push.subscribe(device, body.model_dump())
        return Response(status_code=204, headers=approve_headers())

    return router
