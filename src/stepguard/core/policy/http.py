"""HTTP request matching for forward-auth rules (``match.hosts``, ``paths``, ``methods``).

As Authelia's access control does, a rule may name the hosts, paths and methods it covers.
They are only ever compared with a forward-auth request (:class:`HttpRequest`); a rule that
names any of them never matches a request without one (a ``/v1/decisions`` call).

- ``hosts``: exact names (``app.example.com``) or one leading wildcard label
  (``*.example.com``: any subdomain, at any depth, but not ``example.com`` itself); compared
  lowercased, without the port.
- ``paths``: an entry starting with ``^`` is a regular expression (Python ``re``) matched
  against the whole path; anything else is a glob where ``*`` matches within one segment
  (no ``/``), ``**`` across segments and ``?`` one character other than ``/``. Matched against
  the percent-decoded path without the query; case-sensitive.
- ``methods``: HTTP method tokens, compared uppercased.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from stepguard.core.policy.model import HttpRequest

__all__ = ["HttpMatch", "compile_path", "host_problem", "method_problem", "path_problem"]

_LABEL: Final = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST: Final = re.compile(rf"(\*\.)?({_LABEL}\.)*{_LABEL}")
_METHOD: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")


def host_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid ``hosts`` entry, or ``None``."""
    if _HOST.fullmatch(pattern.lower()) is None:
        return (
            f"{pattern!r} is not a host name or '*.' followed by one (no ports, schemes, paths "
            "or other wildcards)"
        )
    return None


def method_problem(method: str) -> str | None:
    if _METHOD.fullmatch(method) is None:
        return f"{method!r} is not an HTTP method token"
    return None


def _glob(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return "".join(out)


def compile_path(pattern: str) -> re.Pattern[str]:
    """The regex for one ``paths`` entry, for ``fullmatch``. Raises ``re.error``."""
    return re.compile(pattern if pattern.startswith("^") else _glob(pattern))


def path_problem(pattern: str) -> str | None:
    if pattern.startswith("^"):
        try:
            compile_path(pattern)
        except re.error as error:
            return f"{pattern!r} is not a valid regular expression: {error}"
        return None
    if not pattern.startswith("/"):
        return f"{pattern!r} must start with '/' (or '^' for a regular expression)"
    return None


@dataclass(frozen=True, slots=True)
class HttpMatch:
    """The compiled HTTP side of one rule; ``None`` fields match anything."""

    hosts: frozenset[str] | None
    host_suffixes: tuple[str, ...]
    paths: tuple[re.Pattern[str], ...] | None
    methods: frozenset[str] | None

    @classmethod
    def build(
        cls,
        *,
        hosts: Sequence[str] | None,
        paths: Sequence[str] | None,
        methods: Sequence[str] | None,
    ) -> HttpMatch:
        exact = None
        suffixes: tuple[str, ...] = ()
        if hosts is not None:
            lowered = [h.lower() for h in hosts]
            exact = frozenset(h for h in lowered if not h.startswith("*."))
            suffixes = tuple(h[1:] for h in lowered if h.startswith("*."))
        # Compiled one by one: a regex's inline flags must stay at its own start.
        compiled = tuple(compile_path(p) for p in paths) if paths is not None else None
        return cls(
            hosts=exact,
            host_suffixes=suffixes,
            paths=compiled,
            methods=frozenset(m.upper() for m in methods) if methods is not None else None,
        )

    def matches(self, request: HttpRequest | None) -> bool:
        if request is None:
            return False
        if self.methods is not None and request.method not in self.methods:
            return False
        if self.hosts is not None:
            host = request.host
            if host not in self.hosts and not any(
                host.endswith(suffix) for suffix in self.host_suffixes
            ):
                return False
        if self.paths is None:
            return True
        path = request.path
        return any(p.fullmatch(path) is not None for p in self.paths)
