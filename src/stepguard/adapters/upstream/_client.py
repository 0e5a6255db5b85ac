"""The OIDC client side of an upstream sign-in, on httpx and joserfc.

- Discovery: ``{issuer}/.well-known/openid-configuration``, whose ``issuer`` must equal the
  configured one exactly; cached for ``metadata_max_age`` seconds.
- Keys: the provider's JWKS, cached; an ID token naming an unknown ``kid`` refreshes it at most
  once per ``refresh_interval`` (anyone can send a made-up ``kid``), like ``sdk/rfc9068.py``.
- Token exchange: ``client_secret_basic`` unless the provider lists only
  ``client_secret_post``; the PKCE verifier goes with it.
- Signatures: only the configured algorithms (never ``none``; HS* only when configured, keyed
  with the client secret).

Every failure raises ``UpstreamLoginFailedError`` with its reason; the caller fails closed.
Endpoints must be https, except on a loopback host (tests, local development).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx
import orjson
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from stepguard.core.upstream import FailureReason, UpstreamConfig, UpstreamLoginFailedError

__all__ = ["HttpUpstreamClient"]

_MAX_DOCUMENT: Final = 256 * 1024
_MAX_TOKEN: Final = 16 * 1024
_SYMMETRIC: Final = frozenset({"HS256", "HS384", "HS512"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_url(value: object, reason: FailureReason, what: str) -> str:
    if not isinstance(value, str):
        raise UpstreamLoginFailedError(reason, f"{what} missing")
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))):
        raise UpstreamLoginFailedError(reason, f"{what} is not https")
    return value


def _b64_json(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "header") from None
    if not isinstance(value, dict):
        raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "header")
    return value


@dataclass(slots=True)
class _Provider:
    """What one upstream published, and when (monotonic seconds)."""

    metadata: dict[str, Any] | None = None
    metadata_at: float = 0.0
    keys: KeySet | None = None
    keys_at: float = 0.0
    unknown_kid_at: float | None = None
    attempted_at: float | None = None
    key_fetches: int = 0


class HttpUpstreamClient:
    """The ``UpstreamClient`` port over HTTP."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 5.0,
        metadata_max_age: float = 3600.0,
        refresh_interval: float = 60.0,
        max_key_age: float = 3600.0,
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout_seconds
        # httpx's timeout is per phase (connect, each read...); this bounds the whole call.
        self._deadline = 2 * timeout_seconds
        self._metadata_max_age = metadata_max_age
        self._refresh_interval = refresh_interval
        self._max_key_age = max_key_age
        self._transport = transport
        self._monotonic = monotonic
        self._providers: dict[str, _Provider] = {}

    def key_fetches(self, name: str) -> int:
        provider = self._providers.get(name)
        return 0 if provider is None else provider.key_fetches

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, transport=self._transport
        )

    async def _get_json(self, url: str, reason: FailureReason) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._deadline), self._client() as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except (httpx.HTTPError, TimeoutError) as error:
            raise UpstreamLoginFailedError(reason, type(error).__name__) from None
        return _document(response, reason)

    async def _metadata(self, config: UpstreamConfig) -> dict[str, Any]:
        provider = self._providers.setdefault(config.name, _Provider())
        now = self._monotonic()
        if provider.metadata is not None and now - provider.metadata_at < self._metadata_max_age:
            return provider.metadata
        reason = FailureReason.DISCOVERY_FAILED
        url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(_safe_url(url, reason, "issuer"), reason)
        if document.get("issuer") != config.issuer:
            raise UpstreamLoginFailedError(reason, "issuer in the discovery document differs")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            _safe_url(document.get(name), reason, name)
        provider.metadata = document
        provider.metadata_at = now
        return document

    async def authorization_endpoint(self, config: UpstreamConfig) -> str:
        return str((await self._metadata(config))["authorization_endpoint"])

    async def exchange_code(
        self, config: UpstreamConfig, *, code: str, code_verifier: str, redirect_uri: str
    ) -> str:
        metadata = await self._metadata(config)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        methods = metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        secret = config.client_secret.reveal()
        if (
            isinstance(methods, list)
            and "client_secret_basic" not in methods
            and ("client_secret_post" in methods)
        ):
            form["client_id"] = config.client_id
            form["client_secret"] = secret
        else:
            # RFC 6749 2.3.1: form-urlencode the id and secret before base64.
            pair = f"{quote(config.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        reason = FailureReason.TOKEN_ENDPOINT_FAILED
        try:
            async with asyncio.timeout(self._deadline), self._client() as client:
                response = await client.post(
                    str(metadata["token_endpoint"]), data=form, headers=headers
                )
        except (httpx.HTTPError, TimeoutError) as error:
            raise UpstreamLoginFailedError(reason, type(error).__name__) from None
        document = _document(response, reason)
        id_token = document.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise UpstreamLoginFailedError(reason, "no id_token in the token response")
        return id_token

    async def _keys(self, config: UpstreamConfig, kid: str | None) -> KeySet:
        provider = self._providers.setdefault(config.name, _Provider())
        now = self._monotonic()
        if self._should_fetch(provider, kid, now):
            fresh = provider.keys is not None and now - provider.keys_at < self._max_key_age
            if fresh:
                provider.unknown_kid_at = now
            else:
                provider.attempted_at = now
            metadata = await self._metadata(config)
            reason = FailureReason.JWKS_FAILED
            document = await self._get_json(str(metadata["jwks_uri"]), reason)
            try:
                keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, KeyError, TypeError, ValueError):
                raise UpstreamLoginFailedError(reason, "not a key set") from None
            if any(key.is_private for key in keys):
                raise UpstreamLoginFailedError(reason, "the key set holds private keys")
            provider.keys = keys
            provider.keys_at = now
            provider.key_fetches += 1
        if provider.keys is None:
            raise UpstreamLoginFailedError(FailureReason.JWKS_FAILED, "no keys")
        return provider.keys

    def _should_fetch(self, provider: _Provider, kid: str | None, now: float) -> bool:
        keys = provider.keys
        if keys is None or now - provider.keys_at >= self._max_key_age:
            return (
                provider.attempted_at is None
                or now - provider.attempted_at >= self._refresh_interval
            )
        if _knows(keys, kid):
            return False
        return (
            provider.unknown_kid_at is None
            or now - provider.unknown_kid_at >= self._refresh_interval
        )

    async def verify_signature(self, config: UpstreamConfig, id_token: str) -> Mapping[str, Any]:
        if len(id_token) > _MAX_TOKEN or not id_token.isascii():
            raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "size")
        segments = id_token.split(".")
        if len(segments) != 3:
            raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "not a compact JWS")
        header = _b64_json(segments[0])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in config.algorithms:
            raise UpstreamLoginFailedError(FailureReason.ALGORITHM_REFUSED, str(alg)[:20])
        if "crit" in header:
            raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "crit")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "kid")
        if alg in _SYMMETRIC:
            key: OctKey | KeySet = OctKey.import_key(config.client_secret.reveal())
        else:
            key = await self._keys(config, kid)
            if not _knows(key, kid):
                raise UpstreamLoginFailedError(FailureReason.UNKNOWN_KEY, (kid or "")[:64])
        try:
            verified = jws.deserialize_compact(id_token, key, algorithms=[alg])
        except JoseError:
            raise UpstreamLoginFailedError(FailureReason.SIGNATURE_INVALID) from None
        except (ValueError, TypeError):
            raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "payload") from None
        try:
            claims = orjson.loads(verified.payload)
        except orjson.JSONDecodeError:
            raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "payload") from None
        if not isinstance(claims, dict):
            raise UpstreamLoginFailedError(FailureReason.TOKEN_MALFORMED, "payload")
        return claims


def _knows(keys: KeySet, kid: str | None) -> bool:
    if kid is None:
        return len(keys.keys) == 1
    return any(key.kid == kid for key in keys)


def _document(response: httpx.Response, reason: FailureReason) -> dict[str, Any]:
    if response.status_code != 200:
        raise UpstreamLoginFailedError(reason, f"HTTP {response.status_code}")
    if len(response.content) > _MAX_DOCUMENT:
        raise UpstreamLoginFailedError(reason, "document too large")
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise UpstreamLoginFailedError(reason, "not JSON") from None
    if not isinstance(document, dict):
        raise UpstreamLoginFailedError(reason, "not a JSON object")
    return document
