"""Sign-in at an upstream OpenID Provider (StepGuard as an OIDC relying party).

Pure rules, no I/O: the ID token claim checks that follow the signature check (OpenID Connect
Core 1.0, section 3.1.3.7), the mapping of an upstream subject to a StepGuard subject id, and
the mapping of the upstream's ``amr``/``acr``/``auth_time`` to the factors a StepGuard
session starts with. The HTTP and JOSE work is in ``adapters/upstream``; the flow (state,
nonce, PKCE, single use) is in ``service/upstream.py``. See docs/upstream.md.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final

from stepguard.core.assurance import (
    PRIMARY_METHOD,
    AssuranceLevel,
    AuthMethod,
    CompletedFactor,
    FactorKind,
    derive_level,
    primary_factors,
)
from stepguard.core.errors import StepGuardError
from stepguard.core.secret import Secret

__all__ = [
    "DEFAULT_ALGORITHMS",
    "LOGIN_STATE_TTL",
    "FailureReason",
    "IdTokenClaims",
    "UpstreamConfig",
    "UpstreamLogin",
    "UpstreamLoginFailedError",
    "check_id_token_claims",
    "session_factors",
    "subject_id_for",
]

NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$", re.ASCII)
# The grammar of every StepGuard id (the API's IDENTIFIER_REGEX).
_SUBJECT_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$", re.ASCII)
DEFAULT_ALGORITHMS: Final = ("RS256", "ES256", "PS256", "EdDSA")
_ASYMMETRIC: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_SYMMETRIC: Final = frozenset({"HS256", "HS384", "HS512"})
LOGIN_STATE_TTL: Final = timedelta(minutes=10)
CLOCK_LEEWAY: Final = timedelta(seconds=60)


class FailureReason(StrEnum):
    """Why an upstream sign-in failed: the audit log's ``reason`` (never shown to the user)."""

    UNKNOWN_UPSTREAM = "unknown_upstream"
    STATE_INVALID = "state_invalid"  # unknown, used, expired, or for another upstream
    BROWSER_MISMATCH = "browser_mismatch"
    UPSTREAM_ERROR = "upstream_error"  # the upstream answered error=...
    MISSING_CODE = "missing_code"
    DISCOVERY_FAILED = "discovery_failed"
    TOKEN_ENDPOINT_FAILED = "token_endpoint_failed"  # noqa: S105 - a reason, not a secret
    JWKS_FAILED = "jwks_failed"
    TOKEN_MALFORMED = "token_malformed"  # noqa: S105 - a reason, not a secret
    ALGORITHM_REFUSED = "algorithm_refused"
    UNKNOWN_KEY = "unknown_key"
    SIGNATURE_INVALID = "signature_invalid"
    ISSUER_MISMATCH = "issuer_mismatch"
    AUDIENCE_MISMATCH = "audience_mismatch"
    AZP_MISMATCH = "azp_mismatch"
    EXPIRED = "expired"
    ISSUED_IN_FUTURE = "issued_in_future"
    NONCE_MISMATCH = "nonce_mismatch"
    CLAIM_INVALID = "claim_invalid"
    AUTH_TIME_MISSING = "auth_time_missing"
    SUBJECT_INVALID = "subject_invalid"
    SUBJECT_UNKNOWN = "subject_unknown"  # create_subjects is off and the subject is new
    INTERNAL = "internal"


class UpstreamLoginFailedError(StepGuardError):
    """One opaque failure for every way an upstream sign-in can fail. The precise ``reason``
    (and an optional ``detail``) go to the audit log only."""

    code: ClassVar[str] = "upstream_login_failed"
    default_message: ClassVar[str] = "The sign-in at the identity provider did not work."

    def __init__(self, reason: FailureReason, detail: str | None = None) -> None:
        super().__init__()
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    """One configured upstream OpenID Provider (validated at construction: safe floors).

    ``amr_map``: upstream ``amr`` value -> StepGuard RFC 8176 values (unmapped upstream values
    that are RFC 8176 values pass through, others are dropped). ``acr_map``: upstream ``acr``
    -> level, never above ``max_level``. Both apply only when ``trusted_assurance``; an
    untrusted upstream's sign-in counts as ``untrusted_amr`` (one kind: ``aal1``) at ``now``.
    """

    name: str
    label: str
    issuer: str
    client_id: str
    client_secret: Secret[str] = field(repr=False)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    trusted_assurance: bool = False
    amr_map: Mapping[str, tuple[AuthMethod, ...]] = field(default_factory=dict)
    acr_map: Mapping[str, AssuranceLevel] = field(default_factory=dict)
    max_level: AssuranceLevel = AssuranceLevel.AAL2
    untrusted_amr: tuple[AuthMethod, ...] = (AuthMethod.PWD,)
    subject_claim: str = "sub"
    create_subjects: bool = True
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"upstream name {self.name!r} is not a slug ([a-z0-9-], 1-32)")
        if not self.client_id:
            raise ValueError(f"upstream {self.name}: client_id is empty")
        if "openid" not in self.scopes:
            raise ValueError(f"upstream {self.name}: scopes must include openid")
        if not self.algorithms:
            raise ValueError(f"upstream {self.name}: no signing algorithm allowed")
        for alg in self.algorithms:
            if alg in _SYMMETRIC:
                if not self.client_secret.reveal():
                    raise ValueError(f"upstream {self.name}: {alg} needs a client secret")
            elif alg not in _ASYMMETRIC:
                raise ValueError(f"upstream {self.name}: signing algorithm {alg!r} refused")
        for acr, level in self.acr_map.items():
            if level > self.max_level:
                raise ValueError(
                    f"upstream {self.name}: acr {acr!r} maps to {level.acr}, above max_acr "
                    f"{self.max_level.acr}"
                )
        if (
            not self.untrusted_amr
            or derive_level(
                primary_factors(self.untrusted_amr, at=datetime(2000, 1, 1, tzinfo=UTC))
            )
            is not AssuranceLevel.AAL1
        ):
            raise ValueError(
                f"upstream {self.name}: untrusted_amr must describe one factor kind (aal1)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTokenClaims:
    """The checked claims of an ID token."""

    subject: str
    issued_at: datetime
    expires_at: datetime
    auth_time: datetime | None
    acr: str | None
    amr: tuple[str, ...]
    email: str | None
    email_verified: bool
    claims: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamLogin:
    """One sign-in attempt in flight: stored (by the hash of its ``state``) from the redirect
    to the upstream until the callback consumes it once."""

    state_hash: str
    upstream: str
    browser_hash: str  # SHA-256 of the binding cookie the browser got with the redirect
    nonce: Secret[str] = field(repr=False)
    code_verifier: Secret[str] = field(repr=False)
    return_to: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


def _timestamp(value: object, name: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UpstreamLoginFailedError(FailureReason.CLAIM_INVALID, f"{name} is not a number")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise UpstreamLoginFailedError(
            FailureReason.CLAIM_INVALID, f"{name} out of range"
        ) from None


def check_id_token_claims(
    claims: Mapping[str, Any],
    *,
    expected_issuer: str,
    expected_audience: str,
    expected_nonce: str,
    now: datetime,
    leeway: timedelta = CLOCK_LEEWAY,
) -> IdTokenClaims:
    """The ID token validation of OIDC Core 3.1.3.7 that follows the signature check.

    Raise :class:`UpstreamLoginFailedError` with the precise reason on the first failure."""
    if claims.get("iss") != expected_issuer:
        raise UpstreamLoginFailedError(FailureReason.ISSUER_MISMATCH)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise UpstreamLoginFailedError(FailureReason.AUDIENCE_MISMATCH, "aud malformed")
    if expected_audience not in audiences:
        raise UpstreamLoginFailedError(FailureReason.AUDIENCE_MISMATCH)
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != expected_audience:
        raise UpstreamLoginFailedError(FailureReason.AZP_MISMATCH)
    if "exp" not in claims:
        raise UpstreamLoginFailedError(FailureReason.CLAIM_INVALID, "exp missing")
    expires_at = _timestamp(claims["exp"], "exp")
    if now >= expires_at + leeway:
        raise UpstreamLoginFailedError(FailureReason.EXPIRED)
    if "iat" not in claims:
        raise UpstreamLoginFailedError(FailureReason.CLAIM_INVALID, "iat missing")
    issued_at = _timestamp(claims["iat"], "iat")
    if issued_at > now + leeway:
        raise UpstreamLoginFailedError(FailureReason.ISSUED_IN_FUTURE)
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode(), expected_nonce.encode()
    ):
        raise UpstreamLoginFailedError(FailureReason.NONCE_MISMATCH)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise UpstreamLoginFailedError(FailureReason.CLAIM_INVALID, "sub missing")
    auth_time = None
    if claims.get("auth_time") is not None:
        auth_time = _timestamp(claims["auth_time"], "auth_time")
        if auth_time > now + leeway:
            raise UpstreamLoginFailedError(FailureReason.CLAIM_INVALID, "auth_time in future")
    acr = claims.get("acr")
    if acr is not None and not isinstance(acr, str):
        raise UpstreamLoginFailedError(FailureReason.CLAIM_INVALID, "acr not a string")
    amr = claims.get("amr", [])
    if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
        raise UpstreamLoginFailedError(FailureReason.CLAIM_INVALID, "amr not a string list")
    email = claims.get("email")
    return IdTokenClaims(
        subject=subject,
        issued_at=issued_at,
        expires_at=expires_at,
        auth_time=auth_time,
        acr=acr,
        amr=tuple(amr),
        email=email if isinstance(email, str) else None,
        email_verified=claims.get("email_verified") is True,
        claims=dict(claims),
    )


def subject_id_for(config: UpstreamConfig, claims: IdTokenClaims) -> str:
    """``<upstream name>:<value of the subject claim>``, if that is a valid StepGuard id."""
    value = (
        claims.subject if config.subject_claim == "sub" else claims.claims.get(config.subject_claim)
    )
    if not isinstance(value, str) or not value:
        raise UpstreamLoginFailedError(
            FailureReason.SUBJECT_INVALID, f"claim {config.subject_claim} missing"
        )
    candidate = f"{config.name}:{value}"
    if not _SUBJECT_ID.fullmatch(candidate):
        raise UpstreamLoginFailedError(
            FailureReason.SUBJECT_INVALID, f"claim {config.subject_claim} is not id-safe"
        )
    return candidate


def _mapped_amr(config: UpstreamConfig, values: Sequence[str]) -> tuple[AuthMethod, ...]:
    methods: list[AuthMethod] = []
    for value in values:
        if value in config.amr_map:
            methods.extend(config.amr_map[value])
            continue
        try:
            methods.append(AuthMethod(value))
        except ValueError:
            continue  # an upstream-specific value without a mapping proves nothing here
    return tuple(dict.fromkeys(methods))


def _primary(
    amr: tuple[AuthMethod, ...],
    kind: FactorKind,
    *,
    at: datetime,
    multi_factor: bool = False,
    phishing_resistant: bool = False,
    hardware_bound: bool = False,
) -> CompletedFactor:
    return CompletedFactor(
        method=PRIMARY_METHOD,
        amr=amr,
        kind=kind,
        completed_at=at,
        primary=True,
        multi_factor=multi_factor,
        phishing_resistant=phishing_resistant,
        hardware_bound=hardware_bound,
    )


def _level_factor(level: AssuranceLevel, *, at: datetime) -> tuple[CompletedFactor, ...]:
    """Primary factors that derive exactly ``level`` (what an upstream ``acr`` vouches for)."""
    mfa, hwk = (AuthMethod.MFA,), (AuthMethod.HWK,)
    if level is AssuranceLevel.AAL1:
        return (_primary((AuthMethod.PWD,), FactorKind.KNOWLEDGE, at=at),)
    if level is AssuranceLevel.AAL2:
        return (_primary(mfa, FactorKind.KNOWLEDGE, at=at, multi_factor=True),)
    if level is AssuranceLevel.PHR:
        return (
            _primary(mfa, FactorKind.POSSESSION, at=at, multi_factor=True, phishing_resistant=True),
        )
    if level is AssuranceLevel.PHRH:
        return (
            _primary(mfa, FactorKind.KNOWLEDGE, at=at, multi_factor=True),
            _primary(
                hwk, FactorKind.POSSESSION, at=at, phishing_resistant=True, hardware_bound=True
            ),
        )
    return (
        _primary(
            (AuthMethod.HWK, AuthMethod.MFA),
            FactorKind.POSSESSION,
            at=at,
            multi_factor=True,
            phishing_resistant=True,
            hardware_bound=True,
        ),
    )


def session_factors(
    config: UpstreamConfig, claims: IdTokenClaims, *, now: datetime
) -> tuple[CompletedFactor, ...]:
    """The primary factors a StepGuard session starts with after this upstream sign-in.

    Untrusted upstream: ``untrusted_amr`` at ``now`` (one kind, ``aal1``; never ``mfa``).
    Trusted upstream: the mapped ``amr`` and the ``acr``'s mapped level, completed at the
    upstream's ``auth_time`` (required), the whole capped at ``max_level``.
    """
    if not config.trusted_assurance:
        return primary_factors(config.untrusted_amr, at=now)
    if claims.auth_time is None:
        raise UpstreamLoginFailedError(FailureReason.AUTH_TIME_MISSING)
    at = min(claims.auth_time, now)
    factors = list(primary_factors(_mapped_amr(config, claims.amr), at=at))
    mapped = config.acr_map.get(claims.acr) if claims.acr is not None else None
    if mapped is not None:
        mapped = min(mapped, config.max_level)
        current = derive_level(factors)
        if current is None or current < mapped:
            factors.extend(_level_factor(mapped, at=at))
    if not factors:
        factors.extend(primary_factors(config.untrusted_amr, at=at))
    level = derive_level(factors)
    if level is not None and level > config.max_level:
        # The upstream's amr claims more than this upstream may vouch for: the cap's level.
        factors = list(_level_factor(config.max_level, at=at))
    return tuple(factors)
