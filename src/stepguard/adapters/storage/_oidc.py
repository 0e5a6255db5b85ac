"""``OidcRepository`` on SQLAlchemy Core. Codes, refresh tokens and pending requests are
used by a conditional ``UPDATE ... WHERE used_at IS NULL`` whose row count decides the one
winner, on every backend and across processes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Row

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage.tables import (
    oidc_clients,
    oidc_codes,
    oidc_grants,
    oidc_keys,
    oidc_pending,
    oidc_refresh_tokens,
)
from stepguard.core.oidc.model import (
    AuthorizationCode,
    OidcClient,
    OidcGrant,
    PendingAuthorization,
    RefreshToken,
    SigningKey,
)
from stepguard.core.secret import Secret

if TYPE_CHECKING:
    from stepguard.adapters.storage._repositories import _Connection

__all__ = ["SqlOidcRepository"]

_C = oidc_clients.c
_K = oidc_keys.c
_P = oidc_pending.c
_G = oidc_grants.c
_O = oidc_codes.c
_R = oidc_refresh_tokens.c

_USE_PENDING: Final = (
    update(oidc_pending)
    .where(_P.id == bindparam("p_id"), _P.used_at.is_(None), _P.expires_at > bindparam("p_at"))
    .values(used_at=bindparam("p_at"))
)
_USE_CODE: Final = (
    update(oidc_codes)
    .where(_O.code_hash == bindparam("p_hash"), _O.used_at.is_(None))
    .values(used_at=bindparam("p_at"))
    .returning(*oidc_codes.c)
)
_USE_REFRESH: Final = (
    update(oidc_refresh_tokens)
    .where(_R.token_hash == bindparam("p_hash"), _R.used_at.is_(None))
    .values(used_at=bindparam("p_at"))
    .returning(*oidc_refresh_tokens.c)
)


def _client(row: Row[Any]) -> OidcClient:
    return OidcClient(
        id=row.id,
        name=row.name,
        secret_hash=row.secret_hash,
        redirect_uris=tuple(row.redirect_uris),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris),
        scopes=tuple(row.scopes),
        refresh_tokens=row.refresh_tokens,
        consent_required=row.consent_required,
        audience=row.audience,
        created_at=row.created_at,
    )


def _pending(row: Row[Any]) -> PendingAuthorization:
    return PendingAuthorization(
        id=row.id,
        binding_hash=row.binding_hash,
        client_id=row.client_id,
        params=dict(row.params),
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        challenge_id=row.challenge_id,
    )


def _grant(row: Row[Any]) -> OidcGrant:
    return OidcGrant(
        id=row.id,
        client_id=row.client_id,
        subject_id=row.subject_id,
        session_id=row.session_id,
        scope=tuple(row.scope),
        nonce=row.nonce,
        acr=row.acr,
        amr=tuple(row.amr),
        auth_time=row.auth_time,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _code(row: Row[Any]) -> AuthorizationCode:
    return AuthorizationCode(
        code_hash=row.code_hash,
        grant_id=row.grant_id,
        client_id=row.client_id,
        redirect_uri=row.redirect_uri,
        code_challenge=row.code_challenge,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


def _refresh(row: Row[Any]) -> RefreshToken:
    return RefreshToken(
        token_hash=row.token_hash,
        grant_id=row.grant_id,
        client_id=row.client_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


class SqlOidcRepository:
    __slots__ = ("_box", "_c")

    def __init__(self, connection: _Connection, box: SecretBox) -> None:
        self._c = connection
        self._box = box

    # --- clients --------------------------------------------------------------------------

    async def add_client(self, client: OidcClient) -> None:
        await self._c.write(
            insert(oidc_clients),
            {
                "id": client.id,
                "name": client.name,
                "secret_hash": client.secret_hash,
                "redirect_uris": list(client.redirect_uris),
                "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
                "scopes": list(client.scopes),
                "refresh_tokens": client.refresh_tokens,
                "consent_required": client.consent_required,
                "audience": client.audience,
                "created_at": client.created_at,
            },
        )

    async def get_client(self, client_id: str) -> OidcClient | None:
        row = (await self._c.run(select(oidc_clients).where(_C.id == client_id))).first()
        return _client(row) if row else None

    async def list_clients(self) -> list[OidcClient]:
        rows = (await self._c.run(select(oidc_clients).order_by(_C.id))).all()
        return [_client(r) for r in rows]

    async def remove_client(self, client_id: str) -> bool:
        result = await self._c.write(delete(oidc_clients).where(_C.id == client_id))
        return result.rowcount == 1

    # --- keys -----------------------------------------------------------------------------

    async def add_key(self, key: SigningKey) -> None:
        await self._c.write(
            insert(oidc_keys),
            {
                "kid": key.kid,
                "alg": key.alg,
                "private_enc": self._box.encrypt(key.private_jwk.reveal().encode("utf-8")),
                "created_at": key.created_at,
                "retired_at": key.retired_at,
            },
        )

    async def published_keys(self) -> list[SigningKey]:
        rows = (
            await self._c.run(
                select(oidc_keys)
                .where(_K.retired_at.is_(None))
                .order_by(_K.created_at.desc(), _K.kid.desc())
            )
        ).all()
        return [
            SigningKey(
                kid=r.kid,
                alg=r.alg,
                private_jwk=Secret(self._box.decrypt(r.private_enc).decode("utf-8")),
                created_at=r.created_at,
                retired_at=r.retired_at,
            )
            for r in rows
        ]

    async def retire_key(self, kid: str, *, at: datetime) -> bool:
        result = await self._c.write(
            update(oidc_keys).where(_K.kid == kid, _K.retired_at.is_(None)).values(retired_at=at)
        )
        return result.rowcount == 1

    # --- pending authorization requests ----------------------------------------------------

    async def add_pending(self, pending: PendingAuthorization) -> None:
        await self._c.write(
            insert(oidc_pending),
            {
                "id": pending.id,
                "binding_hash": pending.binding_hash,
                "client_id": pending.client_id,
                "params": pending.params,
                "created_at": pending.created_at,
                "expires_at": pending.expires_at,
                "used_at": pending.used_at,
                "challenge_id": pending.challenge_id,
            },
        )

    async def get_pending(self, pending_id: str) -> PendingAuthorization | None:
        row = (await self._c.run(select(oidc_pending).where(_P.id == pending_id))).first()
        return _pending(row) if row else None

    async def set_pending_challenge(self, pending_id: str, challenge_id: str) -> None:
        await self._c.write(
            update(oidc_pending).where(_P.id == pending_id).values(challenge_id=challenge_id)
        )

    async def use_pending(self, pending_id: str, *, at: datetime) -> bool:
        result = await self._c.write(_USE_PENDING, {"p_id": pending_id, "p_at": at})
        return result.rowcount == 1

    # --- grants ---------------------------------------------------------------------------

    async def add_grant(self, grant: OidcGrant) -> None:
        await self._c.write(
            insert(oidc_grants),
            {
                "id": grant.id,
                "client_id": grant.client_id,
                "subject_id": grant.subject_id,
                "session_id": grant.session_id,
                "scope": list(grant.scope),
                "nonce": grant.nonce,
                "acr": grant.acr,
                "amr": list(grant.amr),
                "auth_time": grant.auth_time,
                "created_at": grant.created_at,
                "revoked_at": grant.revoked_at,
            },
        )

    async def get_grant(self, grant_id: str) -> OidcGrant | None:
        row = (await self._c.run(select(oidc_grants).where(_G.id == grant_id))).first()
        return _grant(row) if row else None

    async def revoke_grant(self, grant_id: str, *, at: datetime) -> bool:
        result = await self._c.write(
            update(oidc_grants)
            .where(_G.id == grant_id, _G.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount == 1

    async def revoke_session_grants(self, session_id: str, *, at: datetime) -> int:
        result = await self._c.write(
            update(oidc_grants)
            .where(_G.session_id == session_id, _G.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return int(result.rowcount)

    # --- codes and refresh tokens ----------------------------------------------------------

    async def add_code(self, code: AuthorizationCode) -> None:
        await self._c.write(
            insert(oidc_codes),
            {
                "code_hash": code.code_hash,
                "grant_id": code.grant_id,
                "client_id": code.client_id,
                "redirect_uri": code.redirect_uri,
                "code_challenge": code.code_challenge,
                "created_at": code.created_at,
                "expires_at": code.expires_at,
                "used_at": code.used_at,
            },
        )

    async def use_code(self, code_hash: str, *, at: datetime) -> AuthorizationCode | None:
        row = (await self._c.write(_USE_CODE, {"p_hash": code_hash, "p_at": at})).first()
        return _code(row) if row else None

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        row = (await self._c.run(select(oidc_codes).where(_O.code_hash == code_hash))).first()
        return _code(row) if row else None

    async def add_refresh(self, token: RefreshToken) -> None:
        await self._c.write(
            insert(oidc_refresh_tokens),
            {
                "token_hash": token.token_hash,
                "grant_id": token.grant_id,
                "client_id": token.client_id,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "used_at": token.used_at,
            },
        )

    async def use_refresh(self, token_hash: str, *, at: datetime) -> RefreshToken | None:
        row = (await self._c.write(_USE_REFRESH, {"p_hash": token_hash, "p_at": at})).first()
        return _refresh(row) if row else None

    async def get_refresh(self, token_hash: str) -> RefreshToken | None:
        row = (
            await self._c.run(select(oidc_refresh_tokens).where(_R.token_hash == token_hash))
        ).first()
        return _refresh(row) if row else None
