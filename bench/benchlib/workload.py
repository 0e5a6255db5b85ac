"""Deterministic workloads: a generated policy of any size and a pool of pre-built sessions.

The policy is grouped by service, about ten rules per service, as a real policy for many apps
would be: exact actions, ``svcN.*``-style globs, CEL ``when`` conditions, group and resource
matches, and all three outcomes. Every request in the pool targets one service chosen
uniformly, so the rule that decides it is spread evenly through the list, and a few requests
fall through to the default.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from stepguard.core.assurance import (
    AuthMethod,
    CompletedFactor,
    FactorType,
    primary_factors,
    step_up_factor,
)
from stepguard.core.model import Session, Subject
from stepguard.core.policy.model import PolicyInput
from stepguard.core.risk import LOW_RISK, UNAVAILABLE_RISK, RiskAssessment, RiskLevel
from stepguard.service.decisions import policy_input

NOW: Final = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
"""The fixed ``now`` of every in-process decision (time is a parameter)."""

GROUPS: Final = ("staff", "admins", "finance", "support", "auditors")

MEDIUM_RISK: Final = RiskAssessment(score=0.6, level=RiskLevel.MEDIUM, reasons=("new device",))

# What a request asks for: (verb, has a resource). "misc.*" verbs only match the svcN.* glob;
# "nosuch" matches no rule of the service (the default decides).
_VERBS: Final = (
    "read",
    "list",
    "update",
    "transfer",
    "admin.users",
    "admin.keys",
    "export",
    "delete",
    "misc.ping",
    "nosuch",
)

# Rules generated per service; the policy is cut to the requested size.
RULES_PER_SERVICE: Final = 10


def _service_rules(k: int, rng: random.Random) -> list[str]:
    """About ten YAML rule entries for service ``k`` (flow style, one per line)."""
    s = f"svc{k}"
    threshold = rng.choice((100, 250, 500, 1000, 2500))
    age = rng.choice((300, 600, 900))
    rules = [
        f'{{id: {s}-read, match: {{actions: ["{s}.read", "{s}.list"]}}, allow: true}}',
        f'{{id: {s}-update, match: {{actions: ["{s}.update"], resources: ["{s}/items/*"]}}, '
        f"step_up: {{acr: aal2, max_age: {age}}}}}",
        f'{{id: {s}-transfer-large, match: {{actions: ["{s}.transfer"]}}, '
        f'when: "has(context.amount) && context.amount > {threshold}", '
        f"step_up: {{acr: aal2, max_age: 300, bind: true}}, "
        f'summary: "Transfer {{context.amount}} to {{context.payee}}"}}',
        f'{{id: {s}-transfer, match: {{actions: ["{s}.transfer"]}}, allow: true}}',
        f'{{id: {s}-admin, match: {{actions: ["{s}.admin.*"], groups: [admins]}}, '
        f"step_up: {{acr: aal2, max_age: 300, methods: [totp]}}}}",
        f'{{id: {s}-admin-others, match: {{actions: ["{s}.admin.*"]}}, deny: true}}',
        f'{{id: {s}-export-risky, match: {{actions: ["{s}.export"]}}, '
        f'when: "risk.score > 0.5 || session.age_seconds > 14400", '
        f"step_up: {{acr: aal2, max_age: {age}, methods: [totp]}}}}",
        f'{{id: {s}-export, match: {{actions: ["{s}.export"], groups: [staff, finance]}}, '
        f"allow: true}}",
        f'{{id: {s}-delete, match: {{actions: ["{s}.delete"]}}, '
        f"step_up: {{acr: aal2, max_age: 0}}}}",
        f'{{id: {s}-staff-internal, match: {{actions: ["{s}.*"], groups: [staff]}}, '
        f"when: \"request.ip.startsWith('10.')\", allow: true}}",
    ]
    if rng.random() < 0.5:  # vary the order a little between services
        rules[0], rules[1] = rules[1], rules[0]
    return rules


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedPolicy:
    text: str
    rule_count: int
    services: int


def generate_policy(
    rule_count: int, *, seed: int = 1, extra_rules: Sequence[str] = ()
) -> GeneratedPolicy:
    """A policy of exactly ``rule_count`` generated rules (plus ``extra_rules``, inserted in
    the middle of the list), and a step-up default."""
    rng = random.Random(seed)
    services = max(1, -(-rule_count // RULES_PER_SERVICE))
    rules: list[str] = []
    for k in range(services):
        rules.extend(_service_rules(k, rng))
    rules = rules[:rule_count]
    middle = len(rules) // 2
    rules[middle:middle] = list(extra_rules)
    lines = ["version: 1", "rules:"]
    lines.extend(f"  - {rule}" for rule in rules)
    lines.append("default: {step_up: {acr: aal2, max_age: 300}}")
    return GeneratedPolicy(text="\n".join(lines) + "\n", rule_count=len(rules), services=services)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionCase:
    """One pre-built session and request: everything ``decide`` takes except the policy."""

    inp: PolicyInput
    factors: tuple[CompletedFactor, ...]
    risk: RiskAssessment


def _factors(rng: random.Random, created: datetime) -> tuple[CompletedFactor, ...]:
    amr = [AuthMethod.PWD] if rng.random() < 0.9 else [AuthMethod.PWD, AuthMethod.OTP]
    factors = list(primary_factors(amr, at=created))
    if rng.random() < 0.5:
        at = NOW - timedelta(seconds=rng.randrange(0, 1800))
        factors.append(
            step_up_factor(FactorType.TOTP, factor_id=f"fac_{rng.getrandbits(48):012x}", at=at)
        )
    return tuple(factors)


def build_cases(count: int, *, services: int, seed: int = 2) -> list[DecisionCase]:
    """``count`` distinct sessions, each with its own subject, factors, request and risk."""
    rng = random.Random(seed)
    cases: list[DecisionCase] = []
    for i in range(count):
        created = NOW - timedelta(seconds=rng.randrange(60, 8 * 3600))
        groups = tuple(g for g in GROUPS if rng.random() < 0.25)
        subject = Subject(id=f"user-{i}", groups=groups, created_at=created, updated_at=created)
        session = Session(
            id=f"ses_{i:08d}",
            subject_id=subject.id,
            created_at=created,
            expires_at=created + timedelta(hours=12),
            factors=_factors(rng, created),
        )
        service = rng.randrange(services)
        verb = rng.choice(_VERBS)
        action = f"svc{service}.{verb}"
        resource = f"svc{service}/items/{rng.randrange(1000)}" if verb == "update" else None
        context: dict[str, Any] = {}
        if verb == "transfer":
            context = {"amount": rng.randrange(1, 5000), "payee": f"acct-{rng.randrange(10**6)}"}
        roll = rng.random()
        risk = LOW_RISK if roll < 0.85 else MEDIUM_RISK if roll < 0.97 else UNAVAILABLE_RISK
        ip = (
            f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"
            if rng.random() < 0.3
            else (f"203.0.113.{rng.randrange(256)}")
        )
        inp = policy_input(
            subject=subject,
            session=session,
            action=action,
            resource=resource,
            context=context,
            ip=ip,
            user_agent="Mozilla/5.0 (bench)",
            risk=risk,
            now=NOW,
        )
        cases.append(DecisionCase(inp=inp, factors=session.factors, risk=risk))
    return cases
