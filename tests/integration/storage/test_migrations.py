"""Migrations create exactly what ``tables.py`` declares, and ship inside the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, Text, text

import stepguard.adapters.storage as storage
from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import SqlStore, alembic_config, migrate, normalize_url
from stepguard.adapters.storage._migrate import MIGRATIONS_DIR
from stepguard.adapters.storage.tables import metadata


def _diff(connection: Connection, target: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, target))


async def test_migrated_schema_matches_tables_py(store: SqlStore) -> None:
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(_diff, metadata)
    assert diff == []


async def test_the_comparison_would_notice_drift(store: SqlStore) -> None:
    """A control for the test above: a column tables.py lacks is reported."""
    drifted = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["factors"].append_column(Column("nickname", Text, nullable=True))
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(_diff, drifted)
    assert [entry[0] for entry in diff] == ["add_column"]


async def test_migrating_again_is_a_no_op(store: SqlStore, db_url: str) -> None:
    await migrate(db_url)
    async with store.engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        diff = await conn.run_sync(_diff, metadata)
    assert version == "0005"
    assert diff == []


async def test_migrate_creates_a_new_sqlite_database(tmp_path: Path, box: SecretBox) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    await migrate(url)
    store = SqlStore(url, box)
    try:
        async with store.read() as uow:
            assert await uow.audit.head() == (0, "0" * 64)
        async with store.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
    finally:
        await store.close()
    assert mode == "wal"
    assert foreign_keys == 1


def test_the_migrations_ship_inside_the_package() -> None:
    package = Path(storage.__file__).parent
    assert package / "migrations" == MIGRATIONS_DIR
    for name in ("env.py", "script.py.mako", "versions/0001_initial.py"):
        assert (MIGRATIONS_DIR / name).is_file(), name
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == ["0005"]


def test_alembic_config_needs_no_ini_and_keeps_percent_signs() -> None:
    config = alembic_config("postgresql://u:p%40ss@db/stepguard")
    assert config.config_file_name is None
    assert config.get_main_option("sqlalchemy.url") == (
        "postgresql+asyncpg://u:p%40ss@db/stepguard"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///var/stepguard.db", "sqlite+aiosqlite:///var/stepguard.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://u:secret@h:5432/db", "postgresql+asyncpg://u:secret@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db?ssl=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_normalize_url_picks_the_async_driver(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "postgresql+aiopg://u@h/db", "not a url", "oracle://x"]
)
def test_normalize_url_refuses_what_it_cannot_serve(url: str) -> None:
    with pytest.raises(ValueError, match=r".+") as caught:
        normalize_url(url)
    assert "secret" not in str(caught.value)


def test_a_bad_url_is_not_echoed() -> None:
    with pytest.raises(ValueError, match="not a valid database URL") as caught:
        normalize_url("postgresql://user:hunter2@[::1")
    assert "hunter2" not in str(caught.value)
