"""Policy test cases: the pure half of ``stepguard policy test POLICY CASES`` (like ``opa test``).

The CLI reads both files; this module parses the cases text, runs each case against a
:class:`~stepguard.core.policy.model.CompiledPolicy` and returns typed results. A case whose
evaluation raises :class:`~stepguard.core.errors.PolicyEvaluationError` fails with that
message; it does not stop the run. Malformed cases raise
:class:`~stepguard.core.errors.PolicyError` naming the source and the field
(``cases[2].expect.acr``).

Schema::

    cases:                                  # required, non-empty
      - name: large transfers need aal2     # required, unique
        input:                              # required
          action: payments.transfer         # required
          resource: accounts/42             # optional
          groups: [staff]                   # optional
          subject: {id: u1}                 # optional mappings, as CEL sees them:
          session: {}                       #   subject, session, context, request, risk
          context: {amount: 150}
          request: {}
          risk: {level: low}
        expect:                             # required
          outcome: step_up                  # required: allow | deny | step_up
          rule: transfer-large              # optional: the id of the deciding rule
          acr: aal2                         # optional, step_up only
          max_age: 300                      # optional, step_up only (null: any age)
          methods: [totp]                   # optional, step_up only
          bind: true                        # optional, step_up only
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal

from stepguard.core.assurance import AssuranceLevel
from stepguard.core.errors import PolicyEvaluationError
from stepguard.core.policy._schema import (
    Where,
    boolean,
    describe,
    integer,
    known_fields,
    mapping,
    parse_yaml,
    string,
    string_list,
)
from stepguard.core.policy.loader import KNOWN_METHODS
from stepguard.core.policy.model import CompiledPolicy, Outcome, PolicyInput, Rule

_TOP_FIELDS: Final = ("cases",)
_CASE_FIELDS: Final = ("name", "input", "expect")
_INPUT_FIELDS: Final = (
    "action",
    "resource",
    "groups",
    "subject",
    "session",
    "context",
    "request",
    "risk",
)
_INPUT_MAPPINGS: Final = ("subject", "session", "context", "request", "risk")
_EXPECT_FIELDS: Final = ("outcome", "rule", "acr", "max_age", "methods", "bind")
_REQUIREMENT_FIELDS: Final = ("acr", "max_age", "methods", "bind")
_ACR_VALUES: Final = {level.acr: level for level in AssuranceLevel}
_OUTCOMES: Final = {outcome.value: outcome for outcome in Outcome}


class Unchecked(Enum):
    """Marks an expectation field the case leaves out (``None`` is a value for max_age)."""

    UNCHECKED = "unchecked"


UNCHECKED: Final = Unchecked.UNCHECKED


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What a case expects. ``None`` (``UNCHECKED`` for ``max_age``) means not checked."""

    outcome: Outcome
    rule: str | None = None
    acr: AssuranceLevel | None = None
    max_age: int | Literal[Unchecked.UNCHECKED] | None = UNCHECKED
    methods: frozenset[str] | None = None
    bind: bool | None = None

    def mismatches(self, actual: Rule) -> tuple[str, ...]:
        """How ``actual`` differs from this expectation; empty when it meets it."""
        found: list[str] = []
        if actual.outcome is not self.outcome:
            found.append(f"expected outcome {self.outcome.value}, got {actual.outcome.value}")
        if self.rule is not None and actual.id != self.rule:
            found.append(f"expected rule {self.rule!r}, got {actual.id!r}")
        requirement = actual.requirement
        if requirement is None:
            return tuple(found)
        if self.acr is not None and requirement.acr is not self.acr:
            found.append(f"expected acr {self.acr.acr}, got {requirement.acr.acr}")
        if self.max_age is not UNCHECKED and requirement.max_age != self.max_age:
            found.append(f"expected max_age {self.max_age}, got {requirement.max_age}")
        if self.methods is not None and requirement.methods != self.methods:
            want, got = sorted(self.methods), sorted(requirement.methods)
            found.append(f"expected methods {want}, got {got}")
        if self.bind is not None and requirement.bind != self.bind:
            found.append(f"expected bind {self.bind}, got {requirement.bind}")
        return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyCase:
    name: str
    input: PolicyInput
    expect: Expectation


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """One case's verdict. ``actual`` is ``None`` when evaluation raised."""

    name: str
    passed: bool
    expected: Expectation
    actual: Rule | None
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CasesReport:
    """Every case's result, in file order, for the policy named ``policy``."""

    policy: str
    results: tuple[CaseResult, ...]

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> int:
        return sum(1 for result in self.results if result.passed)

    @property
    def failed(self) -> int:
        return self.total - self.passed

    @property
    def ok(self) -> bool:
        """Every case passed (a report without cases is not ok: nothing was tested)."""
        return bool(self.results) and self.failed == 0

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        return tuple(result for result in self.results if not result.passed)


def _input(where: Where, value: Any) -> PolicyInput:
    spec = mapping(where, value, "input", "input")
    known_fields(where, spec, _INPUT_FIELDS, "input.")
    if "action" not in spec:
        where.fail("input needs an action", "input.action")
    action = string(where, spec["action"], "input.action")
    resource = None
    if "resource" in spec and spec["resource"] is not None:
        resource = string(where, spec["resource"], "input.resource")
    groups: frozenset[str] = frozenset()
    if "groups" in spec and spec["groups"] != []:
        groups = frozenset(string_list(where, spec["groups"], "input.groups", no_spaces=False))
    maps = {
        name: mapping(where, spec[name], f"input.{name}", name)
        if spec.get(name) is not None
        else {}
        for name in _INPUT_MAPPINGS
    }
    return PolicyInput(
        action=action,
        resource=resource,
        groups=groups,
        subject=maps["subject"],
        session=maps["session"],
        context=maps["context"],
        request=maps["request"],
        risk=maps["risk"],
    )


def _expectation(where: Where, value: Any) -> Expectation:
    spec = mapping(where, value, "expect", "expect")
    known_fields(where, spec, _EXPECT_FIELDS, "expect.")
    if "outcome" not in spec:
        where.fail("expect needs an outcome (allow, deny or step_up)", "expect.outcome")
    raw_outcome = spec["outcome"]
    if not isinstance(raw_outcome, str) or raw_outcome not in _OUTCOMES:
        where.fail(
            f"unknown outcome {describe(raw_outcome)} (expected allow, deny or step_up)",
            "expect.outcome",
        )
    outcome = _OUTCOMES[raw_outcome]
    if outcome is not Outcome.STEP_UP:
        for field in _REQUIREMENT_FIELDS:
            if field in spec:
                where.fail(f"only a step_up outcome has {field}", f"expect.{field}")
    rule = string(where, spec["rule"], "expect.rule") if "rule" in spec else None
    acr = None
    if "acr" in spec:
        raw_acr = spec["acr"]
        if not isinstance(raw_acr, str) or raw_acr not in _ACR_VALUES:
            allowed = ", ".join(_ACR_VALUES)
            where.fail(
                f"unknown level {describe(raw_acr)} (expected one of: {allowed})", "expect.acr"
            )
        acr = _ACR_VALUES[raw_acr]
    max_age: int | Literal[Unchecked.UNCHECKED] | None = UNCHECKED
    if "max_age" in spec:
        raw_age = spec["max_age"]
        max_age = None if raw_age is None else integer(where, raw_age, "expect.max_age", minimum=0)
    methods = None
    if "methods" in spec:
        names = string_list(where, spec["methods"], "expect.methods", no_spaces=True)
        for i, name in enumerate(names):
            if name not in KNOWN_METHODS:
                known = ", ".join(sorted(KNOWN_METHODS))
                where.fail(
                    f"unknown method {name!r} (expected any of: {known})", f"expect.methods[{i}]"
                )
        methods = frozenset(names)
    bind = boolean(where, spec["bind"], "expect.bind") if "bind" in spec else None
    return Expectation(
        outcome=outcome, rule=rule, acr=acr, max_age=max_age, methods=methods, bind=bind
    )


def parse_cases(text: str, *, source: str) -> tuple[PolicyCase, ...]:
    """Parse and validate a cases file. Raises PolicyError naming source and field."""
    top = Where(source)
    data = parse_yaml(text, top, what="cases file")
    known_fields(top, data, _TOP_FIELDS)
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        top.fail(f"cases must be a non-empty list, not {describe(raw_cases)}", "cases")
    cases: list[PolicyCase] = []
    names: set[str] = set()
    for index, raw in enumerate(raw_cases):
        where = Where(source, prefix=f"cases[{index}].")
        spec = mapping(where, raw, None, "a case")
        known_fields(where, spec, _CASE_FIELDS)
        if "name" not in spec:
            where.fail("every case needs a name", "name")
        name = string(where, spec["name"], "name")
        where.label = f"case {name!r}"
        if name in names:
            where.fail("duplicate case name", "name")
        names.add(name)
        for field in ("input", "expect"):
            if field not in spec:
                where.fail(f"the case needs {field}", field)
        cases.append(
            PolicyCase(
                name=name,
                input=_input(where, spec["input"]),
                expect=_expectation(where, spec["expect"]),
            )
        )
    return tuple(cases)


def run_case(policy: CompiledPolicy, case: PolicyCase) -> CaseResult:
    """Evaluate one case. An evaluation error is a failed case, not an exception."""
    try:
        actual = policy.evaluate(case.input)
    except PolicyEvaluationError as exc:
        return CaseResult(
            name=case.name,
            passed=False,
            expected=case.expect,
            actual=None,
            message=f"evaluation failed: {exc}",
        )
    mismatches = case.expect.mismatches(actual)
    return CaseResult(
        name=case.name,
        passed=not mismatches,
        expected=case.expect,
        actual=actual,
        message="; ".join(mismatches),
    )


def run_cases(policy: CompiledPolicy, cases: Sequence[PolicyCase]) -> CasesReport:
    """Run every case in order against ``policy``."""
    return CasesReport(
        policy=policy.source, results=tuple(run_case(policy, case) for case in cases)
    )
