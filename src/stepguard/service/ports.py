"""Ports the service layer needs from the outside world. Adapters implement them.

Storage is a unit of work: every use case that changes state runs in one
``Store.transaction()``, and its audit records are appended in that same transaction, so a
state change and its audit record commit or roll back together.

Concurrency contract (holds across processes, on every backend):
- ``FactorRepository.get_for_update`` serializes verifications of one factor: a second
  transaction that asks for the same factor waits until the first commits or rolls back.
- The ``consume``/``advance``/``mark`` methods are conditional writes that return whether
  *this* call won; at most one concurrent caller ever gets ``True`` for the same thing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from stepguard.core.assurance import CompletedFactor
from stepguard.core.factors.oob import Channel, CodePurpose
from stepguard.core.model import (
    ApiKey,
    AuditEvent,
    CeremonyPurpose,
    Challenge,
    DeliveryCode,
    Factor,
    Grant,
    RecordedAuditEvent,
    Session,
    Subject,
    WebAuthnCeremony,
    WebAuthnCredential,
)
from stepguard.core.notices import Notice, NoticeType
from stepguard.core.pages import BrowserSession, PageToken
from stepguard.core.risk import RiskAssessment
from stepguard.core.secret import Secret
from stepguard.service.login_ports import LoginRepository
from stepguard.service.oidc_ports import OidcRepository
from stepguard.service.push_ports import PushRepository
from stepguard.service.risk_ports import RiskRepository
from stepguard.service.upstream_ports import UpstreamLoginRepository


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SubjectRepository(Protocol):
    async def get(self, subject_id: str) -> Subject | None: ...
    async def upsert(self, subject: Subject) -> None: ...
    async def delete(self, subject_id: str) -> bool:
        """Delete the subject and everything it owns. ``False`` if it did not exist."""
        ...


class SessionRepository(Protocol):
    async def get(self, session_id: str) -> Session | None:
        """The session with all its completed factors, oldest first."""
        ...

    async def get_with_subject(self, session_id: str) -> tuple[Session, Subject] | None:
        """The session (as ``get``) and its subject, in one round trip (the decision path)."""
        ...

    async def add(self, session: Session) -> None:
        """Store a new session with its (primary) factors."""
        ...

    async def add_factor(self, session_id: str, factor: CompletedFactor) -> None: ...
    async def revoke(self, session_id: str, *, at: datetime) -> bool: ...


class FactorRepository(Protocol):
    async def get(self, subject_id: str, factor_id: str) -> Factor | None: ...

    async def get_for_update(self, subject_id: str, factor_id: str) -> Factor | None:
        """Like ``get``, and lock the factor's row until the transaction ends."""
        ...

    async def list_for_subject(self, subject_id: str) -> list[Factor]: ...

    async def add(self, factor: Factor) -> None:
        """Store a new factor; its TOTP secret is encrypted at rest by the adapter."""
        ...

    async def activate(self, factor_id: str, *, at: datetime) -> None: ...

    async def record_failure(
        self, factor_id: str, *, failed_attempts: int, locked_until: datetime | None
    ) -> None: ...

    async def record_success(self, factor_id: str, *, at: datetime) -> None:
        """Reset the failure counter and lock, and set ``last_used_at``."""
        ...

    async def advance_totp_step(self, factor_id: str, step: int) -> bool:
        """Raise the replay floor to ``step`` if it is below it. ``True`` if this call did."""
        ...

    async def delete(self, factor_id: str) -> bool: ...

    async def replace_recovery_codes(self, factor_id: str, code_hashes: Sequence[str]) -> None:
        """Drop every code of the factor and store these hashes instead."""
        ...

    async def consume_recovery_code(self, factor_id: str, code_hash: str, *, at: datetime) -> bool:
        """Mark an unused code used. ``True`` only for the one call that did."""
        ...

    async def count_recovery_codes(self, factor_id: str) -> int:
        """How many unused codes remain."""
        ...


class ChallengeRepository(Protocol):
    async def add(self, challenge: Challenge) -> None: ...
    async def get(self, challenge_id: str) -> Challenge | None: ...

    async def mark_satisfied(self, challenge_id: str, *, at: datetime, factor_id: str) -> bool:
        """Pending and unexpired at ``at`` -> satisfied. ``True`` only for the call that did."""
        ...


class GrantRepository(Protocol):
    async def add(self, grant: Grant) -> None: ...

    async def consume(
        self,
        token_hash: str,
        *,
        subject_id: str,
        session_id: str,
        action: str,
        transaction_digest: str,
        at: datetime,
    ) -> Grant | None:
        """Use the grant once if every binding matches and it has not expired.

        Returns the grant for the single call that used it, ``None`` otherwise.
        """
        ...

    async def consume_for_challenge(
        self,
        challenge_id: str,
        *,
        subject_id: str,
        session_id: str,
        action: str,
        transaction_digest: str,
        at: datetime,
    ) -> Grant | None:
        """Use the grant issued for ``challenge_id`` once, as ``consume`` (every binding must
        match, unexpired, unused). For the hosted pages, where no grant crosses the browser."""
        ...


class PageTokenRepository(Protocol):
    async def add(self, token: PageToken) -> None: ...

    async def consume(self, token_hash: str, *, at: datetime) -> PageToken | None:
        """Use an unexpired, unused page token once. The token for the one call that did."""
        ...


class BrowserSessionRepository(Protocol):
    async def add(self, browser: BrowserSession) -> None: ...

    async def get_active(self, id_hash: str, *, at: datetime) -> BrowserSession | None:
        """The browser session if it is neither revoked nor expired at ``at``."""
        ...

    async def revoke(self, id_hash: str, *, at: datetime) -> bool:
        """Revoke it. ``True`` only for the call that did (single use on rotation)."""
        ...


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> None: ...
    async def get(self, key_id: str) -> ApiKey | None: ...
    async def list(self) -> list[ApiKey]: ...
    async def revoke(self, key_id: str, *, at: datetime) -> bool: ...


class AuditLog(Protocol):
    async def append(self, event: AuditEvent) -> RecordedAuditEvent:
        """Append to the hash chain, in the current transaction."""
        ...

    async def query(
        self,
        *,
        subject_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[RecordedAuditEvent]: ...

    def iterate(self) -> AsyncIterator[RecordedAuditEvent]:
        """Every record in chain order (for verification)."""
        ...

    async def head(self) -> tuple[int, str]:
        """The last sequence number and hash (0 and the genesis hash when empty)."""
        ...


class WebAuthnRepository(Protocol):
    """WebAuthn credentials (one per WebAuthn factor; deleted with it) and ceremonies."""

    async def add_credential(self, credential: WebAuthnCredential) -> None:
        """Store a new credential; a credential id stored before raises ``ConflictError``."""
        ...

    async def get_credential(self, factor_id: str) -> WebAuthnCredential | None: ...

    async def find_credential(self, credential_id: bytes) -> WebAuthnCredential | None:
        """The credential with this id, whoever owns it."""
        ...

    async def list_credentials(self, subject_id: str) -> list[WebAuthnCredential]: ...

    async def record_use(self, factor_id: str, *, sign_count: int, backed_up: bool) -> None: ...

    async def mark_suspected_clone(self, factor_id: str, *, at: datetime) -> bool:
        """Set ``suspected_clone_at`` once. ``True`` if this call did."""
        ...

    async def add_ceremony(self, ceremony: WebAuthnCeremony) -> None:
        """Store a ceremony; unused earlier ceremonies of the same challenge (or pending
        factor) are dropped: only the newest options are valid."""
        ...

    async def consume_ceremony(
        self,
        *,
        purpose: CeremonyPurpose,
        challenge: bytes,
        subject_id: str,
        binding: str,
        at: datetime,
    ) -> WebAuthnCeremony | None:
        """Use the open, unexpired ceremony with these challenge bytes, bound to ``binding``
        (the step-up challenge id, or the pending factor id). The ceremony for the single call
        that used it, ``None`` otherwise."""


class DeliveryRepository(Protocol):
    """Email/SMS codes (stored as HMACs) and the send log behind the send limits."""

    async def lock_sends(self) -> None:
        """Serialize send-limit checks until the transaction ends (across processes)."""
        ...

    async def count_sends(
        self,
        *,
        since: datetime,
        channel: Channel | None = None,
        kind: str | None = None,
        subject_id: str | None = None,
        destination_key: str | None = None,
    ) -> int:
        """Sends at or after ``since`` matching every given filter."""
        ...

    async def record_send(
        self,
        *,
        at: datetime,
        channel: Channel,
        kind: str,
        subject_id: str | None,
        destination_key: str,
    ) -> None: ...

    async def prune_sends(self, *, before: datetime) -> None: ...

    async def add_code(self, code: DeliveryCode) -> None: ...

    async def invalidate_codes(self, factor_id: str, *, at: datetime) -> int:
        """Invalidate every live code of the factor; how many there were."""
        ...

    async def invalidate_code(self, code_id: str, *, at: datetime) -> None: ...

    async def live_code(
        self, factor_id: str, *, purpose: CodePurpose, challenge_id: str | None, at: datetime
    ) -> DeliveryCode | None:
        """The factor's newest unused, valid, unexpired code for exactly this binding."""
        ...

    async def use_code(self, code_id: str, *, at: datetime) -> bool:
        """Live -> used. ``True`` only for the one call that did."""
        ...


class ExpiryRepository(Protocol):
    async def purge(self, *, before: datetime) -> dict[str, int]:
        """Delete the rows that expired before ``before``; the count per table."""
        ...


class UnitOfWork(Protocol):
    subjects: SubjectRepository
    sessions: SessionRepository
    factors: FactorRepository
    challenges: ChallengeRepository
    grants: GrantRepository
    api_keys: ApiKeyRepository
    audit: AuditLog
    webauthn: WebAuthnRepository
    risk: RiskRepository
    page_tokens: PageTokenRepository
    browser_sessions: BrowserSessionRepository
    deliveries: DeliveryRepository
    push: PushRepository
    expired: ExpiryRepository
    upstream_logins: UpstreamLoginRepository
    logins: LoginRepository
    oidc: OidcRepository


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A read-write transaction: commits when the block exits, rolls back on an exception.

        Writers are serialized where the backend needs it (SQLite: ``BEGIN IMMEDIATE``).
        """
        ...

    def read(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A read-only view; writing through it is a programming error."""
        ...

    def lookup(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A read-only view without a transaction: each statement sees the latest committed
        state on its own. For hot paths that read with one statement."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        ...

    async def close(self) -> None: ...


class RiskAssessor(Protocol):
    """Computes a request's risk. May do I/O; the service fails closed when it raises."""

    async def assess(
        self,
        *,
        subject: Subject,
        session: Session,
        action: str,
        ip: str | None,
        user_agent: str | None,
        now: datetime,
        device_id: str | None = None,
    ) -> RiskAssessment: ...

    async def learn(
        self, *, session: Session, action: str, device_id: str | None, now: datetime
    ) -> None:
        """A trusted login (a session created after primary login). Never raises."""
        ...

    async def learn_step_up(self, *, challenge: Challenge, session: Session, now: datetime) -> None:
        """A satisfied step-up: learn the request that asked for it. Never raises."""
        ...

    def failed(self, *, challenge: Challenge | None, now: datetime) -> None:
        """A failed verification guess (velocity). ``None``: nothing to attribute."""
        ...

    def denied_push(self, *, challenge: Challenge, now: datetime) -> None:
        """The subject denied a push approval on their device (velocity). Never raises."""
        ...

    def new_device(self, *, challenge: Challenge) -> str | None:
        """When the decision that opened ``challenge`` saw a device never seen for the
        subject (the ``new_device`` signal), a short description of it; else ``None``.
        Call before ``learn_step_up`` (which learns the device). Never raises."""
        ...

    def forget(self, subject_id: str) -> None:
        """Drop anything cached about the subject (its alerts or history changed)."""


# --- out-of-band delivery ------------------------------------------------------------------


class SendError(Exception):
    """A sender could not hand a message to its provider.

    ``reason`` is safe to audit (``"timeout"``, ``"http 503"``, ``"connection refused"``): it
    never holds the code, the message body or a provider credential.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeMessage:
    """A one-time code to send. ``summary`` says what the code approves."""

    to: str
    code: Secret[str]
    purpose: CodePurpose
    summary: str
    action: str | None
    expires_at: datetime
    ttl_minutes: int
    issuer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeMessage:
    to: str
    type: NoticeType
    at: datetime
    issuer: str
    details: dict[str, str] = field(default_factory=dict)


class EmailSender(Protocol):
    """Sends email (SMTP in production). Raises ``SendError``; any other exception is also
    treated as a failed send."""

    async def send_code(self, message: CodeMessage) -> None: ...
    async def send_notice(self, message: NoticeMessage) -> None: ...


class SmsSender(Protocol):
    """Sends SMS through a provider. Raises ``SendError`` like ``EmailSender``."""

    async def send_code(self, message: CodeMessage) -> None: ...
    async def send_notice(self, message: NoticeMessage) -> None: ...


class Notifier(Protocol):
    """Tells users about security events, out of band. ``notify`` only schedules: it never
    blocks or raises, so a security operation never depends on a notice being sent."""

    def notify(self, *notices: Notice) -> None: ...

    async def drain(self) -> None:
        """Wait for every scheduled notice (shutdown and tests)."""
        ...
