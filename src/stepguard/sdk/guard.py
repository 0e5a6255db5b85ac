"""Step-up enforcement for web applications, independent of any framework.

The framework integrations (:mod:`stepguard.sdk.starlette`, :mod:`stepguard.sdk.flask`,
:mod:`stepguard.sdk.django`) are thin: they turn their request into a :class:`RequestInfo`
and a :class:`Check`, call :func:`enforce` (sync client) or :func:`enforce_async`, and turn the
:class:`Reply` back into their response type. Everything that decides *what* to answer lives
here, once:

- ``allow`` -> :class:`Proceed` with the :class:`~stepguard.sdk.Decision`;
- ``step_up`` and a browser (``GET``/``HEAD`` whose ``Accept`` prefers ``text/html``) -> 303 to
  the hosted step-up page, with ``return_to`` (the URL to retry);
- ``step_up`` and an API caller -> 401 with the RFC 9470 ``WWW-Authenticate`` challenge and a
  JSON body naming the challenge;
- ``deny`` -> 403;
- StepGuard unreachable, slow, failing or answering nonsense -> fail closed, per route, either
  ``deny`` (503) or ``step_up`` (401 with the RFC 9470 challenge, without a challenge id).

Nothing here imports a web framework. Stdlib and the SDK only.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Final, Generic, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from stepguard.sdk._client import AsyncStepGuardClient, StepGuardClient
from stepguard.sdk._models import ChallengeRef, Decision, Requirement
from stepguard.sdk.errors import (
    InsufficientUserAuthenticationError,
    InvalidTokenError,
    IssuerUnavailableError,
    SessionInvalidError,
    StepGuardSDKError,
)
from stepguard.sdk.rfc9470 import (
    INSUFFICIENT_USER_AUTHENTICATION,
    StepUpChallenge,
    format_www_authenticate,
    step_up_challenge_from_decision,
)

__all__ = [
    "DEFAULT_CHALLENGE_PARAM",
    "DEFAULT_GRANT_FIELD",
    "DEFAULT_GRANT_HEADER",
    "Check",
    "FailMode",
    "GuardOptions",
    "Proceed",
    "ProtectedRoute",
    "Reply",
    "RequestInfo",
    "StepUpInterrupt",
    "challenge_id_from_query",
    "clean_user_agent",
    "enforce",
    "enforce_async",
    "failure_reply",
    "format_bearer_error",
    "grant_from_body",
    "outcome",
    "page_location",
    "prefers_html",
    "return_to",
    "token_replies",
]

R = TypeVar("R")

#: The request header that carries a transaction grant.
DEFAULT_GRANT_HEADER: Final = "Stepguard-Grant"
#: The form or JSON body field that carries a transaction grant.
DEFAULT_GRANT_FIELD: Final = "stepguard_grant"
#: The query parameter the hosted page adds to ``return_to`` after a satisfied step-up.
DEFAULT_CHALLENGE_PARAM: Final = "stepguard_challenge"

_DESCRIPTION: Final = "A different authentication level is required"
_UNAVAILABLE_DESCRIPTION: Final = "Step-up authentication is required (verifier unavailable)"


class FailMode(StrEnum):
    """What a route does when StepGuard cannot give an answer (unreachable, timeout, 5xx,
    an answer that does not parse). Both fail closed: neither lets the request through."""

    DENY = "deny"  # 503, the request is refused
    STEP_UP = "step_up"  # 401 with the RFC 9470 challenge, without a challenge id


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardOptions:
    """Settings shared by every route of one guard.

    ``public_url``: StepGuard's public base URL, for the step-up page when the server names
    none (``{public_url}/challenge/{id}``). ``app_url``: this application's public base URL
    (scheme and host), used to build ``return_to`` behind a proxy; ``None`` uses the request's
    own. ``on_unavailable``: the default :class:`FailMode`.
    """

    public_url: str
    app_url: str | None = None
    on_unavailable: FailMode = FailMode.DENY
    grant_header: str = DEFAULT_GRANT_HEADER
    grant_field: str = DEFAULT_GRANT_FIELD
    challenge_param: str = DEFAULT_CHALLENGE_PARAM
    challenge_path: str = "/challenge/{id}"
    error_description: str = _DESCRIPTION

    def __post_init__(self) -> None:
        for name in ("public_url", "app_url"):
            value = getattr(self, name)
            if value is None:
                continue
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{name} must be an absolute http:// or https:// URL")
        if "{id}" not in self.challenge_path:
            raise ValueError("challenge_path must contain '{id}'")
        if not isinstance(self.on_unavailable, FailMode):
            raise TypeError("on_unavailable must be a FailMode")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestInfo:
    """What the guard needs to know about the incoming request, whatever the framework."""

    method: str
    url: str  # absolute
    accept: str | None = None

    @property
    def wants_page(self) -> bool:
        """A browser navigation: ``GET``/``HEAD`` and ``Accept`` prefers ``text/html``."""
        return self.method.upper() in ("GET", "HEAD") and prefers_html(self.accept)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One question for StepGuard, for the exact transaction about to be executed."""

    session_id: str | None
    action: str
    resource: str | None = None
    context: Mapping[str, object] | None = None
    grant: str | None = field(default=None, repr=False)
    challenge_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    on_unavailable: FailMode = FailMode.DENY


@dataclass(frozen=True, slots=True, kw_only=True)
class Proceed:
    """Let the request through. ``decision`` is StepGuard's ``allow``."""

    decision: Decision


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """Answer the request with this instead of running the handler."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str
    decision: Decision | None = None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


class StepUpInterrupt(Exception):  # noqa: N818  # a control-flow signal, not an error
    """Raised by the per-call forms (``guard.check(...)``) when the request must not proceed;
    the integration's handler turns :attr:`reply` into the framework's response. If no
    handler is installed, the framework answers 500: still closed."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"step-up guard answered {reply.status}")
        self.reply = reply


ContextArg = (
    Mapping[str, object]
    | Callable[[R], Mapping[str, object] | Awaitable[Mapping[str, object]]]
    | None
)


# No slots: ``ProtectedRoute[Request](...)`` sets ``__orig_class__``, which a frozen slotted
# dataclass turns into a TypeError.
@dataclass(frozen=True, kw_only=True)
class ProtectedRoute(Generic[R]):
    """A route the middleware guards: ``path`` (exact, or a ``fnmatch`` pattern such as
    ``/admin/*``), ``methods`` (``None``: all), the StepGuard ``action``, an optional
    ``resource``, an optional ``context`` (a mapping, or a callable of the framework's request;
    async callables only in ASGI apps) and the route's :class:`FailMode` (``None``: the
    guard's default)."""

    path: str
    action: str
    methods: frozenset[str] | None = None
    resource: str | None = None
    context: ContextArg[R] = None
    on_unavailable: FailMode | None = None

    def __post_init__(self) -> None:
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return path == self.path or fnmatchcase(path, self.path)


# --------------------------------------------------------------------------------------------
# Deciding


def enforce(
    client: StepGuardClient, check: Check, request: RequestInfo, options: GuardOptions
) -> Proceed | Reply:
    """Ask StepGuard (sync client) and map the answer; never raises for StepGuard failures."""
    if check.session_id is None:
        return _session_reply("session_required", "a StepGuard session is required")
    try:
        decision = client.decide(
            check.session_id,
            check.action,
            resource=check.resource,
            context=check.context,
            ip=check.ip,
            user_agent=check.user_agent,
            grant=check.grant,
            challenge_id=check.challenge_id,
            device_id=check.device_id,
        )
    except StepGuardSDKError as error:
        return failure_reply(error, check=check, options=options)
    return outcome(decision, request=request, options=options)


async def enforce_async(
    client: AsyncStepGuardClient, check: Check, request: RequestInfo, options: GuardOptions
) -> Proceed | Reply:
    """:func:`enforce` with the async client."""
    if check.session_id is None:
        return _session_reply("session_required", "a StepGuard session is required")
    try:
        decision = await client.decide(
            check.session_id,
            check.action,
            resource=check.resource,
            context=check.context,
            ip=check.ip,
            user_agent=check.user_agent,
            grant=check.grant,
            challenge_id=check.challenge_id,
            device_id=check.device_id,
        )
    except StepGuardSDKError as error:
        return failure_reply(error, check=check, options=options)
    return outcome(decision, request=request, options=options)


def outcome(decision: Decision, *, request: RequestInfo, options: GuardOptions) -> Proceed | Reply:
    """The answer for a decision StepGuard gave."""
    if decision.allowed:
        return Proceed(decision=decision)
    if decision.step_up_required and decision.requirement is not None:
        challenge = decision.challenge
        if request.wants_page and challenge is not None:
            location = page_location(
                challenge, return_to=return_to(request, options), options=options
            )
            return Reply(
                status=303,
                headers=(("Location", location), ("Cache-Control", "no-store")),
                body=b"",
                content_type="text/plain; charset=utf-8",
                decision=decision,
            )
        header = step_up_challenge_from_decision(
            decision, error_description=options.error_description
        )
        return _step_up_reply(
            header
            or StepUpChallenge(
                acr_values=(decision.requirement.acr,),
                max_age=decision.requirement.max_age,
                error_description=options.error_description,
            ),
            challenge=challenge,
            requirement=decision.requirement,
            options=options,
            decision=decision,
        )
    # deny, or a step_up without a requirement (the SDK refuses to parse those): refuse.
    return _deny_reply(request, decision=decision)


def failure_reply(error: StepGuardSDKError, *, check: Check, options: GuardOptions) -> Reply:
    """The closed answer when StepGuard gave none we can use."""
    if isinstance(error, SessionInvalidError):
        return _session_reply("session_invalid", "the StepGuard session is invalid or expired")
    if check.on_unavailable is FailMode.STEP_UP:
        return _step_up_reply(
            StepUpChallenge(error_description=_UNAVAILABLE_DESCRIPTION),
            challenge=None,
            requirement=None,
            options=options,
            decision=None,
        )
    return _json_reply(
        503,
        {"error": "stepguard_unavailable", "message": "step-up verification is unavailable"},
        headers=(("Retry-After", "5"),),
    )


# --------------------------------------------------------------------------------------------
# Replies


def _json_reply(
    status: int,
    body: Mapping[str, object],
    *,
    headers: tuple[tuple[str, str], ...] = (),
    decision: Decision | None = None,
) -> Reply:
    return Reply(
        status=status,
        headers=(*headers, ("Cache-Control", "no-store")),
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        decision=decision,
    )


def _session_reply(code: str, message: str) -> Reply:
    return _json_reply(401, {"error": code, "message": message})


def _step_up_reply(
    challenge_header: StepUpChallenge,
    *,
    challenge: ChallengeRef | None,
    requirement: Requirement | None,
    options: GuardOptions,
    decision: Decision | None,
) -> Reply:
    page_url: str | None = None
    if challenge is not None:
        page_url = page_location(challenge, return_to=None, options=options)
    body: dict[str, object] = {
        "error": INSUFFICIENT_USER_AUTHENTICATION,
        "message": challenge_header.error_description,
        "challenge_id": None if challenge is None else challenge.id,
        "page_url": page_url,
        "requirement": None if requirement is None else _requirement_json(requirement),
    }
    return _json_reply(
        401,
        body,
        headers=(("WWW-Authenticate", format_www_authenticate(challenge_header)),),
        decision=decision,
    )


def _requirement_json(requirement: Requirement) -> dict[str, object]:
    return {
        "acr": requirement.acr,
        "max_age": requirement.max_age,
        "methods": list(requirement.methods),
        "bind": requirement.bind,
    }


_DENY_PAGE: Final = (
    b"<!doctype html><html><head><meta charset=utf-8><title>Not allowed</title></head>"
    b"<body><h1>Not allowed</h1><p>This action is not allowed.</p></body></html>"
)


def _deny_reply(request: RequestInfo, *, decision: Decision | None) -> Reply:
    if prefers_html(request.accept):
        return Reply(
            status=403,
            headers=(("Cache-Control", "no-store"),),
            body=_DENY_PAGE,
            content_type="text/html; charset=utf-8",
            decision=decision,
        )
    return _json_reply(
        403, {"error": "access_denied", "message": "this action is not allowed"}, decision=decision
    )


def format_bearer_error(error: str | None = None, description: str | None = None) -> str:
    """An RFC 6750 ``WWW-Authenticate: Bearer`` value (``error`` left out when the request
    carried no token, RFC 6750 section 3.1)."""
    params = []
    if error is not None:
        params.append(f'error="{error}"')
    if description:
        safe = "".join(ch for ch in description if " " <= ch <= "~" and ch not in '"\\')
        params.append(f'error_description="{safe}"')
    return "Bearer" + (" " + ", ".join(params) if params else "")


def token_replies(
    error: InvalidTokenError | InsufficientUserAuthenticationError | IssuerUnavailableError,
    *,
    token_present: bool,
) -> Reply:
    """The answer for a bearer-token route that refused the token: 401 (no token, RFC 6750),
    401 ``invalid_token`` (RFC 6750), 401 ``insufficient_user_authentication`` (RFC 9470),
    or 503 when the issuer's keys cannot be had."""
    if isinstance(error, InsufficientUserAuthenticationError):
        challenge = error.challenge
        return _json_reply(
            401,
            {
                "error": INSUFFICIENT_USER_AUTHENTICATION,
                "message": challenge.error_description,
                "acr_values": list(challenge.acr_values),
                "max_age": challenge.max_age,
            },
            headers=(("WWW-Authenticate", format_www_authenticate(challenge)),),
        )
    if isinstance(error, IssuerUnavailableError):
        return _json_reply(
            503,
            {"error": "temporarily_unavailable", "message": "tokens cannot be verified now"},
            headers=(("Retry-After", "5"),),
        )
    if not token_present:
        return _json_reply(
            401,
            {"error": "unauthorized", "message": "a bearer token is required"},
            headers=(("WWW-Authenticate", format_bearer_error()),),
        )
    message = str(error)
    return _json_reply(
        401,
        {"error": "invalid_token", "message": message},
        headers=(("WWW-Authenticate", format_bearer_error("invalid_token", message)),),
    )


# --------------------------------------------------------------------------------------------
# URLs


def page_location(challenge: ChallengeRef, *, return_to: str | None, options: GuardOptions) -> str:
    """The hosted step-up page for ``challenge``: the server's ``page_url`` when it sent an
    absolute http(s) one, else ``{public_url}{challenge_path}``; plus ``return_to``."""
    base = challenge.page_url.reveal() if challenge.page_url is not None else None
    if base is None or urlsplit(base).scheme not in ("http", "https"):
        path = options.challenge_path.replace("{id}", quote(challenge.id, safe=""))
        base = options.public_url.rstrip("/") + path
    if return_to is None:
        return base
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode({'return_to': return_to})}"


def return_to(request: RequestInfo, options: GuardOptions) -> str:
    """The URL to retry after the step-up: this request's, on ``app_url`` when set, without a
    previous ``stepguard_challenge`` or grant parameter."""
    parts = urlsplit(request.url)
    if options.app_url is not None:
        app = urlsplit(options.app_url)
        parts = parts._replace(scheme=app.scheme, netloc=app.netloc)
    drop = {options.challenge_param, options.grant_field}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in drop]
    return urlunsplit(parts._replace(query=urlencode(query), fragment=""))


def challenge_id_from_query(query: str, options: GuardOptions) -> str | None:
    """The challenge the hosted page sent the browser back with (one value only)."""
    values = [
        v for k, v in parse_qsl(query, keep_blank_values=True) if k == options.challenge_param
    ]
    if len(values) != 1 or not values[0]:
        return None
    return values[0]


def clean_user_agent(value: str | None) -> str | None:
    """A ``User-Agent`` StepGuard accepts (at most 512 characters, no NUL): a long or odd one
    must not turn every request into a refused decision."""
    if not value:
        return None
    return value.replace("\x00", "")[:512] or None


# --------------------------------------------------------------------------------------------
# Content negotiation and grants


def _accept_q(accept: str, wanted: str) -> float:
    """The q-value ``accept`` gives ``wanted`` (the most specific matching range wins)."""
    major = wanted.split("/", 1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        if media == wanted:
            specificity = 2
        elif media == f"{major}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if specificity > best[0]:
            best = (specificity, q)
    return best[1]


def prefers_html(accept: str | None) -> bool:
    """Whether ``Accept`` names ``text/html`` explicitly and ranks it above JSON (a browser
    navigation). ``*/*`` alone is an API client."""
    if not accept or "text/html" not in accept.lower():
        return False
    html = _accept_q(accept, "text/html")
    return html > 0 and html > _accept_q(accept, "application/json")


def grant_from_body(content_type: str | None, body: bytes, field_name: str) -> str | None:
    """A grant in a form (``application/x-www-form-urlencoded``) or JSON object body."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        if media == "application/x-www-form-urlencoded":
            values = [
                v for k, v in parse_qsl(body.decode(), keep_blank_values=True) if k == field_name
            ]
            return values[0] if len(values) == 1 and values[0] else None
        if media == "application/json" or media.endswith("+json"):
            data = json.loads(body)
            value = data.get(field_name) if isinstance(data, dict) else None
            return value if isinstance(value, str) and value else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return None
