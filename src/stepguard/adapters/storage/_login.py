"""The login repository (``UnitOfWork.logins``): passwords, guessing counters, passkey sign-in
ceremonies. Single use is one conditional ``UPDATE ... WHERE used_at IS NULL`` with
``RETURNING``; the counters are serialized by :meth:`SqlLoginRepository.lock_limits`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Executable, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from stepguard.adapters.storage.tables import (
    login_ceremonies,
    login_counters,
    login_ip_failures,
    passwords,
    subjects,
)
from stepguard.service.login_ports import AccountCounter, LoginCeremony, StoredPassword

if TYPE_CHECKING:
    from stepguard.adapters.storage._repositories import _Connection
    from stepguard.service.login_ports import LoginRepository

__all__ = ["SqlLoginRepository"]

# An arbitrary, fixed 64-bit key for pg_advisory_xact_lock ("stepguard login limits").
_LOGIN_LOCK_KEY: Final = 0x5347_4C4F_4749_0001
_PG_LOCK: Final = text("SELECT pg_advisory_xact_lock(:key)")

_S = subjects.c
_BY_EMAIL: Final = (
    select(_S.id)
    .where(_S.email.is_not(None), func.lower(_S.email) == bindparam("p_email"))
    .order_by(_S.id)
    .limit(2)
)
_BY_EMAIL_EXACT: Final = select(_S.id).where(_S.email == bindparam("p_email")).limit(2)

_P = passwords.c
_GET_PASSWORD: Final = select(passwords).where(_P.subject_id == bindparam("p_subject"))
_DELETE_PASSWORD: Final = delete(passwords).where(_P.subject_id == bindparam("p_subject"))
_REPLACE_HASH: Final = (
    update(passwords)
    .where(_P.subject_id == bindparam("p_subject"), _P.hash == bindparam("p_old"))
    .values(hash=bindparam("p_new"))
)

_C = login_counters.c
_GET_COUNTER: Final = select(_C.failed_attempts, _C.locked_until).where(
    _C.subject_id == bindparam("p_subject")
)

_I = login_ip_failures.c
_COUNT_IP: Final = select(func.count()).where(
    _I.ip == bindparam("p_ip"), _I.at > bindparam("p_since")
)
_ADD_IP: Final = insert(login_ip_failures).returning(_I.id)
_FORGET_IP: Final = delete(login_ip_failures).where(_I.id == bindparam("p_id"))
_PRUNE_IP: Final = delete(login_ip_failures).where(
    _I.ip == bindparam("p_ip"), _I.at <= bindparam("p_before")
)

_CE = login_ceremonies.c
_ADD_CEREMONY: Final = insert(login_ceremonies)
_CONSUME_CEREMONY: Final = (
    update(login_ceremonies)
    .where(
        _CE.challenge == bindparam("p_challenge"),
        _CE.binding == bindparam("p_binding"),
        _CE.used_at.is_(None),
        _CE.expires_at > bindparam("p_at"),
    )
    .values(used_at=bindparam("p_at"))
    .returning(*login_ceremonies.c)
)
_PRUNE_CEREMONIES: Final = delete(login_ceremonies).where(_CE.expires_at <= bindparam("p_before"))


def _upserts(table: Any, key: str, columns: tuple[str, ...]) -> dict[str, Executable]:
    built: dict[str, Executable] = {}
    for name, dialect in (("postgresql", pg_dialect), ("sqlite", sqlite_dialect)):
        stmt: Any = dialect.insert(table)
        built[name] = stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={column: stmt.excluded[column] for column in columns},
        )
    return built


def _insert_ignore(table: Any, key: str) -> dict[str, Executable]:
    built: dict[str, Executable] = {}
    for name, dialect in (("postgresql", pg_dialect), ("sqlite", sqlite_dialect)):
        stmt: Any = dialect.insert(table)
        built[name] = stmt.on_conflict_do_nothing(index_elements=[table.c[key]])
    return built


_PUT_PASSWORD: Final = _upserts(passwords, "subject_id", ("hash", "set_at"))
_PUT_COUNTER: Final = _upserts(
    login_counters, "subject_id", ("failed_attempts", "locked_until", "updated_at")
)
_ENSURE_COUNTER: Final = _insert_ignore(login_counters, "subject_id")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class SqlLoginRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def lock_limits(self) -> None:
        if self._c.dialect_name == "postgresql":
            await self._c.write(_PG_LOCK, {"key": _LOGIN_LOCK_KEY})

    async def subject_ids_by_email(self, email: str) -> list[str]:
        # SQLite's lower() folds ASCII only, PostgreSQL's all of Unicode: compare
        # case-insensitively only for ASCII addresses, so both backends find the same subjects.
        if email.isascii():
            result = await self._c.run(_BY_EMAIL, {"p_email": email.lower()})
        else:
            result = await self._c.run(_BY_EMAIL_EXACT, {"p_email": email})
        return [row[0] for row in result]

    async def get_password(self, subject_id: str) -> StoredPassword | None:
        row = (await self._c.run(_GET_PASSWORD, {"p_subject": subject_id})).first()
        if row is None:
            return None
        return StoredPassword(subject_id=row.subject_id, hash=row.hash, set_at=row.set_at)

    async def put_password(self, password: StoredPassword) -> None:
        await self._c.write(
            _PUT_PASSWORD[self._c.dialect_name],
            {"subject_id": password.subject_id, "hash": password.hash, "set_at": password.set_at},
        )

    async def delete_password(self, subject_id: str) -> bool:
        result = await self._c.write(_DELETE_PASSWORD, {"p_subject": subject_id})
        return result.rowcount > 0

    async def replace_hash(self, subject_id: str, *, old: str, new: str) -> bool:
        result = await self._c.write(
            _REPLACE_HASH, {"p_subject": subject_id, "p_old": old, "p_new": new}
        )
        return result.rowcount == 1

    async def counter_for_update(self, subject_id: str) -> AccountCounter:
        # The row exists afterwards, so FOR UPDATE always has a row to lock (PostgreSQL; on
        # SQLite the write transaction holds the database lock already).
        await self._c.write(
            _ENSURE_COUNTER[self._c.dialect_name],
            {
                "subject_id": subject_id,
                "failed_attempts": 0,
                "locked_until": None,
                "updated_at": _EPOCH,
            },
        )
        statement: Executable = _GET_COUNTER
        if self._c.dialect_name == "postgresql":
            statement = _GET_COUNTER.with_for_update()
        row = (await self._c.run(statement, {"p_subject": subject_id})).first()
        if row is None:  # pragma: no cover - inserted above, deleted only with the subject
            return AccountCounter()
        return AccountCounter(
            failed_attempts=int(row.failed_attempts), locked_until=row.locked_until
        )

    async def save_counter(self, subject_id: str, counter: AccountCounter, *, at: datetime) -> None:
        await self._c.write(
            _PUT_COUNTER[self._c.dialect_name],
            {
                "subject_id": subject_id,
                "failed_attempts": counter.failed_attempts,
                "locked_until": counter.locked_until,
                "updated_at": at,
            },
        )

    async def count_ip_failures(self, ip: str, *, since: datetime) -> int:
        result = await self._c.run(_COUNT_IP, {"p_ip": ip, "p_since": since})
        return int(result.scalar_one())

    async def add_ip_failure(self, ip: str, *, at: datetime) -> int:
        result = await self._c.write(_ADD_IP, {"ip": ip, "at": at})
        return int(result.scalar_one())

    async def forget_ip_failure(self, attempt_id: int) -> None:
        await self._c.write(_FORGET_IP, {"p_id": attempt_id})

    async def prune_ip_failures(self, ip: str, *, before: datetime) -> None:
        await self._c.write(_PRUNE_IP, {"p_ip": ip, "p_before": before})

    async def add_ceremony(self, ceremony: LoginCeremony) -> None:
        await self._c.write(
            _ADD_CEREMONY,
            {
                "id": ceremony.id,
                "challenge": ceremony.challenge,
                "binding": ceremony.binding,
                "created_at": ceremony.created_at,
                "expires_at": ceremony.expires_at,
                "used_at": ceremony.used_at,
            },
        )

    async def consume_ceremony(
        self, *, challenge: bytes, binding: str, at: datetime
    ) -> LoginCeremony | None:
        result = await self._c.write(
            _CONSUME_CEREMONY, {"p_challenge": challenge, "p_binding": binding, "p_at": at}
        )
        row = result.first()
        if row is None:
            return None
        return LoginCeremony(
            id=row.id,
            challenge=bytes(row.challenge),
            binding=row.binding,
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )

    async def prune_ceremonies(self, *, before: datetime) -> None:
        await self._c.write(_PRUNE_CEREMONIES, {"p_before": before})


if TYPE_CHECKING:  # the repository implements the port (checked by mypy)
    _is_a_port: type[LoginRepository] = SqlLoginRepository
