"""The only place that reads the real clock and the operating system's randomness."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SystemRng:
    def token_bytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)
