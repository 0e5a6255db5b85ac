"""Engines for the two supported backends, and how their errors map to StepGuard's.

SQLite (``sqlite+aiosqlite``): WAL, ``busy_timeout``, foreign keys on, and SQLAlchemy (not the
``sqlite3`` module) emits ``BEGIN``: ``BEGIN IMMEDIATE`` for read-write transactions, so writers
take the database's write lock up front and serialize across processes, and a plain deferred
``BEGIN`` for reads (a snapshot in WAL mode). This is SQLAlchemy's documented recipe for
"Enabling Non-Legacy SQLite Transactional Modes" on ``engine.sync_engine``.

PostgreSQL (``postgresql+asyncpg``): READ COMMITTED for writes (every single-use operation is a
conditional ``UPDATE``, and rows that must serialize are locked with ``FOR UPDATE``); reads are
``REPEATABLE READ READ ONLY`` so that a multi-statement read sees one snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from stepguard.core.errors import (
    ConflictError,
    NotFoundError,
    StepGuardError,
    StorageUnavailableError,
)

__all__ = [
    "READ_ONLY_OPTION",
    "EngineOptions",
    "create_engine",
    "is_memory_sqlite",
    "map_storage_error",
    "normalize_url",
]

_ASYNC_DRIVERS: Final = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
_BACKEND_ALIASES: Final = {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}
# Sync drivers whose URLs mean the same database; anything else is refused, not guessed.
_REPLACEABLE_DRIVERS: Final = {"", "psycopg2", "psycopg", "pg8000", "pysqlite"}

# An execution option on the read-only engine; the SQLite ``begin`` hook reads it.
READ_ONLY_OPTION: Final = "stepguard_read_only"

# These errors mean "the database could not do it", never "the caller sent something wrong":
# connection refused or dropped, pool exhausted, disk I/O, locked past busy_timeout, no table.
_UNAVAILABLE: Final = (DBAPIError, PoolTimeoutError, OSError)


def normalize_url(url: str) -> str:
    """The async-driver form of a database URL.

    ``postgresql://``, ``postgres://`` (and sync drivers such as ``postgresql+psycopg2://``)
    become ``postgresql+asyncpg://``; ``sqlite:///`` (and ``sqlite+pysqlite:///``) become
    ``sqlite+aiosqlite:///``. Async URLs pass through unchanged. Other backends raise
    ``ValueError``. The password, if any, is kept.
    """
    parsed = _parse(url)
    backend, _, driver = parsed.drivername.partition("+")
    canonical = _BACKEND_ALIASES.get(backend)
    if canonical is None:
        raise ValueError(
            f"unsupported database {backend!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    wanted = _ASYNC_DRIVERS[canonical]
    if driver not in _REPLACEABLE_DRIVERS and driver != wanted:
        raise ValueError(f"unsupported driver {driver!r} for {canonical}: use {wanted}")
    return parsed.set(drivername=f"{canonical}+{wanted}").render_as_string(hide_password=False)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception:  # any parse failure: never echo a URL, it may hold a password
        raise ValueError("not a valid database URL") from None


def is_memory_sqlite(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    pool_size: int = 10
    max_overflow: int = 20
    pool_timeout: float = 10.0
    pool_recycle: float = 1800.0
    pool_pre_ping: bool = False
    connect_timeout: float = 5.0
    sqlite_busy_timeout_ms: int = 10_000
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # Off only for migrations: rebuilding a table (Alembic batch mode) with foreign keys on
    # would cascade-delete the rows that refer to it.
    sqlite_foreign_keys: bool = True
    null_pool: bool = False


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def create_engine(url: str, options: EngineOptions | None = None) -> AsyncEngine:
    """An async engine for ``url`` (normalized first) configured for StepGuard."""
    options = options or EngineOptions()
    url = normalize_url(url)
    kwargs: dict[str, Any] = {
        "hide_parameters": True,  # bound values (hashes, ciphertexts) never reach messages
        "json_serializer": _json_serializer,
        "json_deserializer": orjson.loads,
    }
    backend = make_url(url).get_backend_name()
    if backend == "sqlite" and is_memory_sqlite(url):
        kwargs["poolclass"] = StaticPool
    elif options.null_pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(
            pool_size=options.pool_size,
            max_overflow=options.max_overflow,
            pool_timeout=options.pool_timeout,
            pool_recycle=options.pool_recycle,
            pool_pre_ping=options.pool_pre_ping,
        )
    if backend == "postgresql":
        kwargs["connect_args"] = {"timeout": options.connect_timeout}
        return create_async_engine(url, **kwargs)
    engine = create_async_engine(url, **kwargs)
    _install_sqlite_hooks(engine, options)
    return engine


def _install_sqlite_hooks(engine: AsyncEngine, options: EngineOptions) -> None:
    busy_timeout = int(options.sqlite_busy_timeout_ms)
    synchronous = options.sqlite_synchronous
    foreign_keys = "ON" if options.sqlite_foreign_keys else "OFF"
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError("sqlite_synchronous must be FULL or NORMAL")

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module: SQLAlchemy emits it below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA foreign_keys = {foreign_keys}")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def map_storage_error(exc: BaseException) -> StepGuardError | None:
    """The StepGuard error for a database failure, or ``None`` if ``exc`` is not one.

    Duplicate keys become :class:`ConflictError`; a missing referenced row (foreign key)
    becomes :class:`NotFoundError`; every other database or connection failure becomes
    :class:`StorageUnavailableError`, so callers fail closed. Messages name the error class
    only: no SQL, no parameters.
    """
    if isinstance(exc, IntegrityError):
        if _is_foreign_key_violation(exc):
            return NotFoundError("a record this one refers to does not exist")
        return ConflictError("a record with this key already exists")
    if isinstance(exc, _UNAVAILABLE):
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        return StorageUnavailableError(
            f"the database is unavailable ({type(cause).__name__ if cause else 'error'})"
        )
    return None


def _is_foreign_key_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23503":  # asyncpg: foreign_key_violation
        return True
    return "FOREIGN KEY constraint failed" in str(orig)  # sqlite3
