"""CPU per ``AsyncStepGuardClient.decide`` call, the part of the SDK's overhead that is the
HTTP client (httpx, httpcore, anyio, h11), against a canned local server.

A tiny ASGI app in its own uvicorn process answers every request with a fixed ``allow``
decision, so the figure is the client's own work: building the request, the keep-alive
connection, parsing. It reads this process's CPU time (``time.process_time``) over
``--calls`` calls, ``--rounds`` times, and prints the minimum and median µs per call.

Run from the repository root::

    .venv/bin/python bench/sdk_client_cpu.py

To see what ``sniffio`` saves (httpcore tries ``import sniffio`` on every request; a failed
import is not cached, so each one searches ``sys.path`` again), run it once with and once
without it installed (``pip uninstall sniffio``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import httpx

from benchlib.server import free_port
from stepguard.sdk import AsyncStepGuardClient

CANNED_APP: Final = """
BODY = (b'{"decision":"allow","rule":"view","reasons":[],'
        b'"risk":{"score":0.1,"level":"low","reasons":[]}}')


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
"""


async def measure(url: str, *, calls: int, rounds: int) -> list[float]:
    async with AsyncStepGuardClient(url, "sgk_bench") as client:
        for _ in range(200):  # warm: the connection, imports, caches
            await client.decide("ses_bench", "account.view", ip="203.0.113.7")
        per_call = []
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(calls):
                await client.decide("ses_bench", "account.view", ip="203.0.113.7")
            per_call.append((time.process_time() - start) / calls * 1e6)
        return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU per AsyncStepGuardClient.decide call")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, "canned.py").write_text(CANNED_APP, encoding="utf-8")
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "canned:app", "--port", str(port)),
                *("--log-level", "warning", "--no-access-log"),
            ],
            cwd=workdir,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url, timeout=1.0)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            per_call = asyncio.run(measure(url, calls=args.calls, rounds=args.rounds))
        finally:
            server.terminate()
            server.wait()
    sniffio = importlib.util.find_spec("sniffio") is not None
    print(
        f"AsyncStepGuardClient.decide CPU µs/call (sniffio installed: {sniffio}): "
        f"min {min(per_call):.0f}, median {statistics.median(per_call):.0f} "
        f"({args.rounds} rounds of {args.calls})"
    )


if __name__ == "__main__":
    main()
