"""Starlette and FastAPI: a route dependency, a per-call check, an ASGI middleware, and bearer
(RFC 9068) routes.

::

    guard = StepUpGuard(client, session_id=lambda r: r.cookies.get("sg_session"),
                        public_url="https://stepguard.example")
    guard.install(app)  # turns StepUpInterrupt into the 303 / 401 / 403 / 503 answer

    @app.post("/transfer", dependencies=[Depends(guard.require("payments.transfer"))])
    async def transfer(...): ...

    @app.post("/pay")
    async def pay(request: Request, body: Payment):
        await guard.check(request, action="payments.transfer",
                          context={"amount": body.amount, "payee": body.payee})

Needs the ``starlette`` extra. Uses :class:`~stepguard.sdk.AsyncStepGuardClient`: create it
once (one connection pool for all requests) and close it on shutdown.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepguard.sdk._client import AsyncStepGuardClient
from stepguard.sdk._models import Decision
from stepguard.sdk.errors import (
    InsufficientUserAuthenticationError,
    InvalidTokenError,
    IssuerUnavailableError,
)
from stepguard.sdk.guard import (
    DEFAULT_CHALLENGE_PARAM,
    DEFAULT_GRANT_FIELD,
    DEFAULT_GRANT_HEADER,
    Check,
    ContextArg,
    FailMode,
    GuardOptions,
    Proceed,
    ProtectedRoute,
    Reply,
    RequestInfo,
    StepUpInterrupt,
    challenge_id_from_query,
    clean_user_agent,
    enforce_async,
    grant_from_body,
    token_replies,
)

__all__ = [
    "FailMode",
    "ProtectedRoute",
    "StepUpGuard",
    "StepUpInterrupt",
    "StepUpMiddleware",
    "TokenGuard",
    "response_for",
]

SessionGetter = Callable[[Request], str | Awaitable[str | None] | None]

_MAX_BODY: Final = 1 << 20


def response_for(reply: Reply) -> Response:
    """The Starlette response for a guard's :class:`Reply`."""
    return Response(
        content=reply.body,
        status_code=reply.status,
        headers=dict(reply.headers),
        media_type=reply.content_type,
    )


async def _interrupt_handler(request: Request, exc: Exception) -> Response:
    return response_for(cast(StepUpInterrupt, exc).reply)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


class StepUpGuard:
    """Ask StepGuard before a route runs, and answer for it when it may not.

    ``session_id(request)`` returns the StepGuard session id of the signed-in user (sync or
    async; ``None``: not signed in -> 401). ``client_ip(request)`` defaults to the peer
    address (behind a proxy, pass one that reads the header your proxy sets).
    ``device_id(request)`` (optional) returns the app's opaque device identifier for the risk
    engine's ``new_device`` signal (e.g. from a long-lived cookie). A grant is read
    from the ``Stepguard-Grant`` header or, for form and JSON bodies, the ``stepguard_grant``
    field; it is sent with the exact context of this check.
    """

    def __init__(
        self,
        client: AsyncStepGuardClient,
        *,
        session_id: SessionGetter,
        public_url: str,
        app_url: str | None = None,
        on_unavailable: FailMode = FailMode.DENY,
        client_ip: Callable[[Request], str | None] = _client_ip,
        device_id: Callable[[Request], str | None] | None = None,
        grant_header: str = DEFAULT_GRANT_HEADER,
        grant_field: str = DEFAULT_GRANT_FIELD,
        challenge_param: str = DEFAULT_CHALLENGE_PARAM,
    ) -> None:
        self.client = client
        self.options = GuardOptions(
            public_url=public_url,
            app_url=app_url,
            on_unavailable=on_unavailable,
            grant_header=grant_header,
            grant_field=grant_field,
            challenge_param=challenge_param,
        )
        self._session_id = session_id
        self._client_ip = client_ip
        self._device_id = device_id

    def install(self, app: Any) -> None:
        """Register the handler that answers :class:`StepUpInterrupt` (Starlette or FastAPI)."""
        app.add_exception_handler(StepUpInterrupt, _interrupt_handler)

    def require(
        self,
        action: str,
        *,
        resource: str | None = None,
        context: ContextArg[Request] = None,
        on_unavailable: FailMode | None = None,
    ) -> Callable[[Request], Awaitable[Decision]]:
        """A dependency (``Depends(guard.require("payments.transfer"))``) that returns the
        ``allow`` decision or raises :class:`StepUpInterrupt`."""

        async def stepguard_dependency(request: Request) -> Decision:
            return await self.check(
                request,
                action=action,
                resource=resource,
                context=context,
                on_unavailable=on_unavailable,
            )

        return stepguard_dependency

    async def check(
        self,
        request: Request,
        *,
        action: str,
        resource: str | None = None,
        context: ContextArg[Request] = None,
        on_unavailable: FailMode | None = None,
    ) -> Decision:
        """Ask for ``action`` with this exact ``context`` now; the ``allow`` decision (also in
        ``request.state.stepguard``), or :class:`StepUpInterrupt`."""
        result = await self.evaluate(
            request,
            action=action,
            resource=resource,
            context=context,
            on_unavailable=on_unavailable,
        )
        if isinstance(result, Reply):
            raise StepUpInterrupt(result)
        request.state.stepguard = result.decision
        return result.decision

    async def evaluate(
        self,
        request: Request,
        *,
        action: str,
        resource: str | None = None,
        context: ContextArg[Request] = None,
        on_unavailable: FailMode | None = None,
    ) -> Proceed | Reply:
        """The guard's answer without raising: :class:`Proceed` or the :class:`Reply`."""
        resolved: Mapping[str, object] | None
        if callable(context):
            resolved = await _maybe_await(context(request))
        else:
            resolved = context
        session_id = await _maybe_await(self._session_id(request))
        options = self.options
        check = Check(
            session_id=session_id,
            action=action,
            resource=resource,
            context=resolved,
            grant=await self._grant(request),
            challenge_id=challenge_id_from_query(request.url.query, options),
            ip=self._client_ip(request),
            user_agent=clean_user_agent(request.headers.get("user-agent")),
            device_id=None if self._device_id is None else self._device_id(request),
            on_unavailable=on_unavailable or options.on_unavailable,
        )
        info = RequestInfo(
            method=request.method, url=str(request.url), accept=request.headers.get("accept")
        )
        return await enforce_async(self.client, check, info, options)

    async def _grant(self, request: Request) -> str | None:
        header = request.headers.get(self.options.grant_header)
        if header:
            return header
        if request.method in ("GET", "HEAD"):
            return None
        content_type = request.headers.get("content-type")
        if content_type is None:
            return None
        # Starlette caches the body on the request: the handler can still read it.
        return grant_from_body(content_type, await request.body(), self.options.grant_field)


class StepUpMiddleware:
    """ASGI middleware guarding ``routes`` (the first that matches method and path wins;
    other requests pass untouched). The ``allow`` decision is in ``request.state.stepguard``.
    A :class:`StepUpInterrupt` raised by ``guard.check(...)`` in a handler is answered too.

    ``app.add_middleware(StepUpMiddleware, guard=guard, routes=[ProtectedRoute(...)])``

    The body of a guarded request is read first (at most ``max_body`` bytes, else 413) so a
    ``context`` callable and the grant field can use it; the app then gets the same bytes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: StepUpGuard,
        routes: Sequence[ProtectedRoute[Request]],
        max_body: int = _MAX_BODY,
    ) -> None:
        self.app = app
        self.guard = guard
        self.routes = tuple(routes)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = next((r for r in self.routes if r.matches(scope["method"], scope["path"])), None)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        if route is not None:
            body = await _read_body(receive, self.max_body)
            if body is None:
                await Response("request body too large", status_code=413)(scope, receive, send)
                return
            request = Request(scope, _replay(body, receive))
            result = await self.guard.evaluate(
                request,
                action=route.action,
                resource=route.resource,
                context=route.context,
                on_unavailable=route.on_unavailable,
            )
            if isinstance(result, Reply):
                await response_for(result)(scope, receive, send)
                return
            scope.setdefault("state", {})["stepguard"] = result.decision
            receive = _replay(body, receive)
        try:
            await self.app(scope, receive, tracking_send)
        except StepUpInterrupt as interrupt:
            if started:
                raise
            await response_for(interrupt.reply)(scope, receive, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # a disconnect: what we have is all there is
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class TokenGuard:
    """Bearer-token routes (RFC 9068 access tokens, RFC 9470 challenges), StepGuard not
    involved: a token that meets the requirement passes without any call to StepGuard.

    ``Depends(tokens.require(acr="aal2", max_age=300))`` returns the
    :class:`~stepguard.sdk.rfc9068.VerifiedAccessToken` or raises :class:`StepUpInterrupt`
    (401 ``invalid_token``, 401 ``insufficient_user_authentication``, or 503 when the
    issuer's keys cannot be had). Register the handler with ``StepUpGuard.install`` or
    :meth:`install`.
    """

    def __init__(self, verifier: Any) -> None:
        # An AsyncAccessTokenVerifier; typed loosely so this module imports without joserfc.
        self.verifier = verifier

    def install(self, app: Any) -> None:
        app.add_exception_handler(StepUpInterrupt, _interrupt_handler)

    def require(
        self, *, acr: str | None = None, max_age: int | None = None
    ) -> Callable[[Request], Awaitable[Any]]:
        from stepguard.sdk.rfc9068 import TokenRequirement, bearer_token

        requirement = TokenRequirement(acr=acr, max_age=max_age)
        verifier = self.verifier

        async def stepguard_token(request: Request) -> Any:
            raw = bearer_token(request.headers.get("authorization"))
            try:
                if raw is None:
                    raise InvalidTokenError("")
                token = await verifier.verify(raw)
                verifier.require(token, requirement)
            except (
                InvalidTokenError,
                InsufficientUserAuthenticationError,
                IssuerUnavailableError,
            ) as error:
                raise StepUpInterrupt(token_replies(error, token_present=raw is not None)) from None
            request.state.access_token = token
            return token

        return stepguard_token
