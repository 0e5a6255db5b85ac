"""Policy test cases (``stepguard policy test``): parsing, running, and the demo's own cases."""

from __future__ import annotations

import textwrap
from importlib import resources

import pytest

from stepguard.core.assurance import AssuranceLevel
from stepguard.core.errors import PolicyError
from stepguard.core.policy.cases import (
    UNCHECKED,
    CaseResult,
    CasesReport,
    Expectation,
    PolicyCase,
    parse_cases,
    run_case,
    run_cases,
)
from stepguard.core.policy.loader import load_policy
from stepguard.core.policy.model import CompiledPolicy, Outcome, PolicyInput

SOURCE = "cases/test.yaml"

POLICY = """
version: 1
rules:
  - id: large
    match: {actions: [payments.transfer]}
    when: "context.amount > 100"
    step_up: {acr: aal2, max_age: 300, methods: [totp], bind: true}
  - {id: small, match: {actions: [payments.transfer]}, allow: true}
  - {id: admins, match: {actions: ["admin.*"], groups: [admins]}, step_up: {acr: aal3}}
default: {deny: true}
"""


def policy() -> CompiledPolicy:
    return load_policy(POLICY, source="policy.yaml")


def parse(text: str) -> tuple[PolicyCase, ...]:
    return parse_cases(textwrap.dedent(text), source=SOURCE)


def rejected(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse(text)
    assert info.value.source == SOURCE
    assert SOURCE in str(info.value)
    return info.value


def demo_text(name: str) -> str:
    return resources.files("stepguard").joinpath(f"demo/{name}").read_text("utf-8")


# -- the demo ----------------------------------------------------------------------------------


def test_every_demo_case_passes_against_the_demo_policy() -> None:
    demo = load_policy(demo_text("policy.yaml"), source="demo/policy.yaml")
    report = run_cases(demo, parse_cases(demo_text("policy_cases.yaml"), source="demo/cases"))
    assert [r.message for r in report.failures] == []
    assert report.ok
    assert report.total == report.passed >= 15
    assert report.policy == "demo/policy.yaml"


def test_the_demo_cases_cover_every_demo_rule() -> None:
    demo = load_policy(demo_text("policy.yaml"), source="demo/policy.yaml")
    report = run_cases(demo, parse_cases(demo_text("policy_cases.yaml"), source="demo/cases"))
    decided = {r.actual.id for r in report.results if r.actual is not None}
    expected_ids = {
        "account-view",
        "high-risk",
        "transfer-large",
        "transfer-small",
        "email-change",
        "payee-add",
        "factors-manage",
        "database-update",
        "admin-high-risk",
        "admin",
        "admin-block",
        "oidc-sign-in",
        "oidc-sign-in-normal",
        "default",
    }
    assert decided == expected_ids


# -- parsing -----------------------------------------------------------------------------------


def test_a_case_parses_into_an_input_and_an_expectation() -> None:
    (case,) = parse(
        """
        cases:
          - name: large transfer
            input:
              action: payments.transfer
              resource: accounts/1
              groups: [staff]
              subject: {id: u1}
              session: {id: s1}
              context: {amount: 150}
              request: {ip: 10.0.0.1}
              risk: {level: low}
            expect:
              outcome: step_up
              rule: large
              acr: aal2
              max_age: 300
              methods: [totp]
              bind: true
        """
    )
    assert case == PolicyCase(
        name="large transfer",
        input=PolicyInput(
            action="payments.transfer",
            resource="accounts/1",
            groups=frozenset({"staff"}),
            subject={"id": "u1"},
            session={"id": "s1"},
            context={"amount": 150},
            request={"ip": "10.0.0.1"},
            risk={"level": "low"},
        ),
        expect=Expectation(
            outcome=Outcome.STEP_UP,
            rule="large",
            acr=AssuranceLevel.AAL2,
            max_age=300,
            methods=frozenset({"totp"}),
            bind=True,
        ),
    )


def test_fields_left_out_of_expect_are_not_checked() -> None:
    (case,) = parse("cases: [{name: c, input: {action: a}, expect: {outcome: deny}}]")
    assert case.expect == Expectation(outcome=Outcome.DENY)
    assert case.expect.max_age is UNCHECKED
    assert case.input == PolicyInput(action="a")


def test_max_age_null_expects_any_age() -> None:
    (case,) = parse(
        "cases: [{name: c, input: {action: a}, expect: {outcome: step_up, max_age: null}}]"
    )
    assert case.expect.max_age is None
    report = run_cases(
        policy(),
        [
            PolicyCase(
                name="c",
                input=PolicyInput(action="admin.x", groups=frozenset({"admins"})),
                expect=case.expect,
            )
        ],
    )
    assert report.ok


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("[]", None, "mapping at the top"),
        ("cases: []", "cases", "non-empty list"),
        ("cases: {}", "cases", "non-empty list"),
        ("tests: []", "tests", "unknown field 'tests'"),
        ("cases: [oops]", "cases[0]", "a case must be a mapping"),
        (
            "cases: [{input: {action: a}, expect: {outcome: allow}}]",
            "cases[0].name",
            "needs a name",
        ),
        ("cases: [{name: c, expect: {outcome: allow}}]", "cases[0].input", "needs input"),
        ("cases: [{name: c, input: {action: a}}]", "cases[0].expect", "needs expect"),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: allow}, skip: true}]",
            "cases[0].skip",
            "unknown field 'skip'",
        ),
        (
            "cases: [{name: c, input: {}, expect: {outcome: allow}}]",
            "cases[0].input.action",
            "needs an action",
        ),
        (
            "cases: [{name: c, input: {action: a, verb: b}, expect: {outcome: allow}}]",
            "cases[0].input.verb",
            "unknown field 'verb'",
        ),
        (
            "cases: [{name: c, input: {action: 3}, expect: {outcome: allow}}]",
            "cases[0].input.action",
            "must be a string",
        ),
        (
            "cases: [{name: c, input: {action: a, context: [1]}, expect: {outcome: allow}}]",
            "cases[0].input.context",
            "context must be a mapping",
        ),
        (
            "cases: [{name: c, input: {action: a, groups: admins}, expect: {outcome: allow}}]",
            "cases[0].input.groups",
            "must be a list",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {}}]",
            "cases[0].expect.outcome",
            "needs an outcome",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: permit}}]",
            "cases[0].expect.outcome",
            "unknown outcome string 'permit'",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: allow, acr: aal2}}]",
            "cases[0].expect.acr",
            "only a step_up outcome has acr",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: step_up, acr: aal5}}]",
            "cases[0].expect.acr",
            "unknown level string 'aal5'",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: step_up, max_age: '300'}}]",
            "cases[0].expect.max_age",
            "must be an integer",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: step_up, methods: [sms]}}]",
            "cases[0].expect.methods[0]",
            "unknown method 'sms'",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: step_up, bind: 1}}]",
            "cases[0].expect.bind",
            "must be true or false",
        ),
        (
            "cases: [{name: c, input: {action: a}, expect: {outcome: allow, verdict: x}}]",
            "cases[0].expect.verdict",
            "unknown field 'verdict'",
        ),
    ],
)
def test_malformed_cases_are_rejected_naming_the_field(
    text: str, field: str | None, fragment: str
) -> None:
    error = rejected(text)
    assert error.field == field
    assert fragment in str(error)


def test_errors_inside_a_named_case_mention_the_case() -> None:
    error = rejected("cases: [{name: big one, input: {action: a}, expect: {outcome: nope}}]")
    assert "case 'big one'" in str(error)
    assert "'cases[0].expect.outcome'" in str(error)


def test_duplicate_case_names_are_rejected() -> None:
    error = rejected(
        """
        cases:
          - {name: same, input: {action: a}, expect: {outcome: deny}}
          - {name: same, input: {action: b}, expect: {outcome: deny}}
        """
    )
    assert error.field == "cases[1].name"
    assert "duplicate case name" in str(error)


def test_duplicate_keys_in_a_cases_file_are_rejected() -> None:
    error = rejected(
        "cases: [{name: c, input: {action: a}, expect: {outcome: deny, outcome: allow}}]"
    )
    assert "duplicate key 'outcome'" in str(error)


# -- running -----------------------------------------------------------------------------------


def test_a_matching_expectation_passes_with_an_empty_message() -> None:
    (case,) = parse(
        """
        cases:
          - name: big
            input: {action: payments.transfer, context: {amount: 500}}
            expect:
              {outcome: step_up, rule: large, acr: aal2, max_age: 300, methods: [totp], bind: true}
        """
    )
    result = run_case(policy(), case)
    assert result.passed
    assert result.message == ""
    assert result.actual is not None
    assert result.actual.id == "large"


def test_every_mismatch_is_listed_in_the_message() -> None:
    (case,) = parse(
        """
        cases:
          - name: wrong on every count
            input: {action: payments.transfer, context: {amount: 500}}
            expect:
              outcome: step_up
              rule: small
              acr: aal3
              max_age: 0
              methods: [recovery_code]
              bind: false
        """
    )
    result = run_case(policy(), case)
    assert not result.passed
    assert result.message == (
        "expected rule 'small', got 'large'; expected acr aal3, got aal2; "
        "expected max_age 0, got 300; expected methods ['recovery_code'], got ['totp']; "
        "expected bind False, got True"
    )


def test_a_wrong_outcome_fails() -> None:
    (case,) = parse("cases: [{name: c, input: {action: admin.x}, expect: {outcome: allow}}]")
    result = run_case(policy(), case)
    assert not result.passed
    assert result.message == "expected outcome allow, got deny"


def test_an_evaluation_error_is_a_failed_case_not_a_crash() -> None:
    cases = parse(
        """
        cases:
          - {name: no amount, input: {action: payments.transfer}, expect: {outcome: allow}}
          - {name: fine, input: {action: other}, expect: {outcome: deny, rule: default}}
        """
    )
    report = run_cases(policy(), cases)
    broken, fine = report.results
    assert broken == CaseResult(
        name="no amount",
        passed=False,
        expected=cases[0].expect,
        actual=None,
        message=broken.message,
    )
    assert broken.message.startswith("evaluation failed: rule 'large': ")
    assert "missing key 'amount'" in broken.message
    assert fine.passed
    assert (report.total, report.passed, report.failed, report.ok) == (2, 1, 1, False)
    assert report.failures == (broken,)


def test_a_report_without_cases_is_not_ok() -> None:
    report = CasesReport(policy="p", results=())
    assert (report.total, report.passed, report.failed, report.ok) == (0, 0, 0, False)


def test_the_demo_fails_closed_when_risk_is_missing() -> None:
    demo = load_policy(demo_text("policy.yaml"), source="demo/policy.yaml")
    (case,) = parse(
        """
        cases:
          - name: no risk
            input: {action: payments.transfer, context: {amount: 5}}
            expect: {outcome: allow}
        """
    )
    result = run_case(demo, case)
    assert not result.passed
    assert result.actual is None
    assert "rule 'high-risk'" in result.message
