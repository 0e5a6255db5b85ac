"""Strict parsing of one-time codes as users type them.

A code is accepted only as ASCII ``0``-``9`` of exactly the configured length: no other
Unicode digits (Arabic-Indic ``U+0660``..., fullwidth ``U+FF10``..., superscripts), no
spaces, signs, underscores or surrounding whitespace. ``str.isdigit()`` and ``int()`` accept
several of those, so neither is used; a precompiled ASCII-only ``fullmatch`` is.
"""

from __future__ import annotations

import re

from stepguard.core.errors import InvalidCodeError
from stepguard.core.factors._hotp import MAX_DIGITS, MIN_DIGITS

# InvalidCodeError messages name the reason for the audit log; they are never shown to users
# (the service answers every failure with one opaque VerificationFailedError).
MALFORMED = "malformed code"

# [0-9] is a literal range, and re.ASCII keeps it that way; fullmatch (unlike `$`) does not
# let a trailing newline through.
_OTP_PATTERNS: dict[int, re.Pattern[str]] = {
    n: re.compile(f"[0-9]{{{n}}}", re.ASCII) for n in range(MIN_DIGITS, MAX_DIGITS + 1)
}


def parse_otp_code(code: str, *, digits: int) -> str:
    """``code`` itself if it is exactly ``digits`` ASCII digits; else ``InvalidCodeError``.

    ``digits`` outside 6..8 is a programming error (``ValueError``).
    """
    pattern = _OTP_PATTERNS.get(digits)
    if pattern is None:
        raise ValueError(f"OTP codes have {MIN_DIGITS} to {MAX_DIGITS} digits, got {digits}")
    if pattern.fullmatch(code) is None:
        raise InvalidCodeError(MALFORMED)
    return code
