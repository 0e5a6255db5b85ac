"""Load a policy from YAML text: validate everything, compile once, return the engine.

Pure: the caller reads the file and passes its text with a ``source`` name for messages.
Every problem raises :class:`~stepguard.core.errors.PolicyError` naming the source, the rule
(its ``id``, or ``rules[N]`` before the id is known) and the field (a dotted path such as
``step_up.max_age`` or ``match.actions[1]``).

Schema (version 1)::

    version: 1                      # required, the integer 1
    rules:                          # optional, ordered; the first matching rule wins
      - id: transfer-large          # required, unique, [a-z0-9][a-z0-9._-]*, at most 128 chars
        description: Large transfers need a fresh second factor   # optional, for authors
        match:                      # required
          actions: ["payments.transfer"]  # required, non-empty: exact names or globs
          resources: ["accounts/*"]       # optional, non-empty; absent = any resource
          groups: ["staff"]               # optional, non-empty; subject in ANY of them
          hosts: ["admin.example.com", "*.example.com"]  # optional: forward-auth only
          paths: ["/admin/**", "^/api/v[0-9]+/admin(/.*)?$"]  # optional: forward-auth only
          methods: ["POST", "DELETE"]     # optional: forward-auth only
        when: "context.amount > 100"      # optional CEL over request, context, subject,
                                          #   session, risk; must return a bool
        # exactly one outcome:
        allow: true
        deny: true
        step_up:
          acr: aal2                 # required: aal1, aal2, phr, phrh, aal3 (a minimum)
          max_age: 300              # optional int >= 0 seconds; 0 = every time; absent = any
          methods: [totp, recovery_code]  # optional, non-empty FactorType values; absent = all
                                          # (sms_otp counts for aal2 only when listed here;
                                          # email_otp never reaches aal2)
          bind: true                # optional bool: the proof is valid once, for this
                                    #   exact transaction
        summary: "Transfer {context.amount} to {context.payee}"  # optional, step_up only:
                                    #   {action} and {context.KEY} placeholders
        reason: "large transfer"    # optional; default derived from the rule
    default:                        # required: what happens when no rule matches
      id: default                   # optional, default "default"
      deny: true                    # or allow: true, or step_up: {...}
      # description, summary, reason as for rules; no match, no when

A rule with ``hosts``, ``paths`` or ``methods`` (see :mod:`stepguard.core.policy.http`)
applies to forward-auth checks only: its actions default to ``["http.*"]`` and must all start
with ``http.``. A forward-auth check carries no transaction, so a step-up rule that can apply
to one (HTTP matchers, or an action pattern whose literal prefix starts with ``http.``) may
not ask for ``bind: true`` or ``max_age: 0``.

Globs in ``actions`` and ``resources`` use ``*`` (any characters, dots included) and ``?``
(one character) only; everything else is literal. Booleans must be YAML booleans and
integers YAML integers (``"300"`` and ``true`` are not ages). Unknown fields and duplicate
mapping keys are errors. YAML is read with ``yaml.safe_load`` only (duplicate keys, which it
would silently collapse, are found by composing the same text into nodes with the safe
loader's composer: no Python objects are built on that pass either).
"""

from __future__ import annotations

import re
from typing import Any, Final

from stepguard.core.assurance import (
    SECOND_FACTOR,
    AssuranceLevel,
    FactorType,
    Requirement,
    SecondFactor,
)
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
from stepguard.core.policy.cel import compile_condition
from stepguard.core.policy.engine import CompiledRule, PolicyEngine, is_glob
from stepguard.core.policy.http import HttpMatch, host_problem, method_problem, path_problem
from stepguard.core.policy.model import CompiledPolicy, Outcome, Rule
from stepguard.core.policy.summary import check_template

SCHEMA_VERSION: Final = 1
DEFAULT_RULE_ID: Final = "default"
KNOWN_METHODS: Final[frozenset[str]] = frozenset(factor.value for factor in FactorType)
"""Values allowed in ``step_up.methods``: every FactorType, so new factor types need no edit."""

_RULE_ID: Final = re.compile(r"[a-z0-9][a-z0-9._-]*")
_MAX_RULE_ID_LENGTH: Final = 128
_ACR_VALUES: Final = {level.acr: level for level in AssuranceLevel}

_TOP_FIELDS: Final = ("version", "rules", "default")
_OUTCOME_FIELDS: Final = ("allow", "deny", "step_up")
_TEXT_FIELDS: Final = ("description", "summary", "reason")
_RULE_FIELDS: Final = ("id", "match", "when", *_OUTCOME_FIELDS, *_TEXT_FIELDS)
_DEFAULT_FIELDS: Final = ("id", *_OUTCOME_FIELDS, *_TEXT_FIELDS)
_HTTP_FIELDS: Final = ("hosts", "paths", "methods")
_MATCH_FIELDS: Final = ("actions", "resources", "groups", *_HTTP_FIELDS)
HTTP_ACTION_PREFIX: Final = "http."
"""Forward-auth actions (``http.request`` and those a proxy names) all start with this."""
_HTTP_DEFAULT_ACTIONS: Final = ("http.*",)
_STEP_UP_FIELDS: Final = ("acr", "max_age", "methods", "bind")


def _requirement(where: Where, value: Any) -> Requirement:
    spec = mapping(where, value, "step_up", "step_up")
    known_fields(where, spec, _STEP_UP_FIELDS, "step_up.")
    if "acr" not in spec:
        where.fail("step_up needs an acr (one of: " + ", ".join(_ACR_VALUES) + ")", "step_up.acr")
    acr = spec["acr"]
    if not isinstance(acr, str) or acr not in _ACR_VALUES:
        allowed = ", ".join(_ACR_VALUES)
        where.fail(f"unknown level {describe(acr)} (expected one of: {allowed})", "step_up.acr")
    max_age: int | None = None
    if "max_age" in spec:
        max_age = integer(where, spec["max_age"], "step_up.max_age", minimum=0)
    methods: frozenset[str] = frozenset()
    if "methods" in spec:
        names = string_list(where, spec["methods"], "step_up.methods", no_spaces=True)
        for i, name in enumerate(names):
            if name not in KNOWN_METHODS:
                known = ", ".join(sorted(KNOWN_METHODS))
                where.fail(
                    f"unknown method {name!r} (expected any of: {known})", f"step_up.methods[{i}]"
                )
        methods = frozenset(names)
        if _ACR_VALUES[acr] >= AssuranceLevel.AAL2 and all(
            SECOND_FACTOR.get(name) is SecondFactor.NO for name in methods
        ):
            where.fail(
                f"{', '.join(sorted(methods))} is not a second factor and can never reach "
                f"{acr} (NIST SP 800-63B: email is not an out-of-band authenticator); "
                "use acr: aal1 with max_age to re-verify by email",
                "step_up.methods",
            )
    bind = boolean(where, spec["bind"], "step_up.bind") if "bind" in spec else False
    return Requirement(acr=_ACR_VALUES[acr], max_age=max_age, methods=methods, bind=bind)


def _default_reason(rule_id: str, outcome: Outcome, requirement: Requirement | None) -> str:
    if outcome is Outcome.ALLOW:
        return f"allowed by rule {rule_id!r}"
    if outcome is Outcome.DENY:
        return f"denied by rule {rule_id!r}"
    if requirement is None:  # not reached: step_up rules always carry one
        return f"step-up required by rule {rule_id!r}"
    parts = [f"rule {rule_id!r} requires {requirement.acr.acr}"]
    if requirement.max_age == 0:
        parts.append("for every request")
    elif requirement.max_age is not None:
        parts.append(f"within {requirement.max_age} s")
    if requirement.bind:
        parts.append("bound to the transaction")
    return ", ".join(parts)


def _outcome_rule(where: Where, spec: dict[Any, Any], rule_id: str) -> Rule:
    """The result side shared by rules and the default: outcome, requirement, texts."""
    present = [name for name in _OUTCOME_FIELDS if name in spec]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        where.fail(
            f"needs exactly one of allow: true, deny: true, step_up: {{...}} (found: {found})",
            "/".join(_OUTCOME_FIELDS),
        )
    (name,) = present
    value = spec[name]
    requirement: Requirement | None = None
    if name == "step_up":
        outcome = Outcome.STEP_UP
        requirement = _requirement(where, value)
    else:
        outcome = Outcome.ALLOW if name == "allow" else Outcome.DENY
        if isinstance(value, dict):
            where.fail(
                f"{name} takes no requirement; use step_up: {{acr: ...}} for a step-up", name
            )
        if value is not True:
            where.fail(
                f"must be true, not {describe(value)} (write {name}: true, or another outcome)",
                name,
            )
    texts = {field: string(where, spec[field], field) for field in _TEXT_FIELDS if field in spec}
    summary = texts.get("summary")
    if summary is not None:
        if outcome is not Outcome.STEP_UP:
            where.fail("only step_up rules have a summary (it is shown on the prompt)", "summary")
        problem = check_template(summary)
        if problem is not None:
            where.fail(problem, "summary")
    return Rule(
        id=rule_id,
        outcome=outcome,
        requirement=requirement,
        reason=texts.get("reason") or _default_reason(rule_id, outcome, requirement),
        description=texts.get("description", ""),
        summary=summary,
    )


def _misplaced_requirement(where: Where, spec: dict[Any, Any]) -> None:
    """``acr: aal2`` next to ``allow: true`` (or at the rule level) is a common slip."""
    for field in _STEP_UP_FIELDS:
        if field in spec:
            if "step_up" in spec:
                where.fail(f"{field} belongs inside step_up: {{...}}", field)
            where.fail(
                f"{field} is a step-up requirement; only step_up rules take one "
                f"(write step_up: {{acr: ..., {field}: ...}})",
                field,
            )


def _rule_id(where: Where, spec: dict[Any, Any]) -> str:
    if "id" not in spec:
        where.fail("every rule needs an id", "id")
    value = spec["id"]
    if not isinstance(value, str) or _RULE_ID.fullmatch(value) is None:
        where.fail(
            f"invalid id {describe(value)} (lowercase letters, digits, '.', '_', '-'; "
            "starting with a letter or digit)",
            "id",
        )
    if len(value) > _MAX_RULE_ID_LENGTH:
        where.fail(f"the id is longer than {_MAX_RULE_ID_LENGTH} characters", "id")
    return value


def _compile_rule(source: str, index: int, value: Any, seen_ids: set[str]) -> CompiledRule:
    where = Where(source, rule=f"rules[{index}]")
    spec = mapping(where, value, None, "a rule")
    rule_id = _rule_id(where, spec)
    where.rule = rule_id
    if rule_id in seen_ids:
        where.fail("duplicate rule id", "id")
    seen_ids.add(rule_id)
    _misplaced_requirement(where, spec)
    known_fields(where, spec, _RULE_FIELDS)
    if "match" not in spec:
        where.fail("every rule needs a match with actions", "match")
    match = mapping(where, spec["match"], "match", "match")
    known_fields(where, match, _MATCH_FIELDS, "match.")
    http = _http_match(where, match)
    if "actions" in match:
        actions = string_list(where, match["actions"], "match.actions", no_spaces=True)
    elif http is not None:
        actions = _HTTP_DEFAULT_ACTIONS
    else:
        where.fail(
            "match needs actions (exact names or globs), or hosts/paths/methods",
            "match.actions",
        )
    if http is not None:
        for i, action in enumerate(actions):
            if not action.startswith(HTTP_ACTION_PREFIX):
                where.fail(
                    f"{action!r}: a rule that matches hosts, paths or methods applies to "
                    f"forward-auth checks only, whose actions start with {HTTP_ACTION_PREFIX!r}",
                    f"match.actions[{i}]",
                )
    resources = (
        string_list(where, match["resources"], "match.resources", no_spaces=False)
        if "resources" in match
        else None
    )
    groups = (
        frozenset(string_list(where, match["groups"], "match.groups", no_spaces=False))
        if "groups" in match
        else frozenset()
    )
    condition = None
    if "when" in spec:
        expression = string(where, spec["when"], "when")
        condition = compile_condition(expression, source=source, rule=rule_id, field="when")
    rule = _outcome_rule(where, spec, rule_id)
    if http is not None or any(_may_be_http(action) for action in actions):
        _no_transaction(where, rule)
    return CompiledRule(
        rule=rule,
        actions=actions,
        resources=resources,
        groups=groups,
        condition=condition,
        http=http,
    )


def _may_be_http(pattern: str) -> bool:
    """Whether an action pattern names forward-auth actions (by its literal prefix)."""
    if not is_glob(pattern):
        return pattern.startswith(HTTP_ACTION_PREFIX)
    prefix = pattern[: min(i for i, c in enumerate(pattern) if c in "*?")]
    return len(prefix) >= len(HTTP_ACTION_PREFIX) and prefix.startswith(HTTP_ACTION_PREFIX)


def _no_transaction(where: Where, rule: Rule) -> None:
    requirement = rule.requirement
    if requirement is None:
        return
    if requirement.bind:
        field = "step_up.bind"
    elif requirement.max_age == 0:
        field = "step_up.max_age"
    else:
        return
    where.fail(
        "a forward-auth check carries no transaction, so a proof bound to one (bind: true or "
        "max_age: 0) can never be presented; use a freshness window (max_age: 60 or more) "
        "for HTTP rules",
        field,
    )


def _http_match(where: Where, match: dict[Any, Any]) -> HttpMatch | None:
    if not any(name in match for name in _HTTP_FIELDS):
        return None
    lists: dict[str, tuple[str, ...] | None] = {}
    checks = {"hosts": host_problem, "paths": path_problem, "methods": method_problem}
    for name in _HTTP_FIELDS:
        if name not in match:
            lists[name] = None
            continue
        items = string_list(where, match[name], f"match.{name}", no_spaces=True)
        for i, item in enumerate(items):
            problem = checks[name](item)
            if problem is not None:
                where.fail(problem, f"match.{name}[{i}]")
        lists[name] = items
    return HttpMatch.build(hosts=lists["hosts"], paths=lists["paths"], methods=lists["methods"])


def _compile_default(source: str, value: Any, seen_ids: set[str]) -> Rule:
    where = Where(source, rule=DEFAULT_RULE_ID)
    spec = mapping(where, value, "default", "default")
    for field in ("match", "when"):
        if field in spec:
            where.fail(f"the default rule matches everything; it takes no {field}", field)
    _misplaced_requirement(where, spec)
    known_fields(where, spec, _DEFAULT_FIELDS)
    rule_id = _rule_id(where, spec) if "id" in spec else DEFAULT_RULE_ID
    where.rule = rule_id
    if rule_id in seen_ids:
        where.fail(
            "duplicate rule id (the default rule is named 'default' unless it has an id)", "id"
        )
    return _outcome_rule(where, spec, rule_id)


def load_policy(text: str, *, source: str) -> CompiledPolicy:
    """Validate and compile a policy. Raises PolicyError naming source, rule and field."""
    where = Where(source)
    data = parse_yaml(text, where, what="policy")
    known_fields(where, data, _TOP_FIELDS)
    if "version" not in data:
        where.fail(f"the policy needs version: {SCHEMA_VERSION}", "version")
    version = data["version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        where.fail(
            f"unsupported version {describe(version)} (expected {SCHEMA_VERSION})", "version"
        )
    raw_rules = data.get("rules", [])
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        where.fail(f"rules must be a list, not {describe(raw_rules)}", "rules")
    seen_ids: set[str] = set()
    rules = [_compile_rule(source, i, value, seen_ids) for i, value in enumerate(raw_rules)]
    if "default" not in data:
        where.fail("a default rule is required (default: {deny: true}, for example)", "default")
    default = _compile_default(source, data["default"], seen_ids)
    return PolicyEngine(source=source, rules=rules, default=default)
