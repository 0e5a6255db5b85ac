"""Factor primitives StepGuard verifies itself: TOTP (RFC 6238) and recovery codes.

Pure functions: time is a ``now`` parameter, randomness the ``Rng`` port. Every way a code
can fail raises :class:`~stepguard.core.errors.InvalidCodeError`.

- :mod:`.totp`: the TOTP recipe (safe floors, window, replay protection).
- :mod:`._hotp`: the HOTP primitive under it (hazmat: no replay protection; not exported).
- :mod:`.recovery`: single-use recovery codes, stored as hashes.
- :mod:`.codes`: strict parsing of typed codes (ASCII digits only).
"""

from stepguard.core.factors.codes import parse_otp_code
from stepguard.core.factors.recovery import (
    GeneratedRecoveryCodes,
    VerifiedRecoveryCode,
    generate_recovery_codes,
    normalize_recovery_code,
    recovery_code_hash,
    verify_recovery_code,
)
from stepguard.core.factors.totp import (
    OtpAlgorithm,
    TotpSpec,
    VerifiedTotp,
    code_at_step,
    current_code,
    generate_totp_secret,
    totp_step,
    totp_uri,
    verify_totp,
)

__all__ = [
    "GeneratedRecoveryCodes",
    "OtpAlgorithm",
    "TotpSpec",
    "VerifiedRecoveryCode",
    "VerifiedTotp",
    "code_at_step",
    "current_code",
    "generate_recovery_codes",
    "generate_totp_secret",
    "normalize_recovery_code",
    "parse_otp_code",
    "recovery_code_hash",
    "totp_step",
    "totp_uri",
    "verify_recovery_code",
    "verify_totp",
]
