"""The claims StepGuard signs: the ID token (OIDC Core 2), the RFC 9068 access token and
the userinfo response. ``auth_time``, ``acr`` and ``amr`` come from the grant and never
change over refreshes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stepguard.core.model import Subject
from stepguard.core.oidc.model import OidcClient, OidcGrant


def _ts(at: datetime) -> int:
    return int(at.timestamp())


def id_token_claims(
    *,
    issuer: str,
    grant: OidcGrant,
    client: OidcClient,
    now: datetime,
    ttl_seconds: int,
    at_hash: str | None = None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": grant.subject_id,
        "aud": client.id,
        "azp": client.id,
        "exp": _ts(now) + ttl_seconds,
        "iat": _ts(now),
        "auth_time": _ts(grant.auth_time),
        "acr": grant.acr,
        "amr": list(grant.amr),
        "sid": grant.session_id,
    }
    if grant.nonce is not None:
        claims["nonce"] = grant.nonce
    if at_hash is not None:
        claims["at_hash"] = at_hash
    return claims


def access_token_claims(
    *,
    issuer: str,
    grant: OidcGrant,
    client: OidcClient,
    now: datetime,
    ttl_seconds: int,
    jti: str,
) -> dict[str, Any]:
    """RFC 9068 section 2.2, with the RFC 9470 authentication claims."""
    return {
        "iss": issuer,
        "sub": grant.subject_id,
        "aud": client.access_audience,
        "client_id": client.id,
        "exp": _ts(now) + ttl_seconds,
        "iat": _ts(now),
        "jti": jti,
        "scope": " ".join(grant.scope),
        "acr": grant.acr,
        "amr": list(grant.amr),
        "auth_time": _ts(grant.auth_time),
        "sid": grant.session_id,
        "gid": grant.id,
    }


def userinfo_claims(subject: Subject, scope: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"sub": subject.id}
    if "email" in scope and subject.email:
        out["email"] = subject.email
    if "groups" in scope:
        out["groups"] = list(subject.groups)
    return out
