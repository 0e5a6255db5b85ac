"""The decision: a matched rule, the session's factors and the risk, combined.

``decide`` is total and fails closed: a rule that cannot be evaluated is a ``Deny``; a
degraded risk assessment never yields ``Allow`` unless the session meets a floor requirement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from stepguard.core.assurance import AssuranceLevel, CompletedFactor, Requirement, satisfies
from stepguard.core.errors import PolicyEvaluationError
from stepguard.core.policy.model import CompiledPolicy, Outcome, PolicyInput, Rule
from stepguard.core.risk import RiskAssessment

# What any request needs while risk cannot be assessed (risk port failed or timed out).
DEGRADED_RISK_FLOOR = Requirement(acr=AssuranceLevel.AAL2, max_age=300)


@dataclass(frozen=True, slots=True, kw_only=True)
class Allow:
    rule: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepUp:
    rule: str
    requirement: Requirement
    reasons: tuple[str, ...]
    summary_template: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deny:
    rule: str
    reasons: tuple[str, ...]


Decision = Allow | StepUp | Deny


def strictest(a: Requirement, b: Requirement) -> Requirement:
    """A requirement that meets both: the higher level, the shorter age, both bindings.

    Allowed methods intersect. Two disjoint method sets have no factor in common, and an
    empty set would mean "any": that raises ``ValueError`` (callers fail closed) rather than
    quietly dropping one side's restriction.
    """
    ages = [age for age in (a.max_age, b.max_age) if age is not None]
    if a.methods and b.methods:
        methods = a.methods & b.methods
        if not methods:
            raise ValueError("no factor type satisfies both requirements")
    else:
        methods = a.methods or b.methods
    return Requirement(
        acr=max(a.acr, b.acr),
        max_age=min(ages) if ages else None,
        methods=methods,
        bind=a.bind or b.bind,
    )


def _rule_reason(rule: Rule) -> str:
    return rule.reason or f"rule {rule.id!r} matched"


def decide(
    *,
    policy: CompiledPolicy,
    inp: PolicyInput,
    factors: Sequence[CompletedFactor],
    risk: RiskAssessment,
    now: datetime,
    minimum: Requirement | None = None,
) -> Decision:
    """Decide one request. Never raises for a policy problem: it denies instead.

    ``minimum`` is what the caller itself asks for (an OIDC client's ``acr_values``): the
    result is the stricter of the matching rule and ``minimum``; a ``deny`` rule still
    denies."""
    try:
        rule = policy.evaluate(inp)
    except PolicyEvaluationError as error:
        return Deny(rule=error.rule, reasons=("the policy could not be evaluated",))

    reason = _rule_reason(rule)
    if rule.outcome is Outcome.DENY:
        return Deny(rule=rule.id, reasons=(reason,))

    if rule.outcome is Outcome.ALLOW:
        if not risk.degraded and minimum is None:
            return Allow(rule=rule.id, reasons=(reason,))
        # An allow rule asks for nothing; a degraded risk assessment or the caller may.
        rule_requirement: Requirement | None = None
    elif rule.requirement is None:  # a loader bug; fail closed
        return Deny(rule=rule.id, reasons=("rule has no requirement",))
    else:
        rule_requirement = rule.requirement

    reasons: tuple[str, ...] = (reason,)
    wanted = [r for r in (rule_requirement, minimum) if r is not None]
    if risk.degraded:
        wanted.append(DEGRADED_RISK_FLOOR)
        reasons = (*reasons, "risk assessment degraded")
    if minimum is not None:
        reasons = (*reasons, f"client asked for at least {minimum.acr.acr}")
    requirement = wanted[0]
    try:
        for other in wanted[1:]:
            requirement = strictest(requirement, other)
    except ValueError:  # no factor meets both: fail closed
        return Deny(rule=rule.id, reasons=("the requested level conflicts with the rule",))

    if not requirement.needs_grant and satisfies(factors, requirement, now=now):
        return Allow(rule=rule.id, reasons=(*reasons, "session meets the requirement"))
    return StepUp(
        rule=rule.id, requirement=requirement, reasons=reasons, summary_template=rule.summary
    )
