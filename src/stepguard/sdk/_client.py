"""The two clients. Each method is one line: build the operation in ``_protocol``, send it,
let the operation read the response. Request building and parsing exist once, there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

import httpx

from stepguard.sdk import _protocol as api
from stepguard.sdk._models import (
    AuditPage,
    ChallengeInfo,
    Decision,
    Enrollment,
    FactorInfo,
    FactorType,
    HealthStatus,
    Secret,
    SessionInfo,
    Subject,
    VerificationResult,
)

__all__ = ["DEFAULT_TIMEOUT", "AsyncStepGuardClient", "StepGuardClient"]

T = TypeVar("T")

DEFAULT_TIMEOUT = api.DEFAULT_TIMEOUT


class StepGuardClient:
    """Synchronous client for the StepGuard HTTP API v1.

    One instance holds one connection pool: create it once, share it, close it (or use it as
    a context manager). Every method raises a :class:`~stepguard.sdk.errors.StepGuardSDKError`
    subclass on failure and never returns a failure value.

    ``base_url`` must be https, except for loopback hosts; ``allow_insecure_http=True`` allows
    plain http to other hosts (a trusted private network only: the API key travels in it).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | Secret,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self._config = api.ClientConfig.create(
            base_url, api_key, timeout=timeout, allow_insecure_http=allow_insecure_http
        )
        self._http = httpx.Client(transport=transport, **self._config.httpx_options())

    def __repr__(self) -> str:
        return self._config.describe(type(self).__name__)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, operation: api.Operation[T]) -> T:
        request = operation.build_request(self._http)
        try:
            response = self._http.send(request)
        except httpx.RequestError as exc:
            raise api.translate_transport_error(exc) from exc
        return operation.handle(response)

    # Subjects

    def put_subject(
        self,
        subject_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        groups: Sequence[str] | None = None,
    ) -> Subject:
        """Create or update a subject. Fields left as ``None`` are not sent."""
        return self._call(api.put_subject(subject_id, email=email, phone=phone, groups=groups))

    def get_subject(self, subject_id: str) -> Subject:
        return self._call(api.get_subject(subject_id))

    def delete_subject(self, subject_id: str) -> None:
        self._call(api.delete_subject(subject_id))

    # Sessions

    def create_session(
        self,
        subject_id: str,
        *,
        amr: Sequence[str],
        ip: str | None = None,
        user_agent: str | None = None,
        ttl_seconds: int | None = None,
        device_id: str | None = None,
    ) -> SessionInfo:
        """Register a login the application performed; ``amr`` says how (e.g. ``["pwd"]``)."""
        return self._call(
            api.create_session(
                subject_id,
                amr=amr,
                ip=ip,
                user_agent=user_agent,
                ttl_seconds=ttl_seconds,
                device_id=device_id,
            )
        )

    def get_session(self, session_id: str) -> SessionInfo:
        return self._call(api.get_session(session_id))

    def revoke_session(self, session_id: str) -> None:
        self._call(api.revoke_session(session_id))

    # Decisions and challenges

    def decide(
        self,
        session_id: str,
        action: str,
        *,
        resource: str | None = None,
        context: Mapping[str, object] | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        grant: str | Secret | None = None,
        challenge_id: str | None = None,
        device_id: str | None = None,
    ) -> Decision:
        """Ask whether ``action`` may proceed now. ``grant`` is a proof from a completed
        transaction-bound step-up (``VerificationResult.grant``); ``challenge_id`` names a
        challenge the user satisfied on the hosted pages (its grant is used instead)."""
        return self._call(
            api.decide(
                session_id,
                action,
                resource=resource,
                context=context,
                ip=ip,
                user_agent=user_agent,
                grant=grant,
                challenge_id=challenge_id,
                device_id=device_id,
            )
        )

    def get_challenge(self, challenge_id: str) -> ChallengeInfo:
        return self._call(api.get_challenge(challenge_id))

    def verify(self, challenge_id: str, factor_id: str, code: str | Secret) -> VerificationResult:
        """Answer a challenge. Raises ``VerificationFailedError`` for any failure."""
        return self._call(api.verify(challenge_id, factor_id, code))

    # Factors

    def list_factors(self, subject_id: str) -> tuple[FactorInfo, ...]:
        return self._call(api.list_factors(subject_id))

    def enroll_factor(
        self,
        subject_id: str,
        factor_type: FactorType | str,
        *,
        label: str | None = None,
        session_id: str | None = None,
        algorithm: str | None = None,
        digits: int | None = None,
        period: int | None = None,
    ) -> Enrollment:
        """Start enrolling a factor. Once the subject has an active factor, ``session_id``
        must name a session that passed a step-up in the last 5 minutes."""
        return self._call(
            api.enroll_factor(
                subject_id,
                factor_type,
                label=label,
                session_id=session_id,
                algorithm=algorithm,
                digits=digits,
                period=period,
            )
        )

    def confirm_factor(
        self,
        subject_id: str,
        factor_id: str,
        code: str | Secret,
        *,
        session_id: str | None = None,
    ) -> FactorInfo:
        return self._call(api.confirm_factor(subject_id, factor_id, code, session_id=session_id))

    def remove_factor(
        self, subject_id: str, factor_id: str, *, session_id: str | None = None
    ) -> None:
        self._call(api.remove_factor(subject_id, factor_id, session_id=session_id))

    # Policy, audit, health

    def evaluate_policy(
        self,
        action: str,
        *,
        resource: str | None = None,
        context: Mapping[str, object] | None = None,
        groups: Sequence[str] | None = None,
        subject: Mapping[str, object] | None = None,
        session: Mapping[str, object] | None = None,
        risk: Mapping[str, object] | None = None,
        request: Mapping[str, object] | None = None,
    ) -> Decision:
        """Dry-run the policy on the given input (no session, no challenge, no side effects)."""
        return self._call(
            api.evaluate_policy(
                action,
                resource=resource,
                context=context,
                groups=groups,
                subject=subject,
                session=session,
                risk=risk,
                request=request,
            )
        )

    def audit_events(
        self,
        *,
        subject_id: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> AuditPage:
        return self._call(
            api.audit_events(
                subject_id=subject_id,
                event_type=event_type,
                since=since,
                until=until,
                after_seq=after_seq,
                limit=limit,
            )
        )

    def health(self) -> HealthStatus:
        return self._call(api.health())

    def ready(self) -> HealthStatus:
        return self._call(api.ready())


class AsyncStepGuardClient:
    """Asynchronous client with the same methods as :class:`StepGuardClient`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | Secret,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self._config = api.ClientConfig.create(
            base_url, api_key, timeout=timeout, allow_insecure_http=allow_insecure_http
        )
        self._http = httpx.AsyncClient(transport=transport, **self._config.httpx_options())

    def __repr__(self) -> str:
        return self._config.describe(type(self).__name__)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, operation: api.Operation[T]) -> T:
        request = operation.build_request(self._http)
        try:
            response = await self._http.send(request)
        except httpx.RequestError as exc:
            raise api.translate_transport_error(exc) from exc
        return operation.handle(response)

    # Subjects

    async def put_subject(
        self,
        subject_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        groups: Sequence[str] | None = None,
    ) -> Subject:
        return await self._call(
            api.put_subject(subject_id, email=email, phone=phone, groups=groups)
        )

    async def get_subject(self, subject_id: str) -> Subject:
        return await self._call(api.get_subject(subject_id))

    async def delete_subject(self, subject_id: str) -> None:
        await self._call(api.delete_subject(subject_id))

    # Sessions

    async def create_session(
        self,
        subject_id: str,
        *,
        amr: Sequence[str],
        ip: str | None = None,
        user_agent: str | None = None,
        ttl_seconds: int | None = None,
        device_id: str | None = None,
    ) -> SessionInfo:
        return await self._call(
            api.create_session(
                subject_id,
                amr=amr,
                ip=ip,
                user_agent=user_agent,
                ttl_seconds=ttl_seconds,
                device_id=device_id,
            )
        )

    async def get_session(self, session_id: str) -> SessionInfo:
        return await self._call(api.get_session(session_id))

    async def revoke_session(self, session_id: str) -> None:
        await self._call(api.revoke_session(session_id))

    # Decisions and challenges

    async def decide(
        self,
        session_id: str,
        action: str,
        *,
        resource: str | None = None,
        context: Mapping[str, object] | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        grant: str | Secret | None = None,
        challenge_id: str | None = None,
        device_id: str | None = None,
    ) -> Decision:
        return await self._call(
            api.decide(
                session_id,
                action,
                resource=resource,
                context=context,
                ip=ip,
                user_agent=user_agent,
                grant=grant,
                challenge_id=challenge_id,
                device_id=device_id,
            )
        )

    async def get_challenge(self, challenge_id: str) -> ChallengeInfo:
        return await self._call(api.get_challenge(challenge_id))

    async def verify(
        self, challenge_id: str, factor_id: str, code: str | Secret
    ) -> VerificationResult:
        return await self._call(api.verify(challenge_id, factor_id, code))

    # Factors

    async def list_factors(self, subject_id: str) -> tuple[FactorInfo, ...]:
        return await self._call(api.list_factors(subject_id))

    async def enroll_factor(
        self,
        subject_id: str,
        factor_type: FactorType | str,
        *,
        label: str | None = None,
        session_id: str | None = None,
        algorithm: str | None = None,
        digits: int | None = None,
        period: int | None = None,
    ) -> Enrollment:
        return await self._call(
            api.enroll_factor(
                subject_id,
                factor_type,
                label=label,
                session_id=session_id,
                algorithm=algorithm,
                digits=digits,
                period=period,
            )
        )

    async def confirm_factor(
        self,
        subject_id: str,
        factor_id: str,
        code: str | Secret,
        *,
        session_id: str | None = None,
    ) -> FactorInfo:
        return await self._call(
            api.confirm_factor(subject_id, factor_id, code, session_id=session_id)
        )

    async def remove_factor(
        self, subject_id: str, factor_id: str, *, session_id: str | None = None
    ) -> None:
        await self._call(api.remove_factor(subject_id, factor_id, session_id=session_id))

    # Policy, audit, health

    async def evaluate_policy(
        self,
        action: str,
        *,
        resource: str | None = None,
        context: Mapping[str, object] | None = None,
        groups: Sequence[str] | None = None,
        subject: Mapping[str, object] | None = None,
        session: Mapping[str, object] | None = None,
        risk: Mapping[str, object] | None = None,
        request: Mapping[str, object] | None = None,
    ) -> Decision:
        return await self._call(
            api.evaluate_policy(
                action,
                resource=resource,
                context=context,
                groups=groups,
                subject=subject,
                session=session,
                risk=risk,
                request=request,
            )
        )

    async def audit_events(
        self,
        *,
        subject_id: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> AuditPage:
        return await self._call(
            api.audit_events(
                subject_id=subject_id,
                event_type=event_type,
                since=since,
                until=until,
                after_seq=after_seq,
                limit=limit,
            )
        )

    async def health(self) -> HealthStatus:
        return await self._call(api.health())

    async def ready(self) -> HealthStatus:
        return await self._call(api.ready())
