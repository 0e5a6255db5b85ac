"""A small OpenID issuer for tests: discovery and a JWKS over real HTTP, keys the test made.

:class:`LocalIssuer` serves ``/.well-known/openid-configuration`` and ``/jwks`` from a thread
on a free loopback port, counts the requests to each, and signs RFC 9068 access tokens with
joserfc. Rotating keys is :meth:`LocalIssuer.add_key`; only public keys are published.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from support.services import free_port

__all__ = ["AUDIENCE", "LocalIssuer", "local_issuer"]

AUDIENCE = "https://api.example.test"


class LocalIssuer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.keys: list[RSAKey | ECKey] = []
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add_key(self, kid: str, *, kind: str = "RSA") -> RSAKey | ECKey:
        key: RSAKey | ECKey
        if kind == "RSA":
            key = RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
        else:
            key = ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)
        with self._lock:
            self.keys.append(key)
        return key

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return dict(KeySet(list(self.keys)).as_dict(private=False))

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice",
            "client_id": "app",
            "iat": now,
            "exp": now + 300,
            "jti": f"jti-{now}",
            "acr": "aal2",
            "amr": ["pwd", "otp"],
            "auth_time": now - 10,
            "scope": "payments",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        *,
        key: RSAKey | ECKey | None = None,
        header: Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.keys[0]
        alg = "RS256" if isinstance(key, RSAKey) else "ES256"
        head = {"alg": alg, "typ": "at+jwt", "kid": key.kid, **(header or {})}
        return jwt.encode(head, self.claims(**claims), key, algorithms=[head["alg"]])


def _handler(issuer: LocalIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.hits[self.path] += 1
            if self.path == "/.well-known/openid-configuration":
                body: dict[str, Any] | None = issuer.discovery()
            elif self.path == "/jwks":
                body = issuer.jwks()
            else:
                body = None
            payload = json.dumps(body or {"error": "not_found"}).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def local_issuer() -> Iterator[LocalIssuer]:
    port = free_port()
    issuer = LocalIssuer(port)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(issuer))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
