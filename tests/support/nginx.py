"""A real nginx for tests, and small uvicorn upstreams next to it.

:func:`running_nginx` writes a main configuration around an ``http { }`` snippet (the one in
``docs/forward-auth.md``: :func:`docs_nginx_snippet`), runs ``/usr/sbin/nginx`` in the
foreground with its own prefix, pid and temp paths in a tmp dir, waits until its port answers
and stops it on exit. :func:`running_uvicorn` runs an ASGI app under uvicorn in its own
process. Both call ``unavailable`` (skip, or fail in CI) when the binary is missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from support.services import free_port, unavailable

NGINX: Final = Path("/usr/sbin/nginx")
DOCS: Final = Path(__file__).resolve().parents[2] / "docs" / "forward-auth.md"
_BEGIN: Final = "<!-- forward-auth-nginx-begin -->"
_END: Final = "<!-- forward-auth-nginx-end -->"
START_TIMEOUT: Final = 30.0


def docs_nginx_snippet() -> str:
    """The nginx configuration of docs/forward-auth.md, without its code fence."""
    text = DOCS.read_text(encoding="utf-8")
    block = text.split(_BEGIN, 1)[1].split(_END, 1)[0].strip()
    match = re.fullmatch(r"```nginx\n(.*)\n```", block, re.DOTALL)
    assert match is not None, "the nginx block in docs/forward-auth.md is not one code fence"
    return match.group(1)


def adapt_snippet(snippet: str, replacements: Mapping[str, str]) -> str:
    """The snippet with each ``replacements`` key (which must occur) replaced."""
    for old, new in replacements.items():
        assert old in snippet, f"{old!r} is not in the nginx snippet"
        snippet = snippet.replace(old, new)
    return snippet


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running_nginx(workdir: Path, http_snippet: str, *, port: int) -> Iterator[Path]:
    """nginx serving ``http_snippet`` (which listens on ``port``); yields its error log."""
    if not NGINX.exists():
        unavailable("nginx (/usr/sbin/nginx)")
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    temps = "\n".join(
        f"    {name}_temp_path {prefix / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'logs' / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n    access_log off;\n{temps}\n{http_snippet}\n}}\n",
        encoding="utf-8",
    )
    log = prefix / "logs" / "error.log"
    log.touch()
    process = subprocess.Popen(
        [str(NGINX), "-p", str(prefix), "-c", str(conf), "-e", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process, log)
        yield log
    finally:
        _stop(process)


@contextlib.contextmanager
def running_uvicorn(
    workdir: Path, app: str, *, port: int | None = None, extra: tuple[str, ...] = ()
) -> Iterator[int]:
    """``uvicorn app`` (an import path under ``tests/``) on 127.0.0.1; yields its port."""
    port = port or free_port()
    log = workdir / f"uvicorn-{port}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", app,
                "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", "--no-proxy-headers", "--log-level", "warning", *extra,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_port(port, process, log)
        yield port
    finally:
        _stop(process)
