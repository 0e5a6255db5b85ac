"""Schema migrations with Alembic, run programmatically from the migrations inside the package.

No ``alembic.ini`` is needed: :func:`alembic_config` builds the configuration in code, so the
wheel carries everything. Developers make a new revision with::

    from alembic import command
    from stepguard.adapters.storage import alembic_config
    command.revision(alembic_config("sqlite:///var/dev.db"), message="...", autogenerate=True)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import text
from sqlalchemy.engine import Connection

from stepguard.adapters.storage._engine import (
    STORAGE_ERRORS,
    EngineOptions,
    create_engine,
    map_storage_error,
    normalize_url,
)
from stepguard.core.errors import StorageUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only when migrating: it costs ~0.3 s of start-up that serving never needs.

__all__ = ["MIGRATIONS_DIR", "alembic_config", "migrate"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# Foreign keys off on SQLite (see EngineOptions); a concurrent migrator may hold the lock for
# a while, so wait up to ten minutes for it.
MIGRATION_ENGINE_OPTIONS: Final = EngineOptions(
    null_pool=True, sqlite_foreign_keys=False, lock_timeout_ms=600_000, sqlite_create=True
)
# pg_advisory_xact_lock key ("StepGuar"): two servers migrating at once take turns.
_PG_MIGRATION_LOCK: Final = 0x5374_6570_4775_6172


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for StepGuard's migrations (and ``url``, normalized, if given)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % (e.g. in a password) must be doubled.
        config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


async def migrate(url: str, *, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (the latest by default).

    Async: call it from the event loop (``asyncio.run(migrate(url))`` from sync code). Runs in
    one transaction on both backends (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: with an
    advisory lock, so concurrent migrators wait for each other), and is a no-op when the
    database is already at ``revision``. Connection failures raise
    ``StorageUnavailableError``.
    """
    engine = create_engine(url, MIGRATION_ENGINE_OPTIONS)
    try:
        async with engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            await conn.run_sync(_upgrade, revision)
    except STORAGE_ERRORS as exc:
        mapped = map_storage_error(exc)
        if mapped is None:
            raise
        raise mapped from exc
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    if connection.dialect.name == "sqlite":
        # Foreign keys were off while migrating (see EngineOptions); prove nothing dangles.
        problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise StorageUnavailableError(
                f"migration left {len(problems)} rows with a dangling foreign key"
            )
