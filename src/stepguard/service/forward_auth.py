"""Forward-auth: may this browser's request through the reverse proxy reach the upstream?

The proxy (nginx ``auth_request``, Traefik ``ForwardAuth``, Caddy ``forward_auth``, Envoy
``ext_authz``) asks before every request. The browser is known by the hosted pages' cookie
(its browser session names a StepGuard session); the original request becomes a decision for
an ``http.`` action with the request's method, host and path (docs/forward-auth.md).

Every outcome is typed. Only :class:`ForwardAllowed` lets the request through; every error
on the way (storage, policy, risk, a bug) is a :class:`ForwardDenied` or an exception the web
adapter answers with a 5xx, never an allow.
"""

from __future__ import annotations

from dataclasses import dataclass

from stepguard.core.assurance import summarize
from stepguard.core.decision import Allow, StepUp
from stepguard.core.errors import PageLinkInvalidError, SessionInvalidError
from stepguard.core.model import AuditEvent, Challenge, Session, Subject
from stepguard.core.policy.model import HttpRequest
from stepguard.service.decisions import DecisionRequest, DecisionService
from stepguard.service.deps import Deps
from stepguard.service.pagelinks import PageLink
from stepguard.service.pages import PageService

FORWARD_AUTH_ACTOR = "forward-auth"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardAllowed:
    """Let the request through, telling the upstream who it is."""

    rule: str
    subject: Subject
    session: Session
    acr: str | None  # the session's level now, e.g. "aal2"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardLogin:
    """No (valid) browser session: send the browser to log in."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardStepUp:
    """Send the browser to the hosted step-up page for this challenge."""

    rule: str
    challenge: Challenge
    page_link: PageLink


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardDenied:
    rule: str


ForwardVerdict = ForwardAllowed | ForwardLogin | ForwardStepUp | ForwardDenied


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardCheck:
    """One forward-auth question, parsed and from a trusted proxy."""

    cookie: str | None
    request: HttpRequest
    action: str
    ip: str | None
    user_agent: str | None


class ForwardAuthService:
    def __init__(self, deps: Deps, *, pages: PageService, decisions: DecisionService) -> None:
        self._deps = deps
        self._pages = pages
        self._decisions = decisions

    async def check(self, check: ForwardCheck) -> ForwardVerdict:
        try:
            browser = await self._pages.browser(check.cookie)
        except PageLinkInvalidError:
            return ForwardLogin(reason="no active browser session")
        http = check.request
        try:
            result = await self._decisions.decide(
                DecisionRequest(
                    session_id=browser.session_id,
                    action=check.action,
                    # What summaries can show: "{context.method} {context.host}{context.path}".
                    context={"method": http.method, "host": http.host, "path": http.path},
                    ip=check.ip,
                    user_agent=check.user_agent,
                    http=http,
                ),
                actor=FORWARD_AUTH_ACTOR,
            )
        except SessionInvalidError:  # ended between the two reads
            return ForwardLogin(reason="session no longer active")
        decision = result.decision
        if isinstance(decision, Allow):
            if result.subject is None or result.session is None:  # not reached; fail closed
                return ForwardDenied(rule=decision.rule)
            level = summarize(result.session.factors).level
            return ForwardAllowed(
                rule=decision.rule,
                subject=result.subject,
                session=result.session,
                acr=level.acr if level else None,
            )
        if isinstance(decision, StepUp):
            if result.challenge is None or result.page_link is None:  # not reached
                return ForwardDenied(rule=decision.rule)
            if decision.requirement.needs_grant:
                # A wildcard rule (the loader refuses explicit HTTP ones) asks for a proof
                # bound to a transaction; a proxied request cannot present one.
                await self._refuse(result.challenge, "bound step-up over forward-auth")
                return ForwardDenied(rule=decision.rule)
            return ForwardStepUp(
                rule=decision.rule, challenge=result.challenge, page_link=result.page_link
            )
        return ForwardDenied(rule=decision.rule)

    async def _refuse(self, challenge: Challenge, reason: str) -> None:
        async with self._deps.store.transaction() as uow:
            await uow.audit.append(
                AuditEvent(
                    type="forward_auth.refused",
                    at=self._deps.clock.now(),
                    outcome="deny",
                    subject_id=challenge.subject_id,
                    session_id=challenge.session_id,
                    actor=FORWARD_AUTH_ACTOR,
                    details={
                        "reason": reason,
                        "rule": challenge.rule,
                        "challenge_id": challenge.id,
                    },
                )
            )
