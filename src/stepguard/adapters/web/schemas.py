"""The wire format of API v1. Requests are strict: unknown fields and wrong types are 400s."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

IDENTIFIER_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$"
IDENTIFIER_PATTERN = re.compile(IDENTIFIER_REGEX, re.ASCII)
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_REGEX)]
ActionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")]
# Stored text never holds NUL: PostgreSQL cannot store it and SQLite can, and every backend
# must accept the same inputs. The pattern puts that in the published schema.
NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=512)]
Code = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1, max_length=64)]
Label = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=64)]
Email = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=254)]
Phone = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=32)]
IpAddress = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=64)]
GrantToken = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=256)]
DeviceId = Annotated[
    str,
    StringConstraints(pattern=r"^[\x21-\x7e]{1,256}$"),
    Field(description="An opaque, app-supplied device identifier (printable ASCII)."),
]

# RFC 8176 values, spelled out so the schema lists them (a test keeps them equal to AuthMethod).
AmrValue = Literal[
    "face",
    "fpt",
    "geo",
    "hwk",
    "iris",
    "kba",
    "mca",
    "mfa",
    "otp",
    "pin",
    "pop",
    "pwd",
    "rba",
    "retina",
    "sc",
    "sms",
    "swk",
    "tel",
    "user",
    "vbm",
    "wia",
]


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


# A transaction's context, as bound into the grant's digest (RFC 8785 works on I-JSON).
TransactionContext = Annotated[
    dict[str, Any],
    AfterValidator(_interoperable),
    Field(
        description="What the request is about (e.g. amount and payee). The grant is bound to "
        "its RFC 8785 digest, so numbers must be finite and integers within +-(2**53 - 1)."
    ),
]


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: a number with no fraction (``300`` or ``300.0``), never a
    boolean or a string. (Pydantic's strict mode refuses ``300.0``; its lax mode takes
    ``true`` and ``"300"``: neither matches the published schema.)"""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected an integer")
    return value


# Goes after the Field(...) constraints in an Annotated, or the schema loses their JSON names.
JSON_INTEGER = BeforeValidator(_json_integer)


class Strict(BaseModel):
    """Request bodies: unknown fields are errors; types as the JSON schema states them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(Out):
    error: str = Field(description="A stable error code.", examples=["verification_failed"])
    message: str


# --- subjects ---------------------------------------------------------------------------


class SubjectIn(Strict):
    email: Email | None = None
    phone: Phone | None = None
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
    amr: Annotated[list[AmrValue], Field(min_length=1, max_length=8)]
    ip: IpAddress | None = None
    user_agent: ShortText | None = None
    ttl_seconds: Annotated[int, Field(gt=0, le=30 * 86400), JSON_INTEGER] | None = None
    device_id: DeviceId | None = None


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
    context: TransactionContext = Field(default_factory=dict)
    ip: IpAddress | None = None
    user_agent: ShortText | None = None
    grant: GrantToken | None = None
    device_id: DeviceId | None = None
    challenge_id: Identifier | None = Field(
        default=None,
        description="A challenge the user satisfied on the hosted pages: its grant is used "
        "once for this exact transaction (see docs/pages.md).",
    )


class RequirementOut(Out):
    acr: str
    max_age: int | None
    methods: list[str]
    bind: bool


class SignalOut(Out):
    name: str
    value: float
    contribution: float = Field(description="Log-odds added to the score by this signal.")
    reason: str


class RiskOut(Out):
    score: float
    level: str
    reasons: list[str]
    signals: list[SignalOut] = []


class ChallengeRef(Out):
    id: str
    expires_at: datetime
    page_url: str | None = Field(
        default=None,
        description="The hosted step-up page for this challenge, with a single-use token "
        "(valid for at most five minutes). Append `&return_to=<url-encoded URL>`.",
    )


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


class WebAuthnFactorInfo(Out):
    """What StepGuard knows about a WebAuthn factor's credential (all public data)."""

    aaguid: str = Field(description="The authenticator model (all zeros when not disclosed).")
    transports: list[str]
    discoverable: bool = Field(description="A passkey (resident key).")
    backup_eligible: bool = Field(description="A synced passkey can be backed up.")
    backed_up: bool
    attestation_trusted: bool
    hardware_bound: bool = Field(description="Counts as hwk (phrh / aal3) under this config.")
    suspected_clone_at: datetime | None = Field(
        description="Set when its signature counter went backwards: refused until removed."
    )


class FactorOut(Out):
    id: str
    type: str
    label: str
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    last_used_at: datetime | None
    webauthn: WebAuthnFactorInfo | None = None
    destination: str | None = Field(
        default=None, description="Email and SMS factors: where codes go, masked."
    )


class FactorList(Out):
    factors: list[FactorOut]


class TotpEnrollIn(Strict):
    type: Literal["totp"]
    label: Label = ""
    session_id: Identifier | None = None
    algorithm: Literal["SHA1", "SHA256", "SHA512"] = "SHA1"
    digits: Annotated[int, Field(ge=6, le=8), JSON_INTEGER] = 6
    period: Annotated[int, Field(ge=15, le=120), JSON_INTEGER] = 30


class RecoveryCodesEnrollIn(Strict):
    type: Literal["recovery_code"]
    label: Label = ""
    session_id: Identifier | None = None


class WebAuthnEnrollIn(Strict):
    """A passkey or security key: the answer carries ``webauthn_options`` for
    ``navigator.credentials.create()``; confirm with the browser's response."""

    type: Literal["webauthn"]
    label: Label = ""
    session_id: Identifier | None = None
    authenticator_attachment: Literal["platform", "cross-platform"] | None = None
    resident_key: Literal["required", "preferred", "discouraged"] = "preferred"
    user_verification: Literal["required", "preferred"] = "required"


E164 = Annotated[
    str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$"), Field(examples=["+4915112345678"])
]


class EmailEnrollIn(Strict):
    type: Literal["email_otp"]
    address: Email
    label: Label = ""
    session_id: Identifier | None = None


class SmsEnrollIn(Strict):
    type: Literal["sms_otp"]
    phone: E164
    label: Label = ""
    session_id: Identifier | None = None


class PushEnrollIn(Strict):
    """An approver device: the answer carries ``pairing_url``, a one-time link the device
    opens (docs/push.md); the device confirms the factor itself."""

    type: Literal["push"]
    label: Label = ""
    session_id: Identifier | None = None


EnrollIn = Annotated[
    TotpEnrollIn
    | RecoveryCodesEnrollIn
    | WebAuthnEnrollIn
    | EmailEnrollIn
    | SmsEnrollIn
    | PushEnrollIn,
    Field(discriminator="type"),
]


class SentCodeOut(Out):
    delivery_id: str
    channel: Literal["email", "sms"]
    destination: str = Field(description="Masked.")
    expires_at: datetime


class EnrollOut(Out):
    factor: FactorOut
    otpauth_uri: str | None = None
    qr_svg: str | None = None
    recovery_codes: list[str] | None = None
    webauthn_options: dict[str, Any] | None = Field(
        default=None,
        description="PublicKeyCredentialCreationOptions as JSON (base64url binary fields), "
        "for PublicKeyCredential.parseCreationOptionsFromJSON().",
    )
    delivery: SentCodeOut | None = Field(
        default=None, description="Email and SMS factors: the confirmation code just sent."
    )
    pairing_url: str | None = Field(
        default=None,
        description="Push factors: the one-time link for the approver device (a secret).",
    )


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
    context: dict[str, Any] = Field(default_factory=dict)
    subject: dict[str, Any] = Field(default_factory=dict)
    session: dict[str, Any] = Field(default_factory=dict)
    request: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)


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


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _rfc3339(value: Any) -> Any:
    """Only RFC 3339 date-times with an offset (pydantic alone also takes Unix times)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "expected an RFC 3339 date-time with a time zone, e.g. 2026-01-31T12:00:00Z"
        )
    return value


def _utc_in_range(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is outside the years 1 to 9999 in UTC") from None


QueryTime = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_utc_in_range)]


class Health(Out):
    status: Literal["ok"]
