"""argon2id password hashing (argon2-cffi) behind the ``PasswordHasher`` port.

Hashing and verifying cost tens of milliseconds of CPU by design (about 90 ms with the
default parameters on a small server), so every call runs in a worker thread
(``asyncio.to_thread``), never on the event loop. argon2-cffi compares in constant time.

At most ``max_concurrent`` hashes run at once per process (default: one per four CPUs, at
least one; each uses ``p=4`` lanes); the others wait their turn on the event loop. Without
that bound a burst of sign-ins starts dozens of hashing threads that starve the event loop
of CPU, and every other request (and every database transaction in flight) slows down with
it: measured with 20 simultaneous sign-ins on 2 cores, transactions then waited more than
the 10 s lock timeout.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from typing import Final, TypeVar

from argon2 import Parameters, PasswordHasher, Type, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from stepguard.core.passwords import HashProfile
from stepguard.core.secret import Secret

__all__ = ["Argon2Hasher"]

T = TypeVar("T")

# Cheap, for tests only: still argon2id with a full-size salt and tag.
_TEST_PARAMETERS: Final = Parameters(
    type=Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=64,
    parallelism=1,
)
_PROFILES: Final = {
    HashProfile.RFC9106_LOW_MEMORY: profiles.RFC_9106_LOW_MEMORY,
    HashProfile.RFC9106_HIGH_MEMORY: profiles.RFC_9106_HIGH_MEMORY,
    HashProfile.TEST: _TEST_PARAMETERS,
}


class Argon2Hasher:
    """The ``PasswordHasher`` port: argon2id with the parameters of ``profile``."""

    def __init__(
        self,
        profile: HashProfile = HashProfile.RFC9106_LOW_MEMORY,
        *,
        max_concurrent: int | None = None,
    ) -> None:
        self.profile = profile
        self._hasher = PasswordHasher.from_parameters(_PROFILES[profile])
        self._dummy: str | None = None
        limit = max_concurrent or max(1, (os.cpu_count() or 1) // 4)
        if limit < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._slots = asyncio.Semaphore(limit)

    async def _in_thread(self, function: Callable[..., T], *args: str) -> T:
        async with self._slots:
            return await asyncio.to_thread(function, *args)

    def __repr__(self) -> str:
        return f"Argon2Hasher(profile={self.profile.value!r})"

    async def hash(self, password: Secret[str]) -> str:
        return await self._in_thread(self._hasher.hash, password.reveal())

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, stored_hash: str, password: Secret[str]) -> bool:
        return await self._in_thread(self._verify, stored_hash, password.reveal())

    async def verify_dummy(self, password: Secret[str]) -> None:
        if self._dummy is None:
            # A hash of a random value with the current parameters: it matches nothing anyone
            # types, and verifying against it costs what a real verification costs.
            self._dummy = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(32))
        await asyncio.to_thread(self._verify, self._dummy, password.reveal())

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True
