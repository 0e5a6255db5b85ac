"""Password hashing for the demo logins: scrypt from the standard library.

StepGuard itself stores no passwords (the application does the first factor), so the project
has no password-hashing dependency; the demo uses :func:`hashlib.scrypt` (memory-hard, RFC
7914) with the parameters recommended for interactive logins (N=2**14, r=8, p=1), not a
fast hash. A real application should use argon2id (argon2-cffi) or its framework's hasher.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Final

__all__ = ["hash_password", "verify_password"]

_N: Final = 2**14
_R: Final = 8
_P: Final = 1
_LENGTH: Final = 32
_PREFIX: Final = "scrypt"


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_LENGTH, maxmem=64 << 20
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (unpadded URL-safe base64)."""
    salt = os.urandom(16) if salt is None else salt
    digest = _derive(password, salt, _N, _R, _P)
    return f"{_PREFIX}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


# Verified for unknown users too, so that the time taken does not tell which users exist.
_DUMMY: Final = hash_password("not a password", salt=b"\x00" * 16)


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; ``None`` or a malformed hash never match."""
    try:
        prefix, n, r, p, salt, digest = (stored or _DUMMY).split("$")
        if prefix != _PREFIX:
            return False
        expected = _unb64(digest)
        actual = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return stored is not None and hmac.compare_digest(actual, expected)
