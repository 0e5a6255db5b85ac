"""argon2id password hashing (argon2-cffi) behind the ``PasswordHasher`` port.

Hashing and verifying cost tens of milliseconds of CPU by design (about 90 ms with the
default parameters on a small server), so every call runs in a worker thread
(``asyncio.to_thread``), never on the event loop. argon2-cffi compares in constant time.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Final

from argon2 import Parameters, PasswordHasher, Type, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from stepguard.core.passwords import HashProfile
from stepguard.core.secret import Secret

__all__ = ["Argon2Hasher"]

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

    def __init__(self, profile: HashProfile = HashProfile.RFC9106_LOW_MEMORY) -> None:
        self.profile = profile
        self._hasher = PasswordHasher.from_parameters(_PROFILES[profile])
        self._dummy: str | None = None

    def __repr__(self) -> str:
        return f"Argon2Hasher(profile={self.profile.value!r})"

    async def hash(self, password: Secret[str]) -> str:
        return await asyncio.to_thread(self._hasher.hash, password.reveal())

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, stored_hash: str, password: Secret[str]) -> bool:
        return await asyncio.to_thread(self._verify, stored_hash, password.reveal())

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
