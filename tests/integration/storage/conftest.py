"""Fixtures for the storage contract suite: every test runs on SQLite and on PostgreSQL.

SQLite: one migrated template file per session, copied for each test (a fresh database costs a
file copy). PostgreSQL: one uniquely named database per session (``sg_test_<random>``, created
from ``STEPGUARD_TEST_POSTGRES_URL``'s server and dropped at the end), migrated once and
truncated before each test. No PostgreSQL: the tests skip, or fail with
``STEPGUARD_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import delete, insert

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import SqlStore, migrate
from stepguard.adapters.storage.tables import audit_head, metadata
from stepguard.core.audit import GENESIS_HASH
from support.services import postgres_admin_url, unavailable

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRES = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)
BACKENDS = [SQLITE, POSTGRES]
# For a test about one backend: @only_on(SQLITE) overrides the ``backend`` fixture's params.
only_on = functools.partial(pytest.mark.parametrize, "backend")

StoreFactory = Callable[..., SqlStore]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("storage-template") / "template.db"
    asyncio.run(migrate(f"sqlite:///{path}"))
    return path


async def _admin(url: str) -> asyncpg.Connection:
    try:
        return await asyncio.wait_for(asyncpg.connect(url), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        unavailable(f"PostgreSQL at {url} ({type(error).__name__})")
        raise  # unreachable: unavailable() raises


async def _create_database(admin_url: str, name: str) -> None:
    admin = await _admin(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(admin_url: str, name: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh migrated database for this test session; dropped at the end."""
    admin_url = postgres_admin_url()
    name = f"sg_test_{secrets.token_hex(6)}"
    asyncio.run(_create_database(admin_url, name))
    base, _, _ = admin_url.rpartition("/")
    url = f"{base}/{name}"
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(_drop_database(admin_url, name))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database for this test."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "stepguard.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def secret_key() -> str:
    return SecretBox.generate_key()


@pytest.fixture
def box(secret_key: str) -> SecretBox:
    return SecretBox([secret_key])


async def _reset_postgres(store: SqlStore) -> None:
    # DELETE, not TRUNCATE: on a handful of rows it is ten times faster.
    async with store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(delete(table))
        await conn.execute(insert(audit_head).values(id=1, seq=0, hash=GENESIS_HASH))


@pytest.fixture
async def make_store(db_url: str, box: SecretBox) -> AsyncIterator[StoreFactory]:
    """Build stores on this test's database (closed at teardown); kwargs go to SqlStore."""
    stores: list[SqlStore] = []

    def make(secret_box: SecretBox | None = None, **options: object) -> SqlStore:
        store = SqlStore(db_url, secret_box or box, **options)  # type: ignore[arg-type]
        stores.append(store)
        return store

    first = make()
    if first.backend == "postgresql":
        await _reset_postgres(first)
    try:
        yield make
    finally:
        for store in stores:
            await store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> SqlStore:
    return make_store()
