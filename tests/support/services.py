"""Real services for tests: skip when absent on a newcomer's machine, fail in CI.

``STEPGUARD_REQUIRE_ALL=1`` (set by ``.ci/run``) turns every such skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def require_all() -> bool:
    return os.environ.get("STEPGUARD_REQUIRE_ALL") == "1"


def unavailable(what: str) -> None:
    """Skip (or, in CI, fail) because ``what`` is not available."""
    if require_all():
        pytest.fail(f"{what} is required (STEPGUARD_REQUIRE_ALL=1) but not available")
    pytest.skip(f"{what} is not available")


def postgres_admin_url() -> str:
    return os.environ.get("STEPGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty database on the test server; dropped afterwards. Yields its URL."""
    admin_url = postgres_admin_url()
    try:
        admin = await asyncio.wait_for(asyncpg.connect(admin_url), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        unavailable(f"PostgreSQL at {admin_url} ({type(error).__name__})")
        raise  # unreachable: unavailable() always raises
    name = f"sg_api_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
