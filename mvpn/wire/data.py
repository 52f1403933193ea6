"""The data flow: the type-55 data packet and the HA-FA tunnel frames (draft 3.5.1, 8;
docs/protocol.md 8).

Data packet (8.1), 20-byte header then ciphertext then hop tag::

    0   Type = 55         1  Hop            2  Length (16): the whole packet
    4   Auth Sec Par      5  Encr Sec Par   6  Flags (bit 0, value 0x01: D)   7  Reserved
    8   SPI (32)          12 Sequence Number (64)
    20  Ciphertext        L-16  Hop Authenticator (16)

Two ways to use it. :class:`DataPacket` is the value (decode once, one precompiled
``struct.Struct`` for the header, no per-field checks beyond the protocol's). The module
functions work on the packet bytes directly for the forwarding hot loop, where an agent
checks the hop tag and re-authenticates with a new Hop without decoding or re-encoding:

- :func:`hop_authenticated_part` — bytes ``0..L-16``, what the received hop tag covers;
- :func:`hop_part_with` — the same bytes with a new Hop, what the agent's new tag covers;
- :func:`forward` — both steps: the packet to send, given a function computing the tag;
- :func:`additional_data` — byte 0 and bytes ``2..20``, the end-to-end AEAD's additional data;
- :func:`data_header` and :func:`aead_nonce` — what the originator needs before it encrypts.

Tunnel frames (8.2): ``Frame Length (32) | Frame Type (8) | Body`` on the HA-FA TCP
connection; :class:`TunnelHello`, :class:`TunnelData`, :class:`TunnelKeepalive`,
:class:`TunnelAck`.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from mvpn.wire._fields import (
    SIGNATURE_SIZE,
    U64,
    check_code,
    check_ipv4,
    check_size,
    check_uint,
    raw_field,
)
from mvpn.wire.codes import AuthSecPar, EncrSecPar, lookup
from mvpn.wire.errors import BadValueError, LengthError, UnknownTypeError
from mvpn.wire.reader import Reader

__all__ = [
    "DATA_HEADER_SIZE",
    "DATA_PACKET_TYPE",
    "FLAG_FROM_MN",
    "HOP_TAG_SIZE",
    "MAX_FRAME_BODY",
    "MIN_DATA_PACKET",
    "DataPacket",
    "FrameType",
    "TunnelAck",
    "TunnelData",
    "TunnelFrame",
    "TunnelHello",
    "TunnelKeepalive",
    "TunnelRole",
    "additional_data",
    "aead_nonce",
    "data_header",
    "decode_frame",
    "decode_frame_body",
    "forward",
    "hop_authenticated_part",
    "hop_part_with",
]

DATA_PACKET_TYPE = 55
DATA_HEADER_SIZE = 20
HOP_TAG_SIZE = 16
"""HMAC-SHA256-128 hop authenticator (docs/protocol.md 8.1)."""
MIN_DATA_PACKET = DATA_HEADER_SIZE + HOP_TAG_SIZE
"""Header and hop tag around an empty ciphertext; the AEAD tag makes real packets longer."""
MAX_DATA_PACKET = 0xFFFF
"""The 16-bit Length field."""
FLAG_FROM_MN = 0x01
"""Flags bit 0 (the least significant, as Sec Par bits are numbered): D = 1 from the MN."""

_HEADER = struct.Struct("!BBHBBBBIQ")
_AUTH_BY_VALUE = {int(m): m for m in AuthSecPar}
_ENCR_BY_VALUE = {int(m): m for m in EncrSecPar}
_NONCE_PREFIX = bytes(4)


def data_header(
    hop: int,
    auth_sec_par: AuthSecPar | int,
    encr_sec_par: EncrSecPar | int,
    from_mn: bool,
    spi: int,
    sequence: int,
    ciphertext_length: int,
) -> bytes:
    """The 20-byte header of a packet whose ciphertext will be ``ciphertext_length`` bytes.

    The originator computes ``additional_data(header)``, encrypts, then sends ``header +
    ciphertext + tag`` with the tag over ``header + ciphertext``.
    """
    length = MIN_DATA_PACKET + ciphertext_length
    if ciphertext_length < 0 or length > MAX_DATA_PACKET:
        raise LengthError(
            "data packet",
            f"at most {MAX_DATA_PACKET - MIN_DATA_PACKET} ciphertext bytes",
            f"{ciphertext_length}",
        )
    flags = FLAG_FROM_MN if from_mn else 0
    try:
        return _HEADER.pack(
            DATA_PACKET_TYPE,
            hop,
            length,
            int(auth_sec_par),
            int(encr_sec_par),
            flags,
            0,
            spi,
            sequence,
        )
    except struct.error as e:
        raise BadValueError("data packet header", "fields that fit", str(e)) from None


def additional_data(packet: bytes) -> bytes:
    """Byte 0 and bytes ``2..20`` of a packet or header: the end-to-end AEAD's additional
    data (everything in the header but Hop)."""
    return packet[0:1] + packet[2:DATA_HEADER_SIZE]


def aead_nonce(sequence: int) -> bytes:
    """The 12-byte AEAD nonce: 32 zero bits then the 64-bit Sequence Number (8.1)."""
    return _NONCE_PREFIX + U64.pack(sequence)


def hop_authenticated_part(packet: bytes) -> bytes:
    """Bytes ``0..L-16``: what the packet's hop authenticator covers."""
    return packet[:-HOP_TAG_SIZE]


def hop_part_with(packet: bytes, hop: int) -> bytes:
    """Bytes ``0..L-16`` of ``packet`` with Hop set to ``hop``: what an agent's new hop tag
    covers. The packet it forwards is this followed by that tag (see :func:`forward`)."""
    return packet[0:1] + bytes((hop,)) + packet[2:-HOP_TAG_SIZE]


def forward(packet: bytes, hop: int, tag_for: Callable[[bytes], bytes]) -> bytes:
    """The re-authenticated packet an agent sends: Hop set to ``hop`` and a new hop tag.

    ``tag_for`` computes the 16-byte tag over the bytes it is given (HMAC-SHA256-128 with
    the Data Auth Key). The caller has already checked the received packet.
    """
    part = hop_part_with(packet, hop)
    return part + tag_for(part)


@dataclass(frozen=True)
class DataPacket:
    """A type-55 data packet (draft 3.5.1; docs/protocol.md 8.1).

    ``from_mn`` is the D flag. ``ciphertext`` is the AEAD output (it includes the AEAD's own
    tag); ``tag`` is the hop authenticator. Fields are checked when encoding, not when
    building, to keep decoding cheap.
    """

    TYPE: ClassVar[int] = DATA_PACKET_TYPE

    hop: int
    auth_sec_par: AuthSecPar | int
    encr_sec_par: EncrSecPar | int
    from_mn: bool
    spi: int
    sequence: int
    ciphertext: bytes
    tag: bytes
    raw: bytes | None = raw_field()

    def header(self) -> bytes:
        """The 20-byte header."""
        return data_header(
            self.hop,
            self.auth_sec_par,
            self.encr_sec_par,
            self.from_mn,
            self.spi,
            self.sequence,
            len(self.ciphertext),
        )

    def encode(self) -> bytes:
        """The packet bytes."""
        check_size("data packet", "hop authenticator", self.tag, (HOP_TAG_SIZE,))
        return self.header() + self.ciphertext + self.tag

    def additional_data(self) -> bytes:
        """The AEAD additional data: byte 0 and bytes ``2..20``."""
        return additional_data(self.raw or self.header())

    def hop_authenticated_part(self) -> bytes:
        """Bytes ``0..L-16`` (as received, when decoded)."""
        if self.raw is not None:
            return self.raw[:-HOP_TAG_SIZE]
        return self.header() + self.ciphertext

    @classmethod
    def decode(cls, packet: bytes | bytearray | memoryview) -> DataPacket:
        """Parse one packet: Type 55, Length equal to the packet length, Flags other than D
        and Reserved zero; unknown code points stay plain ints (refused by policy)."""
        data = packet if isinstance(packet, bytes) else bytes(packet)
        n = len(data)
        if n < MIN_DATA_PACKET:
            raise LengthError("data packet", f"at least {MIN_DATA_PACKET} bytes", f"{n}")
        type_, hop, length, auth, encr, flags, reserved, spi, sequence = _HEADER.unpack_from(data)
        if type_ != DATA_PACKET_TYPE:
            raise UnknownTypeError("data packet Type", str(DATA_PACKET_TYPE), str(type_), 0)
        if length != n:
            raise LengthError("data packet Length", f"the packet length {n}", str(length), 2)
        if flags & ~FLAG_FROM_MN:
            raise BadValueError("data packet Flags", "only bit 0 (D)", f"{flags:#04x}", 6)
        if reserved:
            raise BadValueError("data packet Reserved", "0", str(reserved), 7)
        return cls(
            hop,
            _AUTH_BY_VALUE.get(auth, auth),
            _ENCR_BY_VALUE.get(encr, encr),
            bool(flags),
            spi,
            sequence,
            data[DATA_HEADER_SIZE:-HOP_TAG_SIZE],
            data[-HOP_TAG_SIZE:],
            raw=data,
        )


# --- HA-FA tunnel frames (docs/protocol.md 8.2) -----------------------------------------

MAX_FRAME_BODY = 1 + 8 + 4 + MAX_DATA_PACKET
"""Frame Type, Sequence, MN ADDR and the largest type-55 packet: the largest Frame Length."""

_FRAME_PREFIX = struct.Struct("!IB")
_HELLO = struct.Struct("!QBQQQQ")
_DATA_FIELDS = struct.Struct("!Q4s")


class FrameType(enum.IntEnum):
    """Tunnel frame types (docs/protocol.md 8.2)."""

    HELLO = 1
    DATA = 2
    KEEPALIVE = 3
    ACK = 4


class TunnelRole(enum.IntEnum):
    """The Role byte of a tunnel Hello: which end of the HA-FA pair the sender is."""

    HOME_AGENT = 1
    FOREIGN_AGENT = 2


def _frame(type_: int, body: bytes) -> bytes:
    return _FRAME_PREFIX.pack(1 + len(body), type_) + body


@dataclass(frozen=True)
class TunnelHello:
    """The first frame each end sends (docs/protocol.md 8.2).

    ``Node ID (64) | Role (8) | Timestamp (64, NTP) | Session ID (64) | Peer Session ID (64)
    | Next Expected (64) | sig_node("tunnel-hello", ID of peer, bytes 5..46)``.

    ``session`` is the sender's random, non-zero series identifier (a restarted process picks
    a new one); ``next_expected`` is the next Data Sequence the sender expects from the peer's
    series ``peer_session`` (0 when it knows none of the peer's series).
    """

    FRAME_TYPE: ClassVar[int] = FrameType.HELLO
    SIGNATURE_LABEL: ClassVar[str] = "tunnel-hello"

    node_id: int
    role: TunnelRole | int
    timestamp: int
    session: int
    peer_session: int
    next_expected: int
    signature: bytes
    raw: bytes | None = raw_field()
    """When decoded: the frame body (from Frame Type on), as received."""

    def __post_init__(self) -> None:
        check_uint("tunnel Hello", "Node ID", self.node_id, 64)
        check_code("tunnel Hello", "Role", self.role, 8)
        check_uint("tunnel Hello", "Timestamp", self.timestamp, 64)
        check_uint("tunnel Hello", "Session ID", self.session, 64)
        check_uint("tunnel Hello", "Peer Session ID", self.peer_session, 64)
        check_uint("tunnel Hello", "Next Expected", self.next_expected, 64)
        check_size("tunnel Hello", "signature", self.signature, (SIGNATURE_SIZE,))

    @staticmethod
    def signed_part_for(
        node_id: int,
        role: TunnelRole | int,
        timestamp: int,
        session: int,
        peer_session: int,
        next_expected: int,
    ) -> bytes:
        """Bytes 5..46 of the frame (every field but the signature), before the signature
        exists; the peer's ID is the signature's other part."""
        return _HELLO.pack(node_id, int(role), timestamp, session, peer_session, next_expected)

    def signed_part(self) -> bytes:
        """Bytes 5..46 of the frame: every field but the signature."""
        return self.signed_part_for(
            self.node_id,
            self.role,
            self.timestamp,
            self.session,
            self.peer_session,
            self.next_expected,
        )

    def encode_body(self) -> bytes:
        """Frame Type and body: what follows the Frame Length."""
        return bytes((self.FRAME_TYPE,)) + self.signed_part() + self.signature

    def encode(self) -> bytes:
        """The whole frame."""
        return _frame(self.FRAME_TYPE, self.signed_part() + self.signature)


@dataclass(frozen=True)
class TunnelData:
    """A data frame: its Sequence (64), the MN's home address, then a type-55 packet
    (docs/protocol.md 8.2). Sequences number the sender's series from 1, across reconnections.

    ``packet`` is kept as bytes: the receiving agent checks and re-authenticates it with the
    module functions above without decoding it.
    """

    FRAME_TYPE: ClassVar[int] = FrameType.DATA

    sequence: int
    mn_addr: ipaddress.IPv4Address
    packet: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_uint("tunnel Data", "Sequence", self.sequence, 64)
        check_ipv4("tunnel Data", "MN ADDR", self.mn_addr)
        if not isinstance(self.packet, bytes):
            raise BadValueError("tunnel Data packet", "bytes", type(self.packet).__name__)
        if not MIN_DATA_PACKET <= len(self.packet) <= MAX_DATA_PACKET:
            raise LengthError(
                "tunnel Data packet",
                f"{MIN_DATA_PACKET} to {MAX_DATA_PACKET} bytes",
                f"{len(self.packet)}",
            )

    def encode_body(self) -> bytes:
        """Frame Type and body: what follows the Frame Length."""
        return bytes((self.FRAME_TYPE,)) + self._fields()

    def encode(self) -> bytes:
        """The whole frame."""
        return _frame(self.FRAME_TYPE, self._fields())

    def _fields(self) -> bytes:
        return _DATA_FIELDS.pack(self.sequence, self.mn_addr.packed) + self.packet


@dataclass(frozen=True)
class TunnelKeepalive:
    """A keepalive frame: no body (docs/protocol.md 8.2)."""

    FRAME_TYPE: ClassVar[int] = FrameType.KEEPALIVE

    raw: bytes | None = raw_field()

    def encode_body(self) -> bytes:
        """Frame Type: all that follows the Frame Length."""
        return bytes((self.FRAME_TYPE,))

    def encode(self) -> bytes:
        """The whole 5-byte frame."""
        return _frame(self.FRAME_TYPE, b"")


@dataclass(frozen=True)
class TunnelAck:
    """An acknowledgement: ``Sequence (64)``, the highest Data Sequence received in order
    from the peer's current series, cumulative (docs/protocol.md 8.2); 0 acknowledges none."""

    FRAME_TYPE: ClassVar[int] = FrameType.ACK

    sequence: int
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_uint("tunnel Ack", "Sequence", self.sequence, 64)

    def encode_body(self) -> bytes:
        """Frame Type and body: what follows the Frame Length."""
        return bytes((self.FRAME_TYPE,)) + U64.pack(self.sequence)

    def encode(self) -> bytes:
        """The whole 13-byte frame."""
        return _frame(self.FRAME_TYPE, U64.pack(self.sequence))


TunnelFrame: TypeAlias = TunnelHello | TunnelData | TunnelKeepalive | TunnelAck


def decode_frame_body(data: bytes) -> TunnelFrame:
    """Decode what follows the Frame Length (as ``Int32StringReceiver`` delivers it).

    The value's ``raw`` is these bytes, from Frame Type on. A Data frame's packet is not
    decoded here: the agent checks it with :class:`DataPacket` or the functions above.
    """
    r = Reader(data, "tunnel frame", 0)
    if len(r.data) > MAX_FRAME_BODY:
        raise LengthError("tunnel frame", f"at most {MAX_FRAME_BODY} bytes", f"{len(r.data)}")
    frame_type = r.u8("Frame Type")
    if frame_type == FrameType.DATA:
        sequence = r.u64("Sequence")
        mn_addr = r.ipv4("MN ADDR")
        return TunnelData(sequence, mn_addr, r.rest(), raw=r.data)
    if frame_type == FrameType.HELLO:
        fields = _HELLO.unpack(r.take(_HELLO.size, "Hello fields"))
        node_id, role, timestamp, session, peer_session, next_expected = fields
        signature = r.take(SIGNATURE_SIZE, "signature")
        r.end()
        return TunnelHello(
            node_id,
            lookup(TunnelRole, role),
            timestamp,
            session,
            peer_session,
            next_expected,
            signature,
            raw=r.data,
        )
    if frame_type == FrameType.KEEPALIVE:
        r.end()
        return TunnelKeepalive(raw=r.data)
    if frame_type == FrameType.ACK:
        sequence = r.u64("Sequence")
        r.end()
        return TunnelAck(sequence, raw=r.data)
    raise UnknownTypeError("tunnel Frame Type", "1, 2, 3 or 4", str(frame_type), 0)


def decode_frame(data: bytes) -> TunnelFrame:
    """Decode one whole frame, Frame Length included; it must match the bytes given."""
    r = Reader(data, "tunnel frame")
    length = r.u32("Frame Length")
    if length != r.remaining:
        raise LengthError("tunnel Frame Length", f"{r.remaining}", f"{length}", 0)
    return decode_frame_body(r.rest())
