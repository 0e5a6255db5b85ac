"""WebAuthn routes of API v1 that the existing ones do not cover: request options for a
challenge. (Registration goes through the factor routes, assertions through
``POST /v1/challenges/{id}/verifications``.)"""

# No ``from __future__ import annotations``: the routes are defined in a function and their
# annotations name its parameters, which FastAPI must see as objects.

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from stepguard.adapters.web.schemas import IDENTIFIER_REGEX
from stepguard.adapters.web.webauthn_schemas import AssertionOptionsIn, AssertionOptionsOut
from stepguard.core.model import ApiKey
from stepguard.service.container import Services

PathId = Annotated[str, Path(pattern=IDENTIFIER_REGEX)]


def webauthn_router(
    services: Services,
    *,
    api_key: Callable[..., Awaitable[ApiKey]],
    responses: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """The routes, authenticated by ``api_key`` (the app's API-key dependency)."""
    router = APIRouter(prefix="/v1", responses=responses, tags=["challenges"])
    Caller = Annotated[ApiKey, Depends(api_key)]  # noqa: N806 - a type alias, as in app.py

    @router.post("/challenges/{challenge_id}/webauthn", response_model=AssertionOptionsOut)
    async def assertion_options(
        challenge_id: PathId, body: AssertionOptionsIn, caller: Caller
    ) -> AssertionOptionsOut:
        """Request options for ``navigator.credentials.get()`` to answer this challenge.

        404 for an unknown challenge; 409 when it is not pending or none of the subject's
        WebAuthn credentials can satisfy it. Each call replaces the challenge's earlier
        options (only the newest are valid).
        """
        options = await services.webauthn.assertion_options(
            challenge_id, factor_id=body.factor_id, actor=caller.id
        )
        return AssertionOptionsOut(options=options)

    return router
