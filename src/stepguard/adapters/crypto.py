"""Encryption of secrets at rest (TOTP seeds): Fernet with key rotation.

``SecretBox`` wraps :class:`cryptography.fernet.MultiFernet`. The first key encrypts; every key
decrypts, so an operator rotates by putting a new key first, re-encrypting the stored secrets
(``SqlStore.reencrypt_secrets()``), then removing the old key. Keys come from configuration;
``SecretBox.generate_key()`` makes a new one.

Nothing here ever puts a key or a plaintext in a message, a ``repr`` or an exception.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from stepguard.core.errors import StepGuardError

__all__ = ["SecretBox", "SecretDecryptionError"]


class SecretDecryptionError(StepGuardError):
    """A stored secret could not be decrypted with any configured key (or was altered)."""

    code = "secret_decryption_failed"
    default_message = (
        "A stored secret could not be decrypted: it was altered, or its key is not configured."
    )


class SecretBox:
    """Authenticated encryption for small secrets, with an ordered list of keys.

    ``keys[0]`` is the current key (used to encrypt); the others only decrypt. Each key is a
    Fernet key: 32 random bytes, URL-safe base64 (what :meth:`generate_key` returns).
    """

    __slots__ = ("_current", "_fernet", "_key_count")

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, str | bytes):
            raise TypeError("SecretBox takes a list of keys, not a single key")
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        fernets: list[Fernet] = []
        for index, key in enumerate(keys):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # The original message is generic, but never risk echoing the key.
                raise ValueError(
                    f"secret key #{index + 1} is not a valid Fernet key "
                    "(32 bytes, URL-safe base64; see SecretBox.generate_key())"
                ) from None
        self._current = fernets[0]
        self._fernet = MultiFernet(fernets)
        self._key_count = len(fernets)

    @staticmethod
    def generate_key() -> str:
        """A new random key, in the form the configuration expects."""
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, plaintext: bytes) -> str:
        """Encrypt with the current key. The token is ASCII and safe to store as text."""
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        """Decrypt with whichever configured key made ``token``.

        Raises :class:`SecretDecryptionError` if no key fits or the token was altered.
        """
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretDecryptionError() from None

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` with the current key (same plaintext, new token)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SecretDecryptionError() from None

    def is_current(self, token: str) -> bool:
        """Whether the current key decrypts ``token`` (so rotating it would change nothing)."""
        try:
            self._current.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._key_count})"
