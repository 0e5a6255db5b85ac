"""``SqlStore``: the ``Store`` port on SQLAlchemy 2 async (SQLite via aiosqlite, PostgreSQL via
asyncpg), plus audit-chain verification and secret re-encryption.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import Integer, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage._engine import (
    AUTOCOMMIT_OPTION,
    READ_ONLY_OPTION,
    STORAGE_ERRORS,
    EngineOptions,
    create_engine,
    is_memory_sqlite,
    map_storage_error,
    normalize_url,
)
from stepguard.adapters.storage._repositories import SqlUnitOfWork
from stepguard.adapters.storage.tables import AUDIT_HEAD_ID, audit_head, factors, metadata
from stepguard.core.audit import GENESIS_HASH, ChainReport, ChainVerifier
from stepguard.core.errors import StorageUnavailableError
from stepguard.service.ports import Store

__all__ = ["SqlStore", "verify_audit_chain"]

_REENCRYPT_PAGE: Final = (
    select(factors.c.id, factors.c.secret_enc)
    .where(factors.c.secret_enc.is_not(None), factors.c.id > bindparam("p_after"))
    .order_by(factors.c.id)
    .limit(bindparam("p_limit", type_=Integer))
)
_REENCRYPT_ONE: Final = (
    update(factors)
    .where(factors.c.id == bindparam("p_id"), factors.c.secret_enc == bindparam("p_old"))
    .values(secret_enc=bindparam("p_new"))
)


def _unavailable(exc: BaseException) -> BaseException:
    return map_storage_error(exc) or exc


class _Transaction:
    """One unit of work on its own pooled connection: commit on success, roll back on error."""

    __slots__ = ("_conn", "_gate", "_holding", "_lookup", "_store", "_tx", "_writable")

    def __init__(self, store: SqlStore, *, writable: bool, lookup: bool = False) -> None:
        self._store = store
        self._writable = writable
        self._lookup = lookup
        self._gate: asyncio.Lock | None = store._gate(writable=writable)
        self._holding = False
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        store = self._store
        if self._gate is not None:
            try:
                async with asyncio.timeout(store._gate_timeout):
                    await self._gate.acquire()
                    self._holding = True
            except TimeoutError:
                # The deadline can fire just after acquire() returned: never keep the lock then.
                self._release()
                raise StorageUnavailableError(
                    "timed out waiting for the SQLite write lock"
                ) from None
        try:
            engine = (
                store._engine
                if self._writable
                else store._lookup_engine
                if self._lookup
                else store._read_engine
            )
            conn = engine.connect()
            await conn.start()  # checks a connection out; nothing to close if it fails
            try:
                tx = conn.begin()
                await tx.start()
            except BaseException:
                with contextlib.suppress(*STORAGE_ERRORS):
                    await conn.close()
                raise
        except STORAGE_ERRORS as exc:
            self._release()
            raise _unavailable(exc) from exc
        except BaseException:
            self._release()
            raise
        self._conn = conn
        self._tx = tx
        return SqlUnitOfWork(conn, store._box, writable=self._writable)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, tx = self._conn, self._tx
        assert conn is not None  # __aenter__ succeeded
        assert tx is not None
        try:
            if exc_type is None and self._writable:
                try:
                    await tx.commit()
                except STORAGE_ERRORS as error:
                    raise _unavailable(error) from error
            # Otherwise (a read, or a block that raised) closing rolls back: closing with the
            # transaction still open is one ROLLBACK, where rollback() and then close() make
            # the pool reset the connection with a second one.
        finally:
            try:
                # A failed rollback makes the pool reset or discard the connection itself; the
                # caller's exception (or result) matters more than this one.
                with contextlib.suppress(*STORAGE_ERRORS):
                    await conn.close()
            finally:
                self._conn = self._tx = None
                self._release()

    def _release(self) -> None:
        if self._holding and self._gate is not None:
            self._holding = False
            self._gate.release()


class SqlStore:
    """The ``Store`` port on a SQL database.

    ``url`` is a SQLAlchemy URL (``sqlite+aiosqlite:///var/stepguard.db``,
    ``postgresql+asyncpg://user@host/db``; plain ``sqlite:///`` and ``postgresql://`` are
    normalized). ``secret_box`` encrypts TOTP seeds at rest. The schema must be migrated
    first (:func:`stepguard.adapters.storage.migrate`). Constructing a store does no I/O.

    Locking: on SQLite every ``transaction()`` starts with ``BEGIN IMMEDIATE`` (the database
    write lock, across processes), and within one process writers first queue on an
    ``asyncio.Lock`` so they do not sleep in SQLite's busy handler (``sqlite_writer_lock=False``
    turns that off). On PostgreSQL, ``get_for_update`` and the audit head use
    ``SELECT ... FOR UPDATE``. Every single-use operation is a conditional ``UPDATE`` decided by
    its row count. A transaction that waits more than ``lock_timeout_ms`` for a lock (SQLite
    ``busy_timeout`` and the writer lock, PostgreSQL ``lock_timeout``) raises
    ``StorageUnavailableError``: callers fail closed rather than hang.
    """

    def __init__(
        self,
        url: str,
        secret_box: SecretBox,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        pool_timeout: float = 10.0,
        pool_pre_ping: bool = False,
        connect_timeout: float = 5.0,
        lock_timeout_ms: int = 10_000,
        sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL",
        sqlite_writer_lock: bool = True,
    ) -> None:
        self._url = normalize_url(url)
        self._box = secret_box
        options = EngineOptions(
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_pre_ping=pool_pre_ping,
            connect_timeout=connect_timeout,
            lock_timeout_ms=lock_timeout_ms,
            sqlite_synchronous=sqlite_synchronous,
        )
        self._engine: AsyncEngine = create_engine(self._url, options)
        self.backend: Literal["sqlite", "postgresql"] = (
            "sqlite" if self._engine.dialect.name == "sqlite" else "postgresql"
        )
        read_options: dict[str, Any] = {READ_ONLY_OPTION: True}
        if self.backend == "postgresql":
            # One snapshot for the whole read (SQLite's deferred BEGIN gives the same in WAL).
            read_options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._read_engine: AsyncEngine = self._engine.execution_options(**read_options)
        lookup_options: dict[str, Any] = {READ_ONLY_OPTION: True, AUTOCOMMIT_OPTION: True}
        if self.backend == "postgresql":
            lookup_options.update(isolation_level="AUTOCOMMIT", postgresql_readonly=True)
        self._lookup_engine: AsyncEngine = self._engine.execution_options(**lookup_options)
        memory = self.backend == "sqlite" and is_memory_sqlite(self._url)
        # An in-memory database is one shared connection: every transaction takes turns.
        self._all_lock = asyncio.Lock() if memory else None
        self._write_lock = (
            asyncio.Lock()
            if self.backend == "sqlite" and sqlite_writer_lock and not memory
            else None
        )
        self._gate_timeout = lock_timeout_ms / 1000

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"SqlStore(backend={self.backend!r})"

    def _gate(self, *, writable: bool) -> asyncio.Lock | None:
        if self._all_lock is not None:
            return self._all_lock
        return self._write_lock if writable else None

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (for migrations, maintenance and tests)."""
        return self._engine

    def transaction(self) -> contextlib.AbstractAsyncContextManager[SqlUnitOfWork]:
        """A read-write unit of work: commits when the block exits, rolls back on error.

        Database failures on entry, inside repository calls and at commit raise
        ``StorageUnavailableError``; duplicate keys raise ``ConflictError``; a missing row that
        another refers to raises ``NotFoundError``. Exceptions from the block pass through.
        """
        return _Transaction(self, writable=True)

    def read(self) -> contextlib.AbstractAsyncContextManager[SqlUnitOfWork]:
        """A read-only unit of work on one consistent snapshot. Writes raise
        ``ReadOnlyTransactionError``.
        """
        return _Transaction(self, writable=False)

    def lookup(self) -> contextlib.AbstractAsyncContextManager[SqlUnitOfWork]:
        """A read-only unit of work without a transaction: each statement sees the latest
        committed state on its own. For hot paths that read with a single statement (it saves
        the BEGIN and ROLLBACK round trips); use ``read()`` for several related reads.
        """
        return _Transaction(self, writable=False, lookup=True)

    async def ping(self) -> None:
        """Raise ``StorageUnavailableError`` unless the migrated database answers.

        Reads the audit head (one row by primary key), so a database without the schema is
        not ready either. A read unit of work: on SQLite a plain BEGIN, never the write lock.
        """
        async with self.read() as uow:
            await uow.audit.head()

    async def close(self) -> None:
        """Close every pooled connection. The store must not be used afterwards."""
        await self._engine.dispose()

    async def create_schema(self) -> None:
        """Create the tables directly from ``tables.py``, without Alembic.

        For tests and throwaway (e.g. in-memory) databases only: a database created this way
        is not stamped, so ``migrate`` would later try to create the tables again.
        """
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
                await conn.execute(
                    insert(audit_head).values(id=AUDIT_HEAD_ID, seq=0, hash=GENESIS_HASH)
                )
        except STORAGE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def reencrypt_secrets(self, *, batch_size: int = 200) -> int:
        """Re-encrypt every stored secret that the current key did not encrypt.

        Run after putting a new key first in the ``SecretBox``; when it returns, the old keys
        can be removed. Works in batches, each its own short transaction, so it does not hold
        SQLite's write lock for long; a secret changed concurrently is left alone (it was
        written with the current key anyway). Returns how many secrets were rewritten.
        Raises ``SecretDecryptionError`` if a stored secret fits no configured key (batches
        before it stay rewritten; fix the key list and run it again).
        """
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        rewritten = 0
        after = ""
        while True:
            async with self.read() as uow:
                page = await uow.execute(_REENCRYPT_PAGE, {"p_after": after, "p_limit": batch_size})
                rows = page.all()
            if not rows:
                return rewritten + await self._reencrypt_oidc_keys()
            after = rows[-1].id
            changes = [
                {"p_id": row.id, "p_old": row.secret_enc, "p_new": self._box.rotate(row.secret_enc)}
                for row in rows
                if not self._box.is_current(row.secret_enc)
            ]
            if changes:
                async with self.transaction() as uow:
                    for change in changes:
                        result = await uow.execute(_REENCRYPT_ONE, change)
                        rewritten += result.rowcount
            if len(rows) < batch_size:
                return rewritten + await self._reencrypt_oidc_keys()

    async def _reencrypt_oidc_keys(self) -> int:
        """The OIDC signing keys (few: one transaction)."""
        from sqlalchemy import select, update

        from stepguard.adapters.storage.tables import oidc_keys

        rewritten = 0
        async with self.transaction() as uow:
            rows = (await uow.execute(select(oidc_keys.c.kid, oidc_keys.c.private_enc))).all()
            for row in rows:
                if self._box.is_current(row.private_enc):
                    continue
                result = await uow.execute(
                    update(oidc_keys)
                    .where(oidc_keys.c.kid == row.kid, oidc_keys.c.private_enc == row.private_enc)
                    .values(private_enc=self._box.rotate(row.private_enc))
                )
                rewritten += result.rowcount
        return rewritten


async def verify_audit_chain(store: Store) -> ChainReport:
    """Check the whole audit hash chain (``stepguard.core.audit``'s verifier).

    Reads the head and every record in one read-only snapshot, so concurrent appends neither
    break nor extend what is checked, and streams them: ``iterate()`` fetches pages of
    ``AUDIT_PAGE_SIZE`` records, so memory stays bounded for any length of chain.
    """
    async with store.read() as uow:
        head_seq, head_hash = await uow.audit.head()
        verifier = ChainVerifier()
        records = uow.audit.iterate()
        try:
            async for record in records:
                if not verifier.feed(record):
                    break
        finally:
            await _aclose(records)
    return verifier.finish(head_seq=head_seq, head_hash=head_hash)


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


if TYPE_CHECKING:  # SqlStore implements the port (checked by mypy, costs nothing at runtime)
    _store_is_a_port: type[Store] = SqlStore
