"""An HTTP/1.1 keep-alive load generator in pure Python, for machines without ``wrk``.

Run as its own process (``python -m benchlib.loadgen SPEC.json``) so that it never shares a
GIL with the server. Standard library only (uvloop when importable). It opens ``connections``
keep-alive connections and either

- repeats one request on every connection for ``duration`` seconds (``mode: "repeat"``), or
- sends each request of a list exactly once, connections taking the next unsent one
  (``mode: "list"``). A request with a ``totp`` entry (``secret`` in base32, ``floor``, the
  factor's replay floor) gets ``body["code"]`` filled in at the moment it is sent: the code
  an authenticator shows then, or the next one while the current step is not above the
  floor. So codes are fresh however long the run takes.

Responses must carry ``Content-Length`` (uvicorn's do). The result, printed as one JSON
object on stdout: requests completed, the count per status code, errors, elapsed seconds,
requests per second and latency percentiles in microseconds.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, Final, cast

_HEADER_END: Final = b"\r\n\r\n"
_LENGTH: Final = b"\r\ncontent-length:"


def totp_code(secret: bytes, step: int, *, digits: int = 6) -> str:
    """RFC 6238 with SHA-1 (the server's default spec), computed independently of it."""
    mac = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def build_request(
    *, host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str]
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, read one response, ask ``next_request`` for more."""

    def __init__(
        self,
        next_request: Callable[[], bytes | None],
        record: Callable[[int, int], None],
        done: asyncio.Future[None],
    ) -> None:
        self._next = next_request
        self._record = record
        self._done = done
        self._buffer = bytearray()
        self._sent_at = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._send()

    def _send(self) -> None:
        request = self._next()
        if request is None:
            self._finish()
            return
        assert self._transport is not None
        self._sent_at = time.perf_counter_ns()
        self._transport.write(request)

    def _finish(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if not self._done.done():
            self._done.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(_HEADER_END)
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(_LENGTH)
        if at < 0:
            self._fail("response without content-length")
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + len(_LENGTH) : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(buffer) < total:
            return
        status = int(head[9:12])
        del buffer[:total]
        self._record(status, time.perf_counter_ns() - self._sent_at)
        if buffer:
            self._fail("unexpected bytes after a response")
            return
        self._send()

    def _fail(self, reason: str) -> None:
        if self._transport is not None:
            self._transport.close()
        if not self._done.done():
            self._done.set_exception(RuntimeError(reason))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(exc or RuntimeError("connection closed by the server"))


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host: str = spec["host"]
    port: int = spec["port"]
    headers: dict[str, str] = spec.get("headers", {})
    connections: int = spec["connections"]
    mode: str = spec["mode"]

    def encode(item: dict[str, Any]) -> bytes:
        body = item.get("body")
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        merged = dict(headers)
        if body is not None:
            merged["Content-Type"] = "application/json"
        return build_request(
            host=host,
            port=port,
            method=item["method"],
            path=item["path"],
            body=raw,
            headers=merged,
        )

    statuses: dict[int, int] = {}
    latencies: list[int] = []

    def record(status: int, nanoseconds: int) -> None:
        statuses[status] = statuses.get(status, 0) + 1
        latencies.append(nanoseconds)

    deadline = 0.0
    if mode == "repeat":
        request = encode(spec["request"])
        duration: float = spec["duration"]

        def next_request() -> bytes | None:
            return request if time.perf_counter() < deadline else None

    elif mode == "list":
        pending: list[dict[str, Any]] = list(reversed(spec["requests"]))

        def next_request() -> bytes | None:
            if not pending:
                return None
            item = pending.pop()
            totp = item.get("totp")
            if totp is not None:
                secret = base64.b32decode(totp["secret"])
                step = max(int(time.time()) // 30, totp["floor"] + 1)
                item = {**item, "body": {**item["body"], "code": totp_code(secret, step)}}
            return encode(item)

    else:
        raise ValueError(f"unknown mode {mode!r}")

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    if mode == "repeat":
        deadline = started + duration
    futures: list[asyncio.Future[None]] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(
            functools.partial(_Connection, next_request, record, done), host, port
        )
        futures.append(done)
    results = await asyncio.gather(*futures, return_exceptions=True)
    elapsed = time.perf_counter() - started
    errors = [str(r) for r in results if isinstance(r, BaseException)]
    latencies.sort()

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000

    count = len(latencies)
    return {
        "requests": count,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": len(errors),
        "error_samples": errors[:5],
        "elapsed_s": elapsed,
        "rps": count / elapsed if elapsed > 0 else 0.0,
        "latency_us": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99)},
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        runner = asyncio.run
        loop_name = "asyncio"
    result = runner(run(spec))
    result["loop"] = loop_name
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
