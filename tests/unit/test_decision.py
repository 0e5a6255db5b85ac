"""decide(): rule + factors + risk -> Allow | StepUp | Deny, always naming the rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stepguard.core.assurance import (
    AssuranceLevel,
    AuthMethod,
    CompletedFactor,
    FactorType,
    Requirement,
    primary_factors,
    step_up_factor,
)
from stepguard.core.decision import Allow, Decision, Deny, StepUp, decide, strictest
from stepguard.core.policy.loader import load_policy
from stepguard.core.policy.model import PolicyInput
from stepguard.core.risk import LOW_RISK, UNAVAILABLE_RISK, RiskAssessment, RiskLevel

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

POLICY = load_policy(
    """
version: 1
rules:
  - id: view
    match: {actions: ["account.view"]}
    allow: true
  - id: transfer-large
    match: {actions: ["payments.transfer"]}
    when: "context.amount > 100"
    step_up: {acr: aal2, max_age: 300, bind: true}
    summary: "Transfer {context.amount} to {context.payee}"
  - id: transfer-small
    match: {actions: ["payments.transfer"]}
    allow: true
  - id: settings
    match: {actions: ["settings.*"]}
    step_up: {acr: aal2, max_age: 300}
  - id: risky
    match: {actions: ["risky.*"]}
    when: "risk.level == 'high'"
    deny: true
  - id: risky-ok
    match: {actions: ["risky.*"]}
    allow: true
default:
  deny: true
""",
    source="test-policy.yaml",
)

PASSWORD = primary_factors([AuthMethod.PWD], at=NOW - timedelta(hours=2))


def run(
    action: str,
    *,
    context: dict[str, object] | None = None,
    factors: tuple[CompletedFactor, ...] = PASSWORD,
    risk: RiskAssessment = LOW_RISK,
) -> Decision:
    inp = PolicyInput(action=action, context=context or {}, risk=risk.as_cel())
    return decide(policy=POLICY, inp=inp, factors=factors, risk=risk, now=NOW)


def test_an_allow_rule_allows_and_names_itself() -> None:
    decision = run("account.view")
    assert isinstance(decision, Allow)
    assert decision.rule == "view"


def test_no_matching_rule_falls_to_the_default() -> None:
    decision = run("nothing.here")
    assert isinstance(decision, Deny)
    assert decision.rule == "default"


def test_a_step_up_rule_asks_for_its_requirement() -> None:
    decision = run("settings.change")
    assert isinstance(decision, StepUp)
    assert decision.rule == "settings"
    assert decision.requirement == Requirement(acr=AssuranceLevel.AAL2, max_age=300)


def test_a_fresh_step_up_satisfies_an_unbound_rule() -> None:
    fresh = (
        *PASSWORD,
        step_up_factor(FactorType.TOTP, factor_id="f", at=NOW - timedelta(seconds=60)),
    )
    decision = run("settings.change", factors=fresh)
    assert isinstance(decision, Allow)
    assert decision.rule == "settings"


def test_a_stale_step_up_does_not() -> None:
    stale = (
        *PASSWORD,
        step_up_factor(FactorType.TOTP, factor_id="f", at=NOW - timedelta(seconds=301)),
    )
    assert isinstance(run("settings.change", factors=stale), StepUp)


def test_a_bound_rule_always_needs_a_grant_even_with_a_fresh_factor() -> None:
    fresh = (*PASSWORD, step_up_factor(FactorType.TOTP, factor_id="f", at=NOW))
    decision = run("payments.transfer", context={"amount": 500, "payee": "X"}, factors=fresh)
    assert isinstance(decision, StepUp)
    assert decision.requirement.bind
    assert decision.summary_template == "Transfer {context.amount} to {context.payee}"


def test_conditions_select_between_rules() -> None:
    assert run("payments.transfer", context={"amount": 50}).rule == "transfer-small"


def test_a_condition_that_fails_at_run_time_denies() -> None:
    decision = run("payments.transfer", context={"amount": "lots"})
    assert isinstance(decision, Deny)
    assert decision.rule == "transfer-large"


def test_a_missing_context_field_denies_rather_than_skipping_the_rule() -> None:
    decision = run("payments.transfer", context={})
    assert isinstance(decision, Deny)


def test_risk_feeds_conditions() -> None:
    high = RiskAssessment(score=0.8, level=RiskLevel.HIGH, reasons=("new device",))
    assert isinstance(run("risky.thing", risk=high), Deny)
    assert isinstance(run("risky.thing"), Allow)


def test_degraded_risk_turns_an_allow_into_a_step_up() -> None:
    decision = run("account.view", risk=UNAVAILABLE_RISK)
    assert isinstance(decision, StepUp)
    assert decision.requirement.acr >= AssuranceLevel.AAL2
    assert "risk assessment degraded" in decision.reasons


def test_degraded_risk_tightens_a_step_up() -> None:
    decision = run(
        "payments.transfer", context={"amount": 500, "payee": "X"}, risk=UNAVAILABLE_RISK
    )
    assert isinstance(decision, StepUp)
    assert decision.requirement.bind
    assert decision.requirement.max_age == 300


def test_strictest_takes_the_higher_level_shorter_age_and_any_binding() -> None:
    a = Requirement(acr=AssuranceLevel.PHR, max_age=600, methods=frozenset({"totp"}))
    b = Requirement(acr=AssuranceLevel.AAL2, max_age=60, bind=True)
    combined = strictest(a, b)
    assert combined == Requirement(
        acr=AssuranceLevel.PHR, max_age=60, methods=frozenset({"totp"}), bind=True
    )


def test_strictest_refuses_disjoint_methods_instead_of_dropping_one() -> None:
    totp_only = Requirement(acr=AssuranceLevel.AAL2, methods=frozenset({"totp"}))
    recovery_only = Requirement(acr=AssuranceLevel.AAL2, methods=frozenset({"recovery_code"}))
    with pytest.raises(ValueError, match="no factor type"):
        strictest(totp_only, recovery_only)
