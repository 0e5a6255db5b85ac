"""The OpenID Connect provider's HTTP endpoints (docs/oidc.md)."""

from stepguard.adapters.web.oidc._router import oidc_router

__all__ = ["oidc_router"]
