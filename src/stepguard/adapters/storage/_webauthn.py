"""The WebAuthn repository: credentials and single-use ceremony challenges.

A ceremony is consumed by one conditional ``UPDATE ... WHERE used_at IS NULL AND expires_at >
now`` (with ``RETURNING``), so of two concurrent consumers exactly one gets the row, on every
backend and across processes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.engine import Row

from stepguard.adapters.storage.tables import webauthn_ceremonies, webauthn_credentials
from stepguard.core.model import CeremonyPurpose, WebAuthnCeremony, WebAuthnCredential

if TYPE_CHECKING:
    from stepguard.adapters.storage._repositories import _Connection
    from stepguard.service.ports import WebAuthnRepository

__all__ = ["SqlWebAuthnRepository"]

_W = webauthn_credentials.c
_INSERT_CREDENTIAL: Final = insert(webauthn_credentials)
_GET_CREDENTIAL: Final = select(webauthn_credentials).where(_W.factor_id == bindparam("p_id"))
_FIND_CREDENTIAL: Final = select(webauthn_credentials).where(
    _W.credential_id == bindparam("p_credential")
)
_LIST_CREDENTIALS: Final = (
    select(webauthn_credentials)
    .where(_W.subject_id == bindparam("p_subject"))
    .order_by(_W.factor_id)
)
_RECORD_USE: Final = (
    update(webauthn_credentials)
    .where(_W.factor_id == bindparam("p_id"))
    .values(sign_count=bindparam("p_count"), backed_up=bindparam("p_backed_up"))
)
_MARK_CLONE: Final = (
    update(webauthn_credentials)
    .where(_W.factor_id == bindparam("p_id"), _W.suspected_clone_at.is_(None))
    .values(suspected_clone_at=bindparam("p_at"))
)

_CE = webauthn_ceremonies.c
_INSERT_CEREMONY: Final = insert(webauthn_ceremonies)
_OPEN: Final = and_(_CE.used_at.is_(None), _CE.expires_at > bindparam("p_at"))
_CONSUME_FOR_CHALLENGE: Final = (
    update(webauthn_ceremonies)
    .where(
        _CE.challenge == bindparam("p_challenge"),
        _CE.purpose == CeremonyPurpose.AUTHENTICATE.value,
        _CE.subject_id == bindparam("p_subject"),
        _CE.challenge_id == bindparam("p_binding"),
        _OPEN,
    )
    .values(used_at=bindparam("p_at"))
    .returning(*webauthn_ceremonies.c)
)
_CONSUME_FOR_FACTOR: Final = (
    update(webauthn_ceremonies)
    .where(
        _CE.challenge == bindparam("p_challenge"),
        _CE.purpose == CeremonyPurpose.REGISTER.value,
        _CE.subject_id == bindparam("p_subject"),
        _CE.factor_id == bindparam("p_binding"),
        _OPEN,
    )
    .values(used_at=bindparam("p_at"))
    .returning(*webauthn_ceremonies.c)
)
# Only the newest options of a challenge (or a pending factor) stay valid.
_SUPERSEDE_FOR_CHALLENGE: Final = delete(webauthn_ceremonies).where(
    _CE.challenge_id == bindparam("p_binding"), _CE.used_at.is_(None)
)
_SUPERSEDE_FOR_FACTOR: Final = delete(webauthn_ceremonies).where(
    _CE.factor_id == bindparam("p_binding"), _CE.used_at.is_(None)
)


def _credential(row: Row[Any]) -> WebAuthnCredential:
    return WebAuthnCredential(
        factor_id=row.factor_id,
        subject_id=row.subject_id,
        credential_id=bytes(row.credential_id),
        user_handle=bytes(row.user_handle),
        public_key=bytes(row.public_key),
        sign_count=int(row.sign_count),
        aaguid=row.aaguid,
        transports=tuple(row.transports),
        backup_eligible=row.backup_eligible,
        backed_up=row.backed_up,
        discoverable=row.discoverable,
        attestation_format=row.attestation_format,
        attestation_trusted=row.attestation_trusted,
        suspected_clone_at=row.suspected_clone_at,
    )


def _ceremony(row: Row[Any]) -> WebAuthnCeremony:
    return WebAuthnCeremony(
        id=row.id,
        subject_id=row.subject_id,
        purpose=CeremonyPurpose(row.purpose),
        challenge=bytes(row.challenge),
        require_user_verification=row.require_uv,
        created_at=row.created_at,
        expires_at=row.expires_at,
        challenge_id=row.challenge_id,
        factor_id=row.factor_id,
        user_handle=None if row.user_handle is None else bytes(row.user_handle),
        resident_key=row.resident_key,
        used_at=row.used_at,
    )


class SqlWebAuthnRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def add_credential(self, credential: WebAuthnCredential) -> None:
        await self._c.write(
            _INSERT_CREDENTIAL,
            {
                "factor_id": credential.factor_id,
                "subject_id": credential.subject_id,
                "credential_id": credential.credential_id,
                "user_handle": credential.user_handle,
                "public_key": credential.public_key,
                "sign_count": credential.sign_count,
                "aaguid": credential.aaguid,
                "transports": list(credential.transports),
                "backup_eligible": credential.backup_eligible,
                "backed_up": credential.backed_up,
                "discoverable": credential.discoverable,
                "attestation_format": credential.attestation_format,
                "attestation_trusted": credential.attestation_trusted,
                "suspected_clone_at": credential.suspected_clone_at,
            },
        )

    async def get_credential(self, factor_id: str) -> WebAuthnCredential | None:
        row = (await self._c.run(_GET_CREDENTIAL, {"p_id": factor_id})).first()
        return None if row is None else _credential(row)

    async def find_credential(self, credential_id: bytes) -> WebAuthnCredential | None:
        row = (await self._c.run(_FIND_CREDENTIAL, {"p_credential": credential_id})).first()
        return None if row is None else _credential(row)

    async def list_credentials(self, subject_id: str) -> list[WebAuthnCredential]:
        result = await self._c.run(_LIST_CREDENTIALS, {"p_subject": subject_id})
        return [_credential(row) for row in result]

    async def record_use(self, factor_id: str, *, sign_count: int, backed_up: bool) -> None:
        await self._c.write(
            _RECORD_USE, {"p_id": factor_id, "p_count": sign_count, "p_backed_up": backed_up}
        )

    async def mark_suspected_clone(self, factor_id: str, *, at: datetime) -> bool:
        result = await self._c.write(_MARK_CLONE, {"p_id": factor_id, "p_at": at})
        return result.rowcount == 1

    async def add_ceremony(self, ceremony: WebAuthnCeremony) -> None:
        if ceremony.purpose is CeremonyPurpose.AUTHENTICATE:
            await self._c.write(_SUPERSEDE_FOR_CHALLENGE, {"p_binding": ceremony.challenge_id})
        else:
            await self._c.write(_SUPERSEDE_FOR_FACTOR, {"p_binding": ceremony.factor_id})
        await self._c.write(
            _INSERT_CEREMONY,
            {
                "id": ceremony.id,
                "subject_id": ceremony.subject_id,
                "purpose": ceremony.purpose.value,
                "challenge": ceremony.challenge,
                "challenge_id": ceremony.challenge_id,
                "factor_id": ceremony.factor_id,
                "user_handle": ceremony.user_handle,
                "resident_key": ceremony.resident_key,
                "require_uv": ceremony.require_user_verification,
                "created_at": ceremony.created_at,
                "expires_at": ceremony.expires_at,
                "used_at": ceremony.used_at,
            },
        )

    async def consume_ceremony(
        self,
        *,
        purpose: CeremonyPurpose,
        challenge: bytes,
        subject_id: str,
        binding: str,
        at: datetime,
    ) -> WebAuthnCeremony | None:
        statement = (
            _CONSUME_FOR_CHALLENGE
            if purpose is CeremonyPurpose.AUTHENTICATE
            else _CONSUME_FOR_FACTOR
        )
        result = await self._c.write(
            statement,
            {"p_challenge": challenge, "p_subject": subject_id, "p_binding": binding, "p_at": at},
        )
        row = result.first()
        return None if row is None else _ceremony(row)


if TYPE_CHECKING:
    _is_a_port: type[WebAuthnRepository] = SqlWebAuthnRepository
