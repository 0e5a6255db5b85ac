"""Parsing an authorization request (OIDC Core 3.1.2.1) into an ``AuthorizationRequest``,
and which assurance levels it asks for.

Parsing is in two steps, as RFC 6749 section 4.1.2.1 requires: :func:`check_client` decides
whether errors may be sent to the redirect URI at all (known client, exact redirect URI);
only then :func:`parse_authorization_request` checks the rest, raising errors that are
redirected with ``state``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from stepguard.core.assurance import AssuranceLevel
from stepguard.core.oidc import rfc7636
from stepguard.core.oidc.errors import (
    InvalidClientRequestError,
    InvalidScopeError,
    OidcInvalidRequestError,
    UnmetAuthenticationRequirementsError,
    UnsupportedResponseTypeError,
)
from stepguard.core.oidc.model import OidcClient

PROMPTS: Final = frozenset({"none", "login", "consent", "select_account"})
MAX_PARAM: Final = 2048
MAX_NONCE: Final = 512
MAX_AGE_LIMIT: Final = 10 * 365 * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str
    # Voluntary levels, in the client's order of preference (unknown values dropped).
    acr_values: tuple[AssuranceLevel, ...] = ()
    # An essential ``acr`` claim's acceptable values (empty: none essential).
    essential_acr: tuple[AssuranceLevel, ...] = ()
    max_age: int | None = None
    prompt: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": list(self.scope),
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.code_challenge,
            "acr_values": [level.acr for level in self.acr_values],
            "essential_acr": [level.acr for level in self.essential_acr],
            "max_age": self.max_age,
            "prompt": sorted(self.prompt),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthorizationRequest:
        return cls(
            client_id=data["client_id"],
            redirect_uri=data["redirect_uri"],
            scope=tuple(data["scope"]),
            state=data["state"],
            nonce=data["nonce"],
            code_challenge=data["code_challenge"],
            acr_values=tuple(AssuranceLevel.from_acr(v) for v in data["acr_values"]),
            essential_acr=tuple(AssuranceLevel.from_acr(v) for v in data["essential_acr"]),
            max_age=data["max_age"],
            prompt=frozenset(data["prompt"]),
        )

    @property
    def wanted_levels(self) -> tuple[AssuranceLevel, ...]:
        """The levels that would satisfy the client, in its order of preference: the
        essential ``acr`` values when there are some, else ``acr_values``."""
        return self.essential_acr or self.acr_values


def _single(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a dict; a repeated parameter is an error (RFC 6749 section 3.1)."""
    seen: dict[str, str] = {}
    for name, value in params:
        if name in seen:
            raise OidcInvalidRequestError(f"parameter {name!r} is repeated")
        if len(value) > MAX_PARAM:
            raise OidcInvalidRequestError(f"parameter {name!r} is too long")
        seen[name] = value
    return seen


def client_and_redirect(params: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """``client_id`` and ``redirect_uri``, or ``InvalidClientRequestError`` (never redirected)."""
    try:
        values = _single(params)
    except OidcInvalidRequestError as error:
        raise InvalidClientRequestError(error.message) from None
    client_id = values.get("client_id", "")
    redirect_uri = values.get("redirect_uri", "")
    if not client_id or not redirect_uri:
        raise InvalidClientRequestError("client_id and redirect_uri are required")
    return client_id, redirect_uri


def check_client(client: OidcClient | None, redirect_uri: str) -> OidcClient:
    """The client, if it exists and registered exactly this redirect URI (no prefix or
    pattern matching)."""
    if client is None or redirect_uri not in client.redirect_uris:
        raise InvalidClientRequestError()
    return client


def _levels(values: Sequence[object]) -> tuple[AssuranceLevel, ...]:
    known = {level.acr: level for level in AssuranceLevel}
    out: list[AssuranceLevel] = []
    for value in values:
        if isinstance(value, str) and value in known and known[value] not in out:
            out.append(known[value])
    return tuple(out)


def _essential_acr(raw: str | None) -> tuple[AssuranceLevel, ...]:
    if raw is None:
        return ()
    try:
        claims = json.loads(raw)
    except ValueError:
        raise OidcInvalidRequestError("claims is not JSON") from None
    if not isinstance(claims, dict):
        raise OidcInvalidRequestError("claims must be a JSON object")
    id_token = claims.get("id_token")
    if id_token is None:
        return ()
    if not isinstance(id_token, dict):
        raise OidcInvalidRequestError("claims.id_token must be an object")
    acr = id_token.get("acr")
    if acr is None:
        return ()
    if not isinstance(acr, dict):
        raise OidcInvalidRequestError("claims.id_token.acr must be an object or null")
    if acr.get("essential") is not True:
        return ()
    values: list[object] = []
    if "value" in acr:
        values.append(acr["value"])
    if isinstance(acr.get("values"), list):
        values.extend(acr["values"])
    levels = _levels(values)
    if not levels:
        raise UnmetAuthenticationRequirementsError("no essential acr value is supported")
    return levels


def parse_authorization_request(
    params: Sequence[tuple[str, str]], *, client: OidcClient
) -> AuthorizationRequest:
    """The validated request; raise an ``OAuthError`` to redirect (with ``state``).

    Call after :func:`check_client` accepted the client and redirect URI."""
    values = _single(params)
    if values.get("response_type") != "code":
        raise UnsupportedResponseTypeError()
    if values.get("response_mode", "query") != "query":
        raise OidcInvalidRequestError("only response_mode=query is supported")
    if "request" in values or "request_uri" in values:
        raise OidcInvalidRequestError("request objects are not supported")
    scope = tuple(dict.fromkeys(values.get("scope", "").split()))
    if "openid" not in scope:
        raise InvalidScopeError("scope must include openid")
    if any(s not in client.scopes for s in scope):
        raise InvalidScopeError("a requested scope is not allowed for this client")
    code_challenge = rfc7636.check_challenge(
        values.get("code_challenge"), values.get("code_challenge_method")
    )
    nonce = values.get("nonce") or None
    if nonce is not None and len(nonce) > MAX_NONCE:
        raise OidcInvalidRequestError("nonce is too long")
    prompt = frozenset(values.get("prompt", "").split())
    if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise OidcInvalidRequestError("invalid prompt")
    max_age: int | None = None
    if "max_age" in values:
        raw = values["max_age"]
        if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_AGE_LIMIT:
            raise OidcInvalidRequestError("max_age must be a non-negative integer")
        max_age = int(raw)
    return AuthorizationRequest(
        client_id=client.id,
        redirect_uri=values["redirect_uri"],
        scope=scope,
        state=values.get("state") or None,
        nonce=nonce,
        code_challenge=code_challenge,
        acr_values=_levels(values.get("acr_values", "").split()),
        essential_acr=_essential_acr(values.get("claims")),
        max_age=max_age,
        prompt=prompt,
    )
