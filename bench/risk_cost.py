"""What the live risk engine adds to an in-process decision, side by side with the static one.

The same ``DecisionService.decide`` (service layer, real SQLite store, real clock) for the
same familiar request (an ``allow``: the hot read path), once with ``StaticRiskAssessor`` and
once with the live ``RiskEngine`` whose caches are warm (profile cache 5 s, population cache
60 s: the defaults). Calls alternate one by one between the two, so machine noise hits both.
Also: ``RiskEngine.assess`` alone, and the replay's rows/s on a generated file.

    .venv/bin/python bench/risk_cost.py            # about a minute
    .venv/bin/python bench/risk_cost.py --quick

Target (issue 5): the engine adds at most 50 us p50 to an in-process decision.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import gc
import io
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.risk.replay import replay
from stepguard.adapters.storage import migrate
from stepguard.bootstrap import build_runtime
from stepguard.core.policy.loader import load_policy
from stepguard.core.risk.engine import RiskConfig
from stepguard.service.decisions import DecisionRequest, DecisionService
from stepguard.service.risk import StaticRiskAssessor
from stepguard.settings import Settings

TARGET_ADDED_P50_US: Final = 50.0

POLICY: Final = """
version: 1
rules:
  - id: risky
    match: {actions: ["*"]}
    when: "risk.level == 'high' || risk.level == 'critical'"
    step_up: {acr: aal2, max_age: 0}
  - id: travel
    match: {actions: ["payments.*"]}
    when: "has(risk.signals.impossible_travel) && risk.signals.impossible_travel > 1000.0"
    step_up: {acr: aal2, max_age: 0}
  - id: view
    match: {actions: ["account.view"]}
    allow: true
default:
  deny: true
"""
UA: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
IP: Final = "81.2.69.160"


def p50_us(samples_ns: Sequence[int]) -> float:
    return statistics.median(samples_ns) / 1000


async def _runtime(url: str, live: bool) -> Any:
    settings = Settings(
        database_url=url,
        secret_keys=[SecretBox.generate_key()],  # type: ignore[list-item]
        policy_file=Path("unused.yaml"),
        risk_engine="live" if live else "static",
    )
    return build_runtime(
        settings,
        policy=load_policy(POLICY, source="bench"),
        risk=None if live else StaticRiskAssessor(),
    )


async def measure_decisions(workdir: Path, *, calls: int, rounds: int) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{workdir / 'risk.db'}"
    await migrate(url)
    live = await _runtime(url, live=True)
    services = live.services
    # The same store, policy and clock; only the risk port differs.
    static_decisions = DecisionService(
        dataclasses.replace(services.deps, risk=StaticRiskAssessor())
    )
    await services.subjects.put("alice", email=None, phone=None, groups=(), actor="bench")
    for other in range(20):  # a population to compare against
        await services.subjects.put(f"u{other}", email=None, phone=None, groups=(), actor="bench")
        await services.sessions.create(
            subject_id=f"u{other}", amr=["pwd"], ip=f"2.2.{other}.1", user_agent=UA,
            ttl_seconds=None, actor="bench",
        )  # fmt: skip
    for _ in range(20):
        session, _ = await services.sessions.create(
            subject_id="alice", amr=["pwd"], ip=IP, user_agent=UA, ttl_seconds=None,
            actor="bench", device_id="dev-1",
        )  # fmt: skip
    request = DecisionRequest(
        session_id=session.id,
        action="account.view",
        context={},
        ip=IP,
        user_agent=UA,
        device_id="dev-1",
    )
    for decisions in (services.decisions, static_decisions):  # warm caches and the CEL memo
        for _ in range(200):
            result = await decisions.decide(request, actor="bench")
    assert type(result.decision).__name__ == "Allow", result
    live_result = await live.services.decisions.decide(request, actor="bench")
    assert type(live_result.decision).__name__ == "Allow", live_result

    # Alternate call by call, so drift and neighbours' load hit both sides alike.
    samples: dict[str, list[int]] = {"static": [], "live": []}
    static_decide, live_decide = static_decisions.decide, services.decisions.decide
    static_out, live_out = samples["static"], samples["live"]
    clock = time.perf_counter_ns
    gc.collect()
    for i in range(calls):
        # Which goes first alternates too (the second call of a pair finds warmer caches).
        first, second = (static_decide, live_decide) if i % 2 else (live_decide, static_decide)
        start = clock()
        await first(request, actor="bench")
        middle = clock()
        await second(request, actor="bench")
        end = clock()
        if i % 2:
            static_out.append(middle - start)
            live_out.append(end - middle)
        else:
            live_out.append(middle - start)
            static_out.append(end - middle)
    block = max(calls // rounds, 1)

    engine = live.services.deps.risk
    session_obj, subject = await _session_and_subject(live, session.id)
    assess_ns: list[int] = []
    for _ in range(block * rounds):
        now = datetime.now(UTC)
        start = clock()
        await engine.assess(
            subject=subject, session=session_obj, action="account.view", ip=IP,
            user_agent=UA, now=now, device_id="dev-1",
        )  # fmt: skip
        assess_ns.append(clock() - start)
    await live.store.close()
    static_p50, live_p50 = p50_us(samples["static"]), p50_us(samples["live"])
    return {
        "calls_each": len(samples["static"]),
        "static_p50_us": static_p50,
        "live_p50_us": live_p50,
        "added_p50_us": live_p50 - static_p50,
        "paired_median_us": statistics.median(
            (b - a) / 1000 for a, b in zip(samples["static"], samples["live"], strict=True)
        ),
        "ratio": live_p50 / static_p50,
        "assess_p50_us": p50_us(assess_ns),
        "live_signals": [s.name for s in live_result.risk.signals],
        "live_level": live_result.risk.level.label,
    }


async def _session_and_subject(runtime: Any, session_id: str) -> Any:
    async with runtime.store.read() as uow:
        return await uow.sessions.get_with_subject(session_id)


def generate_log(path: Path, rows: int, *, seed: int = 7) -> None:
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(max(rows // 20, 1))]
    agents = [
        ("UA-a", "Chrome 80.0", "Windows 10", "desktop"),
        ("UA-b", "Firefox 70.0", "Mac OS X 10.15", "desktop"),
        ("UA-c", "Mobile Safari 13.0", "iOS 13.3", "mobile"),
    ]
    home = {
        u: (rng.choice(["NO", "US", "DE", "BR", "IN"]), rng.randint(1, 500), rng.choice(agents))
        for u in users
    }
    moment = datetime(2020, 2, 3, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["index", "Login Timestamp", "User ID", "Round-Trip Time [ms]", "IP Address",
             "Country", "Region", "City", "ASN", "User Agent String",
             "Browser Name and Version", "OS Name and Version", "Device Type",
             "Login Successful"]
        )  # fmt: skip
        for index in range(rows):
            moment += timedelta(milliseconds=rng.randint(1, 2000))
            user = rng.choice(users)
            country, asn, agent = home[user]
            if rng.random() < 0.05:
                country, asn, agent = (
                    rng.choice(["NO", "US"]),
                    rng.randint(1, 5000),
                    rng.choice(agents),
                )
            ip = f"10.{asn % 256}.{rng.randint(0, 3)}.{rng.randint(1, 9)}"
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            writer.writerow(
                [index, stamp, user, "", ip, country, "-", "-", asn, *agent, rng.random() < 0.9]
            )


def measure_replay(workdir: Path, rows: int) -> dict[str, Any]:
    source = workdir / "log.csv"
    generate_log(source, rows)
    out: dict[str, Any] = {"rows": rows}
    for model in ("full", "freeman"):
        started = time.perf_counter()
        replay(source, io.StringIO(), config=RiskConfig(model=model), max_history=100)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
        out[f"{model}_rows_per_s"] = rows / elapsed
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    calls, rounds, rows = (2000, 4, 20_000) if args.quick else (20_000, 10, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        decisions = asyncio.run(measure_decisions(workdir, calls=calls, rounds=rounds))
        replayed = measure_replay(workdir, rows)
    ok = decisions["added_p50_us"] <= TARGET_ADDED_P50_US
    print(f"in-process decision, {decisions['calls_each']} calls each, interleaved")
    print(f"  static risk   p50 {decisions['static_p50_us']:8.1f} us")
    print(f"  live engine   p50 {decisions['live_p50_us']:8.1f} us")
    print(
        f"  added         p50 {decisions['added_p50_us']:8.1f} us  (ratio "
        f"{decisions['ratio']:.2f}x; target <= {TARGET_ADDED_P50_US:.0f} us: "
        f"{'met' if ok else 'NOT met'})"
    )
    print(f"  paired difference, median    {decisions['paired_median_us']:8.1f} us")
    print(f"  RiskEngine.assess alone p50 {decisions['assess_p50_us']:.1f} us")
    print(f"  live assessment: {decisions['live_level']}, signals {decisions['live_signals']}")
    print(f"replay of {replayed['rows']} generated rows")
    print(f"  full    {replayed['full_rows_per_s']:9.0f} rows/s")
    print(f"  freeman {replayed['freeman_rows_per_s']:9.0f} rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
