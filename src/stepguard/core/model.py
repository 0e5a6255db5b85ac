"""Domain entities. Plain frozen data: storage adapters load and save them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from stepguard.core.assurance import CompletedFactor, FactorType, Requirement
from stepguard.core.secret import Secret


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """The protected app's user."""

    id: str
    email: str | None = None
    phone: str | None = None
    groups: tuple[str, ...] = ()
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    id: str
    subject_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    factors: tuple[CompletedFactor, ...] = ()

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


class FactorStatus(StrEnum):
    PENDING = "pending"  # enrolled, not yet confirmed with a first valid code
    ACTIVE = "active"


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpParameters:
    algorithm: str = "SHA1"  # SHA1 | SHA256 | SHA512
    digits: int = 6
    period: int = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class Factor:
    """An enrolled factor with its guessing-limit state.

    ``secret`` is the TOTP seed (decrypted by the storage adapter, wrapped so it never
    prints). ``last_step`` is the TOTP replay floor: no step at or below it is accepted again.
    ``destination`` is where an email or SMS factor's codes go (encrypted at rest like a seed).
    """

    id: str
    subject_id: str
    type: FactorType
    status: FactorStatus
    label: str = ""
    created_at: datetime
    confirmed_at: datetime | None = None
    last_used_at: datetime | None = None
    failed_attempts: int = 0
    locked_until: datetime | None = None
    totp: TotpParameters | None = None
    secret: Secret[bytes] | None = None
    last_step: int | None = None
    destination: Secret[str] | None = None


class ChallengeStatus(StrEnum):
    PENDING = "pending"
    SATISFIED = "satisfied"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """An open step-up: one request that needs more proof before it goes through."""

    id: str
    subject_id: str
    session_id: str
    action: str
    resource: str | None
    transaction_digest: str
    rule: str
    requirement: Requirement
    summary: str
    status: ChallengeStatus
    created_at: datetime
    expires_at: datetime
    satisfied_at: datetime | None = None
    satisfied_by: str | None = None  # factor id

    def effective_status(self, now: datetime) -> ChallengeStatus:
        if self.status is ChallengeStatus.PENDING and now >= self.expires_at:
            return ChallengeStatus.EXPIRED
        return self.status


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """A single-use proof for exactly one transaction. Stored by the hash of its token."""

    token_hash: str
    subject_id: str
    session_id: str
    action: str
    transaction_digest: str
    challenge_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryCode:
    """An email or SMS code as stored: only the HMAC of the code and its binding
    (``core.factors.oob``). ``purpose`` is a ``CodePurpose`` value."""

    id: str
    subject_id: str
    factor_id: str
    purpose: str
    challenge_id: str | None
    code_hash: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    invalidated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    id: str
    name: str
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One security-relevant fact. ``details`` holds JSON values and never a secret."""

    type: str
    at: datetime
    outcome: str
    subject_id: str | None = None
    session_id: str | None = None
    actor: str | None = None  # the API key id that made the call
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedAuditEvent:
    """An audit event as the chain stores it."""

    seq: int
    event: AuditEvent
    prev_hash: str
    hash: str


class CeremonyPurpose(StrEnum):
    REGISTER = "register"
    AUTHENTICATE = "authenticate"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebAuthnCredential:
    """The WebAuthn data of one factor (``factor_id``): one registered public-key credential.

    ``credential_id`` is unique across every subject. ``public_key`` is the COSE key.
    ``attestation_trusted`` says the attestation chained to a configured root (packed with
    x5c). ``suspected_clone_at`` is set when a validly signed assertion's counter went
    backwards: the credential is refused from then on, until it is removed.
    """

    factor_id: str
    subject_id: str
    credential_id: bytes
    user_handle: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    transports: tuple[str, ...] = ()
    backup_eligible: bool = False
    backed_up: bool = False
    discoverable: bool = False
    attestation_format: str = "none"
    attestation_trusted: bool = False
    suspected_clone_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebAuthnCeremony:
    """An open WebAuthn ceremony: the challenge bytes handed to the browser, used once.

    A registration belongs to a pending factor (``factor_id``); an authentication belongs to
    a step-up challenge (``challenge_id``).
    """

    id: str
    subject_id: str
    purpose: CeremonyPurpose
    challenge: bytes
    require_user_verification: bool
    created_at: datetime
    expires_at: datetime
    challenge_id: str | None = None
    factor_id: str | None = None
    user_handle: bytes | None = None
    resident_key: str | None = None
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushDevice:
    """The approver device of one push factor (``factor_id``).

    Before pairing it holds only the hash of the one-time pairing token; pairing stores the
    device's P-256 public key (uncompressed SEC1) and the hash of the device's cookie (which
    lets the approver page list its pending requests; answers are signed). ``subscription``
    is the Web Push subscription JSON (endpoint and keys), encrypted at rest.
    """

    factor_id: str
    subject_id: str
    created_at: datetime
    pairing_hash: str | None = None
    pairing_expires_at: datetime | None = None
    paired_at: datetime | None = None
    public_key: bytes | None = None
    device_token_hash: str | None = None
    subscription: Secret[str] | None = None
    user_agent: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PushRequest:
    """One push for one challenge: the number to match and where the request came from.

    ``status`` is a ``PushStatus`` value; only one terminal answer is ever stored."""

    id: str
    challenge_id: str
    subject_id: str
    number: int
    choices: tuple[int, ...]
    status: str
    created_at: datetime
    expires_at: datetime
    answered_at: datetime | None = None
    answered_by: str | None = None  # factor id
    origin_location: str = ""
    origin_browser: str = ""
    finished_at: datetime | None = None

    def effective_status(self, now: datetime) -> str:
        if self.status == "pending" and now >= self.expires_at:
            return "expired"
        return self.status
