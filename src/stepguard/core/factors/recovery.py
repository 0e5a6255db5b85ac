"""Recovery codes: a set of single-use codes, shown once and stored only as hashes.

Each code is 16 characters from Crockford's base32 alphabet (80 random bits), shown as
``XXXX-XXXX-XXXX-XXXX``. Input is normalized strictly: ASCII only, case-insensitive, with
the three hyphens exactly where they are displayed or with none at all; Crockford's
look-alikes are read as what they look like (``O`` as ``0``, ``I`` and ``L`` as ``1``), which
costs no entropy because those letters are never generated. Anything else (spaces, other
separators, Unicode) raises ``InvalidCodeError``.

Single use and "a new set invalidates the old one" are storage concerns
(``FactorRepository.consume_recovery_code`` / ``replace_recovery_codes``): this module gives
them the hashes to store and, via :func:`verify_recovery_code`, the hash to consume.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from stepguard.core.errors import InvalidCodeError
from stepguard.core.factors.codes import MALFORMED
from stepguard.core.ids import random_bytes
from stepguard.core.ports import Rng
from stepguard.core.secret import Secret

__all__ = [
    "CODE_BYTES",
    "CODE_CHARS",
    "CROCKFORD_ALPHABET",
    "DEFAULT_COUNT",
    "MISMATCH",
    "GeneratedRecoveryCodes",
    "VerifiedRecoveryCode",
    "generate_recovery_codes",
    "normalize_recovery_code",
    "recovery_code_hash",
    "verify_recovery_code",
]

CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # no I, L, O, U
CODE_BYTES = 10  # 80 bits
CODE_CHARS = 16  # 16 x 5 bits
GROUP = 4
DEFAULT_COUNT = 10
MAX_COUNT = 100

_SEPARATOR = "-"
_DISPLAY_LENGTH = CODE_CHARS + CODE_CHARS // GROUP - 1  # 19
_HYPHEN_POSITIONS = frozenset(range(GROUP, _DISPLAY_LENGTH, GROUP + 1))  # {4, 9, 14}

# Every accepted input character and what it means. Built from ASCII literals only, so no
# Unicode case folding ("ß".upper() == "SS") can ever get involved.
_DECODE: dict[str, str] = {c: c for c in CROCKFORD_ALPHABET}
_DECODE.update({c.lower(): c for c in CROCKFORD_ALPHABET if c.isalpha()})
_DECODE.update({"O": "0", "o": "0", "I": "1", "i": "1", "L": "1", "l": "1"})

MISMATCH = "unknown recovery code"


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedRecoveryCodes:
    """A new set: ``codes`` to show the user once (display form), ``hashes`` to store.

    ``hashes[i]`` is ``recovery_code_hash(codes[i].reveal())``.
    """

    codes: tuple[Secret[str], ...]
    hashes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedRecoveryCode:
    """A code that is in the set: ``hash`` is the stored hash to consume."""

    hash: str


def _encode(data: bytes) -> str:
    value = int.from_bytes(data, "big")
    chars = [CROCKFORD_ALPHABET[(value >> shift) & 0x1F] for shift in range(75, -1, -5)]
    return "".join(chars)


def _display(code: str) -> str:
    return _SEPARATOR.join(code[i : i + GROUP] for i in range(0, CODE_CHARS, GROUP))


def generate_recovery_codes(rng: Rng, *, count: int = DEFAULT_COUNT) -> GeneratedRecoveryCodes:
    """``count`` (1 to 100) fresh codes of 80 bits each, distinct, in display form.

    A repeat within the set can only come from a broken ``Rng`` and raises ``RuntimeError``.
    """
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"a recovery code set has 1 to {MAX_COUNT} codes, got {count}")
    raw = [_encode(random_bytes(rng, CODE_BYTES)) for _ in range(count)]
    if len(set(raw)) != count:
        raise RuntimeError("the Rng produced the same recovery code twice")
    return GeneratedRecoveryCodes(
        codes=tuple(Secret(_display(code)) for code in raw),
        hashes=tuple(_hash_normalized(code) for code in raw),
    )


def normalize_recovery_code(code: str) -> str:
    """The canonical form of a typed code: 16 uppercase alphabet characters, no hyphens.

    Raises ``InvalidCodeError`` for anything that is not a well-formed code.
    """
    if len(code) == _DISPLAY_LENGTH:
        if any(code[i] != _SEPARATOR for i in _HYPHEN_POSITIONS):
            raise InvalidCodeError(MALFORMED)
        code = code.replace(_SEPARATOR, "")
    if len(code) != CODE_CHARS:
        raise InvalidCodeError(MALFORMED)
    try:
        return "".join(_DECODE[c] for c in code)
    except KeyError:
        raise InvalidCodeError(MALFORMED) from None


def _hash_normalized(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("ascii")).hexdigest()


def recovery_code_hash(code: str) -> str:
    """The SHA-256 hex digest of the normalized code: what is stored and compared.

    No slow, salted hash is needed: a code has 80 random bits, so even a stolen table of
    hashes cannot be reversed by guessing (2**80 SHA-256 evaluations per code), unlike a
    human-chosen password. A plain hash also lets storage look a code up directly.
    Raises ``InvalidCodeError`` for a malformed code.
    """
    return _hash_normalized(normalize_recovery_code(code))


def verify_recovery_code(*, code: str, expected_hashes: Iterable[str]) -> VerifiedRecoveryCode:
    """Find ``code`` among the unused codes' hashes, or raise ``InvalidCodeError``.

    Every stored hash is compared in constant time (no early exit). The caller must then
    consume the returned hash atomically (``consume_recovery_code``) and treat a lost race
    as a failure.
    """
    candidate = recovery_code_hash(code).encode("ascii")
    found: str | None = None
    for expected in expected_hashes:
        if hmac.compare_digest(candidate, expected.encode("utf-8")):
            found = expected
    if found is None:
        raise InvalidCodeError(MISMATCH)
    return VerifiedRecoveryCode(hash=found)
