"""A protected upstream for the forward-auth tests: raw ASGI, answers every request with the
method, path, query and headers it received, as JSON (``GET /__count`` returns how many
requests it has served). Run it with ``uvicorn support.echo_upstream:app``."""

from __future__ import annotations

import json
from typing import Any

_served = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _served
    if scope["type"] != "http":
        return
    if scope["path"] == "/__count":
        body = json.dumps({"served": _served}).encode()
    else:
        _served += 1
        body = json.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]
                ],
            }
        ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"x-upstream", b"echo")],
        }
    )
    await send({"type": "http.response.body", "body": body})
