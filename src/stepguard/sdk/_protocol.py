"""HTTP API v1 as data: how each call becomes a request, and how each response becomes a
result or an error.

Both clients are thin shells around this module: they build an :class:`Operation`, send its
request with their own ``httpx`` client, and hand the response back to
:meth:`Operation.handle`. No I/O happens here.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote

import httpx

from stepguard import __version__
from stepguard.sdk._models import (
    AuditEvent,
    AuditPage,
    ChallengeFactor,
    ChallengeInfo,
    ChallengeRef,
    ChallengeStatus,
    Decision,
    DecisionKind,
    Enrollment,
    FactorInfo,
    FactorType,
    HealthStatus,
    Requirement,
    RiskSummary,
    Secret,
    SessionInfo,
    Subject,
    VerificationResult,
)
from stepguard.sdk.errors import (
    APIError,
    ProtocolError,
    RateLimitedError,
    StepGuardSDKError,
    TransportError,
    error_class_for,
)

T = TypeVar("T")

#: Short by default: a step-up decision sits on the request path of the protected app.
#: httpx timeouts are per phase: 2 s to connect, 5 s for each read, write and pool wait.
DEFAULT_TIMEOUT: Final = httpx.Timeout(5.0, connect=2.0)

USER_AGENT: Final = f"stepguard-sdk/{__version__}"

# --------------------------------------------------------------------------------------------
# Client configuration


class _BearerAuth(httpx.Auth):
    """Adds the API key per request, so it never sits in the client's default headers."""

    def __init__(self, api_key: Secret) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(api_key=Secret('**********'))"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Validated constructor arguments, shared by both clients."""

    base_url: httpx.URL
    api_key: Secret
    timeout: httpx.Timeout

    @classmethod
    def create(
        cls,
        base_url: str,
        api_key: str | Secret,
        *,
        timeout: float | httpx.Timeout,
        allow_insecure_http: bool,
    ) -> ClientConfig:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"base_url is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http:// or https:// URL")
        if url.query or url.fragment or url.userinfo:
            raise ValueError("base_url must not contain credentials, a query or a fragment")
        if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
            raise ValueError(
                "base_url uses plain http to a non-loopback host, which would send the API key "
                "in clear text; use https, or pass allow_insecure_http=True for a trusted "
                "private network"
            )
        key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        raw = key.reveal()
        if not raw or any(not ("\x21" <= ch <= "\x7e") for ch in raw):
            raise ValueError("api_key must be a non-empty string of visible ASCII characters")
        if isinstance(timeout, bool) or not isinstance(timeout, httpx.Timeout | int | float):
            raise TypeError("timeout must be a number of seconds or an httpx.Timeout")
        return cls(
            base_url=url,
            api_key=key,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
        )

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client`` and ``httpx.AsyncClient`` alike."""
        return {
            "base_url": self.base_url,
            "auth": _BearerAuth(self.api_key),
            "timeout": self.timeout,
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
            "follow_redirects": False,
        }

    def describe(self, class_name: str) -> str:
        return f"{class_name}(base_url={str(self.base_url)!r}, api_key={self.api_key!r})"


# --------------------------------------------------------------------------------------------
# Operations


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """One API call: the request to send and how to read its response."""

    method: str
    path: str
    handle_response: Callable[[httpx.Response], T]
    params: Mapping[str, str] | None = None
    body: Mapping[str, object] | None = None

    def build_request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return client.build_request(self.method, self.path, params=self.params, json=self.body)

    def handle(self, response: httpx.Response) -> T:
        return self.handle_response(response)


def translate_transport_error(exc: httpx.RequestError) -> StepGuardSDKError:
    """The SDK error for an httpx failure that produced no usable response."""
    if isinstance(exc, httpx.DecodingError):
        return ProtocolError("the response body could not be decoded")
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return TransportError(f"request to StepGuard {kind}: {type(exc).__name__}: {exc}")


def _segment(name: str, value: str) -> str:
    """One path segment, percent-encoded. Dot segments would be resolved away by URL
    normalisation and address a different resource, so they are refused."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str")
    if value in ("", ".", ".."):
        raise ValueError(f"{name} must be a non-empty id other than '.' and '..'")
    return quote(value, safe="")


def _strings(name: str, values: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{name} must be a sequence of str, not a single str")
    return list(values)


def _timestamp(name: str, value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
    return value.isoformat()


def _reveal(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _without_none(**fields: object) -> dict[str, object]:
    return {key: value for key, value in fields.items() if value is not None}


def put_subject(
    subject_id: str,
    *,
    email: str | None,
    phone: str | None,
    groups: Sequence[str] | None,
) -> Operation[Subject]:
    return Operation(
        "PUT",
        f"/v1/subjects/{_segment('subject_id', subject_id)}",
        _json(_subject),
        body=_without_none(
            email=email,
            phone=phone,
            groups=None if groups is None else _strings("groups", groups),
        ),
    )


def get_subject(subject_id: str) -> Operation[Subject]:
    return Operation("GET", f"/v1/subjects/{_segment('subject_id', subject_id)}", _json(_subject))


def delete_subject(subject_id: str) -> Operation[None]:
    return Operation("DELETE", f"/v1/subjects/{_segment('subject_id', subject_id)}", _no_content)


def create_session(
    subject_id: str,
    *,
    amr: Sequence[str],
    ip: str | None,
    user_agent: str | None,
    ttl_seconds: int | None,
    device_id: str | None = None,
) -> Operation[SessionInfo]:
    _segment("subject_id", subject_id)
    return Operation(
        "POST",
        "/v1/sessions",
        _json(_session),
        body=_without_none(
            subject_id=subject_id,
            amr=_strings("amr", amr),
            ip=ip,
            user_agent=user_agent,
            ttl_seconds=ttl_seconds,
            device_id=device_id,
        ),
    )


def get_session(session_id: str) -> Operation[SessionInfo]:
    return Operation("GET", f"/v1/sessions/{_segment('session_id', session_id)}", _json(_session))


def revoke_session(session_id: str) -> Operation[None]:
    return Operation("DELETE", f"/v1/sessions/{_segment('session_id', session_id)}", _no_content)


def decide(
    session_id: str,
    action: str,
    *,
    resource: str | None,
    context: Mapping[str, object] | None,
    ip: str | None,
    user_agent: str | None,
    grant: str | Secret | None,
    challenge_id: str | None = None,
    device_id: str | None = None,
) -> Operation[Decision]:
    _segment("session_id", session_id)
    return Operation(
        "POST",
        "/v1/decisions",
        _json(_decision),
        body=_without_none(
            session_id=session_id,
            action=action,
            resource=resource,
            context=None if context is None else dict(context),
            ip=ip,
            user_agent=user_agent,
            grant=None if grant is None else _reveal(grant),
            challenge_id=challenge_id,
            device_id=device_id,
        ),
    )


def get_challenge(challenge_id: str) -> Operation[ChallengeInfo]:
    return Operation(
        "GET", f"/v1/challenges/{_segment('challenge_id', challenge_id)}", _json(_challenge)
    )


def verify(challenge_id: str, factor_id: str, code: str | Secret) -> Operation[VerificationResult]:
    return Operation(
        "POST",
        f"/v1/challenges/{_segment('challenge_id', challenge_id)}/verifications",
        _json(_verification),
        body={"factor_id": factor_id, "code": _reveal(code)},
    )


def list_factors(subject_id: str) -> Operation[tuple[FactorInfo, ...]]:
    return Operation(
        "GET",
        f"/v1/subjects/{_segment('subject_id', subject_id)}/factors",
        _json(lambda r: r.children("factors", _factor)),
    )


def enroll_factor(
    subject_id: str,
    factor_type: FactorType | str,
    *,
    label: str | None,
    session_id: str | None,
    algorithm: str | None,
    digits: int | None,
    period: int | None,
) -> Operation[Enrollment]:
    return Operation(
        "POST",
        f"/v1/subjects/{_segment('subject_id', subject_id)}/factors",
        _json(_enrollment),
        body=_without_none(
            type=str(factor_type),
            label=label,
            session_id=session_id,
            algorithm=algorithm,
            digits=digits,
            period=period,
        ),
    )


def confirm_factor(
    subject_id: str, factor_id: str, code: str | Secret, *, session_id: str | None
) -> Operation[FactorInfo]:
    return Operation(
        "POST",
        f"/v1/subjects/{_segment('subject_id', subject_id)}/factors/"
        f"{_segment('factor_id', factor_id)}/confirm",
        _json(lambda r: r.child("factor", _factor)),
        body=_without_none(code=_reveal(code), session_id=session_id),
    )


def remove_factor(subject_id: str, factor_id: str, *, session_id: str | None) -> Operation[None]:
    return Operation(
        "DELETE",
        f"/v1/subjects/{_segment('subject_id', subject_id)}/factors/"
        f"{_segment('factor_id', factor_id)}",
        _no_content,
        params=None if session_id is None else {"session_id": session_id},
    )


def evaluate_policy(
    action: str,
    *,
    resource: str | None,
    context: Mapping[str, object] | None,
    groups: Sequence[str] | None,
    subject: Mapping[str, object] | None,
    session: Mapping[str, object] | None,
    risk: Mapping[str, object] | None,
    request: Mapping[str, object] | None,
) -> Operation[Decision]:
    def copy(value: Mapping[str, object] | None) -> dict[str, object] | None:
        return None if value is None else dict(value)

    return Operation(
        "POST",
        "/v1/policy/evaluate",
        _json(_evaluation),
        body=_without_none(
            action=action,
            resource=resource,
            context=copy(context),
            groups=None if groups is None else _strings("groups", groups),
            subject=copy(subject),
            session=copy(session),
            risk=copy(risk),
            request=copy(request),
        ),
    )


def audit_events(
    *,
    subject_id: str | None,
    event_type: str | None,
    since: datetime | None,
    until: datetime | None,
    after_seq: int | None,
    limit: int | None,
) -> Operation[AuditPage]:
    params: dict[str, str] = {}
    if subject_id is not None:
        params["subject_id"] = subject_id
    if event_type is not None:
        params["type"] = event_type
    if since is not None:
        params["since"] = _timestamp("since", since)
    if until is not None:
        params["until"] = _timestamp("until", until)
    if after_seq is not None:
        params["after_seq"] = str(int(after_seq))
    if limit is not None:
        params["limit"] = str(int(limit))
    return Operation("GET", "/v1/audit", _json(_audit_page), params=params or None)


def health() -> Operation[HealthStatus]:
    return Operation("GET", "/healthz", _health)


def ready() -> Operation[HealthStatus]:
    return Operation("GET", "/readyz", _health)


# --------------------------------------------------------------------------------------------
# Responses


def _json(parse: Callable[[_Fields], T]) -> Callable[[httpx.Response], T]:
    def handle(response: httpx.Response) -> T:
        _raise_for_error(response)
        return parse(_Fields(_json_object(response), "", response.status_code))

    return handle


def _no_content(response: httpx.Response) -> None:
    _raise_for_error(response)


def _health(response: httpx.Response) -> HealthStatus:
    if response.status_code not in (200, 503):
        _raise_for_error(response)
        raise ProtocolError(
            f"unexpected HTTP {response.status_code} from a health endpoint",
            status=response.status_code,
        )
    try:
        details = _json_object(response)
    except ProtocolError:
        details = {}
    return HealthStatus(
        ok=response.status_code == 200, status=response.status_code, details=details
    )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        value = json.loads(response.content)
    except (ValueError, RecursionError):
        raise ProtocolError(
            f"HTTP {response.status_code} response is not valid JSON", status=response.status_code
        ) from None
    if not isinstance(value, dict):
        raise ProtocolError(
            f"HTTP {response.status_code} response is not a JSON object",
            status=response.status_code,
        )
    return value


def _raise_for_error(response: httpx.Response) -> None:
    """Raise the SDK error for a non-2xx response; return for 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status < 400:
        raise ProtocolError(f"unexpected HTTP {status} (redirects are not followed)", status=status)
    try:
        body = _json_object(response)
    except ProtocolError:
        raise ProtocolError(
            f"HTTP {status} without a StepGuard error body (a proxy in between?)", status=status
        ) from None
    code = body.get("error")
    message = body.get("message")
    if not isinstance(code, str) or not code:
        raise ProtocolError(f"HTTP {status} error body has no 'error' code", status=status)
    if not isinstance(message, str):
        message = ""
    details = {k: v for k, v in body.items() if k not in ("error", "message")}
    cls = error_class_for(code)
    error: APIError
    if cls is RateLimitedError:
        error = RateLimitedError(
            status,
            code,
            message,
            details=details,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    else:
        error = cls(status, code, message, details=details)
    raise error


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in its delay-seconds form (dates are ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class _Fields:
    """Typed access to one JSON object of a response, with clear errors naming the field.

    Missing or mistyped required fields raise :class:`ProtocolError`; unknown fields are
    ignored (a newer server may add some). Optional fields may be absent or ``null``.
    Values are never echoed in error messages: they may be secrets.
    """

    __slots__ = ("_data", "_prefix", "_status")

    def __init__(self, data: Mapping[str, Any], prefix: str, status: int) -> None:
        self._data = data
        self._prefix = prefix
        self._status = status

    def problem(self, message: str) -> ProtocolError:
        return ProtocolError(message, status=self._status)

    def _fail(self, key: str, problem: str) -> ProtocolError:
        return self.problem(f"response field '{self._prefix}{key}' {problem}")

    def _present(self, key: str) -> bool:
        return self._data.get(key) is not None

    def _required(self, key: str) -> Any:
        if not self._present(key):
            raise self._fail(key, "is missing")
        return self._data[key]

    def _typed(self, key: str, expected: tuple[type, ...], name: str) -> Any:
        value = self._required(key)
        if isinstance(value, bool) and bool not in expected:
            raise self._fail(key, f"must be {name}, not a boolean")
        if not isinstance(value, expected):
            raise self._fail(key, f"must be {name}, not {type(value).__name__}")
        return value

    def text(self, key: str) -> str:
        value: str = self._typed(key, (str,), "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return self.text(key) if self._present(key) else None

    def integer(self, key: str) -> int:
        value: int = self._typed(key, (int,), "an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return self.integer(key) if self._present(key) else None

    def number(self, key: str) -> float:
        value: float = self._typed(key, (int, float), "a number")
        return float(value)

    def flag(self, key: str) -> bool:
        value: bool = self._typed(key, (bool,), "a boolean")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        values: list[Any] = self._typed(key, (list,), "a list")
        if not all(isinstance(item, str) for item in values):
            raise self._fail(key, "must be a list of strings")
        return tuple(values)

    def opt_texts(self, key: str) -> tuple[str, ...]:
        return self.texts(key) if self._present(key) else ()

    def timestamp(self, key: str) -> datetime:
        text = self.text(key)
        try:
            # RFC 3339 allows a lower-case "t" and "z"; fromisoformat wants them upper-case.
            value = datetime.fromisoformat(text.upper())
        except ValueError:
            raise self._fail(key, "is not an RFC 3339 date-time") from None
        if value.tzinfo is None or value.utcoffset() is None:
            raise self._fail(key, "is not an RFC 3339 date-time with a time zone offset")
        return value

    def opt_timestamp(self, key: str) -> datetime | None:
        return self.timestamp(key) if self._present(key) else None

    def mapping(self, key: str) -> dict[str, Any]:
        value: dict[str, Any] = self._typed(key, (dict,), "an object")
        return value

    def opt_mapping(self, key: str) -> dict[str, Any]:
        return self.mapping(key) if self._present(key) else {}

    def child(self, key: str, parse: Callable[[_Fields], T]) -> T:
        return parse(_Fields(self.mapping(key), f"{self._prefix}{key}.", self._status))

    def opt_child(self, key: str, parse: Callable[[_Fields], T]) -> T | None:
        return self.child(key, parse) if self._present(key) else None

    def children(self, key: str, parse: Callable[[_Fields], T]) -> tuple[T, ...]:
        items: list[Any] = self._typed(key, (list,), "a list")
        result: list[T] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self._fail(f"{key}[{index}]", "must be an object")
            result.append(parse(_Fields(item, f"{self._prefix}{key}[{index}].", self._status)))
        return tuple(result)

    def choice(self, key: str, enum: Callable[[str], T], allowed: Sequence[str]) -> T:
        text = self.text(key)
        if text not in allowed:
            raise self._fail(key, f"must be one of: {', '.join(allowed)}")
        return enum(text)


def _subject(f: _Fields) -> Subject:
    return Subject(
        id=f.text("id"),
        email=f.opt_text("email"),
        phone=f.opt_text("phone"),
        groups=f.opt_texts("groups"),
        created_at=f.timestamp("created_at"),
        updated_at=f.timestamp("updated_at"),
    )


def _session(f: _Fields) -> SessionInfo:
    return SessionInfo(
        session_id=f.text("session_id"),
        subject_id=f.text("subject_id"),
        acr=f.opt_text("acr"),
        amr=f.opt_texts("amr"),
        auth_time=f.opt_timestamp("auth_time"),
        expires_at=f.timestamp("expires_at"),
    )


def _requirement(f: _Fields) -> Requirement:
    return Requirement(
        acr=f.text("acr"),
        max_age=f.opt_integer("max_age"),
        methods=f.opt_texts("methods"),
        bind=f.flag("bind"),
    )


def _risk(f: _Fields) -> RiskSummary:
    return RiskSummary(
        score=f.number("score"), level=f.text("level"), reasons=f.opt_texts("reasons")
    )


def _challenge_ref(f: _Fields) -> ChallengeRef:
    page_url = f.opt_text("page_url")
    return ChallengeRef(
        id=f.text("id"),
        expires_at=f.timestamp("expires_at"),
        page_url=None if page_url is None else Secret(page_url),
    )


_DECISION_KINDS: Final = tuple(kind.value for kind in DecisionKind)
_CHALLENGE_STATUSES: Final = tuple(status.value for status in ChallengeStatus)


def _decision_fields(f: _Fields, *, risk: RiskSummary | None) -> Decision:
    decision = Decision(
        decision=f.choice("decision", DecisionKind, _DECISION_KINDS),
        rule=f.text("rule"),
        reasons=f.opt_texts("reasons"),
        risk=risk,
        requirement=f.opt_child("requirement", _requirement),
        challenge=f.opt_child("challenge", _challenge_ref),
        www_authenticate=f.opt_text("www_authenticate"),
    )
    if decision.step_up_required and decision.requirement is None:
        raise f.problem("a step_up decision must carry a 'requirement'")
    return decision


def _decision(f: _Fields) -> Decision:
    return _decision_fields(f, risk=f.child("risk", _risk))


def _evaluation(f: _Fields) -> Decision:
    return _decision_fields(f, risk=f.opt_child("risk", _risk))


def _challenge_factor(f: _Fields) -> ChallengeFactor:
    return ChallengeFactor(id=f.text("id"), type=f.text("type"), label=f.opt_text("label") or "")


def _challenge(f: _Fields) -> ChallengeInfo:
    return ChallengeInfo(
        id=f.text("id"),
        status=f.choice("status", ChallengeStatus, _CHALLENGE_STATUSES),
        action=f.text("action"),
        summary=f.opt_text("summary") or "",
        requirement=f.child("requirement", _requirement),
        factors=f.children("factors", _challenge_factor),
        expires_at=f.timestamp("expires_at"),
    )


def _verification(f: _Fields) -> VerificationResult:
    status = f.choice("status", ChallengeStatus, _CHALLENGE_STATUSES)
    if status is not ChallengeStatus.SATISFIED:
        # Success means satisfied; anything else must never look like a pass.
        raise f.problem("a successful verification must report status 'satisfied'")
    grant = f.opt_text("grant")
    return VerificationResult(
        status=status,
        session=f.child("session", _session),
        grant=None if grant is None else Secret(grant),
        grant_expires_at=f.opt_timestamp("grant_expires_at"),
    )


def _factor(f: _Fields) -> FactorInfo:
    return FactorInfo(
        id=f.text("id"),
        type=f.text("type"),
        label=f.opt_text("label") or "",
        status=f.text("status"),
        created_at=f.timestamp("created_at"),
        confirmed_at=f.opt_timestamp("confirmed_at"),
        last_used_at=f.opt_timestamp("last_used_at"),
    )


def _enrollment(f: _Fields) -> Enrollment:
    uri = f.opt_text("otpauth_uri")
    qr_svg = f.opt_text("qr_svg")
    return Enrollment(
        factor=f.child("factor", _factor),
        otpauth_uri=None if uri is None else Secret(uri),
        qr_svg=None if qr_svg is None else Secret(qr_svg),
        recovery_codes=tuple(Secret(code) for code in f.opt_texts("recovery_codes")),
    )


def _audit_event(f: _Fields) -> AuditEvent:
    return AuditEvent(
        seq=f.integer("seq"),
        type=f.text("type"),
        at=f.timestamp("at"),
        outcome=f.text("outcome"),
        subject_id=f.opt_text("subject_id"),
        session_id=f.opt_text("session_id"),
        actor=f.opt_text("actor"),
        details=f.opt_mapping("details"),
        hash=f.text("hash"),
    )


def _audit_page(f: _Fields) -> AuditPage:
    return AuditPage(
        events=f.children("events", _audit_event), next_after_seq=f.opt_integer("next_after_seq")
    )
