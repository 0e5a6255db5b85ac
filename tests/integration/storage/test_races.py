"""Races are tested, not assumed: concurrent transactions, and more than one process.

Each racing task runs its own transaction on its own pooled connection. On SQLite, writers of
one process first queue on the store's in-process writer lock; one test turns it off so that
writers meet in ``BEGIN IMMEDIATE`` and SQLite's busy handler, as writers from different
processes do (the cross-process test covers that too).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from stepguard.adapters.storage import SqlStore, SqlUnitOfWork, verify_audit_chain
from stepguard.core.model import AuditEvent

from .conftest import SQLITE, StoreFactory, only_on
from .factories import NOW, World, build_world

N = 20
WORKER = Path(__file__).with_name("race_worker.py")
AT = NOW + timedelta(seconds=30)

Operation = Callable[[SqlUnitOfWork, World], Awaitable[bool]]


async def _recovery_code(uow: SqlUnitOfWork, w: World) -> bool:
    return await uow.factors.consume_recovery_code(w.codes.id, w.code_hashes[0], at=AT)


async def _totp_step(uow: SqlUnitOfWork, w: World) -> bool:
    return await uow.factors.advance_totp_step(w.totp.id, 58_000_000)


async def _grant(uow: SqlUnitOfWork, w: World) -> bool:
    g = w.grant
    used = await uow.grants.consume(
        g.token_hash,
        subject_id=g.subject_id,
        session_id=g.session_id,
        action=g.action,
        transaction_digest=g.transaction_digest,
        at=AT,
    )
    return used is not None


async def _challenge(uow: SqlUnitOfWork, w: World) -> bool:
    return await uow.challenges.mark_satisfied(w.challenge.id, at=AT, factor_id=w.totp.id)


OPERATIONS: dict[str, Operation] = {
    "recovery_code": _recovery_code,
    "totp_step": _totp_step,
    "grant": _grant,
    "challenge": _challenge,
}


@pytest.fixture
def racing_store(make_store: StoreFactory) -> SqlStore:
    return make_store(pool_size=N, max_overflow=0)


async def _race(store: SqlStore, attempt: Callable[[SqlUnitOfWork], Awaitable[bool]]) -> list[bool]:
    """Run ``attempt`` in N concurrent transactions that start together.

    PostgreSQL: all N transactions are open before any of them writes. SQLite: a write
    transaction holds the database lock from BEGIN, so the N tasks start their transactions
    together instead.
    """
    # Open N pooled connections first: the race is about the writes, not about connecting.
    await asyncio.gather(*(store.ping() for _ in range(N)))
    hold_open = store.backend == "postgresql"
    barrier = asyncio.Barrier(N)

    async def one() -> bool:
        if not hold_open:
            await barrier.wait()
        async with store.transaction() as uow:
            if hold_open:
                await barrier.wait()
            return await attempt(uow)

    async with asyncio.timeout(30):
        return list(await asyncio.gather(*(one() for _ in range(N))))


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_exactly_one_of_n_concurrent_transactions_wins(
    racing_store: SqlStore, operation: str
) -> None:
    world = await build_world(racing_store)
    results = await _race(racing_store, lambda uow: OPERATIONS[operation](uow, world))
    assert results.count(True) == 1
    async with racing_store.transaction() as uow:
        assert await OPERATIONS[operation](uow, world) is False  # and it stays used


async def test_exactly_one_wins_when_sqlite_writers_meet_in_the_busy_handler(
    make_store: StoreFactory,
) -> None:
    """Without the in-process lock, SQLite's BEGIN IMMEDIATE alone serializes the writers."""
    store = make_store(pool_size=N, max_overflow=0, sqlite_writer_lock=False)
    world = await build_world(store)
    results = await _race(store, lambda uow: _recovery_code(uow, world))
    assert results.count(True) == 1


async def test_concurrent_totp_steps_end_at_the_highest(racing_store: SqlStore) -> None:
    world = await build_world(racing_store)
    steps = iter(range(1, N + 1))

    async def advance(uow: SqlUnitOfWork) -> bool:
        return await uow.factors.advance_totp_step(world.totp.id, next(steps))

    results = await _race(racing_store, advance)
    assert any(results)
    async with racing_store.read() as uow:
        factor = await uow.factors.get(world.subject.id, world.totp.id)
    assert factor is not None
    assert factor.last_step == N


async def test_concurrent_audit_appends_keep_one_valid_chain(racing_store: SqlStore) -> None:
    counter = iter(range(N))

    async def append(uow: SqlUnitOfWork) -> bool:
        event = AuditEvent(type="race", at=NOW, outcome="ok", details={"n": next(counter)})
        await uow.audit.append(event)
        return True

    await _race(racing_store, append)
    report = await verify_audit_chain(racing_store)
    assert report.ok, report
    assert report.records == N
    async with racing_store.read() as uow:
        records = [r async for r in uow.audit.iterate()]
    assert [r.seq for r in records] == list(range(1, N + 1))
    assert sorted(r.event.details["n"] for r in records) == list(range(N))


async def _wait_until_blocked(store: SqlStore, task: asyncio.Task[int]) -> None:
    """Until ``task`` waits on the lock. PostgreSQL says so; on SQLite, give it a moment."""
    if store.backend == "postgresql":
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        async with asyncio.timeout(10), store.engine.connect() as conn:
            while True:
                waiting = (await conn.execute(query)).scalar()
                # pg_stat_activity is a snapshot per transaction: end it to see fresh data.
                await conn.rollback()
                if waiting:
                    break
                assert not task.done()
                await asyncio.sleep(0.01)
    else:
        await asyncio.wait({task}, timeout=0.2)


@pytest.mark.parametrize(
    "writer_lock", [True, False], ids=["sqlite-writer-lock", "sqlite-busy-handler"]
)
async def test_get_for_update_makes_a_second_transaction_wait_for_the_first(
    make_store: StoreFactory, writer_lock: bool
) -> None:
    store = make_store(sqlite_writer_lock=writer_lock)
    world = await build_world(store)
    sid, fid = world.subject.id, world.totp.id
    locked, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.transaction() as uow:
            factor = await uow.factors.get_for_update(sid, fid)
            assert factor is not None
            locked.set()
            await release.wait()
            await uow.factors.record_failure(
                fid, failed_attempts=factor.failed_attempts + 1, locked_until=None
            )

    async def second() -> int:
        async with store.transaction() as uow:
            factor = await uow.factors.get_for_update(sid, fid)
            assert factor is not None
            await uow.factors.record_failure(
                fid, failed_attempts=factor.failed_attempts + 1, locked_until=None
            )
            return factor.failed_attempts

    holder = asyncio.create_task(first())
    waiter: asyncio.Task[int] | None = None
    try:
        async with asyncio.timeout(20):
            await locked.wait()
            waiter = asyncio.create_task(second())
            await _wait_until_blocked(store, waiter)
            assert not waiter.done()
            release.set()
            await holder
            seen = await waiter
    finally:  # on failure, end both transactions before the store closes
        for task in (holder, waiter):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    # The second read the first's committed write: no lost update.
    assert seen == 1
    async with store.read() as uow:
        factor = await uow.factors.get(sid, fid)
    assert factor is not None
    assert factor.failed_attempts == 2


async def test_single_use_operations_hold_across_processes(
    make_store: StoreFactory, db_url: str, secret_key: str
) -> None:
    """Two worker processes and this one race with eight tasks per operation: one win in all.

    Each process uses at most eight connections (the test server's max_connections is shared).
    """
    tasks = 8
    store = make_store(pool_size=tasks, max_overflow=0)
    world = await build_world(store)
    g = world.grant
    job = {
        "url": db_url,
        "key": secret_key,
        "tasks": tasks,
        "at": AT.isoformat(),
        "codes_factor": world.codes.id,
        "code_hash": world.code_hashes[0],
        "totp_factor": world.totp.id,
        "step": 58_000_000,
        "token_hash": g.token_hash,
        "subject_id": g.subject_id,
        "session_id": g.session_id,
        "action": g.action,
        "transaction_digest": g.transaction_digest,
        "challenge": world.challenge.id,
    }
    await asyncio.gather(*(store.ping() for _ in range(tasks)))

    async def attempt(name: str) -> bool:
        async with store.transaction() as uow:
            return await OPERATIONS[name](uow, world)

    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            json.dumps(job),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        async with asyncio.timeout(60):
            for process in processes:
                assert process.stdout is not None
                ready = await process.stdout.readline()
                if ready != b"ready\n":
                    _, err = await process.communicate()
                    pytest.fail(f"worker did not start: {ready!r} {err.decode()[-2000:]}")
            for process in processes:  # the start signal, to all of them at once
                assert process.stdin is not None
                process.stdin.write(b"go\n")
            names = [name for name in OPERATIONS for _ in range(tasks)]
            workers = asyncio.gather(*(process.communicate() for process in processes))
            mine = await asyncio.gather(*(attempt(name) for name in names))
            outputs = await workers
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    wins = dict.fromkeys(OPERATIONS, 0)
    for name, won in zip(names, mine, strict=True):
        wins[name] += won
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
        for name, count in json.loads(out).items():
            wins[name] += count
    assert wins == dict.fromkeys(OPERATIONS, 1)


def _try_to_write(path: str) -> bool:
    """Whether another process-level connection can take the write lock right now."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


@only_on([SQLITE])
async def test_sqlite_writers_hold_the_write_lock_from_begin_and_readers_do_not(
    store: SqlStore, db_url: str
) -> None:
    path = db_url.removeprefix("sqlite:///")
    async with store.transaction():  # no statement yet: BEGIN IMMEDIATE alone takes the lock
        assert await asyncio.to_thread(_try_to_write, path) is False
    async with store.read() as uow:
        await uow.subjects.get("x")
        assert await asyncio.to_thread(_try_to_write, path) is True
    assert await asyncio.to_thread(_try_to_write, path) is True
