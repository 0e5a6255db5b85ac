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
