"""Django: a view decorator, a middleware for declared routes, and a per-call check.

::

    # myapp/stepguard.py
    guard = StepUpGuard(client, session_id=lambda request: request.session.get("sg_session"),
                        public_url="https://stepguard.example",
                        routes=[ProtectedRoute(path="/admin/*", action="admin.access")])

    # settings.py
    MIDDLEWARE = [..., "stepguard.sdk.django.StepUpMiddleware"]
    STEPGUARD_GUARD = "myapp.stepguard.guard"

    # views.py
    @guard.require("payments.transfer", context=lambda r: {"amount": int(r.POST["amount"])})
    def transfer(request): ...

    def pay(request):
        guard.check(request, action="payments.transfer", context={"amount": amount})
        ...  # StepUpInterrupt is answered by StepUpMiddleware

Needs the ``django`` extra. Uses the synchronous :class:`~stepguard.sdk.StepGuardClient`:
create it once (one connection pool) and share it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, RawPostDataException
from django.utils.module_loading import import_string

from stepguard.sdk._client import StepGuardClient
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
    FailMode,
    GuardOptions,
    Proceed,
    ProtectedRoute,
    Reply,
    RequestInfo,
    StepUpInterrupt,
    challenge_id_from_query,
    clean_user_agent,
    enforce,
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

P = ParamSpec("P")
V = TypeVar("V", bound=HttpResponseBase)

SyncContext = Mapping[str, object] | Callable[[HttpRequest], Mapping[str, object]] | None


def response_for(reply: Reply) -> HttpResponse:
    """The Django response for a guard's :class:`Reply`."""
    return HttpResponse(
        reply.body,
        status=reply.status,
        content_type=reply.content_type,
        headers=dict(reply.headers),
    )


def _client_ip(request: HttpRequest) -> str | None:
    value = request.META.get("REMOTE_ADDR")
    return value if isinstance(value, str) and value else None


class StepUpGuard:
    """Ask StepGuard before a Django view runs. ``session_id(request)`` returns the StepGuard
    session of the signed-in user (``None``: 401). The ``allow`` decision is in
    ``request.stepguard``. ``routes`` are guarded by :class:`StepUpMiddleware`."""

    def __init__(
        self,
        client: StepGuardClient,
        *,
        session_id: Callable[[HttpRequest], str | None],
        public_url: str,
        app_url: str | None = None,
        on_unavailable: FailMode = FailMode.DENY,
        routes: Sequence[ProtectedRoute[HttpRequest]] = (),
        client_ip: Callable[[HttpRequest], str | None] = _client_ip,
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
        self.routes = tuple(routes)
        self._session_id = session_id
        self._client_ip = client_ip

    def require(
        self,
        action: str,
        *,
        resource: str | None = None,
        context: SyncContext = None,
        on_unavailable: FailMode | None = None,
    ) -> Callable[
        [Callable[Concatenate[HttpRequest, P], V]],
        Callable[Concatenate[HttpRequest, P], V | HttpResponse],
    ]:
        """A view decorator: the view runs only on ``allow``; otherwise the guard answers."""

        def decorator(
            view: Callable[Concatenate[HttpRequest, P], V],
        ) -> Callable[Concatenate[HttpRequest, P], V | HttpResponse]:
            @functools.wraps(view)
            def guarded(
                request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs
            ) -> V | HttpResponse:
                result = self.evaluate(
                    request,
                    action=action,
                    resource=resource,
                    context=context,
                    on_unavailable=on_unavailable,
                )
                if isinstance(result, Reply):
                    return response_for(result)
                request.stepguard = result.decision  # type: ignore[attr-defined]
                return view(request, *args, **kwargs)

            return guarded

        return decorator

    def check(
        self,
        request: HttpRequest,
        *,
        action: str,
        resource: str | None = None,
        context: SyncContext = None,
        on_unavailable: FailMode | None = None,
    ) -> Decision:
        """Ask for ``action`` with this exact ``context`` inside a view: the ``allow``
        decision, or :class:`StepUpInterrupt` (answered by :class:`StepUpMiddleware`)."""
        result = self.evaluate(
            request,
            action=action,
            resource=resource,
            context=context,
            on_unavailable=on_unavailable,
        )
        if isinstance(result, Reply):
            raise StepUpInterrupt(result)
        request.stepguard = result.decision  # type: ignore[attr-defined]
        return result.decision

    def evaluate(
        self,
        request: HttpRequest,
        *,
        action: str,
        resource: str | None = None,
        context: SyncContext = None,
        on_unavailable: FailMode | None = None,
    ) -> Proceed | Reply:
        """The guard's answer for ``request``, without raising."""
        options = self.options
        resolved = context(request) if callable(context) else context
        check = Check(
            session_id=self._session_id(request),
            action=action,
            resource=resource,
            context=resolved,
            grant=self._grant(request),
            challenge_id=challenge_id_from_query(request.META.get("QUERY_STRING", ""), options),
            ip=self._client_ip(request),
            user_agent=clean_user_agent(request.headers.get("User-Agent")),
            on_unavailable=on_unavailable or options.on_unavailable,
        )
        info = RequestInfo(
            method=request.method or "GET",
            url=request.build_absolute_uri(),
            accept=request.headers.get("Accept"),
        )
        return enforce(self.client, check, info, options)

    def _grant(self, request: HttpRequest) -> str | None:
        header = request.headers.get(self.options.grant_header)
        if header:
            return header
        if request.method in ("GET", "HEAD"):
            return None
        content_type = request.content_type or ""
        if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values = request.POST.getlist(self.options.grant_field)
            return values[0] if len(values) == 1 and values[0] else None
        try:
            # request.body is cached: the view can still read it.
            body = request.body
        except RawPostDataException:
            return None  # the body was streamed already: no grant from it
        return grant_from_body(content_type, body, self.options.grant_field)


def _configured_guard() -> StepUpGuard:
    value = getattr(settings, "STEPGUARD_GUARD", None)
    guard = import_string(value) if isinstance(value, str) else value
    if callable(guard) and not isinstance(guard, StepUpGuard):
        guard = guard()
    if not isinstance(guard, StepUpGuard):
        raise TypeError(
            "settings.STEPGUARD_GUARD must be a StepUpGuard, a function returning one, "
            "or the dotted path of either"
        )
    return guard


class StepUpMiddleware:
    """Guards the routes of ``settings.STEPGUARD_GUARD`` (first match of method and
    ``path_info`` wins) and answers :class:`StepUpInterrupt` raised by ``guard.check``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.guard = _configured_guard()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        method = request.method or "GET"
        route = next((r for r in self.guard.routes if r.matches(method, request.path_info)), None)
        if route is not None:
            # Sync views: a context callable must return a mapping (not an awaitable).
            context = cast(SyncContext, route.context)
            result = self.guard.evaluate(
                request,
                action=route.action,
                resource=route.resource,
                context=context,
                on_unavailable=route.on_unavailable,
            )
            if isinstance(result, Reply):
                return response_for(result)
            request.stepguard = result.decision  # type: ignore[attr-defined]
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, StepUpInterrupt):
            return response_for(exception.reply)
        return None


class TokenGuard:
    """Bearer-token views (RFC 9068 access tokens, RFC 9470 challenges), StepGuard not
    involved. ``verifier`` is a :class:`~stepguard.sdk.rfc9068.AccessTokenVerifier` (typed
    loosely so that this module imports without joserfc). The verified token is in
    ``request.access_token``."""

    def __init__(self, verifier: Any) -> None:
        self.verifier = verifier

    def require(
        self, *, acr: str | None = None, max_age: int | None = None
    ) -> Callable[
        [Callable[Concatenate[HttpRequest, P], V]],
        Callable[Concatenate[HttpRequest, P], V | HttpResponse],
    ]:
        from stepguard.sdk.rfc9068 import TokenRequirement, bearer_token

        requirement = TokenRequirement(acr=acr, max_age=max_age)
        verifier = self.verifier

        def decorator(
            view: Callable[Concatenate[HttpRequest, P], V],
        ) -> Callable[Concatenate[HttpRequest, P], V | HttpResponse]:
            @functools.wraps(view)
            def guarded(
                request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs
            ) -> V | HttpResponse:
                raw = bearer_token(request.headers.get("Authorization"))
                try:
                    if raw is None:
                        raise InvalidTokenError("")
                    token = verifier.verify(raw)
                    verifier.require(token, requirement)
                except (
                    InvalidTokenError,
                    InsufficientUserAuthenticationError,
                    IssuerUnavailableError,
                ) as error:
                    return response_for(token_replies(error, token_present=raw is not None))
                request.access_token = token  # type: ignore[attr-defined]
                return view(request, *args, **kwargs)

            return guarded

        return decorator
