"""Sessions: started by the app after its primary login, stepped up by StepGuard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from stepguard.core.assurance import (
    AuthMethod,
    CompletedFactor,
    SessionAssurance,
    primary_factors,
    summarize,
)
from stepguard.core.errors import InvalidRequestError, NotFoundError, SessionInvalidError
from stepguard.core.ids import new_id
from stepguard.core.model import AuditEvent, Session
from stepguard.service.deps import Deps


def parse_amr(values: Sequence[str]) -> tuple[AuthMethod, ...]:
    methods: list[AuthMethod] = []
    for value in values:
        try:
            methods.append(AuthMethod(value))
        except ValueError:
            raise InvalidRequestError(
                f"unknown amr value {value!r} (RFC 8176 values only)"
            ) from None
    return tuple(methods)


class SessionService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def create(
        self,
        *,
        subject_id: str,
        amr: Sequence[str],
        ip: str | None,
        user_agent: str | None,
        ttl_seconds: int | None,
        actor: str | None,
        device_id: str | None = None,
    ) -> tuple[Session, SessionAssurance]:
        methods = parse_amr(amr)
        if not methods:
            raise InvalidRequestError("amr must name at least one method")
        now = self._deps.clock.now()
        ttl = self._deps.config.session_ttl
        if ttl_seconds is not None:
            ttl = min(ttl, timedelta(seconds=ttl_seconds))
        session = Session(
            id=new_id(self._deps.rng, "ses"),
            subject_id=subject_id,
            created_at=now,
            expires_at=now + ttl,
            ip=ip,
            user_agent=user_agent,
            factors=primary_factors(methods, at=now),
        )
        async with self._deps.store.transaction() as uow:
            if await uow.subjects.get(subject_id) is None:
                raise NotFoundError("No such subject.")
            await uow.sessions.add(session)
            await uow.audit.append(
                AuditEvent(
                    type="session.created",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    session_id=session.id,
                    actor=actor,
                    details={"amr": [m.value for m in methods], "ip": ip},
                )
            )
        await self._deps.risk.learn(session=session, action="login", device_id=device_id, now=now)
        return session, summarize(session.factors)

    async def get(self, session_id: str) -> tuple[Session, SessionAssurance]:
        now = self._deps.clock.now()
        async with self._deps.store.read() as uow:
            session = await uow.sessions.get(session_id)
        if session is None or not session.is_active(now):
            raise SessionInvalidError()
        return session, summarize(session.factors)

    async def revoke(self, session_id: str, *, actor: str | None) -> None:
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            session = await uow.sessions.get(session_id)
            if session is None or not await uow.sessions.revoke(session_id, at=now):
                raise SessionInvalidError()
            await uow.audit.append(
                AuditEvent(
                    type="session.revoked",
                    at=now,
                    outcome="ok",
                    subject_id=session.subject_id,
                    session_id=session_id,
                    actor=actor,
                )
            )

    # --- sign-in on StepGuard itself or at an upstream provider -----------------------------

    async def create_signed_in(
        self,
        *,
        subject_id: str,
        factors: Sequence[CompletedFactor],
        ip: str | None,
        user_agent: str | None,
        actor: str | None,
        details: Mapping[str, object],
    ) -> tuple[Session, SessionAssurance]:
        """A session whose primary factors were proven by a sign-in that StepGuard ran: a
        password or passkey on ``/login`` (docs/login.md), or an upstream OpenID Provider
        (docs/upstream.md). ``factors`` carry their own completion times; a passkey sign-in
        adds the assertion as a step-up proof beside the primary factor. Audited as
        ``session.created`` like :meth:`create` (with ``details``); the risk engine learns
        the login."""
        if not any(f.primary for f in factors):
            raise InvalidRequestError("a signed-in session needs a primary factor")
        now = self._deps.clock.now()
        session = Session(
            id=new_id(self._deps.rng, "ses"),
            subject_id=subject_id,
            created_at=now,
            expires_at=now + self._deps.config.session_ttl,
            ip=ip,
            user_agent=user_agent,
            factors=tuple(factors),
        )
        assurance = summarize(session.factors)
        async with self._deps.store.transaction() as uow:
            if await uow.subjects.get(subject_id) is None:
                raise NotFoundError("No such subject.")
            await uow.sessions.add(session)
            await uow.audit.append(
                AuditEvent(
                    type="session.created",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    session_id=session.id,
                    actor=actor,
                    details={"amr": list(assurance.amr), "ip": ip, **details},
                )
            )
        await self._deps.risk.learn(session=session, action="login", device_id=None, now=now)
        return session, assurance
