"""Start the real server (``stepguard serve``) on a fresh database, and drive its API.

Everything goes through the public surface: the CLI creates the API key, uvicorn serves the
app that ``stepguard serve`` builds, and subjects, sessions, factors and challenges are made
with HTTP requests, as an application would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx

from stepguard.adapters.crypto import SecretBox

STEPGUARD: Final = Path(sys.executable).with_name("stepguard")
READY_TIMEOUT_S: Final = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _admin(admin_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(backend: str, *, workdir: Path, postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database, removed afterwards.

    SQLite: a file in ``workdir``. PostgreSQL: a new database created through
    ``postgres_url`` (a plain ``postgresql://user@host:port/db`` URL of an existing database
    to connect to) and dropped on exit, whatever happened.
    """
    if backend == "sqlite":
        workdir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite+aiosqlite:///{workdir / 'stepguard.db'}"
        return
    name = f"stepguard_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{urlsplit(postgres_url).netloc}/{name}"
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def postgres_version(admin_url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        version: str = await conn.fetchval("SHOW server_version")
        return version
    finally:
        await conn.close()


def process_group_cpu_s(pgid: int) -> float:
    """User plus system CPU seconds of the live processes in process group ``pgid``.

    The server runs in its own group (uvicorn's supervisor and its workers), so this is the
    server's CPU and nothing else's: a figure that a noisy, shared machine disturbs less
    than requests per second.
    """
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[0] is the state, [2] the process group
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    base_url: str
    host: str
    port: int
    api_key: str
    workers: int
    database_url: str
    log: Path
    pgid: int

    def cpu_s(self) -> float:
        return process_group_cpu_s(self.pgid)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _environment(workdir: Path, database_url: str, policy_file: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STEPGUARD_DATABASE_URL=database_url,
        STEPGUARD_POLICY_FILE=str(policy_file),
        STEPGUARD_SECRET_KEYS=json.dumps([SecretBox.generate_key()]),
        STEPGUARD_LOG_LEVEL="warning",
        STEPGUARD_CONFIG=str(workdir / "no-such-config.yaml"),
    )
    return env


@contextlib.contextmanager
def running_server(
    *, workdir: Path, database_url: str, policy_text: str, workers: int
) -> Iterator[Server]:
    """``stepguard keys create`` then ``stepguard serve`` on a free port; stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(policy_text, encoding="utf-8")
    env = _environment(workdir, database_url, policy_file)
    created = subprocess.run(
        [str(STEPGUARD), "keys", "create", "--name", "bench"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if created.returncode != 0:
        raise RuntimeError(f"stepguard keys create failed: {created.stderr.strip()}")
    api_key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = workdir / f"server-{workers}w.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(STEPGUARD),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-migrate",
            ],
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop exactly what we started
        )
        try:
            server = Server(
                base_url=f"http://127.0.0.1:{port}",
                host="127.0.0.1",
                port=port,
                api_key=api_key,
                workers=workers,
                database_url=database_url,
                log=log,
                pgid=process.pid,
            )
            _wait_ready(server, process)
            yield server
        finally:
            _stop(process)


def _wait_ready(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    ok = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early; see {server.log}")
        try:
            # A fresh connection each time, so that with several workers each gets probed.
            if httpx.get(f"{server.base_url}/healthz", timeout=1.0).status_code == 200:
                ok += 1
                if ok >= 4 * server.workers:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not become ready; see {server.log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@contextlib.contextmanager
def running_raw_app(workdir: Path) -> Iterator[Server]:
    """uvicorn serving :mod:`benchlib.rawapp` (one worker): the trivial-app reference."""
    bench_dir = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bench_dir), env.get("PYTHONPATH")]))
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "rawapp.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchlib.rawapp:app",
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


# --- API helpers ------------------------------------------------------------------------


class ApiError(RuntimeError):
    pass


def _check(response: httpx.Response, expected: int) -> dict[str, Any]:
    if response.status_code != expected:
        raise ApiError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    if response.status_code == 204:
        return {}
    data: dict[str, Any] = response.json()
    return data


async def create_subject_session(
    client: httpx.AsyncClient, subject_id: str, *, groups: list[str] | None = None
) -> str:
    _check(await client.put(f"/v1/subjects/{subject_id}", json={"groups": groups or []}), 200)
    created = _check(
        await client.post("/v1/sessions", json={"subject_id": subject_id, "amr": ["pwd"]}), 201
    )
    session_id: str = created["session_id"]
    return session_id


async def decide(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    return _check(await client.post("/v1/decisions", json=body), 200)


def _secret_from_uri(uri: str) -> bytes:
    encoded = parse_qs(urlsplit(uri).query)["secret"][0]
    return base64.b32decode(encoded + "=" * (-len(encoded) % 8))


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedChallenge:
    """A subject with one confirmed TOTP factor and one pending challenge for it."""

    subject_id: str
    factor_id: str
    secret: bytes
    challenge_id: str
    floor_step: int  # the step its confirmation used: the next code must be later


async def prepare_totp_challenge(
    client: httpx.AsyncClient, subject_id: str, *, step_up_action: str
) -> PreparedChallenge:
    """Subject, session, TOTP enrollment and confirmation, then a step-up decision."""
    from stepguard.core.factors.totp import TotpSpec, code_at_step, totp_step

    session_id = await create_subject_session(client, subject_id)
    enrolled = _check(
        await client.post(f"/v1/subjects/{subject_id}/factors", json={"type": "totp"}), 201
    )
    factor_id: str = enrolled["factor"]["id"]
    secret = _secret_from_uri(enrolled["otpauth_uri"])
    spec = TotpSpec()
    step = totp_step(spec, datetime.now(UTC))
    _check(
        await client.post(
            f"/v1/subjects/{subject_id}/factors/{factor_id}/confirm",
            json={"code": code_at_step(secret, spec, step)},
        ),
        200,
    )
    decision = await decide(client, {"session_id": session_id, "action": step_up_action})
    if decision["decision"] != "step_up" or decision.get("challenge") is None:
        raise ApiError(f"expected a step-up with a challenge, got {decision}")
    return PreparedChallenge(
        subject_id=subject_id,
        factor_id=factor_id,
        secret=secret,
        challenge_id=decision["challenge"]["id"],
        floor_step=step,
    )


async def gather_limited(coroutines: list[Any], *, limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines))
