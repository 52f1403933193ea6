"""What one end keeps for one HA-FA pair across connections: its sequence series, the frames
not yet acknowledged, and the peer's series it receives (docs/protocol.md 8.2, 10).

:class:`TunnelSession` outlives the TCP connections of its pair:

- **Sending.** Every accepted Data frame gets the next Sequence of this end's series (from 1,
  never reset while the process lives) and is kept, encoded, until the peer acknowledges it
  (an Ack frame is cumulative). Kept frames (written but unacknowledged, plus those accepted
  while no connection is ready) are bounded by :data:`MAX_BUFFERED_FRAMES` and
  :data:`MAX_BUFFERED_BYTES`; a frame that does not fit is refused: counted
  (``buffer.overflow``), the first refusal of a streak logged at once and the total when
  frames are accepted again. Nothing is dropped silently.
- **Reconnecting.** The peer's Hello says which of this end's frames it has (Peer Session ID,
  Next Expected): those are released, every other kept frame is written again, oldest first,
  before anything new. A Hello with another Session ID than the peer's last one means the
  peer restarted: the frames written to its previous process and not acknowledged are
  dropped and counted (``frames.peer_restarted``), never written to the new process (it
  cannot tell whether the old one delivered them); frames never written go on.
- **Receiving.** :attr:`next_expected` is the next Sequence of the peer's series this end
  delivers; 0 while it knows none of the peer's series (first contact, or the peer
  restarted), then the first Data frame of the connection sets it (the sender writes its
  oldest kept frame first). Duplicates and gaps are the connection's business
  (:mod:`mvpn.tunnel.protocol`).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Protocol

from twisted.logger import Logger

from mvpn.core.effects import Counters
from mvpn.crypto.random import RandomSource, system_random
from mvpn.wire.data import FrameType, TunnelHello

__all__ = [
    "MAX_BUFFERED_BYTES",
    "MAX_BUFFERED_FRAMES",
    "FrameSink",
    "TunnelSession",
    "new_session_id",
]

MAX_BUFFERED_FRAMES = 1024
"""Frames kept unacknowledged or waiting for a connection (protocol.md 10: a few seconds at
the target rate)."""

MAX_BUFFERED_BYTES = 1 << 20
"""Bytes kept unacknowledged or waiting for a connection (1 MiB, protocol.md 10)."""

_DATA_PREFIX = struct.Struct("!IBQ")
_DATA = int(FrameType.DATA)


def new_session_id(random: RandomSource = system_random) -> int:
    """A random, non-zero 64-bit Session ID (0 means "none" in a Hello)."""
    while True:
        value = int.from_bytes(random(8), "big")
        if value:
            return value


class FrameSink(Protocol):
    """Where frames are written: a ready :class:`~mvpn.tunnel.protocol.TunnelProtocol`."""

    def write_frames(self, frames: list[bytes]) -> None:
        """Write whole frames in order."""

    def write_frame(self, frame: bytes) -> None:
        """Write one whole frame."""


class TunnelSession:
    """This end's state for the pair with ``peer`` (a label for the logs)."""

    log = Logger()

    def __init__(
        self,
        counters: Counters,
        peer: str,
        max_frames: int = MAX_BUFFERED_FRAMES,
        max_bytes: int = MAX_BUFFERED_BYTES,
        *,
        session_id: int | None = None,
    ) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("a tunnel session keeps at least one frame and one byte")
        self.counters = counters
        self.peer = peer
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.session_id = session_id if session_id is not None else new_session_id()
        self.sink: FrameSink | None = None
        """The ready connection frames are written to, or None while down."""
        # Sending: kept frames are consecutive, the first has Sequence self._first.
        self._frames: deque[bytes] = deque()
        self._first = 1
        self._written_upto = 1
        """Frames below this Sequence were written to some connection."""
        self.bytes = 0
        self._overflowed = 0
        # Receiving.
        self.peer_session = 0
        """The peer's Session ID, 0 before its first Hello."""
        self.next_expected = 0

    def __len__(self) -> int:
        """Frames kept: written but unacknowledged, or waiting for a connection."""
        return len(self._frames)

    @property
    def next_sequence(self) -> int:
        """The Sequence the next accepted frame gets."""
        return self._first + len(self._frames)

    @property
    def unacknowledged(self) -> int:
        """Kept frames already written to a connection."""
        return self._written_upto - self._first

    # --- sending -----------------------------------------------------------------------

    def send(self, mn_addr: bytes, packet: bytes) -> bool:
        """Accept a Data frame for ``packet`` to the MN ``mn_addr`` (4 packed bytes): keep it
        and write it if a connection is ready. False (counted, logged) when the bounds are
        reached: the frame was not accepted."""
        frame = _DATA_PREFIX.pack(13 + len(packet), _DATA, self.next_sequence) + mn_addr + packet
        size = len(frame)
        if len(self._frames) >= self.max_frames or self.bytes + size > self.max_bytes:
            self._refuse()
            return False
        if self._overflowed:
            self._end_overflow()
        self._frames.append(frame)
        self.bytes += size
        sink = self.sink
        if sink is not None:
            self._written_upto += 1
            sink.write_frame(frame)
        else:
            self.counters.increment("buffer.kept")
        return True

    def _refuse(self) -> None:
        self.counters.increment("buffer.overflow")
        if not self._overflowed:
            self.log.warn(
                "tunnel to {peer}: {frames} frames ({bytes} bytes) unacknowledged or waiting, "
                "the limit: refusing frames until the peer acknowledges",
                peer=self.peer,
                frames=len(self._frames),
                bytes=self.bytes,
            )
        self._overflowed += 1

    def _end_overflow(self) -> None:
        self.log.warn(
            "tunnel to {peer}: accepting frames again, {refused} refused meanwhile",
            peer=self.peer,
            refused=self._overflowed,
        )
        self._overflowed = 0

    def acknowledge(self, sequence: int) -> bool:
        """Release every kept frame up to ``sequence`` (an Ack, cumulative). False when it
        acknowledges a frame never written: the peer is broken."""
        if sequence >= self._written_upto:
            return False
        n = sequence - self._first + 1
        frames = self._frames
        for _ in range(n):
            self.bytes -= len(frames.popleft())
        if n > 0:
            self._first += n
        return True

    # --- connections -------------------------------------------------------------------

    def peer_hello(self, hello: TunnelHello) -> None:
        """Take in the peer's verified Hello: its series and what it has of ours."""
        if self.peer_session and hello.session != self.peer_session:
            dropped = self.unacknowledged
            self.acknowledge(self._written_upto - 1)
            self.counters.increment("frames.peer_restarted", dropped)
            self.log.warn(
                "tunnel peer {peer} restarted (new session): {dropped} frames written to its "
                "previous process and unacknowledged dropped",
                peer=self.peer,
                dropped=dropped,
            )
        elif (
            hello.session == self.peer_session
            and hello.peer_session == self.session_id
            and hello.next_expected
            and not self.acknowledge(hello.next_expected - 1)
        ):
            # It claims frames we never wrote: release nothing, resend everything.
            self.log.warn(
                "tunnel peer {peer} expects {next_expected}, beyond what was sent",
                peer=self.peer,
                next_expected=hello.next_expected,
            )
        if hello.session != self.peer_session:
            self.peer_session = hello.session
            self.next_expected = 0

    def attach(self, sink: FrameSink) -> None:
        """A connection is ready: write every kept frame to it, oldest first."""
        self.sink = sink
        frames = list(self._frames)
        self._written_upto = self._first + len(frames)
        if frames:
            sink.write_frames(frames)
            self.counters.increment("buffer.flushed", len(frames))

    def detach(self, sink: FrameSink) -> None:
        """``sink`` is no longer ready: keep frames until the next connection."""
        if self.sink is sink:
            self.sink = None
