"""Column types that behave the same on every backend.

The migrations import these, so they must stay backwards compatible: change how a type is
stored only together with a migration that rewrites the column.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

__all__ = ["SQLITE_TIMESTAMP_LENGTH", "UtcDateTime", "big_int_pk"]

# "2024-05-01T12:00:00.000000+00:00": fixed width, so text order is time order.
SQLITE_TIMESTAMP_LENGTH = 32


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant, microsecond precision, on every backend.

    PostgreSQL: ``timestamp with time zone``. SQLite (which has no date type): fixed-width ISO
    8601 text in UTC, whose text order is time order, so ``<``/``>`` comparisons in SQL work.
    Binding a naive datetime is refused; values always come back aware, in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(SQLITE_TIMESTAMP_LENGTH))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: StepGuard stores only timezone-aware datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.isoformat(timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(parsed, datetime):  # pragma: no cover - a corrupt row
            raise TypeError(f"expected a timestamp, got {type(value).__name__}")
        if parsed.tzinfo is None:  # pragma: no cover - written by something else
            return parsed.replace(tzinfo=UTC)
        if parsed.tzinfo is not UTC:
            return parsed.astimezone(UTC)
        return parsed


def big_int_pk() -> TypeEngine[int]:
    """A 64-bit integer key; on SQLite the ``INTEGER PRIMARY KEY`` that aliases the rowid."""
    return BigInteger().with_variant(Integer(), "sqlite")
