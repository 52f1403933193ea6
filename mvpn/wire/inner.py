"""Inner packets: the IPv4 packets a data session carries (docs/protocol.md 8.1 and 10).

A type-55 packet's ciphertext holds one IPv4 packet, at most :data:`MAX_INNER_PACKET`
bytes (the TUN devices' MTU). A TUN device carries them as they are; the in-process API
(:mod:`mvpn.api`) wraps application bytes in an IPv4/UDP packet to and from
:data:`API_PORT`, so both kinds of traffic share one session and one codec.

IPv4 header (RFC 791 section 3.1), 20 bytes plus options::

    0   Version (4) = 4 | IHL (4): header length in 32-bit words, 5..15
    1   Type of Service (8)
    2   Total Length (16): header and data
    4   Identification (16)
    6   Flags (3): bit 1 DF, bit 2 MF | Fragment Offset (13), in 8-byte units
    8   Time to Live (8)      9   Protocol (8)      10  Header Checksum (16)
    12  Source Address        16  Destination Address
    20  Options (IHL * 4 - 20 bytes)

UDP header (RFC 768), 8 bytes::

    0   Source Port (16)      2   Destination Port (16)
    4   Length (16): header and data       6   Checksum (16), over the pseudo-header

The header checksum and the UDP checksum are the Internet checksum (RFC 1071). Over IPv4
a UDP checksum of 0 means "none" (RFC 768); :func:`build_udp` always computes it (a computed
0 is sent as 0xFFFF) and :meth:`UdpPacket.decode` checks it unless it is 0.

Pure: no Twisted, no cryptography. Decoders raise only :class:`WireError` subclasses.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from mvpn.wire.errors import BadValueError, LengthError, TrailingDataError, TruncatedError
from mvpn.wire.icmp import ChecksumError, internet_checksum

__all__ = [
    "API_PORT",
    "IPV4_HEADER_SIZE",
    "MAX_API_PAYLOAD",
    "MAX_INNER_PACKET",
    "UDP_HEADER_SIZE",
    "IPProtocol",
    "IPv4Header",
    "UdpPacket",
    "build_udp",
    "is_api_packet",
    "peek_ipv4",
]

MAX_INNER_PACKET = 1400
"""Largest inner packet (docs/protocol.md 10): the TUN MTU, so that the type-55 packet
(52 bytes more) in UDP/IPv4 (28 more) stays within a 1500-byte Ethernet frame."""

API_PORT = 4351
"""The UDP port, inside the tunnel, of the in-process API (:mod:`mvpn.api`) at both ends.
It is the data port's number (docs/protocol.md 2); inside a session it names the API."""

IPV4_HEADER_SIZE = 20
"""An IPv4 header without options (RFC 791): IHL 5."""

UDP_HEADER_SIZE = 8
"""The UDP header (RFC 768)."""

MAX_API_PAYLOAD = MAX_INNER_PACKET - IPV4_HEADER_SIZE - UDP_HEADER_SIZE
"""Largest application payload one API datagram carries: 1372 bytes."""

DEFAULT_TTL = 64
"""TTL of the packets the API builds (the Linux default)."""

_IPV4 = struct.Struct("!BBHHHBBH4s4s")  # RFC 791 3.1, the fixed 20 bytes
_UDP = struct.Struct("!HHHH")  # RFC 768
_PSEUDO = struct.Struct("!4s4sBBH")  # RFC 768: src, dst, zero, protocol, UDP length

_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF


class IPProtocol(enum.IntEnum):
    """IPv4 Protocol numbers this code names (IANA "Assigned Internet Protocol Numbers");
    any other value stays a plain int."""

    ICMP = 1
    TCP = 6
    UDP = 17


def _protocol(value: int) -> IPProtocol | int:
    try:
        return IPProtocol(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class IPv4Header:
    """The IPv4 header of an inner packet (RFC 791 3.1).

    ``decode`` checks version, IHL, Total Length against the packet (it must be exactly the
    packet: a TUN read returns one whole packet) and the header checksum; ``payload_offset``
    is where the data starts.
    """

    version: int
    header_length: int
    tos: int
    total_length: int
    identification: int
    dont_fragment: bool
    more_fragments: bool
    fragment_offset: int
    ttl: int
    protocol: IPProtocol | int
    checksum: int
    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    options: bytes = b""

    @property
    def payload_offset(self) -> int:
        """Offset of the data after the header (IHL * 4)."""
        return self.header_length

    @property
    def is_fragment(self) -> bool:
        """Whether this packet is a fragment (MF set or a non-zero offset)."""
        return self.more_fragments or self.fragment_offset != 0

    @classmethod
    def decode(cls, packet: bytes, *, verify_checksum: bool = True) -> IPv4Header:
        """Parse and check the header of the whole inner packet ``packet``."""
        what = "inner IPv4 packet"
        if len(packet) > MAX_INNER_PACKET:
            raise LengthError(what, f"at most {MAX_INNER_PACKET} bytes", f"{len(packet)} bytes")
        if len(packet) < IPV4_HEADER_SIZE:
            raise TruncatedError(what, f"at least {IPV4_HEADER_SIZE} bytes", f"{len(packet)}")
        (vihl, tos, total, ident, frag, ttl, proto, checksum, src, dst) = _IPV4.unpack_from(packet)
        version, ihl = vihl >> 4, vihl & 0x0F
        if version != 4:
            raise BadValueError(f"{what} Version", "4", str(version), 0)
        if ihl < 5:
            raise BadValueError(f"{what} IHL", "5..15 words", str(ihl), 0)
        header_length = ihl * 4
        if len(packet) < header_length:
            raise TruncatedError(
                f"{what} options", f"{header_length} header bytes", f"{len(packet)}", 0
            )
        if total < header_length:
            raise LengthError(
                f"{what} Total Length", f"at least the header ({header_length})", str(total), 2
            )
        if total > len(packet):
            raise TruncatedError(what, f"Total Length {total} bytes", f"{len(packet)}", 2)
        if total < len(packet):
            raise TrailingDataError(
                what, f"Total Length {total} bytes", f"{len(packet) - total} more bytes", total
            )
        if verify_checksum and internet_checksum(packet[:header_length]) != 0:
            expected = internet_checksum(packet[:10] + b"\x00\x00" + packet[12:header_length])
            raise ChecksumError(
                f"{what} Header Checksum", f"{expected:#06x}", f"{checksum:#06x}", 10
            )
        return cls(
            version=version,
            header_length=header_length,
            tos=tos,
            total_length=total,
            identification=ident,
            dont_fragment=bool(frag & _FLAG_DF),
            more_fragments=bool(frag & _FLAG_MF),
            fragment_offset=frag & _OFFSET_MASK,
            ttl=ttl,
            protocol=_protocol(proto),
            checksum=checksum,
            src=ipaddress.IPv4Address(src),
            dst=ipaddress.IPv4Address(dst),
            options=bytes(packet[IPV4_HEADER_SIZE:header_length]),
        )


def _udp_checksum(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, segment: bytes) -> int:
    """The RFC 768 checksum over the pseudo-header and ``segment`` (checksum field zero)."""
    pseudo = _PSEUDO.pack(src.packed, dst.packed, 0, IPProtocol.UDP, len(segment))
    return internet_checksum(pseudo + segment)


def _check_port(name: str, port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise BadValueError(f"UDP {name}", "an integer in [0, 65535]", repr(port))


def build_udp(
    src: ipaddress.IPv4Address,
    dst: ipaddress.IPv4Address,
    src_port: int,
    dst_port: int,
    payload: bytes,
    *,
    identification: int = 0,
    ttl: int = DEFAULT_TTL,
) -> bytes:
    """An IPv4/UDP packet (IHL 5, DF set, both checksums computed) carrying ``payload``.

    Raises :class:`LengthError` when the packet would exceed :data:`MAX_INNER_PACKET`, and
    :class:`BadValueError` for a port, TTL or Identification out of range.
    """
    _check_port("Source Port", src_port)
    _check_port("Destination Port", dst_port)
    if not 0 <= identification <= 0xFFFF:
        raise BadValueError("IPv4 Identification", "[0, 65535]", str(identification))
    if not 1 <= ttl <= 0xFF:
        raise BadValueError("IPv4 TTL", "[1, 255]", str(ttl))
    total = IPV4_HEADER_SIZE + UDP_HEADER_SIZE + len(payload)
    if total > MAX_INNER_PACKET:
        raise LengthError(
            "inner UDP packet",
            f"at most {MAX_API_PAYLOAD} payload bytes",
            f"{len(payload)} bytes",
        )
    udp_length = UDP_HEADER_SIZE + len(payload)
    segment = _UDP.pack(src_port, dst_port, udp_length, 0) + payload
    # RFC 768: a computed checksum of zero is sent as all ones (0 means "none").
    udp_sum = _udp_checksum(src, dst, segment) or 0xFFFF
    segment = segment[:6] + udp_sum.to_bytes(2, "big") + segment[8:]
    header = _IPV4.pack(
        0x45, 0, total, identification, _FLAG_DF, ttl, IPProtocol.UDP, 0, src.packed, dst.packed
    )
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    return header + segment


@dataclass(frozen=True)
class UdpPacket:
    """An unfragmented IPv4/UDP inner packet (RFC 768 over RFC 791)."""

    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    src_port: int
    dst_port: int
    payload: bytes

    def encode(self, *, identification: int = 0, ttl: int = DEFAULT_TTL) -> bytes:
        """The whole packet, both checksums computed (see :func:`build_udp`)."""
        return build_udp(
            self.src,
            self.dst,
            self.src_port,
            self.dst_port,
            self.payload,
            identification=identification,
            ttl=ttl,
        )

    @classmethod
    def decode(cls, packet: bytes) -> UdpPacket:
        """Parse a whole inner packet that must be an unfragmented IPv4/UDP packet."""
        header = IPv4Header.decode(packet)
        what = "inner UDP packet"
        if header.protocol != IPProtocol.UDP:
            raise BadValueError(f"{what} Protocol", "17 (UDP)", str(int(header.protocol)), 9)
        if header.is_fragment:
            raise BadValueError(
                f"{what} fragment", "an unfragmented packet", "MF or a fragment offset", 6
            )
        segment = packet[header.payload_offset :]
        if len(segment) < UDP_HEADER_SIZE:
            raise TruncatedError(
                f"{what} header", f"{UDP_HEADER_SIZE} bytes", str(len(segment)),
                header.payload_offset,
            )  # fmt: skip
        src_port, dst_port, length, checksum = _UDP.unpack_from(segment)
        if length != len(segment):
            raise LengthError(
                f"{what} Length",
                f"{len(segment)} (the IPv4 payload)",
                str(length),
                header.payload_offset + 4,
            )
        if checksum != 0:
            expected = _udp_checksum(header.src, header.dst, segment[:6] + b"\0\0" + segment[8:])
            if (expected or 0xFFFF) != checksum:
                raise ChecksumError(
                    f"{what} Checksum",
                    f"{expected or 0xFFFF:#06x}",
                    f"{checksum:#06x}",
                    header.payload_offset + 6,
                )
        return cls(
            src=header.src,
            dst=header.dst,
            src_port=src_port,
            dst_port=dst_port,
            payload=bytes(segment[UDP_HEADER_SIZE:]),
        )


def peek_ipv4(packet: bytes) -> tuple[bytes, bytes, bool]:
    """The per-packet fast path of the endpoints: ``(source, destination, is_api)`` of an
    inner packet, addresses as 4 packed bytes.

    Checks only what routing needs (size, Version, IHL, Total Length equal to the packet's
    length), not the header checksum: a TUN device's packets come from the kernel, which
    checks what it receives itself, and an API packet is decoded fully afterwards.
    ``is_api`` means unfragmented UDP to :data:`API_PORT`. Raises :class:`WireError`.
    """
    n = len(packet)
    if n < IPV4_HEADER_SIZE or n > MAX_INNER_PACKET:
        raise LengthError(
            "inner IPv4 packet", f"{IPV4_HEADER_SIZE} to {MAX_INNER_PACKET} bytes", f"{n} bytes"
        )
    vihl = packet[0]
    if vihl >> 4 != 4 or vihl & 0x0F < 5:
        raise BadValueError("inner IPv4 packet Version/IHL", "4 / 5..15", f"{vihl:#04x}", 0)
    if int.from_bytes(packet[2:4], "big") != n:
        raise LengthError("inner IPv4 packet Total Length", f"{n}", f"{packet[2:4].hex()}", 2)
    start = (vihl & 0x0F) * 4
    api = (
        packet[9] == IPProtocol.UDP
        and int.from_bytes(packet[6:8], "big") & (_FLAG_MF | _OFFSET_MASK) == 0
        and n >= start + UDP_HEADER_SIZE
        and int.from_bytes(packet[start + 2 : start + 4], "big") == API_PORT
    )
    return packet[12:16], packet[16:20], api


def is_api_packet(header: IPv4Header, packet: bytes) -> bool:
    """Whether ``packet`` (whose header is ``header``) is UDP to :data:`API_PORT`.

    Only the protocol, the fragment fields and the destination port are looked at: a cheap
    test to tell API traffic from TUN traffic before decoding it fully.
    """
    if header.protocol != IPProtocol.UDP or header.is_fragment:
        return False
    start = header.payload_offset
    if len(packet) < start + UDP_HEADER_SIZE:
        return False
    return int.from_bytes(packet[start + 2 : start + 4], "big") == API_PORT
