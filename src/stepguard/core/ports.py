"""Ports the pure core asks for. Only adapters implement them with real I/O."""

from __future__ import annotations

from typing import Protocol


class Rng(Protocol):
    """A cryptographically secure source of randomness (``secrets`` in production)."""

    def token_bytes(self, n: int) -> bytes: ...
