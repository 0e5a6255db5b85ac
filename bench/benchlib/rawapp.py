"""A raw ASGI app answering 200 with a small JSON body: the machine's speed reference.

``NOTES.md`` records ~48k req/s for this kind of app under uvicorn (uvloop, httptools) with
one worker and ``wrk -t2 -c64`` on a quiet machine of this kind; the bench measures it again
so that its other figures can be read against how busy the machine was.
"""

from __future__ import annotations

from typing import Any

_BODY = b'{"status":"ok"}'
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
}
_END = {"type": "http.response.body", "body": _BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_END)
