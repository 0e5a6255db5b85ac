"""StepGuard decision benchmark: the figures the product issue asks for.

1. ``inprocess``: the latency of :func:`stepguard.core.decision.decide` alone, with generated
   policies of 10, 1,000 and 10,000 rules and pools of 1k and 100k distinct sessions.
2. ``http``: ``POST /v1/decisions`` (an ``allow``, the hot read path) against ``GET /healthz``
   on the same server, same concurrency and duration, as a ratio; plus a ``step_up`` decision
   (which writes a challenge and an audit record).
3. ``totp``: ``POST /v1/challenges/{id}/verifications`` per second with real TOTP codes, on
   SQLite and PostgreSQL, with 1 and 2 workers.

And, to explain 2 and 3, ``paths``: the same use cases in-process through the service layer
and the real store, one call at a time: SQL statements, thread hops and CPU per call.

Run from the repository root::

    .venv/bin/python bench/decision.py            # the full run (15 to 20 minutes)
    .venv/bin/python bench/decision.py --quick    # a smoke run (about a minute)

A table goes to stdout and every figure to ``bench/results/decision-<UTC time>.json``.
See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import importlib.metadata
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from benchlib import load
from benchlib.paths import run_explain
from benchlib.server import (
    PreparedChallenge,
    Server,
    create_subject_session,
    decide,
    fresh_database,
    gather_limited,
    postgres_version,
    prepare_totp_challenge,
    running_raw_app,
    running_server,
)
from benchlib.workload import NOW, DecisionCase, build_cases, generate_policy
from stepguard.core.decision import Allow, Deny, StepUp
from stepguard.core.decision import decide as core_decide
from stepguard.core.policy.loader import load_policy

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS_DIR: Final = BENCH_DIR / "results"
DEFAULT_POSTGRES: Final = os.environ.get(
    "STEPGUARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

# Targets from the product issue.
TARGET_P50_US_AT_1000_RULES: Final = 50.0
TARGET_HTTP_RATIO: Final = 0.40
TARGET_TOTP_PER_S: Final = 1000.0

# NOTES.md: a raw ASGI app under uvicorn, 1 worker, wrk -t2 -c64, on a quiet machine.
QUIET_RAW_ASGI_RPS: Final = 48_000.0

# The server's policy: 1,000 generated rules with these two in the middle of the list.
HTTP_POLICY_RULES: Final = 1000
ALLOW_ACTION: Final = "bench.read"
STEP_UP_ACTION: Final = "bench.transfer"
BENCH_RULES: Final = (
    '{id: bench-read, match: {actions: ["bench.read"]}, '
    'when: "has(context.amount) && context.amount < 1000", allow: true}',
    '{id: bench-transfer, match: {actions: ["bench.transfer"]}, '
    "step_up: {acr: aal2, max_age: 300, methods: [totp]}, "
    'summary: "Transfer {context.amount} to {context.payee}"}',
)


# --- machine ----------------------------------------------------------------------------


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _versions(*names: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _git(*args: str) -> str | None:
    """Read-only git queries (``--no-optional-locks``: not even the index is refreshed)."""
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_state() -> dict[str, Any]:
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "src_files_modified": None if changed is None else len(changed.splitlines()),
    }


def machine_info() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "loadavg_at_start": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "git": _git_state(),
        "packages": _versions(
            "stepguard",
            "fastapi",
            "starlette",
            "uvicorn",
            "uvloop",
            "httptools",
            "pydantic",
            "sqlalchemy",
            "aiosqlite",
            "asyncpg",
            "common-expression-language",
            "orjson",
        ),
        "wrk": load.wrk_version(),
    }


# --- 1. in-process decide() -------------------------------------------------------------


def _percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1000, 2)

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "mean": round(sum(ordered) / n / 1000, 2),
    }


def _time_decisions(policy: Any, cases: Sequence[DecisionCase], calls: int) -> list[int]:
    """``calls`` decisions cycling through ``cases``, each timed on its own (ns)."""
    prepared = [(c.inp, c.factors, c.risk) for c in cases]
    n = len(prepared)
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        inp, factors, risk = prepared[i % n]
        started = clock()
        core_decide(policy=policy, inp=inp, factors=factors, risk=risk, now=NOW)
        samples[i] = clock() - started
    return samples


def run_inprocess(
    rule_counts: Sequence[int], session_counts: Sequence[int], *, min_calls: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rules in rule_counts:
        generated = generate_policy(rules)
        started = time.perf_counter()
        policy = load_policy(generated.text, source=f"<generated {rules} rules>")
        load_s = time.perf_counter() - started
        positions = {rule.id: i for i, rule in enumerate(policy.rules)}  # type: ignore[attr-defined]
        for sessions in session_counts:
            cases = build_cases(sessions, services=generated.services)
            gc.collect()
            gc.freeze()  # the pre-built pool is a bench artefact: keep it out of GC passes
            # One untimed pass: fills the engine's per-action memo as traffic would, and
            # records where in the list the deciding rules sit.
            outcomes: Counter[str] = Counter()
            where: list[float] = []
            for case in cases:
                decision = core_decide(
                    policy=policy, inp=case.inp, factors=case.factors, risk=case.risk, now=NOW
                )
                outcomes[type(decision).__name__] += 1
                position = positions.get(decision.rule)
                if position is not None:
                    where.append(position / max(1, rules - 1))
            calls = max(min_calls, 2 * sessions)
            samples = _time_decisions(policy, cases, calls)
            where.sort()
            spread = {
                f"p{q}": round(where[int(q / 100 * (len(where) - 1))], 2) if where else None
                for q in (10, 50, 90)
            }
            latency = _percentiles_us(samples)
            row = {
                "rules": rules,
                "sessions": sessions,
                "calls": calls,
                "policy_load_s": round(load_s, 2),
                "latency_us": latency,
                "outcomes": {
                    k: outcomes[k] for k in (Allow.__name__, StepUp.__name__, Deny.__name__)
                },
                "default_share": round(1 - len(where) / len(cases), 3),
                "deciding_rule_position": spread,
            }
            rows.append(row)
            print(
                f"  in-process {rules:>6} rules {sessions:>7} sessions: p50 {latency['p50']:.1f}"
                f" p90 {latency['p90']:.1f} p99 {latency['p99']:.1f} us ({calls} calls)",
                flush=True,
            )
            del cases
            gc.unfreeze()
            gc.collect()
    return rows


# --- 2. HTTP decisions vs a trivial endpoint --------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


async def _http_bodies(server: Server) -> tuple[dict[str, Any], dict[str, Any]]:
    """A subject and session, and the allow and step-up decision bodies (checked once)."""
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.auth) as client:
        session_id = await create_subject_session(client, "bench-http")
        allow = {
            "session_id": session_id,
            "action": ALLOW_ACTION,
            "resource": "docs/42",
            "context": {"amount": 10},
            "ip": "203.0.113.7",
            "user_agent": "bench/1.0",
        }
        step_up = {
            "session_id": session_id,
            "action": STEP_UP_ACTION,
            "context": {"amount": 5000, "payee": "acct-1"},
            "ip": "203.0.113.7",
            "user_agent": "bench/1.0",
        }
        for body, expected in ((allow, "allow"), (step_up, "step_up")):
            answer = await decide(client, body)
            if answer["decision"] != expected:
                raise RuntimeError(f"expected {expected}, got {answer}")
    return allow, step_up


async def _still_allows(server: Server, body: dict[str, Any]) -> bool:
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.auth) as client:
        answer = await decide(client, body)
    return bool(answer["decision"] == "allow")


def run_http(
    server: Server,
    *,
    generator: load.Generator,
    duration_s: float,
    warmup_s: float,
    rounds: int,
    connections: int,
) -> dict[str, Any]:
    allow, step_up = asyncio.run(_http_bodies(server))
    common: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "headers": server.auth,
        "connections": connections,
    }
    trivial: dict[str, Any] = {"method": "GET", "path": "/healthz", "body": None}
    allowed: dict[str, Any] = {"method": "POST", "path": "/v1/decisions", "body": allow}
    stepped: dict[str, Any] = {"method": "POST", "path": "/v1/decisions", "body": step_up}

    for target in (trivial, allowed):  # warm-up, not recorded
        load.run_repeat(generator, **common, **target, duration_s=warmup_s)

    def measure(target: dict[str, Any]) -> dict[str, Any]:
        before = server.cpu_s()
        result = load.run_repeat(generator, **common, **target, duration_s=duration_s)
        cpu_s = server.cpu_s() - before
        return {
            **result.as_json(),
            "server_cpu_us_per_request": round(cpu_s / max(1, result.requests) * 1e6, 1),
        }

    healthz_runs: list[dict[str, Any]] = []
    allow_runs: list[dict[str, Any]] = []
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both alike
        healthz_runs.append(measure(trivial))
        allow_runs.append(measure(allowed))
    step_up_run = measure(stepped)
    if not asyncio.run(_still_allows(server, allow)):
        raise RuntimeError("the allow decision changed during the run")

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return _median([float(r[key]) for r in runs])

    healthz_rps, allow_rps = med(healthz_runs, "ok_rps"), med(allow_runs, "ok_rps")
    healthz_cpu = med(healthz_runs, "server_cpu_us_per_request")
    allow_cpu = med(allow_runs, "server_cpu_us_per_request")
    step_up_rps = float(step_up_run["ok_rps"])
    step_up_cpu = float(step_up_run["server_cpu_us_per_request"])
    return {
        "generator": healthz_runs[0]["generator"],
        "connections": connections,
        "duration_s": duration_s,
        "rounds": rounds,
        "healthz_rps": round(healthz_rps, 1),
        "allow_rps": round(allow_rps, 1),
        "step_up_rps": round(step_up_rps, 1),
        "allow_ratio": round(allow_rps / healthz_rps, 3) if healthz_rps else None,
        "step_up_ratio": round(step_up_rps / healthz_rps, 3) if healthz_rps else None,
        "round_ratios": [
            round(a["ok_rps"] / h["ok_rps"], 3) if h["ok_rps"] else None
            for h, a in zip(healthz_runs, allow_runs, strict=True)
        ],
        "server_cpu_us_per_request": {
            "healthz": round(healthz_cpu, 1),
            "allow": round(allow_cpu, 1),
            "step_up": round(step_up_cpu, 1),
        },
        "allow_cpu_ratio": round(healthz_cpu / allow_cpu, 3) if allow_cpu else None,
        "failures": sum(int(r["failures"]) for r in (*healthz_runs, *allow_runs, step_up_run)),
        "healthz_runs": healthz_runs,
        "allow_runs": allow_runs,
        "step_up_run": step_up_run,
    }


# --- 3. TOTP verifications --------------------------------------------------------------


async def _prepare_challenges(server: Server, count: int, tag: str) -> list[PreparedChallenge]:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=server.auth, limits=limits, timeout=60.0
    ) as client:
        prepared: list[PreparedChallenge] = await gather_limited(
            [
                prepare_totp_challenge(client, f"totp-{tag}-{i}", step_up_action=STEP_UP_ACTION)
                for i in range(count)
            ],
            limit=16,
        )
    return prepared


def run_totp(server: Server, *, subjects: int, connections: int, tag: str) -> dict[str, Any]:
    started = time.perf_counter()
    prepared = asyncio.run(_prepare_challenges(server, subjects, tag))
    prepare_s = time.perf_counter() - started
    # Each code is computed by the load generator as the request goes out: the code an
    # authenticator shows at that moment (or the next one, while the current step is still
    # the factor's replay floor, from its confirmation), inside the server's +-1 step window.
    requests = [
        {
            "method": "POST",
            "path": f"/v1/challenges/{p.challenge_id}/verifications",
            "body": {"factor_id": p.factor_id},
            "totp": {"secret": base64.b32encode(p.secret).decode(), "floor": p.floor_step},
        }
        for p in prepared
    ]
    before = server.cpu_s()
    result = load.run_list(
        host=server.host,
        port=server.port,
        requests=requests,
        headers=server.auth,
        connections=connections,
        timeout_s=300,
    )
    cpu_s = server.cpu_s() - before
    return {
        "generator": result.generator,
        "subjects": subjects,
        "connections": connections,
        "prepare_s": round(prepare_s, 1),
        "verifications": result.requests,
        "ok": result.ok,
        "failures": result.failures,
        "ok_per_s": round(result.ok_rps, 1),
        "server_cpu_us_per_verification": round(cpu_s / max(1, result.requests) * 1e6, 1),
        "run": result.as_json(),
    }


# --- orchestration ----------------------------------------------------------------------


def server_policy() -> str:
    return generate_policy(HTTP_POLICY_RULES, extra_rules=BENCH_RULES).text


def run_paths(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend in args.backends:
        print(f"  paths: {backend} ...", flush=True)
        with fresh_database(
            backend, workdir=workdir / f"paths-{backend}", postgres_url=args.postgres_url
        ) as url:
            for row in run_explain(
                url,
                policy_text=server_policy(),
                allow_action=ALLOW_ACTION,
                step_up_action=STEP_UP_ACTION,
                calls=args.path_calls,
            ):
                rows.append({"backend": backend, **row})
    return rows


def run_calibration(
    args: argparse.Namespace, generator: load.Generator, workdir: Path
) -> dict[str, Any]:
    """The raw ASGI reference app, loaded like the servers: how fast is the machine now?"""
    with running_raw_app(workdir / "rawapp") as server:
        load.run_repeat(
            generator,
            host=server.host,
            port=server.port,
            method="GET",
            path="/",
            body=None,
            headers={},
            duration_s=args.warmup,
            connections=args.connections,
        )
        before = server.cpu_s()
        result = load.run_repeat(
            generator,
            host=server.host,
            port=server.port,
            method="GET",
            path="/",
            body=None,
            headers={},
            duration_s=args.duration,
            connections=args.connections,
        )
        cpu_s = server.cpu_s() - before
    return {
        **result.as_json(),
        "server_cpu_us_per_request": round(cpu_s / max(1, result.requests) * 1e6, 1),
        "quiet_machine_rps": QUIET_RAW_ASGI_RPS,
        "speed_vs_quiet": round(result.ok_rps / QUIET_RAW_ASGI_RPS, 2),
    }


def run_servers(
    args: argparse.Namespace, phases: set[str], generator: load.Generator, workdir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    http_rows: list[dict[str, Any]] = []
    totp_rows: list[dict[str, Any]] = []
    for backend in args.backends:
        for workers in args.workers:
            print(f"  server: {backend}, {workers} worker(s) ...", flush=True)
            place = workdir / f"{backend}-{workers}w"
            started = time.perf_counter()
            with (
                fresh_database(backend, workdir=place, postgres_url=args.postgres_url) as url,
                running_server(
                    workdir=place,
                    database_url=url,
                    policy_text=server_policy(),
                    workers=workers,
                ) as server,
            ):
                print(f"    started in {time.perf_counter() - started:.1f} s", flush=True)
                if "http" in phases:
                    row = run_http(
                        server,
                        generator=generator,
                        duration_s=args.duration,
                        warmup_s=args.warmup,
                        rounds=args.rounds,
                        connections=args.connections,
                    )
                    http_rows.append({"backend": backend, "workers": workers, **row})
                    print(
                        f"    http: healthz {row['healthz_rps']:.0f}/s, allow "
                        f"{row['allow_rps']:.0f}/s ({row['allow_ratio']:.0%}), step_up "
                        f"{row['step_up_rps']:.0f}/s, failures {row['failures']}",
                        flush=True,
                    )
                if "totp" in phases:
                    row = run_totp(
                        server,
                        subjects=args.totp_subjects,
                        connections=args.connections,
                        tag=f"{backend}{workers}",
                    )
                    totp_rows.append({"backend": backend, "workers": workers, **row})
                    print(
                        f"    totp: {row['ok_per_s']:.0f} verifications/s "
                        f"({row['ok']} ok, {row['failures']} failed; "
                        f"{row['prepare_s']:.0f} s to prepare)",
                        flush=True,
                    )
    return http_rows, totp_rows


# --- report -----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _report_inprocess(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "1. In-process decide() latency, us per call (core only, pre-built inputs)",
        f"{'rules':>7} {'sessions':>9} {'p50':>7} {'p90':>7} {'p99':>7} {'mean':>7}  "
        f"{'deciding rule at p10/p50/p90 of list':>36} {'default':>8} {'load s':>7}",
    ]
    for r in rows:
        lat, pos = r["latency_us"], r["deciding_rule_position"]
        spread = "/".join(_fmt(pos[k], ".2f") for k in ("p10", "p50", "p90"))
        lines.append(
            f"{r['rules']:>7} {r['sessions']:>9} {lat['p50']:>7.2f} {lat['p90']:>7.2f} "
            f"{lat['p99']:>7.2f} {lat['mean']:>7.2f}  {spread:>36} "
            f"{r['default_share']:>8.0%} {r['policy_load_s']:>7.1f}"
        )
    at_1000 = [r["latency_us"]["p50"] for r in rows if r["rules"] == 1000]
    if at_1000:
        worst = max(at_1000)
        lines.append(
            f"   target p50 <= {TARGET_P50_US_AT_1000_RULES:.0f} us at 1,000 rules: "
            f"{_verdict(worst <= TARGET_P50_US_AT_1000_RULES)} (worst p50 {worst:.2f} us)"
        )
    return lines


def _report_paths(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "Use cases below HTTP, one call at a time (service layer, real store), per call",
        f"{'backend':>8} {'use case':<24} {'statements':>10} {'commits':>7} "
        f"{'thread hops':>11} {'CPU us':>8} {'wall us':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r['backend']:>8} {r['path']:<24} {r['statements']:>10.1f} {r['commits']:>7.1f} "
            f"{r['thread_hops']:>11.1f} {r['cpu_us']:>8.0f} {r['wall_us']:>8.0f}"
        )
    return lines


def _report_http(rows: list[dict[str, Any]]) -> list[str]:
    first = rows[0]
    lines = [
        "",
        f"2. HTTP, same server, same load ({first['connections']} connections, "
        f"{first['duration_s']:g} s each; healthz/allow: median of {first['rounds']} "
        "alternating rounds)",
        f"{'':>17}{'requests/s':-^42}   {'server CPU us/request':-^35}",
        f"{'backend':>8} {'workers':>7} {'healthz':>8} {'allow':>7} {'ratio':>6} "
        f"{'step_up':>8} {'ratio':>6}   {'healthz':>7} {'allow':>7} {'ratio':>6} "
        f"{'step_up':>8} {'failures':>9}",
    ]
    for r in rows:
        cpu = r["server_cpu_us_per_request"]
        lines.append(
            f"{r['backend']:>8} {r['workers']:>7} {r['healthz_rps']:>8.0f} "
            f"{r['allow_rps']:>7.0f} {r['allow_ratio']:>6.0%} {r['step_up_rps']:>8.0f} "
            f"{r['step_up_ratio']:>6.0%}   {cpu['healthz']:>7.0f} {cpu['allow']:>7.0f} "
            f"{r['allow_cpu_ratio']:>6.0%} {cpu['step_up']:>8.0f} {r['failures']:>9}"
        )
    worst = min(r["allow_ratio"] for r in rows)
    lines.append(
        f"   target allow >= {TARGET_HTTP_RATIO:.0%} of healthz req/s: "
        f"{_verdict(worst >= TARGET_HTTP_RATIO)} (lowest {worst:.0%})"
    )
    return lines


def _report_totp(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        f"3. TOTP verifications through the API ({rows[0]['subjects']} subjects, one "
        f"challenge each, {rows[0]['connections']} connections; only 200s count)",
        f"{'backend':>8} {'workers':>7} {'verified/s':>10} {'ok':>6} {'failures':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'server CPU us':>13}",
    ]
    for r in rows:
        lat = r["run"]["latency_us"]
        lines.append(
            f"{r['backend']:>8} {r['workers']:>7} {r['ok_per_s']:>10.0f} {r['ok']:>6} "
            f"{r['failures']:>8} {_ms(lat['p50']):>7} {_ms(lat['p99']):>7} "
            f"{r['server_cpu_us_per_verification']:>13.0f}"
        )
    worst = min(r["ok_per_s"] for r in rows)
    lines.append(
        f"   target >= {TARGET_TOTP_PER_S:.0f}/s: {_verdict(worst >= TARGET_TOTP_PER_S)} "
        f"(lowest {worst:.0f}/s)"
    )
    return lines


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"StepGuard decision bench, {m['date']}, {m['nproc']} CPUs ({m['cpu_model']}), "
        f"Python {m['python']}, load average {m['loadavg_at_start'][0]:.1f} at start, "
        f"{m['loadavg_at_end'][0]:.1f} at end"
    ]
    generators = results.get("load_generator")
    if generators:
        lines.append(f"load generator: HTTP {generators['http']}; TOTP {generators['totp']}")
    calibration = results.get("calibration")
    if calibration:
        lines.append(
            f"machine speed now: raw ASGI reference app {calibration['ok_rps']:.0f} req/s, "
            f"{calibration['server_cpu_us_per_request']:.0f} us CPU per request "
            f"({calibration['speed_vs_quiet']:.0%} of the {QUIET_RAW_ASGI_RPS:.0f} req/s "
            "measured on a quiet machine of this kind)"
        )
    if results.get("inprocess"):
        lines += _report_inprocess(results["inprocess"])
    if results.get("paths"):
        lines += _report_paths(results["paths"])
    if results.get("http"):
        lines += _report_http(results["http"])
    if results.get("totp"):
        lines += _report_totp(results["totp"])
    return "\n".join(lines)


# --- CLI --------------------------------------------------------------------------------


def _csv(kind: type, allowed: Sequence[str] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if allowed is not None:
            for value in values:
                if value not in allowed:
                    raise argparse.ArgumentTypeError(
                        f"{value!r} is not one of {', '.join(allowed)}"
                    )
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse


PHASES: Final = ("inprocess", "paths", "http", "totp")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short durations and small pools: a smoke run under a minute",
    )
    parser.add_argument(
        "--only",
        type=_csv(str, PHASES),
        default=list(PHASES),
        help="which parts to run, comma-separated: inprocess, paths, http, totp (default: all)",
    )
    parser.add_argument(
        "--backends",
        type=_csv(str, ("sqlite", "postgres")),
        default=["sqlite", "postgres"],
        help="databases for http and totp",
    )
    parser.add_argument(
        "--workers",
        type=_csv(int),
        default=None,
        help="server worker counts (default 1,2; --quick: 1)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="HTTP load generator (auto: wrk if installed, else Python)",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per HTTP measurement (default 10; --quick: 2)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of warm-up per endpoint (default 3; --quick: 1)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="healthz/allow pairs per server (default 3; --quick: 1)",
    )
    parser.add_argument(
        "--totp-subjects",
        type=int,
        default=None,
        help="subjects with a TOTP factor and a challenge (default 2000; --quick: 64)",
    )
    parser.add_argument(
        "--path-calls",
        type=int,
        default=None,
        help="calls per use case in the paths part (default 300; --quick: 30)",
    )
    parser.add_argument(
        "--rules",
        type=_csv(int),
        default=None,
        help="policy sizes for the in-process part (default 10,1000,10000)",
    )
    parser.add_argument(
        "--sessions", type=_csv(int), default=None, help="session pool sizes (default 1000,100000)"
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        help="an existing database to connect to while creating the bench's",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "workers": [1] if quick else [1, 2],
        "duration": 2.0 if quick else 10.0,
        "warmup": 1.0 if quick else 3.0,
        "rounds": 1 if quick else 3,
        "totp_subjects": 64 if quick else 2000,
        "path_calls": 30 if quick else 300,
        "rules": [10, 1000] if quick else [10, 1000, 10000],
        "sessions": [1000, 10000] if quick else [1000, 100000],
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so servers are stopped and databases dropped


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    phases = set(args.only)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info()}
    results["settings"] = {
        "quick": args.quick,
        "phases": sorted(phases),
        "backends": args.backends,
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "totp_subjects": args.totp_subjects,
        "rules": args.rules,
        "sessions": args.sessions,
    }
    results["targets"] = {
        "inprocess_p50_us_at_1000_rules": TARGET_P50_US_AT_1000_RULES,
        "http_allow_ratio": TARGET_HTTP_RATIO,
        "totp_per_s": TARGET_TOTP_PER_S,
    }
    phase_s: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phase_s[name] = round(now - mark, 1)
        mark = now

    if "inprocess" in phases:
        print("in-process decide() ...", flush=True)
        results["inprocess"] = run_inprocess(
            args.rules, args.sessions, min_calls=20_000 if args.quick else 200_000
        )
        lap("inprocess")
    with tempfile.TemporaryDirectory(prefix="stepguard-bench-") as tmp:
        workdir = Path(tmp)
        if "paths" in phases:
            print("use cases in-process (statements, hops, CPU) ...", flush=True)
            results["paths"] = run_paths(args, workdir)
            lap("paths")
        if phases & {"http", "totp"}:
            generator = load.choose(args.loadgen)
            results["load_generator"] = {
                "http": "wrk -t2" if generator == "wrk" else "python (benchlib.loadgen)",
                "totp": "python (benchlib.loadgen)",
            }
            if "postgres" in args.backends:
                results["postgres_version"] = asyncio.run(postgres_version(args.postgres_url))
            results["server_policy_rules"] = HTTP_POLICY_RULES + len(BENCH_RULES)
            print("calibration: raw ASGI app ...", flush=True)
            results["calibration"] = run_calibration(args, generator, workdir)
            lap("calibration")
            print(
                f"    {results['calibration']['ok_rps']:.0f} req/s "
                f"({results['calibration']['speed_vs_quiet']:.0%} of a quiet machine)",
                flush=True,
            )
            http_rows, totp_rows = run_servers(args, phases, generator, workdir)
            lap("servers")
            if http_rows:
                results["http"] = http_rows
            if totp_rows:
                results["totp"] = totp_rows
    results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["phase_s"] = phase_s
    text = report(results)
    print()
    print(text)
    output = args.output
    if output is None:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        output = RESULTS_DIR / f"decision-{stamp}{'-quick' if args.quick else ''}.json"
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"\nwrote {output} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
