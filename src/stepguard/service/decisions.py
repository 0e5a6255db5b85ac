"""The decision use case: the hot path. Allow decisions read and never write.

Fail closed: a storage error, a policy error, a risk port error or timeout, or any bug on this
path ends in ``Deny`` (or a step-up), never ``Allow``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepguard.core.assurance import Requirement, summarize
from stepguard.core.binding import transaction_digest
from stepguard.core.decision import Allow, Decision, Deny, StepUp, decide
from stepguard.core.errors import SessionInvalidError, StepGuardError
from stepguard.core.ids import new_id, token_hash
from stepguard.core.model import AuditEvent, Challenge, ChallengeStatus, Grant, Session, Subject
from stepguard.core.pages import PagePurpose
from stepguard.core.policy.model import HttpRequest, PolicyInput
from stepguard.core.policy.summary import render_summary
from stepguard.core.risk import UNAVAILABLE_RISK, RiskAssessment
from stepguard.service.deps import Deps
from stepguard.service.pagelinks import PageLink, mint_page_link

FAIL_CLOSED_RULE = "stepguard.fail_closed"
# What the step-up page shows for a forward-auth request whose rule has no summary.
HTTP_SUMMARY = "{context.method} {context.host}{context.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRequest:
    session_id: str
    action: str
    resource: str | None = None
    context: Mapping[str, Any]
    ip: str | None = None
    user_agent: str | None = None
    grant: str | None = None
    device_id: str | None = None
    # A challenge satisfied on the hosted pages: its grant is redeemed without crossing the
    # browser (docs/pages.md).
    challenge_id: str | None = None
    # A forward-auth check: the original request (docs/forward-auth.md).
    http: HttpRequest | None = None
    # What the caller itself asks for at least (an OIDC client's acr_values, docs/oidc.md).
    minimum: Requirement | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionResult:
    decision: Decision
    risk: RiskAssessment
    challenge: Challenge | None = None
    page_link: PageLink | None = None  # the challenge's single-use link to the hosted page
    # Who was decided about (absent when the decision failed closed before knowing).
    subject: Subject | None = None
    session: Session | None = None


def requirement_details(requirement: Requirement) -> dict[str, object]:
    return {
        "acr": requirement.acr.acr,
        "max_age": requirement.max_age,
        "methods": sorted(requirement.methods),
        "bind": requirement.bind,
    }


def policy_input(
    *,
    subject: Subject,
    session: Session,
    action: str,
    resource: str | None,
    context: Mapping[str, Any],
    ip: str | None,
    user_agent: str | None,
    risk: RiskAssessment,
    now: datetime,
    http: HttpRequest | None = None,
) -> PolicyInput:
    assurance = summarize(session.factors)
    request: dict[str, Any] = {"ip": ip or "", "user_agent": user_agent or ""}
    if http is not None:
        request.update(
            method=http.method,
            scheme=http.scheme,
            host=http.host,
            port=http.port or (443 if http.scheme == "https" else 80),
            path=http.path,
            query=http.query,
        )
    return PolicyInput(
        action=action,
        resource=resource,
        groups=frozenset(subject.groups),
        subject={"id": subject.id, "groups": list(subject.groups)},
        session={
            "id": session.id,
            "acr": assurance.level.acr if assurance.level else "",
            "amr": list(assurance.amr),
            "age_seconds": int((now - session.created_at).total_seconds()),
        },
        context=context,
        request=request,
        risk=risk.as_cel(),
        http=http,
    )


class DecisionService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def decide(self, request: DecisionRequest, *, actor: str | None) -> DecisionResult:
        try:
            return await self._decide(request, actor=actor)
        except SessionInvalidError:
            raise
        except Exception as error:  # fail closed on anything, bugs included
            self._deps.observer.fail_closed(where="decision", error=error)
            reason = error.message if isinstance(error, StepGuardError) else "internal error"
            decision = Deny(rule=FAIL_CLOSED_RULE, reasons=(f"failed closed: {reason}",))
            self._deps.observer.decision(outcome="deny", rule=FAIL_CLOSED_RULE)
            return DecisionResult(decision=decision, risk=UNAVAILABLE_RISK)

    async def _assess(
        self, subject: Subject, session: Session, request: DecisionRequest, now: datetime
    ) -> RiskAssessment:
        try:
            return await asyncio.wait_for(
                self._deps.risk.assess(
                    subject=subject,
                    session=session,
                    action=request.action,
                    ip=request.ip,
                    user_agent=request.user_agent,
                    now=now,
                    device_id=request.device_id,
                ),
                timeout=self._deps.config.risk_timeout_seconds,
            )
        except Exception as error:  # a failed assessment is high risk, not low
            self._deps.observer.fail_closed(where="risk", error=error)
            return UNAVAILABLE_RISK

    async def _decide(self, request: DecisionRequest, *, actor: str | None) -> DecisionResult:
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.lookup() as uow:  # one statement: no transaction needed
            found = await uow.sessions.get_with_subject(request.session_id)
        if found is None or not found[0].is_active(now):
            raise SessionInvalidError()
        session, subject = found

        risk = await self._assess(subject, session, request, now)
        inp = policy_input(
            subject=subject,
            session=session,
            action=request.action,
            resource=request.resource,
            context=request.context,
            ip=request.ip,
            user_agent=request.user_agent,
            risk=risk,
            now=now,
            http=request.http,
        )
        decision = decide(
            policy=deps.policy.current,
            inp=inp,
            factors=session.factors,
            risk=risk,
            now=now,
            minimum=request.minimum,
        )

        if isinstance(decision, Allow):
            deps.observer.decision(outcome="allow", rule=decision.rule)
            return DecisionResult(decision=decision, risk=risk, subject=subject, session=session)

        common: dict[str, Any] = {
            "action": request.action,
            "resource": request.resource,
            "rule": decision.rule,
            "reasons": list(decision.reasons),
            "risk": risk.details(),
            "ip": request.ip,
        }
        if request.http is not None:
            common["http"] = {
                "method": request.http.method,
                "host": request.http.host,
                "path": request.http.path,
            }
        if isinstance(decision, Deny):
            async with deps.store.transaction() as uow:
                await uow.audit.append(
                    AuditEvent(
                        type="decision.deny",
                        at=now,
                        outcome="deny",
                        subject_id=subject.id,
                        session_id=session.id,
                        actor=actor,
                        details=common,
                    )
                )
            deps.observer.decision(outcome="deny", rule=decision.rule)
            return DecisionResult(decision=decision, risk=risk, subject=subject, session=session)

        digest = transaction_digest(
            subject_id=subject.id,
            session_id=session.id,
            action=request.action,
            resource=request.resource,
            context=request.context,
        )
        if request.grant is not None or request.challenge_id is not None:
            granted = await self._redeem_grant(
                decision, subject, session, request, digest, now, actor
            )
            if granted is not None:
                deps.observer.decision(outcome="allow", rule=granted.rule)
                return DecisionResult(decision=granted, risk=risk, subject=subject, session=session)

        challenge = Challenge(
            id=new_id(deps.rng, "chl"),
            subject_id=subject.id,
            session_id=session.id,
            action=request.action,
            resource=request.resource,
            transaction_digest=digest,
            rule=decision.rule,
            requirement=decision.requirement,
            summary=render_summary(
                decision.summary_template or (HTTP_SUMMARY if request.http is not None else None),
                action=request.action,
                context=request.context,
            ),
            status=ChallengeStatus.PENDING,
            created_at=now,
            expires_at=now + deps.config.challenge_ttl,
        )
        page_link, page_token = mint_page_link(
            deps,
            purpose=PagePurpose.CHALLENGE,
            subject_id=subject.id,
            session_id=session.id,
            challenge_id=challenge.id,
            now=now,
            not_after=min(challenge.expires_at, session.expires_at),
        )
        async with deps.store.transaction() as uow:
            await uow.challenges.add(challenge)
            await uow.page_tokens.add(page_token)
            await uow.audit.append(
                AuditEvent(
                    type="decision.step_up",
                    at=now,
                    outcome="step_up",
                    subject_id=subject.id,
                    session_id=session.id,
                    actor=actor,
                    details={
                        **common,
                        "challenge_id": challenge.id,
                        "requirement": requirement_details(decision.requirement),
                    },
                )
            )
        deps.observer.decision(outcome="step_up", rule=decision.rule)
        return DecisionResult(
            decision=decision,
            risk=risk,
            challenge=challenge,
            page_link=page_link,
            subject=subject,
            session=session,
        )

    async def _redeem_grant(
        self,
        decision: StepUp,
        subject: Subject,
        session: Session,
        request: DecisionRequest,
        digest: str,
        now: datetime,
        actor: str | None,
    ) -> Allow | None:
        """Use a presented grant (or the grant of a challenge satisfied on the hosted pages)
        once. ``None`` when it does not prove this transaction."""
        async with self._deps.store.transaction() as uow:
            used: Grant | None = None
            if request.grant is not None:
                used = await uow.grants.consume(
                    token_hash(request.grant),
                    subject_id=subject.id,
                    session_id=session.id,
                    action=request.action,
                    transaction_digest=digest,
                    at=now,
                )
            elif request.challenge_id is not None:
                used = await uow.grants.consume_for_challenge(
                    request.challenge_id,
                    subject_id=subject.id,
                    session_id=session.id,
                    action=request.action,
                    transaction_digest=digest,
                    at=now,
                )
            challenge = await uow.challenges.get(used.challenge_id) if used else None
            # The grant must come from a satisfied step-up at least as strong as what is
            # asked now.
            strong_enough = (
                challenge is not None
                and challenge.status is ChallengeStatus.SATISFIED
                and _covers(challenge.requirement, decision.requirement)
            )
            await uow.audit.append(
                AuditEvent(
                    type="grant.used" if strong_enough else "grant.rejected",
                    at=now,
                    outcome="ok" if strong_enough else "rejected",
                    subject_id=subject.id,
                    session_id=session.id,
                    actor=actor,
                    details={
                        "action": request.action,
                        "rule": decision.rule,
                        "challenge_id": used.challenge_id if used else request.challenge_id,
                        "via": "grant" if request.grant is not None else "challenge_id",
                        "reason": (
                            "accepted"
                            if strong_enough
                            else "weaker than required"
                            if used
                            else "unknown, used, expired or bound to another transaction"
                        ),
                    },
                )
            )
        if not strong_enough:
            return None
        return Allow(rule=decision.rule, reasons=(*decision.reasons, "transaction grant accepted"))


def _covers(proven: Requirement, needed: Requirement) -> bool:
    """Whether a step-up made under ``proven`` also meets ``needed``."""
    if proven.acr < needed.acr:
        return False
    if needed.methods and not (proven.methods and proven.methods <= needed.methods):
        return False
    if needed.max_age is not None and needed.max_age > 0:
        return proven.max_age is not None and proven.max_age <= needed.max_age
    return True
