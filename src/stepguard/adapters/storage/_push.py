"""``PushRepository``: approver devices, push requests and push pauses, on SQLAlchemy Core.

Answering a push, finishing it and completing a pairing are conditional ``UPDATE``s whose row
count decides the single winner. Push starts of one subject are serialized: PostgreSQL takes a
transaction-scoped advisory lock on the subject, SQLite's write transactions already hold the
database lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage.tables import push_blocks, push_devices, push_requests
from stepguard.core.factors.push import PushStatus
from stepguard.core.model import PushDevice, PushRequest
from stepguard.core.secret import Secret

if TYPE_CHECKING:
    from stepguard.adapters.storage._repositories import _Connection
    from stepguard.service.push_ports import PushRepository

__all__ = ["SqlPushRepository"]

# Two 32-bit keys for pg_advisory_xact_lock: a fixed class ("stepguard push") and the subject.
_PG_LOCK: Final = text("SELECT pg_advisory_xact_lock(:class_key, hashtext(:subject))")
_LOCK_CLASS: Final = 0x5347_5053

_D = push_devices.c
_R = push_requests.c
_B = push_blocks.c
_PENDING: Final = PushStatus.PENDING.value
_BAD: Final = (PushStatus.DENIED.value, PushStatus.WRONG_NUMBER.value)


def _device(row: Row[Any], box: SecretBox) -> PushDevice:
    subscription = None
    if row.subscription_enc is not None:
        subscription = Secret(box.decrypt(row.subscription_enc).decode("utf-8"))
    return PushDevice(
        factor_id=row.factor_id,
        subject_id=row.subject_id,
        created_at=row.created_at,
        pairing_hash=row.pairing_hash,
        pairing_expires_at=row.pairing_expires_at,
        paired_at=row.paired_at,
        public_key=row.public_key,
        device_token_hash=row.device_token_hash,
        subscription=subscription,
        user_agent=row.user_agent,
    )


def _request(row: Row[Any]) -> PushRequest:
    return PushRequest(
        id=row.id,
        challenge_id=row.challenge_id,
        subject_id=row.subject_id,
        number=row.number,
        choices=tuple(int(c) for c in row.choices.split(",") if c),
        status=row.status,
        created_at=row.created_at,
        expires_at=row.expires_at,
        answered_at=row.answered_at,
        answered_by=row.answered_by,
        origin_location=row.origin_location,
        origin_browser=row.origin_browser,
        finished_at=row.finished_at,
    )


class SqlPushRepository:
    __slots__ = ("_box", "_c")

    def __init__(self, connection: _Connection, box: SecretBox) -> None:
        self._c = connection
        self._box = box

    async def lock_subject(self, subject_id: str) -> None:
        if self._c.dialect_name == "postgresql":
            await self._c.write(_PG_LOCK, {"class_key": _LOCK_CLASS, "subject": subject_id})

    # --- devices ------------------------------------------------------------------------

    async def add_device(self, device: PushDevice) -> None:
        await self._c.write(
            insert(push_devices),
            {
                "factor_id": device.factor_id,
                "subject_id": device.subject_id,
                "created_at": device.created_at,
                "pairing_hash": device.pairing_hash,
                "pairing_expires_at": device.pairing_expires_at,
                "paired_at": device.paired_at,
                "public_key": device.public_key,
                "device_token_hash": device.device_token_hash,
                "subscription_enc": (
                    self._box.encrypt(device.subscription.reveal().encode("utf-8"))
                    if device.subscription
                    else None
                ),
                "user_agent": device.user_agent,
            },
        )

    async def _one_device(self, where: Any, params: dict[str, Any]) -> PushDevice | None:
        row = (await self._c.run(select(push_devices).where(where), params)).first()
        return None if row is None else _device(row, self._box)

    async def get_device(self, factor_id: str) -> PushDevice | None:
        return await self._one_device(_D.factor_id == bindparam("p"), {"p": factor_id})

    async def find_by_pairing(self, pairing_hash: str) -> PushDevice | None:
        return await self._one_device(_D.pairing_hash == bindparam("p"), {"p": pairing_hash})

    async def find_by_device_token(self, token_hash: str) -> PushDevice | None:
        return await self._one_device(_D.device_token_hash == bindparam("p"), {"p": token_hash})

    async def list_devices(self, subject_id: str) -> list[PushDevice]:
        stmt = (
            select(push_devices)
            .where(_D.subject_id == bindparam("p"))
            .order_by(_D.created_at, _D.factor_id)
        )
        return [_device(row, self._box) for row in await self._c.run(stmt, {"p": subject_id})]

    async def complete_pairing(
        self,
        factor_id: str,
        *,
        pairing_hash: str,
        public_key: bytes,
        device_token_hash: str,
        user_agent: str,
        at: datetime,
    ) -> bool:
        stmt = (
            update(push_devices)
            .where(
                _D.factor_id == factor_id,
                _D.pairing_hash == pairing_hash,
                _D.paired_at.is_(None),
                _D.pairing_expires_at > at,
            )
            .values(
                paired_at=at,
                public_key=public_key,
                device_token_hash=device_token_hash,
                user_agent=user_agent,
                pairing_hash=None,
                pairing_expires_at=None,
            )
        )
        return (await self._c.write(stmt)).rowcount == 1

    async def set_subscription(self, factor_id: str, subscription: Secret[str] | None) -> None:
        value = self._box.encrypt(subscription.reveal().encode("utf-8")) if subscription else None
        await self._c.write(
            update(push_devices).where(_D.factor_id == factor_id).values(subscription_enc=value)
        )

    # --- requests -----------------------------------------------------------------------

    async def add_request(self, request: PushRequest) -> None:
        await self._c.write(
            insert(push_requests),
            {
                "id": request.id,
                "challenge_id": request.challenge_id,
                "subject_id": request.subject_id,
                "number": request.number,
                "choices": ",".join(str(c) for c in request.choices),
                "status": request.status,
                "created_at": request.created_at,
                "expires_at": request.expires_at,
                "answered_at": request.answered_at,
                "answered_by": request.answered_by,
                "origin_location": request.origin_location,
                "origin_browser": request.origin_browser,
                "finished_at": request.finished_at,
            },
        )

    async def get_request(self, push_id: str) -> PushRequest | None:
        row = (
            await self._c.run(select(push_requests).where(_R.id == bindparam("p")), {"p": push_id})
        ).first()
        return None if row is None else _request(row)

    async def pending_requests(self, subject_id: str, *, at: datetime) -> list[PushRequest]:
        stmt = (
            select(push_requests)
            .where(_R.subject_id == subject_id, _R.status == _PENDING, _R.expires_at > at)
            .order_by(_R.created_at, _R.id)
        )
        return [_request(row) for row in await self._c.run(stmt)]

    async def count_requests(self, subject_id: str, *, since: datetime) -> int:
        stmt = (
            select(func.count())
            .select_from(push_requests)
            .where(_R.subject_id == subject_id, _R.created_at >= since)
        )
        return int((await self._c.run(stmt)).scalar_one())

    async def count_unanswered_or_denied(
        self, subject_id: str, *, since: datetime, at: datetime
    ) -> int:
        stmt = (
            select(func.count())
            .select_from(push_requests)
            .where(
                _R.subject_id == subject_id,
                _R.created_at >= since,
                or_(
                    _R.status.in_(_BAD),
                    (_R.status == _PENDING) & (_R.expires_at <= at),
                ),
            )
        )
        return int((await self._c.run(stmt)).scalar_one())

    async def supersede(self, challenge_id: str, *, at: datetime) -> int:
        stmt = (
            update(push_requests)
            .where(_R.challenge_id == challenge_id, _R.status == _PENDING, _R.expires_at > at)
            .values(status=PushStatus.SUPERSEDED.value, answered_at=at)
        )
        return (await self._c.write(stmt)).rowcount

    async def answer(self, push_id: str, *, status: str, factor_id: str, at: datetime) -> bool:
        stmt = (
            update(push_requests)
            .where(_R.id == push_id, _R.status == _PENDING, _R.expires_at > at)
            .values(status=status, answered_at=at, answered_by=factor_id)
        )
        return (await self._c.write(stmt)).rowcount == 1

    async def mark_finished(self, push_id: str, *, at: datetime) -> bool:
        stmt = (
            update(push_requests)
            .where(
                _R.id == push_id,
                _R.status == PushStatus.APPROVED.value,
                _R.finished_at.is_(None),
            )
            .values(finished_at=at)
        )
        return (await self._c.write(stmt)).rowcount == 1

    # --- pauses -------------------------------------------------------------------------

    async def get_block(self, subject_id: str) -> datetime | None:
        row = (
            await self._c.run(select(_B.blocked_until).where(_B.subject_id == subject_id))
        ).first()
        return None if row is None else row.blocked_until

    async def set_block(self, subject_id: str, *, until: datetime, at: datetime) -> None:
        values = {"subject_id": subject_id, "blocked_until": until, "created_at": at}
        dialect_insert = pg_insert if self._c.dialect_name == "postgresql" else sqlite_insert
        stmt = dialect_insert(push_blocks).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_B.subject_id],
            set_={"blocked_until": stmt.excluded.blocked_until, "created_at": at},
        )
        await self._c.write(stmt)


if TYPE_CHECKING:
    _is_a_port: type[PushRepository] = SqlPushRepository
