"""Entity builders for the storage suite: valid defaults, override what a test is about."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stepguard.core.assurance import (
    AssuranceLevel,
    AuthMethod,
    CompletedFactor,
    FactorKind,
    FactorType,
    Requirement,
)
from stepguard.core.model import (
    ApiKey,
    Challenge,
    ChallengeStatus,
    Factor,
    FactorStatus,
    Grant,
    Session,
    Subject,
    TotpParameters,
)
from stepguard.core.secret import Secret
from stepguard.service.ports import Store

# Microseconds on purpose: they must survive every backend.
NOW = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
SEED = b"\x8a\x13stepguard-seed\x00\xff\x01\x02\x03\x04"  # 24 bytes, recognizable


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def subject(subject_id: str | None = None, **overrides: object) -> Subject:
    fields: dict[str, object] = {
        "id": subject_id or new_id("sub"),
        "email": "ada@example.com",
        "phone": "+15550100",
        "groups": ("admins", "finance"),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return Subject(**fields)  # type: ignore[arg-type]


def primary(at: datetime = NOW) -> CompletedFactor:
    return CompletedFactor(
        method="primary",
        amr=(AuthMethod.PWD,),
        kind=FactorKind.KNOWLEDGE,
        completed_at=at,
        primary=True,
    )


def step_up(factor_id: str, at: datetime = NOW) -> CompletedFactor:
    return CompletedFactor(
        method=FactorType.TOTP.value,
        amr=(AuthMethod.OTP, AuthMethod.SWK),
        kind=FactorKind.POSSESSION,
        completed_at=at,
        factor_id=factor_id,
        phishing_resistant=True,
        hardware_bound=False,
        multi_factor=True,
    )


def session(subject_id: str, **overrides: object) -> Session:
    fields: dict[str, object] = {
        "id": new_id("ses"),
        "subject_id": subject_id,
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=8),
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "factors": (primary(),),
    }
    fields.update(overrides)
    return Session(**fields)  # type: ignore[arg-type]


def totp_factor(subject_id: str, **overrides: object) -> Factor:
    fields: dict[str, object] = {
        "id": new_id("fac"),
        "subject_id": subject_id,
        "type": FactorType.TOTP,
        "status": FactorStatus.PENDING,
        "label": "phone",
        "created_at": NOW,
        "totp": TotpParameters(algorithm="SHA256", digits=8, period=30),
        "secret": Secret(SEED),
    }
    fields.update(overrides)
    return Factor(**fields)  # type: ignore[arg-type]


def recovery_factor(subject_id: str, **overrides: object) -> Factor:
    fields: dict[str, object] = {
        "id": new_id("fac"),
        "subject_id": subject_id,
        "type": FactorType.RECOVERY_CODE,
        "status": FactorStatus.ACTIVE,
        "label": "codes",
        "created_at": NOW,
        "confirmed_at": NOW,
    }
    fields.update(overrides)
    return Factor(**fields)  # type: ignore[arg-type]


def challenge(subject_id: str, session_id: str, **overrides: object) -> Challenge:
    fields: dict[str, object] = {
        "id": new_id("chl"),
        "subject_id": subject_id,
        "session_id": session_id,
        "action": "payments.transfer",
        "resource": "acct/42",
        "transaction_digest": "sha256:" + "ab" * 32,
        "rule": "big-transfers",
        "requirement": Requirement(
            acr=AssuranceLevel.PHR,
            max_age=300,
            methods=frozenset({"totp", "recovery_code"}),
            bind=True,
        ),
        "summary": "Transfer 1,000 EUR to DE89…",
        "status": ChallengeStatus.PENDING,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=5),
    }
    fields.update(overrides)
    return Challenge(**fields)  # type: ignore[arg-type]


def grant(subject_id: str, session_id: str, challenge_id: str, **overrides: object) -> Grant:
    fields: dict[str, object] = {
        "token_hash": secrets.token_hex(32),
        "subject_id": subject_id,
        "session_id": session_id,
        "action": "payments.transfer",
        "transaction_digest": "sha256:" + "ab" * 32,
        "challenge_id": challenge_id,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=2),
    }
    fields.update(overrides)
    return Grant(**fields)  # type: ignore[arg-type]


def api_key(**overrides: object) -> ApiKey:
    fields: dict[str, object] = {
        "id": new_id("key"),
        "name": "shop-backend",
        "secret_hash": "argon2id$" + secrets.token_hex(16),
        "created_at": NOW,
    }
    fields.update(overrides)
    return ApiKey(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class World:
    """One subject with a session, a TOTP factor, recovery codes, a challenge and a grant."""

    subject: Subject
    session: Session
    totp: Factor
    codes: Factor
    code_hashes: tuple[str, ...]
    challenge: Challenge
    grant: Grant


async def build_world(store: Store) -> World:
    sub = subject()
    ses = session(sub.id)
    totp = totp_factor(sub.id)
    codes = recovery_factor(sub.id)
    hashes = tuple(secrets.token_hex(32) for _ in range(10))
    chl = challenge(sub.id, ses.id)
    grt = grant(sub.id, ses.id, chl.id)
    async with store.transaction() as uow:
        await uow.subjects.upsert(sub)
        await uow.sessions.add(ses)
        await uow.factors.add(totp)
        await uow.factors.add(codes)
        await uow.factors.replace_recovery_codes(codes.id, hashes)
        await uow.challenges.add(chl)
        await uow.grants.add(grt)
    return World(
        subject=sub,
        session=ses,
        totp=totp,
        codes=codes,
        code_hashes=hashes,
        challenge=chl,
        grant=grt,
    )
