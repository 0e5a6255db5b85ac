"""Random identifiers and bearer tokens, drawn from the ``Rng`` port.

- An *id* (``ses_...``, ``chl_...``) names a record. It is unguessable (128 bits) so that
  knowing one id tells nothing about another, but it is not a credential.
- A *token* (a grant, an API key secret) is a credential: 256 bits, handed out once, wrapped
  in :class:`Secret`, and stored only as :func:`token_hash`.

Both use lowercase RFC 4648 base32 without padding: URL- and header-safe, case-insensitive by
eye, and one double-click selects the whole value.
"""

from __future__ import annotations

import base64
import hashlib
import re

from stepguard.core.ports import Rng
from stepguard.core.secret import Secret

ID_BYTES = 16  # 128 bits: 26 base32 characters
TOKEN_BYTES = 32  # 256 bits: 52 base32 characters

_PREFIX = re.compile(r"[a-z][a-z0-9]{0,15}_?", re.ASCII)


def random_bytes(rng: Rng, n: int) -> bytes:
    """``n`` bytes from ``rng``, checked: a port that returns the wrong length is a bug."""
    if n < 1:
        raise ValueError(f"random_bytes needs a positive length, got {n}")
    data = rng.token_bytes(n)
    if len(data) != n:
        raise RuntimeError(f"the Rng returned {len(data)} bytes instead of {n}")
    return data


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _normalize_prefix(prefix: str) -> str:
    if _PREFIX.fullmatch(prefix) is None:
        raise ValueError(
            f"id prefix {prefix!r} must be 1-16 lowercase ASCII letters or digits, starting "
            "with a letter, optionally ending with '_'"
        )
    return prefix if prefix.endswith("_") else prefix + "_"


def new_id(rng: Rng, prefix: str) -> str:
    """A new record id: ``prefix`` + ``_`` + 128 random bits, e.g. ``ses_4k2...`` (30 chars).

    ``prefix`` may be given with or without its trailing underscore (``"ses"`` or ``"ses_"``);
    the result always has exactly one.
    """
    return _normalize_prefix(prefix) + _b32(random_bytes(rng, ID_BYTES))


def new_token(rng: Rng, prefix: str) -> Secret[str]:
    """A new bearer token: ``prefix`` + ``_`` + 256 random bits, wrapped so it never prints.

    Show it to its owner once; store only :func:`token_hash` of it.
    """
    return Secret(_normalize_prefix(prefix) + _b32(random_bytes(rng, TOKEN_BYTES)))


def token_hash(token: str) -> str:
    """The SHA-256 hex digest of a token, as stored and looked up.

    A fast hash is right here: a token carries 256 random bits, so nothing can be gained by
    guessing inputs offline, and lookups by hash need no per-record salt. (Passwords would
    need a slow hash; tokens do not.)
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
