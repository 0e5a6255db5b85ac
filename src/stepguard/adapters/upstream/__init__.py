"""The upstream OpenID Provider client (discovery, JWKS, token exchange) on httpx and joserfc.
See docs/upstream.md."""

from stepguard.adapters.upstream._client import HttpUpstreamClient

__all__ = ["HttpUpstreamClient"]
