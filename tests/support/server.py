"""A real ``stepguard serve`` process for tests: fresh database, policy, keys, free port.

:func:`live_server` is a context manager that prepares everything the way an operator would
(``stepguard keys create`` for the API key, environment variables for the settings), starts
the console script in its own process group, waits until every worker process has started
and ``/readyz`` answers, and on exit stops the whole group (SIGTERM, a grace period, then
SIGKILL) so that no process outlives the test. The server's output goes to a file;
:meth:`LiveServer.logs` returns it for failure reports.

On Linux, :meth:`LiveServer.connection_owners` reads ``/proc`` to tell which worker process
serves which client connection, so a race test can check that both workers took part.

TOTP helpers work at the real time (the server's clock): :func:`safe_totp_step` waits out a
step boundary that is less than a few seconds away, so a code computed now is still the
current one when the server checks it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from stepguard.adapters.crypto import SecretBox
from stepguard.core.factors.totp import TotpSpec, code_at_step, totp_step
from support.harness import TEST_POLICY
from support.services import free_port, fresh_postgres_database

__all__ = [
    "LiveServer",
    "ServerStartError",
    "async_safe_totp_step",
    "cli_env",
    "client_port",
    "connection_owners",
    "current_totp_step",
    "database",
    "live_server",
    "new_secret_key",
    "ok",
    "run_cli",
    "safe_totp_step",
    "seconds_until_safe_totp_step",
    "secret_from_otpauth_uri",
    "stepguard_executable",
    "wrong_totp_code",
]

READY_TIMEOUT: Final = 45.0
STOP_TIMEOUT: Final = 15.0
CLI_TIMEOUT: Final = 60.0
# uvicorn prints this once per worker process when its app is up.
_STARTED: Final = "Application startup complete."
_PORT_IN_USE: Final = ("address already in use", "Errno 98")


class ServerStartError(RuntimeError):
    """The server did not become ready; the message carries its output."""


def stepguard_executable() -> Path:
    """The ``stepguard`` console script of the running interpreter's environment."""
    return Path(sys.executable).with_name("stepguard")


def new_secret_key() -> str:
    return SecretBox.generate_key()


def cli_env(workdir: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment for a ``stepguard`` command: this process's environment without
    any ``STEPGUARD_*`` variable, plus ``settings`` (names without the prefix, any case).

    ``STEPGUARD_CONFIG`` points into ``workdir``, where no file exists, so no stray
    ``stepguard.yaml`` of the developer's can change what a test sees.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPGUARD_")}
    env["STEPGUARD_CONFIG"] = str(workdir / "no-stepguard.yaml")
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in (settings or {}).items():
        env[f"STEPGUARD_{name.upper()}"] = value
    return env


def run_cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``stepguard *args`` to completion and capture its output (never raises on exit
    status; callers assert on ``returncode``, ``stdout`` and ``stderr``)."""
    return subprocess.run(
        [str(stepguard_executable()), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def database(backend: str, directory: Path) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file in ``directory``, or a fresh PostgreSQL
    database (dropped afterwards; skips, or fails in CI, when PostgreSQL is absent)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'stepguard.db'}"
        return
    if backend != "postgres":
        raise ValueError(f"unknown backend {backend!r}")
    manager = fresh_postgres_database()
    # Enter and exit on one private loop: ``asyncio.run`` would finalize the half-run
    # generator (and drop the database) as soon as it returned. With a loop factory, the
    # runner leaves the thread's current event loop alone for the tests' own loops.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        url = runner.run(manager.__aenter__())
        try:
            yield url
        finally:
            runner.run(manager.__aexit__(None, None, None))


@dataclass(kw_only=True)
class LiveServer:
    """A running ``stepguard serve``. ``env`` is its environment: pass it to :func:`run_cli`
    (or use :meth:`cli`) to run commands against the same database and keys."""

    base_url: str
    port: int
    api_key: str
    database_url: str
    secret_keys: tuple[str, ...]
    policy_file: Path
    workdir: Path
    env: dict[str, str]
    workers: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgres``."""
        return "sqlite" if self.database_url.startswith("sqlite") else "postgres"

    def cli(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        """Run a ``stepguard`` command with this server's settings (``settings`` override)."""
        env = dict(self.env)
        for name, value in settings.items():
            env[f"STEPGUARD_{name.upper()}"] = value
        return run_cli(*args, env=env, cwd=self.workdir)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "<no server output>"

    def worker_pids(self) -> set[int] | None:
        """The pids of the worker processes: those, other than the parent, that hold the
        listening socket. ``None`` where ``/proc`` cannot tell (not Linux)."""
        owners = _socket_owners(self.pid, self.port, state="0A")
        return None if owners is None else {pid for _, pid in owners} - {self.pid}

    def connection_owners(self) -> dict[int, int] | None:
        """Client port -> pid of the worker serving that connection (Linux only)."""
        return connection_owners(self.pid, self.port)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        _stop_group(self.process)


def _write_policy(workdir: Path, policy: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(policy, encoding="utf-8")
    return policy_file


@contextlib.contextmanager
def live_server(
    workdir: Path,
    *,
    database_url: str,
    policy: str = TEST_POLICY,
    secret_keys: Sequence[str] | None = None,
    workers: int = 2,
    settings: Mapping[str, str] | None = None,
    api_key: str | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[LiveServer]:
    """Start ``stepguard serve`` on ``database_url`` and stop it (and its workers) on exit.

    ``secret_keys`` defaults to one new key; ``settings`` adds or overrides settings (names
    without the ``STEPGUARD_`` prefix). Unless ``api_key`` is given, ``stepguard keys create``
    makes one (which also migrates the database).
    """
    policy_file = _write_policy(workdir, policy)
    keys = tuple(secret_keys) if secret_keys is not None else (new_secret_key(),)
    base_settings = {
        "database_url": database_url,
        "policy_file": str(policy_file),
        "secret_keys": json.dumps(list(keys)),
        "workers": str(workers),
        "host": "127.0.0.1",
        "log_level": "info",
        "api_key_cache_seconds": "0",
        **(settings or {}),
    }
    if api_key is None:
        created = run_cli(
            "keys", "create", "--name", "tests", env=cli_env(workdir, base_settings), cwd=workdir
        )
        if created.returncode != 0 or not created.stdout.strip():
            raise ServerStartError(
                f"`stepguard keys create` failed (exit {created.returncode}):\n"
                f"{created.stdout}\n{created.stderr}"
            )
        api_key = created.stdout.strip().splitlines()[-1]

    server: LiveServer | None = None
    attempts = 3
    for attempt in range(1, attempts + 1):
        port = free_port()
        env = cli_env(workdir, {**base_settings, "port": str(port)})
        log_path = workdir / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(stepguard_executable()), "serve"],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        candidate = LiveServer(
            base_url=f"http://127.0.0.1:{port}",
            port=port,
            api_key=api_key,
            database_url=database_url,
            secret_keys=keys,
            policy_file=policy_file,
            workdir=workdir,
            env=env,
            workers=workers,
            process=process,
            log_path=log_path,
        )
        try:
            _wait_until_ready(candidate, timeout=ready_timeout)
        except ServerStartError:
            candidate.stop()
            output = candidate.logs()
            if attempt < attempts and any(marker in output for marker in _PORT_IN_USE):
                continue  # someone took the free port between our check and the bind
            raise
        except BaseException:
            candidate.stop()
            raise
        server = candidate
        break
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


def _wait_until_ready(server: LiveServer, *, timeout: float) -> None:
    """Wait until ``/readyz`` answers 200 and every worker reported its startup."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"`stepguard serve` exited with {code} before it was ready:\n{server.logs()}"
                )
            try:
                response = client.get("/readyz")
            except httpx.HTTPError as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                started = server.logs().count(_STARTED)
                if response.status_code == 200 and started >= server.workers:
                    return
                last_error = f"/readyz {response.status_code}, {started} workers started"
            time.sleep(0.1)
    raise ServerStartError(
        f"`stepguard serve` was not ready after {timeout:.0f} s ({last_error}):\n{server.logs()}"
    )


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, wait, then SIGKILL whatever is left."""
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
    # Workers normally exit with their parent; make sure none is left running.
    deadline = time.monotonic() + STOP_TIMEOUT
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count)."""
    if Path("/proc").is_dir():
        return any(state != "Z" for _, state in _group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process in group ``pgid``, from ``/proc`` (Linux only)."""
    members: list[tuple[int, str]] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0]))
    return members


def _sockets(port: int, state: str) -> dict[str, int]:
    """TCP sockets with local port ``port`` in ``state`` (01 established, 0A listening):
    inode -> remote port, from ``/proc/net/tcp`` and ``tcp6``."""
    sockets: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            columns = line.split()
            local, remote, socket_state, inode = columns[1], columns[2], columns[3], columns[9]
            if socket_state == state and int(local.rsplit(":", 1)[1], 16) == port:
                sockets[inode] = int(remote.rsplit(":", 1)[1], 16)
    return sockets


def _socket_owners(pgid: int, port: int, *, state: str) -> list[tuple[str, int]] | None:
    """(inode, pid) for each socket of ``port`` in ``state`` that a process of ``pgid`` holds
    (a listening socket is shared by the parent and its workers)."""
    if not Path("/proc/net/tcp").exists():
        return None
    inodes = _sockets(port, state)
    owners: list[tuple[str, int]] = []
    for pid, _ in _group_members(pgid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                owners.append((target[8:-1], pid))
    return owners


def connection_owners(pgid: int, port: int) -> dict[int, int] | None:
    """Which process of the server's group ``pgid`` serves each open client connection to
    ``port``: client (local) port -> pid. ``None`` where ``/proc`` cannot tell (not Linux)."""
    owners = _socket_owners(pgid, port, state="01")
    if owners is None:
        return None
    remote_ports = _sockets(port, "01")
    return {remote_ports[inode]: pid for inode, pid in owners if inode in remote_ports}


def client_port(response: httpx.Response) -> int:
    """The local port of the connection ``response`` came over."""
    address = response.extensions["network_stream"].get_extra_info("client_addr")
    return int(address[1])


# --- TOTP at the real time ----------------------------------------------------------------


def seconds_until_safe_totp_step(spec: TotpSpec | None = None, *, margin: float = 3.0) -> float:
    """How long to wait so that at least ``margin`` seconds remain in the current time step
    (0 when they already do): a code computed now is then still current when the server
    checks it."""
    period = (spec or TotpSpec()).period
    remaining = period - (time.time() % period)
    return 0.0 if remaining >= margin else remaining + 0.05


def current_totp_step(spec: TotpSpec | None = None) -> int:
    return totp_step(spec or TotpSpec(), datetime.now(UTC))


def safe_totp_step(spec: TotpSpec | None = None, *, margin: float = 3.0) -> int:
    """The current time step, after sleeping past a step boundary that is near."""
    time.sleep(seconds_until_safe_totp_step(spec, margin=margin))
    return current_totp_step(spec)


async def async_safe_totp_step(spec: TotpSpec | None = None, *, margin: float = 3.0) -> int:
    """:func:`safe_totp_step` for async tests (sleeps without blocking the loop)."""
    await asyncio.sleep(seconds_until_safe_totp_step(spec, margin=margin))
    return current_totp_step(spec)


def wrong_totp_code(secret: bytes, step: int, spec: TotpSpec | None = None) -> str:
    """A well-formed code that matches no step near ``step`` (none the server could accept
    within its window, even after a step boundary)."""
    spec = spec or TotpSpec()
    near = {code_at_step(secret, spec, s) for s in range(step - 2, step + 3)}
    return next(c for c in (f"{n:0{spec.digits}d}" for n in range(len(near) + 1)) if c not in near)


def secret_from_otpauth_uri(uri: str) -> bytes:
    """The TOTP seed of an ``otpauth://`` enrollment URI."""
    encoded = httpx.URL(uri).params["secret"]
    return base64.b32decode(encoded + "=" * (-len(encoded) % 8))


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that has ``status`` (``None`` when it is empty)."""
    assert response.status_code == status, response.text
    return response.json() if response.content else None
