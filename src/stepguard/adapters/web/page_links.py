"""API v1 for the hosted pages: ``POST /v1/sessions/{session_id}/page-links``.

An application asks for a single-use link to a page (today: the account page) for one of its
users' sessions, and sends the user's browser there.
"""

# No ``from __future__ import annotations``: the route's annotations name the dependency that
# build_app passes in, so they must be evaluated where the route is defined.
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path

from stepguard.adapters.web.pages import PagesConfig
from stepguard.adapters.web.schemas import IDENTIFIER_REGEX, Out, Strict
from stepguard.core.model import ApiKey
from stepguard.service.container import Services

__all__ = ["PageLinkIn", "PageLinkOut", "page_links_router"]

ACCOUNT_PAGE_PATH = "/account/factors"


class PageLinkIn(Strict):
    page: Literal["account"]


class PageLinkOut(Out):
    url: str
    expires_at: datetime


def page_links_router(
    services: Services,
    config: PagesConfig,
    *,
    caller: Callable[..., Awaitable[ApiKey]],
    responses: dict[int | str, dict[str, Any]],
) -> APIRouter:
    """``caller`` is API v1's API-key dependency."""
    router = APIRouter(prefix="/v1", responses=responses)
    Caller = Annotated[ApiKey, Depends(caller)]  # noqa: N806 - a type alias, as in app.py

    @router.post(
        "/sessions/{session_id}/page-links",
        response_model=PageLinkOut,
        status_code=201,
        tags=["pages"],
    )
    async def create_page_link(
        session_id: Annotated[str, Path(pattern=IDENTIFIER_REGEX)],
        body: PageLinkIn,
        key: Caller,
    ) -> PageLinkOut:
        link = await services.pages.account_link(session_id, actor=key.id)
        return PageLinkOut(
            url=config.page_url(ACCOUNT_PAGE_PATH, link.token.reveal()),
            expires_at=link.expires_at,
        )

    return router
