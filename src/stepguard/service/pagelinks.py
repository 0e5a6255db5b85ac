"""Minting page links: the single-use token an application hands to its user's browser.

Shared by the decision use case (a step-up's challenge link, minted in the same transaction
as the challenge) and the page use cases (the account page link).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stepguard.core.ids import new_token, token_hash
from stepguard.core.pages import PagePurpose, PageToken
from stepguard.core.secret import Secret
from stepguard.service.deps import Deps

PAGE_TOKEN_PREFIX = "sgp"  # noqa: S105 - an id prefix, not a secret


@dataclass(frozen=True, slots=True, kw_only=True)
class PageLink:
    """A new page token (shown once, in a URL) and what it opens."""

    token: Secret[str]
    purpose: PagePurpose
    challenge_id: str | None
    expires_at: datetime

    def __repr__(self) -> str:
        return f"PageLink(purpose={self.purpose.value!r}, token=<redacted>)"


def mint_page_link(
    deps: Deps,
    *,
    purpose: PagePurpose,
    subject_id: str,
    session_id: str,
    challenge_id: str | None,
    now: datetime,
    not_after: datetime,
) -> tuple[PageLink, PageToken]:
    """A page link and the record to store for it (its hash), valid for the configured
    lifetime (at most five minutes) and never past ``not_after``."""
    token = new_token(deps.rng, PAGE_TOKEN_PREFIX)
    expires_at = min(now + deps.config.page_token_ttl, not_after)
    record = PageToken(
        token_hash=token_hash(token.reveal()),
        purpose=purpose,
        subject_id=subject_id,
        session_id=session_id,
        challenge_id=challenge_id,
        created_at=now,
        expires_at=expires_at,
    )
    link = PageLink(token=token, purpose=purpose, challenge_id=challenge_id, expires_at=expires_at)
    return link, record
