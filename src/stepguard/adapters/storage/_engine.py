"""Engines for the two supported backends, and how their errors map to StepGuard's.

SQLite (``sqlite+aiosqlite``): WAL, ``busy_timeout``, foreign keys on, and SQLAlchemy (not the
``sqlite3`` module) emits ``BEGIN``: ``BEGIN IMMEDIATE`` for read-write transactions, so writers
take the database's write lock up front and serialize across processes, and a plain deferred
``BEGIN`` for reads (a snapshot in WAL mode). This is SQLAlchemy's documented recipe for
"Enabling Non-Legacy SQLite Transactional Modes" on ``engine.sync_engine``. The server opens
the database file read-write but never creates it (``mode=rw``; migrations create it), and
notices on checkout when the file at the path was deleted or replaced.

PostgreSQL (``postgresql+asyncpg``): READ COMMITTED for writes (every single-use operation is a
conditional ``UPDATE``, and rows that must serialize are locked with ``FOR UPDATE``); reads are
``REPEATABLE READ READ ONLY`` so that a multi-statement read sees one snapshot.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    SQLAlchemyError,
)
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
    "AUTOCOMMIT_OPTION",
    "READ_ONLY_OPTION",
    "STORAGE_ERRORS",
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
# Reads of a single statement (``SqlStore.lookup``): no BEGIN, no snapshot across statements.
AUTOCOMMIT_OPTION: Final = "stepguard_autocommit"

# These errors mean "the database could not do it", never "the caller sent something wrong":
# connection refused or dropped, pool exhausted, disk I/O, a lock not granted within
# lock_timeout_ms (SQLite busy_timeout, PostgreSQL lock_timeout), no such table.
_UNAVAILABLE: Final = (
    DBAPIError,
    PoolTimeoutError,
    DisconnectionError,
    OSError,
    sqlite3.Error,
)
# What the storage adapter catches around its own calls (anything else passes through).
STORAGE_ERRORS: Final = (SQLAlchemyError, OSError, sqlite3.Error)


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
    lock_timeout_ms: int = 10_000
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # Off only for migrations: rebuilding a table (Alembic batch mode) with foreign keys on
    # would cascade-delete the rows that refer to it.
    sqlite_foreign_keys: bool = True
    # The server opens an existing database file only (a missing file fails closed instead of
    # becoming a new, empty database); migrations create it.
    sqlite_create: bool = False
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
        kwargs["connect_args"] = {
            "timeout": options.connect_timeout,
            # A transaction that waits longer than this for a row lock fails (closed).
            "server_settings": {"lock_timeout": str(int(options.lock_timeout_ms))},
        }
        return create_async_engine(url, **kwargs)
    engine = create_async_engine(url, **kwargs)
    _install_sqlite_hooks(engine, options)
    path = _sqlite_file(url)
    if path is not None:
        _install_sqlite_file_checks(engine, path, create=options.sqlite_create)
    return engine


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; ``None`` in memory or for ``file:`` URIs."""
    parsed = make_url(url)
    if is_memory_sqlite(url) or parsed.query.get("uri") or not parsed.database:
        return None
    return parsed.database


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _install_sqlite_file_checks(engine: AsyncEngine, path: str, *, create: bool) -> None:
    """Notice when the database file is deleted or replaced under a running server.

    A pooled SQLite connection keeps its file open: after the file is deleted it would go on
    reading and writing the orphaned copy. So each connection remembers which file it opened,
    and every checkout (one ``stat``, about a microsecond) compares: a different or missing
    file discards the connection, and the pool reconnects to whatever is at the path now, or
    fails (``StorageUnavailableError``) if nothing usable is there.
    """
    path = os.path.abspath(path)  # what sqlite3 opened, even if the cwd changes later
    if not create:
        uri = "file:" + urllib.parse.quote(path) + "?mode=rw"

        @event.listens_for(engine.sync_engine, "do_connect")
        def _open_existing_only(
            _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
        ) -> None:
            cargs[:] = [uri]
            cparams["uri"] = True

    @event.listens_for(engine.sync_engine, "connect")
    def _remember_file(_dbapi_connection: Any, record: Any) -> None:
        record.info[_FILE_KEY] = _file_identity(path)

    @event.listens_for(engine.sync_engine, "checkout")
    def _same_file(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if _file_identity(path) != record.info.get(_FILE_KEY):
            raise DisconnectionError("the database file was deleted or replaced")


_FILE_KEY: Final = "stepguard_sqlite_file"


def _install_sqlite_hooks(engine: AsyncEngine, options: EngineOptions) -> None:
    busy_timeout = int(options.lock_timeout_ms)
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
        options = connection.get_execution_options()
        if options.get(AUTOCOMMIT_OPTION):
            return  # one statement, its own implicit transaction: no BEGIN hand-off at all
        statement = "BEGIN" if options.get(READ_ONLY_OPTION) else _BEGIN_WRITE
        # The recipe emits this with exec_driver_sql; through aiosqlite that costs three thread
        # hand-offs (cursor, execute, close), this costs one. Errors raised here are the
        # driver's own (sqlite3.Error), which map_storage_error maps too.
        adapted: Any = connection.connection.dbapi_connection
        adapted.run_async(lambda driver: driver.execute(statement))


_BEGIN_WRITE: Final = "BEGIN IMMEDIATE"


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
    if isinstance(exc, sqlite3.IntegrityError):  # pragma: no cover - BEGIN inserts nothing
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
