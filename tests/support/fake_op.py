"""A small upstream OpenID Provider that the test controls, for the relying party's negative
cases: discovery, JWKS and a token endpoint over real HTTP on a loopback port.

The token endpoint answers with whatever :attr:`FakeProvider.next_token` says: an ID token
signed with joserfc from claims the test wrote (and a header it may tamper with), an HTTP
error, or a stall longer than the relying party's timeout. Every token request is recorded
(form and Authorization header) so a test can check the PKCE verifier and client auth.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from joserfc import jws
from joserfc.jwk import ECKey, KeySet, RSAKey

from support.services import free_port

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "FakeProvider", "TokenPlan", "fake_provider"]

CLIENT_ID = "stepguard-test"
CLIENT_SECRET = "s3cret-for-tests"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenPlan:
    """What the token endpoint does next."""

    claims: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] | None = None  # default {"alg": "RS256", "kid": <current key>}
    key: RSAKey | ECKey | None = None  # default: the current key
    status: int = 200
    stall_seconds: float = 0.0
    unsigned: bool = False  # alg "none", empty signature
    tamper: bool = False  # flip the signature


class FakeProvider:
    def __init__(self, port: int) -> None:
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.keys: list[RSAKey | ECKey] = []
        self.hits: Counter[str] = Counter()
        self.token_requests: list[tuple[dict[str, list[str]], str | None]] = []
        self.next_token = TokenPlan()
        self.discovery_issuer: str | None = None  # to publish a different issuer
        self.auth_methods = ["client_secret_basic", "client_secret_post"]
        self._lock = threading.Lock()

    def add_key(self, kid: str, *, publish: bool = True) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
        if publish:
            with self._lock:
                self.keys.append(key)
        return key

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return dict(KeySet(list(self.keys)).as_dict(private=False))

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.discovery_issuer or self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": self.auth_methods,
        }

    def base_claims(self, nonce: str, *, now: float, sub: str = "alice") -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "sub": sub,
            "aud": CLIENT_ID,
            "iat": int(now),
            "exp": int(now) + 300,
            "nonce": nonce,
            "auth_time": int(now) - 30,
            "amr": ["pwd", "otp"],
            "acr": "urn:test:mfa",
            "email": f"{sub}@example.test",
            "email_verified": True,
        }

    def sign(self, plan: TokenPlan) -> str:
        key = plan.key or self.keys[-1]
        header = plan.header or {"alg": "RS256", "kid": key.kid}
        payload = json.dumps(plan.claims).encode()
        if plan.unsigned:
            return f"{_b64(json.dumps({'alg': 'none'}).encode())}.{_b64(payload)}."
        token = jws.serialize_compact(header, payload, key)
        if plan.tamper:
            head, body, signature = token.split(".")
            raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
            raw[0] ^= 0x01
            token = f"{head}.{body}.{_b64(bytes(raw))}"
        return token


def _handler(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            provider.hits[path] += 1
            if path == "/.well-known/openid-configuration":
                self._json(200, provider.discovery())
            elif path == "/jwks":
                self._json(200, provider.jwks())
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            provider.hits[path] += 1
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            provider.token_requests.append((form, self.headers.get("Authorization")))
            plan = provider.next_token
            if plan.stall_seconds:
                time.sleep(plan.stall_seconds)
            if plan.status != 200:
                self._json(plan.status, {"error": "server_error"})
                return
            self._json(
                200,
                {"access_token": "at", "token_type": "Bearer", "id_token": provider.sign(plan)},
            )

    return Handler


@contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    port = free_port()
    provider = FakeProvider(port)
    provider.add_key("k1")
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(provider))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
