"""Ports of the upstream sign-in (StepGuard as an OIDC relying party): the storage of
sign-ins in flight, and the OIDC client that talks to the upstream provider."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from stepguard.core.upstream import UpstreamConfig, UpstreamLogin


class UpstreamLoginRepository(Protocol):
    async def add(self, login: UpstreamLogin) -> None: ...

    async def prune(self, *, before: datetime) -> None:
        """Delete the sign-ins that expired before ``before`` (used or not)."""
        ...

    async def consume(self, state_hash: str, *, at: datetime) -> UpstreamLogin | None:
        """Mark the unexpired, unused sign-in with this state hash used and return it; a
        conditional write, so at most one concurrent caller gets it (else ``None``)."""
        ...


class UpstreamClient(Protocol):
    """The HTTP and JOSE side of OpenID Connect. Every failure raises
    ``UpstreamLoginFailedError`` with its precise reason (fail closed)."""

    async def authorization_endpoint(self, config: UpstreamConfig) -> str:
        """The provider's authorization endpoint (from its discovery document)."""
        ...

    async def exchange_code(
        self, config: UpstreamConfig, *, code: str, code_verifier: str, redirect_uri: str
    ) -> str:
        """The ID token (compact JWS) the token endpoint returns for this code."""
        ...

    async def verify_signature(self, config: UpstreamConfig, id_token: str) -> Mapping[str, Any]:
        """The ID token's claims once its signature verifies with the provider's keys (or
        the client secret, for an HS* algorithm the configuration allows)."""
        ...
