"""Raw ASGI guards in front of the app: oversized bodies and NUL characters in the URL
(``RequestGuard``), and how fast one client may start flows that store state before anyone
has authenticated (``FlowStartLimit``).

API bodies are small, so the guard reads the whole body first (at most ``max_body_bytes``)
and replays it to the app: no framework code ever sees a partial or oversized body. A NUL in
the path or query is refused because PostgreSQL cannot store it and SQLite can: every backend
must accept exactly the same inputs.
"""

from __future__ import annotations

import time
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepguard.core.risk.velocity import SlidingCounter
from stepguard.service.login import ip_bucket

_TOO_LARGE = orjson.dumps(
    {"error": "payload_too_large", "message": "The request body is too large."}
)
_NUL_IN_URL = orjson.dumps(
    {"error": "invalid_request", "message": "The URL must not contain NUL characters."}
)


_TOO_MANY = orjson.dumps(
    {"error": "rate_limited", "message": "Too many requests. Try again in a minute."}
)


def _flow_started(method: str, path: str) -> str | None:
    """Which unauthenticated flow this request starts, if it starts one. Each stores a row
    (a passkey ceremony, an upstream login state, a parked authorization request) before
    anyone has proven anything."""
    if method == "POST" and path == "/login/passkey/options":
        return "passkey"
    if method == "GET" and path == "/oidc/authorize":
        return "authorize"
    if method == "GET" and path.startswith("/login/upstream/") and path.count("/") == 3:
        return "upstream"  # /login/upstream/{name}, not its /callback
    return None


class FlowStartLimit:
    """At most ``per_minute`` flow starts per client address (IPv6: per /64) and flow, per
    worker process; more get 429. The address is the socket peer: a reverse proxy in front
    makes every user one client, so raise the limit there (docs/login.md). Expired rows are
    purged anyway; this bounds how many one client can create meanwhile."""

    WINDOW: Final = 60.0

    def __init__(self, app: ASGIApp, *, per_minute: int) -> None:
        self.app = app
        self.per_minute = per_minute
        self._starts = SlidingCounter(window=self.WINDOW, max_events=per_minute + 1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            flow = _flow_started(scope["method"], scope["path"])
            if flow is not None:
                client = scope.get("client")
                key = f"{flow}:{ip_bucket(client[0] if client else None)}"
                now = time.monotonic()
                if self._starts.count(key, now) >= self.per_minute:
                    await _refuse(send, 429, _TOO_MANY, retry_after=int(self.WINDOW))
                    return
                self._starts.add(key, now)
        await self.app(scope, receive, send)


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"\x00" in query or b"%00" in query:
            await _refuse(send, 400, _NUL_IN_URL)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await _refuse(send, 413, _TOO_LARGE)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, _TOO_LARGE)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, body: bytes, *, retry_after: int | None = None) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers,
        }
    )
    await send({"type": "http.response.body", "body": body})
