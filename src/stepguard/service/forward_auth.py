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

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from stepguard.core.assurance import summarize
from stepguard.core.decision import Allow, StepUp
from stepguard.core.errors import SessionInvalidError
from stepguard.core.ids import token_hash
from stepguard.core.model import AuditEvent, Challenge, Session, Subject
from stepguard.core.policy.model import HttpRequest
from stepguard.service.decisions import DecisionRequest, DecisionService
from stepguard.service.deps import Deps
from stepguard.service.pagelinks import PageLink

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


_CacheKey = tuple[object, ...]


class ForwardAuthService:
    """``cache_seconds`` > 0 keeps each *allow* for that long in this process (at most
    ``cache_size`` entries), keyed by everything the decision read: the cookie's hash, the
    action, the whole original request, the client address and agent, and the policy in
    force. A revoked session or browser session, or a closing ``max_age`` window, is
    therefore noticed up to ``cache_seconds`` late; nothing else is cached (a step-up, a
    deny or a login is decided afresh every time)."""

    def __init__(
        self,
        deps: Deps,
        *,
        decisions: DecisionService,
        cache_seconds: float = 0.0,
        cache_size: int = 10_000,
    ) -> None:
        self._deps = deps
        self._decisions = decisions
        self._ttl = timedelta(seconds=cache_seconds)
        self._cache_size = cache_size
        self._cache: dict[_CacheKey, tuple[ForwardAllowed, datetime]] = {}
        self._inflight: dict[_CacheKey, asyncio.Future[ForwardVerdict]] = {}

    async def check(self, check: ForwardCheck) -> ForwardVerdict:
        if not check.cookie:
            return ForwardLogin(reason="no browser session cookie")
        deps = self._deps
        now = deps.clock.now()
        id_hash = token_hash(check.cookie)
        http = check.request
        key: _CacheKey = (
            id_hash,
            check.action,
            http.method,
            http.scheme,
            http.host,
            http.port,
            http.path,
            http.query,
            check.ip,
            check.user_agent,
            id(deps.policy.current),
        )
        if not self._ttl:
            return await self._decide(check, id_hash, key, now)
        cached = self._cache.get(key)
        if cached is not None and now < cached[1]:
            return cached[0]
        # Identical checks arriving together (a page's many requests, or every connection
        # when an entry expires) wait for the first one's allow instead of each reading the
        # database. Only an allow is shared: anything else is decided again by each caller,
        # so no two browsers' requests ever share a challenge or its page link.
        leader = self._inflight.get(key)
        if leader is not None:
            try:
                shared = await asyncio.shield(leader)
            except asyncio.CancelledError:
                if not leader.cancelled():
                    raise  # this caller was cancelled, not the leader
            else:
                if isinstance(shared, ForwardAllowed):
                    return shared
            return await self._decide(check, id_hash, key, now)
        future: asyncio.Future[ForwardVerdict] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            verdict = await self._decide(check, id_hash, key, now)
        except BaseException:
            future.cancel()  # waiters decide for themselves
            raise
        else:
            future.set_result(verdict)
            return verdict
        finally:
            del self._inflight[key]

    async def _decide(
        self, check: ForwardCheck, id_hash: str, key: _CacheKey, now: datetime
    ) -> ForwardVerdict:
        deps = self._deps
        http = check.request
        # One statement; the decision then checks the StepGuard session itself.
        async with deps.store.lookup() as uow:
            browser = await uow.browser_sessions.get_active(id_hash, at=now)
        if browser is None:
            return ForwardLogin(reason="no active browser session")
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
        except SessionInvalidError:  # ended, expired or revoked
            return ForwardLogin(reason="session no longer active")
        decision = result.decision
        if isinstance(decision, Allow):
            subject, session = result.subject, result.session
            if subject is None or session is None or session.subject_id != browser.subject_id:
                return ForwardDenied(rule=decision.rule)  # not reached; fail closed
            level = summarize(session.factors).level
            allowed = ForwardAllowed(
                rule=decision.rule,
                subject=subject,
                session=session,
                acr=level.acr if level else None,
            )
            if self._ttl:
                self._remember(key, allowed, min(now + self._ttl, browser.expires_at))
            return allowed
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

    def _remember(self, key: _CacheKey, allowed: ForwardAllowed, until: datetime) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size:
            # Drop the oldest entry; a concurrent caller may have changed the dict.
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del cache[next(iter(cache))]
        cache[key] = (allowed, min(until, allowed.session.expires_at))

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
