"""The SDK's public surface, and the clients' request building, response parsing and error
mapping.

The server is not involved: ``httpx.MockTransport`` plays it, because what is under test is
how the client reads answers (the lead's integration tests run the clients against the real
server).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import httpx
import pytest

import stepguard.sdk as sdk
from stepguard.sdk import (
    APIError,
    AsyncStepGuardClient,
    AuditPage,
    ChallengeInfo,
    ChallengeStatus,
    Decision,
    DecisionKind,
    Enrollment,
    FactorInfo,
    HealthStatus,
    ProtocolError,
    RateLimitedError,
    Secret,
    SessionInfo,
    StepGuardClient,
    StepGuardSDKError,
    Subject,
    TransportError,
    VerificationResult,
)

API_KEY = "sgk_live_0123456789abcdefSUPERSECRET"
BASE_URL = "https://stepguard.test"

# --------------------------------------------------------------------------------------------
# The public surface

EXPECTED_PUBLIC_API = {
    # clients
    "StepGuardClient",
    "AsyncStepGuardClient",
    "DEFAULT_TIMEOUT",
    # results
    "Secret",
    "Subject",
    "SessionInfo",
    "Decision",
    "DecisionKind",
    "Requirement",
    "RiskSummary",
    "ChallengeRef",
    "ChallengeInfo",
    "ChallengeFactor",
    "ChallengeStatus",
    "VerificationResult",
    "FactorInfo",
    "FactorType",
    "Enrollment",
    "AuditEvent",
    "AuditPage",
    "HealthStatus",
    # errors
    "StepGuardSDKError",
    "APIError",
    "TransportError",
    "ProtocolError",
    "InvalidRequestError",
    "NotFoundError",
    "ConflictError",
    "UnauthenticatedError",
    "StepUpRequiredError",
    "VerificationFailedError",
    "SessionInvalidError",
    "PolicyInvalidError",
    "PolicyEvaluationFailedError",
    "StorageUnavailableError",
    "InternalServerError",
    "PayloadTooLargeError",
    "MethodNotAllowedError",
    "RateLimitedError",
    "InsufficientUserAuthenticationError",
    "InvalidTokenError",
    "IssuerUnavailableError",
    # the caller's side of RFC 9470 for httpx
    "StepUpAuth",
    # RFC 9470
    "StepUpChallenge",
    "format_www_authenticate",
    "parse_www_authenticate",
    "step_up_challenge_from_decision",
}

ERROR_CODES = {
    "invalid_request": "InvalidRequestError",
    "not_found": "NotFoundError",
    "conflict": "ConflictError",
    "unauthenticated": "UnauthenticatedError",
    "step_up_required": "StepUpRequiredError",
    "verification_failed": "VerificationFailedError",
    "session_invalid": "SessionInvalidError",
    "policy_invalid": "PolicyInvalidError",
    "policy_evaluation_failed": "PolicyEvaluationFailedError",
    "storage_unavailable": "StorageUnavailableError",
    "internal_error": "InternalServerError",
    "payload_too_large": "PayloadTooLargeError",
    "method_not_allowed": "MethodNotAllowedError",
    "rate_limited": "RateLimitedError",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(sdk.__all__) == EXPECTED_PUBLIC_API
    assert len(sdk.__all__) == len(set(sdk.__all__)), "duplicates in __all__"


@pytest.mark.parametrize("name", sorted(EXPECTED_PUBLIC_API))
def test_every_public_name_is_importable(name: str) -> None:
    assert getattr(sdk, name) is not None


def test_each_public_name_is_defined_once() -> None:
    """Public names live in private modules (or errors/rfc9470) and are re-exported as-is."""
    for name in sdk.__all__:
        obj = getattr(sdk, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__.startswith("stepguard.sdk."), name
            assert obj.__name__ == name


def test_every_error_is_in_the_one_tree() -> None:
    for code, name in ERROR_CODES.items():
        cls = getattr(sdk, name)
        assert issubclass(cls, APIError)
        assert cls.code == code
    assert issubclass(APIError, StepGuardSDKError)
    assert issubclass(TransportError, StepGuardSDKError)
    assert issubclass(ProtocolError, StepGuardSDKError)


_IMPORT_PROBE = """
import sys
import stepguard.sdk
import stepguard.sdk.rfc9470
import stepguard.sdk.errors
forbidden = ("stepguard.core", "stepguard.service", "stepguard.adapters", "stepguard.cli",
             "stepguard.bootstrap", "stepguard.settings", "fastapi", "starlette", "sqlalchemy")
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(",".join(loaded))
"""


def test_importing_the_sdk_loads_no_server_code() -> None:
    """Checked in a fresh interpreter: this test process has imported other things."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# --------------------------------------------------------------------------------------------
# A scripted server and both clients behind one interface

T0 = "2025-03-04T05:06:07Z"
T0_DT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
T1 = "2025-03-04T06:06:07.250000+01:00"
T1_DT = datetime(2025, 3, 4, 6, 6, 7, 250000, tzinfo=timezone(timedelta(hours=1)))

SUBJECT = {
    "id": "alice",
    "email": "alice@example.com",
    "phone": None,
    "groups": ["staff", "finance"],
    "created_at": T0,
    "updated_at": T1,
}
SESSION = {
    "session_id": "ses_1",
    "subject_id": "alice",
    "acr": "aal2",
    "amr": ["pwd", "otp"],
    "auth_time": T0,
    "expires_at": T1,
}
FRESH_SESSION = {
    "session_id": "ses_1",
    "subject_id": "alice",
    "acr": None,
    "amr": ["pwd"],
    "auth_time": None,
    "expires_at": T1,
}
REQUIREMENT = {"acr": "aal2", "max_age": 300, "methods": ["totp"], "bind": True}
STEP_UP = {
    "decision": "step_up",
    "rule": "large-transfer",
    "reasons": ["amount above 1000"],
    "risk": {"score": 0.42, "level": "medium", "reasons": ["new device"]},
    "requirement": REQUIREMENT,
    "challenge": {"id": "chl_1", "expires_at": T1},
    "www_authenticate": 'Bearer error="insufficient_user_authentication", acr_values="aal2"',
}
ALLOW = {
    "decision": "allow",
    "rule": "default",
    "reasons": [],
    "risk": {"score": 0, "level": "low", "reasons": []},
}
EVALUATION = {"decision": "deny", "rule": "blocked-country", "reasons": ["country"]}
CHALLENGE = {
    "id": "chl_1",
    "status": "pending",
    "action": "payments.transfer",
    "summary": "Transfer 5000 EUR",
    "requirement": {"acr": "aal2", "max_age": None, "methods": [], "bind": False},
    "factors": [{"id": "fac_1", "type": "totp", "label": "Phone"}],
    "expires_at": T1,
}
GRANT = "grt_single_use_GRANTSECRET"
VERIFICATION = {
    "status": "satisfied",
    "session": SESSION,
    "grant": GRANT,
    "grant_expires_at": T1,
}
FACTOR = {
    "id": "fac_1",
    "type": "totp",
    "label": "Phone",
    "status": "active",
    "created_at": T0,
    "confirmed_at": T1,
    "last_used_at": None,
}
PENDING_FACTOR = {**FACTOR, "status": "pending", "confirmed_at": None}
OTPAUTH = "otpauth://totp/StepGuard:alice?secret=JBSWY3DPEHPK3PXP&issuer=StepGuard"
ENROLLMENT = {"factor": PENDING_FACTOR, "otpauth_uri": OTPAUTH, "qr_svg": "<svg>QR</svg>"}
RECOVERY_ENROLLMENT = {
    "factor": {**FACTOR, "id": "fac_2", "type": "recovery_code", "label": ""},
    "recovery_codes": ["RCODE-1111", "RCODE-2222"],
}
AUDIT = {
    "events": [
        {
            "seq": 7,
            "type": "decision.made",
            "at": T0,
            "outcome": "step_up",
            "subject_id": "alice",
            "session_id": "ses_1",
            "actor": "key_1",
            "details": {"rule": "large-transfer", "amount": 5000},
            "hash": "ab" * 32,
        }
    ],
    "next_after_seq": 7,
}


def with_unknown_fields(value: Any) -> Any:
    """The same document with an unknown field added to every object (a newer server).

    Audit ``details`` are free-form data, not schema, so they are left alone.
    """
    if isinstance(value, dict):
        out = {
            key: item if key == "details" else with_unknown_fields(item)
            for key, item in value.items()
        }
        out["x_added_in_v1_9"] = {"nested": [1, 2, 3]}
        return out
    if isinstance(value, list):
        return [with_unknown_fields(item) for item in value]
    return value


@dataclass
class ScriptedServer:
    """Answers every request with the next scripted response and records the requests."""

    responses: list[httpx.Response] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def reply(
        self,
        status: int = 200,
        body: object = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if content is None and body is not None:
            self.responses.append(httpx.Response(status, json=body, headers=headers))
        else:
            self.responses.append(httpx.Response(status, content=content or b"", headers=headers))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


Flavor = Literal["sync", "async"]


class Harness:
    """Calls a method by name on the sync or the async client, so each test runs on both."""

    def __init__(self, flavor: Flavor, server: ScriptedServer, base_url: str = BASE_URL) -> None:
        self.flavor = flavor
        self.server = server
        transport = httpx.MockTransport(server)
        self.client: StepGuardClient | AsyncStepGuardClient
        if flavor == "sync":
            self.client = StepGuardClient(base_url, API_KEY, transport=transport)
        else:
            self.client = AsyncStepGuardClient(base_url, API_KEY, transport=transport)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        if self.flavor == "async":
            return await result
        return result

    async def close(self) -> None:
        if isinstance(self.client, AsyncStepGuardClient):
            await self.client.aclose()
        else:
            self.client.close()


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> Flavor:
    value: Flavor = request.param
    return value


@pytest.fixture
def server() -> ScriptedServer:
    return ScriptedServer()


@pytest.fixture
async def sg(flavor: Flavor, server: ScriptedServer) -> AsyncIterator[Harness]:
    harness = Harness(flavor, server)
    yield harness
    await harness.close()


# --------------------------------------------------------------------------------------------
# Requests: every method builds the documented request


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    http_method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    status: int
    response: Any


CALLS = [
    Call("put_subject", ("alice",), {"email": "alice@example.com", "groups": ["staff"]},
         "PUT", "/v1/subjects/alice", {}, {"email": "alice@example.com", "groups": ["staff"]},
         200, SUBJECT),
    Call("get_subject", ("alice",), {}, "GET", "/v1/subjects/alice", {}, None, 200, SUBJECT),
    Call("delete_subject", ("alice",), {}, "DELETE", "/v1/subjects/alice", {}, None, 204, None),
    Call("create_session", ("alice",), {"amr": ["pwd"], "ip": "203.0.113.9", "ttl_seconds": 60},
         "POST", "/v1/sessions", {},
         {"subject_id": "alice", "amr": ["pwd"], "ip": "203.0.113.9", "ttl_seconds": 60},
         201, FRESH_SESSION),
    Call("get_session", ("ses_1",), {}, "GET", "/v1/sessions/ses_1", {}, None, 200, SESSION),
    Call("revoke_session", ("ses_1",), {}, "DELETE", "/v1/sessions/ses_1", {}, None, 204, None),
    Call("decide", ("ses_1", "payments.transfer"),
         {"resource": "acct:9", "context": {"amount": 5000}, "grant": Secret(GRANT)},
         "POST", "/v1/decisions", {},
         {"session_id": "ses_1", "action": "payments.transfer", "resource": "acct:9",
          "context": {"amount": 5000}, "grant": GRANT},
         200, STEP_UP),
    Call("get_challenge", ("chl_1",), {}, "GET", "/v1/challenges/chl_1", {}, None, 200,
         CHALLENGE),
    Call("verify", ("chl_1", "fac_1", "123456"), {}, "POST", "/v1/challenges/chl_1/verifications",
         {}, {"factor_id": "fac_1", "code": "123456"}, 200, VERIFICATION),
    Call("list_factors", ("alice",), {}, "GET", "/v1/subjects/alice/factors", {}, None, 200,
         {"factors": [FACTOR]}),
    Call("enroll_factor", ("alice", sdk.FactorType.TOTP), {"label": "Phone", "session_id": "s"},
         "POST", "/v1/subjects/alice/factors", {},
         {"type": "totp", "label": "Phone", "session_id": "s"}, 201, ENROLLMENT),
    Call("confirm_factor", ("alice", "fac_1", "654321"), {}, "POST",
         "/v1/subjects/alice/factors/fac_1/confirm", {}, {"code": "654321"}, 200,
         {"factor": FACTOR}),
    Call("remove_factor", ("alice", "fac_1"), {"session_id": "ses_1"}, "DELETE",
         "/v1/subjects/alice/factors/fac_1", {"session_id": "ses_1"}, None, 204, None),
    Call("evaluate_policy", ("payments.transfer",), {"groups": ["staff"], "risk": {"level": "low"}},
         "POST", "/v1/policy/evaluate", {},
         {"action": "payments.transfer", "groups": ["staff"], "risk": {"level": "low"}},
         200, EVALUATION),
    Call("audit_events", (), {"subject_id": "alice", "event_type": "decision.made",
                              "since": T0_DT, "after_seq": 3, "limit": 50},
         "GET", "/v1/audit",
         {"subject_id": "alice", "type": "decision.made", "since": "2025-03-04T05:06:07+00:00",
          "after_seq": "3", "limit": "50"},
         None, 200, AUDIT),
    Call("health", (), {}, "GET", "/healthz", {}, None, 200, {"status": "ok"}),
    Call("ready", (), {}, "GET", "/readyz", {}, None, 200, {"status": "ready"}),
]  # fmt: skip


def test_every_client_method_is_covered() -> None:
    methods = {name for name in vars(StepGuardClient) if not name.startswith("_")} - {"close"}
    assert methods == {call.method for call in CALLS}
    async_methods = {name for name in vars(AsyncStepGuardClient) if not name.startswith("_")}
    assert async_methods - {"aclose"} == methods


@pytest.mark.parametrize("call", CALLS, ids=[call.method for call in CALLS])
async def test_each_method_sends_the_documented_request(
    sg: Harness, server: ScriptedServer, call: Call
) -> None:
    server.reply(call.status, call.response)
    await sg.call(call.method, *call.args, **call.kwargs)
    request = server.last
    assert request.method == call.http_method
    assert request.url.path == call.path
    assert dict(request.url.params) == call.query
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"].startswith("stepguard-sdk/")
    if call.body is None:
        assert request.content == b""
    else:
        assert request.headers["Content-Type"] == "application/json"
        assert server.last_json() == call.body


@pytest.mark.parametrize("call", CALLS, ids=[call.method for call in CALLS])
async def test_unknown_response_fields_are_ignored(
    sg: Harness, server: ScriptedServer, call: Call
) -> None:
    """A newer server may add fields anywhere; the result is the same."""
    server.reply(call.status, call.response)
    plain = await sg.call(call.method, *call.args, **call.kwargs)
    server.reply(call.status, with_unknown_fields(call.response))
    extended = await sg.call(call.method, *call.args, **call.kwargs)
    if isinstance(plain, HealthStatus):
        return  # health details are the raw body by design
    assert _comparable(extended) == _comparable(plain)


def _comparable(value: Any) -> Any:
    """Secrets compare by identity; reveal them for the comparison."""
    if isinstance(value, Enrollment):
        return (
            value.factor,
            value.otpauth_uri and value.otpauth_uri.reveal(),
            value.qr_svg and value.qr_svg.reveal(),
            [code.reveal() for code in value.recovery_codes],
        )
    if isinstance(value, VerificationResult):
        return (value.status, value.session, value.grant and value.grant.reveal())
    return value


async def test_ids_are_percent_encoded_into_one_path_segment(
    sg: Harness, server: ScriptedServer
) -> None:
    server.reply(200, SUBJECT)
    await sg.call("get_subject", "a/b?c#d e%")
    assert server.last.url.raw_path == b"/v1/subjects/a%2Fb%3Fc%23d%20e%25"


@pytest.mark.parametrize("bad", ["", ".", ".."])
async def test_ids_that_would_change_the_path_are_refused(sg: Harness, bad: str) -> None:
    with pytest.raises(ValueError, match="subject_id"):
        await sg.call("get_subject", bad)


async def test_a_single_string_is_not_a_list_of_methods(sg: Harness) -> None:
    with pytest.raises(TypeError, match="amr"):
        await sg.call("create_session", "alice", amr="pwd")


async def test_audit_time_bounds_must_be_aware(sg: Harness) -> None:
    with pytest.raises(ValueError, match="aware"):
        await sg.call("audit_events", since=datetime(2025, 1, 1))  # noqa: DTZ001  # on purpose


async def test_a_base_url_path_prefix_is_kept(flavor: Flavor, server: ScriptedServer) -> None:
    harness = Harness(flavor, server, base_url="https://gw.test/stepguard/")
    try:
        server.reply(200, SUBJECT)
        await harness.call("get_subject", "alice")
        assert str(server.last.url) == "https://gw.test/stepguard/v1/subjects/alice"
    finally:
        await harness.close()


# --------------------------------------------------------------------------------------------
# Results: each type is parsed completely, datetimes are aware


async def test_subject(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, SUBJECT)
    subject = await sg.call("get_subject", "alice")
    assert subject == Subject(
        id="alice",
        email="alice@example.com",
        phone=None,
        groups=("staff", "finance"),
        created_at=T0_DT,
        updated_at=T1_DT,
    )
    assert subject.created_at.tzinfo is not None


async def test_session_with_and_without_step_up(sg: Harness, server: ScriptedServer) -> None:
    server.reply(201, FRESH_SESSION)
    fresh = await sg.call("create_session", "alice", amr=["pwd"])
    assert fresh == SessionInfo(
        session_id="ses_1",
        subject_id="alice",
        acr=None,
        amr=("pwd",),
        auth_time=None,
        expires_at=T1_DT,
    )
    server.reply(200, SESSION)
    stepped_up = await sg.call("get_session", "ses_1")
    assert (stepped_up.acr, stepped_up.amr, stepped_up.auth_time) == ("aal2", ("pwd", "otp"), T0_DT)


async def test_step_up_decision(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, STEP_UP)
    decision: Decision = await sg.call("decide", "ses_1", "payments.transfer")
    assert decision.decision is DecisionKind.STEP_UP
    assert (decision.step_up_required, decision.allowed, decision.denied) == (True, False, False)
    assert decision.rule == "large-transfer"
    assert decision.reasons == ("amount above 1000",)
    assert decision.risk == sdk.RiskSummary(score=0.42, level="medium", reasons=("new device",))
    assert decision.requirement == sdk.Requirement(
        acr="aal2", max_age=300, methods=("totp",), bind=True
    )
    assert decision.challenge == sdk.ChallengeRef(id="chl_1", expires_at=T1_DT)
    assert decision.www_authenticate == STEP_UP["www_authenticate"]
    assert sdk.step_up_challenge_from_decision(decision) == sdk.StepUpChallenge(
        acr_values=("aal2",)
    )


async def test_allow_decision(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, ALLOW)
    decision: Decision = await sg.call("decide", "ses_1", "profile.view")
    assert decision.allowed
    assert not decision.step_up_required
    assert not decision.denied
    assert decision.risk is not None
    assert decision.risk.score == 0.0
    assert (decision.requirement, decision.challenge, decision.www_authenticate) == (
        None,
        None,
        None,
    )


async def test_policy_evaluation_has_no_risk_or_challenge(
    sg: Harness, server: ScriptedServer
) -> None:
    server.reply(200, EVALUATION)
    decision: Decision = await sg.call("evaluate_policy", "admin.delete")
    assert decision.denied
    assert decision == Decision(
        decision=DecisionKind.DENY, rule="blocked-country", reasons=("country",)
    )


async def test_challenge(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, CHALLENGE)
    challenge: ChallengeInfo = await sg.call("get_challenge", "chl_1")
    assert challenge == ChallengeInfo(
        id="chl_1",
        status=ChallengeStatus.PENDING,
        action="payments.transfer",
        summary="Transfer 5000 EUR",
        requirement=sdk.Requirement(acr="aal2", max_age=None, methods=(), bind=False),
        factors=(sdk.ChallengeFactor(id="fac_1", type="totp", label="Phone"),),
        expires_at=T1_DT,
    )


async def test_verification_wraps_the_grant(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, VERIFICATION)
    result: VerificationResult = await sg.call("verify", "chl_1", "fac_1", "123456")
    assert result.status is ChallengeStatus.SATISFIED
    assert result.session.acr == "aal2"
    assert result.grant is not None
    assert result.grant.reveal() == GRANT
    assert result.grant_expires_at == T1_DT
    assert GRANT not in repr(result)
    assert GRANT not in str(result)


async def test_verification_without_grant(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, {"status": "satisfied", "session": SESSION})
    result: VerificationResult = await sg.call("verify", "chl_1", "fac_1", "123456")
    assert (result.grant, result.grant_expires_at) == (None, None)


async def test_factors(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, {"factors": [FACTOR, PENDING_FACTOR]})
    factors = await sg.call("list_factors", "alice")
    assert factors == (
        FactorInfo(
            id="fac_1",
            type="totp",
            label="Phone",
            status="active",
            created_at=T0_DT,
            confirmed_at=T1_DT,
            last_used_at=None,
        ),
        FactorInfo(
            id="fac_1",
            type="totp",
            label="Phone",
            status="pending",
            created_at=T0_DT,
            confirmed_at=None,
            last_used_at=None,
        ),
    )
    server.reply(200, {"factor": FACTOR})
    assert await sg.call("confirm_factor", "alice", "fac_1", "123456") == factors[0]


async def test_totp_enrollment_keeps_the_seed_out_of_reprs(
    sg: Harness, server: ScriptedServer
) -> None:
    server.reply(201, ENROLLMENT)
    enrollment: Enrollment = await sg.call("enroll_factor", "alice", "totp")
    assert enrollment.factor.status == "pending"
    assert enrollment.otpauth_uri is not None
    assert enrollment.otpauth_uri.reveal() == OTPAUTH
    assert enrollment.qr_svg is not None
    assert enrollment.qr_svg.reveal() == "<svg>QR</svg>"
    assert enrollment.recovery_codes == ()
    assert "JBSWY3DPEHPK3PXP" not in repr(enrollment)
    assert "QR" not in repr(enrollment)


async def test_recovery_code_enrollment(sg: Harness, server: ScriptedServer) -> None:
    server.reply(201, RECOVERY_ENROLLMENT)
    enrollment: Enrollment = await sg.call("enroll_factor", "alice", "recovery_code")
    assert [code.reveal() for code in enrollment.recovery_codes] == ["RCODE-1111", "RCODE-2222"]
    assert enrollment.otpauth_uri is None
    assert "RCODE" not in repr(enrollment)


async def test_audit_page(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, AUDIT)
    page: AuditPage = await sg.call("audit_events")
    assert page.next_after_seq == 7
    (event,) = page.events
    assert event == sdk.AuditEvent(
        seq=7,
        type="decision.made",
        at=T0_DT,
        outcome="step_up",
        subject_id="alice",
        session_id="ses_1",
        actor="key_1",
        details={"rule": "large-transfer", "amount": 5000},
        hash="ab" * 32,
    )
    hash(event)  # details (a dict) does not take part in hashing
    server.reply(200, {"events": [], "next_after_seq": None})
    assert await sg.call("audit_events", after_seq=7) == AuditPage(events=(), next_after_seq=None)


async def test_health_and_readiness(sg: Harness, server: ScriptedServer) -> None:
    server.reply(200, {"status": "ok"})
    assert await sg.call("health") == HealthStatus(ok=True, status=200, details={"status": "ok"})
    server.reply(503, {"error": "storage_unavailable", "message": "db down"})
    not_ready: HealthStatus = await sg.call("ready")
    assert (not_ready.ok, not_ready.status) == (False, 503)
    assert not_ready.details["error"] == "storage_unavailable"
    server.reply(503, content=b"<html>down</html>")
    assert (await sg.call("ready")).ok is False


async def test_no_content_responses_return_none(sg: Harness, server: ScriptedServer) -> None:
    server.reply(204)
    assert await sg.call("revoke_session", "ses_1") is None


# --------------------------------------------------------------------------------------------
# Errors: stable codes map to classes; anything untrustworthy is a ProtocolError


@pytest.mark.parametrize(("code", "class_name"), sorted(ERROR_CODES.items()))
async def test_error_codes_map_to_their_classes(
    sg: Harness, server: ScriptedServer, code: str, class_name: str
) -> None:
    server.reply(
        418, {"error": code, "message": f"about {code}", "hint": "more"}
    )  # the status does not pick the class; the code does
    with pytest.raises(getattr(sdk, class_name)) as caught:
        await sg.call("get_subject", "alice")
    error = caught.value
    assert (error.status, error.code, error.message) == (418, code, f"about {code}")
    assert error.details == {"hint": "more"}
    assert str(error) == f"418 {code}: about {code}"


async def test_verification_failure(sg: Harness, server: ScriptedServer) -> None:
    server.reply(400, {"error": "verification_failed", "message": "The verification failed."})
    with pytest.raises(sdk.VerificationFailedError):
        await sg.call("verify", "chl_1", "fac_1", "000000")


async def test_step_up_required_for_factor_management(sg: Harness, server: ScriptedServer) -> None:
    server.reply(403, {"error": "step_up_required", "message": "Step up first."})
    with pytest.raises(sdk.StepUpRequiredError) as caught:
        await sg.call("enroll_factor", "alice", "totp")
    assert caught.value.status == 403


async def test_an_unknown_code_is_a_plain_api_error(sg: Harness, server: ScriptedServer) -> None:
    server.reply(409, {"error": "quota_exceeded", "message": "Too many factors."})
    with pytest.raises(APIError) as caught:
        await sg.call("get_subject", "alice")
    assert type(caught.value) is APIError
    assert caught.value.code == "quota_exceeded"


async def test_rate_limited_carries_retry_after(sg: Harness, server: ScriptedServer) -> None:
    server.reply(
        429, {"error": "rate_limited", "message": "Slow down."}, headers={"Retry-After": "7"}
    )
    with pytest.raises(RateLimitedError) as caught:
        await sg.call("decide", "ses_1", "x")
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("status", "body", "content", "problem"),
    [
        pytest.param(200, None, b"<html>hi</html>", "not valid JSON", id="html-200"),
        pytest.param(200, None, b"", "not valid JSON", id="empty-200"),
        pytest.param(200, ["not", "an", "object"], None, "not a JSON object", id="json-array"),
        pytest.param(200, {**SUBJECT, "id": None}, None, "'id' is missing", id="null-required"),
        pytest.param(
            200, {k: v for k, v in SUBJECT.items() if k != "created_at"}, None,
            "'created_at' is missing", id="missing-required",
        ),
        pytest.param(200, {**SUBJECT, "id": 5}, None, "'id' must be a string", id="wrong-type"),
        pytest.param(
            200, {**SUBJECT, "groups": ["a", 1]}, None, "list of strings", id="bad-list-item"
        ),
        pytest.param(
            200, {**SUBJECT, "created_at": "yesterday"}, None, "RFC 3339", id="bad-datetime"
        ),
        pytest.param(
            200, {**SUBJECT, "created_at": "2025-03-04T05:06:07"}, None, "time zone",
            id="naive-datetime",
        ),
        pytest.param(502, None, b"<html>Bad Gateway</html>", "without a StepGuard error body",
                     id="proxy-html-502"),
        pytest.param(500, {"message": "no code"}, None, "no 'error' code", id="error-without-code"),
        pytest.param(301, None, b"", "redirects are not followed", id="redirect"),
    ],
)  # fmt: skip
async def test_untrustworthy_answers_raise_protocol_error(
    sg: Harness,
    server: ScriptedServer,
    status: int,
    body: object,
    content: bytes | None,
    problem: str,
) -> None:
    server.reply(status, body, content=content)
    with pytest.raises(ProtocolError, match=problem) as caught:
        await sg.call("get_subject", "alice")
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({**ALLOW, "decision": "maybe"}, "'decision' must be one of",
                     id="unknown-kind"),
        pytest.param({**ALLOW, "decision": "ALLOW"}, "'decision' must be one of", id="wrong-case"),
        pytest.param({**ALLOW, "decision": True}, "not a boolean", id="boolean-kind"),
        pytest.param({k: v for k, v in ALLOW.items() if k != "risk"}, "'risk' is missing",
                     id="decide-without-risk"),
        pytest.param({**STEP_UP, "requirement": None}, "must carry a 'requirement'",
                     id="step-up-without-requirement"),
        pytest.param({**ALLOW, "risk": {"score": "high", "level": "x", "reasons": []}},
                     "'risk.score' must be a number", id="nested-field-named"),
        pytest.param({**STEP_UP, "requirement": {**REQUIREMENT, "bind": "yes"}},
                     "'requirement.bind' must be a boolean", id="bind-not-bool"),
    ],
)  # fmt: skip
async def test_a_decision_never_parses_from_a_doubtful_answer(
    sg: Harness, server: ScriptedServer, body: object, problem: str
) -> None:
    """Fail closed: an unknown or malformed decision raises; it never becomes an allow."""
    server.reply(200, body)
    with pytest.raises(ProtocolError, match=problem):
        await sg.call("decide", "ses_1", "payments.transfer")


async def test_a_successful_verification_must_say_satisfied(
    sg: Harness, server: ScriptedServer
) -> None:
    server.reply(200, {**VERIFICATION, "status": "pending"})
    with pytest.raises(ProtocolError, match="satisfied"):
        await sg.call("verify", "chl_1", "fac_1", "123456")


async def test_field_values_are_not_echoed_in_protocol_errors(
    sg: Harness, server: ScriptedServer
) -> None:
    server.reply(200, {**VERIFICATION, "grant": 12345678987654321})
    with pytest.raises(ProtocolError) as caught:
        await sg.call("verify", "chl_1", "fac_1", "123456")
    assert "12345678987654321" not in str(caught.value)


# --------------------------------------------------------------------------------------------
# Transport failures


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_connect_failure_is_a_transport_error_sync() -> None:
    with (
        StepGuardClient(f"http://127.0.0.1:{_closed_port()}", API_KEY) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.health()
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_connect_failure_is_a_transport_error_async() -> None:
    async with AsyncStepGuardClient(f"http://127.0.0.1:{_closed_port()}", API_KEY) as client:
        with pytest.raises(TransportError):
            await client.decide("ses_1", "payments.transfer")


def _raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "expected", "text"),
    [
        (httpx.ReadTimeout("read timed out"), TransportError, "timed out"),
        (httpx.ConnectTimeout("connect timed out"), TransportError, "timed out"),
        (httpx.RemoteProtocolError("peer closed connection"), TransportError, "failed"),
        (httpx.DecodingError("bad gzip"), ProtocolError, "could not be decoded"),
    ],
)
async def test_httpx_failures_become_sdk_errors(
    flavor: Flavor, exc: Exception, expected: type[StepGuardSDKError], text: str
) -> None:
    transport = httpx.MockTransport(_raising(exc))
    if flavor == "sync":
        with (
            StepGuardClient(BASE_URL, API_KEY, transport=transport) as client,
            pytest.raises(expected, match=text),
        ):
            client.decide("ses_1", "x")
    else:
        async with AsyncStepGuardClient(BASE_URL, API_KEY, transport=transport) as aclient:
            with pytest.raises(expected, match=text):
                await aclient.decide("ses_1", "x")


# --------------------------------------------------------------------------------------------
# Construction and secrecy


def test_the_api_key_never_shows(capsys: pytest.CaptureFixture[str]) -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(401, json={"error": "unauthenticated", "message": "no"})
    )
    with StepGuardClient(BASE_URL, API_KEY, transport=transport) as client:
        assert API_KEY not in repr(client)
        assert API_KEY not in str(client)
        assert repr(client) == (
            "StepGuardClient(base_url='https://stepguard.test', api_key=Secret('**********'))"
        )
        with pytest.raises(sdk.UnauthenticatedError) as caught:
            client.get_subject("alice")
        error = caught.value
        assert API_KEY not in repr(error)
        assert API_KEY not in str(error)
        assert API_KEY not in repr(vars(client))
        assert API_KEY not in repr(client._http.headers)
    aclient = AsyncStepGuardClient(BASE_URL, Secret(API_KEY))
    assert API_KEY not in repr(aclient)
    assert repr(Secret(API_KEY)) == str(Secret(API_KEY)) == "Secret('**********')"


def test_default_timeouts_are_short() -> None:
    assert sdk.DEFAULT_TIMEOUT.connect == 2.0
    assert sdk.DEFAULT_TIMEOUT.read == 5.0
    with StepGuardClient(BASE_URL, API_KEY, timeout=1.5) as client:
        assert client._http.timeout == httpx.Timeout(1.5)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "https://sg.example"],
)
def test_https_or_loopback_is_accepted(url: str) -> None:
    StepGuardClient(url, API_KEY).close()


def test_plain_http_elsewhere_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ValueError, match="clear text"):
        StepGuardClient("http://stepguard.internal:8080", API_KEY)
    StepGuardClient("http://stepguard.internal:8080", API_KEY, allow_insecure_http=True).close()


@pytest.mark.parametrize(
    ("url", "key", "problem"),
    [
        ("ftp://sg.example", API_KEY, "http"),
        ("sg.example", API_KEY, "http"),
        ("https://user:pw@sg.example", API_KEY, "credentials"),
        ("https://sg.example?x=1", API_KEY, "query"),
        ("https://sg.example", "", "api_key"),
        ("https://sg.example", "key with space", "api_key"),
        ("https://sg.example", "key\r\nX-Injected: 1", "api_key"),
    ],
)
def test_bad_constructor_arguments_are_refused(url: str, key: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        StepGuardClient(url, key)


def test_result_types_are_frozen() -> None:
    subject = Subject(id="a", email=None, phone=None, groups=(), created_at=T0_DT, updated_at=T0_DT)
    with pytest.raises(AttributeError):
        subject.id = "b"  # type: ignore[misc]  # the point of the test
