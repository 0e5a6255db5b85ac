"""What a compiled policy takes and returns. The loader and engine build on these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from stepguard.core.assurance import Requirement


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    STEP_UP = "step_up"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A compiled rule's result side: what happens when it matches.

    ``summary`` is a template shown to the end user on the step-up prompt, with
    ``{context.amount}``-style placeholders (see :func:`render_summary`).
    """

    id: str
    outcome: Outcome
    requirement: Requirement | None = None  # set iff outcome is STEP_UP
    reason: str = ""
    description: str = ""
    summary: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """The original HTTP request behind a forward-auth check, as a proxy reported it.

    Built only by :mod:`stepguard.core.forward_auth` (strict parsing). ``host`` is the
    lowercased host name without port (an IPv6 literal keeps its brackets); ``path`` is
    percent-decoded once and free of dot segments, empty segments, ``;`` and ``\\``;
    ``uri`` is the path and query exactly as received (for ``return_to``).
    """

    method: str  # uppercase token
    scheme: str  # "http" or "https"
    host: str
    port: int | None
    path: str
    query: str
    uri: str

    @property
    def url(self) -> str:
        """The original URL (scheme, authority as received, path and query)."""
        authority = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.scheme}://{authority}{self.uri}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyInput:
    """Everything a rule may look at. The mappings are what CEL sees under these names."""

    action: str
    resource: str | None = None
    groups: frozenset[str] = frozenset()
    subject: Mapping[str, Any] = field(default_factory=dict)
    session: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    request: Mapping[str, Any] = field(default_factory=dict)
    risk: Mapping[str, Any] = field(default_factory=dict)
    # Set for forward-auth requests only: what ``match.hosts/paths/methods`` look at.
    http: HttpRequest | None = None


class CompiledPolicy(Protocol):
    """A validated policy, compiled once. ``evaluate`` re-parses nothing.

    It returns the first matching rule (or the default rule) and raises
    :class:`~stepguard.core.errors.PolicyEvaluationError` when a condition fails at run time;
    callers fail closed.
    """

    @property
    def source(self) -> str: ...

    @property
    def rule_count(self) -> int: ...

    def evaluate(self, inp: PolicyInput) -> Rule: ...
