"""RFC 7636 PKCE, ``S256`` only (``plain`` is refused: it protects nothing against a code
intercepted together with its request)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from stepguard.core.oidc.errors import InvalidGrantError, OidcInvalidRequestError

S256: Final = "S256"
# RFC 7636 section 4.1: 43-128 characters of [A-Z a-z 0-9 - . _ ~].
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}", re.ASCII)
# The S256 challenge is base64url(SHA-256) without padding: exactly 43 characters.
_CHALLENGE: Final = re.compile(r"[A-Za-z0-9\-_]{43}", re.ASCII)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The code challenge of an authorization request, or ``OidcInvalidRequestError``."""
    if not challenge:
        raise OidcInvalidRequestError("code_challenge is required (PKCE S256)")
    if method != S256:
        raise OidcInvalidRequestError("code_challenge_method must be S256")
    if _CHALLENGE.fullmatch(challenge) is None:
        raise OidcInvalidRequestError("code_challenge is malformed")
    return challenge


def verify(*, verifier: str | None, expected_challenge: str) -> None:
    """Raise ``InvalidGrantError`` unless ``verifier`` hashes to ``expected_challenge``."""
    if not verifier or _VERIFIER.fullmatch(verifier) is None:
        raise InvalidGrantError("code_verifier is missing or malformed")
    if not hmac.compare_digest(s256(verifier).encode(), expected_challenge.encode()):
        raise InvalidGrantError("code_verifier does not match")
