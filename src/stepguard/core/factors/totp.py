"""TOTP (RFC 6238): the recipe, with safe floors, a bounded window and replay protection.

Two verbs, like py_webauthn: :func:`generate_totp_secret` (and :func:`totp_uri` to show it)
at enrollment, :func:`verify_totp` at every use. Time is a parameter (``now``, timezone-aware)
and randomness comes from the ``Rng`` port; nothing here reads a clock.

:func:`verify_totp` returns the time step that matched. The caller stores it as the factor's
replay floor (``Factor.last_step``) and passes it back as ``last_accepted_step`` next time:
no code for that step or an earlier one is accepted again.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from stepguard.core.errors import InvalidCodeError
from stepguard.core.factors._hotp import MAX_DIGITS, MIN_DIGITS, MIN_KEY_BYTES, Hotp, OtpAlgorithm
from stepguard.core.factors.codes import parse_otp_code
from stepguard.core.ids import random_bytes
from stepguard.core.model import TotpParameters
from stepguard.core.ports import Rng
from stepguard.core.secret import Secret

__all__ = [
    "DEFAULT_SECRET_BYTES",
    "MISMATCH",
    "REPLAYED",
    "OtpAlgorithm",
    "TotpSpec",
    "VerifiedTotp",
    "code_at_step",
    "current_code",
    "generate_totp_secret",
    "totp_step",
    "totp_uri",
    "verify_totp",
]

DEFAULT_SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation and the authenticator norm
MIN_PERIOD = 15
MAX_PERIOD = 120  # like pyotp: a longer period keeps each code usable for too long
MAX_WINDOW = 2  # each attempt then succeeds with at most 5 / 10**digits

# InvalidCodeError messages, for the audit log only (see codes.py).
MISMATCH = "code does not match"
REPLAYED = "code already used"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpSpec:
    """How a TOTP factor computes and accepts codes.

    ``window`` is how many steps either side of the current one are accepted (``1``: the
    previous, current and next code), for clock skew and typing time. Out-of-range values
    raise ``ValueError`` here, so an unsafe spec cannot exist: 6 to 8 digits, a period of
    15 to 120 seconds, a window of 0 to 2. ``algorithm`` may be given as its string value.
    """

    algorithm: OtpAlgorithm = OtpAlgorithm.SHA1
    digits: int = 6
    period: int = 30
    window: int = 1

    def __post_init__(self) -> None:
        try:
            algorithm = OtpAlgorithm(self.algorithm)
        except ValueError:
            allowed = ", ".join(a.value for a in OtpAlgorithm)
            raise ValueError(
                f"unknown TOTP algorithm {self.algorithm!r} (expected one of: {allowed})"
            ) from None
        object.__setattr__(self, "algorithm", algorithm)
        if not MIN_DIGITS <= self.digits <= MAX_DIGITS:
            raise ValueError(f"TOTP codes have {MIN_DIGITS} to {MAX_DIGITS} digits")
        if not MIN_PERIOD <= self.period <= MAX_PERIOD:
            raise ValueError(f"the TOTP period must be {MIN_PERIOD} to {MAX_PERIOD} seconds")
        if not 0 <= self.window <= MAX_WINDOW:
            raise ValueError(f"the TOTP window must be 0 to {MAX_WINDOW} steps")

    @classmethod
    def from_parameters(cls, parameters: TotpParameters, *, window: int = 1) -> TotpSpec:
        """The spec for a stored factor's parameters (the window is server policy)."""
        return cls(
            algorithm=OtpAlgorithm(parameters.algorithm),
            digits=parameters.digits,
            period=parameters.period,
            window=window,
        )

    def to_parameters(self) -> TotpParameters:
        """The parameters to store with an enrolled factor."""
        return TotpParameters(
            algorithm=self.algorithm.value, digits=self.digits, period=self.period
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedTotp:
    """A code that verified: the time ``step`` it matched (store it as the replay floor),
    and its ``drift`` from the current step (negative: the code was from the past)."""

    step: int
    drift: int


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime (UTC), not a naive one")


def _key(secret: bytes | Secret[bytes]) -> bytes:
    key = secret.reveal() if isinstance(secret, Secret) else secret
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a TOTP secret needs at least {MIN_KEY_BYTES * 8} bits")
    return key


def totp_step(spec: TotpSpec, now: datetime) -> int:
    """The RFC 6238 time step ``T`` at ``now``: whole periods since the Unix epoch (floor)."""
    _require_aware(now)
    return (now - _EPOCH) // timedelta(seconds=spec.period)


def generate_totp_secret(rng: Rng, *, nbytes: int = DEFAULT_SECRET_BYTES) -> bytes:
    """A new random TOTP secret: 160 bits unless ``nbytes`` says more (at least 16)."""
    if nbytes < MIN_KEY_BYTES:
        raise ValueError(f"a TOTP secret needs at least {MIN_KEY_BYTES} bytes")
    return random_bytes(rng, nbytes)


def code_at_step(secret: bytes | Secret[bytes], spec: TotpSpec, step: int) -> str:
    """The code for one time step (for tests, demos and cross-checks)."""
    return Hotp(_key(secret), algorithm=spec.algorithm, digits=spec.digits).generate(step)


def current_code(secret: bytes | Secret[bytes], spec: TotpSpec, now: datetime) -> str:
    """The code an authenticator shows at ``now`` (for tests and the demo)."""
    return code_at_step(secret, spec, totp_step(spec, now))


def totp_uri(
    *, secret: bytes | Secret[bytes], spec: TotpSpec, account_name: str, issuer: str
) -> str:
    """The ``otpauth://totp/...`` enrollment URI (Google Authenticator Key URI Format).

    Every parameter is written out, defaults included, so no app has to guess. The label is
    ``Issuer:account`` percent-encoded (a ``:`` inside either part is encoded as ``%3A``),
    and the secret is unpadded base32. The URI contains the secret: treat it as one.
    """
    if not issuer or not account_name:
        raise ValueError("a TOTP URI needs a non-empty issuer and account name")
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    query = urlencode(
        {
            "secret": base64.b32encode(_key(secret)).decode("ascii").rstrip("="),
            "issuer": issuer,
            "algorithm": spec.algorithm.value,
            "digits": spec.digits,
            "period": spec.period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def verify_totp(
    *,
    code: str,
    secret: bytes | Secret[bytes],
    spec: TotpSpec,
    now: datetime,
    last_accepted_step: int | None,
) -> VerifiedTotp:
    """Verify ``code`` at ``now``; return the step it matched, or raise ``InvalidCodeError``.

    Every failure raises the same error class: a malformed code, a code outside the window,
    and a replay. Programming errors raise ``ValueError`` instead: a naive ``now``, a secret
    under 128 bits.

    Every step in ``[T - window, T + window]`` is computed and compared in constant time,
    whatever the code, then:

    - if the code matches any step at or below ``last_accepted_step``, it is rejected as a
      replay, even when it also matches a later step by coincidence (about one in
      ``10**digits``). So while its step is still in the window, a code that was accepted
      once never succeeds again: an invariant, not a likelihood (once its step has left the
      window the old code is no better than any guess). The honest user who hits the
      coincidence simply waits for the next code.
    - otherwise, if several later steps match (again a coincidence), the latest one wins:
      recording the highest step as the floor leaves no step for which the same code could
      be replayed.
    """
    _require_aware(now)
    key = _key(secret)
    current = totp_step(spec, now)
    parse_otp_code(code, digits=spec.digits)
    hotp = Hotp(key, algorithm=spec.algorithm, digits=spec.digits)
    matched = [
        step
        for step in range(current - spec.window, current + spec.window + 1)
        if step >= 0 and hotp.matches(code, step)
    ]
    if not matched:
        raise InvalidCodeError(MISMATCH)
    if last_accepted_step is not None and min(matched) <= last_accepted_step:
        raise InvalidCodeError(REPLAYED)
    step = max(matched)
    return VerifiedTotp(step=step, drift=step - current)
