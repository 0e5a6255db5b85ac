"""StepGuard as an OpenID Connect Provider: the pure part (no I/O, no clock, no JOSE).

- ``errors``: the OAuth 2.0 / OIDC error codes (RFC 6749 section 4.1.2.1, OIDC Core 3.1.2.6,
  RFC 9470 ``unmet_authentication_requirements``).
- ``model``: clients, pending authorization requests, grants, codes and refresh tokens.
- ``request``: parsing an authorization request into a typed ``AuthorizationRequest`` and
  negotiating the level the client asks for (``acr_values``, an essential ``acr`` claim).
- ``rfc7636``: PKCE, S256 only.
- ``claims``: the ID token, RFC 9068 access token and userinfo claims.
"""
