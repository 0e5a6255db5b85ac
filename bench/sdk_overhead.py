"""SDK middleware overhead on an allowed request, side by side in one run.

One small FastAPI app (``benchlib/sdkapp.py``, uvicorn, one worker) serves the same JSON
four ways: without the SDK (``/plain``), behind the route dependency (``/dep``) and the ASGI
middleware (``/mw``), both asking a live ``stepguard serve`` (SQLite, one worker) for an
``allow``, and behind the JWT bearer check (``/token``, StepGuard not involved). The same load
(1 connection, then ``--connections``; rounds interleaved) hits each path, and then
``POST /v1/decisions`` on StepGuard directly (what ``/dep`` and ``/mw`` wait for). The table
gives req/s, the ratio to ``/plain``, latency, and the app process's CPU per request: the
SDK's own cost is the CPU difference to ``/plain``, and its latency is ``/dep`` minus
``/plain`` minus the direct decision at 1 connection.

Run from the repository root::

    .venv/bin/python bench/sdk_overhead.py            # 3 rounds of 10 s per path
    .venv/bin/python bench/sdk_overhead.py --quick    # 1 round of 3 s

Figures go to stdout and to ``bench/results/sdk-overhead-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from benchlib import load
from benchlib.server import (
    Server,
    _stop,
    _wait_ready,
    create_subject_session,
    free_port,
    fresh_database,
    running_server,
)

BENCH_DIR: Final = Path(__file__).resolve().parent
RESULTS: Final = BENCH_DIR / "results"
AUDIENCE: Final = "https://bank.bench"
PATHS: Final = ("/plain", "/dep", "/mw", "/token")
POLICY: Final = """
version: 1
rules:
  - id: view
    match: {actions: ["account.view"]}
    allow: true
default:
  deny: true
"""


@contextmanager
def running_app(workdir: Path, env_extra: dict[str, str], port: int) -> Iterator[Server]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    env.update(env_extra)
    log = workdir / "sdkapp.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchlib.sdkapp:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            server = Server(
                base_url=f"http://127.0.0.1:{port}",
                host="127.0.0.1",
                port=port,
                api_key="",
                workers=1,
                database_url="",
                log=log,
                pgid=process.pid,
            )
            _wait_ready(server, process)
            yield server
        finally:
            _stop(process)


async def _session(stepguard: Server) -> str:
    async with httpx.AsyncClient(base_url=stepguard.base_url, headers=stepguard.auth) as client:
        return await create_subject_session(client, "bench-sdk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "python"))
    args = parser.parse_args()
    duration = 3.0 if args.quick else args.duration
    rounds = 1 if args.quick else args.rounds
    generator = load.choose(args.loadgen)

    key = RSAKey.generate_key(2048, parameters={"kid": "bench"}, private=True)
    jwks = KeySet([key]).as_dict(private=False)
    started = datetime.now(UTC)
    concurrency = (1, args.connections)
    results: dict[str, list[dict[str, Any]]] = {
        f"{path} c={c}": [] for c in concurrency for path in (*PATHS, "decision")
    }
    with tempfile.TemporaryDirectory(prefix="sg-sdk-bench-") as tmp:
        workdir = Path(tmp)
        with (
            fresh_database("sqlite", workdir=workdir, postgres_url="") as url,
            running_server(
                workdir=workdir / "sg", database_url=url, policy_text=POLICY, workers=1
            ) as stepguard,
        ):
            session_id = asyncio.run(_session(stepguard))
            port = free_port()
            issuer = f"http://127.0.0.1:{port}"
            now = int(time.time())
            token = jwt.encode(
                {"alg": "RS256", "typ": "at+jwt", "kid": "bench"},
                {
                    "iss": issuer,
                    "aud": AUDIENCE,
                    "sub": "bench",
                    "iat": now,
                    "exp": now + 3600,
                    "acr": "aal2",
                    "auth_time": now,
                    "client_id": "bench",
                },
                key,
            )
            env = {
                "SDKAPP_STEPGUARD_URL": stepguard.base_url,
                "SDKAPP_API_KEY": stepguard.api_key,
                "SDKAPP_ISSUER": issuer,
                "SDKAPP_AUDIENCE": AUDIENCE,
                "SDKAPP_JWKS": json.dumps(jwks),
            }
            with running_app(workdir, env, port) as app:
                headers = {"x-session": session_id, "Authorization": f"Bearer {token}"}
                for path in PATHS:  # warm up, and check every path answers 200
                    response = httpx.get(f"{app.base_url}{path}", headers=headers)
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: {response.status_code} {response.text}")
                decision_body = {"session_id": session_id, "action": "account.view"}
                for connections in concurrency:
                    for _ in range(rounds):
                        for path in PATHS:
                            before = app.cpu_s()
                            result = load.run_repeat(
                                generator,
                                host=app.host,
                                port=app.port,
                                method="GET",
                                path=path,
                                body=None,
                                headers=headers,
                                duration_s=duration,
                                connections=connections,
                            )
                            row = result.as_json()
                            row["app_cpu_us_per_req"] = (
                                (app.cpu_s() - before) * 1e6 / result.requests
                                if result.requests
                                else None
                            )
                            results[f"{path} c={connections}"].append(row)
                        # StepGuard alone, same load: what /dep and /mw wait for.
                        direct = load.run_repeat(
                            generator,
                            host=stepguard.host,
                            port=stepguard.port,
                            method="POST",
                            path="/v1/decisions",
                            body=decision_body,
                            headers={**stepguard.auth, "Content-Type": "application/json"},
                            duration_s=duration,
                            connections=connections,
                        )
                        results[f"decision c={connections}"].append(direct.as_json())

    summary: dict[str, dict[str, Any]] = {}
    for name, runs in results.items():
        cpu = [r["app_cpu_us_per_req"] for r in runs if r.get("app_cpu_us_per_req") is not None]
        summary[name] = {
            "ok_rps": statistics.median(r["ok_rps"] for r in runs),
            "failures": sum(r["failures"] for r in runs),
            "p50_us": statistics.median(r["latency_us"].get("p50") or 0 for r in runs),
            "p99_us": statistics.median(r["latency_us"].get("p99") or 0 for r in runs),
            "app_cpu_us_per_req": statistics.median(cpu) if cpu else None,
        }
    print(f"generator={generator} {rounds} round(s) x {duration:.0f}s per row")
    print(
        f"{'path':16} {'req/s':>8} {'÷plain':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'app CPU µs/req':>14} {'fail':>5}"
    )
    for c in concurrency:
        base = summary[f"/plain c={c}"]
        for path in (*PATHS, "decision"):
            name = f"{path} c={c}"
            row = summary[name]
            ratio = row["ok_rps"] / base["ok_rps"] if base["ok_rps"] else 0.0
            row["ratio_to_plain"] = round(ratio, 3)
            cpu = row["app_cpu_us_per_req"]
            print(
                f"{name:16} {row['ok_rps']:8.0f} {ratio:7.2f} {row['p50_us'] / 1000:7.2f} "
                f"{row['p99_us'] / 1000:7.2f} {'-' if cpu is None else f'{cpu:14.0f}':>14} "
                f"{row['failures']:5d}"
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"sdk-overhead-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
                "load_average": os.getloadavg(),
                "generator": generator,
                "connections": args.connections,
                "duration_s": duration,
                "rounds": rounds,
                "summary": summary,
                "runs": results,
            },
            indent=2,
        )
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
