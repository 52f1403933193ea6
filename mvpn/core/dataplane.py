"""The data plane: type-55 packets sealed, forwarded and opened (draft 3.5.1; docs/protocol.md
8.1, 10 and 11).

Sans-IO: no Twisted, no clock read. Each node keeps a :class:`DataPlane`, a table mapping a
data SPI to its :class:`DataSession`. Two processors work on that table:

- :class:`Endpoint` (MN or CN): :meth:`Endpoint.seal` turns an inner packet into a type-55
  packet with Hop 0; :meth:`Endpoint.open` checks one and returns the inner packet;
- :class:`Relay` (HA or FA): :meth:`Relay.forward` checks a packet and returns it with
  Hop + 1 and a new hop tag. A relay holds the data authentication key only: it can filter
  but never read (protocol.md 11).

Every receiver checks, cheapest first (protocol.md 8.1): type, length, code points, SPI,
direction, the replay window, Hop, then the hop tag; only after the tag verified does the
window move; endpoints decrypt last. Each refusal is one :class:`DataDrop` subclass whose
``reason`` names the counter (``drops.<reason>``) the plane increments before raising.

Hop values (Hop is 0 at the originator and +1 at each agent): towards the MN the CN sends 0,
the HA forwards 1, the FA forwards 2; from the MN the MN sends 0, the FA forwards 1, the HA
forwards 2. :data:`EXPECTED_HOP` is what each node accepts.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from mvpn.core.effects import Counters
from mvpn.crypto.aead import AEAD_TAG_SIZE, DataCipher
from mvpn.crypto.auth import HopAuthenticator
from mvpn.crypto.errors import DecryptionError
from mvpn.crypto.negotiation import check_encr_code
from mvpn.crypto.replay import ReplayError, ReplayReason, ReplayWindow
from mvpn.wire.codes import AuthSecPar, EncrSecPar
from mvpn.wire.data import (
    DATA_HEADER_SIZE,
    DATA_PACKET_TYPE,
    FLAG_FROM_MN,
    HOP_TAG_SIZE,
    MIN_DATA_PACKET,
    additional_data,
    data_header,
    forward,
    hop_authenticated_part,
)

__all__ = [
    "DATA_KEY_LIFETIME",
    "EXPECTED_HOP",
    "BadCodePoint",
    "BadHop",
    "BadTag",
    "DataDrop",
    "DataPlane",
    "DataSession",
    "DecryptFailed",
    "Endpoint",
    "MalformedPacket",
    "NoCipher",
    "NodeKind",
    "Relay",
    "Replayed",
    "SequenceExhausted",
    "TooFarAhead",
    "TooOld",
    "UnknownSpi",
    "WrongDirection",
]

DATA_KEY_LIFETIME = 3600.0
"""Seconds a data session's keys live (protocol.md 10); then the CN repeats section 7."""

MAX_SEQUENCE = (1 << 64) - 1
"""The Sequence Number is 64 bits; a session that reached it seals nothing more."""

_HEADER = struct.Struct("!BBHBBBBIQ")
"""The 20-byte header of protocol.md 8.1, the same layout as ``mvpn.wire.data``'s: unpacked
here in one call so that forwarding needs no :class:`~mvpn.wire.data.DataPacket` object."""

_AUTH = int(AuthSecPar.HMAC_SHA256_128)
_ENCRS = frozenset({int(EncrSecPar.AES_256_GCM), int(EncrSecPar.CHACHA20_POLY1305)})


class NodeKind(enum.Enum):
    """Which node a :class:`DataPlane` belongs to."""

    MN = "mn"
    FA = "fa"
    HA = "ha"
    CN = "cn"


EXPECTED_HOP: dict[tuple[NodeKind, bool], int] = {
    (NodeKind.HA, False): 0,
    (NodeKind.HA, True): 1,
    (NodeKind.FA, False): 1,
    (NodeKind.FA, True): 0,
    (NodeKind.MN, False): 2,
    (NodeKind.CN, True): 2,
}
"""(node, D flag) -> the Hop a received packet must carry. Absent pairs are never received
(an MN never receives a packet from the MN)."""


# --- drops ---------------------------------------------------------------------------------


class DataDrop(Exception):
    """A data packet refused by a check of protocol.md 8.1.

    ``reason`` is stable and names the counter ``drops.<reason>``. The message is built only
    when someone reads it, so a flood of bad packets costs no string formatting.
    """

    reason: ClassVar[str] = "drop"

    def __init__(self, spi: int | None = None, sequence: int | None = None) -> None:
        super().__init__(spi, sequence)
        self.spi = spi
        self.sequence = sequence

    @property
    def counter(self) -> str:
        """The counter this drop increments."""
        return "drops." + self.reason

    def __str__(self) -> str:
        where = "" if self.spi is None else f" (SPI {self.spi}, sequence {self.sequence})"
        return f"data packet dropped: {self.reason}{where}"


class MalformedPacket(DataDrop):
    """Too short, not type 55, Length not the packet's length, or Flags/Reserved not 0."""

    reason = "malformed"


class BadCodePoint(DataDrop):
    """Auth or Encr Sec Par not what mvpn uses, or not the session's."""

    reason = "bad-code-point"


class UnknownSpi(DataDrop):
    """No data session with this SPI (never installed, removed or expired)."""

    reason = "unknown-spi"


class WrongDirection(DataDrop):
    """The D flag disagrees with where the packet came from."""

    reason = "wrong-direction"


class Replayed(DataDrop):
    """A sequence number already accepted in this direction."""

    reason = "replay"


class TooOld(DataDrop):
    """A sequence number behind the replay window (or 0)."""

    reason = "too-old"


class TooFarAhead(DataDrop):
    """A sequence number further ahead than the window's ``max_jump``."""

    reason = "too-far-ahead"


class BadHop(DataDrop):
    """Hop is not the value this node expects for the direction."""

    reason = "bad-hop"


class BadTag(DataDrop):
    """The hop authenticator does not verify: forged or damaged."""

    reason = "bad-tag"


class NoCipher(DataDrop):
    """An endpoint was asked to open a packet of a session it holds no decryption key for."""

    reason = "no-cipher"


class DecryptFailed(DataDrop):
    """The end-to-end AEAD refused the ciphertext."""

    reason = "decrypt"


_REPLAY_DROPS: dict[ReplayReason, type[DataDrop]] = {
    ReplayReason.DUPLICATE: Replayed,
    ReplayReason.TOO_OLD: TooOld,
    ReplayReason.TOO_FAR_AHEAD: TooFarAhead,
}


class SequenceExhausted(Exception):
    """The session sealed 2**64 - 1 packets: its keys must be replaced (never reuse a nonce)."""


# --- sessions and the table ----------------------------------------------------------------


@dataclass(eq=False)
class DataSession:
    """One data SA at one node (protocol.md 8.1, 11).

    ``auth`` is the hop authenticator (Data Auth Key); every node holds it. ``to_mn`` and
    ``from_mn`` are the replay windows of the two directions. ``send`` and ``receive`` are the
    end-to-end ciphers, present only at the MN and the CN; ``next_sequence`` is the number the
    endpoint seals with next. ``mn_addr`` (the MN's home address) and ``cn_addr`` (the CN's
    address) route the session's packets: the HA finds the MN's binding and the CN, the FA
    its visitor and the HA, the MN and the CN their peer. Build one with :meth:`for_relay`,
    :meth:`for_mn` or :meth:`for_cn`.
    """

    spi: int
    auth: HopAuthenticator
    encr_sec_par: EncrSecPar
    expires_at: float
    send: DataCipher | None = None
    receive: DataCipher | None = None
    next_sequence: int = 1
    to_mn: ReplayWindow = field(default_factory=ReplayWindow)
    from_mn: ReplayWindow = field(default_factory=ReplayWindow)
    mn_addr: ipaddress.IPv4Address | None = None
    cn_addr: ipaddress.IPv4Address | None = None
    also_accepted: frozenset[int] = frozenset()
    """Further Encr Sec Par code points a relay passes: the HA never learns which of the
    CN's offered ciphers the MN chose (only Z and L carry it), so it accepts each of them."""

    @classmethod
    def for_relay(
        cls,
        spi: int,
        data_auth_key: bytes,
        encr_sec_par: EncrSecPar,
        now: float,
        lifetime: float = DATA_KEY_LIFETIME,
        *,
        mn_addr: ipaddress.IPv4Address | None = None,
        cn_addr: ipaddress.IPv4Address | None = None,
        also_accept: Iterable[EncrSecPar] = (),
    ) -> DataSession:
        """The HA's or the FA's session: the authentication key only, no cipher.

        ``encr_sec_par`` is the negotiated cipher (checked like the endpoints', so a relay
        never passes packets of a broken one); ``also_accept`` are further ciphers the relay
        passes when it cannot know which one the endpoints chose (the HA)."""
        return cls(
            spi,
            HopAuthenticator(data_auth_key),
            check_encr_code(encr_sec_par),
            now + lifetime,
            mn_addr=mn_addr,
            cn_addr=cn_addr,
            also_accepted=frozenset(int(check_encr_code(e)) for e in also_accept),
        )

    @classmethod
    def for_mn(
        cls,
        spi: int,
        data_auth_key: bytes,
        encr_sec_par: EncrSecPar,
        mn_to_cn: bytes,
        cn_to_mn: bytes,
        now: float,
        lifetime: float = DATA_KEY_LIFETIME,
        next_sequence: int = 1,
        *,
        mn_addr: ipaddress.IPv4Address | None = None,
        cn_addr: ipaddress.IPv4Address | None = None,
    ) -> DataSession:
        """The MN's session: seals with the MN -> CN key, opens with the CN -> MN key."""
        return cls(
            spi,
            HopAuthenticator(data_auth_key),
            check_encr_code(encr_sec_par),
            now + lifetime,
            send=DataCipher(encr_sec_par, mn_to_cn),
            receive=DataCipher(encr_sec_par, cn_to_mn),
            next_sequence=next_sequence,
            mn_addr=mn_addr,
            cn_addr=cn_addr,
        )

    @classmethod
    def for_cn(
        cls,
        spi: int,
        data_auth_key: bytes,
        encr_sec_par: EncrSecPar,
        mn_to_cn: bytes,
        cn_to_mn: bytes,
        now: float,
        lifetime: float = DATA_KEY_LIFETIME,
        next_sequence: int = 1,
        *,
        mn_addr: ipaddress.IPv4Address | None = None,
        cn_addr: ipaddress.IPv4Address | None = None,
    ) -> DataSession:
        """The CN's session: seals with the CN -> MN key, opens with the MN -> CN key."""
        return cls(
            spi,
            HopAuthenticator(data_auth_key),
            check_encr_code(encr_sec_par),
            now + lifetime,
            send=DataCipher(encr_sec_par, cn_to_mn),
            receive=DataCipher(encr_sec_par, mn_to_cn),
            next_sequence=next_sequence,
            mn_addr=mn_addr,
            cn_addr=cn_addr,
        )

    def window(self, from_mn: bool) -> ReplayWindow:
        """The replay window of one direction."""
        return self.from_mn if from_mn else self.to_mn

    def __repr__(self) -> str:
        cipher = "endpoint" if self.receive is not None else "relay"
        return f"<DataSession SPI {self.spi} {cipher} {self.encr_sec_par.name}>"


class DataPlane:
    """A node's table of data sessions, SPI -> :class:`DataSession`, with its counters.

    Counters: ``sealed.packets``/``sealed.bytes`` (inner bytes), ``forwarded.packets``/
    ``forwarded.bytes``, ``opened.packets``/``opened.bytes`` (inner bytes),
    ``drops.<reason>``, ``sessions.installed``/``sessions.removed``/``sessions.expired``.
    Expiry is the shell's timer: it calls :meth:`expire` at :meth:`next_expiry`.
    """

    def __init__(self, kind: NodeKind) -> None:
        self.kind = kind
        self.sessions: dict[int, DataSession] = {}
        self.counters = Counters()

    def install(self, session: DataSession) -> None:
        """Add ``session``, replacing any session with its SPI (a refreshed key)."""
        self.sessions[session.spi] = session
        self.counters.increment("sessions.installed")

    def remove(self, spi: int) -> DataSession | None:
        """Remove and return the session ``spi``; None when there is none."""
        session = self.sessions.pop(spi, None)
        if session is not None:
            self.counters.increment("sessions.removed")
        return session

    def get(self, spi: int) -> DataSession | None:
        """The session ``spi``, or None."""
        return self.sessions.get(spi)

    def expire(self, now: float) -> list[int]:
        """Remove every session whose keys expired at or before ``now``; their SPIs."""
        gone = [spi for spi, s in self.sessions.items() if s.expires_at <= now]
        for spi in gone:
            del self.sessions[spi]
        if gone:
            self.counters.increment("sessions.expired", len(gone))
        return gone

    def next_expiry(self) -> float | None:
        """When the next session expires; None when the table is empty."""
        return min((s.expires_at for s in self.sessions.values()), default=None)

    def __len__(self) -> int:
        return len(self.sessions)

    def __iter__(self) -> Iterator[DataSession]:
        return iter(list(self.sessions.values()))

    def _check(self, packet: bytes, from_mn: bool) -> tuple[DataSession, int, ReplayWindow]:
        """Every check of protocol.md 8.1 up to the hop tag; returns the session, the
        sequence number and the window to move once the caller accepts the packet."""
        n = len(packet)
        if n < MIN_DATA_PACKET:
            raise MalformedPacket()
        type_, hop, length, auth, encr, flags, reserved, spi, seq = _HEADER.unpack_from(packet)
        if type_ != DATA_PACKET_TYPE or length != n or flags & ~FLAG_FROM_MN or reserved:
            raise MalformedPacket(spi, seq)
        if auth != _AUTH or encr not in _ENCRS:
            raise BadCodePoint(spi, seq)
        session = self.sessions.get(spi)
        if session is None:
            raise UnknownSpi(spi, seq)
        if encr != session.encr_sec_par and encr not in session.also_accepted:
            raise BadCodePoint(spi, seq)
        if bool(flags) is not from_mn:
            raise WrongDirection(spi, seq)
        window = session.from_mn if from_mn else session.to_mn
        try:
            window.check(seq)
        except ReplayError as e:
            raise _REPLAY_DROPS[e.reason](spi, seq) from None
        if hop != EXPECTED_HOP.get((self.kind, from_mn)):
            raise BadHop(spi, seq)
        if not hmac.compare_digest(
            session.auth.tag(hop_authenticated_part(packet)), packet[-HOP_TAG_SIZE:]
        ):
            raise BadTag(spi, seq)
        return session, seq, window


class Relay:
    """The HA's or the FA's forwarding step (draft 3.5.1: "modifying the authentication
    value"; protocol.md 8.1)."""

    def __init__(self, plane: DataPlane) -> None:
        if plane.kind not in (NodeKind.HA, NodeKind.FA):
            raise ValueError(f"a relay runs at an HA or an FA, not at a {plane.kind.name}")
        self.plane = plane
        self._counters = plane.counters

    def forward(self, packet: bytes, from_mn: bool) -> bytes:
        """Check ``packet`` (``from_mn``: it arrived from the MN's side) and return it with
        Hop + 1 and a new hop tag; :class:`DataDrop` (already counted) if refused."""
        try:
            session, seq, window = self.plane._check(packet, from_mn)
        except DataDrop as drop:
            self._counters.increment(drop.counter)
            raise
        window.update(seq)
        out = forward(packet, packet[1] + 1, session.auth.tag)
        self._counters.increment("forwarded.packets")
        self._counters.increment("forwarded.bytes", len(out))
        return out


class Endpoint:
    """The MN's or the CN's end of the data flow: seals and opens (protocol.md 8.1)."""

    def __init__(self, plane: DataPlane) -> None:
        if plane.kind not in (NodeKind.MN, NodeKind.CN):
            raise ValueError(f"an endpoint is an MN or a CN, not an {plane.kind.name}")
        self.plane = plane
        self._from_mn = plane.kind is NodeKind.MN
        self._counters = plane.counters

    def seal(self, spi: int, inner_packet: bytes) -> bytes:
        """The type-55 packet (Hop 0) carrying ``inner_packet`` on the session ``spi``.

        :class:`UnknownSpi` (not counted as a drop: nothing was received) when there is no
        such session, :class:`NoCipher` when it holds no key to seal with,
        :class:`SequenceExhausted` when its sequence numbers are used up.
        """
        session = self.plane.sessions.get(spi)
        if session is None:
            raise UnknownSpi(spi)
        cipher = session.send
        if cipher is None:
            raise NoCipher(spi)
        seq = session.next_sequence
        if seq > MAX_SEQUENCE:
            raise SequenceExhausted(f"data session {spi} has used every sequence number")
        session.next_sequence = seq + 1
        header = data_header(
            0,
            _AUTH,
            session.encr_sec_par,
            self._from_mn,
            spi,
            seq,
            len(inner_packet) + AEAD_TAG_SIZE,
        )
        body = header + cipher.encrypt(seq, additional_data(header), inner_packet)
        self._counters.increment("sealed.packets")
        self._counters.increment("sealed.bytes", len(inner_packet))
        return body + session.auth.tag(body)

    def open(self, packet: bytes) -> bytes:
        """Check and decrypt a packet from the peer endpoint; its inner packet.

        :class:`DataDrop` (already counted) if refused. The replay window moves once the hop
        tag verified, before decryption, as protocol.md 8.1 orders it.
        """
        try:
            session, seq, window = self.plane._check(packet, not self._from_mn)
            cipher = session.receive
            if cipher is None:
                raise NoCipher(session.spi, seq)
            window.update(seq)
            try:
                inner = cipher.decrypt(
                    seq, additional_data(packet), packet[DATA_HEADER_SIZE:-HOP_TAG_SIZE]
                )
            except DecryptionError:
                raise DecryptFailed(session.spi, seq) from None
        except DataDrop as drop:
            self._counters.increment(drop.counter)
            raise
        self._counters.increment("opened.packets")
        self._counters.increment("opened.bytes", len(inner))
        return inner
