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

It is a raw ASGI endpoint in front of the FastAPI app (:class:`ForwardAuthPaths`): a check
runs before every proxied request, and FastAPI's routing, dependency solving and middleware
would cost several times the check itself. Any method is accepted (nginx's auth subrequest
keeps the original method).

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

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

__all__ = [
    "ENVOY_PREFIX",
    "FORWARD_AUTH_PATH",
    "ForwardAuthConfig",
    "ForwardAuthPaths",
    "IpNetwork",
]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARD_AUTH_PATH: Final = "/forward-auth"
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
# An explicit empty length: without it uvicorn answers chunked, and nginx treats the chunked
# terminator as a body it will not read, closing the connection after every check.
_FIXED: Final = ((b"cache-control", b"no-store"), (b"content-length", b"0"))
_EMPTY_BODY: Final = {"type": "http.response.body", "body": b""}
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


def _headers(scope: Scope) -> dict[str, str]:
    """The headers read here, by canonical name; refuses aliases and duplicates."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
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


def _header_value(text: str) -> bytes:
    """Printable ASCII for a header value (subject ids and groups are ids already)."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return "".join(c if " " <= c <= "~" else "?" for c in text).encode("ascii")


def _options(scope: Scope) -> tuple[str, str]:
    """``(mode, action)`` from the check URL's query (``/forward-auth`` only)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    modes = query.get("mode", ["status"])
    actions = query.get("action", [FORWARD_AUTH_ACTION])
    if len(modes) != 1 or modes[0] not in ("status", "redirect"):
        raise ForwardedRequestError("mode must be status or redirect")
    if len(actions) != 1 or _ACTION.fullmatch(actions[0]) is None:
        raise ForwardedRequestError("action must be one http.* action name")
    return modes[0], actions[0]


class ForwardAuthPaths:
    """ASGI middleware: ``/forward-auth`` and ``/forward-auth/envoy/...`` are answered here;
    every other request goes on to ``app``."""

    def __init__(
        self, app: ASGIApp, *, services: Services, pages: PagesConfig, config: ForwardAuthConfig
    ) -> None:
        self._app = app
        self._forward = services.forward_auth
        self._pages = pages
        self._config = config
        self._peers: dict[str, bool] = {}  # trust by peer address: a proxy's few addresses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == FORWARD_AUTH_PATH:
                await self._answer(scope, send, envoy=False)
                return
            if path.startswith(ENVOY_PREFIX + "/"):
                await self._answer(scope, send, envoy=True)
                return
        await self._app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, *, envoy: bool) -> None:
        try:
            status, headers = await self._check(scope, envoy=envoy)
        except Exception as error:  # never an allow; the proxy answers 500
            _log.error("forward_auth.failed", error=type(error).__name__)
            status, headers = 500, []
        await send(
            {"type": "http.response.start", "status": status, "headers": [*_FIXED, *headers]}
        )
        await send(_EMPTY_BODY)

    async def _check(self, scope: Scope, *, envoy: bool) -> tuple[int, list[tuple[bytes, bytes]]]:
        client = scope.get("client")
        peer = client[0] if client else None
        trusted = self._peers.get(peer) if peer is not None else False
        if trusted is None:
            trusted = self._config.trusts(peer)
            if len(self._peers) < 1024:
                self._peers[peer or ""] = trusted
        if not trusted:
            _log.warning("forward_auth.untrusted_peer", peer=peer)
            return 403, []
        try:
            if envoy:
                # The check request is the original request under a prefix; its query is the
                # original query, so Envoy always gets 302 and the default action.
                raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
                uri = raw_path.decode("latin-1")[len(ENVOY_PREFIX) :]
                query = scope.get("query_string", b"").decode("latin-1")
                shape = (scope["method"], f"{uri}?{query}" if query else uri)
                mode, action = "redirect", FORWARD_AUTH_ACTION
            else:
                shape = None
                mode, action = _options(scope)
            headers = _headers(scope)
            original = _original(headers, shape)
            check = ForwardCheck(
                cookie=_cookie(headers.get("cookie"), self._pages.cookie_name),
                request=original,
                action=action,
                ip=parse_client_ip(headers.get("x-forwarded-for")),
                user_agent=headers.get("user-agent"),
            )
        except ForwardedRequestError as error:
            _log.warning("forward_auth.bad_request", peer=peer, reason=error.message)
            return 400, []
        verdict = await self._forward.check(check)
        if isinstance(verdict, ForwardAllowed):
            subject = verdict.subject
            identity = [
                (b"remote-user", _header_value(subject.id)),
                (b"remote-groups", _header_value(",".join(subject.groups))),
                (b"remote-acr", (verdict.acr or "").encode("ascii")),
            ]
            if subject.email:
                identity.append((b"remote-email", _header_value(subject.email)))
            return 200, identity
        status = 302 if mode == "redirect" else 401
        if isinstance(verdict, ForwardStepUp):
            page = self._pages.page_url(
                f"/challenge/{verdict.challenge.id}", verdict.page_link.token.reveal()
            )
            return status, [(b"location", self._location(page, original))]
        if isinstance(verdict, ForwardLogin) and self._config.login_url:
            return status, [(b"location", self._location(self._config.login_url, original))]
        return 403, []

    def _location(self, target: str, original: HttpRequest) -> bytes:
        back = safe_return_to(original.url, allowed_origins=self._pages.return_to_origins)
        return (with_query(target, return_to=back) if back else target).encode("latin-1")
