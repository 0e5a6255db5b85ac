"""Adapters of the OpenID Connect provider: JOSE with joserfc."""

from stepguard.adapters.oidc.keys import JoserfcJose

__all__ = ["JoserfcJose"]
