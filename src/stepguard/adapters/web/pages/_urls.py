"""Where the pages may send a browser: the ``return_to`` allow-list, and page URLs.

An open redirect turns a trusted origin into a phishing springboard, so ``return_to`` is
refused unless it is unambiguous: an absolute ``http(s)`` URL whose origin (scheme, host,
port, defaults made explicit) is exactly one of the configured origins, or one of the pages'
own paths. Anything a browser might read differently from Python's parser (backslashes,
control characters or whitespace, userinfo, scheme-relative ``//host``, other schemes) is
refused outright rather than "cleaned".
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["INTERNAL_PREFIXES", "normalize_origin", "origin_of", "safe_return_to", "with_query"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# The pages' own paths that an internal return_to may name (the account page, and the OIDC
# provider's continuation of an authorization request after sign-in or step-up).
INTERNAL_PREFIXES = ("/account/", "/oidc/authorize/continue?")
MAX_RETURN_TO = 2048


def _ambiguous(value: str) -> bool:
    return "\\" in value or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value)


def _origin(parts: SplitResult) -> str | None:
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc or "@" in parts.netloc:
        return None
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    if not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def origin_of(value: str) -> str | None:
    """The normalized origin of an absolute http(s) URL or ``Origin`` header, else ``None``."""
    if _ambiguous(value):
        return None
    return _origin(urlsplit(value))


def normalize_origin(origin: str) -> str:
    """``scheme://host:port`` with the default port explicit and the host lowercased.

    Raises ``ValueError`` for anything that is not a bare http(s) origin (configuration)."""
    parts = urlsplit(origin.strip())
    normalized = _origin(parts)
    if (
        normalized is None
        or _ambiguous(origin.strip())
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
    return normalized


def safe_return_to(value: str | None, *, allowed_origins: Iterable[str]) -> str | None:
    """``value`` if the pages may redirect there, else ``None``.

    ``allowed_origins`` must be normalized (:func:`normalize_origin`)."""
    if not value or len(value) > MAX_RETURN_TO or _ambiguous(value):
        return None
    if value.startswith("/"):
        if value.startswith("//"):
            return None
        return value if value.startswith(INTERNAL_PREFIXES) else None
    parts = urlsplit(value)
    origin = _origin(parts)
    if origin is None or origin not in set(allowed_origins):
        return None
    return value


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to (or replacing the same names in) its query."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
