"""Sign-in at an upstream OpenID Provider: the authorization code flow with state, nonce and
PKCE (S256), the sign-in in flight stored server-side (hashed, single use, bound to the
browser), and a StepGuard session from the checked ID token. docs/upstream.md.

Every failure raises ``UpstreamLoginFailedError`` (one opaque error) after auditing
``upstream.login_failed`` with the precise reason.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from stepguard.core.assurance import SessionAssurance
from stepguard.core.errors import StepGuardError, StorageUnavailableError
from stepguard.core.ids import random_bytes, token_hash
from stepguard.core.model import AuditEvent, Session, Subject
from stepguard.core.secret import Secret
from stepguard.core.upstream import (
    LOGIN_STATE_TTL,
    FailureReason,
    UpstreamConfig,
    UpstreamLogin,
    UpstreamLoginFailedError,
    check_id_token_claims,
    session_factors,
    subject_id_for,
)
from stepguard.service.deps import Deps
from stepguard.service.sessions import SessionService
from stepguard.service.upstream_ports import UpstreamClient

__all__ = ["UPSTREAM_ACTOR", "StartedLogin", "UpstreamService", "code_challenge"]

UPSTREAM_ACTOR = "upstream"


def _random(deps: Deps, n: int = 32) -> str:
    return base64.urlsafe_b64encode(random_bytes(deps.rng, n)).rstrip(b"=").decode()


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class StartedLogin:
    """Where to send the browser, and the binding cookie to give it."""

    redirect_url: str
    browser_cookie: Secret[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedLogin:
    session: Session
    assurance: SessionAssurance
    return_to: str | None


class UpstreamService:
    def __init__(
        self,
        deps: Deps,
        *,
        sessions: SessionService,
        client: UpstreamClient,
        upstreams: Mapping[str, UpstreamConfig],
        on_outcome: Callable[[str, str], None] = lambda upstream, outcome: None,
    ) -> None:
        self._deps = deps
        self._sessions = sessions
        self._client = client
        self._upstreams = dict(upstreams)
        self._on_outcome = on_outcome

    def get(self, name: str) -> UpstreamConfig | None:
        return self._upstreams.get(name)

    @property
    def upstreams(self) -> tuple[UpstreamConfig, ...]:
        return tuple(self._upstreams.values())

    async def _fail(
        self,
        name: str,
        error: UpstreamLoginFailedError,
        *,
        subject_id: str | None = None,
        ip: str | None = None,
    ) -> UpstreamLoginFailedError:
        details: dict[str, object] = {"upstream": name, "reason": error.reason.value, "ip": ip}
        if error.detail:
            details["detail"] = error.detail[:200]
        async with self._deps.store.transaction() as uow:
            await uow.audit.append(
                AuditEvent(
                    type="upstream.login_failed",
                    at=self._deps.clock.now(),
                    outcome="failure",
                    subject_id=subject_id,
                    actor=UPSTREAM_ACTOR,
                    details=details,
                )
            )
        self._on_outcome(name, f"failed:{error.reason.value}")
        return error

    async def start(
        self, name: str, *, return_to: str | None, redirect_uri: str, ip: str | None
    ) -> StartedLogin:
        """Store a new sign-in in flight and build the authorization request."""
        config = self._upstreams.get(name)
        if config is None:
            raise await self._fail(
                name, UpstreamLoginFailedError(FailureReason.UNKNOWN_UPSTREAM), ip=ip
            )
        deps = self._deps
        try:
            endpoint = await self._client.authorization_endpoint(config)
        except UpstreamLoginFailedError as error:
            raise await self._fail(name, error, ip=ip) from None
        now = deps.clock.now()
        state, nonce, verifier, cookie = (_random(deps) for _ in range(4))
        login = UpstreamLogin(
            state_hash=token_hash(state),
            upstream=name,
            browser_hash=token_hash(cookie),
            nonce=Secret(nonce),
            code_verifier=Secret(verifier),
            return_to=return_to,
            created_at=now,
            expires_at=now + LOGIN_STATE_TTL,
        )
        async with deps.store.transaction() as uow:
            # Unauthenticated requests add these rows: the expired ones go as new ones come.
            await uow.upstream_logins.prune(before=now)
            await uow.upstream_logins.add(login)
            await uow.audit.append(
                AuditEvent(
                    type="upstream.login_started",
                    at=now,
                    outcome="ok",
                    actor=UPSTREAM_ACTOR,
                    details={"upstream": name, "ip": ip},
                )
            )
        self._on_outcome(name, "started")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": config.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(config.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if urlsplit(endpoint).query else "?"
        return StartedLogin(
            redirect_url=f"{endpoint}{separator}{query}", browser_cookie=Secret(cookie)
        )

    async def finish(
        self,
        name: str,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        browser_cookie: str | None,
        redirect_uri: str,
        ip: str | None,
        user_agent: str | None,
    ) -> FinishedLogin:
        """Consume the sign-in in flight (once), check the browser, redeem the code, check
        the ID token, and start a StepGuard session for the mapped subject."""
        try:
            return await self._finish(
                name,
                state=state,
                code=code,
                error=error,
                browser_cookie=browser_cookie,
                redirect_uri=redirect_uri,
                ip=ip,
                user_agent=user_agent,
            )
        except UpstreamLoginFailedError as failure:
            raise await self._fail(name, failure, ip=ip) from None
        except StorageUnavailableError:
            raise
        except StepGuardError as other:
            # Other known errors: still one generic page, the reason audited.
            internal = UpstreamLoginFailedError(FailureReason.INTERNAL, other.code)
            raise await self._fail(name, internal, ip=ip) from None

    async def _finish(
        self,
        name: str,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        browser_cookie: str | None,
        redirect_uri: str,
        ip: str | None,
        user_agent: str | None,
    ) -> FinishedLogin:
        config = self._upstreams.get(name)
        if config is None:
            raise UpstreamLoginFailedError(FailureReason.UNKNOWN_UPSTREAM)
        deps = self._deps
        if not state or len(state) > 512:
            raise UpstreamLoginFailedError(FailureReason.STATE_INVALID, "no state")
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            login = await uow.upstream_logins.consume(token_hash(state), at=now)
        if login is None or login.upstream != name:
            raise UpstreamLoginFailedError(FailureReason.STATE_INVALID)
        if not browser_cookie or token_hash(browser_cookie) != login.browser_hash:
            raise UpstreamLoginFailedError(FailureReason.BROWSER_MISMATCH)
        if error is not None:
            raise UpstreamLoginFailedError(FailureReason.UPSTREAM_ERROR, error[:100])
        if not code or len(code) > 2048:
            raise UpstreamLoginFailedError(FailureReason.MISSING_CODE)
        id_token = await self._client.exchange_code(
            config, code=code, code_verifier=login.code_verifier.reveal(), redirect_uri=redirect_uri
        )
        raw_claims = await self._client.verify_signature(config, id_token)
        now = deps.clock.now()
        claims = check_id_token_claims(
            raw_claims,
            expected_issuer=config.issuer,
            expected_audience=config.client_id,
            expected_nonce=login.nonce.reveal(),
            now=now,
        )
        subject_id = subject_id_for(config, claims)
        factors = session_factors(config, claims, now=now)
        await self._ensure_subject(
            config, subject_id, email=claims.email if claims.email_verified else None
        )
        session, assurance = await self._sessions.create_signed_in(
            subject_id=subject_id,
            factors=factors,
            ip=ip,
            user_agent=user_agent,
            actor=UPSTREAM_ACTOR,
            details={"via": f"upstream:{name}"},
        )
        async with deps.store.transaction() as uow:
            await uow.audit.append(
                AuditEvent(
                    type="upstream.login_succeeded",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    session_id=session.id,
                    actor=UPSTREAM_ACTOR,
                    details={
                        "upstream": name,
                        "trusted_assurance": config.trusted_assurance,
                        "upstream_amr": list(claims.amr),
                        "upstream_acr": claims.acr,
                        "amr": list(assurance.amr),
                        "acr": assurance.level.acr if assurance.level else None,
                        "ip": ip,
                    },
                )
            )
        self._on_outcome(name, "succeeded")
        return FinishedLogin(session=session, assurance=assurance, return_to=login.return_to)

    async def _ensure_subject(
        self, config: UpstreamConfig, subject_id: str, *, email: str | None
    ) -> None:
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            if await uow.subjects.get(subject_id) is not None:
                return
            if not config.create_subjects:
                raise UpstreamLoginFailedError(FailureReason.SUBJECT_UNKNOWN)
            await uow.subjects.upsert(
                Subject(id=subject_id, email=email, created_at=now, updated_at=now)
            )
            await uow.audit.append(
                AuditEvent(
                    type="subject.created",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    actor=UPSTREAM_ACTOR,
                    details={"upstream": config.name, "email_copied": email is not None},
                )
            )
