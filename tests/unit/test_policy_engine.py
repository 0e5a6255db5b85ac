"""The policy engine: first match wins, the action index, matching, and CEL at run time."""

from __future__ import annotations

import fnmatch
import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import cel
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stepguard.core.errors import PolicyEvaluationError
from stepguard.core.policy import cel as policy_cel
from stepguard.core.policy import engine as engine_module
from stepguard.core.policy.engine import CompiledRule, PolicyEngine, compile_glob
from stepguard.core.policy.loader import load_policy
from stepguard.core.policy.model import CompiledPolicy, Outcome, PolicyInput, Rule
from stepguard.core.risk import LOW_RISK, UNAVAILABLE_RISK


def load(text: str) -> CompiledPolicy:
    return load_policy(textwrap.dedent(text), source="engine-test.yaml")


def decide(policy: CompiledPolicy, action: str, **fields: Any) -> str:
    return policy.evaluate(PolicyInput(action=action, **fields)).id


def engine(policy: CompiledPolicy) -> PolicyEngine:
    assert isinstance(policy, PolicyEngine)
    return policy


# -- first match wins --------------------------------------------------------------------------


def test_the_first_matching_rule_wins_when_a_glob_comes_before_an_exact_rule() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: all-payments, match: {actions: ["payments.*"]}, deny: true}
          - {id: transfer, match: {actions: [payments.transfer]}, allow: true}
        default: {deny: true}
        """
    )
    assert decide(policy, "payments.transfer") == "all-payments"


def test_the_first_matching_rule_wins_when_an_exact_rule_comes_before_a_glob() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: transfer, match: {actions: [payments.transfer]}, allow: true}
          - {id: all-payments, match: {actions: ["payments.*"]}, deny: true}
          - {id: everything, match: {actions: ["*"]}, deny: true}
        default: {allow: true}
        """
    )
    assert decide(policy, "payments.transfer") == "transfer"
    assert decide(policy, "payments.refund") == "all-payments"
    assert decide(policy, "account.view") == "everything"


def test_order_is_kept_across_interleaved_exact_prefix_suffix_and_catch_all_globs() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: r0, match: {actions: ["*.delete"]}, when: "context.n == 0", allow: true}
          - {id: r1, match: {actions: [users.delete]}, when: "context.n <= 1", allow: true}
          - {id: r2, match: {actions: ["users.*"]}, when: "context.n <= 2", allow: true}
          - {id: r3, match: {actions: ["?????.delete"]}, when: "context.n <= 3", allow: true}
          - {id: r4, match: {actions: ["*"]}, when: "context.n <= 4", allow: true}
          - {id: r5, match: {actions: [users.delete, "u*e"]}, allow: true}
        default: {deny: true}
        """
    )
    chosen = [decide(policy, "users.delete", context={"n": n}) for n in range(6)]
    assert chosen == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert [r.id for r in engine(policy).candidates("users.delete")] == [
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
        "r5",
    ]


def test_the_default_rule_applies_when_nothing_matches() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: view, match: {actions: [account.view]}, allow: true}
        default: {id: fallback, step_up: {acr: aal2}}
        """
    )
    rule = policy.evaluate(PolicyInput(action="account.close"))
    assert rule.id == "fallback"
    assert rule.outcome is Outcome.STEP_UP


def test_a_rule_listing_several_actions_matches_any_of_them() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: r, match: {actions: [a.one, "b.*", "c.?"]}, allow: true}
        default: {deny: true}
        """
    )
    assert [decide(policy, a) for a in ("a.one", "b.x.y", "c.z", "c.zz", "a.two")] == [
        "r",
        "r",
        "r",
        "default",
        "default",
    ]


# -- globs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("payments.*", "payments.transfer", True),
        ("payments.*", "payments.transfer.international", True),
        ("payments.*", "payments.", True),
        ("payments.*", "payments", False),
        ("payments.*", "Payments.transfer", False),
        ("*", "", True),
        ("*", "anything.at.all", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        ("*.delete", "users.delete", True),
        ("*.delete", "users.delete.now", False),
        ("a*b*c", "a-b-c", True),
        ("a*b*c", "a-c-b", False),
        ("[ab]", "[ab]", True),
        ("[ab]*", "a", False),
        ("x.[*", "x.[1]", True),
        ("a]b?", "a]bc", True),
        ("a.b", "aXb", False),
        ("a\\*", "a\\zz", True),
    ],
)
def test_globs_support_star_and_question_mark_only(
    pattern: str, action: str, matches: bool
) -> None:
    policy = load(
        f"""
        version: 1
        rules:
          - {{id: r, match: {{actions: [{json.dumps(pattern)}]}}, allow: true}}
        default: {{deny: true}}
        """
    )
    assert (decide(policy, action) == "r") is matches
    assert (compile_glob(pattern).match(action) is not None) is matches


def test_a_glob_cannot_backtrack_catastrophically_on_a_long_action() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: r, match: {actions: ["*a*a*a*a*a*a*a*a*b"]}, allow: true}
        default: {deny: true}
        """
    )
    assert decide(policy, "a" * 5000) == "default"


# -- resources and groups ----------------------------------------------------------------------


RESOURCES = """
version: 1
rules:
  - {id: own, match: {actions: [doc.edit], resources: ["docs/mine", "drafts/*"]}, allow: true}
  - {id: any, match: {actions: [doc.edit]}, deny: true}
default: {deny: true}
"""


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("docs/mine", "own"),
        ("drafts/1", "own"),
        ("drafts/a/b", "own"),
        ("docs/yours", "any"),
        ("docs/mine/x", "any"),
        (None, "any"),
    ],
)
def test_resources_match_exactly_or_by_glob_and_a_rule_without_them_matches_any(
    resource: str | None, expected: str
) -> None:
    assert decide(load(RESOURCES), "doc.edit", resource=resource) == expected


GROUPS = """
version: 1
rules:
  - {id: staff, match: {actions: [report.view], groups: [staff, auditors]}, allow: true}
  - {id: everyone, match: {actions: [report.view]}, deny: true}
default: {deny: true}
"""


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ({"staff"}, "staff"),
        ({"auditors", "other"}, "staff"),
        ({"staff", "auditors"}, "staff"),
        ({"other"}, "everyone"),
        (set(), "everyone"),
    ],
)
def test_a_rule_with_groups_matches_a_subject_in_any_of_them(
    groups: set[str], expected: str
) -> None:
    assert decide(load(GROUPS), "report.view", groups=frozenset(groups)) == expected


# -- CEL conditions at run time ----------------------------------------------------------------

CONDITIONAL = """
version: 1
rules:
  - id: large
    match: {actions: [payments.transfer]}
    when: "context.amount > 100"
    step_up: {acr: aal2, max_age: 300, bind: true}
  - {id: small, match: {actions: [payments.transfer]}, allow: true}
default: {deny: true}
"""


def test_a_true_condition_matches_and_a_false_one_falls_through() -> None:
    policy = load(CONDITIONAL)
    assert decide(policy, "payments.transfer", context={"amount": 150}) == "large"
    assert decide(policy, "payments.transfer", context={"amount": 100}) == "small"
    assert decide(policy, "payments.transfer", context={"amount": 100.5}) == "large"


def test_a_missing_key_is_an_evaluation_error_naming_the_rule() -> None:
    """The library raises KeyError for context.amount without an amount; callers fail closed."""
    with pytest.raises(PolicyEvaluationError) as info:
        load(CONDITIONAL).evaluate(PolicyInput(action="payments.transfer", context={}))
    assert info.value.rule == "large"
    assert "missing key 'amount'" in str(info.value)
    assert "has(" in str(info.value)


def test_has_guards_a_missing_key() -> None:
    policy = load(
        """
        version: 1
        rules:
          - id: r
            match: {actions: [a]}
            when: "has(context.amount) && context.amount > 1"
            deny: true
        default: {allow: true}
        """
    )
    assert decide(policy, "a", context={}) == "default"
    assert decide(policy, "a", context={"amount": 2}) == "r"


@pytest.mark.parametrize(
    ("condition", "context", "fragment"),
    [
        ("context.amount > 100", {"amount": "150"}, "TypeError"),
        ("context.amount > 100", {"amount": True}, "TypeError"),
        ("context.a.b == 1", {"a": 1}, "TypeError"),
        ("context.n / context.d > 1", {"n": 1, "d": 0}, "ZeroDivisionError"),
        ("context.amount > 100", {"amount": object()}, "cannot be converted"),
    ],
)
def test_runtime_errors_become_evaluation_errors(
    condition: str, context: dict[str, Any], fragment: str
) -> None:
    policy = load(
        f"""
        version: 1
        rules:
          - {{id: r, match: {{actions: [a]}}, when: {condition!r}, allow: true}}
        default: {{deny: true}}
        """
    )
    with pytest.raises(PolicyEvaluationError) as info:
        policy.evaluate(PolicyInput(action="a", context=context))
    assert info.value.rule == "r"
    assert info.value.code == "policy_evaluation_failed"
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("condition", "kind"),
    [("context.amount", "int"), ("'yes'", "str"), ("[true]", "list"), ("null", "NoneType")],
)
def test_a_condition_that_returns_no_bool_is_an_evaluation_error(condition: str, kind: str) -> None:
    policy = load(
        f"""
        version: 1
        rules:
          - {{id: r, match: {{actions: [a]}}, when: {condition!r}, allow: true}}
        default: {{deny: true}}
        """
    )
    with pytest.raises(PolicyEvaluationError) as info:
        policy.evaluate(PolicyInput(action="a", context={"amount": 1}))
    assert info.value.rule == "r"
    assert f"returned {kind}, not a bool" in str(info.value)


def test_a_broken_condition_after_the_matching_rule_is_never_run() -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: first, match: {actions: [a]}, when: "context.ok", allow: true}
          - {id: broken, match: {actions: [a]}, when: "context.missing > 1", allow: true}
        default: {deny: true}
        """
    )
    assert decide(policy, "a", context={"ok": True}) == "first"
    with pytest.raises(PolicyEvaluationError, match="broken"):
        decide(policy, "a", context={"ok": False})


def test_a_condition_is_not_run_when_resource_or_groups_do_not_match() -> None:
    policy = load(
        """
        version: 1
        rules:
          - id: r
            match: {actions: [a], resources: [x], groups: [g]}
            when: "context.missing > 1"
            allow: true
        default: {deny: true}
        """
    )
    assert decide(policy, "a", resource="y", groups=frozenset({"g"})) == "default"
    assert decide(policy, "a", resource="x", groups=frozenset({"h"})) == "default"
    with pytest.raises(PolicyEvaluationError):
        decide(policy, "a", resource="x", groups=frozenset({"g"}))


def test_conditions_see_all_five_roots() -> None:
    policy = load(
        """
        version: 1
        rules:
          - id: r
            match: {actions: [a]}
            when: >-
              request.ip == '10.0.0.1' && context.amount == 5 && subject.id == 'u1'
              && session.id == 's1' && risk.level == 'low'
            allow: true
        default: {deny: true}
        """
    )
    inp = PolicyInput(
        action="a",
        request={"ip": "10.0.0.1"},
        context={"amount": 5},
        subject={"id": "u1"},
        session={"id": "s1"},
        risk=LOW_RISK.as_cel(),
    )
    assert policy.evaluate(inp).id == "r"


def test_risk_as_cel_drives_a_high_risk_rule() -> None:
    policy = load(
        """
        version: 1
        rules:
          - id: risky
            match: {actions: ["*"]}
            when: "risk.level == 'high' || risk.level == 'critical' || risk.degraded"
            step_up: {acr: aal2, max_age: 0}
        default: {allow: true}
        """
    )
    assert decide(policy, "x", risk=LOW_RISK.as_cel()) == "default"
    assert decide(policy, "x", risk=UNAVAILABLE_RISK.as_cel()) == "risky"


def test_comprehensions_and_python_collections_work_at_run_time() -> None:
    policy = load(
        """
        version: 1
        rules:
          - id: r
            match: {actions: [a]}
            when: >-
              context.items.exists(x, x.price > 100) && 'vip' in context.tags
              && context.pair.all(p, p > 0) && context.nested.inner.ok
            allow: true
        default: {deny: true}
        """
    )
    inp = PolicyInput(
        action="a",
        context=MappingProxyType(
            {
                "items": ({"price": 5}, {"price": 500}),
                "tags": frozenset({"vip", "new"}),
                "pair": (1, 2),
                "nested": MappingProxyType({"inner": {"ok": True}}),
            }
        ),
    )
    assert policy.evaluate(inp).id == "r"


def test_only_the_fields_a_condition_selects_are_converted() -> None:
    """context.amount reads one key: an unconvertible sibling value does not matter."""
    selective = load(
        """
        version: 1
        rules:
          - {id: r, match: {actions: [a]}, when: "context.amount > 1", allow: true}
        default: {deny: true}
        """
    )
    assert decide(selective, "a", context={"amount": 2, "blob": object()}) == "r"
    whole = load(
        """
        version: 1
        rules:
          - {id: r, match: {actions: [a]}, when: "size(context) > 1", allow: true}
        default: {deny: true}
        """
    )
    with pytest.raises(PolicyEvaluationError, match="cannot be converted"):
        whole.evaluate(PolicyInput(action="a", context={"amount": 2, "blob": object()}))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("context.amount > 1", (("context", frozenset({"amount"})),)),
        (
            "has(context.a) && context.b.c == 1 && risk.level == 'x'",
            (("context", frozenset({"a", "b"})), ("risk", frozenset({"level"}))),
        ),
        ("size(context) > 0", (("context", None),)),
        ("context['a'] == 1", (("context", None),)),
        ("context.all(k, k != 'a')", (("context", None),)),
        ("context.a == 1 && 'b' in context", (("context", None),)),
        ("[1].exists(context, context > 0) && context.a", (("context", None),)),
    ],
)
def test_read_fields_is_conservative(expression: str, expected: policy_cel.RootFields) -> None:
    program = cel.compile(expression)
    roots = set(program.variables()) & policy_cel.CEL_ROOTS
    assert policy_cel.read_fields(expression, roots) == expected


# -- compiled once; lazy CEL context -----------------------------------------------------------


def test_evaluate_never_compiles_again(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load(CONDITIONAL)

    def refuse(_: str) -> cel.Program:
        raise AssertionError("evaluate must not compile CEL")

    monkeypatch.setattr(cel, "compile", refuse)
    monkeypatch.setattr(yaml, "safe_load", refuse)
    for amount in (1, 500, 1, 500):
        policy.evaluate(PolicyInput(action="payments.transfer", context={"amount": amount}))


def test_rules_without_conditions_never_build_a_cel_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: plain, match: {actions: [a]}, allow: true}
          - {id: later, match: {actions: [a, b]}, when: "context.x", allow: true}
          - {id: grouped, match: {actions: [b], groups: [g]}, allow: true}
        default: {deny: true}
        """
    )

    def refuse(*_: object) -> cel.Context:
        raise AssertionError("no CEL context for rules without a condition")

    monkeypatch.setattr(engine_module, "cel_context", refuse)
    assert decide(policy, "a", context={"x": True}) == "plain"
    assert decide(policy, "c", context={"x": True}) == "default"


def test_the_cel_context_is_built_at_most_once_per_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = load(
        """
        version: 1
        rules:
          - {id: r1, match: {actions: [a]}, when: "context.n == 1", allow: true}
          - {id: r2, match: {actions: ["a*"]}, when: "risk.level == 'x'", allow: true}
          - {id: r3, match: {actions: ["*"]}, when: "context.n == 3", allow: true}
        default: {deny: true}
        """
    )
    calls: list[policy_cel.RootFields] = []
    real = policy_cel.cel_context

    def counting(inp: PolicyInput, needs: policy_cel.RootFields) -> cel.Context:
        calls.append(needs)
        return real(inp, needs)

    monkeypatch.setattr(engine_module, "cel_context", counting)
    assert decide(policy, "a", context={"n": 3}, risk={"level": "y"}) == "r3"
    assert calls == [(("context", frozenset({"n"})), ("risk", frozenset({"level"})))]


# -- the memo ----------------------------------------------------------------------------------


def _rule(rule_id: str, *actions: str) -> CompiledRule:
    return CompiledRule(rule=Rule(id=rule_id, outcome=Outcome.ALLOW), actions=actions)


def test_the_candidate_memo_stays_bounded_and_correct() -> None:
    default = Rule(id="default", outcome=Outcome.DENY)
    policy = PolicyEngine(
        source="memo",
        rules=[_rule("exact", "x.1"), _rule("glob", "x.*"), _rule("tail", "*.9")],
        default=default,
        memo_limit=4,
    )
    for _ in range(3):
        for i in range(20):
            chosen = policy.evaluate(PolicyInput(action=f"x.{i}")).id
            assert chosen == ("exact" if i == 1 else "glob")
            assert policy.evaluate(PolicyInput(action=f"y.{i}")).id == (
                "tail" if i == 9 else "default"
            )
    assert len(policy._memo) <= 4


def test_very_long_actions_are_matched_but_not_memoised() -> None:
    policy = PolicyEngine(
        source="memo", rules=[_rule("glob", "x.*")], default=Rule(id="d", outcome=Outcome.DENY)
    )
    action = "x." + "y" * 10_000
    assert policy.evaluate(PolicyInput(action=action)).id == "glob"
    assert action not in policy._memo


def test_memo_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="memo_limit"):
        PolicyEngine(source="s", rules=[], default=Rule(id="d", outcome=Outcome.DENY), memo_limit=0)


# -- the index agrees with a linear scan -------------------------------------------------------


@dataclass(frozen=True)
class RefRule:
    id: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] | None
    groups: tuple[str, ...]
    when: str | None  # None, "true", "false" or "context.flag"


def reference(rules: list[RefRule], inp: PolicyInput, flag: bool) -> str:
    """The obvious implementation: scan every rule in order with fnmatch."""
    for rule in rules:
        if not any(fnmatch.fnmatchcase(inp.action, p) for p in rule.actions):
            continue
        if rule.resources is not None and (
            inp.resource is None
            or not any(fnmatch.fnmatchcase(inp.resource, p) for p in rule.resources)
        ):
            continue
        if rule.groups and not set(rule.groups) & inp.groups:
            continue
        if rule.when == "false" or (rule.when == "context.flag" and not flag):
            continue
        return rule.id
    return "default"


# No "[" in the alphabets: fnmatch would read it as a class, our globs as a literal.
_action_patterns = st.text(alphabet="ab.*?", min_size=1, max_size=6)
_actions = st.text(alphabet="ab.", max_size=6)
_resource_patterns = st.text(alphabet="xy/*?", min_size=1, max_size=4)


@st.composite
def rule_sets(draw: st.DrawFn) -> list[RefRule]:
    count = draw(st.integers(min_value=0, max_value=25))
    return [
        RefRule(
            id=f"r{i}",
            actions=tuple(draw(st.lists(_action_patterns, min_size=1, max_size=3))),
            resources=draw(
                st.none() | st.lists(_resource_patterns, min_size=1, max_size=2).map(tuple)
            ),
            groups=tuple(
                draw(st.lists(st.sampled_from(["g1", "g2", "g3"]), max_size=2, unique=True))
            ),
            when=draw(st.sampled_from([None, None, "true", "false", "context.flag"])),
        )
        for i in range(count)
    ]


def as_yaml(rules: list[RefRule]) -> str:
    documents: list[dict[str, Any]] = []
    for rule in rules:
        match: dict[str, Any] = {"actions": list(rule.actions)}
        if rule.resources is not None:
            match["resources"] = list(rule.resources)
        if rule.groups:
            match["groups"] = list(rule.groups)
        entry: dict[str, Any] = {"id": rule.id, "match": match, "allow": True}
        if rule.when is not None:
            entry["when"] = rule.when
        documents.append(entry)
    return json.dumps({"version": 1, "rules": documents, "default": {"deny": True}})


@settings(max_examples=200, deadline=None)
@given(
    rules=rule_sets(),
    requests=st.lists(
        st.tuples(
            _actions,
            st.none() | st.text(alphabet="xy/", max_size=4),
            st.frozensets(st.sampled_from(["g1", "g2", "g3", "g4"]), max_size=2),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_the_index_chooses_the_same_rule_as_a_linear_scan(
    rules: list[RefRule], requests: list[tuple[str, str | None, frozenset[str], bool]]
) -> None:
    policy = load_policy(as_yaml(rules), source="property")
    for _ in range(2):  # the second pass is served from the memo
        for action, resource, groups, flag in requests:
            inp = PolicyInput(
                action=action, resource=resource, groups=groups, context={"flag": flag}
            )
            assert policy.evaluate(inp).id == reference(rules, inp, flag)


def test_the_engine_satisfies_the_compiled_policy_protocol() -> None:
    policy: CompiledPolicy = PolicyEngine(
        source="s", rules=[], default=Rule(id="d", outcome=Outcome.DENY)
    )
    assert policy.rule_count == 0
    assert policy.source == "s"


def test_evaluate_accepts_any_mapping_for_the_cel_roots() -> None:
    policy = load(CONDITIONAL)
    context: Mapping[str, Any] = MappingProxyType({"amount": 1000})
    assert policy.evaluate(PolicyInput(action="payments.transfer", context=context)).id == "large"
