"""The risk engine's repository: trusted-login history, population counts, alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Executable, and_, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Row

from stepguard.adapters.storage._repositories import _Connection
from stepguard.adapters.storage.tables import risk_alerts, risk_counts, risk_events
from stepguard.core.risk.model import LOGINS_KEY, SUBJECTS_KEY, RiskAlert, RiskEvent

_E = risk_events.c
_C = risk_counts.c
_AL = risk_alerts.c

_HISTORY: Final = (
    select(risk_events)
    .where(_E.subject_id == bindparam("p_subject"))
    .order_by(_E.id.desc())
    .limit(bindparam("p_limit"))
)
_HAS_HISTORY: Final = select(_E.id).where(_E.subject_id == bindparam("p_subject")).limit(1)
_INSERT_EVENT: Final = insert(risk_events)
_NTH_NEWEST: Final = (
    select(_E.id)
    .where(_E.subject_id == bindparam("p_subject"))
    .order_by(_E.id.desc())
    .offset(bindparam("p_keep"))
    .limit(1)
)
_TRIM: Final = delete(risk_events).where(
    and_(_E.subject_id == bindparam("p_subject"), _E.id <= bindparam("p_id"))
)
_COUNTS: Final = select(_C.key, _C.count.label("n")).where(
    _C.key.in_(bindparam("p_keys", expanding=True))
)
_INSERT_ALERT: Final = insert(risk_alerts)
_ACTIVE_ALERTS: Final = (
    select(risk_alerts)
    .where(
        and_(
            _AL.subject_id == bindparam("p_subject"),
            _AL.cleared_at.is_(None),
            _AL.expires_at > bindparam("p_at"),
        )
    )
    .order_by(_AL.created_at, _AL.id)
)
_CLEAR_ALERT: Final = (
    update(risk_alerts)
    .where(
        and_(
            _AL.id == bindparam("p_id"),
            _AL.subject_id == bindparam("p_subject"),
            _AL.cleared_at.is_(None),
            _AL.expires_at > bindparam("p_at"),
        )
    )
    .values(cleared_at=bindparam("p_at"))
)


def _increment(dialect_name: str) -> Executable:
    stmt: Any
    if dialect_name == "postgresql":
        stmt = pg_dialect.insert(risk_counts)
    else:
        stmt = sqlite_dialect.insert(risk_counts)
    upsert: Executable = stmt.on_conflict_do_update(
        index_elements=[_C.key], set_={"count": _C.count + stmt.excluded["count"]}
    )
    return upsert


_INCREMENT: Final = {name: _increment(name) for name in ("postgresql", "sqlite")}


def _event(row: Row[Any]) -> RiskEvent:
    return RiskEvent(
        subject_id=row.subject_id,
        at=row.at,
        source=row.source,
        keys=tuple(row.keys),
        device_id=row.device_id,
        latitude=row.latitude,
        longitude=row.longitude,
        proxied=row.proxied,
    )


def _alert(row: Row[Any]) -> RiskAlert:
    return RiskAlert(
        id=row.id,
        subject_id=row.subject_id,
        score=row.score,
        reason=row.reason,
        created_at=row.created_at,
        expires_at=row.expires_at,
        cleared_at=row.cleared_at,
        actor=row.actor,
    )


class SqlRiskRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def history(self, subject_id: str, *, limit: int) -> list[RiskEvent]:
        rows = await self._c.run(_HISTORY, {"p_subject": subject_id, "p_limit": limit})
        return [_event(row) for row in reversed(rows.all())]

    async def record(self, event: RiskEvent, *, keep: int) -> None:
        new_subject = (
            await self._c.run(_HAS_HISTORY, {"p_subject": event.subject_id})
        ).first() is None
        await self._c.write(
            _INSERT_EVENT,
            {
                "subject_id": event.subject_id,
                "at": event.at,
                "source": event.source,
                "keys": list(event.keys),
                "device_id": event.device_id,
                "latitude": event.latitude,
                "longitude": event.longitude,
                "proxied": event.proxied,
            },
        )
        keys = [*event.keys, LOGINS_KEY]
        if new_subject:
            keys.append(SUBJECTS_KEY)
        # Sorted, so concurrent writers lock the count rows in one order (no deadlock).
        await self._c.write(
            _INCREMENT[self._c.dialect_name],
            [{"key": key, "count": 1} for key in sorted(set(keys))],
        )
        oldest_kept = (
            await self._c.run(_NTH_NEWEST, {"p_subject": event.subject_id, "p_keep": keep})
        ).first()
        if oldest_kept is not None:
            await self._c.write(_TRIM, {"p_subject": event.subject_id, "p_id": oldest_kept.id})

    async def counts(self, keys: Sequence[str]) -> dict[str, int]:
        if not keys:
            return {}
        rows = await self._c.run(_COUNTS, {"p_keys": list(keys)})
        return {row.key: int(row.n) for row in rows}

    async def add_alert(self, alert: RiskAlert) -> None:
        await self._c.write(
            _INSERT_ALERT,
            {
                "id": alert.id,
                "subject_id": alert.subject_id,
                "score": alert.score,
                "reason": alert.reason,
                "created_at": alert.created_at,
                "expires_at": alert.expires_at,
                "cleared_at": alert.cleared_at,
                "actor": alert.actor,
            },
        )

    async def clear_alert(self, subject_id: str, alert_id: str, *, at: datetime) -> bool:
        result = await self._c.write(
            _CLEAR_ALERT, {"p_id": alert_id, "p_subject": subject_id, "p_at": at}
        )
        return result.rowcount > 0

    async def alerts(self, subject_id: str, *, at: datetime) -> list[RiskAlert]:
        rows = await self._c.run(_ACTIVE_ALERTS, {"p_subject": subject_id, "p_at": at})
        return [_alert(row) for row in rows]
