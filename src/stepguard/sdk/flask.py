"""Flask: a view decorator and a per-call check.

::

    guard = StepUpGuard(client, session_id=lambda request: session.get("sg_session"),
                        public_url="https://stepguard.example")
    guard.init_app(app)  # answers StepUpInterrupt raised by guard.check(...)

    @app.post("/transfer")
    @guard.require("payments.transfer", context=lambda r: {"amount": r.json["amount"]})
    def transfer(): ...

    @app.post("/pay")
    def pay():
        guard.check(action="payments.transfer", context={"amount": request.json["amount"]})
        ...

Needs the ``flask`` extra. Uses the synchronous :class:`~stepguard.sdk.StepGuardClient`:
create it once (one connection pool) and share it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import flask

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
    Reply,
    RequestInfo,
    StepUpInterrupt,
    challenge_id_from_query,
    clean_user_agent,
    enforce,
    grant_from_body,
    token_replies,
)

__all__ = ["FailMode", "StepUpGuard", "StepUpInterrupt", "TokenGuard", "response_for"]

P = ParamSpec("P")
T = TypeVar("T")

SyncContext = Mapping[str, object] | Callable[[flask.Request], Mapping[str, object]] | None


def response_for(reply: Reply) -> flask.Response:
    """The Flask response for a guard's :class:`Reply`."""
    response = flask.Response(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers:
        response.headers[name] = value
    return response


def _client_ip(request: flask.Request) -> str | None:
    return request.remote_addr


class StepUpGuard:
    """Ask StepGuard before a Flask view runs. ``session_id(request)`` returns the StepGuard
    session of the signed-in user (``None``: 401). The ``allow`` decision is in
    ``flask.g.stepguard``. Grants: the ``Stepguard-Grant`` header, or the ``stepguard_grant``
    field of a form or JSON body."""

    def __init__(
        self,
        client: StepGuardClient,
        *,
        session_id: Callable[[flask.Request], str | None],
        public_url: str,
        app_url: str | None = None,
        on_unavailable: FailMode = FailMode.DENY,
        client_ip: Callable[[flask.Request], str | None] = _client_ip,
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

    def init_app(self, app: flask.Flask) -> None:
        """Answer :class:`StepUpInterrupt` (raised by :meth:`check`) with the guard's reply."""

        def handle(error: StepUpInterrupt) -> flask.Response:
            return response_for(error.reply)

        app.register_error_handler(StepUpInterrupt, handle)

    def require(
        self,
        action: str,
        *,
        resource: str | None = None,
        context: SyncContext = None,
        on_unavailable: FailMode | None = None,
    ) -> Callable[[Callable[P, T]], Callable[P, T | flask.Response]]:
        """A view decorator: the view runs only on ``allow``; otherwise the guard answers."""

        def decorator(view: Callable[P, T]) -> Callable[P, T | flask.Response]:
            @functools.wraps(view)
            def guarded(*args: P.args, **kwargs: P.kwargs) -> T | flask.Response:
                result = self.evaluate(
                    action=action,
                    resource=resource,
                    context=context,
                    on_unavailable=on_unavailable,
                )
                if isinstance(result, Reply):
                    return response_for(result)
                flask.g.stepguard = result.decision
                return view(*args, **kwargs)

            return guarded

        return decorator

    def check(
        self,
        *,
        action: str,
        resource: str | None = None,
        context: SyncContext = None,
        on_unavailable: FailMode | None = None,
    ) -> Decision:
        """Ask for ``action`` with this exact ``context`` inside a view: the ``allow``
        decision, or :class:`StepUpInterrupt` (answered by the handler of :meth:`init_app`)."""
        result = self.evaluate(
            action=action, resource=resource, context=context, on_unavailable=on_unavailable
        )
        if isinstance(result, Reply):
            raise StepUpInterrupt(result)
        flask.g.stepguard = result.decision
        return result.decision

    def evaluate(
        self,
        *,
        action: str,
        resource: str | None = None,
        context: SyncContext = None,
        on_unavailable: FailMode | None = None,
    ) -> Proceed | Reply:
        """The guard's answer for the current request, without raising."""
        request = flask.request
        options = self.options
        resolved = context(request) if callable(context) else context
        check = Check(
            session_id=self._session_id(request),
            action=action,
            resource=resource,
            context=resolved,
            grant=self._grant(request),
            challenge_id=challenge_id_from_query(request.query_string.decode("latin-1"), options),
            ip=self._client_ip(request),
            user_agent=clean_user_agent(request.headers.get("User-Agent")),
            on_unavailable=on_unavailable or options.on_unavailable,
        )
        info = RequestInfo(
            method=request.method, url=request.url, accept=request.headers.get("Accept")
        )
        return enforce(self.client, check, info, options)

    def _grant(self, request: flask.Request) -> str | None:
        header = request.headers.get(self.options.grant_header)
        if header:
            return header
        if request.method in ("GET", "HEAD") or not request.mimetype:
            return None
        field_name = self.options.grant_field
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values = request.form.getlist(field_name)
            return values[0] if len(values) == 1 and values[0] else None
        # Cached: the view can still read request.get_data() / request.json.
        data: Any = request.get_data(cache=True)
        return grant_from_body(request.mimetype, data, field_name)


class TokenGuard:
    """Bearer-token views (RFC 9068 access tokens, RFC 9470 challenges), StepGuard not
    involved. ``verifier`` is a :class:`~stepguard.sdk.rfc9068.AccessTokenVerifier` (typed
    loosely so that this module imports without joserfc). The verified token is in
    ``flask.g.access_token``."""

    def __init__(self, verifier: Any) -> None:
        self.verifier = verifier

    def require(
        self, *, acr: str | None = None, max_age: int | None = None
    ) -> Callable[[Callable[P, T]], Callable[P, T | flask.Response]]:
        from stepguard.sdk.rfc9068 import TokenRequirement, bearer_token

        requirement = TokenRequirement(acr=acr, max_age=max_age)
        verifier = self.verifier

        def decorator(view: Callable[P, T]) -> Callable[P, T | flask.Response]:
            @functools.wraps(view)
            def guarded(*args: P.args, **kwargs: P.kwargs) -> T | flask.Response:
                raw = bearer_token(flask.request.headers.get("Authorization"))
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
                flask.g.access_token = token
                return view(*args, **kwargs)

            return guarded

        return decorator
