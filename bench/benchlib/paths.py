"""What one use case costs below HTTP: SQL statements, transactions, thread hops, CPU.

The service layer is driven in-process (``build_runtime``, the real store, the real clock),
one call at a time, so the figures do not depend on how busy a shared machine is as much as
requests per second do. Counted per call:

- ``statements``: every statement SQLAlchemy sends through a cursor (a ``BEGIN`` that the
  store emits itself is one; transaction control that the driver issues, like asyncpg's
  ``BEGIN``, is not);
- ``commits`` and ``rollbacks``: how transactions end (including the pool's reset on return);
- ``thread_hops`` (SQLite only): calls that aiosqlite hands to its connection thread and
  whose result comes back through the event loop;
- ``cpu_us`` and ``wall_us``: the mean process CPU and elapsed time per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import migrate
from stepguard.bootstrap import build_runtime
from stepguard.core.assurance import FactorType
from stepguard.core.factors.totp import TotpSpec, code_at_step, totp_step
from stepguard.core.policy.loader import load_policy
from stepguard.core.secret import Secret
from stepguard.service.decisions import DecisionRequest
from stepguard.settings import Settings


@dataclass
class _Counts:
    statements: int = 0
    commits: int = 0
    rollbacks: int = 0
    thread_hops: int = 0


@contextmanager
def _aiosqlite_hops(counts: _Counts) -> Iterator[None]:
    """Count aiosqlite's hand-offs to its connection thread (analysis only; restored after)."""
    try:
        import aiosqlite.core
    except ImportError:
        yield
        return
    original: Any = aiosqlite.core.Connection._execute

    async def counting(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counts.thread_hops += 1
        return await original(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = counting  # type: ignore[method-assign]
    try:
        yield
    finally:
        aiosqlite.core.Connection._execute = original  # type: ignore[method-assign]


async def _measure(
    name: str, calls: list[Callable[[], Awaitable[object]]], counts: _Counts
) -> dict[str, Any]:
    before = _Counts(**vars(counts))
    started, cpu = time.perf_counter(), time.process_time()
    for call in calls:
        await call()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    n = len(calls)
    return {
        "path": name,
        "calls": n,
        "statements": round((counts.statements - before.statements) / n, 1),
        "commits": round((counts.commits - before.commits) / n, 1),
        "rollbacks": round((counts.rollbacks - before.rollbacks) / n, 1),
        "thread_hops": round((counts.thread_hops - before.thread_hops) / n, 1),
        "cpu_us": round(cpu / n * 1e6, 1),
        "wall_us": round(wall / n * 1e6, 1),
    }


async def explain(
    database_url: str, *, policy_text: str, allow_action: str, step_up_action: str, calls: int
) -> list[dict[str, Any]]:
    """Per-call costs of the allow and step-up decisions and of a TOTP verification."""
    await migrate(database_url)
    settings = Settings(
        database_url=database_url,
        secret_keys=[SecretBox.generate_key()],  # type: ignore[list-item]
        policy_file=Path("unused.yaml"),
    )
    runtime = build_runtime(settings, policy=load_policy(policy_text, source="<bench>"))
    services = runtime.services
    counts = _Counts()
    engine = runtime.store._engine.sync_engine

    def on_statement(*_: Any) -> None:
        counts.statements += 1

    def on_commit(*_: Any) -> None:
        counts.commits += 1

    def on_rollback(*_: Any) -> None:
        counts.rollbacks += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    event.listen(engine, "rollback", on_rollback)
    rows: list[dict[str, Any]] = []
    try:
        with _aiosqlite_hops(counts):
            await services.subjects.put(
                "paths-allow", email=None, phone=None, groups=(), actor=None
            )
            session, _ = await services.sessions.create(
                subject_id="paths-allow",
                amr=["pwd"],
                ip=None,
                user_agent=None,
                ttl_seconds=None,
                actor=None,
            )

            def request(action: str, context: dict[str, Any]) -> DecisionRequest:
                return DecisionRequest(
                    session_id=session.id,
                    action=action,
                    context=context,
                    ip="203.0.113.7",
                    user_agent="bench/1.0",
                )

            allow = request(allow_action, {"amount": 10})
            step_up = request(step_up_action, {"amount": 5000, "payee": "acct-1"})
            for req in (allow, step_up):  # warm-up
                for _ in range(20):
                    await services.decisions.decide(req, actor=None)

            rows.append(
                await _measure(
                    "decision allow",
                    [lambda: services.decisions.decide(allow, actor=None)] * calls,
                    counts,
                )
            )
            rows.append(
                await _measure(
                    "decision step_up",
                    [lambda: services.decisions.decide(step_up, actor=None)] * calls,
                    counts,
                )
            )
            rows.append(
                await _measure(
                    "empty read transaction",
                    [lambda: _empty_read(runtime)] * calls,
                    counts,
                )
            )
            rows.append(
                await _measure(
                    "empty write transaction",
                    [lambda: _empty_write(runtime)] * calls,
                    counts,
                )
            )

            # TOTP: one fresh subject, factor and challenge per verification.
            spec = TotpSpec()
            prepared: list[tuple[str, str, bytes, int]] = []
            for i in range(calls):
                subject_id = f"paths-totp-{i}"
                await services.subjects.put(
                    subject_id, email=None, phone=None, groups=(), actor=None
                )
                own, _ = await services.sessions.create(
                    subject_id=subject_id,
                    amr=["pwd"],
                    ip=None,
                    user_agent=None,
                    ttl_seconds=None,
                    actor=None,
                )
                enrolled = await services.factors.enroll(
                    subject_id,
                    factor_type=FactorType.TOTP,
                    label="",
                    session_id=None,
                    totp=None,
                    actor=None,
                )
                uri = enrolled.otpauth_uri
                assert isinstance(uri, Secret)
                secret = _secret(uri.reveal())
                step = totp_step(spec, datetime.now(UTC))
                await services.factors.confirm(
                    subject_id,
                    enrolled.factor.id,
                    code=code_at_step(secret, spec, step),
                    session_id=None,
                    actor=None,
                )
                result = await services.decisions.decide(
                    DecisionRequest(session_id=own.id, action=step_up_action, context={}),
                    actor=None,
                )
                assert result.challenge is not None
                prepared.append((result.challenge.id, enrolled.factor.id, secret, step))
            now_step = totp_step(spec, datetime.now(UTC))

            def verify(item: tuple[str, str, bytes, int]) -> Callable[[], Awaitable[object]]:
                challenge_id, factor_id, secret, floor = item
                code = code_at_step(secret, spec, max(floor + 1, now_step))
                return lambda: services.verification.verify(
                    challenge_id, factor_id=factor_id, code=code, actor=None
                )

            rows.append(
                await _measure("totp verification", [verify(item) for item in prepared], counts)
            )
    finally:
        await runtime.store.close()
    return rows


async def _empty_read(runtime: Any) -> None:
    async with runtime.store.read():
        pass


async def _empty_write(runtime: Any) -> None:
    async with runtime.store.transaction():
        pass


def _secret(uri: str) -> bytes:
    import base64
    from urllib.parse import parse_qs, urlsplit

    encoded = parse_qs(urlsplit(uri).query)["secret"][0]
    return base64.b32decode(encoded + "=" * (-len(encoded) % 8))


def run_explain(database_url: str, **kwargs: Any) -> list[dict[str, Any]]:
    return asyncio.run(explain(database_url, **kwargs))
