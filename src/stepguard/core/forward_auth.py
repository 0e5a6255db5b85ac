"""Forward-auth: the original request a reverse proxy reports, parsed strictly.

Pure: the web adapter hands in header values (already checked for duplicates and aliases);
this module turns them into an :class:`~stepguard.core.policy.model.HttpRequest` or raises
:class:`~stepguard.core.errors.ForwardedRequestError`. Nothing is "cleaned": a value that a
proxy, StepGuard and the upstream application might read differently is refused, because a
forward-auth check that matched another path than the one the upstream serves is a bypass.

- method: an RFC 9110 token, uppercased for matching;
- proto: ``http`` or ``https``;
- host: an RFC 3986 ``host[:port]`` without userinfo: a DNS name (letters, digits, ``-``,
  ``_``, dots; one trailing dot dropped), an IPv4 address, or a bracketed IPv6 address;
- URI: origin-form (starts with ``/``), visible ASCII only, no fragment; its path is
  percent-decoded once (UTF-8) and must then contain no ``.`` or ``..`` segment, no empty
  segment (``//``), no ``;`` (path parameters), no backslash, no control character, and no
  encoded ``/``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final
from urllib.parse import unquote_to_bytes

from stepguard.core.errors import ForwardedRequestError
from stepguard.core.policy.model import HttpRequest

__all__ = [
    "FORWARD_AUTH_ACTION",
    "MAX_URI_LENGTH",
    "parse_absolute_url",
    "parse_client_ip",
    "parse_host",
    "parse_method",
    "parse_proto",
    "request_from_parts",
]

FORWARD_AUTH_ACTION: Final = "http.request"
"""The action of a forward-auth check unless the proxy names another ``http.`` action."""

MAX_URI_LENGTH: Final = 8192
_MAX_HOST_LENGTH: Final = 253

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
_LABEL: Final = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT: Final = re.compile(r"[0-9]{1,5}")
_VISIBLE_ASCII: Final = re.compile(r"[\x21-\x7e]+")
_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE: Final = re.compile(r"(https?)://([^/?#]+)(/[^#]*)?", re.IGNORECASE)


def parse_method(value: str | None) -> str:
    if value is None or _TOKEN.fullmatch(value) is None:
        raise ForwardedRequestError("the original method is missing or not a token")
    return value.upper()


def parse_proto(value: str | None) -> str:
    if value is None or value.lower() not in ("http", "https"):
        raise ForwardedRequestError("the original scheme is missing or not http/https")
    return value.lower()


@functools.lru_cache(maxsize=1024)  # a pure function over the few hosts a proxy fronts
def parse_host(value: str | None) -> tuple[str, int | None]:
    """``(host, port)`` from an RFC 3986 authority without userinfo."""
    if not value or len(value) > _MAX_HOST_LENGTH + 8 or _VISIBLE_ASCII.fullmatch(value) is None:
        raise ForwardedRequestError("the original host is missing or malformed")
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ForwardedRequestError("the original host is malformed")
        literal, rest = value[1:end], value[end + 1 :]
        try:
            address = ipaddress.IPv6Address(literal)
        except ValueError:
            raise ForwardedRequestError("the original host is malformed") from None
        host = f"[{address.compressed}]"
    else:
        name, sep, rest = value.partition(":")
        rest = sep + rest
        host = name.lower()
        if host.endswith("."):
            host = host[:-1]
        labels = host.split(".")
        if (
            not host
            or len(host) > _MAX_HOST_LENGTH
            or not all(_LABEL.fullmatch(label) for label in labels)
        ):
            raise ForwardedRequestError("the original host is malformed")
        if all(label.isdigit() for label in labels):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ForwardedRequestError("the original host is malformed") from None
    if rest:
        digits = rest[1:]
        if not rest.startswith(":") or _PORT.fullmatch(digits) is None:
            raise ForwardedRequestError("the original port is malformed")
        port = int(digits)
        if not 0 < port <= 65535:
            raise ForwardedRequestError("the original port is out of range")
    return host, port


def _decoded_path(raw: str) -> str:
    if _PERCENT.search(raw):
        raise ForwardedRequestError("the original path has a malformed percent-encoding")
    lowered = raw.lower()
    if "%2f" in lowered or "%5c" in lowered:
        raise ForwardedRequestError("the original path has an encoded slash or backslash")
    try:
        path = unquote_to_bytes(raw).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise ForwardedRequestError("the original path is not UTF-8") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or "\\" in path or ";" in path:
        raise ForwardedRequestError("the original path has a forbidden character")
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        if segment in (".", ".."):
            raise ForwardedRequestError("the original path has a dot segment")
        if not segment and i != len(segments) - 1:
            raise ForwardedRequestError("the original path has an empty segment")
    return path


@functools.lru_cache(maxsize=4096)  # pure; a browser repeats its requests
def request_from_parts(
    *, method: str | None, proto: str | None, host: str | None, uri: str | None
) -> HttpRequest:
    """The original request from the four values a proxy reports. Raises
    ``ForwardedRequestError`` for anything missing or malformed (never cached)."""
    parsed_method = parse_method(method)
    scheme = parse_proto(proto)
    hostname, port = parse_host(host)
    if (
        not uri
        or len(uri) > MAX_URI_LENGTH
        or not uri.startswith("/")
        or _VISIBLE_ASCII.fullmatch(uri) is None
        or "#" in uri
    ):
        raise ForwardedRequestError("the original URI is missing or malformed")
    raw_path, _, query = uri.partition("?")
    return HttpRequest(
        method=parsed_method,
        scheme=scheme,
        host=hostname,
        port=port,
        path=_decoded_path(raw_path),
        query=query,
        uri=uri,
    )


def parse_absolute_url(value: str | None) -> tuple[str, str, str]:
    """``(proto, authority, uri)`` of an absolute ``http(s)`` URL (``X-Original-URL``)."""
    match = _ABSOLUTE.fullmatch(value or "")
    if match is None or len(value or "") > MAX_URI_LENGTH + 300:
        raise ForwardedRequestError("the original URL is missing or malformed")
    proto, authority, uri = match.groups()
    if "@" in authority:
        raise ForwardedRequestError("the original URL has userinfo")
    return proto, authority, uri or "/"


@functools.lru_cache(maxsize=4096)
def parse_client_ip(value: str | None) -> str | None:
    """The client address a trusted proxy reports: the last entry of ``X-Forwarded-For``
    (the one the proxy itself appended). ``None`` when absent; malformed raises."""
    if value is None:
        return None
    last = value.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        raise ForwardedRequestError("X-Forwarded-For is malformed") from None
