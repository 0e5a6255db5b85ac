"""The hosted pages (step-up prompt, account factors): Jinja2 templates, static CSS and JS,
and their router. See docs/pages.md."""

from stepguard.adapters.web.pages._router import (
    SECURITY_HEADERS,
    PagesConfig,
    pages_router,
    same_origin,
    set_browser_cookie,
)
from stepguard.adapters.web.pages._urls import safe_return_to, with_query

__all__ = [
    "SECURITY_HEADERS",
    "PagesConfig",
    "pages_router",
    "safe_return_to",
    "same_origin",
    "set_browser_cookie",
    "with_query",
]
