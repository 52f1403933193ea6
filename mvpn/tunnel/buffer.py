"""The bounded buffer of tunnel frames kept while a tunnel is down (docs/protocol.md 8.2, 10).

Frames accepted while the HA-FA connection is being re-established are kept, in order, up to
:data:`MAX_BUFFERED_FRAMES` frames and :data:`MAX_BUFFERED_BYTES` bytes, and written as one
sequence once the connection is ready again. A frame that does not fit is refused: counted
(``buffer.overflow``), the first refusal of an outage logged at once, and the total logged
when the buffer is flushed. Nothing is dropped silently.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.logger import Logger

from mvpn.core.effects import Counters

__all__ = ["MAX_BUFFERED_BYTES", "MAX_BUFFERED_FRAMES", "FrameBuffer", "FrameSink"]

MAX_BUFFERED_FRAMES = 1024
"""Frames kept during a reconnection (protocol.md 10: a few seconds at the target rate)."""

MAX_BUFFERED_BYTES = 1 << 20
"""Bytes kept during a reconnection (1 MiB, protocol.md 10)."""


class FrameSink(Protocol):
    """Where a flushed buffer goes: a ready :class:`~mvpn.tunnel.protocol.TunnelProtocol`."""

    def send_frames(self, frames: list[bytes]) -> None:
        """Write whole frames in order."""


class FrameBuffer:
    """Encoded frames waiting for a tunnel to ``peer`` (a label for the logs)."""

    log = Logger()

    def __init__(
        self,
        counters: Counters,
        peer: str,
        max_frames: int = MAX_BUFFERED_FRAMES,
        max_bytes: int = MAX_BUFFERED_BYTES,
    ) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("a frame buffer holds at least one frame and one byte")
        self.counters = counters
        self.peer = peer
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self.bytes = 0
        self._overflowed = 0

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame: bytes) -> bool:
        """Keep ``frame``; False (counted, logged) when the buffer is full."""
        size = len(frame)
        if len(self._frames) >= self.max_frames or self.bytes + size > self.max_bytes:
            self.counters.increment("buffer.overflow")
            if not self._overflowed:
                self.log.warn(
                    "tunnel to {peer} down and its buffer full ({frames} frames, {bytes} "
                    "bytes): refusing frames until it reconnects",
                    peer=self.peer,
                    frames=len(self._frames),
                    bytes=self.bytes,
                )
            self._overflowed += 1
            return False
        self._frames.append(frame)
        self.bytes += size
        self.counters.increment("buffer.kept")
        return True

    def flush_to(self, sink: FrameSink) -> int:
        """Write every kept frame to ``sink`` in order and empty the buffer; how many."""
        frames = list(self._frames)
        self._frames.clear()
        self.bytes = 0
        if frames:
            sink.send_frames(frames)
            self.counters.increment("buffer.flushed", len(frames))
        if self._overflowed:
            self.log.warn(
                "tunnel to {peer} back: {flushed} buffered frames sent, {refused} refused "
                "while it was down",
                peer=self.peer,
                flushed=len(frames),
                refused=self._overflowed,
            )
            self._overflowed = 0
        return len(frames)
