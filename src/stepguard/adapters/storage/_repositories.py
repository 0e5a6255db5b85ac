"""The repositories of one unit of work: SQLAlchemy Core statements on one connection.

Statements are built once, at import, with named bind parameters, so SQLAlchemy's compiled
cache (and asyncpg's prepared statements) serve every call. Every single-use operation is one
conditional ``UPDATE`` whose row count decides the winner; the hot reads are one statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import rfc8785
from sqlalchemy import (
    Executable,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import _pages
from stepguard.adapters.storage._deliveries import SqlDeliveryRepository
from stepguard.adapters.storage._engine import STORAGE_ERRORS, map_storage_error
from stepguard.adapters.storage._expiry import SqlExpiryRepository
from stepguard.adapters.storage._login import SqlLoginRepository
from stepguard.adapters.storage._oidc import SqlOidcRepository
from stepguard.adapters.storage._push import SqlPushRepository
from stepguard.adapters.storage._upstream import SqlUpstreamLoginRepository
from stepguard.adapters.storage._webauthn import SqlWebAuthnRepository
from stepguard.adapters.storage.tables import (
    AUDIT_HEAD_ID,
    api_keys,
    audit_events,
    audit_head,
    challenges,
    factors,
    grants,
    recovery_codes,
    session_factors,
    sessions,
    subjects,
)
from stepguard.core.assurance import (
    AssuranceLevel,
    AuthMethod,
    CompletedFactor,
    FactorKind,
    FactorType,
    Requirement,
)
from stepguard.core.audit import chain_hash
from stepguard.core.errors import NotFoundError, StorageUnavailableError
from stepguard.core.model import (
    ApiKey,
    AuditEvent,
    Challenge,
    ChallengeStatus,
    Factor,
    FactorStatus,
    Grant,
    RecordedAuditEvent,
    Session,
    Subject,
    TotpParameters,
)
from stepguard.core.secret import Secret
from stepguard.service.login_ports import LoginRepository
from stepguard.service.oidc_ports import OidcRepository
from stepguard.service.ports import (
    ApiKeyRepository,
    AuditLog,
    BrowserSessionRepository,
    ChallengeRepository,
    DeliveryRepository,
    ExpiryRepository,
    FactorRepository,
    GrantRepository,
    PageTokenRepository,
    SessionRepository,
    SubjectRepository,
    WebAuthnRepository,
)
from stepguard.service.push_ports import PushRepository
from stepguard.service.risk_ports import RiskRepository
from stepguard.service.upstream_ports import UpstreamLoginRepository

__all__ = ["ReadOnlyTransactionError", "SqlUnitOfWork", "canonical_audit_event"]

AUDIT_PAGE_SIZE: Final = 1000


class ReadOnlyTransactionError(RuntimeError):
    """A write was attempted through ``Store.read()``: a programming error, not a user error."""


class _Connection:
    """The unit of work's connection, with StepGuard's error mapping on every statement."""

    __slots__ = ("conn", "dialect_name", "writable")

    def __init__(self, conn: AsyncConnection, *, writable: bool) -> None:
        self.conn = conn
        self.writable = writable
        self.dialect_name = conn.dialect.name

    async def run(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        try:
            return await self.conn.execute(statement, params)
        except STORAGE_ERRORS as exc:
            mapped = map_storage_error(exc)
            if mapped is not None:
                raise mapped from exc
            if (
                isinstance(exc, StatementError)
                and not isinstance(exc, DBAPIError)
                and isinstance(exc.orig, ValueError | TypeError)
            ):
                # A value our column types refused (e.g. a naive datetime): the caller's bug,
                # shown as the plain error rather than SQLAlchemy's wrapper.
                raise exc.orig from None
            raise

    async def write(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        if not self.writable:
            raise ReadOnlyTransactionError("Store.read() is read-only; use Store.transaction()")
        return await self.run(statement, params)


def _require_row(result: CursorResult[Any], what: str) -> None:
    if result.rowcount == 0:
        raise NotFoundError(f"the {what} does not exist")


# --- subjects ----------------------------------------------------------------------------

_GET_SUBJECT: Final = select(subjects).where(subjects.c.id == bindparam("p_id"))
_DELETE_SUBJECT: Final = delete(subjects).where(subjects.c.id == bindparam("p_id"))


def _upsert_subject(dialect_name: str) -> Executable:
    stmt: Any
    if dialect_name == "postgresql":
        stmt = pg_dialect.insert(subjects)
    else:
        stmt = sqlite_dialect.insert(subjects)
    # created_at is kept from the first insert: a subject is created once.
    upsert: Executable = stmt.on_conflict_do_update(
        index_elements=[subjects.c.id],
        set_={
            "email": stmt.excluded.email,
            "phone": stmt.excluded.phone,
            "groups": stmt.excluded.groups,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    return upsert


_UPSERT_SUBJECT: Final = {name: _upsert_subject(name) for name in ("postgresql", "sqlite")}


class SqlSubjectRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def get(self, subject_id: str) -> Subject | None:
        row = (await self._c.run(_GET_SUBJECT, {"p_id": subject_id})).first()
        if row is None:
            return None
        return Subject(
            id=row.id,
            email=row.email,
            phone=row.phone,
            groups=tuple(row.groups),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def upsert(self, subject: Subject) -> None:
        await self._c.write(
            _UPSERT_SUBJECT[self._c.dialect_name],
            {
                "id": subject.id,
                "email": subject.email,
                "phone": subject.phone,
                "groups": list(subject.groups),
                "created_at": subject.created_at,
                "updated_at": subject.updated_at,
            },
        )

    async def delete(self, subject_id: str) -> bool:
        result = await self._c.write(_DELETE_SUBJECT, {"p_id": subject_id})
        return result.rowcount > 0


# --- sessions ----------------------------------------------------------------------------

_SF = session_factors.c
# One round trip: the session and its factors, oldest first (LEFT JOIN: a session may have none).
_GET_SESSION: Final = (
    select(
        sessions.c.id,
        sessions.c.subject_id,
        sessions.c.created_at,
        sessions.c.expires_at,
        sessions.c.revoked_at,
        sessions.c.ip,
        sessions.c.user_agent,
        _SF.method,
        _SF.amr,
        _SF.kind,
        _SF.completed_at,
        _SF.is_primary,
        _SF.factor_id,
        _SF.phishing_resistant,
        _SF.hardware_bound,
        _SF.multi_factor,
    )
    .select_from(sessions.outerjoin(session_factors, _SF.session_id == sessions.c.id))
    .where(sessions.c.id == bindparam("p_id"))
    .order_by(_SF.id)
)
# The decision hot path: the session, its factors and its subject in one round trip.
_GET_SESSION_WITH_SUBJECT: Final = (
    select(
        *_GET_SESSION.selected_columns,
        subjects.c.email.label("subject_email"),
        subjects.c.phone.label("subject_phone"),
        subjects.c.groups.label("subject_groups"),
        subjects.c.created_at.label("subject_created_at"),
        subjects.c.updated_at.label("subject_updated_at"),
    )
    .select_from(
        sessions.join(subjects, subjects.c.id == sessions.c.subject_id).outerjoin(
            session_factors, _SF.session_id == sessions.c.id
        )
    )
    .where(sessions.c.id == bindparam("p_id"))
    .order_by(_SF.id)
)
_INSERT_SESSION: Final = insert(sessions)
_INSERT_SESSION_FACTOR: Final = insert(session_factors)
_REVOKE_SESSION: Final = (
    update(sessions)
    .where(sessions.c.id == bindparam("p_id"), sessions.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("p_at"))
)


def _session_factor_row(session_id: str, factor: CompletedFactor) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "method": factor.method,
        "amr": [m.value for m in factor.amr],
        "kind": factor.kind.value,
        "completed_at": factor.completed_at,
        "is_primary": factor.primary,
        "factor_id": factor.factor_id,
        "phishing_resistant": factor.phishing_resistant,
        "hardware_bound": factor.hardware_bound,
        "multi_factor": factor.multi_factor,
    }


def _session_from_rows(rows: Sequence[Any]) -> Session:
    """A session from rows whose first 16 columns are _GET_SESSION's, in order."""
    first = rows[0]
    completed = tuple(
        CompletedFactor(
            method=row[7],
            amr=tuple(AuthMethod(value) for value in row[8]),
            kind=FactorKind(row[9]),
            completed_at=row[10],
            primary=row[11],
            factor_id=row[12],
            phishing_resistant=row[13],
            hardware_bound=row[14],
            multi_factor=row[15],
        )
        for row in rows
        if row[7] is not None
    )
    return Session(
        id=first[0],
        subject_id=first[1],
        created_at=first[2],
        expires_at=first[3],
        revoked_at=first[4],
        ip=first[5],
        user_agent=first[6],
        factors=completed,
    )


class SqlSessionRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def get(self, session_id: str) -> Session | None:
        rows: Sequence[Any] = (await self._c.run(_GET_SESSION, {"p_id": session_id})).all()
        return _session_from_rows(rows) if rows else None

    async def get_with_subject(self, session_id: str) -> tuple[Session, Subject] | None:
        rows: Sequence[Any] = (
            await self._c.run(_GET_SESSION_WITH_SUBJECT, {"p_id": session_id})
        ).all()
        if not rows:
            return None
        first = rows[0]
        subject = Subject(
            id=first[1],
            email=first[16],
            phone=first[17],
            groups=tuple(first[18]),
            created_at=first[19],
            updated_at=first[20],
        )
        return _session_from_rows(rows), subject

    async def add(self, session: Session) -> None:
        await self._c.write(
            _INSERT_SESSION,
            {
                "id": session.id,
                "subject_id": session.subject_id,
                "created_at": session.created_at,
                "expires_at": session.expires_at,
                "revoked_at": session.revoked_at,
                "ip": session.ip,
                "user_agent": session.user_agent,
            },
        )
        if session.factors:
            await self._c.write(
                _INSERT_SESSION_FACTOR,
                [_session_factor_row(session.id, f) for f in session.factors],
            )

    async def add_factor(self, session_id: str, factor: CompletedFactor) -> None:
        await self._c.write(_INSERT_SESSION_FACTOR, _session_factor_row(session_id, factor))

    async def revoke(self, session_id: str, *, at: datetime) -> bool:
        result = await self._c.write(_REVOKE_SESSION, {"p_id": session_id, "p_at": at})
        return result.rowcount > 0


# --- factors -----------------------------------------------------------------------------

_F = factors.c
_FACTOR_BY_ID: Final = and_(_F.subject_id == bindparam("p_subject"), _F.id == bindparam("p_id"))
_GET_FACTOR: Final = select(factors).where(_FACTOR_BY_ID)
# SQLite renders no FOR UPDATE: its write transactions already hold the database's write lock.
_GET_FACTOR_FOR_UPDATE: Final = select(factors).where(_FACTOR_BY_ID).with_for_update()
_LIST_FACTORS: Final = (
    select(factors).where(_F.subject_id == bindparam("p_subject")).order_by(_F.created_at, _F.id)
)
_INSERT_FACTOR: Final = insert(factors)
_ACTIVATE_FACTOR: Final = (
    update(factors)
    .where(_F.id == bindparam("p_id"))
    .values(status=FactorStatus.ACTIVE.value, confirmed_at=bindparam("p_at"))
)
_RECORD_FAILURE: Final = (
    update(factors)
    .where(_F.id == bindparam("p_id"))
    .values(failed_attempts=bindparam("p_failed"), locked_until=bindparam("p_locked"))
)
_RECORD_SUCCESS: Final = (
    update(factors)
    .where(_F.id == bindparam("p_id"))
    .values(failed_attempts=0, locked_until=None, last_used_at=bindparam("p_at"))
)
_ADVANCE_STEP: Final = (
    update(factors)
    .where(
        _F.id == bindparam("p_id"),
        or_(_F.last_step.is_(None), _F.last_step < bindparam("p_step")),
    )
    .values(last_step=bindparam("p_step"))
)
_DELETE_FACTOR: Final = delete(factors).where(_F.id == bindparam("p_id"))

_RC = recovery_codes.c
_DELETE_CODES: Final = delete(recovery_codes).where(_RC.factor_id == bindparam("p_id"))
_INSERT_CODES: Final = insert(recovery_codes)
_CONSUME_CODE: Final = (
    update(recovery_codes)
    .where(
        _RC.factor_id == bindparam("p_id"),
        _RC.code_hash == bindparam("p_hash"),
        _RC.used_at.is_(None),
    )
    .values(used_at=bindparam("p_at"))
)
_COUNT_CODES: Final = select(func.count()).where(
    _RC.factor_id == bindparam("p_id"), _RC.used_at.is_(None)
)


# Factors whose ``secret_enc`` is where their codes are sent (an address or number).
_DESTINATION_TYPES: Final = frozenset({FactorType.EMAIL_OTP, FactorType.SMS_OTP})


class SqlFactorRepository:
    __slots__ = ("_box", "_c")

    def __init__(self, connection: _Connection, box: SecretBox) -> None:
        self._c = connection
        self._box = box

    def _factor(self, row: Row[Any]) -> Factor:
        totp = None
        if row.totp_algorithm is not None:
            totp = TotpParameters(
                algorithm=row.totp_algorithm, digits=row.totp_digits, period=row.totp_period
            )
        factor_type = FactorType(row.type)
        secret = destination = None
        if row.secret_enc is not None:
            plaintext = self._box.decrypt(row.secret_enc)
            if factor_type in _DESTINATION_TYPES:
                destination = Secret(plaintext.decode("utf-8"))
            else:
                secret = Secret(plaintext)
        return Factor(
            id=row.id,
            subject_id=row.subject_id,
            type=factor_type,
            status=FactorStatus(row.status),
            label=row.label,
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            last_used_at=row.last_used_at,
            failed_attempts=row.failed_attempts,
            locked_until=row.locked_until,
            totp=totp,
            secret=secret,
            last_step=row.last_step,
            destination=destination,
        )

    def _encrypted_payload(self, factor: Factor) -> str | None:
        """``secret_enc`` holds a TOTP seed, or an email/SMS factor's destination."""
        if factor.destination is not None:
            return self._box.encrypt(factor.destination.reveal().encode("utf-8"))
        return self._box.encrypt(factor.secret.reveal()) if factor.secret else None

    async def get(self, subject_id: str, factor_id: str) -> Factor | None:
        result = await self._c.run(_GET_FACTOR, {"p_subject": subject_id, "p_id": factor_id})
        row = result.first()
        return None if row is None else self._factor(row)

    async def get_for_update(self, subject_id: str, factor_id: str) -> Factor | None:
        result = await self._c.write(
            _GET_FACTOR_FOR_UPDATE, {"p_subject": subject_id, "p_id": factor_id}
        )
        row = result.first()
        return None if row is None else self._factor(row)

    async def list_for_subject(self, subject_id: str) -> list[Factor]:
        result = await self._c.run(_LIST_FACTORS, {"p_subject": subject_id})
        return [self._factor(row) for row in result]

    async def add(self, factor: Factor) -> None:
        totp = factor.totp
        await self._c.write(
            _INSERT_FACTOR,
            {
                "id": factor.id,
                "subject_id": factor.subject_id,
                "type": factor.type.value,
                "status": factor.status.value,
                "label": factor.label,
                "totp_algorithm": totp.algorithm if totp else None,
                "totp_digits": totp.digits if totp else None,
                "totp_period": totp.period if totp else None,
                "secret_enc": self._encrypted_payload(factor),
                "last_step": factor.last_step,
                "failed_attempts": factor.failed_attempts,
                "locked_until": factor.locked_until,
                "created_at": factor.created_at,
                "confirmed_at": factor.confirmed_at,
                "last_used_at": factor.last_used_at,
            },
        )

    async def activate(self, factor_id: str, *, at: datetime) -> None:
        result = await self._c.write(_ACTIVATE_FACTOR, {"p_id": factor_id, "p_at": at})
        _require_row(result, "factor")

    async def record_failure(
        self, factor_id: str, *, failed_attempts: int, locked_until: datetime | None
    ) -> None:
        result = await self._c.write(
            _RECORD_FAILURE,
            {"p_id": factor_id, "p_failed": failed_attempts, "p_locked": locked_until},
        )
        _require_row(result, "factor")

    async def record_success(self, factor_id: str, *, at: datetime) -> None:
        result = await self._c.write(_RECORD_SUCCESS, {"p_id": factor_id, "p_at": at})
        _require_row(result, "factor")

    async def advance_totp_step(self, factor_id: str, step: int) -> bool:
        result = await self._c.write(_ADVANCE_STEP, {"p_id": factor_id, "p_step": step})
        return result.rowcount == 1

    async def delete(self, factor_id: str) -> bool:
        result = await self._c.write(_DELETE_FACTOR, {"p_id": factor_id})
        return result.rowcount > 0

    async def replace_recovery_codes(self, factor_id: str, code_hashes: Sequence[str]) -> None:
        await self._c.write(_DELETE_CODES, {"p_id": factor_id})
        if code_hashes:
            await self._c.write(
                _INSERT_CODES,
                [{"factor_id": factor_id, "code_hash": h, "used_at": None} for h in code_hashes],
            )

    async def consume_recovery_code(self, factor_id: str, code_hash: str, *, at: datetime) -> bool:
        result = await self._c.write(
            _CONSUME_CODE, {"p_id": factor_id, "p_hash": code_hash, "p_at": at}
        )
        return result.rowcount == 1

    async def count_recovery_codes(self, factor_id: str) -> int:
        result = await self._c.run(_COUNT_CODES, {"p_id": factor_id})
        return int(result.scalar_one())


# --- challenges --------------------------------------------------------------------------

_C = challenges.c
_INSERT_CHALLENGE: Final = insert(challenges)
_GET_CHALLENGE: Final = select(challenges).where(_C.id == bindparam("p_id"))
_MARK_SATISFIED: Final = (
    update(challenges)
    .where(
        _C.id == bindparam("p_id"),
        _C.status == ChallengeStatus.PENDING.value,
        _C.expires_at > bindparam("p_at"),
    )
    .values(
        status=ChallengeStatus.SATISFIED.value,
        satisfied_at=bindparam("p_at"),
        satisfied_by=bindparam("p_factor"),
    )
)


class SqlChallengeRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def add(self, challenge: Challenge) -> None:
        req = challenge.requirement
        await self._c.write(
            _INSERT_CHALLENGE,
            {
                "id": challenge.id,
                "subject_id": challenge.subject_id,
                "session_id": challenge.session_id,
                "action": challenge.action,
                "resource": challenge.resource,
                "transaction_digest": challenge.transaction_digest,
                "rule": challenge.rule,
                "acr": req.acr.acr,
                "max_age": req.max_age,
                "methods": sorted(req.methods),
                "bind": req.bind,
                "summary": challenge.summary,
                "status": challenge.status.value,
                "created_at": challenge.created_at,
                "expires_at": challenge.expires_at,
                "satisfied_at": challenge.satisfied_at,
                "satisfied_by": challenge.satisfied_by,
            },
        )

    async def get(self, challenge_id: str) -> Challenge | None:
        row = (await self._c.run(_GET_CHALLENGE, {"p_id": challenge_id})).first()
        if row is None:
            return None
        return Challenge(
            id=row.id,
            subject_id=row.subject_id,
            session_id=row.session_id,
            action=row.action,
            resource=row.resource,
            transaction_digest=row.transaction_digest,
            rule=row.rule,
            requirement=Requirement(
                acr=AssuranceLevel.from_acr(row.acr),
                max_age=row.max_age,
                methods=frozenset(row.methods),
                bind=row.bind,
            ),
            summary=row.summary,
            status=ChallengeStatus(row.status),
            created_at=row.created_at,
            expires_at=row.expires_at,
            satisfied_at=row.satisfied_at,
            satisfied_by=row.satisfied_by,
        )

    async def mark_satisfied(self, challenge_id: str, *, at: datetime, factor_id: str) -> bool:
        result = await self._c.write(
            _MARK_SATISFIED, {"p_id": challenge_id, "p_at": at, "p_factor": factor_id}
        )
        return result.rowcount == 1


# --- grants ------------------------------------------------------------------------------

_G = grants.c
_INSERT_GRANT: Final = insert(grants)
# The whole check is the WHERE clause: a binding mismatch, expiry or earlier use matches no row.
_CONSUME_GRANT: Final = (
    update(grants)
    .where(
        _G.token_hash == bindparam("p_hash"),
        _G.used_at.is_(None),
        _G.expires_at > bindparam("p_at"),
        _G.subject_id == bindparam("p_subject"),
        _G.session_id == bindparam("p_session"),
        _G.action == bindparam("p_action"),
        _G.transaction_digest == bindparam("p_digest"),
    )
    .values(used_at=bindparam("p_at"))
    .returning(*grants.c)
)


# Redemption by challenge id (the hosted pages' flow): the same bindings, keyed by challenge.
_CONSUME_GRANT_FOR_CHALLENGE: Final = (
    update(grants)
    .where(
        _G.challenge_id == bindparam("p_challenge"),
        _G.used_at.is_(None),
        _G.expires_at > bindparam("p_at"),
        _G.subject_id == bindparam("p_subject"),
        _G.session_id == bindparam("p_session"),
        _G.action == bindparam("p_action"),
        _G.transaction_digest == bindparam("p_digest"),
    )
    .values(used_at=bindparam("p_at"))
    .returning(*grants.c)
)


def _grant(row: Any) -> Grant:
    return Grant(
        token_hash=row.token_hash,
        subject_id=row.subject_id,
        session_id=row.session_id,
        action=row.action,
        transaction_digest=row.transaction_digest,
        challenge_id=row.challenge_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


class SqlGrantRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def add(self, grant: Grant) -> None:
        await self._c.write(
            _INSERT_GRANT,
            {
                "token_hash": grant.token_hash,
                "subject_id": grant.subject_id,
                "session_id": grant.session_id,
                "action": grant.action,
                "transaction_digest": grant.transaction_digest,
                "challenge_id": grant.challenge_id,
                "created_at": grant.created_at,
                "expires_at": grant.expires_at,
                "used_at": grant.used_at,
            },
        )

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
        result = await self._c.write(
            _CONSUME_GRANT,
            {
                "p_hash": token_hash,
                "p_at": at,
                "p_subject": subject_id,
                "p_session": session_id,
                "p_action": action,
                "p_digest": transaction_digest,
            },
        )
        row = result.first()
        return None if row is None else _grant(row)

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
        result = await self._c.write(
            _CONSUME_GRANT_FOR_CHALLENGE,
            {
                "p_challenge": challenge_id,
                "p_at": at,
                "p_subject": subject_id,
                "p_session": session_id,
                "p_action": action,
                "p_digest": transaction_digest,
            },
        )
        row = result.first()
        return None if row is None else _grant(row)


# --- API keys ----------------------------------------------------------------------------

_K = api_keys.c
_INSERT_KEY: Final = insert(api_keys)
_GET_KEY: Final = select(api_keys).where(_K.id == bindparam("p_id"))
_LIST_KEYS: Final = select(api_keys).order_by(_K.created_at, _K.id)
_REVOKE_KEY: Final = (
    update(api_keys)
    .where(_K.id == bindparam("p_id"), _K.revoked_at.is_(None))
    .values(revoked_at=bindparam("p_at"))
)


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class SqlApiKeyRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def add(self, key: ApiKey) -> None:
        await self._c.write(
            _INSERT_KEY,
            {
                "id": key.id,
                "name": key.name,
                "secret_hash": key.secret_hash,
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
            },
        )

    async def get(self, key_id: str) -> ApiKey | None:
        row = (await self._c.run(_GET_KEY, {"p_id": key_id})).first()
        return None if row is None else _api_key(row)

    async def list(self) -> list[ApiKey]:
        return [_api_key(row) for row in await self._c.run(_LIST_KEYS)]

    async def revoke(self, key_id: str, *, at: datetime) -> bool:
        result = await self._c.write(_REVOKE_KEY, {"p_id": key_id, "p_at": at})
        return result.rowcount > 0


# --- audit -------------------------------------------------------------------------------

_A = audit_events.c
_HEAD_WHERE: Final = audit_head.c.id == AUDIT_HEAD_ID
_GET_HEAD: Final = select(audit_head.c.seq, audit_head.c.hash).where(_HEAD_WHERE)
# PostgreSQL: appenders queue on this row lock until the holder commits. SQLite: no-op (the
# write transaction already holds the database's write lock).
_LOCK_HEAD: Final = _GET_HEAD.with_for_update()
_SET_HEAD: Final = (
    update(audit_head).where(_HEAD_WHERE).values(seq=bindparam("p_seq"), hash=bindparam("p_hash"))
)
_INSERT_AUDIT: Final = insert(audit_events)
_AUDIT_PAGE: Final = (
    select(audit_events)
    .where(_A.seq > bindparam("p_after"))
    .order_by(_A.seq)
    .limit(bindparam("p_limit", type_=Integer))
)


def canonical_audit_event(event: AuditEvent) -> tuple[AuditEvent, str]:
    """``event`` as it reads back from storage, and its ``details`` as canonical JSON text.

    The chain hash is computed over what the database returns, so normalize first: ``at`` in
    UTC (its ``isoformat`` is part of the hash), ``details`` through RFC 8785 and back (tuples
    become lists, ``1.0`` becomes ``1``...). Raises ``ValueError``-family errors for details
    that are not JSON (NaN, huge integers, non-string keys).
    """
    if event.at.tzinfo is None or event.at.utcoffset() is None:
        raise ValueError("audit event time must be timezone-aware")
    details_text = rfc8785.dumps(event.details).decode("utf-8")
    details = orjson.loads(details_text)
    at = event.at.astimezone(UTC)
    normalized = AuditEvent(
        type=event.type,
        at=at,
        outcome=event.outcome,
        subject_id=event.subject_id,
        session_id=event.session_id,
        actor=event.actor,
        details=details,
    )
    return normalized, details_text


def _recorded(row: Row[Any]) -> RecordedAuditEvent:
    return RecordedAuditEvent(
        seq=row.seq,
        event=AuditEvent(
            type=row.type,
            at=row.at,
            outcome=row.outcome,
            subject_id=row.subject_id,
            session_id=row.session_id,
            actor=row.actor,
            details=orjson.loads(row.details),
        ),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class SqlAuditLog:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def append(self, event: AuditEvent) -> RecordedAuditEvent:
        normalized, details_text = canonical_audit_event(event)
        head = (await self._c.write(_LOCK_HEAD)).first()
        if head is None:
            raise StorageUnavailableError("the audit log is not initialized: run the migrations")
        seq = head.seq + 1
        digest = chain_hash(head.hash, seq, normalized)
        await self._c.write(
            _INSERT_AUDIT,
            {
                "seq": seq,
                "type": normalized.type,
                "at": normalized.at,
                "outcome": normalized.outcome,
                "subject_id": normalized.subject_id,
                "session_id": normalized.session_id,
                "actor": normalized.actor,
                "details": details_text,
                "prev_hash": head.hash,
                "hash": digest,
            },
        )
        await self._c.write(_SET_HEAD, {"p_seq": seq, "p_hash": digest})
        return RecordedAuditEvent(seq=seq, event=normalized, prev_hash=head.hash, hash=digest)

    async def query(
        self,
        *,
        subject_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[RecordedAuditEvent]:
        """Records in chain order matching every given filter; ``since`` inclusive,
        ``until`` exclusive; page with ``after_seq`` (the last ``seq`` of the previous page).
        """
        if limit <= 0:
            return []
        stmt = select(audit_events).where(_A.seq > after_seq)
        if subject_id is not None:
            stmt = stmt.where(_A.subject_id == subject_id)
        if type is not None:
            stmt = stmt.where(_A.type == type)
        if since is not None:
            stmt = stmt.where(_A.at >= since)
        if until is not None:
            stmt = stmt.where(_A.at < until)
        stmt = stmt.order_by(_A.seq).limit(limit)
        return [_recorded(row) for row in await self._c.run(stmt)]

    async def iterate(self) -> AsyncIterator[RecordedAuditEvent]:
        """Every record in chain order, fetched in pages (memory stays bounded)."""
        after = 0
        while True:
            page_size = AUDIT_PAGE_SIZE
            result = await self._c.run(_AUDIT_PAGE, {"p_after": after, "p_limit": page_size})
            rows = result.all()
            for row in rows:
                yield _recorded(row)
            if len(rows) < page_size:
                return
            after = rows[-1].seq

    async def head(self) -> tuple[int, str]:
        row = (await self._c.run(_GET_HEAD)).first()
        if row is None:
            raise StorageUnavailableError("the audit log is not initialized: run the migrations")
        return int(row.seq), str(row.hash)


# --- the unit of work --------------------------------------------------------------------


class SqlUnitOfWork:
    """The repositories of one transaction (what ``Store.transaction()`` yields).

    The attributes are typed as the ports (protocol attributes are invariant), so a
    ``SqlStore`` is a ``Store``.
    """

    __slots__ = (
        "_connection",
        "api_keys",
        "audit",
        "browser_sessions",
        "challenges",
        "deliveries",
        "expired",
        "factors",
        "grants",
        "logins",
        "oidc",
        "page_tokens",
        "push",
        "risk",
        "sessions",
        "subjects",
        "upstream_logins",
        "webauthn",
    )

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

    def __init__(self, conn: AsyncConnection, box: SecretBox, *, writable: bool) -> None:
        connection = _Connection(conn, writable=writable)
        self._connection = connection
        self.subjects = SqlSubjectRepository(connection)
        self.sessions = SqlSessionRepository(connection)
        self.factors = SqlFactorRepository(connection, box)
        self.challenges = SqlChallengeRepository(connection)
        self.grants = SqlGrantRepository(connection)
        self.api_keys = SqlApiKeyRepository(connection)
        self.audit = SqlAuditLog(connection)
        self.webauthn = SqlWebAuthnRepository(connection)
        self.risk = SqlRiskRepository(connection)
        self.page_tokens = _pages.SqlPageTokenRepository(connection)
        self.browser_sessions = _pages.SqlBrowserSessionRepository(connection)
        self.deliveries = SqlDeliveryRepository(connection)
        self.push = SqlPushRepository(connection, box)
        self.expired = SqlExpiryRepository(connection)
        self.upstream_logins = SqlUpstreamLoginRepository(connection, box)
        self.logins = SqlLoginRepository(connection)
        self.oidc = SqlOidcRepository(connection, box)

    @property
    def connection(self) -> AsyncConnection:
        """The underlying connection (adapter maintenance and tests only)."""
        return self._connection.conn

    async def execute(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        """Run a Core statement in this unit of work, with the storage error mapping.

        Adapter maintenance only; a read-only unit of work still refuses nothing here, so
        callers must not write through ``Store.read()``.
        """
        return await self._connection.run(statement, params)


# At the end: _risk imports _Connection from this module.
from stepguard.adapters.storage._risk import SqlRiskRepository  # noqa: E402
