"""The small FastAPI app of ``bench/sdk_overhead.py``, served by uvicorn in its own process.

Routes, all answering the same small JSON:

- ``/plain``: no SDK at all (the reference);
- ``/dep``: ``Depends(guard.require("account.view"))``, one decision from a live StepGuard;
- ``/mw``: the same action through ``StepUpMiddleware`` (its route table matches only ``/mw``);
- ``/token``: ``TokenGuard.require(acr="aal2", max_age=300)``, a JWT access token verified
  locally (RS256), StepGuard not involved.

The app is its own token issuer: it serves ``/.well-known/openid-configuration`` and
``/jwks`` (the public key from ``SDKAPP_JWKS``), so the verifier's one discovery and JWKS fetch
goes over real HTTP too. Configuration comes from the environment (``SDKAPP_*``).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from stepguard.sdk import AsyncStepGuardClient
from stepguard.sdk.rfc9068 import AsyncAccessTokenVerifier
from stepguard.sdk.starlette import ProtectedRoute, StepUpGuard, StepUpMiddleware, TokenGuard

STEPGUARD_URL = os.environ["SDKAPP_STEPGUARD_URL"]
API_KEY = os.environ["SDKAPP_API_KEY"]
ISSUER = os.environ["SDKAPP_ISSUER"]
AUDIENCE = os.environ["SDKAPP_AUDIENCE"]
JWKS: dict[str, Any] = json.loads(os.environ["SDKAPP_JWKS"])

client = AsyncStepGuardClient(STEPGUARD_URL, API_KEY)
verifier = AsyncAccessTokenVerifier(ISSUER, AUDIENCE)
guard = StepUpGuard(
    client, session_id=lambda r: r.headers.get("x-session"), public_url=STEPGUARD_URL
)
tokens = TokenGuard(verifier)
view_guard = guard.require("account.view")
token_guard = tokens.require(acr="aal2", max_age=300)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await client.aclose()
    await verifier.aclose()


app = FastAPI(lifespan=lifespan)
guard.install(app)
app.add_middleware(
    StepUpMiddleware, guard=guard, routes=[ProtectedRoute(path="/mw", action="account.view")]
)

BODY = {"balance": 1234, "currency": "EUR"}


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"ok": True}


@app.get("/plain")
async def plain() -> dict[str, Any]:
    return BODY


@app.get("/dep")
async def dep(_: Annotated[object, Depends(view_guard)]) -> dict[str, Any]:
    return BODY


@app.get("/mw")
async def mw(request: Request) -> dict[str, Any]:
    return BODY


@app.get("/token")
async def token(_: Annotated[object, Depends(token_guard)]) -> dict[str, Any]:
    return BODY


@app.get("/.well-known/openid-configuration")
async def discovery() -> dict[str, Any]:
    return {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}


@app.get("/jwks")
async def jwks() -> dict[str, Any]:
    return JWKS
