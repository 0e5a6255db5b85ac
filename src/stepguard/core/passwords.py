"""Passwords for sign-in on StepGuard itself: the policy and the guessing limits, pure.

NIST SP 800-63B 5.1.1.2 (memorized secrets): a minimum length (8), a generous maximum
(1024), no composition rules, Unicode accepted and normalized (NFKC) before hashing, and a
refusal of values an attacker would guess first (here: the account's own email or id). The
hashing itself (argon2id) is CPU work done off the event loop by an adapter behind the
``PasswordHasher`` port (``service.login_ports``).

Two guessing limits, both kept in the database by the caller:

- per account: :class:`~stepguard.core.lockout.LockoutPolicy` semantics (consecutive
  failures, then a growing delay; a success resets), on the account's login counter;
- per client IP: :class:`IpLimitPolicy`, a sliding window of failures (password spraying
  tries one password on many accounts, which the per-account limit never sees).

An attempt is *charged before it is evaluated* (the counter grows first, the verification
runs outside any transaction, a success then resets it), so concurrent guesses can never
evaluate more than the limit allows.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from stepguard.core.errors import PasswordRejectedError

__all__ = [
    "MAX_IDENTIFIER",
    "HashProfile",
    "IpLimitPolicy",
    "LoginFailure",
    "PasswordPolicy",
    "normalize_identifier",
    "normalize_password",
]

MAX_IDENTIFIER: Final = 320  # an email address at most (RFC 5321: 64 + 1 + 255)


class HashProfile(StrEnum):
    """The argon2id parameters to hash new passwords with (and to rehash old ones to)."""

    # argon2-cffi's default: RFC 9106's second recommended option (64 MiB, t=3, p=4).
    RFC9106_LOW_MEMORY = "rfc9106_low_memory"
    # RFC 9106's first recommended option (2 GiB, t=1, p=4): strongest, memory-hungry.
    RFC9106_HIGH_MEMORY = "rfc9106_high_memory"
    # Cheap parameters for tests only (milliseconds per hash). Never in production.
    TEST = "test"


class LoginFailure(StrEnum):
    """Why a sign-in failed: for the audit log only (callers get one answer)."""

    UNKNOWN_IDENTIFIER = "unknown_identifier"
    NO_PASSWORD = "no_password"  # noqa: S105 - a reason name, not a password
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a reason name, not a password
    ACCOUNT_LOCKED = "account_locked"
    IP_LIMITED = "ip_limited"
    MALFORMED = "malformed"
    # Passkey sign-in.
    NO_CEREMONY = "no_ceremony"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    USER_HANDLE_MISMATCH = "user_handle_mismatch"
    FACTOR_INACTIVE = "factor_inactive"
    FACTOR_LOCKED = "factor_locked"
    SUSPECTED_CLONE = "suspected_clone"
    INVALID_ASSERTION = "invalid_assertion"


def normalize_password(password: str) -> str:
    """The form that is hashed and compared: Unicode NFKC (SP 800-63B 5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


def normalize_identifier(identifier: str) -> str:
    """What the sign-in form's identifier is matched with: trimmed (emails compare
    case-insensitively, ids exactly; the caller decides which)."""
    return identifier.strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordPolicy:
    """What a new password must be: long enough, not absurdly long, not the account's name."""

    min_length: int = 8
    max_length: int = 1024

    def __post_init__(self) -> None:
        if self.min_length < 8:
            raise ValueError("min_length must be at least 8 (NIST SP 800-63B)")
        if self.max_length < 64 or self.max_length < self.min_length:
            raise ValueError("max_length must be at least 64 and at least min_length")

    def check(self, password: str, *, subject_id: str, email: str | None) -> str:
        """The normalized password to hash, or ``PasswordRejectedError`` naming the rule."""
        if "\x00" in password:
            raise PasswordRejectedError("The password must not contain NUL characters.")
        # Lengths count the characters as typed (what the caller's form or schema counted);
        # the normalized form is what is hashed.
        normalized = normalize_password(password)
        if len(password) < self.min_length:
            raise PasswordRejectedError(
                f"The password must have at least {self.min_length} characters."
            )
        if len(password) > self.max_length:
            raise PasswordRejectedError(
                f"The password must have at most {self.max_length} characters."
            )
        folded = normalized.strip().casefold()
        names = {subject_id.casefold()}
        if email:
            names.add(email.strip().casefold())
        if folded in names:
            raise PasswordRejectedError("The password must not be the account's email or id.")
        return normalized


@dataclass(frozen=True, slots=True, kw_only=True)
class IpLimitPolicy:
    """Failed sign-ins per client IP: at most ``max_failures`` within ``window_seconds``;
    beyond that, attempts from the IP are refused without being evaluated."""

    max_failures: int = 20
    window_seconds: int = 900

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")

    def window_start(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.window_seconds)

    def is_limited(self, failures_in_window: int) -> bool:
        """Whether another attempt may not be evaluated, given the failures counted since
        :meth:`window_start` (attempts in flight count as failures until they succeed)."""
        return failures_in_window >= self.max_failures
