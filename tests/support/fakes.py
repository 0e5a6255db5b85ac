"""Deterministic test doubles for core ports (importable from any test)."""

from __future__ import annotations

import hashlib


class FixedRng:
    """A deterministic ``Rng``: the same seed always yields the same byte stream.

    Output is SHA-256 in counter mode over the seed, so values look random (distinct ids,
    no accidental collisions) yet every run is reproducible. Never use outside tests.
    """

    def __init__(self, seed: int | bytes = 0) -> None:
        self._seed = seed if isinstance(seed, bytes) else seed.to_bytes(16, "big", signed=True)
        self._counter = 0
        self._buffer = b""
        self.bytes_drawn = 0

    def token_bytes(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = self._seed + self._counter.to_bytes(8, "big")
            self._buffer += hashlib.sha256(block).digest()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.bytes_drawn += n
        return out
