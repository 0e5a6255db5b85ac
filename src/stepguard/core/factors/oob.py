"""Out-of-band one-time codes (email and SMS): generation, binding, destinations.

A code is 6 to 8 ASCII digits drawn from the ``Rng`` port. Such a code has 20 to 27 bits, far
too few for a plain hash to hide it from whoever reads the database, so what is stored is an
HMAC-SHA256 under a server key (derived from the configured secret keys) over the code *and
its binding*: the delivery, subject, factor, purpose and challenge. A code therefore verifies
only for the exact (subject, factor, purpose, challenge) it was sent for, even if a storage bug
handed the wrong row to the check.

Destinations are validated strictly (:func:`normalize_email` with ``email-validator``,
:func:`normalize_phone` as E.164 with ``phonenumbers``), shown masked (:func:`mask`), and keyed
for send limits by an HMAC (:func:`destination_key`), never stored in plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from stepguard.core.errors import InvalidCodeError, InvalidRequestError
from stepguard.core.factors.codes import parse_otp_code
from stepguard.core.ids import random_bytes
from stepguard.core.ports import Rng
from stepguard.core.secret import Secret

__all__ = [
    "MAX_CODE_TTL_SECONDS",
    "Channel",
    "CodeBinding",
    "CodePurpose",
    "code_hash",
    "destination_key",
    "generate_code",
    "mask",
    "normalize_destination",
    "normalize_email",
    "normalize_phone",
    "verify_code",
]

MAX_CODE_TTL_SECONDS = 600  # "at most 10 minutes" (OWASP ASVS 6.6.x; NIST SP 800-63B 5.1.3)
MISMATCH = "code does not match"

_CODE_DOMAIN = b"stepguard.oob-code.v1\x00"
_DESTINATION_DOMAIN = b"stepguard.oob-destination.v1\x00"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class CodePurpose(StrEnum):
    """What a code proves. A code for one purpose never verifies for another."""

    ENROLL = "enroll"  # the destination belongs to the person enrolling it
    STEP_UP = "step_up"  # the challenge ``challenge_id``


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeBinding:
    """Everything a code is bound to. ``challenge_id`` is set exactly for step-ups."""

    delivery_id: str
    subject_id: str
    factor_id: str
    purpose: CodePurpose
    challenge_id: str | None

    def __post_init__(self) -> None:
        if (self.purpose is CodePurpose.STEP_UP) != (self.challenge_id is not None):
            raise ValueError("a step-up code needs a challenge id, an enrollment code none")


def generate_code(rng: Rng, *, digits: int) -> Secret[str]:
    """A uniformly random code of ``digits`` (6 to 8) ASCII digits."""
    if not 6 <= digits <= 8:
        raise ValueError(f"codes have 6 to 8 digits, got {digits}")
    modulus = 10**digits
    limit = (1 << 64) - (1 << 64) % modulus  # rejection sampling: no modulo bias
    while True:
        value = int.from_bytes(random_bytes(rng, 8), "big")
        if value < limit:
            return Secret(str(value % modulus).zfill(digits))


def _message(binding: CodeBinding, code: str) -> bytes:
    fields = (
        binding.delivery_id,
        binding.subject_id,
        binding.factor_id,
        binding.purpose.value,
        binding.challenge_id or "",
        code,
    )
    for value in fields:
        if "\x00" in value:
            raise ValueError("binding fields never contain NUL")
    return _CODE_DOMAIN + "\x00".join(fields).encode("utf-8")


def code_hash(*, key: bytes, binding: CodeBinding, code: str) -> str:
    """What is stored for a code: HMAC-SHA256(key, domain || binding || code), hex."""
    if len(key) < 32:
        raise ValueError("the code key must have at least 256 bits")
    return hmac.new(key, _message(binding, code), hashlib.sha256).hexdigest()


def verify_code(
    *, key: bytes, binding: CodeBinding, code: str, digits: int, expected_hash: str
) -> None:
    """Raise ``InvalidCodeError`` unless ``code`` is well formed and was sent for ``binding``."""
    parsed = parse_otp_code(code, digits=digits)
    if not hmac.compare_digest(code_hash(key=key, binding=binding, code=parsed), expected_hash):
        raise InvalidCodeError(MISMATCH)


def normalize_email(address: str) -> str:
    """The address in normal form, or ``InvalidRequestError``. Syntax only: no DNS lookups."""
    if len(address) > 254:
        raise InvalidRequestError("the email address is too long")
    try:
        result = validate_email(
            address, check_deliverability=False, allow_smtputf8=False, allow_quoted_local=False
        )
    except EmailNotValidError as error:
        raise InvalidRequestError(f"invalid email address: {error}") from None
    return str(result.normalized)


def normalize_phone(number: str) -> str:
    """A valid E.164 number exactly as given (``+4915112345678``), or ``InvalidRequestError``.

    Strict: a leading ``+``, digits only, no spaces or punctuation, and a number that
    ``phonenumbers`` knows to be valid for its country.
    """
    if _E164.fullmatch(number) is None:
        raise InvalidRequestError("a phone number must be in E.164 form, e.g. +4915112345678")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise InvalidRequestError("the phone number cannot be parsed") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidRequestError("the phone number is not a valid number")
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != number:
        raise InvalidRequestError("the phone number is not in canonical E.164 form")
    return number


def normalize_destination(channel: Channel, destination: str) -> str:
    if channel is Channel.EMAIL:
        return normalize_email(destination)
    return normalize_phone(destination)


def mask(channel: Channel, destination: str) -> str:
    """What the API and messages show: ``a***@example.com``, ``+49*********78``."""
    if channel is Channel.EMAIL:
        local, _, domain = destination.rpartition("@")
        return f"{local[:1]}***@{domain}"
    try:
        country = str(phonenumbers.parse(destination, None).country_code)
    except phonenumbers.NumberParseException:
        country = ""
    digits = destination[1:]
    hidden = max(len(digits) - len(country) - 2, 0)
    return "+" + country + "*" * hidden + digits[len(country) + hidden :]


def destination_key(*, key: bytes, channel: Channel, destination: str) -> str:
    """A stable pseudonym of a destination for send limits (HMAC: not reversible offline)."""
    message = _DESTINATION_DOMAIN + f"{channel.value}\x00{destination.lower()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
