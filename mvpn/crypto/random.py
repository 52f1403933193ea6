"""The injectable source of randomness.

Everything that needs random bytes (keys, nonces, HPKE ephemeral keys are the exception:
the library draws those itself) takes a :data:`RandomSource`. Production code passes
:func:`system_random`; tests pass :class:`SeededRandom` so the sans-IO core is deterministic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

RandomSource = Callable[[int], bytes]
"""A callable returning ``n`` random bytes."""


def system_random(n: int) -> bytes:
    """Random bytes from the operating system (``os.urandom``)."""
    return os.urandom(n)


class SeededRandom:
    """A deterministic, reproducible byte stream for tests (SHA-256 in counter mode).

    Never use it for real keys: anyone who knows the seed knows every byte.
    """

    def __init__(self, seed: bytes | str | int = 0) -> None:
        self._seed = str(seed).encode() if not isinstance(seed, bytes) else seed
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
