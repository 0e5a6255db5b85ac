"""What the hosted pages need from the domain: page tokens and browser sessions.

- A *page token* is a short-lived, single-use bearer credential in a page URL
  (``/challenge/{id}?t=...``). An application hands it to its user's browser; opening the URL
  consumes it and starts a browser session. It is stored only as its hash.
- A *browser session* is what the pages' cookie names: opaque, random, stored only as its hash,
  bound to one StepGuard session and its subject, never outliving that session. It is replaced
  (rotated) whenever a page token is consumed and whenever a step-up succeeds on the pages.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = ["BrowserSession", "PagePurpose", "PageToken", "csrf_token", "csrf_valid"]


class PagePurpose(StrEnum):
    CHALLENGE = "challenge"  # /challenge/{challenge_id}
    ACCOUNT = "account"  # /account/factors


@dataclass(frozen=True, slots=True, kw_only=True)
class PageToken:
    """A single-use link to one page, for one StepGuard session. Stored by its hash."""

    token_hash: str
    purpose: PagePurpose
    subject_id: str
    session_id: str
    challenge_id: str | None  # set for PagePurpose.CHALLENGE only
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserSession:
    """A browser that opened a page link. Stored by the hash of its cookie value."""

    id_hash: str
    subject_id: str
    session_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


_CSRF_DOMAIN = b"stepguard/pages/csrf/v1"


def csrf_token(cookie_value: str) -> str:
    """The anti-CSRF token for forms of the browser session whose cookie is ``cookie_value``.

    An HMAC keyed by the cookie's 256 random bits: only a party that knows the (HttpOnly)
    cookie can compute it, it needs no storage, and it changes whenever the cookie rotates.
    """
    return hmac.new(cookie_value.encode("utf-8"), _CSRF_DOMAIN, hashlib.sha256).hexdigest()


def csrf_valid(cookie_value: str, presented: str) -> bool:
    """Whether ``presented`` is this cookie's CSRF token (constant time)."""
    return hmac.compare_digest(csrf_token(cookie_value).encode(), presented.encode("utf-8"))
