"""The hosted pages' use cases: opening a page link, the browser session, and what a browser
may do with it (answer its own session's challenges, manage its subject's factors).

A browser proves who it is with a cookie that names a browser session, which is bound to one
StepGuard session and its subject. Opening a page link (single use) starts a browser session;
the session is replaced (rotated) whenever a link is opened and whenever a step-up succeeds
on the pages, so a cookie value fixed before a step-up never carries its result.

Every refusal is one error for the browser (``PageLinkInvalidError`` or ``NotFoundError``)
and a precise reason in the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepguard.core.decision import StepUp
from stepguard.core.errors import NotFoundError, PageLinkInvalidError, SessionInvalidError
from stepguard.core.ids import new_token, token_hash
from stepguard.core.model import AuditEvent, Challenge, Session
from stepguard.core.pages import BrowserSession, PagePurpose
from stepguard.core.secret import Secret
from stepguard.service.challenges import ChallengeService, ChallengeView
from stepguard.service.decisions import DecisionRequest, DecisionService
from stepguard.service.deps import Deps
from stepguard.service.factors import MANAGE_ACTION
from stepguard.service.pagelinks import PageLink, mint_page_link
from stepguard.service.ports import UnitOfWork
from stepguard.service.verification import VerificationService, VerifiedStepUp

# The audit ``actor`` of what a browser does on the pages (API calls name their API key).
PAGES_ACTOR = "pages"
BROWSER_COOKIE_PREFIX = "sgb"


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserLogin:
    """A new browser session and its cookie value (shown to the browser only)."""

    cookie: Secret[str]
    browser: BrowserSession

    def __repr__(self) -> str:
        return f"BrowserLogin(session={self.browser.session_id!r}, cookie=<redacted>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedPage:
    login: BrowserLogin
    purpose: PagePurpose
    challenge_id: str | None


class PageService:
    def __init__(
        self,
        deps: Deps,
        *,
        challenges: ChallengeService,
        verification: VerificationService,
        decisions: DecisionService,
    ) -> None:
        self._deps = deps
        self._challenges = challenges
        self._verification = verification
        self._decisions = decisions

    # --- links and browser sessions --------------------------------------------------------

    async def account_link(self, session_id: str, *, actor: str | None) -> PageLink:
        """A single-use link to the account page for this StepGuard session."""
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            session = await uow.sessions.get(session_id)
            if session is None or not session.is_active(now):
                raise SessionInvalidError()
            link, record = mint_page_link(
                deps,
                purpose=PagePurpose.ACCOUNT,
                subject_id=session.subject_id,
                session_id=session.id,
                challenge_id=None,
                now=now,
                not_after=session.expires_at,
            )
            await uow.page_tokens.add(record)
            await uow.audit.append(
                AuditEvent(
                    type="page.link_issued",
                    at=now,
                    outcome="ok",
                    subject_id=session.subject_id,
                    session_id=session.id,
                    actor=actor,
                    details={"purpose": PagePurpose.ACCOUNT.value},
                )
            )
        return link

    async def _start_browser(
        self, uow: UnitOfWork, session: Session, *, revoke: str | None, now: datetime
    ) -> BrowserLogin:
        """A new browser session for ``session`` (revoking the cookie ``revoke`` first)."""
        if revoke:
            await uow.browser_sessions.revoke(token_hash(revoke), at=now)
        cookie = new_token(self._deps.rng, BROWSER_COOKIE_PREFIX)
        browser = BrowserSession(
            id_hash=token_hash(cookie.reveal()),
            subject_id=session.subject_id,
            session_id=session.id,
            created_at=now,
            expires_at=min(now + self._deps.config.browser_session_ttl, session.expires_at),
        )
        await uow.browser_sessions.add(browser)
        return BrowserLogin(cookie=cookie, browser=browser)

    async def open(
        self,
        token: str,
        *,
        purpose: PagePurpose,
        challenge_id: str | None,
        previous_cookie: str | None,
    ) -> OpenedPage:
        """Consume a page link and start a browser session (revoking the browser's previous
        one, if it sent a cookie). Raise ``PageLinkInvalidError`` for a link that is unknown,
        used, expired, for another page, or whose StepGuard session has ended."""
        deps = self._deps
        now = deps.clock.now()
        reason: str | None = None
        login: BrowserLogin | None = None
        async with deps.store.transaction() as uow:
            used = await uow.page_tokens.consume(token_hash(token), at=now)
            session = await uow.sessions.get(used.session_id) if used else None
            if used is None:
                reason = "unknown, used or expired page link"
            elif used.purpose is not purpose or used.challenge_id != challenge_id:
                reason = "page link opened for another page"
            elif session is None or not session.is_active(now):
                reason = "session no longer active"
            if used is not None and session is not None and reason is None:
                login = await self._start_browser(uow, session, revoke=previous_cookie, now=now)
            # Leave the block normally even when refused: the token stays used.
            await uow.audit.append(
                AuditEvent(
                    type="page.opened" if reason is None else "page.link_rejected",
                    at=now,
                    outcome="ok" if reason is None else "rejected",
                    subject_id=used.subject_id if used else None,
                    session_id=used.session_id if used else None,
                    actor=PAGES_ACTOR,
                    details={
                        "purpose": purpose.value,
                        "challenge_id": challenge_id,
                        "reason": reason or "accepted",
                    },
                )
            )
        if login is None:
            raise PageLinkInvalidError()
        return OpenedPage(login=login, purpose=purpose, challenge_id=challenge_id)

    async def sign_in(
        self, session: Session, *, previous_cookie: str | None, via: str
    ) -> BrowserLogin:
        """Start a browser session for a StepGuard session that was just created by a sign-in
        on StepGuard itself (``via``: ``password``, ``passkey``, ``upstream:<name>``), revoking
        the browser's previous one if it sent a cookie."""
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            login = await self._start_browser(uow, session, revoke=previous_cookie, now=now)
            await uow.audit.append(
                AuditEvent(
                    type="page.signed_in",
                    at=now,
                    outcome="ok",
                    subject_id=session.subject_id,
                    session_id=session.id,
                    actor=PAGES_ACTOR,
                    details={"via": via},
                )
            )
        return login

    async def browser(self, cookie: str | None) -> BrowserSession:
        """The browser session this cookie names, while it and its StepGuard session are
        active. Raise ``PageLinkInvalidError`` otherwise."""
        if not cookie:
            raise PageLinkInvalidError()
        now = self._deps.clock.now()
        async with self._deps.store.read() as uow:
            browser = await uow.browser_sessions.get_active(token_hash(cookie), at=now)
            session = await uow.sessions.get(browser.session_id) if browser else None
        if (
            browser is None
            or session is None
            or not session.is_active(now)
            or session.subject_id != browser.subject_id
        ):
            raise PageLinkInvalidError()
        return browser

    async def rotate(self, cookie: str, browser: BrowserSession, *, why: str) -> BrowserLogin:
        """Replace the browser session with a new one (new cookie value, old one revoked)."""
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            session = await uow.sessions.get(browser.session_id)
            if not await uow.browser_sessions.revoke(token_hash(cookie), at=now) or (
                session is None or not session.is_active(now)
            ):
                raise PageLinkInvalidError()  # rolled back; a concurrent rotation won
            login = await self._start_browser(uow, session, revoke=None, now=now)
            await uow.audit.append(
                AuditEvent(
                    type="page.browser_rotated",
                    at=now,
                    outcome="ok",
                    subject_id=browser.subject_id,
                    session_id=browser.session_id,
                    actor=PAGES_ACTOR,
                    details={"why": why},
                )
            )
        return login

    # --- what a browser may do -------------------------------------------------------------

    async def challenge(self, browser: BrowserSession, challenge_id: str) -> ChallengeView:
        """The challenge, if it belongs to the browser's StepGuard session; ``NotFoundError``
        otherwise (the same as for a challenge that does not exist)."""
        try:
            view = await self._challenges.describe(challenge_id)
        except NotFoundError:
            await self.refuse(browser, "unknown challenge", challenge_id=challenge_id)
            raise
        if view.challenge.session_id != browser.session_id:
            await self.refuse(browser, "challenge of another session", challenge_id=challenge_id)
            raise NotFoundError("No such challenge.")
        return view

    async def verify(
        self,
        cookie: str,
        browser: BrowserSession,
        challenge_id: str,
        *,
        factor_id: str,
        code: str,
    ) -> tuple[VerifiedStepUp, BrowserLogin]:
        """Answer the browser's own challenge; on success, rotate the browser session.

        Failures raise ``VerificationFailedError`` exactly as the API's verification does."""
        await self.challenge(browser, challenge_id)
        verified = await self._verification.verify(
            challenge_id, factor_id=factor_id, code=code, actor=PAGES_ACTOR
        )
        login = await self.rotate(cookie, browser, why="step_up")
        return verified, login

    async def verify_webauthn(
        self,
        cookie: str,
        browser: BrowserSession,
        challenge_id: str,
        *,
        credential: Mapping[str, Any],
    ) -> tuple[VerifiedStepUp, BrowserLogin]:
        """Answer the browser's own challenge with a WebAuthn assertion (to options from
        ``WebAuthnService.assertion_options``); on success, rotate the browser session."""
        await self.challenge(browser, challenge_id)
        verified = await self._verification.verify_webauthn(
            challenge_id, credential=credential, actor=PAGES_ACTOR
        )
        login = await self.rotate(cookie, browser, why="step_up")
        return verified, login

    async def manage_challenge(self, browser: BrowserSession) -> Challenge | None:
        """A step-up challenge for managing factors, opened through the decision use case for
        the browser's StepGuard session. ``None`` when the policy opens none (it allows or
        denies the action outright)."""
        result = await self._decisions.decide(
            DecisionRequest(session_id=browser.session_id, action=MANAGE_ACTION, context={}),
            actor=PAGES_ACTOR,
        )
        if isinstance(result.decision, StepUp):
            return result.challenge
        return None

    async def refuse(self, browser: BrowserSession | None, reason: str, **details: Any) -> None:
        """Audit a request the pages refused (e.g. a failed CSRF check)."""
        async with self._deps.store.transaction() as uow:
            await _audit_refusal(uow, browser, reason, self._deps.clock.now(), details)


async def _audit_refusal(
    uow: UnitOfWork,
    browser: BrowserSession | None,
    reason: str,
    now: datetime,
    details: dict[str, Any],
) -> None:
    await uow.audit.append(
        AuditEvent(
            type="page.refused",
            at=now,
            outcome="refused",
            subject_id=browser.subject_id if browser else None,
            session_id=browser.session_id if browser else None,
            actor=PAGES_ACTOR,
            details={"reason": reason, **details},
        )
    )
