"""Helpers of the OIDC provider tests: a harness with an ``oidc.authorize`` policy, a signed-in
browser (page link cookie), registered clients, and the authorization code flow step by
step."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from support.harness import Harness

PUBLIC = "http://localhost"
APP = "https://app.example"
REDIRECT = f"{APP}/callback"
LOGOUT_BACK = f"{APP}/bye"

OIDC_POLICY = """
version: 1
rules:
  - id: oidc-blocked
    match: {actions: ["oidc.authorize"]}
    when: "context.client_id == 'blocked'"
    deny: true
  - id: oidc-strict
    match: {actions: ["oidc.authorize"]}
    when: "context.client_id == 'strict'"
    step_up: {acr: aal2, max_age: 300}
  - id: oidc
    match: {actions: ["oidc.authorize"]}
    allow: true
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default:
  deny: true
"""


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Client:
    id: str
    secret: str | None
    redirect_uri: str = REDIRECT

    @property
    def auth(self) -> httpx.BasicAuth | None:
        return httpx.BasicAuth(self.id, self.secret) if self.secret else None


@dataclass
class User:
    session_id: str
    factor_id: str
    secret: bytes


@dataclass
class Flow:
    client: Client
    verifier: str
    challenge: str
    state: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(8))

    def params(self, **extra: str) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": self.client.id,
            "redirect_uri": self.client.redirect_uri,
            "scope": "openid email groups offline_access",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            **extra,
        }


def new_flow(client: Client) -> Flow:
    verifier, challenge = pkce()
    return Flow(client=client, verifier=verifier, challenge=challenge)


async def add_client(api: Harness, client_id: str = "app", **body: Any) -> Client:
    payload: dict[str, Any] = {
        "name": f"App {client_id}",
        "client_id": client_id,
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": [LOGOUT_BACK],
        **body,
    }
    response = await api.client.post("/v1/oidc/clients", json=payload)
    assert response.status_code == 201, response.text
    data = response.json()
    return Client(id=data["client_id"], secret=data["client_secret"])


async def new_user(api: Harness, subject: str = "alice") -> User:
    await api.put_subject(subject, email=f"{subject}@example.com", groups=["staff"])
    factor_id, secret = await api.enroll_totp(subject)
    return User(session_id=await api.open_session(subject), factor_id=factor_id, secret=secret)


def browser(api: Harness) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=api.anon._transport, base_url=PUBLIC)


async def sign_in(api: Harness, b: httpx.AsyncClient, session_id: str) -> None:
    """Give the browser a cookie for this StepGuard session through an account page link."""
    response = await api.client.post(
        f"/v1/sessions/{session_id}/page-links", json={"page": "account"}
    )
    assert response.status_code == 201, response.text
    opened = await b.get(local(response.json()["url"]))
    assert opened.status_code == 303, opened.text


async def step_up_on_page(
    api: Harness, b: httpx.AsyncClient, location: str, user: User
) -> httpx.Response:
    """Follow a redirect to the step-up page, answer with TOTP; returns the page's answer
    (a 303 to the continuation)."""
    assert location.startswith("/challenge/"), location
    page = await b.get(location)
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    back = re.search(r'name="return_to" value="([^"]*)"', page.text)
    assert csrf, page.text
    assert back, page.text
    challenge_id = urlsplit(location).path.rsplit("/", 1)[1]
    response = await b.post(
        f"/challenge/{challenge_id}/verify",
        data={
            "factor_id": user.factor_id,
            "code": api.code(user.secret),
            "return_to": back.group(1).replace("&amp;", "&"),
            "method": "totp",
            "csrf": csrf.group(1),
        },
    )
    assert response.status_code == 303, response.text
    api.clock.advance(30)
    return response


async def redeem(b: httpx.AsyncClient, flow: Flow, code: str, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.client.redirect_uri,
        "code_verifier": flow.verifier,
        **extra,
    }
    if flow.client.secret is None:
        data.setdefault("client_id", flow.client.id)
    return await b.post("/oidc/token", data=data, auth=flow.client.auth or httpx.USE_CLIENT_DEFAULT)


def form_url(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}"
