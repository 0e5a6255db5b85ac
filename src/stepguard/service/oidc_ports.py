"""Ports of the OpenID Connect provider: its storage and the JOSE signer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from stepguard.core.oidc.model import (
    AuthorizationCode,
    OidcClient,
    OidcGrant,
    PendingAuthorization,
    RefreshToken,
    SigningKey,
)
from stepguard.core.secret import Secret


class OidcRepository(Protocol):
    """Clients, keys, pending requests, grants, codes and refresh tokens.

    ``use_*`` are conditional writes: at most one concurrent caller gets the record."""

    async def add_client(self, client: OidcClient) -> None: ...
    async def get_client(self, client_id: str) -> OidcClient | None: ...
    async def list_clients(self) -> list[OidcClient]: ...
    async def remove_client(self, client_id: str) -> bool: ...

    async def add_key(self, key: SigningKey) -> None: ...
    async def published_keys(self) -> list[SigningKey]:
        """Keys not retired, newest first (the first signs)."""
        ...

    async def retire_key(self, kid: str, *, at: datetime) -> bool: ...

    async def add_pending(self, pending: PendingAuthorization) -> None: ...
    async def get_pending(self, pending_id: str) -> PendingAuthorization | None: ...
    async def set_pending_challenge(self, pending_id: str, challenge_id: str) -> None: ...
    async def use_pending(self, pending_id: str, *, at: datetime) -> bool:
        """Unused and unexpired at ``at`` -> used. ``True`` only for the call that did."""
        ...

    async def add_grant(self, grant: OidcGrant) -> None: ...
    async def get_grant(self, grant_id: str) -> OidcGrant | None: ...
    async def revoke_grant(self, grant_id: str, *, at: datetime) -> bool: ...
    async def revoke_session_grants(self, session_id: str, *, at: datetime) -> int: ...

    async def add_code(self, code: AuthorizationCode) -> None: ...
    async def use_code(self, code_hash: str, *, at: datetime) -> AuthorizationCode | None:
        """Unused -> used (expiry is the caller's check); ``None`` when unknown or used."""
        ...

    async def get_code(self, code_hash: str) -> AuthorizationCode | None: ...

    async def add_refresh(self, token: RefreshToken) -> None: ...
    async def use_refresh(self, token_hash: str, *, at: datetime) -> RefreshToken | None:
        """Unused -> used; ``None`` when unknown or already used."""
        ...

    async def get_refresh(self, token_hash: str) -> RefreshToken | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKey:
    kid: str
    jwk: Mapping[str, Any]


class Jose(Protocol):
    """JWS over the stored keys (the adapter is joserfc)."""

    def generate(self, *, alg: str, kid: str) -> Secret[str]:
        """A new private JWK (JSON) for ``alg`` with this ``kid``."""
        ...

    def public_jwk(self, key: SigningKey) -> dict[str, Any]: ...

    def sign(self, claims: Mapping[str, Any], *, key: SigningKey, typ: str) -> str: ...

    def verify(self, token: str, *, keys: Sequence[SigningKey], typ: str | None) -> dict[str, Any]:
        """The claims of a token signed by one of ``keys`` (signature only: the caller
        checks claims). Raise ``ValueError`` on any failure."""
        ...

    def at_hash(self, access_token: str, *, alg: str) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcConfig:
    issuer: str
    code_ttl_seconds: int = 60
    pending_ttl_seconds: int = 600
    id_token_ttl_seconds: int = 300
    access_token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 30 * 86400
    signing_alg: str = "ES256"
