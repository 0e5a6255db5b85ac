"""Assurance: levels, RFC 8176 method values, and how a session's level is derived.

Assurance is derived, never stored: a session keeps the list of factors it completed and when;
its level for a given requirement is computed from that list and the current time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum

from stepguard.core.errors import InvalidRequestError


class AssuranceLevel(IntEnum):
    """Ordered levels. Each implies every lower one.

    ``phr`` and ``phrh`` are the OpenID EAP ACR values (phishing-resistant, and
    phishing-resistant with a hardware-bound key); ``aal3`` also needs user verification on
    that hardware key. ``acr`` is the wire value.
    """

    AAL1 = 1
    AAL2 = 2
    PHR = 3
    PHRH = 4
    AAL3 = 5

    @property
    def acr(self) -> str:
        return self.name.lower()

    @classmethod
    def from_acr(cls, value: str) -> AssuranceLevel:
        for level in cls:
            if level.acr == value:
                return level
        allowed = ", ".join(level.acr for level in cls)
        raise InvalidRequestError(f"unknown assurance level {value!r} (expected one of: {allowed})")


class AuthMethod(StrEnum):
    """RFC 8176 Authentication Method Reference values."""

    FACE = "face"
    FPT = "fpt"
    GEO = "geo"
    HWK = "hwk"
    IRIS = "iris"
    KBA = "kba"
    MCA = "mca"
    MFA = "mfa"
    OTP = "otp"
    PIN = "pin"
    POP = "pop"
    PWD = "pwd"  # noqa: S105 - an RFC 8176 method name, not a password
    RBA = "rba"
    RETINA = "retina"
    SC = "sc"
    SMS = "sms"
    SWK = "swk"
    TEL = "tel"
    USER = "user"
    VBM = "vbm"
    WIA = "wia"


class FactorKind(StrEnum):
    KNOWLEDGE = "knowledge"
    POSSESSION = "possession"
    INHERENCE = "inherence"


class FactorType(StrEnum):
    """The factor types StepGuard verifies itself (policy ``methods`` use these names)."""

    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"
    WEBAUTHN = "webauthn"
    EMAIL_OTP = "email_otp"
    SMS_OTP = "sms_otp"
    PUSH = "push"


_AMR_KIND: dict[AuthMethod, FactorKind] = {
    AuthMethod.PWD: FactorKind.KNOWLEDGE,
    AuthMethod.PIN: FactorKind.KNOWLEDGE,
    AuthMethod.KBA: FactorKind.KNOWLEDGE,
    AuthMethod.OTP: FactorKind.POSSESSION,
    AuthMethod.HWK: FactorKind.POSSESSION,
    AuthMethod.SWK: FactorKind.POSSESSION,
    AuthMethod.SMS: FactorKind.POSSESSION,
    AuthMethod.TEL: FactorKind.POSSESSION,
    AuthMethod.SC: FactorKind.POSSESSION,
    AuthMethod.POP: FactorKind.POSSESSION,
    AuthMethod.FPT: FactorKind.INHERENCE,
    AuthMethod.FACE: FactorKind.INHERENCE,
    AuthMethod.IRIS: FactorKind.INHERENCE,
    AuthMethod.RETINA: FactorKind.INHERENCE,
    AuthMethod.VBM: FactorKind.INHERENCE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedFactor:
    """One authentication event in a session: what was proven, how, and when.

    ``primary`` marks the authentication that established the session (asserted by the app
    when it creates the session); step-up factors are verified by StepGuard itself.
    """

    method: str  # a FactorType value for step-ups, "primary" for the session's login
    amr: tuple[AuthMethod, ...]
    kind: FactorKind
    completed_at: datetime
    primary: bool = False
    factor_id: str | None = None
    phishing_resistant: bool = False
    hardware_bound: bool = False
    multi_factor: bool = False


PRIMARY_METHOD = "primary"

# How each factor type StepGuard verifies counts: its RFC 8176 values and its kind.
# A look-up secret (recovery code) is "something you have" (NIST SP 800-63B 5.1.2).
_STEP_UP_PROFILES: dict[FactorType, tuple[tuple[AuthMethod, ...], FactorKind]] = {
    FactorType.TOTP: ((AuthMethod.OTP,), FactorKind.POSSESSION),
    FactorType.RECOVERY_CODE: ((AuthMethod.OTP,), FactorKind.POSSESSION),
    # Email has no RFC 8176 value: ``otp``, and ``summarize`` adds EMAIL_AMR (see below).
    FactorType.EMAIL_OTP: ((AuthMethod.OTP,), FactorKind.POSSESSION),
    FactorType.SMS_OTP: ((AuthMethod.SMS,), FactorKind.POSSESSION),
    # Push approval with number matching: a signature by a software key (WebCrypto, not
    # exportable) on a paired device, after a person picked the number (RFC 8176 ``user``).
    # A possession factor: ``aal2`` with a primary of another kind, never phishing-resistant
    # (the approver cannot see which origin asked). docs/push.md.
    FactorType.PUSH: ((AuthMethod.SWK, AuthMethod.USER), FactorKind.POSSESSION),
}


class SecondFactor(StrEnum):
    """Whether a step-up method counts as a second factor (NIST SP 800-63B)."""

    YES = "yes"
    # A restricted authenticator (SP 800-63B 5.1.3.3, SMS/PSTN): counts only under a rule that
    # names the method in ``step_up.methods`` (the operator's explicit risk acceptance).
    RESTRICTED = "restricted"
    # Never a second factor: email is not an out-of-band authenticator (SP 800-63B 5.1.3.1).
    # It proves control of the mailbox: enough for ``aal1`` with ``max_age`` re-verification.
    NO = "no"


# Methods not listed count as second factors: a new factor type is full strength unless it is
# listed here.
SECOND_FACTOR: dict[str, SecondFactor] = {
    FactorType.SMS_OTP.value: SecondFactor.RESTRICTED,
    FactorType.EMAIL_OTP.value: SecondFactor.NO,
}

# The non-registered ``amr`` value an email step-up adds next to ``otp`` (RFC 8176 has none
# for email; section 7 allows values outside the registry).
EMAIL_AMR = "email"
_EXTRA_AMR: dict[str, str] = {FactorType.EMAIL_OTP.value: EMAIL_AMR}


def gates_changes(factor_type: FactorType) -> bool:
    """Whether an enrolled factor of this type must vouch for changes to the account's
    factors. An email factor never proves a second factor, so an account with only email
    codes enrolls its next factor like its first."""
    return SECOND_FACTOR.get(factor_type.value, SecondFactor.YES) is not SecondFactor.NO


def _counts(factor: CompletedFactor, allowed_restricted: frozenset[str]) -> bool:
    """Whether ``factor`` adds its kind to the session's level."""
    if factor.primary:
        return True
    strength = SECOND_FACTOR.get(factor.method, SecondFactor.YES)
    if strength is SecondFactor.RESTRICTED:
        return factor.method in allowed_restricted
    return strength is SecondFactor.YES


def step_up_factor(factor_type: FactorType, *, factor_id: str, at: datetime) -> CompletedFactor:
    """The record of a step-up that StepGuard itself verified (code factors; WebAuthn
    assertions depend on their flags: :func:`webauthn_factor`)."""
    if factor_type not in _STEP_UP_PROFILES:
        raise ValueError(f"{factor_type} is not a code factor: use webauthn_factor()")
    amr, kind = _STEP_UP_PROFILES[factor_type]
    return CompletedFactor(
        method=factor_type.value, amr=amr, kind=kind, completed_at=at, factor_id=factor_id
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _AssertionProfile:
    amr: tuple[AuthMethod, ...]
    phishing_resistant: bool  # counts toward ``phr`` (and ``phrh``/``aal3`` when hardware-bound)
    multi_factor: bool


# How a WebAuthn assertion counts, by (user verified, hardware-bound). Every assertion is
# origin-bound, a possession factor ("user" is RFC 8176's presence test, the UP flag).
# - With UV it is multi-factor in one (the key plus the authenticator's local PIN or
#   biometric; the authenticator does not say which, so ``mfa`` rather than ``pin``/``fpt``)
#   and phishing-resistant: ``phr`` with any primary, ``aal3`` when hardware-bound.
# - With UP only it proves that someone touched the key. For a step-up, which exists against
#   the walk-up and stolen-session cases, a touch on a key left plugged in is a possession
#   factor like TOTP: ``aal2`` with a primary of another kind, never ``phr``/``phrh``, even
#   on a hardware-bound key (removing UV never raises a level).
# Hardware-bound: the AAGUID is on the operator's allow-list, its attestation chained to a
# configured root, and the credential is not backup-eligible (a synced passkey is not bound
# to one device). Then ``hwk``, else ``swk``.
_WEBAUTHN_PROFILES: dict[tuple[bool, bool], _AssertionProfile] = {
    (True, True): _AssertionProfile(
        amr=(AuthMethod.HWK, AuthMethod.USER, AuthMethod.MFA),
        phishing_resistant=True,
        multi_factor=True,
    ),
    (True, False): _AssertionProfile(
        amr=(AuthMethod.SWK, AuthMethod.USER, AuthMethod.MFA),
        phishing_resistant=True,
        multi_factor=True,
    ),
    (False, True): _AssertionProfile(
        amr=(AuthMethod.HWK, AuthMethod.USER), phishing_resistant=False, multi_factor=False
    ),
    (False, False): _AssertionProfile(
        amr=(AuthMethod.SWK, AuthMethod.USER), phishing_resistant=False, multi_factor=False
    ),
}


def webauthn_factor(
    *, factor_id: str, at: datetime, user_verified: bool, hardware_bound: bool
) -> CompletedFactor:
    """The record of a verified WebAuthn assertion (see ``_WEBAUTHN_PROFILES``)."""
    profile = _WEBAUTHN_PROFILES[(user_verified, hardware_bound)]
    return CompletedFactor(
        method=FactorType.WEBAUTHN.value,
        amr=profile.amr,
        kind=FactorKind.POSSESSION,
        completed_at=at,
        factor_id=factor_id,
        phishing_resistant=profile.phishing_resistant,
        hardware_bound=hardware_bound,
        multi_factor=profile.multi_factor,
    )


def primary_factors(amr: Iterable[AuthMethod], *, at: datetime) -> tuple[CompletedFactor, ...]:
    """The factors a session starts with, from the ``amr`` its app asserted at login.

    Each value becomes its own factor with its kind, so ``["pwd", "otp"]`` from an upstream
    that already did MFA counts as two kinds. ``mfa`` alone counts as one multi-factor event.
    Values without a kind (``rba``, ``geo``, ``user``...) prove nothing on their own.
    """
    factors: list[CompletedFactor] = []
    for method in dict.fromkeys(amr):
        kind = _AMR_KIND.get(method)
        if method is AuthMethod.MFA:
            factors.append(
                CompletedFactor(
                    method=PRIMARY_METHOD,
                    amr=(method,),
                    kind=FactorKind.KNOWLEDGE,
                    completed_at=at,
                    primary=True,
                    multi_factor=True,
                )
            )
        elif kind is not None:
            factors.append(
                CompletedFactor(
                    method=PRIMARY_METHOD, amr=(method,), kind=kind, completed_at=at, primary=True
                )
            )
    return tuple(factors)


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """What a request needs: a level, how fresh, with which factors, bound or not.

    ``max_age`` is seconds; ``None`` means any age, ``0`` means every time (a fresh proof
    per request, delivered as a single-use grant). Empty ``methods`` allows every factor type.
    """

    acr: AssuranceLevel
    max_age: int | None = None
    methods: frozenset[str] = field(default_factory=frozenset)
    bind: bool = False

    @property
    def needs_grant(self) -> bool:
        """A requirement that session state alone can never satisfy: it needs a grant."""
        return self.bind or self.max_age == 0

    def allows_method(self, method: str) -> bool:
        return not self.methods or method in self.methods


def derive_level(
    factors: Sequence[CompletedFactor], *, allowed_restricted: frozenset[str] = frozenset()
) -> AssuranceLevel | None:
    """The level that a set of completed factors reaches, ignoring time.

    Without a primary factor there is no level: a second factor alone proves nothing about who
    started the session. A step-up whose method is not a second factor (``SECOND_FACTOR``:
    email never, SMS only when named in ``allowed_restricted``) adds nothing to the level.
    """
    if not any(f.primary for f in factors):
        return None
    factors = [f for f in factors if _counts(f, allowed_restricted)]
    kinds = {f.kind for f in factors}
    multi = len(kinds) >= 2 or any(f.multi_factor for f in factors)
    if not multi:
        return AssuranceLevel.AAL1
    level = AssuranceLevel.AAL2
    for f in factors:
        if f.phishing_resistant:
            candidate = AssuranceLevel.PHR
            if f.hardware_bound:
                candidate = AssuranceLevel.AAL3 if f.multi_factor else AssuranceLevel.PHRH
            level = max(level, candidate)
    return level


def _age_seconds(factor: CompletedFactor, now: datetime) -> float:
    return (now - factor.completed_at).total_seconds()


def satisfies(
    factors: Sequence[CompletedFactor], requirement: Requirement, *, now: datetime
) -> bool:
    """Whether the session's factors meet ``requirement`` at ``now``.

    The session's primary factors always count (the session itself is alive); step-up factors
    count only when their type is allowed and, with ``max_age``, when completed within it.
    With ``max_age`` at least one counted factor must be that fresh. ``max_age == 0`` is never
    met by session state: it takes a grant.
    """
    if requirement.max_age == 0:
        return False
    max_age = requirement.max_age

    def fresh(f: CompletedFactor) -> bool:
        return max_age is None or 0 <= _age_seconds(f, now) <= max_age

    step_ups = [
        f for f in factors if not f.primary and requirement.allows_method(f.method) and fresh(f)
    ]
    primaries = [f for f in factors if f.primary]
    counted = primaries + step_ups
    level = derive_level(counted, allowed_restricted=requirement.methods)
    if level is None or level < requirement.acr:
        return False
    if max_age is None:
        return True
    return bool(step_ups) or (not requirement.methods and any(fresh(f) for f in primaries))


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionAssurance:
    """What a session has proven, as OIDC names it: ``acr``, ``amr`` and ``auth_time``."""

    level: AssuranceLevel | None
    amr: tuple[str, ...]
    auth_time: datetime | None


def can_reach(
    factors: Sequence[CompletedFactor], candidate: CompletedFactor, requirement: Requirement
) -> bool:
    """Whether completing ``candidate`` now would meet ``requirement``'s level and methods.

    Used to offer only the factors that can satisfy a challenge, and to refuse the others
    before any code is checked.
    """
    if not requirement.allows_method(candidate.method):
        return False
    level = derive_level(
        [*(f for f in factors if f.primary), candidate], allowed_restricted=requirement.methods
    )
    return level is not None and level >= requirement.acr


def summarize(factors: Sequence[CompletedFactor]) -> SessionAssurance:
    level = derive_level(factors)
    amr: dict[str, None] = {}
    for f in factors:
        for value in f.amr:
            amr[value.value] = None
        extra = _EXTRA_AMR.get(f.method)
        if extra is not None:
            amr[extra] = None
    if level is not None and level >= AssuranceLevel.AAL2:
        amr[AuthMethod.MFA.value] = None
    auth_time = max((f.completed_at for f in factors), default=None)
    return SessionAssurance(level=level, amr=tuple(amr), auth_time=auth_time)
