"""``StepUpAuth``: the caller's side of RFC 9470 against a real bearer API (a FastAPI app with
a ``TokenGuard``, served by uvicorn over TCP for the sync client, over ASGI for the async one),
with tokens from a real issuer."""

# No `from __future__ import annotations`: FastAPI reads these local Annotated[...]
# dependencies when the route is defined.
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request

from stepguard.sdk import InsufficientUserAuthenticationError, StepUpAuth, StepUpChallenge
from stepguard.sdk.rfc9068 import AsyncAccessTokenVerifier, VerifiedAccessToken
from stepguard.sdk.starlette import TokenGuard
from support.issuer import AUDIENCE, LocalIssuer, local_issuer
from support.services import free_port


@dataclass
class Api:
    app: FastAPI
    hits: list[str]


def build_api(issuer: LocalIssuer) -> Api:
    tokens = TokenGuard(AsyncAccessTokenVerifier(issuer.url, AUDIENCE))
    app = FastAPI()
    tokens.install(app)
    hits: list[str] = []

    @app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        hits.append(request.headers.get("authorization", "")[-8:])
        return await call_next(request)

    @app.post("/transfer")
    async def transfer(
        request: Request,
        token: Annotated[VerifiedAccessToken, Depends(tokens.require(acr="aal2", max_age=300))],
    ) -> dict[str, object]:
        return {"acr": token.acr, "body": (await request.json())}

    return Api(app, hits)


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with local_issuer() as running:
        running.add_key("k1")
        yield running


@pytest.fixture
def live_api(issuer: LocalIssuer) -> Iterator[tuple[str, Api]]:
    api = build_api(issuer)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(api.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", api
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_sync_client_steps_up_and_retries_once(
    live_api: tuple[str, Api], issuer: LocalIssuer
) -> None:
    url, api = live_api
    asked: list[StepUpChallenge] = []
    strong = issuer.token(acr="aal2")

    def stronger(challenge: StepUpChallenge) -> str:
        asked.append(challenge)
        return strong

    auth = StepUpAuth(issuer.token(acr="aal1"), on_step_up=stronger)
    with httpx.Client(base_url=url, auth=auth) as http:
        response = http.post("/transfer", json={"amount": 5000})
        assert response.status_code == 200, response.text
        assert response.json() == {"acr": "aal2", "body": {"amount": 5000}}  # body re-sent
        assert [c.acr_values for c in asked] == [("aal2",)]
        assert asked[0].max_age == 300
        assert len(api.hits) == 2
        # The stronger token is kept: the next request needs no step-up.
        assert http.post("/transfer", json={"amount": 1}).status_code == 200
        assert len(api.hits) == 3
        assert len(asked) == 1


def test_sync_client_surfaces_the_requirement_when_no_token_comes(
    live_api: tuple[str, Api], issuer: LocalIssuer
) -> None:
    url, api = live_api
    auth = StepUpAuth(issuer.token(acr="aal1"), on_step_up=lambda challenge: None)
    with (
        httpx.Client(base_url=url, auth=auth) as http,
        pytest.raises(InsufficientUserAuthenticationError) as raised,
    ):
        http.post("/transfer", json={})
    assert raised.value.challenge.acr_values == ("aal2",)
    assert len(api.hits) == 1


def test_a_still_weak_token_is_retried_only_once(
    live_api: tuple[str, Api], issuer: LocalIssuer
) -> None:
    url, api = live_api
    calls: list[StepUpChallenge] = []

    def weak(challenge: StepUpChallenge) -> str:
        calls.append(challenge)
        return issuer.token(acr="aal1")

    with httpx.Client(
        base_url=url, auth=StepUpAuth(issuer.token(acr="aal1"), on_step_up=weak)
    ) as http:
        with pytest.raises(InsufficientUserAuthenticationError):
            http.post("/transfer", json={})
        assert len(api.hits) == 2
        assert len(calls) == 1
        # Other failures are not step-ups: an invalid token comes back as the 401 it is.
        plain = StepUpAuth("not-a-token", on_step_up=weak)
        response = http.post("/transfer", json={}, auth=plain)
        assert response.status_code == 401
        assert len(calls) == 1


@pytest.fixture
async def asgi_api(issuer: LocalIssuer) -> AsyncIterator[tuple[httpx.AsyncClient, Api]]:
    api = build_api(issuer)
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http, api


async def test_async_client_with_an_async_callback(
    asgi_api: tuple[httpx.AsyncClient, Api], issuer: LocalIssuer
) -> None:
    http, api = asgi_api

    async def stronger(challenge: StepUpChallenge) -> str:
        assert challenge.acr_values == ("aal2",)
        return issuer.token(acr="phr")

    auth = StepUpAuth(issuer.token(acr="aal1"), on_step_up=stronger)
    response = await http.post("/transfer", json={"amount": 7}, auth=auth)
    assert response.status_code == 200
    assert response.json()["acr"] == "phr"
    assert len(api.hits) == 2
    nothing = StepUpAuth(issuer.token(acr="aal1"))
    with pytest.raises(InsufficientUserAuthenticationError):
        await http.post("/transfer", json={}, auth=nothing)
