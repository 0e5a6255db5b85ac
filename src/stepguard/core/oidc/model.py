"""The provider's records: clients, signing keys, pending authorization requests, grants,
authorization codes and refresh tokens. Secrets appear only as hashes (``token_hash``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepguard.core.secret import Secret


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcClient:
    """A relying party registered by the operator. ``secret_hash`` is ``None`` for a public
    client (PKCE only). ``audience`` is the access tokens' ``aud`` (default: the client id)."""

    id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("openid", "profile", "email", "groups", "offline_access")
    refresh_tokens: bool = False
    consent_required: bool = False
    audience: str | None = None
    created_at: datetime

    @property
    def public(self) -> bool:
        return self.secret_hash is None

    @property
    def access_audience(self) -> str:
        return self.audience or self.id


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """A JWS signing key. ``private_jwk`` is the private JWK as JSON (encrypted at rest).

    The newest key that is not retired signs; every key not retired is published."""

    kid: str
    alg: str
    private_jwk: Secret[str]
    created_at: datetime
    retired_at: datetime | None = None

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingAuthorization:
    """An authorization request waiting for sign-in or step-up. Stored server-side; the
    browser holds only its id and a binding cookie (``binding_hash``). Used once."""

    id: str
    binding_hash: str
    client_id: str
    params: dict[str, Any]  # the validated request (AuthorizationRequest.to_json())
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    challenge_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcGrant:
    """What one authorization produced: who, for which client, at which level. Codes and
    refresh tokens point at it; revoking it invalidates all of them and the userinfo
    endpoint refuses its access tokens."""

    id: str
    client_id: str
    subject_id: str
    session_id: str
    scope: tuple[str, ...]
    nonce: str | None
    acr: str
    amr: tuple[str, ...]
    auth_time: datetime
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationCode:
    code_hash: str
    grant_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshToken:
    token_hash: str
    grant_id: str
    client_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
