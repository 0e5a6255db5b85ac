"""``DeliveryRepository``: email/SMS codes and the send log, on SQLAlchemy Core.

Using a code is one conditional ``UPDATE`` (unused, not invalidated, unexpired) whose row
count decides the single winner. Send-limit checks are serialized: PostgreSQL takes a
transaction-scoped advisory lock, SQLite's write transactions already hold the database lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import Row

from stepguard.adapters.storage.tables import delivery_codes, delivery_log
from stepguard.core.factors.oob import Channel, CodePurpose
from stepguard.core.model import DeliveryCode

if TYPE_CHECKING:
    from stepguard.adapters.storage._repositories import _Connection
    from stepguard.service.ports import DeliveryRepository

__all__ = ["SqlDeliveryRepository"]

# An arbitrary, fixed 64-bit key for pg_advisory_xact_lock ("stepguard delivery limits").
_SEND_LOCK_KEY: Final = 0x5347_4445_4C56_0001
_PG_LOCK: Final = text("SELECT pg_advisory_xact_lock(:key)")

_D = delivery_codes.c
_L = delivery_log.c
_LIVE: Final = (_D.used_at.is_(None), _D.invalidated_at.is_(None))
_INSERT_CODE: Final = insert(delivery_codes)
_INVALIDATE_FACTOR: Final = (
    update(delivery_codes)
    .where(_D.factor_id == bindparam("p_factor"), *_LIVE)
    .values(invalidated_at=bindparam("p_at"))
)
_INVALIDATE_ONE: Final = (
    update(delivery_codes)
    .where(_D.id == bindparam("p_id"), *_LIVE)
    .values(invalidated_at=bindparam("p_at"))
)
_LIVE_CODE: Final = (
    select(delivery_codes)
    .where(
        _D.factor_id == bindparam("p_factor"),
        _D.purpose == bindparam("p_purpose"),
        *_LIVE,
        _D.expires_at > bindparam("p_at"),
    )
    .order_by(_D.created_at.desc(), _D.id.desc())
    .limit(1)
)
_USE_CODE: Final = (
    update(delivery_codes)
    .where(_D.id == bindparam("p_id"), *_LIVE, _D.expires_at > bindparam("p_at"))
    .values(used_at=bindparam("p_at"))
)
_INSERT_SEND: Final = insert(delivery_log)
_PRUNE_SENDS: Final = delete(delivery_log).where(_L.at < bindparam("p_before"))


def _code(row: Row[Any]) -> DeliveryCode:
    return DeliveryCode(
        id=row.id,
        subject_id=row.subject_id,
        factor_id=row.factor_id,
        purpose=row.purpose,
        challenge_id=row.challenge_id,
        code_hash=row.code_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        invalidated_at=row.invalidated_at,
    )


class SqlDeliveryRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def lock_sends(self) -> None:
        if self._c.dialect_name == "postgresql":
            await self._c.write(_PG_LOCK, {"key": _SEND_LOCK_KEY})

    async def count_sends(
        self,
        *,
        since: datetime,
        channel: Channel | None = None,
        kind: str | None = None,
        subject_id: str | None = None,
        destination_key: str | None = None,
    ) -> int:
        stmt = select(func.count()).select_from(delivery_log).where(_L.at >= since)
        if channel is not None:
            stmt = stmt.where(_L.channel == channel.value)
        if kind is not None:
            stmt = stmt.where(_L.kind == kind)
        if subject_id is not None:
            stmt = stmt.where(_L.subject_id == subject_id)
        if destination_key is not None:
            stmt = stmt.where(_L.destination_key == destination_key)
        return int((await self._c.run(stmt)).scalar_one())

    async def record_send(
        self,
        *,
        at: datetime,
        channel: Channel,
        kind: str,
        subject_id: str | None,
        destination_key: str,
    ) -> None:
        await self._c.write(
            _INSERT_SEND,
            {
                "at": at,
                "channel": channel.value,
                "kind": kind,
                "subject_id": subject_id,
                "destination_key": destination_key,
            },
        )

    async def prune_sends(self, *, before: datetime) -> None:
        await self._c.write(_PRUNE_SENDS, {"p_before": before})

    async def add_code(self, code: DeliveryCode) -> None:
        await self._c.write(
            _INSERT_CODE,
            {
                "id": code.id,
                "subject_id": code.subject_id,
                "factor_id": code.factor_id,
                "purpose": code.purpose,
                "challenge_id": code.challenge_id,
                "code_hash": code.code_hash,
                "created_at": code.created_at,
                "expires_at": code.expires_at,
                "used_at": code.used_at,
                "invalidated_at": code.invalidated_at,
            },
        )

    async def invalidate_codes(self, factor_id: str, *, at: datetime) -> int:
        result = await self._c.write(_INVALIDATE_FACTOR, {"p_factor": factor_id, "p_at": at})
        return result.rowcount

    async def invalidate_code(self, code_id: str, *, at: datetime) -> None:
        await self._c.write(_INVALIDATE_ONE, {"p_id": code_id, "p_at": at})

    async def live_code(
        self, factor_id: str, *, purpose: CodePurpose, challenge_id: str | None, at: datetime
    ) -> DeliveryCode | None:
        stmt = _LIVE_CODE.where(
            _D.challenge_id.is_(None)
            if challenge_id is None
            else _D.challenge_id == bindparam("p_challenge")
        )
        params: dict[str, Any] = {"p_factor": factor_id, "p_purpose": purpose.value, "p_at": at}
        if challenge_id is not None:
            params["p_challenge"] = challenge_id
        row = (await self._c.run(stmt, params)).first()
        return None if row is None else _code(row)

    async def use_code(self, code_id: str, *, at: datetime) -> bool:
        result = await self._c.write(_USE_CODE, {"p_id": code_id, "p_at": at})
        return result.rowcount == 1


if TYPE_CHECKING:
    _is_a_port: type[DeliveryRepository] = SqlDeliveryRepository
