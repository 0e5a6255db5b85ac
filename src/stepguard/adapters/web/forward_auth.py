"""``/forward-auth``: the check reverse proxies make before each request (docs/forward-auth.md).

Shapes:

- ``/forward-auth`` with ``X-Forwarded-Method``, ``-Proto``, ``-Host`` and ``-Uri`` (nginx,
  Traefik ``ForwardAuth``, Caddy ``forward_auth``), or with ``X-Original-URL`` and
  ``X-Original-Method`` (nginx's common ``auth_request`` configuration). The two sets are
  exclusive: a request carrying headers of both is refused.
- ``/forward-auth/envoy/<original path>``: Envoy ``ext_authz`` in HTTP mode sends the original
  request itself (method, ``:authority`` as ``Host``, path and query) under a path prefix;
  the scheme comes from ``X-Forwarded-Proto``.

Trust: the proxy's headers are read only when the TCP peer is one of ``trusted_proxies``
(uvicorn runs without ``--proxy-headers``, so the peer is never rewritten from headers), only
under their canonical names (a header spelled with ``_`` instead of ``-`` is refused, as is a
second copy of any header read here), and strictly (:mod:`stepguard.core.forward_auth`).

Answers, always with an empty body (nginx reuses the upstream connection only then):

- 200 with ``Remote-User``, ``Remote-Groups``, ``Remote-ACR`` (and ``Remote-Email``);
- 401 with ``Location`` (the login URL, or the step-up page with ``return_to``), or 302 with
  the same ``Location`` when the proxy asks for ``?mode=redirect`` (Traefik, Caddy, Envoy);
- 403 on deny, for an untrusted peer, or when there is no session and no login URL;
- 400 for a missing, malformed or ambiguous forwarded request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from stepguard.adapters.web.pages import PagesConfig
from stepguard.adapters.web.pages._urls import safe_return_to, with_query
from stepguard.core.errors import ForwardedRequestError
from stepguard.core.forward_auth import (
    FORWARD_AUTH_ACTION,
    parse_absolute_url,
    parse_client_ip,
    request_from_parts,
)
from stepguard.core.policy.model import HttpRequest
from stepguard.service.container import Services
from stepguard.service.forward_auth import (
    ForwardAllowed,
    ForwardCheck,
    ForwardLogin,
    ForwardStepUp,
)

__all__ = ["ENVOY_PREFIX", "ForwardAuthConfig", "IpNetwork", "forward_auth_router"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ENVOY_PREFIX: Final = "/forward-auth/envoy"
_LOOPBACK: Final = ("127.0.0.0/8", "::1/128")

_FORWARDED: Final = (
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
)
_ORIGINAL: Final = ("x-original-url", "x-original-method")
# Every header this endpoint reads: each at most once, never under an ``_`` alias.
_READ: Final = frozenset(
    (*_FORWARDED, *_ORIGINAL, "x-forwarded-for", "host", "user-agent", "cookie")
)
_ALIASES: Final = {name.replace("-", "_") for name in _READ if "-" in name}
_ACTION: Final = re.compile(r"http\.[a-z0-9][a-z0-9._-]{0,120}")
_NO_STORE: Final = {"Cache-Control": "no-store"}
_log = structlog.get_logger("stepguard.forward_auth")


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardAuthConfig:
    """``trusted_proxies``: the networks whose forwarded headers are read (default loopback).
    ``login_url``: where a browser without a session goes (``return_to`` appended)."""

    trusted_proxies: tuple[IpNetwork, ...] = tuple(ipaddress.ip_network(n) for n in _LOOPBACK)
    login_url: str | None = None

    @classmethod
    def parse(cls, trusted_proxies: Sequence[str], login_url: str | None) -> ForwardAuthConfig:
        """Raises ``ValueError`` for a malformed network."""
        return cls(
            trusted_proxies=tuple(ipaddress.ip_network(n.strip()) for n in trusted_proxies),
            login_url=login_url,
        )

    def trusts(self, peer: str | None) -> bool:
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted_proxies)


def _headers(request: Request) -> dict[str, str]:
    """The headers read here, by canonical name; refuses aliases and duplicates."""
    found: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in _ALIASES:
            raise ForwardedRequestError(f"header {name!r} is an alias of a forwarded header")
        if name not in _READ:
            continue
        value = raw_value.decode("latin-1")
        if name in found:
            if name != "cookie":
                raise ForwardedRequestError(f"header {name!r} is repeated")
            value = f"{found[name]}; {value}"
        found[name] = value
    return found


def _cookie(header: str | None, name: str) -> str | None:
    """The one value of cookie ``name``; a repeated name (a shadowing attempt) is refused."""
    if not header:
        return None
    values = [
        value.strip()
        for part in header.split(";")
        for key, sep, value in [part.strip().partition("=")]
        if sep and key == name
    ]
    if len(values) > 1:
        raise ForwardedRequestError("the StepGuard cookie is repeated")
    return values[0] if values else None


def _original(headers: dict[str, str], envoy: tuple[str, str] | None) -> HttpRequest:
    forwarded = [name for name in _FORWARDED if name in headers]
    original = [name for name in _ORIGINAL if name in headers]
    if envoy is not None:
        method, uri = envoy
        if original or set(forwarded) - {"x-forwarded-proto"}:
            raise ForwardedRequestError("the Envoy shape takes only X-Forwarded-Proto")
        return request_from_parts(
            method=method,
            proto=headers.get("x-forwarded-proto"),
            host=headers.get("host"),
            uri=uri,
        )
    if original:
        if forwarded:
            raise ForwardedRequestError("both X-Original-* and X-Forwarded-* headers were sent")
        proto, authority, uri = parse_absolute_url(headers.get("x-original-url"))
        return request_from_parts(
            method=headers.get("x-original-method"), proto=proto, host=authority, uri=uri
        )
    return request_from_parts(
        method=headers.get("x-forwarded-method"),
        proto=headers.get("x-forwarded-proto"),
        host=headers.get("x-forwarded-host"),
        uri=headers.get("x-forwarded-uri"),
    )


def _empty(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers={**_NO_STORE, **(headers or {})})


def _header_value(text: str) -> str:
    """Printable ASCII for a header value (subject ids and groups are ids already)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def forward_auth_router(
    services: Services, pages: PagesConfig, config: ForwardAuthConfig
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    forward = services.forward_auth

    def location(target: str, original: HttpRequest) -> str:
        back = safe_return_to(original.url, allowed_origins=pages.return_to_origins)
        return with_query(target, return_to=back) if back else target

    def redirect(target: str, original: HttpRequest, mode_redirect: bool) -> Response:
        return _empty(302 if mode_redirect else 401, {"Location": location(target, original)})

    async def answer(request: Request, envoy: tuple[str, str] | None) -> Response:
        peer = request.client.host if request.client else None
        if not config.trusts(peer):
            _log.warning("forward_auth.untrusted_peer", peer=peer)
            return _empty(403)
        # Envoy's check request carries the original query: it always redirects (302).
        params = request.query_params if envoy is None else None
        mode = params.get("mode", "status") if params is not None else "redirect"
        action = params.get("action", FORWARD_AUTH_ACTION) if params is not None else None
        action = action or FORWARD_AUTH_ACTION
        try:
            if params is not None and (
                mode not in ("status", "redirect")
                or len(params.getlist("mode")) > 1
                or _ACTION.fullmatch(action) is None
                or len(params.getlist("action")) > 1
            ):
                raise ForwardedRequestError("mode must be status or redirect; action http.*")
            headers = _headers(request)
            original = _original(headers, envoy)
            check = ForwardCheck(
                cookie=_cookie(headers.get("cookie"), pages.cookie_name),
                request=original,
                action=action,
                ip=parse_client_ip(headers.get("x-forwarded-for")),
                user_agent=headers.get("user-agent"),
            )
        except ForwardedRequestError as error:
            _log.warning("forward_auth.bad_request", peer=peer, reason=error.message)
            return _empty(400)
        verdict = await forward.check(check)
        if isinstance(verdict, ForwardAllowed):
            subject = verdict.subject
            identity = {
                "Remote-User": _header_value(subject.id),
                "Remote-Groups": _header_value(",".join(subject.groups)),
                "Remote-ACR": verdict.acr or "",
            }
            if subject.email:
                identity["Remote-Email"] = _header_value(subject.email)
            return _empty(200, identity)
        mode_redirect = mode == "redirect"
        if isinstance(verdict, ForwardStepUp):
            page = pages.page_url(
                f"/challenge/{verdict.challenge.id}", verdict.page_link.token.reveal()
            )
            return redirect(page, original, mode_redirect)
        if isinstance(verdict, ForwardLogin) and config.login_url:
            return redirect(config.login_url, original, mode_redirect)
        return _empty(403)

    async def standard(request: Request) -> Response:
        return await answer(request, None)

    async def envoy(request: Request) -> Response:
        raw_path: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
        uri = raw_path.decode("latin-1")[len(ENVOY_PREFIX) :]
        query = request.scope.get("query_string", b"").decode("latin-1")
        return await answer(request, (request.method, f"{uri}?{query}" if query else uri))

    # Any method, WebDAV's included: nginx's auth subrequest keeps the original request's
    # method. (Starlette limits a function endpoint to GET; an ASGI endpoint takes any.)
    for path, handler in (
        ("/forward-auth", standard),
        (ENVOY_PREFIX + "/{original:path}", envoy),
    ):
        router.routes.append(Route(path, _AnyMethod(handler), include_in_schema=False))
    return router


class _AnyMethod:
    """An ASGI endpoint around a request handler, for a route that takes every method."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handler(Request(scope, receive))
        await response(scope, receive, send)
