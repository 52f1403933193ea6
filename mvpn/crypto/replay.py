"""The sliding replay window of the data flow (draft 3.5.1; docs/protocol.md 8.1 and 10).

Each receiver keeps one window per (SPI, direction). A packet's 64-bit Sequence Number is
checked with :meth:`ReplayWindow.check` before its hop authenticator, and the window moves
with :meth:`ReplayWindow.update` only after the authenticator verified: a forged packet, which
anyone can send, never moves it (the anti-replay rule of RFC 4303 section 3.4.3).

Sequence numbers start at 1 (docs/protocol.md 8.1); 0 is never valid. The window is an
integer bitmap: bit i set means ``highest - i`` was accepted.
"""

from __future__ import annotations

import enum

from mvpn.crypto.errors import CryptoError

__all__ = [
    "DEFAULT_MAX_JUMP",
    "DEFAULT_WINDOW",
    "MIN_WINDOW",
    "ReplayError",
    "ReplayReason",
    "ReplayWindow",
]

DEFAULT_WINDOW = 2048
"""Wide enough for the reordering of the HA-FA tunnel and the foreign link (docs 10)."""

MIN_WINDOW = 1024
"""The profile's floor for a data-flow window."""

DEFAULT_MAX_JUMP = 1 << 20
"""How far ahead of the highest accepted number a packet may be: a million packets (about
1.4 GB at the 1400-byte MTU) is more loss than any live session survives, while a holder of
the data authentication key cannot push the window to the end of the sequence space."""

MAX_SEQUENCE = (1 << 64) - 1


class ReplayReason(enum.StrEnum):
    """Why :meth:`ReplayWindow.check` refused a sequence number (compares equal to its text)."""

    DUPLICATE = "duplicate"
    TOO_OLD = "too old"
    TOO_FAR_AHEAD = "too far ahead"


class ReplayError(CryptoError):
    """A sequence number the window refuses; :attr:`reason` says which rule."""

    def __init__(self, sequence: int, reason: ReplayReason, detail: str) -> None:
        self.sequence = sequence
        self.reason = reason
        super().__init__(f"sequence {sequence} refused: {reason.value} ({detail})")


class ReplayWindow:
    """A sliding window of ``size`` sequence numbers ending at the highest one accepted.

    ``size`` must be a multiple of 64 and at least :data:`MIN_WINDOW`. ``max_jump`` bounds how
    far beyond the highest accepted number a packet may be. The first packet of an empty
    window is not bound by it: a new FA after a key transfer (draft 3.3) joins a session whose
    numbers are already far from 1.
    """

    __slots__ = ("_bitmap", "_highest", "_mask", "max_jump", "size")

    def __init__(self, size: int = DEFAULT_WINDOW, max_jump: int = DEFAULT_MAX_JUMP) -> None:
        if size < MIN_WINDOW or size % 64:
            raise ValueError(f"replay window must be a multiple of 64, at least {MIN_WINDOW}")
        if max_jump < 1:
            raise ValueError(f"max_jump must be at least 1, got {max_jump}")
        self.size = size
        self.max_jump = max_jump
        self._highest = 0
        self._bitmap = 0
        self._mask = (1 << size) - 1

    @property
    def highest(self) -> int:
        """The highest sequence number accepted so far; 0 before the first."""
        return self._highest

    def check(self, seq: int) -> None:
        """:class:`ReplayError` if ``seq`` must be refused. Changes nothing."""
        if not 0 <= seq <= MAX_SEQUENCE:
            raise ValueError(f"sequence number must be in [0, 2**64), got {seq}")
        if seq == 0:
            raise ReplayError(seq, ReplayReason.TOO_OLD, "sequence numbers start at 1")
        highest = self._highest
        if seq > highest:
            if highest and seq - highest > self.max_jump:
                raise ReplayError(
                    seq,
                    ReplayReason.TOO_FAR_AHEAD,
                    f"{seq - highest} beyond {highest}, at most {self.max_jump}",
                )
            return
        offset = highest - seq
        if offset >= self.size:
            raise ReplayError(
                seq, ReplayReason.TOO_OLD, f"window of {self.size} ends at {highest}"
            )
        if self._bitmap >> offset & 1:
            raise ReplayError(seq, ReplayReason.DUPLICATE, "already accepted")

    def update(self, seq: int) -> None:
        """Record ``seq`` as accepted. Call only after the packet's authenticator verified.

        Checks again first (raising :class:`ReplayError` and changing nothing), so a caller
        that forgot :meth:`check` still cannot accept a replay.
        """
        self.check(seq)
        if seq > self._highest:
            shift = seq - self._highest
            # A jump past the whole window forgets every older bit at once.
            self._bitmap = 1 if shift >= self.size else (self._bitmap << shift | 1) & self._mask
            self._highest = seq
        else:
            self._bitmap |= 1 << (self._highest - seq)

    def __repr__(self) -> str:
        return f"<ReplayWindow size={self.size} highest={self._highest}>"
