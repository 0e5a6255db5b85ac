"""What every use case is given: ports, configuration and the current policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from stepguard.core.factors.webauthn import RelyingParty
from stepguard.core.lockout import LockoutPolicy
from stepguard.core.policy.model import CompiledPolicy
from stepguard.core.ports import Rng
from stepguard.service.outbound import NullNotifier, Outbound
from stepguard.service.ports import Clock, Notifier, RiskAssessor, Store
from stepguard.service.push_ports import PushPorts


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    session_ttl: timedelta = timedelta(hours=12)
    challenge_ttl: timedelta = timedelta(minutes=10)
    grant_ttl: timedelta = timedelta(minutes=5)
    management_max_age: int = 300
    risk_timeout_seconds: float = 0.5
    recovery_code_count: int = 10
    totp_issuer: str = "StepGuard"
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    webauthn: RelyingParty = field(default_factory=RelyingParty)
    page_token_ttl: timedelta = timedelta(minutes=5)
    browser_session_ttl: timedelta = timedelta(hours=1)


class PolicyHolder:
    """The policy in force. Replaced whole on reload, never mutated."""

    __slots__ = ("current",)

    def __init__(self, policy: CompiledPolicy) -> None:
        self.current = policy


class Observer(Protocol):
    """Where use cases report what happened (metrics and logs); never given secrets."""

    def decision(self, *, outcome: str, rule: str) -> None: ...
    def verification(self, *, outcome: str, factor_type: str | None) -> None: ...
    def fail_closed(self, *, where: str, error: BaseException) -> None: ...


class NullObserver:
    def decision(self, *, outcome: str, rule: str) -> None:
        pass

    def verification(self, *, outcome: str, factor_type: str | None) -> None:
        pass

    def fail_closed(self, *, where: str, error: BaseException) -> None:
        pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Deps:
    store: Store
    clock: Clock
    rng: Rng
    policy: PolicyHolder
    risk: RiskAssessor
    config: ServiceConfig
    observer: Observer
    outbound: Outbound = field(default_factory=Outbound)
    notifier: Notifier = field(default_factory=NullNotifier)
    push: PushPorts = field(default_factory=PushPorts)
