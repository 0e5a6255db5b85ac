"""A trivial forward-auth endpoint: raw ASGI, 200 with an empty body and one identity header.

The reference for ``bench/forward_auth.py``: the same nginx ``auth_request`` setup and the same
uvicorn, with nothing behind the check."""

from __future__ import annotations

from typing import Any

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-length", b"0"), (b"remote-user", b"stub")],
}
_END = {"type": "http.response.body", "body": b""}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_END)
