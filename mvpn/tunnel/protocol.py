"""The HA-FA tunnel connection: framing, Hello, keepalives (draft section 8; docs/protocol.md
8.2).

One TCP connection per HA-FA pair, opened by the HA, carries the type-55 packets of every
mobile node of the pair as length-prefixed frames (``Frame Length (32) | Frame Type (8) |
Body``; :mod:`mvpn.wire.data` has the codecs). :class:`TunnelProtocol` is one end:

- **Hello.** The opener (the HA, which knows whom it dials) sends its Hello as soon as TCP is
  up; the accepting FA learns the HA's ID from that Hello, verifies it, then answers with its
  own (it cannot sign "ID of peer" before). Each end verifies the peer's signature
  ``sig_peer("tunnel-hello", my ID, bytes 5..22)`` with the peer's public keys (looked up by
  ID and role, possibly asynchronously), that the Role is the other end's, that the ID is the
  one dialled (HA side) and that the Timestamp is within :data:`HELLO_TIME_WINDOW` of the
  local clock. No valid Hello within :data:`HELLO_TIMEOUT` closes the connection.
  The Hello also carries this end's Session ID and how far it has received the peer's
  series; the pair's :class:`~mvpn.tunnel.buffer.TunnelSession` takes the peer's in and
  then writes every frame the peer does not have, oldest first.
- **Data.** Once the peer's Hello verified, each Data frame whose Sequence is the next
  expected goes to ``on_data(mn_addr, packet)`` with the MN ADDR as 4 packed bytes: no
  per-frame object, no per-frame log. An older Sequence (a frame resent after a
  reconnection) is dropped and counted (``frames.duplicate``); a later one (a gap) closes
  the connection (``frames.gap``): the next Hello resynchronises.
- **Ack.** The receiver acknowledges the highest Sequence delivered in order after
  :data:`ACK_EVERY` frames or :data:`ACK_DELAY` seconds, whichever first, and with every
  Keepalive; an Ack releases the sender's kept frames.
- **Keepalive.** Every :data:`KEEPALIVE_INTERVAL` each ready end sends a Keepalive; an end
  that has heard nothing for :data:`IDLE_INTERVALS` intervals closes the connection.
- **Bad input.** A Frame Length over :data:`~mvpn.wire.data.MAX_FRAME_BODY`, a frame that
  does not decode, a Hello after the first, a Data frame before it, or an Ack of a frame
  never sent: logged with the reason, counted, and the connection is closed (the stream
  cannot be resynchronised).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock, LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from mvpn.core.effects import Counters
from mvpn.crypto.errors import CryptoError
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.crypto.suite import sign, verify
from mvpn.tunnel.buffer import MAX_BUFFERED_BYTES, MAX_BUFFERED_FRAMES, TunnelSession
from mvpn.wire.data import (
    MAX_FRAME_BODY,
    MIN_DATA_PACKET,
    FrameType,
    TunnelAck,
    TunnelHello,
    TunnelKeepalive,
    TunnelRole,
    decode_frame_body,
)
from mvpn.wire.errors import WireError
from mvpn.wire.registration import Identification

__all__ = [
    "ACK_DELAY",
    "ACK_EVERY",
    "HELLO_TIMEOUT",
    "HELLO_TIME_WINDOW",
    "IDLE_INTERVALS",
    "KEEPALIVE_INTERVAL",
    "DataReceiver",
    "PeerKeyLookup",
    "SessionLookup",
    "TunnelIdentity",
    "TunnelProtocol",
    "TunnelRefused",
    "TunnelServerFactory",
    "encode_data_frame",
]

HELLO_TIMEOUT = 10.0
"""Seconds a connection may stay without a valid Hello from the peer (protocol.md 8.2)."""

HELLO_TIME_WINDOW = 30.0
"""How far a Hello's Timestamp may be from the local clock: the loose synchronisation the CN
request window also assumes (protocol.md 10); bounds how long a captured Hello replays."""

KEEPALIVE_INTERVAL = 10.0
"""Seconds between Keepalive frames on a ready connection."""

IDLE_INTERVALS = 3
"""Keepalive intervals without any frame from the peer before the connection is closed:
three lost keepalives (30 s) mean the peer or the path is gone."""

ACK_EVERY = 32
"""Data frames delivered before an Ack is sent at once: one Ack per 32 frames, not per frame,
yet far inside the sender's 1024-frame bound."""

ACK_DELAY = 0.05
"""Seconds after an unacknowledged delivery before an Ack goes anyway (a slow trickle must
not keep frames in the sender's buffer until the next keepalive)."""

MAX_EARLY_FRAMES = 1024
"""Frames that may arrive while the peer's Hello is still being verified (a key lookup in
flight): one reconnection buffer's worth (protocol.md 10); more closes the connection."""

_DATA = int(FrameType.DATA)
_DATA_PREFIX = struct.Struct("!IBQ")
_ACK = int(FrameType.ACK)
_SEQUENCE = struct.Struct("!Q")
_ACK_BODY_SIZE = 1 + _SEQUENCE.size
_KEEPALIVE_BODY = TunnelKeepalive().encode_body()
_KEEPALIVE_FRAME = TunnelKeepalive().encode()
_MIN_DATA_BODY = 1 + 8 + 4 + MIN_DATA_PACKET
_PEER_ROLE = {
    TunnelRole.HOME_AGENT: TunnelRole.FOREIGN_AGENT,
    TunnelRole.FOREIGN_AGENT: TunnelRole.HOME_AGENT,
}
_ID = struct.Struct("!Q")

DataReceiver = Callable[[bytes, bytes], None]
"""``on_data(mn_addr, packet)``: the MN ADDR as 4 packed bytes and the type-55 packet."""

SessionLookup = Callable[[int], TunnelSession]
"""The pair state for the peer ``node_id`` (created on first use), kept across connections."""

PeerKeyLookup = Callable[[int, TunnelRole], "PublicKeys | Deferred[PublicKeys]"]
"""The public keys of the node ``(node_id, role)`` (its certificate through the TC client or a
cache); fails (raises or errbacks) when the node is unknown, revoked or of another role."""


def encode_data_frame(sequence: int, mn_addr: bytes, packet: bytes) -> bytes:
    """The whole Data frame number ``sequence`` for ``packet`` (a type-55 packet) to the MN
    ``mn_addr`` (4 packed bytes): the same bytes as ``TunnelData(...).encode()``."""
    return _DATA_PREFIX.pack(13 + len(packet), _DATA, sequence) + mn_addr + packet


@dataclass(frozen=True)
class TunnelIdentity:
    """This end of the tunnel: its node ID, role and private keys (to sign the Hello)."""

    node_id: int
    role: TunnelRole
    keys: PrivateKeys

    def __repr__(self) -> str:
        return f"TunnelIdentity({self.node_id:#x}, {self.role.name})"


class TunnelRefused(Exception):
    """The peer's Hello was refused; the message says why (no key material in it)."""


class TunnelProtocol(Int32StringReceiver):
    """One end of an HA-FA tunnel connection (protocol.md 8.2).

    ``expected_peer`` is the ID this end dialled (the HA's side): it then speaks first. The
    accepting end (``expected_peer=None``) answers after verifying the opener's Hello.
    ``on_ready(protocol)`` runs once the peer's Hello verified (and this end's Hello is sent);
    ``on_lost(protocol)`` when the connection ends after that (or is closed by this end);
    ``on_failed(protocol)`` when it ends without ever being ready. ``sessions(peer_id)`` gives
    the pair's :class:`~mvpn.tunnel.buffer.TunnelSession` (by default one per protocol, for
    tests). ``counters`` (shared with the owner) counts ``hello.refused``, ``hello.timeout``,
    ``frames.oversize``, ``frames.malformed``, ``frames.duplicate``, ``frames.gap``,
    ``idle_closes``, ``connections.replaced``; per-frame numbers are the plain attributes
    ``frames_in`` and ``frames_out``.
    """

    MAX_LENGTH = MAX_FRAME_BODY
    log = Logger()

    def __init__(
        self,
        identity: TunnelIdentity,
        clock: IReactorTime | Clock,
        peer_keys: PeerKeyLookup,
        on_data: DataReceiver,
        *,
        expected_peer: int | None = None,
        on_ready: Callable[[TunnelProtocol], None] | None = None,
        on_lost: Callable[[TunnelProtocol], None] | None = None,
        on_failed: Callable[[TunnelProtocol], None] | None = None,
        counters: Counters | None = None,
        sessions: SessionLookup | None = None,
    ) -> None:
        self.identity = identity
        # Seen through task.Clock's methods: mypy cannot read zope interfaces' signatures.
        self.clock: Clock = cast(Clock, clock)
        self._peer_keys = peer_keys
        self._on_data = on_data
        self.expected_peer = expected_peer
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._on_failed = on_failed
        self.was_ready = False
        self.counters = counters if counters is not None else Counters()
        if sessions is None:
            own: dict[int, TunnelSession] = {}

            def sessions(peer_id: int) -> TunnelSession:
                if peer_id not in own:
                    own[peer_id] = TunnelSession(self.counters, f"{peer_id:#x}")
                return own[peer_id]

        self._sessions = sessions
        self.session: TunnelSession | None = None
        """The pair's state, once the peer is known (dialled, or its Hello verified)."""
        self._since_ack = 0
        self._ack_timer: Any = None  # an IDelayedCall while armed
        self.peer_id: int | None = None
        self.ready = False
        self.closed = False
        self.frames_in = 0
        self.frames_out = 0
        self._verifying = False
        self._early: list[bytes] = []
        self._heard = False
        self._silent_intervals = 0
        self._hello_timer: Any = None  # an IDelayedCall while armed
        self._keepalive: LoopingCall | None = None
        self._ready_waiters: list[Deferred[TunnelProtocol]] = []

    # --- lifecycle ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        # Frames are whole packets written as they come: Nagle's algorithm would hold a small
        # frame back for the peer's delayed ACK (tens of ms per round trip of a TCP stream
        # carried inside the tunnel).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self._hello_timer = self.clock.callLater(HELLO_TIMEOUT, self._hello_timed_out)
        if self.expected_peer is not None:
            self.session = self._sessions(self.expected_peer)
            self._send_hello(self.expected_peer)

    def connectionLost(self, reason: Failure | None = None) -> None:
        was_ready = self.ready
        self.closed = True
        self.ready = False
        self._cancel_timers()
        if self.session is not None:
            self.session.detach(self)
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.errback(TunnelRefused("connection closed before the Hello"))
        if was_ready:
            self.log.info(
                "tunnel to {peer_id:#x} down: {reason}",
                peer_id=self.peer_id,
                reason=reason.getErrorMessage() if reason is not None else "closed",
            )
            if self._on_lost is not None:
                self._on_lost(self)
        elif not self.was_ready and self._on_failed is not None:
            self._on_failed(self)

    def when_ready(self) -> Deferred[TunnelProtocol]:
        """Fires with this protocol once the peer's Hello verified; fails with
        :class:`TunnelRefused` if the connection ends first."""
        if self.ready:
            d: Deferred[TunnelProtocol] = Deferred()
            d.callback(self)
            return d
        if self.closed:
            d = Deferred()
            d.errback(TunnelRefused("connection already closed"))
            return d
        d = Deferred()
        self._ready_waiters.append(d)
        return d

    def close(self, counter: str, reason_format: str, **fields: Any) -> None:
        """Count ``counter``, log the reason (``reason_format`` over ``fields``) and close."""
        self.counters.increment(counter)
        self.log.warn(
            "tunnel connection with {peer} closed: " + reason_format,
            peer=self._tx.getPeer() if self.transport is not None else None,
            **fields,
        )
        self.closed = True
        self._unready()
        if self.transport is not None:
            self._tx.loseConnection()

    def _unready(self) -> None:
        # Tell the owner at once, not when TCP finishes closing: frames sent meanwhile must go
        # to its buffer, not to a transport that discards writes after loseConnection.
        if self.ready:
            self.ready = False
            self._cancel_timers()
            if self.session is not None:
                self.session.detach(self)
            if self._on_lost is not None:
                self._on_lost(self)

    def _cancel_timers(self) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        if self._ack_timer is not None and self._ack_timer.active():
            self._ack_timer.cancel()
        self._ack_timer = None

    def _hello_timed_out(self) -> None:
        self._hello_timer = None
        if not self.ready and not self.closed:
            self.close("hello.timeout", "no valid Hello within {timeout} s", timeout=HELLO_TIMEOUT)

    @property
    def _tx(self) -> Any:
        # The ITCPTransport (or a test's StringTransport) as Any: mypy cannot read zope
        # interface method signatures.
        return self.transport

    # --- sending -----------------------------------------------------------------------

    def _send_hello(self, peer_id: int) -> None:
        ident = self.identity
        session = self.session
        assert session is not None
        timestamp = Identification.from_unix_time(self.clock.seconds()).value
        fields = (
            ident.node_id,
            ident.role,
            timestamp,
            session.session_id,
            session.peer_session,
            session.next_expected,
        )
        signed = TunnelHello.signed_part_for(*fields)
        signature = sign(ident.keys, TunnelHello.SIGNATURE_LABEL, _ID.pack(peer_id), signed)
        self.sendString(TunnelHello(*fields, signature).encode_body())

    def send_data(self, mn_addr: bytes, packet: bytes) -> bool:
        """Accept one Data frame through the pair's session (written now when this connection
        is ready, kept otherwise); False when the session's bounds refused it."""
        session = self.session
        if session is None:
            raise TunnelRefused("no peer yet: the Hello has not verified")
        return session.send(mn_addr, packet)

    def write_frame(self, frame: bytes) -> None:
        """Write one whole, already numbered frame (called by the session)."""
        self.frames_out += 1
        self._tx.write(frame)

    def write_frames(self, frames: list[bytes]) -> None:
        """Write whole, already numbered frames in order (kept frames after a reconnection)."""
        self.frames_out += len(frames)
        self._tx.writeSequence(frames)

    def _send_ack(self) -> None:
        session = self.session
        assert session is not None
        self._since_ack = 0
        if self._ack_timer is not None:
            if self._ack_timer.active():
                self._ack_timer.cancel()
            self._ack_timer = None
        if session.next_expected:
            self._tx.write(TunnelAck(session.next_expected - 1).encode())

    def _ack_due(self) -> None:
        self._ack_timer = None
        if self.ready:
            self._send_ack()

    # --- receiving ---------------------------------------------------------------------

    def stringReceived(self, data: bytes) -> None:
        self._heard = True
        if self.ready:
            # The hot path: one type test, one length test and one Sequence test per frame.
            if len(data) >= _MIN_DATA_BODY and data[0] == _DATA:
                session = self.session
                assert session is not None
                sequence = _SEQUENCE.unpack_from(data, 1)[0]
                if sequence != session.next_expected and not self._out_of_line(sequence):
                    return
                session.next_expected = sequence + 1
                self.frames_in += 1
                self._on_data(data[9:13], data[13:])
                self._since_ack += 1
                if self._since_ack >= ACK_EVERY:
                    self._send_ack()
                elif self._ack_timer is None and self.ready:
                    self._ack_timer = self.clock.callLater(ACK_DELAY, self._ack_due)
            elif len(data) == _ACK_BODY_SIZE and data[0] == _ACK:
                acked = _SEQUENCE.unpack_from(data, 1)[0]
                assert self.session is not None
                if not self.session.acknowledge(acked):
                    self.close("frames.malformed", "Ack of {sequence}, never sent", sequence=acked)
            elif data != _KEEPALIVE_BODY:
                self._bad_frame(data, "after the Hello only Data, Ack and Keepalive frames")
            return
        if self._verifying:
            if len(self._early) >= MAX_EARLY_FRAMES:
                self.close("frames.malformed", "too many frames before the Hello verified")
                return
            self._early.append(data)
            return
        if self.closed:
            return
        try:
            frame = decode_frame_body(data)
        except WireError as e:
            self.close("frames.malformed", "{error}", error=str(e))
            return
        if not isinstance(frame, TunnelHello):
            self.close("frames.malformed", "the first frame must be a Hello")
            return
        self._verify_hello(frame)

    def _out_of_line(self, sequence: int) -> bool:
        """Whether a Data frame that is not the next expected is delivered anyway: only the
        first of an unknown series. Duplicates are dropped, a gap closes the connection."""
        session = self.session
        assert session is not None
        if session.next_expected == 0:
            return True
        if sequence < session.next_expected:
            self.counters.increment("frames.duplicate")
            return False
        self.close(
            "frames.gap",
            "Data Sequence {sequence}, expected {expected}",
            sequence=sequence,
            expected=session.next_expected,
        )
        return False

    def _bad_frame(self, data: bytes, rule: str) -> None:
        try:
            decode_frame_body(data)
        except WireError as e:
            self.close("frames.malformed", "{error}", error=str(e))
            return
        self.close("frames.malformed", "{rule}", rule=rule)

    def lengthLimitExceeded(self, length: int) -> None:
        self.close(
            "frames.oversize",
            "Frame Length {length} over {limit}",
            length=length,
            limit=self.MAX_LENGTH,
        )

    def _verify_hello(self, hello: TunnelHello) -> None:
        peer_role = _PEER_ROLE[self.identity.role]
        if hello.role != peer_role:
            self._refuse(f"Hello from a {hello.role!r}, expected {peer_role.name}")
            return
        if self.expected_peer is not None and hello.node_id != self.expected_peer:
            self._refuse(f"Hello from {hello.node_id:#x}, dialled {self.expected_peer:#x}")
            return
        skew = Identification.from_int(hello.timestamp).unix_time() - self.clock.seconds()
        if abs(skew) > HELLO_TIME_WINDOW:
            self._refuse(f"Hello timestamp {skew:+.0f} s from the local clock")
            return
        self._verifying = True
        # Stop reading while the key lookup runs; frames already buffered are queued.
        self._tx.pauseProducing()
        d = maybeDeferred(self._peer_keys, hello.node_id, peer_role)
        d.addCallbacks(self._check_signature, self._lookup_failed, callbackArgs=(hello,))

    def _lookup_failed(self, failure: Failure) -> None:
        self._verifying = False
        if self.closed:
            return
        self._refuse(f"no public keys for the peer: {failure.getErrorMessage()}")

    def _check_signature(self, keys: PublicKeys, hello: TunnelHello) -> None:
        self._verifying = False
        if self.closed:
            return
        try:
            verify(
                keys,
                TunnelHello.SIGNATURE_LABEL,
                hello.signature,
                _ID.pack(self.identity.node_id),
                hello.signed_part(),
            )
        except CryptoError as e:
            self._refuse(str(e))
            return
        self.peer_id = hello.node_id
        if self.session is None:
            self.session = self._sessions(hello.node_id)
        self.session.peer_hello(hello)
        if self.expected_peer is None:
            self._send_hello(hello.node_id)
        self._become_ready()

    def _refuse(self, why: str) -> None:
        self.close("hello.refused", "Hello refused: {why}", why=why)

    def _become_ready(self) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None
        self.ready = True
        self.was_ready = True
        self._tx.resumeProducing()
        self._keepalive = LoopingCall(self._tick)
        self._keepalive.clock = cast(Any, self.clock)
        self._keepalive.start(KEEPALIVE_INTERVAL, now=False)
        self.log.info(
            "tunnel to {peer_id:#x} ({role}) up", peer_id=self.peer_id, role=self.peer_role.name
        )
        assert self.session is not None
        # Replaces any older connection of the pair as the session's sink, then resends
        # what the peer does not have before anything new.
        self.session.attach(self)
        if self._on_ready is not None:
            self._on_ready(self)
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(self)
        early, self._early = self._early, []
        for data in early:
            if self.closed:
                break
            self.stringReceived(data)

    @property
    def peer_role(self) -> TunnelRole:
        """The role the peer must have."""
        return _PEER_ROLE[self.identity.role]

    def _tick(self) -> None:
        if self._heard:
            self._heard = False
            self._silent_intervals = 0
        else:
            self._silent_intervals += 1
            if self._silent_intervals >= IDLE_INTERVALS:
                self.close(
                    "idle_closes",
                    "nothing heard for {seconds} s",
                    seconds=IDLE_INTERVALS * KEEPALIVE_INTERVAL,
                )
                return
        self._tx.write(_KEEPALIVE_FRAME)
        self._send_ack()


class TunnelServerFactory(Factory):
    """The accepting end (the FA, protocol.md 8.2): one ready connection per HA.

    Frames to an HA go through :meth:`send_data` into that HA's
    :class:`~mvpn.tunnel.buffer.TunnelSession` (only for an HA that was connected before):
    written when its connection is ready, kept until acknowledged. A second connection from
    the same HA replaces the first (the HA redialled before this end saw the old one die).
    """

    log = Logger()
    noisy = False  # the listener logs that the tunnel port is open; "Starting factory" is noise

    def __init__(
        self,
        identity: TunnelIdentity,
        clock: IReactorTime | Clock,
        peer_keys: PeerKeyLookup,
        on_data: DataReceiver,
        *,
        counters: Counters | None = None,
        max_frames: int = MAX_BUFFERED_FRAMES,
        max_bytes: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self.identity = identity
        self.clock = clock
        self.peer_keys = peer_keys
        self.on_data = on_data
        self.counters = counters if counters is not None else Counters()
        self.connections: dict[int, TunnelProtocol] = {}
        self.sessions: dict[int, TunnelSession] = {}
        """Each HA's pair state, from its first verified Hello on."""
        self._max_frames = max_frames
        self._max_bytes = max_bytes

    def buildProtocol(self, addr: Any) -> TunnelProtocol:
        return TunnelProtocol(
            self.identity,
            self.clock,
            self.peer_keys,
            self.on_data,
            on_ready=self._ready,
            on_lost=self._lost,
            counters=self.counters,
            sessions=self._session,
        )

    def _session(self, peer_id: int) -> TunnelSession:
        session = self.sessions.get(peer_id)
        if session is None:
            session = TunnelSession(
                self.counters, f"{peer_id:#x}", self._max_frames, self._max_bytes
            )
            self.sessions[peer_id] = session
        return session

    def _ready(self, protocol: TunnelProtocol) -> None:
        peer = protocol.peer_id
        assert peer is not None
        old = self.connections.get(peer)
        if old is not None and old is not protocol:
            self.log.info("tunnel from {peer_id:#x} replaced by a new connection", peer_id=peer)
            old.close("connections.replaced", "replaced by a newer connection from the same peer")
        self.connections[peer] = protocol

    def _lost(self, protocol: TunnelProtocol) -> None:
        peer = protocol.peer_id
        if peer is not None and self.connections.get(peer) is protocol:
            del self.connections[peer]

    def send_data(self, peer_id: int, mn_addr: bytes, packet: bytes) -> bool:
        """Send a Data frame to the HA ``peer_id``; False (counted, logged) when it is not
        accepted: the HA never connected, or its session's bounds are reached."""
        session = self.sessions.get(peer_id)
        if session is None:
            self.counters.increment("frames.no_tunnel")
            return False
        return session.send(mn_addr, packet)
