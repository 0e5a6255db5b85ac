"""A store that cannot answer raises StorageUnavailableError, so callers fail closed."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import SqlStore, migrate
from stepguard.core.errors import StorageUnavailableError

from .conftest import POSTGRES, SQLITE, StoreFactory, only_on
from .factories import build_world


def _closed_port() -> int:
    """A local port that nothing listens on (checked, not assumed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} is open")
    return port


async def _assert_unavailable(store: SqlStore) -> None:
    with pytest.raises(StorageUnavailableError):
        await store.ping()
    with pytest.raises(StorageUnavailableError):
        async with store.transaction() as uow:
            await uow.subjects.get("x")
    with pytest.raises(StorageUnavailableError):
        async with store.read() as uow:
            await uow.subjects.get("x")


async def test_an_unreachable_postgres_is_unavailable(box: SecretBox) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{_closed_port()}/test"
    store = SqlStore(url, box, connect_timeout=2)
    try:
        await _assert_unavailable(store)
        with pytest.raises(StorageUnavailableError) as caught:
            await migrate(url)
        assert "hunter2" not in str(caught.value)
    finally:
        await store.close()


async def _aiosqlite_threads_finished() -> None:
    """When connecting fails, aiosqlite stops its worker thread without awaiting it; the
    thread then reports to this test's event loop, which must still be open. (Call it after
    closing the store, or it waits for the pool's live connections too.)
    """
    workers = [
        thread
        for thread in threading.enumerate()
        if thread.name.endswith("(_connection_worker_thread)")
    ]
    for thread in workers:
        await asyncio.to_thread(thread.join, 5)


async def test_an_unopenable_sqlite_file_is_unavailable(tmp_path: Path, box: SecretBox) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}", box)
    try:
        await _assert_unavailable(store)
    finally:
        await store.close()
        await _aiosqlite_threads_finished()


async def test_an_unmigrated_database_is_unavailable(tmp_path: Path, box: SecretBox) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an empty SQLite file: no schema
    store = SqlStore(f"sqlite:///{path}", box)
    try:
        with pytest.raises(StorageUnavailableError):
            await store.ping()
    finally:
        await store.close()


async def test_the_server_never_creates_a_sqlite_database(tmp_path: Path, box: SecretBox) -> None:
    path = tmp_path / "typo.db"
    store = SqlStore(f"sqlite:///{path}", box)
    try:
        with pytest.raises(StorageUnavailableError):
            await store.ping()
    finally:
        await store.close()
        await _aiosqlite_threads_finished()
    assert not path.exists()


async def test_a_lock_not_granted_in_time_fails_closed(make_store: StoreFactory) -> None:
    """A verification that cannot lock its factor gives up instead of hanging."""
    holder_store = make_store()
    world = await build_world(holder_store)
    impatient = make_store(lock_timeout_ms=100, sqlite_writer_lock=False)
    locked, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with holder_store.transaction() as uow:
            await uow.factors.get_for_update(world.subject.id, world.totp.id)
            locked.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    try:
        async with asyncio.timeout(10):
            await locked.wait()
            with pytest.raises(StorageUnavailableError):
                async with impatient.transaction() as uow:
                    await uow.factors.get_for_update(world.subject.id, world.totp.id)
    finally:
        release.set()
        await holder
    async with impatient.transaction() as uow:  # and the store works again afterwards
        assert await uow.factors.get_for_update(world.subject.id, world.totp.id) is not None


@only_on([SQLITE])
async def test_the_in_process_writer_lock_also_times_out(make_store: StoreFactory) -> None:
    store = make_store(lock_timeout_ms=100)
    async with store.transaction():
        with pytest.raises(StorageUnavailableError, match="write lock"):
            async with store.transaction():
                pass


async def _kill_own_session_then_read(store: SqlStore) -> None:
    async with store.transaction() as uow:
        pid = (await uow.connection.execute(text("SELECT pg_backend_pid()"))).scalar()
        async with store.engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.commit()
        await uow.subjects.get("x")


@only_on([POSTGRES])
async def test_a_connection_killed_mid_transaction_fails_closed_and_the_pool_recovers(
    store: SqlStore,
) -> None:
    with pytest.raises(StorageUnavailableError):
        await _kill_own_session_then_read(store)
    await store.ping()
    async with store.read() as uow:
        assert await uow.subjects.get("x") is None


@only_on([SQLITE])
@pytest.mark.parametrize("replacement", ["nothing", "a directory", "another database"])
async def test_a_sqlite_file_deleted_under_a_running_store_is_noticed(
    store: SqlStore, db_url: str, tmp_path: Path, replacement: str
) -> None:
    """Pooled connections do not go on using the deleted file (or creating a new one)."""
    world = await build_world(store)
    await asyncio.gather(*(store.ping() for _ in range(3)))  # several pooled connections
    path = Path(db_url.removeprefix("sqlite:///"))
    other = tmp_path / "other.db"
    if replacement == "another database":
        await migrate(f"sqlite:///{other}")
    _replace_database_file(path, replacement, other)

    if replacement == "another database":
        async with store.read() as uow:  # the new file, not the orphaned old one
            assert await uow.subjects.get(world.subject.id) is None
        await store.ping()
        return
    await _assert_unavailable(store)
    await store.close()
    await _aiosqlite_threads_finished()
    assert not _is_file(path)  # the store did not create an empty database


def _is_file(path: Path) -> bool:
    return path.is_file()


def _replace_database_file(path: Path, replacement: str, other: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if replacement == "a directory":
        path.mkdir()
    elif replacement == "another database":
        other.rename(path)
