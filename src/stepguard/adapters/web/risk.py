"""API v1 routes of the risk engine: a subject's external risk alerts.

No ``from __future__ import annotations`` here: FastAPI resolves the route annotations when
the routes are defined, and ``Caller`` is local to :func:`risk_router`.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from stepguard.adapters.web.risk_schemas import (
    RiskAlertByLevel,
    RiskAlertByScore,
    RiskAlertIn,
    RiskAlertList,
    RiskAlertOut,
)
from stepguard.adapters.web.schemas import IDENTIFIER_REGEX
from stepguard.core.model import ApiKey
from stepguard.core.risk.model import RiskAlert
from stepguard.service.container import Services

PathId = Annotated[str, Path(pattern=IDENTIFIER_REGEX)]


def _alert_out(alert: RiskAlert) -> RiskAlertOut:
    return RiskAlertOut(
        id=alert.id,
        subject_id=alert.subject_id,
        score=alert.score,
        reason=alert.reason,
        created_at=alert.created_at,
        expires_at=alert.expires_at,
    )


def risk_router(
    services: Services,
    *,
    api_key: Callable[..., Awaitable[ApiKey]],
    responses: dict[int | str, dict[str, Any]],
) -> APIRouter:
    router = APIRouter(prefix="/v1", responses=responses, tags=["risk"])
    Caller = Annotated[ApiKey, Depends(api_key)]  # noqa: N806 (a type alias)

    @router.post("/subjects/{subject_id}/risk-alerts", response_model=RiskAlertOut, status_code=201)
    async def raise_alert(subject_id: PathId, body: RiskAlertIn, caller: Caller) -> RiskAlertOut:
        alert = await services.risk_alerts.raise_alert(
            subject_id,
            score=body.score if isinstance(body, RiskAlertByScore) else None,
            level=body.level if isinstance(body, RiskAlertByLevel) else None,
            reason=body.reason,
            expires_at=body.expires_at,
            actor=caller.id,
        )
        return _alert_out(alert)

    @router.get("/subjects/{subject_id}/risk-alerts", response_model=RiskAlertList)
    async def list_alerts(subject_id: PathId, caller: Caller) -> RiskAlertList:
        alerts = await services.risk_alerts.active(subject_id)
        return RiskAlertList(alerts=[_alert_out(alert) for alert in alerts])

    @router.delete("/subjects/{subject_id}/risk-alerts/{alert_id}", status_code=204)
    async def clear_alert(subject_id: PathId, alert_id: PathId, caller: Caller) -> Response:
        await services.risk_alerts.clear(subject_id, alert_id, actor=caller.id)
        return Response(status_code=204)

    return router
