"""The column types' guarantees as properties, and the storage package's public surface."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

import stepguard.adapters.storage as storage
from stepguard.adapters.storage._types import SQLITE_TIMESTAMP_LENGTH, UtcDateTime

SQLITE = sqlite.dialect()
POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]
TYPE = UtcDateTime()

offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
instants = st.datetimes(
    min_value=datetime(1900, 1, 2),  # noqa: DTZ001 - bounds for the naive part
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=offsets,
)


def _sqlite_text(value: datetime) -> str:
    stored = TYPE.process_bind_param(value, SQLITE)
    assert isinstance(stored, str)
    return stored


@given(instants)
def test_sqlite_times_round_trip_to_the_same_instant_in_utc(value: datetime) -> None:
    stored = _sqlite_text(value)
    assert len(stored) == SQLITE_TIMESTAMP_LENGTH
    loaded = TYPE.process_result_value(stored, SQLITE)
    assert loaded == value
    assert loaded is not None
    assert loaded.tzinfo is UTC
    assert loaded.isoformat() == value.astimezone(UTC).isoformat()


@given(instants, instants)
def test_sqlite_text_order_is_time_order(a: datetime, b: datetime) -> None:
    """What makes ``expires_at > :now`` correct in SQL on SQLite."""
    assert (a < b) == (_sqlite_text(a) < _sqlite_text(b))
    assert (a == b) == (_sqlite_text(a) == _sqlite_text(b))


def test_postgres_receives_utc_datetimes_and_returns_them_in_utc() -> None:
    local = datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
    bound = TYPE.process_bind_param(local, POSTGRES)
    assert bound == local
    assert bound.tzinfo is UTC
    assert TYPE.process_result_value(local, POSTGRES) == local


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])
def test_naive_datetimes_are_refused_by_the_type(dialect: object) -> None:
    with pytest.raises(ValueError, match="naive"):
        TYPE.process_bind_param(datetime(2025, 1, 1), dialect)  # type: ignore[arg-type]  # noqa: DTZ001


def test_the_public_api_is_stated_once() -> None:
    assert sorted(storage.__all__) == [
        "ReadOnlyTransactionError",
        "SqlStore",
        "SqlUnitOfWork",
        "alembic_config",
        "migrate",
        "normalize_url",
        "verify_audit_chain",
    ]
    for name in storage.__all__:
        assert getattr(storage, name) is not None


def test_no_storage_module_imports_alembic_at_import_time() -> None:
    """Alembic (about 0.3 s of start-up) loads only when migrating."""
    package = Path(storage.__file__).parent
    modules = [storage] + [
        importlib.import_module(f"stepguard.adapters.storage.{path.stem}")
        for path in package.glob("*.py")
        if path.stem != "__init__"
    ]
    for module in modules:
        origins = {
            value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", "")
            for value in vars(module).values()
        }
        alembic = {o for o in origins if isinstance(o, str) and o.startswith("alembic")}
        assert not alembic, module.__name__
