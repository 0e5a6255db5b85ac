"""A worker process for the cross-process race test (run as a script, not collected).

Usage: ``python race_worker.py '<json job>'``. Connects, warms its pool, prints ``ready``,
waits for a line on stdin, then has ``tasks`` concurrent tasks per single-use operation try
it once (all at the same time, each in its own transaction), and prints a JSON object with
how many calls this process won per operation.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import SqlStore, SqlUnitOfWork


async def main(job: dict[str, str | int]) -> dict[str, int]:
    tasks = int(job["tasks"])
    # At most `tasks` connections per process (the server is shared: max_connections).
    store = SqlStore(str(job["url"]), SecretBox([str(job["key"])]), pool_size=tasks, max_overflow=0)
    at = datetime.fromisoformat(str(job["at"]))
    binding = {
        "subject_id": str(job["subject_id"]),
        "session_id": str(job["session_id"]),
        "action": str(job["action"]),
        "transaction_digest": str(job["transaction_digest"]),
    }

    async def code(uow: SqlUnitOfWork) -> bool:
        return await uow.factors.consume_recovery_code(
            str(job["codes_factor"]), str(job["code_hash"]), at=at
        )

    async def step(uow: SqlUnitOfWork) -> bool:
        return await uow.factors.advance_totp_step(str(job["totp_factor"]), int(job["step"]))

    async def grant(uow: SqlUnitOfWork) -> bool:
        return await uow.grants.consume(str(job["token_hash"]), at=at, **binding) is not None

    async def challenge(uow: SqlUnitOfWork) -> bool:
        return await uow.challenges.mark_satisfied(
            str(job["challenge"]), at=at, factor_id=str(job["totp_factor"])
        )

    operations: dict[str, Callable[[SqlUnitOfWork], Awaitable[bool]]] = {
        "recovery_code": code,
        "totp_step": step,
        "grant": grant,
        "challenge": challenge,
    }

    async def attempt(operation: Callable[[SqlUnitOfWork], Awaitable[bool]]) -> bool:
        async with store.transaction() as uow:
            return await operation(uow)

    try:
        # Open the pool's connections before the start signal, so the race is not a connect race.
        await asyncio.gather(*(store.ping() for _ in range(tasks)))
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        names = [name for name in operations for _ in range(tasks)]
        results = await asyncio.gather(*(attempt(operations[name]) for name in names))
        wins = dict.fromkeys(operations, 0)
        for name, won in zip(names, results, strict=True):
            wins[name] += won
        return wins
    finally:
        await store.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
