"""API keys for server-to-server callers: ``sgk_<secret>.<key id>``, stored as a hash."""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass

from stepguard.core.errors import UnauthenticatedError
from stepguard.core.ids import new_id, new_token, token_hash
from stepguard.core.model import ApiKey, AuditEvent
from stepguard.core.secret import Secret
from stepguard.service.deps import Deps

# What ``new_id(rng, "key")`` makes: anything else is refused before any lookup.
_KEY_ID = re.compile(r"key_[a-z2-7]{26}", re.ASCII)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedApiKey:
    key: ApiKey
    token: Secret[str]  # shown once


class ApiKeyService:
    """Creates, authenticates and revokes API keys.

    Successful look-ups are cached in-process for ``cache_seconds`` (the hot path would
    otherwise read the database on every request), so a revocation takes effect within that
    time on every process.
    """

    def __init__(self, deps: Deps, *, cache_seconds: float = 5.0) -> None:
        self._deps = deps
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    async def create(self, name: str) -> CreatedApiKey:
        deps = self._deps
        now = deps.clock.now()
        key_id = new_id(deps.rng, "key")
        secret = new_token(deps.rng, "sgk")
        token = Secret(f"{secret.reveal()}.{key_id}")
        key = ApiKey(id=key_id, name=name, secret_hash=token_hash(token.reveal()), created_at=now)
        async with deps.store.transaction() as uow:
            await uow.api_keys.add(key)
            await uow.audit.append(
                AuditEvent(
                    type="api_key.created",
                    at=now,
                    outcome="ok",
                    details={"key_id": key_id, "name": name},
                )
            )
        return CreatedApiKey(key=key, token=token)

    async def list(self) -> list[ApiKey]:
        async with self._deps.store.read() as uow:
            return await uow.api_keys.list()

    async def revoke(self, key_id: str) -> bool:
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            revoked = await uow.api_keys.revoke(key_id, at=now)
            if revoked:
                await uow.audit.append(
                    AuditEvent(
                        type="api_key.revoked", at=now, outcome="ok", details={"key_id": key_id}
                    )
                )
        self._cache.pop(key_id, None)
        return revoked

    async def authenticate(self, token: str) -> ApiKey:
        """The key a bearer token belongs to, or ``UnauthenticatedError``."""
        _, dot, key_id = token.rpartition(".")
        if not dot or len(token) > 256 or not _KEY_ID.fullmatch(key_id):
            raise UnauthenticatedError()
        presented = token_hash(token)
        cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() < cached[0]:
            key: ApiKey | None = cached[1]
        else:
            async with self._deps.store.read() as uow:
                key = await uow.api_keys.get(key_id)
            if key is not None and key.revoked_at is None:
                self._cache[key_id] = (time.monotonic() + self._cache_seconds, key)
        if key is None or key.revoked_at is not None:
            raise UnauthenticatedError()
        if not hmac.compare_digest(presented, key.secret_hash):
            raise UnauthenticatedError()
        return key
