"""HOTP (RFC 4226): the hazmat primitive under :mod:`stepguard.core.factors.totp`.

No replay protection, no window, no time: use the TOTP recipe, not this.

We build on ``cryptography.hazmat.primitives.twofactor.hotp`` rather than pyotp or our own
HMAC code because it is typed, supports exactly the algorithms and lengths we allow
(SHA1/SHA256/SHA512, 6 to 8 digits), takes the key as raw bytes (pyotp wants base32 text),
and refuses keys under 128 bits at construction. pyotp stays in the tests as an independent
implementation to cross-check against.
"""

from __future__ import annotations

import hmac
from enum import StrEnum

from cryptography.hazmat.primitives.hashes import SHA1, SHA256, SHA512
from cryptography.hazmat.primitives.twofactor.hotp import HOTP

MIN_KEY_BYTES = 16  # 128 bits, RFC 4226 section 4 R6 (160 recommended)
MIN_DIGITS = 6
MAX_DIGITS = 8
MAX_COUNTER = 2**64 - 1  # the counter is an 8-byte unsigned integer


class OtpAlgorithm(StrEnum):
    """The HMAC hash of an OTP factor; the values are the ``otpauth://`` URI spellings."""

    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"


_HASHES: dict[OtpAlgorithm, type[SHA1 | SHA256 | SHA512]] = {
    OtpAlgorithm.SHA1: SHA1,
    OtpAlgorithm.SHA256: SHA256,
    OtpAlgorithm.SHA512: SHA512,
}


class Hotp:
    """One key's HOTP generator. Raises ``ValueError`` for a short key or a bad length."""

    __slots__ = ("_hotp",)

    def __init__(self, key: bytes, *, algorithm: OtpAlgorithm, digits: int) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"an OTP key needs at least {MIN_KEY_BYTES * 8} bits, got {len(key) * 8}"
            )
        if not MIN_DIGITS <= digits <= MAX_DIGITS:
            raise ValueError(f"OTP codes have {MIN_DIGITS} to {MAX_DIGITS} digits, got {digits}")
        self._hotp = HOTP(key, digits, _HASHES[OtpAlgorithm(algorithm)]())

    def generate(self, counter: int) -> str:
        """The code for ``counter``, zero-padded to the configured number of digits."""
        if not 0 <= counter <= MAX_COUNTER:
            raise ValueError(f"an HOTP counter is in [0, 2**64), got {counter}")
        return self._hotp.generate(counter).decode("ascii")

    def matches(self, code: str, counter: int) -> bool:
        """Whether ``code`` is the code for ``counter``, compared in constant time.

        Any string is accepted (as UTF-8 bytes) and simply does not match; strict format
        checks belong to :mod:`stepguard.core.factors.codes`.
        """
        return hmac.compare_digest(self.generate(counter).encode("ascii"), code.encode("utf-8"))


def hotp_code(key: bytes, counter: int, *, algorithm: OtpAlgorithm, digits: int) -> str:
    """The HOTP value for one key and counter (a convenience over :class:`Hotp`)."""
    return Hotp(key, algorithm=algorithm, digits=digits).generate(counter)
