"""Alembic environment for StepGuard's schema.

Normally run by :func:`stepguard.adapters.storage.migrate`, which hands over a connection that
is already inside a transaction (``config.attributes["connection"]``). Run from the alembic
CLI or ``alembic.command`` with ``sqlalchemy.url`` set (see ``alembic_config``), it opens its
own async engine instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from stepguard.adapters.storage._engine import create_engine
from stepguard.adapters.storage._migrate import MIGRATION_ENGINE_OPTIONS
from stepguard.adapters.storage._types import UtcDateTime
from stepguard.adapters.storage.tables import metadata

config = context.config
target_metadata = metadata


def _render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Autogenerate renders our column type by its import, not its module path."""
    if kind == "type" and isinstance(obj, UtcDateTime):
        autogen_context.imports.add("from stepguard.adapters.storage._types import UtcDateTime")
        return "UtcDateTime()"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later revisions rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url, MIGRATION_ENGINE_OPTIONS)
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=bool(url and url.startswith("sqlite")),
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or call stepguard.adapters.storage.migrate()")
    asyncio.run(_run_with_own_engine(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
