"""The OpenID Connect provider against a live ``stepguard serve`` (2 workers), on SQLite and
PostgreSQL: authlib's OAuth 2.0 client as an independent relying party asking for ``phr``
(stepped up with a passkey: a software authenticator with user verification), the code
redemption race across worker processes, and the ``stepguard oidc`` commands."""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from support.authenticator import SoftAuthenticator
from support.oidc import REDIRECT, local, new_flow, query
from support.server import LiveServer, database, live_server

with warnings.catch_warnings():
    # authlib 1.9 warns at import that it prefers httpx2; plain httpx is what we ship.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]

pytestmark = pytest.mark.slow

POLICY = """
version: 1
rules:
  - id: oidc
    match: {actions: ["oidc.authorize"]}
    allow: true
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default:
  deny: true
"""


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp(f"oidc-live-{request.param}")
    with (
        database(str(request.param), workdir) as url,
        live_server(workdir, database_url=url, workers=2, policy=POLICY) as running,
    ):
        yield running


def public(server: LiveServer) -> str:
    return f"http://localhost:{server.port}"


def api(server: LiveServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}
    )


async def register_client(server: LiveServer, **body: Any) -> dict[str, Any]:
    async with api(server) as client:
        response = await client.post(
            "/v1/oidc/clients",
            json={"name": "RP", "redirect_uris": [REDIRECT], **body},
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data


async def user_with_passkey(server: LiveServer) -> tuple[str, str, SoftAuthenticator]:
    """A subject with a UV passkey (its first factor), a fresh password session, and the
    authenticator."""
    subject = f"u{secrets.token_hex(6)}"
    key = SoftAuthenticator()
    origin = public(server)
    async with api(server) as client:
        put = await client.put(f"/v1/subjects/{subject}", json={"email": f"{subject}@ex.com"})
        assert put.status_code == 200, put.text
        begun = await client.post(f"/v1/subjects/{subject}/factors", json={"type": "webauthn"})
        assert begun.status_code == 201, begun.text
        factor_id = begun.json()["factor"]["id"]
        credential = key.create(begun.json()["webauthn_options"], origin=origin)
        confirmed = await client.post(
            f"/v1/subjects/{subject}/factors/{factor_id}/confirm", json={"credential": credential}
        )
        assert confirmed.status_code == 200, confirmed.text
        session = await client.post("/v1/sessions", json={"subject_id": subject, "amr": ["pwd"]})
        assert session.status_code == 201, session.text
        return subject, session.json()["session_id"], key


async def signed_in_browser(server: LiveServer, session_id: str) -> httpx.AsyncClient:
    b = httpx.AsyncClient(base_url=public(server))
    async with api(server) as client:
        link = await client.post(f"/v1/sessions/{session_id}/page-links", json={"page": "account"})
        assert link.status_code == 201, link.text
    opened = await b.get(local(link.json()["url"]))
    assert opened.status_code == 303, opened.text
    return b


async def pass_step_up(server: LiveServer, challenge_id: str, key: SoftAuthenticator) -> None:
    """The user answers the challenge with the passkey (through the API the step-up page
    uses underneath)."""
    async with api(server) as client:
        options = await client.post(f"/v1/challenges/{challenge_id}/webauthn", json={})
        assert options.status_code == 200, options.text
        assertion = key.get(options.json()["options"], origin=public(server))
        verified = await client.post(
            f"/v1/challenges/{challenge_id}/verifications", json={"credential": assertion}
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["session"]["acr"] == "phr"


async def test_authlib_client_gets_phr_after_a_passkey_step_up(server: LiveServer) -> None:
    registered = await register_client(server)
    subject, session_id, key = await user_with_passkey(server)
    issuer = public(server)
    async with httpx.AsyncClient(base_url=server.base_url) as plain:
        discovery = (await plain.get("/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == issuer
    rp = AsyncOAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        scope="openid email",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(12)
    url, state = rp.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce, acr_values="phr"
    )
    b = await signed_in_browser(server, session_id)
    async with aclosing(b), rp:
        response = await b.get(local(url))
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith("/challenge/"), location
        challenge_id = location.split("?")[0].rsplit("/", 1)[1]
        assert query(location)["return_to"].startswith("/oidc/authorize/continue?req=")
        await pass_step_up(server, challenge_id, key)
        back = await b.get(query(location)["return_to"])
        assert back.status_code == 303, back.text
        callback = back.headers["location"]
        assert callback.startswith(REDIRECT)
        token = await rp.fetch_token(
            discovery["token_endpoint"].replace(issuer, server.base_url),
            authorization_response=callback,
            code_verifier=verifier,
            state=state,
        )
    async with httpx.AsyncClient(base_url=server.base_url) as plain:
        jwks = KeySet.import_key_set((await plain.get("/oidc/jwks")).json())
    id_token = jwt.decode(token["id_token"], jwks, algorithms=["ES256"])
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": registered["client_id"]},
        nonce={"essential": True, "value": nonce},
        acr={"essential": True, "value": "phr"},
    )
    registry.validate(id_token.claims)
    claims = id_token.claims
    assert claims["sub"] == subject
    assert {"pwd", "swk", "user", "mfa"} <= set(claims["amr"])
    assert isinstance(claims["auth_time"], int)
    assert claims["auth_time"] <= claims["iat"]
    access = jwt.decode(token["access_token"], jwks, algorithms=["ES256"])
    assert access.header["typ"] == "at+jwt"
    assert access.claims["acr"] == "phr"


async def test_concurrent_redemptions_across_workers_have_one_winner(server: LiveServer) -> None:
    registered = await register_client(server)
    _, session_id, _ = await user_with_passkey(server)
    client = type("C", (), {})()
    client.id, client.secret, client.redirect_uri = (
        registered["client_id"],
        registered["client_secret"],
        REDIRECT,
    )
    flow = new_flow(client)
    b = await signed_in_browser(server, session_id)
    async with aclosing(b):
        response = await b.get(
            "/oidc/authorize?"
            + "&".join(f"{k}={quote(v, safe='')}" for k, v in flow.params(scope="openid").items())
        )
        code = query(response.headers["location"])["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": flow.verifier,
    }
    auth = httpx.BasicAuth(registered["client_id"], registered["client_secret"])
    clients = [httpx.AsyncClient(base_url=server.base_url) for _ in range(10)]
    try:
        results = await asyncio.gather(
            *(c.post("/oidc/token", data=form, auth=auth) for c in clients)
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.status_code for r in results) == [200] + [400] * 9


def test_cli_registers_lists_and_removes_clients_and_rotates_keys(server: LiveServer) -> None:
    if server.backend != "sqlite":
        pytest.skip("the CLI is backend-independent; once is enough")
    added = server.cli(
        "oidc",
        "clients",
        "add",
        "--name",
        "CLI app",
        "--client-id",
        "cli-app",
        "--redirect-uri",
        REDIRECT,
    )
    assert added.returncode == 0, added.stderr
    assert "client_id:     cli-app" in added.stdout
    assert "client_secret: ocs_" in added.stdout
    public_client = server.cli(
        "oidc", "clients", "add", "--name", "SPA", "--public", "--redirect-uri", REDIRECT
    )
    assert "client_secret" not in public_client.stdout
    bad = server.cli("oidc", "clients", "add", "--name", "x", "--redirect-uri", "http://e.x/cb")
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
    listed = server.cli("oidc", "clients", "list")
    assert "cli-app\tCLI app\tconfidential" in listed.stdout
    assert "ocs_" not in listed.stdout
    assert server.cli("oidc", "clients", "remove", "cli-app").returncode == 0
    assert server.cli("oidc", "clients", "remove", "cli-app").returncode != 0
    before = httpx.get(f"{server.base_url}/oidc/jwks").json()["keys"]
    rotated = server.cli("oidc", "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    kid = rotated.stdout.split()[1]
    after = httpx.get(f"{server.base_url}/oidc/jwks").json()["keys"]
    assert kid in {k["kid"] for k in after}
    assert {k["kid"] for k in before} <= {k["kid"] for k in after}
