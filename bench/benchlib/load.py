"""Drive a load generator against a running server: ``wrk`` when present, else the Python one.

Both run in their own process. ``wrk`` is given a Lua script for the method, body and headers;
the Python generator (:mod:`benchlib.loadgen`) a JSON spec file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

BENCH_DIR: Final = Path(__file__).resolve().parent.parent

Generator = Literal["wrk", "python"]

WRK_TIMEOUT_S: Final = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    generator: str
    requests: int
    ok: int  # 2xx responses
    failures: int  # non-2xx responses plus socket errors
    elapsed_s: float
    rps: float  # all completed requests per second
    ok_rps: float  # 2xx responses per second
    latency_us: dict[str, float | None] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "requests": self.requests,
            "ok": self.ok,
            "failures": self.failures,
            "elapsed_s": round(self.elapsed_s, 3),
            "rps": round(self.rps, 1),
            "ok_rps": round(self.ok_rps, 1),
            "latency_us": self.latency_us,
            "statuses": self.statuses,
            "errors": self.errors,
        }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_version() -> str | None:
    path = shutil.which("wrk")
    if path is None:
        return None
    out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "wrk"


def choose(requested: str) -> Generator:
    if requested == "python":
        return "python"
    if requested == "wrk":
        if not wrk_available():
            raise SystemExit("--loadgen wrk: wrk is not installed")
        return "wrk"
    return "wrk" if wrk_available() else "python"


def _lua_string(value: str) -> str:
    """A double-quoted Lua string literal (the values here are ASCII)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _lua_script(method: str, body: bytes | None, headers: dict[str, str]) -> str:
    lines = [f"wrk.method = {_lua_string(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body.decode())}")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


_UNITS: Final = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def _duration_us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"cannot read wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if done is None or rps is None:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    requests = int(done.group(1))
    elapsed = _duration_us(done.group(2) + done.group(3)) / 1_000_000
    non_2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non_2xx = int(non_2xx_match.group(1)) if non_2xx_match else 0
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = sum(int(g) for g in socket.groups()) if socket else 0
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups()), strict=True))
        if socket
        else {}
    )
    latency: dict[str, float | None] = {}
    for pct in ("50", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)\s*$", output, re.MULTILINE)
        latency[f"p{pct}"] = round(_duration_us(found.group(1)), 1) if found else None
    ok = requests - non_2xx
    return LoadResult(
        generator="wrk",
        requests=requests,
        ok=ok,
        failures=non_2xx + errors,
        elapsed_s=elapsed,
        rps=float(rps.group(1)),
        ok_rps=ok / elapsed if elapsed else 0.0,
        latency_us=latency,
        statuses={"non-2xx": non_2xx, **{f"socket {k}": v for k, v in socket_errors.items()}},
        errors=errors,
    )


def run_wrk(
    *,
    url: str,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    duration_s: float,
    connections: int,
    threads: int = 2,
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua_script(method, body, headers))
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(threads, connections)}",  # wrk needs connections >= threads
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                f"--timeout={WRK_TIMEOUT_S}s",  # a slow answer is latency, not a lost request
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=duration_s + WRK_TIMEOUT_S + 60,
        )
    finally:
        os.unlink(script.name)
    if out.returncode != 0 or out.stderr.strip():  # wrk exits 0 on a broken script
        raise RuntimeError(f"wrk failed: {out.stderr.strip()}")
    return parse_wrk(out.stdout)


def run_python(spec: dict[str, Any], *, timeout_s: float) -> LoadResult:
    """Run :mod:`benchlib.loadgen` in a new process with ``spec``."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(spec, file)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchlib.loadgen", file.name],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
            env=env,
        )
    finally:
        os.unlink(file.name)
    if out.returncode != 0:
        raise RuntimeError(f"the Python load generator failed: {out.stderr.strip()[-2000:]}")
    data: dict[str, Any] = json.loads(out.stdout)
    statuses: dict[str, int] = data["statuses"]
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    requests: int = data["requests"]
    elapsed: float = data["elapsed_s"]
    return LoadResult(
        generator=f"python-{data['loop']}",
        requests=requests,
        ok=ok,
        failures=requests - ok + data["errors"],
        elapsed_s=elapsed,
        rps=data["rps"],
        ok_rps=ok / elapsed if elapsed else 0.0,
        latency_us={k: None if v is None else round(v, 1) for k, v in data["latency_us"].items()},
        statuses=statuses,
        errors=data["errors"],
    )


def run_repeat(
    generator: Generator,
    *,
    host: str,
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    duration_s: float,
    connections: int,
) -> LoadResult:
    """One request, repeated on every connection for ``duration_s``."""
    if generator == "wrk":
        raw = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        return run_wrk(
            url=f"http://{host}:{port}{path}",
            method=method,
            body=raw,
            headers=headers,
            duration_s=duration_s,
            connections=connections,
        )
    spec = {
        "mode": "repeat",
        "host": host,
        "port": port,
        "headers": headers,
        "connections": connections,
        "duration": duration_s,
        "request": {"method": method, "path": path, "body": body},
    }
    return run_python(spec, timeout_s=duration_s + 60)


def run_list(
    *,
    host: str,
    port: int,
    requests: list[dict[str, Any]],
    headers: dict[str, str],
    connections: int,
    timeout_s: float,
) -> LoadResult:
    """Each request once (Python generator only: every request differs)."""
    spec = {
        "mode": "list",
        "host": host,
        "port": port,
        "headers": headers,
        "connections": connections,
        "requests": requests,
    }
    return run_python(spec, timeout_s=timeout_s)
