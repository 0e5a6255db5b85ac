"""Forward-auth benchmark: nginx ``auth_request`` -> StepGuard ``/forward-auth`` with a warm
browser session, against the same nginx with ``auth_request`` to a trivial Python endpoint
(raw ASGI under the same uvicorn), side by side in one run.

One nginx (the configuration of docs/forward-auth.md, one worker) serves two ports: one checks
with StepGuard, the other with the stub (:mod:`benchlib.authstub`); both pass allowed requests
to the same upstream (:mod:`benchlib.rawapp`). StepGuard runs as ``stepguard serve`` (one
worker, SQLite, the default live risk engine). Rounds alternate stub / StepGuard so drift on a
shared machine hits both. Every StepGuard request must be answered 200 by the upstream.

    .venv/bin/python bench/forward_auth.py                  # 3 rounds of 10 s, wrk -t2 -c64
    .venv/bin/python bench/forward_auth.py --duration 5 --rounds 2
    .venv/bin/python bench/forward_auth.py --cache-seconds 0   # every check reads the database

Needs nginx (``/usr/sbin/nginx``) and wrk (``apt-get install wrk``). Results go to stdout and
``bench/results/forward-auth-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from benchlib import load
from benchlib.server import free_port, fresh_database, process_group_cpu_s, running_server

BENCH_DIR: Final = Path(__file__).resolve().parent
DOCS: Final = BENCH_DIR.parent / "docs" / "forward-auth.md"
NGINX: Final = Path("/usr/sbin/nginx")
POLICY: Final = """
version: 1
rules:
  - id: admin
    match: {paths: ["/admin", "/admin/**"]}
    step_up: {acr: aal2, max_age: 300}
  - id: app
    match: {hosts: ["127.0.0.1"], methods: [GET, HEAD]}
    allow: true
default: {deny: true}
"""


def docs_snippet() -> str:
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("<!-- forward-auth-nginx-begin -->", 1)[1]
    block = block.split("<!-- forward-auth-nginx-end -->", 1)[0].strip()
    match = re.fullmatch(r"```nginx\n(.*)\n```", block, re.DOTALL)
    if match is None:
        raise SystemExit("docs/forward-auth.md: the nginx block is not one code fence")
    return match.group(1)


def replaced(text: str, pairs: dict[str, str]) -> str:
    for old, new in pairs.items():
        if old not in text:
            raise SystemExit(f"{old!r} is not in the nginx snippet")
        text = text.replace(old, new)
    return text


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port}")


@contextlib.contextmanager
def process(
    args: list[str], *, port: int, what: str, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Run ``args`` in its own process group until the block ends; yields the pid (= pgid)."""
    proc = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_port(port, proc, what)
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def uvicorn(app: str, port: int) -> contextlib.AbstractContextManager[int]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    # The flags `stepguard serve` gives uvicorn (uvloop and httptools when installed).
    args = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--no-proxy-headers", "--no-server-header",
    ]  # fmt: skip
    return process(args, port=port, what=app, env=env)


def nginx_config(
    workdir: Path, *, stepguard: int, stub: int, upstream: int
) -> tuple[Path, int, int]:
    snippet = docs_snippet()
    sg_port, stub_port = free_port(), free_port()
    real = replaced(
        snippet,
        {
            "server 127.0.0.1:9091;": f"server 127.0.0.1:{stepguard};",
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream};",
            "listen 8000;": f"listen 127.0.0.1:{sg_port};",
        },
    )
    reference = replaced(
        snippet,
        {
            "upstream stepguard {": "upstream stub {",
            "http://stepguard": "http://stub",
            "upstream app {": "upstream app_stub {",
            "http://app;": "http://app_stub;",
            "$app_cookie {": "$app_cookie_stub {",
            "$app_cookie;": "$app_cookie_stub;",
            "server 127.0.0.1:9091;": f"server 127.0.0.1:{stub};",
            "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream};",
            "listen 8000;": f"listen 127.0.0.1:{stub_port};",
        },
    )
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    temps = "\n".join(
        f"    {n}_temp_path {prefix / n};"
        for n in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'logs' / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{\n    access_log off;\n{temps}\n{real}\n{reference}\n}}\n",
        encoding="utf-8",
    )
    return conf, sg_port, stub_port


def warm_cookie(server_url: str, api_key: str, nginx_url: str) -> str:
    """A subject, a session and a browser session (a page link opened through nginx)."""
    auth = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=server_url, headers=auth, timeout=10) as api:
        api.put("/v1/subjects/bench", json={"email": "bench@example.com", "groups": ["staff"]})
        session = api.post("/v1/sessions", json={"subject_id": "bench", "amr": ["pwd"]}).json()
        link = api.post(
            f"/v1/sessions/{session['session_id']}/page-links", json={"page": "account"}
        )
        url = link.json()["url"]
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        opened = browser.get(nginx_url + url.removeprefix(nginx_url))
        if opened.status_code != 303:
            raise RuntimeError(f"opening the page link: {opened.status_code} {opened.text[:200]}")
        cookie = browser.cookies.get("stepguard_browser")
    if not cookie:
        raise RuntimeError("no browser cookie")
    return f"stepguard_browser={cookie}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--risk-engine", choices=("live", "static"), default="live")
    parser.add_argument(
        "--cache-seconds", type=float, default=1.0, help="forward_auth_cache_seconds (0: off)"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the StepGuard worker in round 1 (collapsed stacks)"
    )
    args = parser.parse_args()
    if not NGINX.exists() or not load.wrk_available():
        raise SystemExit("needs /usr/sbin/nginx and wrk (apt-get install nginx wrk)")

    results: dict[str, list[dict[str, Any]]] = {"stub": [], "stepguard": []}
    with tempfile.TemporaryDirectory(prefix="sg-bench-fwd-") as tmp:
        workdir = Path(tmp)
        nginx_port_probe = free_port()  # placeholder to reserve distinct ports below
        del nginx_port_probe
        stub_port, upstream_port = free_port(), free_port()
        with contextlib.ExitStack() as stack:
            database_url = stack.enter_context(
                fresh_database("sqlite", workdir=workdir, postgres_url="")
            )
            stub_pid = stack.enter_context(uvicorn("benchlib.authstub:app", stub_port))
            stack.enter_context(uvicorn("benchlib.rawapp:app", upstream_port))
            # The nginx port must be known before StepGuard starts (public_url, return_to).
            sg_nginx, stub_nginx = free_port(), free_port()
            nginx_url = f"http://127.0.0.1:{sg_nginx}"
            os.environ.update(
                STEPGUARD_PUBLIC_URL=nginx_url,
                STEPGUARD_RETURN_TO_ORIGINS=json.dumps([nginx_url]),
                STEPGUARD_RISK_ENGINE=args.risk_engine,
                STEPGUARD_FORWARD_AUTH_CACHE_SECONDS=str(args.cache_seconds),
            )
            server = stack.enter_context(
                running_server(
                    workdir=workdir / "stepguard", database_url=database_url,
                    policy_text=POLICY, workers=1,
                )
            )  # fmt: skip
            conf, sg_port, stub_nginx_port = nginx_config(
                workdir, stepguard=server.port, stub=stub_port, upstream=upstream_port
            )
            # nginx_config picked its own ports: rewrite them to the ones StepGuard knows.
            text = conf.read_text().replace(
                f"listen 127.0.0.1:{sg_port};", f"listen 127.0.0.1:{sg_nginx};"
            )
            text = text.replace(
                f"listen 127.0.0.1:{stub_nginx_port};", f"listen 127.0.0.1:{stub_nginx};"
            )
            conf.write_text(text)
            nginx_pid = stack.enter_context(
                process(
                    [str(NGINX), "-p", str(conf.parent), "-c", str(conf),
                     "-e", str(conf.parent / "logs" / "error.log")],
                    port=sg_nginx, what="nginx",
                )
            )  # fmt: skip
            cookie = warm_cookie(server.base_url, server.api_key, nginx_url)
            auth_pids = {"stub": stub_pid, "stepguard": server.pgid}
            targets = {
                "stub": f"http://127.0.0.1:{stub_nginx}/reports",
                "stepguard": f"{nginx_url}/reports",
            }
            # Sanity: both answer 200 from the upstream; StepGuard without the cookie does not.
            for name, url in targets.items():
                response = httpx.get(url, headers={"Cookie": cookie})
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
            if httpx.get(targets["stepguard"]).status_code == 200:
                raise RuntimeError("StepGuard let a request without a session through")
            for url in targets.values():  # warm both paths
                load.run_wrk(
                    url=url, method="GET", body=None, headers={"Cookie": cookie},
                    duration_s=args.warmup, connections=args.connections,
                )  # fmt: skip
            for round_ in range(args.rounds):
                for name, url in targets.items():
                    spy = None
                    if args.profile and round_ == 0 and name == "stepguard":
                        spy = subprocess.Popen(
                            [
                                str(Path(sys.executable).with_name("py-spy")), "record",
                                "--pid", str(server.pgid), "--duration",
                                str(max(1, int(args.duration) - 1)), "--format", "raw",
                                "--rate", "200", "--nonblocking", "-o", str(args.profile),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )  # fmt: skip
                    cpu_before = process_group_cpu_s(auth_pids[name])
                    nginx_before = process_group_cpu_s(nginx_pid)
                    result = load.run_wrk(
                        url=url, method="GET", body=None, headers={"Cookie": cookie},
                        duration_s=args.duration, connections=args.connections,
                    )  # fmt: skip
                    auth_cpu = process_group_cpu_s(auth_pids[name]) - cpu_before
                    nginx_cpu = process_group_cpu_s(nginx_pid) - nginx_before
                    if spy is not None:
                        spy.wait(timeout=60)
                    if result.failures:
                        raise RuntimeError(f"{name}: {result.failures} failed requests")
                    row = result.as_json()
                    row["auth_cpu_us_per_req"] = 1e6 * auth_cpu / max(1, result.requests)
                    row["nginx_cpu_us_per_req"] = 1e6 * nginx_cpu / max(1, result.requests)
                    results[name].append(row)
                    print(
                        f"round {round_ + 1} {name:9} {result.rps:9.0f} req/s  "
                        f"p50 {result.latency_us['p50']} us  p99 {result.latency_us['p99']} us  "
                        f"auth CPU {row['auth_cpu_us_per_req']:.0f} us/req  "
                        f"nginx CPU {row['nginx_cpu_us_per_req']:.0f} us/req",
                        flush=True,
                    )

    def median(name: str, key: str) -> float:
        return float(
            statistics.median(
                float(r[key] if key in r else r["latency_us"][key]) for r in results[name]
            )
        )

    summary = {
        name: {
            "rps": median(name, "rps"),
            "p50_us": median(name, "p50"),
            "p99_us": median(name, "p99"),
        }
        for name in results
    }
    ratio = summary["stepguard"]["rps"] / summary["stub"]["rps"]
    print()
    print(f"{'':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in summary.items():
        print(
            f"{name:10} {row['rps']:9.0f} {row['p50_us'] / 1000:8.2f} {row['p99_us'] / 1000:8.2f}"
        )
    print(f"ratio stepguard/stub: {ratio:.0%} (target >= 70%)")
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"forward-auth-{stamp}.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "ratio": ratio,
                "rounds": results,
                "settings": {k: str(v) for k, v in vars(args).items()},
                "nproc": os.cpu_count(),
                "loadavg": os.getloadavg(),
                "wrk": load.wrk_version(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
