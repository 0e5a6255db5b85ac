"""The SDK's typed results: frozen data, parsed from the server's JSON by ``_protocol``.

Pure stdlib on purpose: :mod:`stepguard.sdk.rfc9470` (which the server imports) uses these
types without pulling in an HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "AuditEvent",
    "AuditPage",
    "ChallengeFactor",
    "ChallengeInfo",
    "ChallengeRef",
    "ChallengeStatus",
    "Decision",
    "DecisionKind",
    "Enrollment",
    "FactorInfo",
    "FactorType",
    "HealthStatus",
    "Requirement",
    "RiskSummary",
    "Secret",
    "SessionInfo",
    "Subject",
    "VerificationResult",
]


class Secret:
    """A string that never shows in ``repr``, ``str``, logs or tracebacks.

    Used for the API key, grants, ``otpauth://`` URIs, QR codes and recovery codes. Call
    :meth:`reveal` exactly where the value is used.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Never log or display it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # secrets are not dict keys


class DecisionKind(StrEnum):
    """What the policy decided. An unknown value never parses: the SDK fails closed."""

    ALLOW = "allow"
    STEP_UP = "step_up"
    DENY = "deny"


class ChallengeStatus(StrEnum):
    PENDING = "pending"
    SATISFIED = "satisfied"
    FAILED = "failed"
    EXPIRED = "expired"


class FactorType(StrEnum):
    """Factor types the server verifies itself (``enroll_factor`` also accepts a plain str)."""

    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """A user of the protected application."""

    id: str
    email: str | None
    phone: str | None
    groups: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """A session and the assurance it currently holds.

    ``acr`` is the highest level the session holds right now (``None`` before any step-up);
    ``amr`` the RFC 8176 methods it completed; ``auth_time`` the last authentication.
    """

    session_id: str
    subject_id: str
    acr: str | None
    amr: tuple[str, ...]
    auth_time: datetime | None
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """What a step-up must prove: a level (``acr``), how recently (``max_age`` seconds),
    with which factor types (``methods``; empty means any), and whether the proof is bound
    to this one transaction (``bind``)."""

    acr: str
    max_age: int | None
    methods: tuple[str, ...]
    bind: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskSummary:
    score: float
    level: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeRef:
    """The open challenge a ``step_up`` decision created. Send the user to complete it.

    ``page_url`` is the absolute URL of the hosted step-up page for this challenge (with a
    single-use token), when the server hosts one; ``None`` otherwise.
    """

    id: str
    expires_at: datetime
    page_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The policy's answer for one action.

    ``requirement`` is set for ``step_up``. From ``decide``: ``risk`` is always set, and a
    ``step_up`` usually carries a ``challenge`` and the ready-made ``www_authenticate`` header
    (RFC 9470). From ``evaluate_policy`` (a dry run): ``risk``, ``challenge`` and
    ``www_authenticate`` are ``None``.
    """

    decision: DecisionKind
    rule: str
    reasons: tuple[str, ...]
    risk: RiskSummary | None = None
    requirement: Requirement | None = None
    challenge: ChallengeRef | None = None
    www_authenticate: str | None = None

    @property
    def allowed(self) -> bool:
        return self.decision is DecisionKind.ALLOW

    @property
    def step_up_required(self) -> bool:
        return self.decision is DecisionKind.STEP_UP

    @property
    def denied(self) -> bool:
        return self.decision is DecisionKind.DENY


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeFactor:
    """A factor the user may answer a challenge with."""

    id: str
    type: str
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeInfo:
    """An open step-up as the prompt page shows it: what is asked, and with which factors."""

    id: str
    status: ChallengeStatus
    action: str
    summary: str
    requirement: Requirement
    factors: tuple[ChallengeFactor, ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationResult:
    """A successful verification. (A failed one raises ``VerificationFailedError``.)

    ``grant`` is the single-use proof for a transaction-bound requirement: send it back as
    ``decide(..., grant=...)``. It is wrapped so it never prints.
    """

    status: ChallengeStatus
    session: SessionInfo
    grant: Secret | None = field(default=None, compare=False)
    grant_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorInfo:
    """An enrolled factor. ``status`` is ``pending`` until confirmed, then ``active``."""

    id: str
    type: str
    label: str
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrollment:
    """A new factor and what the user needs to set it up. Everything secret is wrapped.

    TOTP: ``otpauth_uri`` and ``qr_svg`` (both contain the seed; show once, never store).
    Recovery codes: ``recovery_codes`` (show once; the server keeps only hashes).
    """

    factor: FactorInfo
    otpauth_uri: Secret | None = field(default=None, compare=False)
    qr_svg: Secret | None = field(default=None, compare=False)
    recovery_codes: tuple[Secret, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One record of the server's hash-chained audit log."""

    seq: int
    type: str
    at: datetime
    outcome: str
    subject_id: str | None
    session_id: str | None
    actor: str | None
    details: Mapping[str, object] = field(hash=False)
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditPage:
    """One page of audit events. Pass ``next_after_seq`` as ``after_seq`` for the next page;
    it is ``None`` on the last page."""

    events: tuple[AuditEvent, ...]
    next_after_seq: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthStatus:
    """The answer of ``/healthz`` or ``/readyz``: ``ok`` for 200, not ok for 503."""

    ok: bool
    status: int
    details: Mapping[str, object] = field(hash=False)
