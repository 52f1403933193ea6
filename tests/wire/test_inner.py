"""Inner packets (docs/protocol.md 8.1, 10): the IPv4 header codec and IPv4/UDP for the API."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvpn.wire import inner
from mvpn.wire.errors import (
    BadValueError,
    LengthError,
    TrailingDataError,
    TruncatedError,
    WireError,
)
from mvpn.wire.icmp import ChecksumError

A = ipaddress.IPv4Address

# The worked example of the IPv4 header checksum (RFC 1071 arithmetic), a UDP packet of 115
# bytes from 192.168.0.1 to 192.168.0.199.
HEADER_VECTOR = bytes.fromhex(
    "45"  # Version 4, IHL 5 (20 bytes)
    "00"  # Type of Service
    "0073"  # Total Length 115
    "0000"  # Identification
    "4000"  # Flags: DF; Fragment Offset 0
    "40"  # TTL 64
    "11"  # Protocol 17 (UDP)
    "b861"  # Header Checksum
    "c0a80001"  # Source 192.168.0.1
    "c0a800c7"  # Destination 192.168.0.199
)
PACKET_VECTOR = HEADER_VECTOR + bytes(95)


def _ones_complement_sum(data: bytes) -> int:
    """An independent RFC 1071 sum (end-around carry by modulo), to check the codec's."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    folded = total % 0xFFFF
    return 0xFFFF if folded == 0 and total else folded


def test_header_vector_decodes() -> None:
    """The annotated vector decodes field by field and its checksum verifies."""
    header = inner.IPv4Header.decode(PACKET_VECTOR)
    assert header.version == 4
    assert header.header_length == 20
    assert header.total_length == 115
    assert header.dont_fragment and not header.more_fragments
    assert header.fragment_offset == 0
    assert header.ttl == 64
    assert header.protocol is inner.IPProtocol.UDP
    assert header.checksum == 0xB861
    assert header.src == A("192.168.0.1")
    assert header.dst == A("192.168.0.199")
    assert header.options == b""
    assert not header.is_fragment


def test_build_udp_layout() -> None:
    """build_udp writes IHL 5, DF, TTL 64, protocol 17, the ports, the UDP length, and
    checksums that an independent RFC 1071 sum over header and pseudo-header accepts."""
    packet = inner.build_udp(A("10.0.0.1"), A("10.0.0.2"), 4351, 4351, b"hello", identification=7)
    assert len(packet) == 20 + 8 + 5
    assert packet[0] == 0x45
    assert packet[2:4] == (33).to_bytes(2, "big")
    assert packet[4:6] == (7).to_bytes(2, "big")
    assert packet[6:8] == b"\x40\x00"
    assert packet[8] == 64 and packet[9] == 17
    assert packet[12:16] == A("10.0.0.1").packed and packet[16:20] == A("10.0.0.2").packed
    assert _ones_complement_sum(packet[:20]) == 0xFFFF
    udp = packet[20:]
    assert udp[:4] == bytes.fromhex("10ff10ff")
    assert udp[4:6] == (13).to_bytes(2, "big")
    pseudo = packet[12:20] + b"\x00\x11" + (13).to_bytes(2, "big")
    assert udp[6:8] != b"\0\0"
    assert _ones_complement_sum(pseudo + udp) == 0xFFFF


addresses = st.builds(A, st.integers(0, 2**32 - 1))
ports = st.integers(0, 65535)


@given(
    addresses,
    addresses,
    ports,
    ports,
    st.binary(max_size=inner.MAX_API_PAYLOAD),
    st.integers(0, 0xFFFF),
    st.integers(1, 255),
)
def test_udp_round_trip(
    src: A, dst: A, sport: int, dport: int, payload: bytes, ident: int, ttl: int
) -> None:
    """Any payload up to MAX_API_PAYLOAD survives build then decode unchanged, and the
    header decoder reads back what was built."""
    value = inner.UdpPacket(src, dst, sport, dport, payload)
    packet = value.encode(identification=ident, ttl=ttl)
    assert inner.UdpPacket.decode(packet) == value
    header = inner.IPv4Header.decode(packet)
    assert (header.identification, header.ttl, header.total_length) == (
        ident,
        ttl,
        len(packet),
    )
    assert inner.is_api_packet(header, packet) == (dport == inner.API_PORT)


@given(st.binary(max_size=1600) | st.binary(max_size=60).map(lambda b: b"\x45" + b))
def test_decoders_raise_only_wire_errors(data: bytes) -> None:
    """Whatever the bytes (random, or starting like an IPv4 header), the decoders return
    a value or raise a WireError, never anything else."""
    for decode in (inner.IPv4Header.decode, inner.UdpPacket.decode, inner.peek_ipv4):
        with contextlib.suppress(WireError):
            decode(data)


@given(
    st.binary(min_size=1, max_size=200),
    st.integers(0, 227),
    st.integers(1, 255),
)
def test_any_bit_flip_is_caught(payload: bytes, position: int, flip: int) -> None:
    """Changing any byte of a built packet makes UdpPacket.decode raise a WireError or
    return a different value: the checksums and length checks leave nothing unnoticed,
    except the one change RFC 768 allows, a UDP checksum turned into 0 ("none")."""
    value = inner.UdpPacket(A("10.1.0.1"), A("10.2.0.1"), 1000, 4351, payload)
    packet = bytearray(value.encode())
    position %= len(packet)
    packet[position] ^= flip
    try:
        decoded = inner.UdpPacket.decode(bytes(packet))
    except WireError:
        return
    assert decoded != value or packet[26:28] == b"\0\0"


def test_max_size_payload_and_one_more() -> None:
    """1372 bytes of payload make a 1400-byte packet; one byte more is a LengthError."""
    packet = inner.build_udp(A("1.1.1.1"), A("2.2.2.2"), 1, 2, bytes(inner.MAX_API_PAYLOAD))
    assert len(packet) == inner.MAX_INNER_PACKET == 1400
    with pytest.raises(LengthError, match="at most 1372 payload bytes"):
        inner.build_udp(A("1.1.1.1"), A("2.2.2.2"), 1, 2, bytes(inner.MAX_API_PAYLOAD + 1))


def test_oversize_packet_refused() -> None:
    """An inner packet longer than 1400 bytes is refused before any other check."""
    with pytest.raises(LengthError, match="at most 1400 bytes"):
        inner.IPv4Header.decode(bytes(1401))


@pytest.mark.parametrize(
    ("packet", "error", "text"),
    [
        (HEADER_VECTOR[:19], TruncatedError, "at least 20 bytes"),
        (b"\x65" + PACKET_VECTOR[1:], BadValueError, "Version at offset 0: expected 4, got 6"),
        (b"\x44" + PACKET_VECTOR[1:], BadValueError, "IHL"),
        (b"\x4f" + HEADER_VECTOR[1:] + bytes(20), TruncatedError, "options"),
        (HEADER_VECTOR[:2] + b"\x00\x10" + HEADER_VECTOR[4:], LengthError, "Total Length"),
        (HEADER_VECTOR + bytes(94), TruncatedError, "Total Length 115 bytes"),
        (PACKET_VECTOR + b"x", TrailingDataError, "1 more bytes"),
        (HEADER_VECTOR[:10] + b"\xb8\x62" + PACKET_VECTOR[12:], ChecksumError, "0xb861"),
    ],
)
def test_bad_ipv4_headers(packet: bytes, error: type[WireError], text: str) -> None:
    """Each malformed header raises its own WireError subclass naming what was wrong."""
    with pytest.raises(error, match=text):
        inner.IPv4Header.decode(packet)


def test_header_options_are_kept() -> None:
    """A header with options (IHL 6) decodes; the options and the payload offset follow IHL."""
    header = bytearray(b"\x46\x00\x00\x1c" + bytes(4) + b"\x40\x01\x00\x00")
    header += A("10.0.0.1").packed + A("10.0.0.2").packed + b"\x01\x01\x01\x00"
    header[10:12] = _checksum(bytes(header)).to_bytes(2, "big")
    decoded = inner.IPv4Header.decode(bytes(header) + b"ping")
    assert decoded.options == b"\x01\x01\x01\x00"
    assert decoded.payload_offset == 24
    assert decoded.protocol is inner.IPProtocol.ICMP


def _checksum(data: bytes) -> int:
    return 0xFFFF - _ones_complement_sum(data)


def _reheader(packet: bytes, **changes: int) -> bytes:
    """``packet`` with header bytes changed (offset=value) and the header checksum redone."""
    header = bytearray(packet[:20])
    for name, value in changes.items():
        header[int(name[1:])] = value
    header[10:12] = b"\0\0"
    header[10:12] = _checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + packet[20:]


def test_udp_decoder_refusals() -> None:
    """UdpPacket.decode refuses another protocol, fragments, a short UDP header, a UDP
    Length that disagrees with the IPv4 payload, and a wrong UDP checksum; a zero UDP
    checksum means "none" over IPv4 (RFC 768) and is accepted."""
    packet = inner.build_udp(A("10.0.0.1"), A("10.0.0.2"), 5, 4351, b"abcdef")
    with pytest.raises(BadValueError, match="Protocol"):
        inner.UdpPacket.decode(_reheader(packet, b9=6))
    with pytest.raises(BadValueError, match="fragment"):
        inner.UdpPacket.decode(_reheader(packet, b6=0x20))
    short = _reheader(packet[:24], b3=24)
    with pytest.raises(TruncatedError, match="UDP packet header"):
        inner.UdpPacket.decode(short)
    wrong_length = packet[:24] + b"\x00\x0f" + packet[26:]
    with pytest.raises(LengthError, match="Length"):
        inner.UdpPacket.decode(wrong_length)
    wrong_sum = packet[:26] + bytes([packet[26] ^ 1]) + packet[27:]
    with pytest.raises(ChecksumError, match="UDP packet Checksum"):
        inner.UdpPacket.decode(wrong_sum)
    no_sum = packet[:26] + b"\0\0" + packet[28:]
    assert inner.UdpPacket.decode(no_sum).payload == b"abcdef"


def test_is_api_packet_looks_at_protocol_fragments_and_port() -> None:
    """Only unfragmented UDP to API_PORT counts as API traffic."""
    api = inner.build_udp(A("10.0.0.1"), A("10.0.0.2"), 9, inner.API_PORT, b"x")
    other = inner.build_udp(A("10.0.0.1"), A("10.0.0.2"), inner.API_PORT, 53, b"x")
    tcp = _reheader(api, b9=6)
    fragment = _reheader(api, b6=0x20)
    assert inner.is_api_packet(inner.IPv4Header.decode(api), api)
    for packet in (other, tcp, fragment):
        assert not inner.is_api_packet(inner.IPv4Header.decode(packet), packet)


def test_peek_agrees_with_the_full_decoders() -> None:
    """The endpoints' fast path gives the same addresses and the same API verdict as the
    full decoders, and refuses what cannot be routed (short, not IPv4, a Total Length that
    is not the packet's)."""
    api = inner.build_udp(A("10.0.0.1"), A("10.0.0.2"), 9, inner.API_PORT, b"x")
    other = inner.build_udp(A("10.0.0.1"), A("10.0.0.2"), inner.API_PORT, 53, b"x")
    for packet in (api, other, _reheader(api, b9=6), _reheader(api, b6=0x20)):
        header = inner.IPv4Header.decode(packet)
        assert inner.peek_ipv4(packet) == (
            header.src.packed,
            header.dst.packed,
            inner.is_api_packet(header, packet),
        )
    for bad in (api[:19], b"\x60" + api[1:], api + b"\x00", bytes(1401)):
        with pytest.raises(WireError):
            inner.peek_ipv4(bad)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"src_port": 65536}, "Source Port"),
        ({"dst_port": -1}, "Destination Port"),
        ({"identification": 70000}, "Identification"),
        ({"ttl": 0}, "TTL"),
    ],
)
def test_build_udp_refuses_out_of_range_fields(kwargs: dict[str, int], text: str) -> None:
    """Ports, Identification and TTL outside their fields are BadValueErrors, not
    silently truncated."""
    args: dict[str, int] = {"src_port": 1, "dst_port": 2, **kwargs}
    extra = {k: v for k, v in args.items() if k in ("identification", "ttl")}
    with pytest.raises(BadValueError, match=text):
        inner.build_udp(
            A("10.0.0.1"), A("10.0.0.2"), args["src_port"], args["dst_port"], b"", **extra
        )
