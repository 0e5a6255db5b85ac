"""The ports of sign-in on StepGuard (``service.login``): password hashing and the login store.

``LoginRepository`` is ``UnitOfWork.logins``: stored password hashes, the per-account and
per-IP guessing counters, and the single-use ceremonies of usernameless passkey sign-in.
Concurrency: within a transaction, :meth:`LoginRepository.lock_limits` serializes every
sign-in's counter check-and-charge across processes (PostgreSQL: a transaction-scoped
advisory lock; SQLite: its write transactions already hold the database lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stepguard.core.secret import Secret

__all__ = [
    "AccountCounter",
    "LoginCeremony",
    "LoginRepository",
    "PasswordHasher",
    "StoredPassword",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPassword:
    """A subject's password as stored: an argon2id PHC string (salt and parameters inside)."""

    subject_id: str
    hash: str
    set_at: datetime

    def __repr__(self) -> str:
        return f"StoredPassword(subject_id={self.subject_id!r}, hash=<redacted>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountCounter:
    """A subject's consecutive failed sign-ins (``core.lockout.LockoutPolicy`` semantics)."""

    failed_attempts: int = 0
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginCeremony:
    """The challenge of one usernameless passkey sign-in, bound to the browser that asked for
    it (``binding``: the SHA-256 of its pre-login cookie), consumed once."""

    id: str
    challenge: bytes
    binding: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


class PasswordHasher(Protocol):
    """argon2id, off the event loop. Never logs or returns the password."""

    async def hash(self, password: Secret[str]) -> str: ...

    async def verify(self, stored_hash: str, password: Secret[str]) -> bool:
        """Whether ``password`` matches; ``False`` (never an exception) for a mismatch or an
        unparsable stored hash."""
        ...

    async def verify_dummy(self, password: Secret[str]) -> None:
        """The same work as :meth:`verify` against a hash that matches nothing (unknown
        accounts cost what known ones cost)."""
        ...

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other parameters than the current ones."""
        ...


class LoginRepository(Protocol):
    async def lock_limits(self) -> None:
        """Serialize the guessing counters until the transaction ends (see module doc)."""
        ...

    async def subject_ids_by_email(self, email: str) -> list[str]:
        """Subjects whose email equals ``email`` (ASCII case-insensitively), at most two."""
        ...

    async def get_password(self, subject_id: str) -> StoredPassword | None: ...
    async def put_password(self, password: StoredPassword) -> None: ...
    async def delete_password(self, subject_id: str) -> bool: ...

    async def replace_hash(self, subject_id: str, *, old: str, new: str) -> bool:
        """Rehash: write ``new`` only while the stored hash is still ``old``."""
        ...

    async def counter_for_update(self, subject_id: str) -> AccountCounter:
        """The subject's counter (zero if none), locked until the transaction ends."""
        ...

    async def save_counter(
        self, subject_id: str, counter: AccountCounter, *, at: datetime
    ) -> None: ...

    async def count_ip_failures(self, ip: str, *, since: datetime) -> int: ...

    async def add_ip_failure(self, ip: str, *, at: datetime) -> int:
        """Record one (charged) attempt from ``ip``; returns its id."""
        ...

    async def forget_ip_failure(self, attempt_id: int) -> None:
        """Remove a charged attempt that then succeeded."""
        ...

    async def prune_ip_failures(self, ip: str, *, before: datetime) -> None: ...

    async def add_ceremony(self, ceremony: LoginCeremony) -> None: ...

    async def consume_ceremony(
        self, *, challenge: bytes, binding: str, at: datetime
    ) -> LoginCeremony | None:
        """The open ceremony with this challenge and binding, used up by this call (one
        conditional UPDATE), or ``None`` (unknown, used, expired or another browser's)."""
        ...

    async def prune_ceremonies(self, *, before: datetime) -> None: ...
