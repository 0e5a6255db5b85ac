"""RFC 9068, JWT Profile for OAuth 2.0 Access Tokens: verify a bearer token from any OIDC or
RFC 8414 issuer, then judge its ``acr`` and ``auth_time`` against a route's requirement, the
RFC 9470 way, without asking StepGuard.

::

    verifier = AccessTokenVerifier(issuer="https://idp.example", audience="https://api.example")
    token = verifier.verify(raw)  # InvalidTokenError, IssuerUnavailableError
    verifier.require(token, TokenRequirement(acr="aal2", max_age=300))
    # -> InsufficientUserAuthenticationError(challenge) when too weak or too old

Verification: issuer discovery (``/.well-known/openid-configuration``, then RFC 8414's
``/.well-known/oauth-authorization-server``) -> ``jwks_uri`` -> the key set, cached and
refreshed when a token names an unknown ``kid`` (at most once per ``refresh_interval``) or
when older than ``max_key_age``. Then, with joserfc: the header's ``typ`` (``at+jwt``;
``JWT`` only with ``accept_jwt_typ=True``), ``alg`` from an allow-list of asymmetric
algorithms (never ``none``, never HMAC: a public key is not a shared secret), the signature,
``iss``, ``aud``, ``sub``, ``exp``, ``iat`` (required) and ``nbf`` with a small leeway.

Needs the ``jwt`` extra (``pip install 'stepguard[jwt]'``): this module imports joserfc.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Self

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from stepguard.sdk.errors import (
    InsufficientUserAuthenticationError,
    InvalidTokenError,
    IssuerUnavailableError,
)
from stepguard.sdk.guard import format_bearer_error
from stepguard.sdk.rfc9470 import StepUpChallenge

__all__ = [
    "DEFAULT_ACR_ORDER",
    "DEFAULT_ALGORITHMS",
    "AccessTokenVerifier",
    "AcrLadder",
    "AsyncAccessTokenVerifier",
    "TokenRequirement",
    "VerifiedAccessToken",
    "bearer_token",
    "format_bearer_error",
]

#: StepGuard's assurance levels, weakest first.
DEFAULT_ACR_ORDER: Final = ("aal1", "aal2", "phr", "phrh", "aal3")
#: Asymmetric signature algorithms only. HMAC (HS*) would let anyone holding the issuer's
#: *public* key forge tokens; ``none`` is no signature at all.
DEFAULT_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)
_ASYMMETRIC: Final = frozenset(DEFAULT_ALGORITHMS) | {"ES256K"}
_DESCRIPTION: Final = "A different authentication level is required"
_DEFAULT_TIMEOUT: Final = httpx.Timeout(5.0, connect=2.0)
_MAX_TOKEN_LENGTH: Final = 16_384


@dataclass(frozen=True, slots=True)
class AcrLadder:
    """An order on ``acr`` values, weakest first, plus ``aliases`` that map an issuer's own
    values onto it (e.g. ``{"http://idmanagement.gov/ns/assurance/aal/2": "aal2"}``). An
    ``acr`` that is neither in the order nor an alias is insufficient for every requirement."""

    order: tuple[str, ...] = DEFAULT_ACR_ORDER
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.order or len(set(self.order)) != len(self.order):
            raise ValueError("order must list distinct acr values")
        for alias, target in self.aliases.items():
            if target not in self.order:
                raise ValueError(f"alias {alias!r} maps to {target!r}, which is not in order")

    def rank(self, acr: str | None) -> int | None:
        if acr is None:
            return None
        canonical = self.aliases.get(acr, acr)
        return self.order.index(canonical) if canonical in self.order else None

    def satisfies(self, presented: str | None, required: str) -> bool:
        have, need = self.rank(presented), self.rank(required)
        if need is None:
            raise ValueError(f"required acr {required!r} is not on the ladder")
        return have is not None and have >= need


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRequirement:
    """What a route asks of the token's authentication: at least ``acr`` (``None``: any),
    and an ``auth_time`` at most ``max_age`` seconds ago (``None``: any age)."""

    acr: str | None = None
    max_age: int | None = None
    error_description: str = _DESCRIPTION

    def __post_init__(self) -> None:
        age: object = self.max_age
        if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 0):
            raise ValueError("max_age must be a non-negative int or None")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedAccessToken:
    """A token whose signature, issuer, audience and lifetime were checked."""

    subject: str
    issuer: str
    audience: tuple[str, ...]
    client_id: str | None
    scopes: tuple[str, ...]
    acr: str | None
    amr: tuple[str, ...]
    auth_time: datetime | None
    issued_at: datetime
    expires_at: datetime
    claims: Mapping[str, Any] = field(hash=False, repr=False)


# --------------------------------------------------------------------------------------------
# Headers (RFC 6750)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` when absent or of
    another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


# --------------------------------------------------------------------------------------------
# The rules (no I/O)


def _b64_json(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidTokenError("the token header is not valid") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("the token header is not valid")
    return value


def _timestamp(value: int | float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rules:
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    accept_jwt_typ: bool
    leeway: int
    ladder: AcrLadder

    def header(self, token: object) -> tuple[str, str | None]:
        """(alg, kid) from the protected header, after the checks that need no key."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidTokenError("the token is malformed")
        segments = token.split(".")
        if len(segments) != 3:
            raise InvalidTokenError("the token is not a signed JWT")
        header = _b64_json(segments[0])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidTokenError("the token's signing algorithm is not accepted")
        typ = header.get("typ")
        normalized = typ.lower().removeprefix("application/") if isinstance(typ, str) else None
        if normalized != "at+jwt" and not (self.accept_jwt_typ and normalized in ("jwt", None)):
            raise InvalidTokenError("the token is not a JWT access token (typ at+jwt)")
        if "crit" in header:
            raise InvalidTokenError("the token uses critical header parameters")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidTokenError("the token's key id is not valid")
        return alg, kid

    def verify(self, token: str, alg: str, keys: KeySet, now: float) -> VerifiedAccessToken:
        try:
            decoded = jwt.decode(token, keys, algorithms=[alg])
        except JoseError:
            raise InvalidTokenError("the token's signature does not verify") from None
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            now=int(now),
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise InvalidTokenError(_claim_problem(error)) from None
        return self._parse(claims)

    def _parse(self, claims: dict[str, Any]) -> VerifiedAccessToken:
        aud = claims["aud"]
        acr = claims.get("acr")
        amr = claims.get("amr", [])
        auth_time = claims.get("auth_time")
        scope = claims.get("scope", "")
        client_id = claims.get("client_id")
        if acr is not None and not isinstance(acr, str):
            raise InvalidTokenError("the token's acr claim is not a string")
        if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
            raise InvalidTokenError("the token's amr claim is not a list of strings")
        if auth_time is not None and not _is_number(auth_time):
            raise InvalidTokenError("the token's auth_time claim is not a NumericDate")
        if not isinstance(scope, str):
            raise InvalidTokenError("the token's scope claim is not a string")
        if client_id is not None and not isinstance(client_id, str):
            raise InvalidTokenError("the token's client_id claim is not a string")
        return VerifiedAccessToken(
            subject=claims["sub"],
            issuer=claims["iss"],
            audience=(aud,) if isinstance(aud, str) else tuple(aud),
            client_id=client_id,
            scopes=tuple(scope.split()),
            acr=acr,
            amr=tuple(amr),
            auth_time=None if auth_time is None else _timestamp(auth_time),
            issued_at=_timestamp(claims["iat"]),
            expires_at=_timestamp(claims["exp"]),
            claims=MappingProxyType(claims),
        )

    def shortfall(
        self, token: VerifiedAccessToken, requirement: TokenRequirement, now: float
    ) -> StepUpChallenge | None:
        """The RFC 9470 challenge when the token does not meet ``requirement``, else None."""
        strong = requirement.acr is None or self.ladder.satisfies(token.acr, requirement.acr)
        fresh = True
        if requirement.max_age is not None:
            fresh = (
                token.auth_time is not None
                and now - token.auth_time.timestamp() <= requirement.max_age
            )
        if strong and fresh:
            return None
        return StepUpChallenge(
            acr_values=() if requirement.acr is None else (requirement.acr,),
            max_age=requirement.max_age,
            error_description=requirement.error_description,
        )


def _claim_problem(error: JoseError) -> str:
    name = type(error).__name__
    if name == "ExpiredTokenError":
        return "the token has expired"
    if name == "MissingClaimError":
        return f"the token lacks a required claim ({error.description})"
    claim = getattr(error, "claim", None) or error.description or "a claim"
    return f"the token's claim is not valid ({claim})"


# --------------------------------------------------------------------------------------------
# Keys


def _https_or_loopback(url: str, *, allow_insecure_http: bool) -> httpx.URL:
    parsed = httpx.URL(url)
    host = parsed.host
    loopback = host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")
    if parsed.scheme == "https" or (parsed.scheme == "http" and (loopback or allow_insecure_http)):
        return parsed
    raise IssuerUnavailableError(f"refusing a non-https issuer URL: {url}")


def _discovery_urls(issuer: str) -> tuple[str, ...]:
    """OpenID Connect Discovery first, then RFC 8414 (which inserts the well-known segment
    before the issuer's path)."""
    url = httpx.URL(issuer)
    path = url.path.rstrip("/")
    oidc = str(url.copy_with(path=f"{path}/.well-known/openid-configuration"))
    oauth = str(url.copy_with(path=f"/.well-known/oauth-authorization-server{path}"))
    return (oidc, oauth)


def _json_document(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise IssuerUnavailableError(f"{what}: HTTP {response.status_code}")
    try:
        value = json.loads(response.content)
    except (ValueError, RecursionError):
        raise IssuerUnavailableError(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise IssuerUnavailableError(f"{what}: not a JSON object")
    return value


class _KeyCache:
    """The key set, when it was fetched, and when a refresh was last tried (the rate limit)."""

    def __init__(self, *, refresh_interval: float, max_key_age: float) -> None:
        self.keys: KeySet | None = None
        self.jwks_uri: str | None = None
        self.fetched_at = 0.0
        self.attempted_at: float | None = None
        self.unknown_kid_at: float | None = None
        self.refresh_interval = refresh_interval
        self.max_key_age = max_key_age
        self.fetches = 0

    def knows(self, kid: str | None) -> bool:
        if self.keys is None:
            return False
        if kid is None:
            return len(self.keys.keys) == 1
        return any(key.kid == kid for key in self.keys)

    def should_fetch(self, kid: str | None, now: float) -> bool:
        """Whether to fetch the key set now. Unknown ``kid`` refreshes (which anyone can
        trigger with a made-up ``kid``) happen at most once per ``refresh_interval``; so do
        retries while the issuer is unreachable."""
        if self.keys is None or now - self.fetched_at >= self.max_key_age:
            return self.attempted_at is None or now - self.attempted_at >= self.refresh_interval
        if self.knows(kid):
            return False
        return self.unknown_kid_at is None or now - self.unknown_kid_at >= self.refresh_interval

    def mark_attempt(self, kid: str | None, now: float) -> None:
        if self.keys is not None and now - self.fetched_at < self.max_key_age:
            self.unknown_kid_at = now  # a refresh for an unknown kid
        else:
            self.attempted_at = now

    def store(self, document: dict[str, Any], now: float) -> None:
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError):
            raise IssuerUnavailableError("the issuer's JWKS is not a valid key set") from None
        if any(key.is_private for key in keys):
            raise IssuerUnavailableError("the issuer's JWKS contains private keys")
        self.keys = keys
        self.fetched_at = now
        self.fetches += 1

    def usable(self) -> KeySet:
        if self.keys is None:
            raise IssuerUnavailableError("the issuer's signing keys are not available")
        return self.keys


@dataclass(frozen=True, slots=True, kw_only=True)
class _Config:
    rules: _Rules
    allow_insecure_http: bool
    jwks_uri: str | None
    clock: Callable[[], float]


def _config(
    *,
    issuer: str,
    audience: str,
    algorithms: Sequence[str],
    accept_jwt_typ: bool,
    leeway: int,
    ladder: AcrLadder,
    allow_insecure_http: bool,
    jwks_uri: str | None,
    clock: Callable[[], float],
) -> _Config:
    algs = tuple(algorithms)
    if not algs or any(alg not in _ASYMMETRIC for alg in algs):
        raise ValueError(
            "algorithms must be asymmetric signature algorithms (no 'none', no HS*): "
            + ", ".join(sorted(_ASYMMETRIC))
        )
    if not 0 <= leeway <= 300:
        raise ValueError("leeway must be between 0 and 300 seconds")
    if not issuer or not audience:
        raise ValueError("issuer and audience are required")
    _https_or_loopback(issuer, allow_insecure_http=allow_insecure_http)
    return _Config(
        rules=_Rules(
            issuer=issuer,
            audience=audience,
            algorithms=algs,
            accept_jwt_typ=accept_jwt_typ,
            leeway=leeway,
            ladder=ladder,
        ),
        allow_insecure_http=allow_insecure_http,
        jwks_uri=jwks_uri,
        clock=clock,
    )


class _VerifierBase:
    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        accept_jwt_typ: bool = False,
        leeway: int = 30,
        ladder: AcrLadder | None = None,
        refresh_interval: float = 60.0,
        max_key_age: float = 3600.0,
        jwks_uri: str | None = None,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = _config(
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            accept_jwt_typ=accept_jwt_typ,
            leeway=leeway,
            ladder=ladder or AcrLadder(),
            allow_insecure_http=allow_insecure_http,
            jwks_uri=jwks_uri,
            clock=clock,
        )
        self._cache = _KeyCache(refresh_interval=refresh_interval, max_key_age=max_key_age)
        self._cache.jwks_uri = jwks_uri

    @property
    def key_fetches(self) -> int:
        """How many times the key set was fetched (for monitoring and tests)."""
        return self._cache.fetches

    def require(self, token: VerifiedAccessToken, requirement: TokenRequirement) -> None:
        """Raise :class:`InsufficientUserAuthenticationError` (with the RFC 9470 challenge)
        when ``token``'s ``acr`` or ``auth_time`` does not meet ``requirement``."""
        challenge = self._config.rules.shortfall(token, requirement, self._config.clock())
        if challenge is not None:
            raise InsufficientUserAuthenticationError(challenge)

    def _jwks_uri_from(self, document: dict[str, Any]) -> str:
        if document.get("issuer") != self._config.rules.issuer:
            raise IssuerUnavailableError("the discovery document names another issuer")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str):
            raise IssuerUnavailableError("the discovery document has no jwks_uri")
        _https_or_loopback(uri, allow_insecure_http=self._config.allow_insecure_http)
        return uri


class AccessTokenVerifier(_VerifierBase):
    """Synchronous verifier (Flask, Django). One instance per issuer and audience, shared by
    all requests: it holds the key cache and a pooled ``httpx.Client``."""

    def __init__(
        self, issuer: str, audience: str, *, http: httpx.Client | None = None, **options: Any
    ) -> None:
        super().__init__(issuer, audience, **options)
        self._http = http or httpx.Client(timeout=_DEFAULT_TIMEOUT, follow_redirects=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def verify(self, token: str) -> VerifiedAccessToken:
        """The verified token; :class:`InvalidTokenError` or :class:`IssuerUnavailableError`."""
        rules = self._config.rules
        alg, kid = rules.header(token)
        if self._cache.should_fetch(kid, self._config.clock()):
            with self._lock:
                now = self._config.clock()
                if self._cache.should_fetch(kid, now):
                    self._cache.mark_attempt(kid, now)
                    self._refresh(now)
        return rules.verify(token, alg, self._cache.usable(), self._config.clock())

    def _refresh(self, now: float) -> None:
        try:
            if self._cache.jwks_uri is None:
                self._cache.jwks_uri = self._discover()
            response = self._http.get(self._cache.jwks_uri)
        except httpx.HTTPError as error:
            if self._cache.keys is None:
                raise IssuerUnavailableError(f"fetching the JWKS failed: {error}") from None
            return  # keep the keys we have
        try:
            self._cache.store(_json_document(response, "JWKS"), now)
        except IssuerUnavailableError:
            if self._cache.keys is None:
                raise

    def _discover(self) -> str:
        last: Exception | None = None
        for url in _discovery_urls(self._config.rules.issuer):
            try:
                return self._jwks_uri_from(_json_document(self._http.get(url), "discovery"))
            except (IssuerUnavailableError, httpx.HTTPError) as error:
                last = error
        raise IssuerUnavailableError(f"issuer discovery failed: {last}")


class AsyncAccessTokenVerifier(_VerifierBase):
    """Asynchronous verifier (Starlette, FastAPI), with a pooled ``httpx.AsyncClient``."""

    def __init__(
        self, issuer: str, audience: str, *, http: httpx.AsyncClient | None = None, **options: Any
    ) -> None:
        super().__init__(issuer, audience, **options)
        self._http = http or httpx.AsyncClient(timeout=_DEFAULT_TIMEOUT, follow_redirects=False)
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def verify(self, token: str) -> VerifiedAccessToken:
        rules = self._config.rules
        alg, kid = rules.header(token)
        if self._cache.should_fetch(kid, self._config.clock()):
            async with self._lock:
                now = self._config.clock()
                if self._cache.should_fetch(kid, now):
                    self._cache.mark_attempt(kid, now)
                    await self._refresh(now)
        return rules.verify(token, alg, self._cache.usable(), self._config.clock())

    async def _refresh(self, now: float) -> None:
        try:
            if self._cache.jwks_uri is None:
                self._cache.jwks_uri = await self._discover()
            response = await self._http.get(self._cache.jwks_uri)
        except httpx.HTTPError as error:
            if self._cache.keys is None:
                raise IssuerUnavailableError(f"fetching the JWKS failed: {error}") from None
            return
        try:
            self._cache.store(_json_document(response, "JWKS"), now)
        except IssuerUnavailableError:
            if self._cache.keys is None:
                raise

    async def _discover(self) -> str:
        last: Exception | None = None
        for url in _discovery_urls(self._config.rules.issuer):
            try:
                return self._jwks_uri_from(_json_document(await self._http.get(url), "discovery"))
            except (IssuerUnavailableError, httpx.HTTPError) as error:
                last = error
        raise IssuerUnavailableError(f"issuer discovery failed: {last}")
