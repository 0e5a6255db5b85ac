"""``POST /v1/challenges/{id}/deliveries``: send an email or SMS code for a challenge.

``build_app`` includes this router (it imports this module when it runs, since this module
uses ``app.py``'s caller and path dependencies)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stepguard.adapters.web.app import Caller, PathId
from stepguard.adapters.web.delivery_schemas import DeliveryIn
from stepguard.adapters.web.schemas import SentCodeOut
from stepguard.service.container import Services


def delivery_router(services: Services, *, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    router = APIRouter(prefix="/v1", responses=responses)

    @router.post(
        "/challenges/{challenge_id}/deliveries",
        response_model=SentCodeOut,
        status_code=202,
        tags=["challenges"],
        summary="Send a code for this challenge to an enrolled email or SMS factor",
        description=(
            "A fresh code bound to the challenge, single use, valid at most 10 minutes; a "
            "new delivery invalidates the factor's previous code. Verify it with "
            "`POST /v1/challenges/{id}/verifications`. 429 `delivery_rate_limited` when a "
            "send limit refuses; 503 `delivery_failed` when the provider failed (the code "
            "is then unusable; offer another factor)."
        ),
    )
    async def deliver(challenge_id: PathId, body: DeliveryIn, caller: Caller) -> SentCodeOut:
        sent = await services.delivery.send(challenge_id, body.factor_id, actor=caller.id)
        return SentCodeOut(
            delivery_id=sent.delivery_id,
            channel=sent.channel.value,
            destination=sent.destination,
            expires_at=sent.expires_at,
        )

    return router
