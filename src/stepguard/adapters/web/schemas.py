"""The wire format of API v1. Requests are strict: unknown fields and wrong types are 400s."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

IDENTIFIER_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$"
IDENTIFIER_PATTERN = re.compile(IDENTIFIER_REGEX, re.ASCII)
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_REGEX)]
ActionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")]
ShortText = Annotated[str, StringConstraints(max_length=512)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Label = Annotated[str, StringConstraints(max_length=64)]


MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 16


def _check_json(value: Any, depth: int = 0) -> None:
    """Refuse what has no single meaning in JSON (RFC 8785 I-JSON): NaN, infinities,
    integers beyond 2**53 - 1 (they would round), and absurd nesting."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError("integers must be within +-(2**53 - 1); send larger ones as strings")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
    elif isinstance(value, dict):
        for item in value.values():
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def _interoperable(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_interoperable)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(Out):
    error: str = Field(description="A stable error code.", examples=["verification_failed"])
    message: str


# --- subjects ---------------------------------------------------------------------------


class SubjectIn(Strict):
    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    groups: Annotated[list[Identifier], Field(max_length=64)] = []


class SubjectOut(Out):
    id: str
    email: str | None
    phone: str | None
    groups: list[str]
    created_at: datetime
    updated_at: datetime


# --- sessions ---------------------------------------------------------------------------


class SessionIn(Strict):
    subject_id: Identifier
    amr: Annotated[
        list[Annotated[str, StringConstraints(max_length=16)]], Field(min_length=1, max_length=8)
    ]
    ip: Annotated[str, StringConstraints(max_length=64)] | None = None
    user_agent: ShortText | None = None
    ttl_seconds: Annotated[int, Field(gt=0, le=30 * 86400)] | None = None


class SessionOut(Out):
    session_id: str
    subject_id: str
    acr: str | None
    amr: list[str]
    auth_time: datetime | None
    expires_at: datetime


# --- decisions --------------------------------------------------------------------------


class DecisionIn(Strict):
    session_id: Identifier
    action: ActionName
    resource: ShortText | None = None
    context: JsonObject = Field(default_factory=dict)
    ip: Annotated[str, StringConstraints(max_length=64)] | None = None
    user_agent: ShortText | None = None
    grant: Annotated[str, StringConstraints(max_length=256)] | None = None


class RequirementOut(Out):
    acr: str
    max_age: int | None
    methods: list[str]
    bind: bool


class RiskOut(Out):
    score: float
    level: str
    reasons: list[str]


class ChallengeRef(Out):
    id: str
    expires_at: datetime


class DecisionOut(Out):
    decision: Literal["allow", "step_up", "deny"]
    rule: str
    reasons: list[str]
    risk: RiskOut
    requirement: RequirementOut | None = None
    challenge: ChallengeRef | None = None
    www_authenticate: str | None = None


# --- challenges -------------------------------------------------------------------------


class FactorBrief(Out):
    id: str
    type: str
    label: str


class ChallengeOut(Out):
    id: str
    status: Literal["pending", "satisfied", "failed", "expired"]
    action: str
    summary: str
    requirement: RequirementOut
    factors: list[FactorBrief]
    expires_at: datetime


class VerificationIn(Strict):
    factor_id: Identifier
    code: Code


class VerificationOut(Out):
    status: Literal["satisfied"]
    session: SessionOut
    grant: str | None = None
    grant_expires_at: datetime | None = None


# --- factors ----------------------------------------------------------------------------


class FactorOut(Out):
    id: str
    type: str
    label: str
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    last_used_at: datetime | None


class FactorList(Out):
    factors: list[FactorOut]


class EnrollIn(Strict):
    type: Literal["totp", "recovery_code"]
    label: Label = ""
    session_id: Identifier | None = None
    algorithm: Literal["SHA1", "SHA256", "SHA512"] | None = None
    digits: Annotated[int, Field(ge=6, le=8)] | None = None
    period: Annotated[int, Field(ge=15, le=120)] | None = None


class EnrollOut(Out):
    factor: FactorOut
    otpauth_uri: str | None = None
    qr_svg: str | None = None
    recovery_codes: list[str] | None = None


class ConfirmIn(Strict):
    code: Code
    session_id: Identifier | None = None


class ConfirmOut(Out):
    factor: FactorOut


# --- policy -----------------------------------------------------------------------------


class EvaluateIn(Strict):
    action: ActionName
    resource: ShortText | None = None
    groups: Annotated[list[Identifier], Field(max_length=64)] = []
    context: JsonObject = Field(default_factory=dict)
    subject: JsonObject = Field(default_factory=dict)
    session: JsonObject = Field(default_factory=dict)
    request: JsonObject = Field(default_factory=dict)
    risk: JsonObject = Field(default_factory=dict)


class EvaluateOut(Out):
    decision: Literal["allow", "step_up", "deny"]
    rule: str
    reasons: list[str]
    requirement: RequirementOut | None = None


# --- audit ------------------------------------------------------------------------------


class AuditEventOut(Out):
    seq: int
    type: str
    at: datetime
    outcome: str
    subject_id: str | None
    session_id: str | None
    actor: str | None
    details: dict[str, Any]
    hash: str


class AuditPage(Out):
    events: list[AuditEventOut]
    next_after_seq: int | None


class Health(Out):
    status: Literal["ok"]
