"""The policy loader: the YAML schema, compiled outcomes, and every way a policy is rejected."""

from __future__ import annotations

import textwrap
from importlib import resources

import pytest

from stepguard.core.assurance import AssuranceLevel, FactorType, Requirement
from stepguard.core.errors import PolicyError
from stepguard.core.policy.engine import PolicyEngine
from stepguard.core.policy.loader import KNOWN_METHODS, load_policy
from stepguard.core.policy.model import CompiledPolicy, Outcome, PolicyInput, Rule

SOURCE = "policies/test.yaml"

FULL_EXAMPLE = """
version: 1
rules:
  - id: transfer-large
    description: Large transfers need a fresh second factor, bound to the transaction
    match:
      actions: ["payments.transfer"]
      resources: ["accounts/*"]
      groups: ["staff"]
    when: "context.amount > 100"
    step_up: {acr: aal2, max_age: 300, methods: [totp, recovery_code], bind: true}
    summary: "Transfer {context.currency} {context.amount} to {context.payee}"
    reason: "large transfer"
  - id: view
    match: {actions: ["account.view"]}
    allow: true
  - id: admin-block
    match: {actions: ["admin.*"]}
    deny: true
default:
  deny: true
"""


def load(text: str) -> CompiledPolicy:
    return load_policy(textwrap.dedent(text), source=SOURCE)


def rejected(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load(text)
    return info.value


def with_rule(rule: str, *, default: str = "deny: true") -> str:
    """A policy with one rule (given as the YAML of its mapping body) and a default."""
    body = textwrap.indent(textwrap.dedent(rule).strip(), "    ")
    return f"version: 1\nrules:\n  - {body.lstrip()}\ndefault:\n  {default}\n"


def rule_error(rule: str) -> PolicyError:
    return rejected(with_rule(rule))


def assert_names(error: PolicyError, *, rule: str | None, field: str | None) -> None:
    """The error carries and prints the file, the rule and the field."""
    assert error.source == SOURCE
    assert error.rule == rule
    assert error.field == field
    text = str(error)
    assert SOURCE in text
    if rule is not None:
        assert repr(rule) in text
    if field is not None:
        assert repr(field) in text


# -- what a valid policy compiles to -----------------------------------------------------------


def test_the_documented_example_loads_into_an_engine_that_satisfies_the_protocol() -> None:
    policy = load(FULL_EXAMPLE)
    assert isinstance(policy, PolicyEngine)
    assert policy.source == SOURCE
    assert policy.rule_count == 3


def test_a_step_up_rule_compiles_to_a_rule_with_its_requirement_and_texts() -> None:
    policy = load(FULL_EXAMPLE)
    assert isinstance(policy, PolicyEngine)
    transfer = policy.rules[0]
    assert transfer == Rule(
        id="transfer-large",
        outcome=Outcome.STEP_UP,
        requirement=Requirement(
            acr=AssuranceLevel.AAL2,
            max_age=300,
            methods=frozenset({"totp", "recovery_code"}),
            bind=True,
        ),
        reason="large transfer",
        description="Large transfers need a fresh second factor, bound to the transaction",
        summary="Transfer {context.currency} {context.amount} to {context.payee}",
    )


def test_allow_and_deny_rules_carry_no_requirement() -> None:
    policy = load(FULL_EXAMPLE)
    assert isinstance(policy, PolicyEngine)
    view, block = policy.rules[1], policy.rules[2]
    assert (view.outcome, view.requirement) == (Outcome.ALLOW, None)
    assert (block.outcome, block.requirement) == (Outcome.DENY, None)


def test_optional_requirement_fields_default_to_any_age_any_method_unbound() -> None:
    policy = load(with_rule("id: r\nmatch: {actions: [a]}\nstep_up: {acr: phr}"))
    assert policy.evaluate(PolicyInput(action="a")).requirement == Requirement(
        acr=AssuranceLevel.PHR, max_age=None, methods=frozenset(), bind=False
    )


def test_max_age_zero_means_every_time_and_is_kept_as_zero() -> None:
    policy = load(with_rule("id: r\nmatch: {actions: [a]}\nstep_up: {acr: aal2, max_age: 0}"))
    requirement = policy.evaluate(PolicyInput(action="a")).requirement
    assert requirement is not None
    assert requirement.max_age == 0
    assert requirement.needs_grant


@pytest.mark.parametrize("level", list(AssuranceLevel))
def test_every_assurance_level_is_accepted_by_its_wire_value(level: AssuranceLevel) -> None:
    policy = load(with_rule(f"id: r\nmatch: {{actions: [a]}}\nstep_up: {{acr: {level.acr}}}"))
    requirement = policy.evaluate(PolicyInput(action="a")).requirement
    assert requirement is not None
    assert requirement.acr is level


def test_every_factor_type_is_a_known_method() -> None:
    assert frozenset(factor.value for factor in FactorType) == KNOWN_METHODS
    methods = ", ".join(factor.value for factor in FactorType)
    policy = load(
        with_rule(f"id: r\nmatch: {{actions: [a]}}\nstep_up: {{acr: aal2, methods: [{methods}]}}")
    )
    requirement = policy.evaluate(PolicyInput(action="a")).requirement
    assert requirement is not None
    assert requirement.methods == KNOWN_METHODS


def test_the_default_rule_is_called_default_unless_it_names_itself() -> None:
    assert (
        load(with_rule("id: r\nmatch: {actions: [a]}\nallow: true"))
        .evaluate(PolicyInput(action="b"))
        .id
        == "default"
    )
    named = load(
        with_rule("id: r\nmatch: {actions: [a]}\nallow: true", default="{id: fallback, deny: true}")
    )
    assert named.evaluate(PolicyInput(action="b")).id == "fallback"


def test_the_default_may_step_up() -> None:
    policy = load(
        "version: 1\ndefault:\n  step_up: {acr: aal2, max_age: 60}\n  summary: '{action}'\n"
    )
    rule = policy.evaluate(PolicyInput(action="anything"))
    assert rule.outcome is Outcome.STEP_UP
    assert rule.requirement == Requirement(acr=AssuranceLevel.AAL2, max_age=60)
    assert rule.summary == "{action}"


def test_a_policy_may_have_no_rules_but_the_default() -> None:
    for rules in ("", "rules: []\n", "rules:\n"):
        policy = load(f"version: 1\n{rules}default: {{allow: true}}\n")
        assert policy.rule_count == 0
        assert policy.evaluate(PolicyInput(action="x")).outcome is Outcome.ALLOW


def test_reasons_default_to_a_sentence_derived_from_the_rule() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: ok, match: {actions: [a]}, allow: true}
          - {id: nope, match: {actions: [b]}, deny: true}
          - {id: up, match: {actions: [c]}, step_up: {acr: aal2, max_age: 300, bind: true}}
          - {id: every, match: {actions: [d]}, step_up: {acr: aal3, max_age: 0}}
          - {id: anyage, match: {actions: [e]}, step_up: {acr: aal1}}
        default: {deny: true}
        """
    )
    reasons = {a: policy.evaluate(PolicyInput(action=a)).reason for a in "abcdef"}
    assert reasons == {
        "a": "allowed by rule 'ok'",
        "b": "denied by rule 'nope'",
        "c": "rule 'up' requires aal2, within 300 s, bound to the transaction",
        "d": "rule 'every' requires aal3, for every request",
        "e": "rule 'anyage' requires aal1",
        "f": "denied by rule 'default'",
    }


def test_duplicate_patterns_and_methods_are_harmless() -> None:
    policy = load(
        with_rule(
            "id: r\nmatch: {actions: [a, a, 'a*']}\nstep_up: {acr: aal2, methods: [totp, totp]}"
        )
    )
    assert policy.evaluate(PolicyInput(action="a")).id == "r"
    requirement = policy.evaluate(PolicyInput(action="a")).requirement
    assert requirement is not None
    assert requirement.methods == frozenset({"totp"})


def test_yaml_anchors_and_aliases_are_allowed() -> None:
    policy = load(
        """
        version: 1
        rules:
          - id: one
            match: {actions: [a]}
            step_up: &strong {acr: aal2, max_age: 0, bind: true}
          - id: two
            match: {actions: [b]}
            step_up: *strong
        default: {deny: true}
        """
    )
    assert (
        policy.evaluate(PolicyInput(action="a")).requirement
        == policy.evaluate(PolicyInput(action="b")).requirement
    )


def test_the_demo_policy_shipped_in_the_package_loads() -> None:
    text = resources.files("stepguard").joinpath("demo/policy.yaml").read_text("utf-8")
    policy = load_policy(text, source="demo/policy.yaml")
    assert policy.rule_count >= 8
    assert policy.evaluate(PolicyInput(action="account.view")).outcome is Outcome.ALLOW


# -- what is rejected, and how the error names the place ---------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not null"),
        ("- a\n- b\n", "not a list"),
        ("just a string\n", "not string"),
        ("42\n", "not number 42"),
    ],
)
def test_a_policy_that_is_not_a_mapping_at_the_top_is_rejected(text: str, fragment: str) -> None:
    error = rejected(text)
    assert_names(error, rule=None, field=None)
    assert "mapping at the top" in str(error)
    assert fragment in str(error)


def test_invalid_yaml_is_rejected_with_the_parser_message() -> None:
    error = rejected("version: 1\nrules: [\n")
    assert_names(error, rule=None, field=None)
    assert "invalid YAML" in str(error)


def test_python_object_tags_are_refused_because_only_safe_load_is_used() -> None:
    error = rejected(
        "version: 1\nrules: !!python/object/apply:os.system ['true']\ndefault: {deny: true}\n"
    )
    assert "invalid YAML" in str(error)


def test_several_yaml_documents_are_rejected() -> None:
    assert "invalid YAML" in str(rejected("version: 1\ndefault: {deny: true}\n---\nversion: 1\n"))


def test_duplicate_mapping_keys_are_rejected_instead_of_silently_keeping_the_last() -> None:
    error = rejected("version: 1\ndefault: {deny: true}\ndefault: {allow: true}\n")
    assert_names(error, rule=None, field="default")
    assert "duplicate key 'default' (line 3)" in str(error)


def test_duplicate_keys_inside_a_rule_are_rejected() -> None:
    error = rejected(with_rule("id: r\nmatch: {actions: [a]}\ndeny: true\ndeny: true"))
    assert "duplicate key 'deny'" in str(error)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("rules: []\ndefault: {deny: true}\n", "version", "needs version: 1"),
        ("version: 2\ndefault: {deny: true}\n", "version", "unsupported version number 2"),
        ("version: '1'\ndefault: {deny: true}\n", "version", "unsupported version string '1'"),
        ("version: true\ndefault: {deny: true}\n", "version", "unsupported version boolean true"),
        ("version: 1.0\ndefault: {deny: true}\n", "version", "unsupported version number 1.0"),
        ("version: 1\nrules: {}\ndefault: {deny: true}\n", "rules", "rules must be a list"),
        ("version: 1\n", "default", "a default rule is required"),
        ("version: 1\ndefault: {deny: true}\nextra: 1\n", "extra", "unknown field 'extra'"),
        ("version: 1\ndefault: {deny: true}\nRules: []\n", "Rules", "unknown field 'Rules'"),
    ],
)
def test_top_level_problems_name_the_field(text: str, field: str, fragment: str) -> None:
    error = rejected(text)
    assert_names(error, rule=None, field=field)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        (
            "id: r\nmatch: {actions: [a]}\nallow: true\ncolour: red",
            "colour",
            "unknown field 'colour'",
        ),
        (
            "id: r\nmatch: {actions: [a], verbs: [get]}\nallow: true",
            "match.verbs",
            "unknown field 'verbs'",
        ),
        (
            "id: r\nmatch: {actions: [a]}\nstep_up: {acr: aal2, maxage: 5}",
            "step_up.maxage",
            "unknown field 'maxage'",
        ),
        ("id: r\nmatch: {actions: [a]}\nallow: true\nWhen: 'true'", "When", "unknown field 'When'"),
    ],
)
def test_unknown_fields_are_rejected_at_every_level(rule: str, field: str, fragment: str) -> None:
    error = rule_error(rule)
    assert_names(error, rule="r", field=field)
    assert fragment in str(error)


def test_unknown_fields_in_the_default_are_rejected() -> None:
    error = rejected("version: 1\ndefault: {deny: true, priority: 1}\n")
    assert_names(error, rule="default", field="priority")


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        # levels
        ("step_up: {acr: aal9}", "step_up.acr", "unknown level string 'aal9'"),
        ("step_up: {acr: AAL2}", "step_up.acr", "unknown level string 'AAL2'"),
        ("step_up: {acr: 2}", "step_up.acr", "unknown level number 2"),
        ("step_up: {max_age: 300}", "step_up.acr", "step_up needs an acr"),
        ("step_up: {}", "step_up.acr", "step_up needs an acr"),
        ("step_up: aal2", "step_up", "step_up must be a mapping"),
        ("step_up:", "step_up", "step_up must be a mapping, not null"),
        # max_age types
        ("step_up: {acr: aal2, max_age: '300'}", "step_up.max_age", "not string '300'"),
        ("step_up: {acr: aal2, max_age: true}", "step_up.max_age", "not boolean true"),
        ("step_up: {acr: aal2, max_age: 1.5}", "step_up.max_age", "not number 1.5"),
        ("step_up: {acr: aal2, max_age: -1}", "step_up.max_age", "must be 0 or more"),
        ("step_up: {acr: aal2, max_age: null}", "step_up.max_age", "not null"),
        # methods
        ("step_up: {acr: aal2, methods: [sms]}", "step_up.methods[0]", "unknown method 'sms'"),
        (
            "step_up: {acr: aal2, methods: [totp, TOTP]}",
            "step_up.methods[1]",
            "unknown method 'TOTP'",
        ),
        ("step_up: {acr: aal2, methods: totp}", "step_up.methods", "must be a list of strings"),
        ("step_up: {acr: aal2, methods: []}", "step_up.methods", "must not be empty"),
        ("step_up: {acr: aal2, methods: [1]}", "step_up.methods[0]", "must be a string"),
        # bind
        ("step_up: {acr: aal2, bind: 'yes'}", "step_up.bind", "must be true or false"),
        ("step_up: {acr: aal2, bind: 1}", "step_up.bind", "not number 1"),
    ],
)
def test_bad_step_up_requirements_are_rejected(rule: str, field: str, fragment: str) -> None:
    error = rule_error(f"id: r\nmatch: {{actions: [a]}}\n{rule}")
    assert_names(error, rule="r", field=field)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        ("allow: true\nacr: aal2", "acr", "acr is a step-up requirement"),
        ("deny: true\nmax_age: 0", "max_age", "max_age is a step-up requirement"),
        ("allow: true\nbind: true", "bind", "bind is a step-up requirement"),
        ("deny: true\nmethods: [totp]", "methods", "methods is a step-up requirement"),
        ("step_up: {acr: aal2}\nmax_age: 0", "max_age", "max_age belongs inside step_up"),
        ("allow: {acr: aal2}", "allow", "allow takes no requirement"),
        ("deny: {max_age: 0}", "deny", "deny takes no requirement"),
        ("allow: false", "allow", "must be true, not boolean false"),
        ("deny: 'yes'", "deny", "must be true, not string 'yes'"),
        ("allow: 1", "allow", "must be true, not number 1"),
        ("allow: true\nsummary: '{action}'", "summary", "only step_up rules have a summary"),
    ],
)
def test_requirement_fields_on_allow_or_deny_are_rejected(
    rule: str, field: str, fragment: str
) -> None:
    error = rule_error(f"id: r\nmatch: {{actions: [a]}}\n{rule}")
    assert_names(error, rule="r", field=field)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("outcomes", "found"),
    [
        ("allow: true\ndeny: true", "allow, deny"),
        ("allow: true\nstep_up: {acr: aal2}", "allow, step_up"),
        ("", "none"),
    ],
)
def test_a_rule_needs_exactly_one_outcome(outcomes: str, found: str) -> None:
    error = rule_error(f"id: r\nmatch: {{actions: [a]}}\n{outcomes}")
    assert_names(error, rule="r", field="allow/deny/step_up")
    assert (
        f"needs exactly one of allow: true, deny: true, step_up: {{...}} (found: {found})"
        in str(error)
    )


def test_the_default_needs_exactly_one_outcome_too() -> None:
    error = rejected("version: 1\ndefault: {reason: nothing}\n")
    assert_names(error, rule="default", field="allow/deny/step_up")


@pytest.mark.parametrize("field", ["match", "when"])
def test_the_default_takes_no_match_or_condition(field: str) -> None:
    value = "{actions: [a]}" if field == "match" else "'true'"
    error = rejected(f"version: 1\ndefault: {{deny: true, {field}: {value}}}\n")
    assert_names(error, rule="default", field=field)
    assert "matches everything" in str(error)


def test_a_default_that_is_not_a_mapping_is_rejected() -> None:
    error = rejected("version: 1\ndefault: deny\n")
    assert_names(error, rule="default", field="default")


def test_a_default_with_requirement_fields_outside_step_up_is_rejected() -> None:
    error = rejected("version: 1\ndefault: {deny: true, acr: aal2}\n")
    assert_names(error, rule="default", field="acr")


def test_a_step_up_default_without_acr_is_rejected() -> None:
    error = rejected("version: 1\ndefault: {step_up: {max_age: 0}}\n")
    assert_names(error, rule="default", field="step_up.acr")


@pytest.mark.parametrize(
    ("rule", "expected_rule", "field", "fragment"),
    [
        ("match: {actions: [a]}\nallow: true", "rules[0]", "id", "every rule needs an id"),
        (
            "id: Transfer\nmatch: {actions: [a]}\nallow: true",
            "rules[0]",
            "id",
            "invalid id string 'Transfer'",
        ),
        ("id: -x\nmatch: {actions: [a]}\nallow: true", "rules[0]", "id", "invalid id"),
        ("id: 'a b'\nmatch: {actions: [a]}\nallow: true", "rules[0]", "id", "invalid id"),
        ("id: 7\nmatch: {actions: [a]}\nallow: true", "rules[0]", "id", "invalid id number 7"),
        (
            "id: " + "a" * 129 + "\nmatch: {actions: [a]}\nallow: true",
            "rules[0]",
            "id",
            "longer than 128",
        ),
    ],
)
def test_rule_ids_are_required_and_well_formed(
    rule: str, expected_rule: str, field: str, fragment: str
) -> None:
    error = rule_error(rule)
    assert_names(error, rule=expected_rule, field=field)
    assert fragment in str(error)


def test_a_rule_that_is_not_a_mapping_is_named_by_its_position() -> None:
    error = rejected(
        """
        version: 1
        rules:
          - {id: ok, match: {actions: [a]}, allow: true}
          - oops
        default: {deny: true}
        """
    )
    assert_names(error, rule="rules[1]", field=None)
    assert "a rule must be a mapping" in str(error)


def test_a_yaml_1_1_boolean_is_not_an_id() -> None:
    error = rule_error("id: no\nmatch: {actions: [a]}\nallow: true")
    assert_names(error, rule="rules[0]", field="id")
    assert "invalid id boolean false" in str(error)


def test_duplicate_rule_ids_are_rejected_naming_the_second() -> None:
    error = rejected(
        """
        version: 1
        rules:
          - {id: same, match: {actions: [a]}, allow: true}
          - {id: same, match: {actions: [b]}, deny: true}
        default: {deny: true}
        """
    )
    assert_names(error, rule="same", field="id")
    assert "duplicate rule id" in str(error)


def test_a_rule_named_default_collides_with_the_unnamed_default() -> None:
    error = rejected(with_rule("id: default\nmatch: {actions: [a]}\nallow: true"))
    assert_names(error, rule="default", field="id")
    assert "duplicate rule id" in str(error)


def test_a_named_default_must_not_reuse_a_rule_id() -> None:
    error = rejected(
        with_rule("id: r\nmatch: {actions: [a]}\nallow: true", default="{id: r, deny: true}")
    )
    assert_names(error, rule="r", field="id")


@pytest.mark.parametrize(
    ("match", "field", "fragment"),
    [
        ("", "match", "every rule needs a match"),
        ("match: [a]", "match", "match must be a mapping"),
        ("match: {resources: [x]}", "match.actions", "match needs actions"),
        ("match: {actions: []}", "match.actions", "must not be empty"),
        ("match: {actions: a}", "match.actions", "must be a list of strings"),
        ("match: {actions: [a, 3]}", "match.actions[1]", "must be a string, not number 3"),
        ("match: {actions: ['']}", "match.actions[0]", "must not be empty"),
        ("match: {actions: ['pay ments']}", "match.actions[0]", "must not contain whitespace"),
        ("match: {actions: [null]}", "match.actions[0]", "not null"),
        ("match: {actions: [a], resources: []}", "match.resources", "must not be empty"),
        ("match: {actions: [a], resources: [1]}", "match.resources[0]", "must be a string"),
        ("match: {actions: [a], groups: staff}", "match.groups", "must be a list of strings"),
        ("match: {actions: [a], groups: [true]}", "match.groups[0]", "not boolean true"),
    ],
)
def test_bad_match_sections_are_rejected(match: str, field: str, fragment: str) -> None:
    error = rule_error(f"id: r\n{match}\nallow: true")
    assert_names(error, rule="r", field=field)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("description", "42", "must be a string, not number 42"),
        ("reason", "[a]", "must be a string, not a list"),
        ("reason", "''", "must not be empty"),
        ("description", "2024-01-01", "must be a string, not date"),
    ],
)
def test_text_fields_must_be_strings(field: str, value: str, fragment: str) -> None:
    error = rule_error(f"id: r\nmatch: {{actions: [a]}}\nallow: true\n{field}: {value}")
    assert_names(error, rule="r", field=field)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("summary", "fragment"),
    [
        ("'{0}'", "unsupported placeholder '{0}'"),
        ("'{context.amount!r:>99999}'", "unsupported placeholder"),
        ("'{context[amount]}'", "unsupported placeholder"),
        ("'{subject.email}'", "unsupported placeholder"),
        ("'{context}'", "unsupported placeholder '{context}'"),
        ("'  '", "must not be empty"),
    ],
)
def test_summary_templates_are_checked_at_load(summary: str, fragment: str) -> None:
    error = rule_error(
        f"id: r\nmatch: {{actions: [a]}}\nstep_up: {{acr: aal2}}\nsummary: {summary}"
    )
    assert_names(error, rule="r", field="summary")
    assert fragment in str(error)


# -- CEL conditions at load --------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        "context.amount > 100",
        "has(context.amount) && context.amount > 100",
        "request.ip.startsWith('10.') || session.age > 60",
        "subject.id == 'u1' && risk.score >= 0.5",
        "context.items.exists(x, x.price > 100)",
        "context.items.all(item, item.ok) && context.tags.exists_one(t, t == 'vip')",
        "context.items.map(x, x * 2).filter(y, y > 4).size() > 0",
        "[1, 2].exists(x, [3].exists(y, x < y))",
        "context.items.map(x, x > 1, x * 2).size() == 1",
        "type(context.amount) == int || type(context.amount) == double",
        "context.note == 'x.exists(z, z)' && context.n > 0 // a comment naming zz",
        "r'\\d+' != '' && context.ok",
    ],
)
def test_conditions_over_the_five_roots_and_bound_variables_load(condition: str) -> None:
    policy = load(with_rule(f"id: r\nmatch: {{actions: [a]}}\nwhen: {condition!r}\nallow: true"))
    assert policy.rule_count == 1


@pytest.mark.parametrize(
    ("condition", "unknown"),
    [
        ("amount > 100", "'amount'"),
        ("ctx.amount > 100", "'ctx'"),
        ("contexts.amount > 1 && user.id == 'x'", "'contexts', 'user'"),
        ("context.items.exists(x, x > 1) && x > 1", "'x'"),
        ("context.items.exists(x, y > 1)", "'y'"),
        ("context.m.all(k, v, v > 0)", "'v'"),
        ("cel.bind(v, 1, v > 0)", "'cel', 'v'"),
        ("'x.exists(q, q)' == q", "'q'"),
        (".context.a == 1", "'.context'"),
    ],
)
def test_unknown_variables_in_conditions_are_rejected(condition: str, unknown: str) -> None:
    error = rule_error(f"id: r\nmatch: {{actions: [a]}}\nwhen: {condition!r}\nallow: true")
    assert_names(error, rule="r", field="when")
    assert f"unknown variable {unknown} in condition" in str(error)
    assert "context, request, risk, session, subject" in str(error)


@pytest.mark.parametrize("condition", ["context.amount >", "(", "a b", "context.amount > > 1"])
def test_cel_syntax_errors_are_rejected(condition: str) -> None:
    error = rule_error(f"id: r\nmatch: {{actions: [a]}}\nwhen: {condition!r}\nallow: true")
    assert_names(error, rule="r", field="when")
    assert "CEL syntax error" in str(error)


@pytest.mark.parametrize(
    ("value", "fragment"), [("''", "must not be empty"), ("true", "must be a string")]
)
def test_a_condition_must_be_a_non_empty_string(value: str, fragment: str) -> None:
    error = rule_error(f"id: r\nmatch: {{actions: [a]}}\nwhen: {value}\nallow: true")
    assert_names(error, rule="r", field="when")
    assert fragment in str(error)


def test_the_first_problem_in_file_order_is_reported() -> None:
    error = rejected(
        """
        version: 1
        rules:
          - {id: good, match: {actions: [a]}, allow: true}
          - {id: bad-level, match: {actions: [b]}, step_up: {acr: aal7}}
          - {id: bad-cel, match: {actions: [c]}, when: 'nope', allow: true}
        """
    )
    assert_names(error, rule="bad-level", field="step_up.acr")
