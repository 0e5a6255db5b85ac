"""The use cases, built together by the composition root and handed to the adapters."""

from __future__ import annotations

from dataclasses import dataclass, replace

from stepguard.core.risk import LevelThresholds
from stepguard.service.apikeys import ApiKeyService
from stepguard.service.audit import AuditService
from stepguard.service.challenges import ChallengeService
from stepguard.service.decisions import DecisionService
from stepguard.service.delivery import DeliveryService
from stepguard.service.deps import Deps
from stepguard.service.factors import FactorService
from stepguard.service.forward_auth import ForwardAuthService
from stepguard.service.maintenance import MaintenanceService
from stepguard.service.notifications import NotificationService
from stepguard.service.pages import PageService
from stepguard.service.push import PushService
from stepguard.service.risk_alerts import RiskAlertService
from stepguard.service.sessions import SessionService
from stepguard.service.subjects import SubjectService
from stepguard.service.verification import VerificationService
from stepguard.service.webauthn import WebAuthnService


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    deps: Deps
    subjects: SubjectService
    sessions: SessionService
    decisions: DecisionService
    verification: VerificationService
    factors: FactorService
    api_keys: ApiKeyService
    audit: AuditService
    webauthn: WebAuthnService
    risk_alerts: RiskAlertService
    challenges: ChallengeService
    pages: PageService
    delivery: DeliveryService
    notifications: NotificationService
    forward_auth: ForwardAuthService
    push: PushService
    maintenance: MaintenanceService

    @classmethod
    def build(
        cls,
        deps: Deps,
        *,
        api_key_cache_seconds: float = 5.0,
        risk_thresholds: LevelThresholds | None = None,
        forward_auth_cache_seconds: float = 0.0,
    ) -> Services:
        notifications = NotificationService(deps)
        deps = replace(deps, notifier=notifications)
        decisions = DecisionService(deps)
        verification = VerificationService(deps)
        challenges = ChallengeService(deps)
        return cls(
            deps=deps,
            subjects=SubjectService(deps),
            sessions=SessionService(deps),
            decisions=decisions,
            verification=verification,
            factors=FactorService(deps),
            api_keys=ApiKeyService(deps, cache_seconds=api_key_cache_seconds),
            audit=AuditService(deps),
            webauthn=WebAuthnService(deps),
            risk_alerts=RiskAlertService(deps, thresholds=risk_thresholds or LevelThresholds()),
            challenges=challenges,
            pages=PageService(
                deps, challenges=challenges, verification=verification, decisions=decisions
            ),
            delivery=DeliveryService(deps),
            notifications=notifications,
            forward_auth=ForwardAuthService(
                deps, decisions=decisions, cache_seconds=forward_auth_cache_seconds
            ),
            push=PushService(deps, verification=verification),
            maintenance=MaintenanceService(deps),
        )
