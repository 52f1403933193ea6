"""The type-55 data packet and the HA-FA tunnel frames (docs/protocol.md 8), byte by byte."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import strategies as st

from mvpn.wire import data
from mvpn.wire.codes import AuthSecPar, EncrSecPar
from mvpn.wire.errors import (
    BadValueError,
    LengthError,
    TrailingDataError,
    TruncatedError,
    UnknownTypeError,
)
from tests.wire import mvpn_strategies as s

A = ipaddress.IPv4Address
TAG = b"T" * 16
SIG = b"S" * 64

PACKET_VECTOR = (
    bytes.fromhex(
        "37"  # Type 55
        "02"  # Hop 2: re-authenticated by two agents
        "0028"  # Length 40: the whole packet
        "05"  # Auth Sec Par: HMAC-SHA256-128
        "06"  # Encr Sec Par: AES-256-GCM
        "01"  # Flags: D = 1, from the MN
        "00"  # Reserved
        "00000102"  # SPI 258: the data SA
        "0000000000000001"  # Sequence Number 1
        "63697068"  # ciphertext (dummy "ciph")
    )
    + TAG  # Hop Authenticator
)
PACKET_VALUE = data.DataPacket(
    2, AuthSecPar.HMAC_SHA256_128, EncrSecPar.AES_256_GCM, True, 258, 1, b"ciph", TAG
)

HELLO_FRAME = (
    bytes.fromhex(
        "0000006a"  # Frame Length 106: bytes that follow
        "01"  # Frame Type 1: Hello
        "000000000000000a"  # Node ID 10
        "01"  # Role 1: home agent
        "e4f5a6b780000000"  # Timestamp (NTP)
        "1122334455667788"  # Session ID: the sender's series
        "99aabbccddeeff00"  # Peer Session ID: the peer's series it has received
        "0000000000000401"  # Next Expected 1025 from that series
    )
    + SIG  # sig_node("tunnel-hello", ID of peer, bytes 5..46)
)
HELLO_VALUE = data.TunnelHello(
    10,
    data.TunnelRole.HOME_AGENT,
    0xE4F5A6B780000000,
    0x1122334455667788,
    0x99AABBCCDDEEFF00,
    1025,
    SIG,
)

DATA_FRAME = (
    bytes.fromhex(
        "00000035"  # Frame Length 53
        "02"  # Frame Type 2: Data
        "0000000000000007"  # Sequence 7 of the sender's series
        "0a000005"  # MN ADDR 10.0.0.5
    )
    + PACKET_VECTOR  # the type-55 packet, untouched
)
DATA_VALUE = data.TunnelData(7, A("10.0.0.5"), PACKET_VECTOR)

ACK_FRAME = bytes.fromhex(
    "00000009"  # Frame Length 9
    "04"  # Frame Type 4: Ack
    "0000000000000020"  # Sequence 32: every frame up to 32 received in order
)
ACK_VALUE = data.TunnelAck(32)

KEEPALIVE_FRAME = bytes.fromhex(
    "00000001"  # Frame Length 1
    "03"  # Frame Type 3: Keepalive, no body
)


def test_packet_vector() -> None:
    """The packet decodes to the value, encodes back to the bytes, and keeps its raw."""
    decoded = data.DataPacket.decode(PACKET_VECTOR)
    assert decoded == PACKET_VALUE
    assert decoded.raw == PACKET_VECTOR
    assert decoded.auth_sec_par is AuthSecPar.HMAC_SHA256_128
    assert decoded.encr_sec_par is EncrSecPar.AES_256_GCM
    assert PACKET_VALUE.encode() == PACKET_VECTOR
    assert data.DataPacket.decode(bytearray(PACKET_VECTOR)) == PACKET_VALUE


def test_additional_data_is_header_without_hop() -> None:
    """The AEAD additional data is byte 0 and bytes 2..20: Hop is left out, so changing
    Hop does not change it."""
    expected = PACKET_VECTOR[0:1] + PACKET_VECTOR[2:20]
    assert data.additional_data(PACKET_VECTOR) == expected
    assert PACKET_VALUE.additional_data() == expected
    assert data.DataPacket.decode(PACKET_VECTOR).additional_data() == expected
    rehopped = data.hop_part_with(PACKET_VECTOR, 7) + TAG
    assert data.additional_data(rehopped) == expected
    header = data.data_header(9, 5, 6, True, 258, 1, 4)
    assert header == PACKET_VECTOR[:1] + b"\x09" + PACKET_VECTOR[2:20]
    assert data.additional_data(header) == expected


def test_hop_authenticated_part_and_forwarding() -> None:
    """The hop tag covers bytes 0..L-16, Hop included; forwarding sets Hop and appends the
    tag computed over exactly the new bytes 0..L-16."""
    assert data.hop_authenticated_part(PACKET_VECTOR) == PACKET_VECTOR[:24]
    assert PACKET_VALUE.hop_authenticated_part() == PACKET_VECTOR[:24]
    part = data.hop_part_with(PACKET_VECTOR, 3)
    assert part == PACKET_VECTOR[:1] + b"\x03" + PACKET_VECTOR[2:24]
    seen: list[bytes] = []

    def tag_for(covered: bytes) -> bytes:
        seen.append(covered)
        return b"N" * 16

    forwarded = data.forward(PACKET_VECTOR, 3, tag_for)
    assert seen == [part]
    assert forwarded == part + b"N" * 16
    again = data.DataPacket.decode(forwarded)
    assert (again.hop, again.tag, again.ciphertext) == (3, b"N" * 16, b"ciph")


def test_aead_nonce() -> None:
    """The AEAD nonce is 32 zero bits then the 64-bit Sequence Number."""
    assert data.aead_nonce(1) == bytes(11) + b"\x01"
    assert data.aead_nonce(0x0102030405060708) == bytes(4) + bytes(range(1, 9))


def test_packet_decoder_refusals() -> None:
    """Wrong type, short packet, Length mismatch, flags other than D, non-zero Reserved."""
    with pytest.raises(UnknownTypeError):
        data.DataPacket.decode(b"\x36" + PACKET_VECTOR[1:])
    with pytest.raises(LengthError):
        data.DataPacket.decode(PACKET_VECTOR[:35])
    with pytest.raises(LengthError):
        data.DataPacket.decode(PACKET_VECTOR + b"\x00")
    with pytest.raises(BadValueError):
        data.DataPacket.decode(PACKET_VECTOR[:6] + b"\x03" + PACKET_VECTOR[7:])
    with pytest.raises(BadValueError):
        data.DataPacket.decode(PACKET_VECTOR[:7] + b"\x01" + PACKET_VECTOR[8:])


def test_packet_direction_and_unknown_code_points() -> None:
    """D = 0 means towards the MN; unknown Sec Par code points stay plain ints."""
    toward = data.DataPacket.decode(PACKET_VECTOR[:4] + b"\x09\x63\x00" + PACKET_VECTOR[7:])
    assert toward.from_mn is False
    assert (type(toward.auth_sec_par), toward.auth_sec_par) == (int, 9)
    assert (type(toward.encr_sec_par), toward.encr_sec_par) == (int, 99)


def test_packet_encoder_refusals() -> None:
    """Values that do not fit are refused when encoding."""
    with pytest.raises(LengthError):
        data.DataPacket(0, 5, 6, False, 1, 1, b"", b"short").encode()
    with pytest.raises(BadValueError):
        data.DataPacket(256, 5, 6, False, 1, 1, b"", TAG).encode()
    with pytest.raises(BadValueError):
        data.DataPacket(0, 5, 6, False, 1 << 32, 1, b"", TAG).encode()
    with pytest.raises(LengthError):
        data.DataPacket(0, 5, 6, False, 1, 1, bytes(0xFFFF - 35), TAG).encode()
    assert len(data.DataPacket(0, 5, 6, False, 1, 1, bytes(0xFFFF - 36), TAG).encode()) == 0xFFFF


FRAMES = [
    (HELLO_FRAME, HELLO_VALUE),
    (DATA_FRAME, DATA_VALUE),
    (KEEPALIVE_FRAME, data.TunnelKeepalive()),
    (ACK_FRAME, ACK_VALUE),
]


@pytest.mark.parametrize(("frame", "value"), FRAMES, ids=["hello", "data", "keepalive", "ack"])
def test_frame_vectors(frame: bytes, value: data.TunnelFrame) -> None:
    """Each frame decodes (whole, or its body after the Frame Length) and encodes back."""
    assert data.decode_frame(frame) == value
    assert data.decode_frame_body(frame[4:]) == value
    assert value.encode() == frame
    assert value.encode_body() == frame[4:]


def test_hello_signed_part() -> None:
    """The Hello signature covers frame bytes 5..46: Node ID, Role, Timestamp, Session ID,
    Peer Session ID, Next Expected (all but the signature)."""
    assert HELLO_VALUE.signed_part() == HELLO_FRAME[5:46]
    decoded = data.decode_frame(HELLO_FRAME)
    assert isinstance(decoded, data.TunnelHello)
    assert decoded.signed_part() == HELLO_FRAME[5:46]
    assert decoded.role is data.TunnelRole.HOME_AGENT
    assert (
        data.TunnelHello.signed_part_for(
            10, 1, 0xE4F5A6B780000000, 0x1122334455667788, 0x99AABBCCDDEEFF00, 1025
        )
        == HELLO_FRAME[5:46]
    )


def test_frame_refusals() -> None:
    """Unknown frame types, bodies on keepalives, bad Frame Lengths, short data packets."""
    with pytest.raises(UnknownTypeError):
        data.decode_frame(bytes.fromhex("0000000105"))
    with pytest.raises(TrailingDataError):
        data.decode_frame(bytes.fromhex("000000020300"))
    with pytest.raises(TrailingDataError):
        data.decode_frame_body(HELLO_FRAME[4:] + b"\x00")
    with pytest.raises(TruncatedError):
        data.decode_frame_body(HELLO_FRAME[4:-1])
    with pytest.raises(LengthError):
        data.decode_frame(KEEPALIVE_FRAME + b"\x00")
    with pytest.raises(TruncatedError):
        data.decode_frame_body(ACK_FRAME[4:-1])
    with pytest.raises(TrailingDataError):
        data.decode_frame_body(ACK_FRAME[4:] + b"\x00")
    with pytest.raises(LengthError):
        data.decode_frame_body(b"\x02" + bytes(8 + 4) + bytes(35))
    with pytest.raises(LengthError):
        data.decode_frame_body(b"\x02" + bytes(8 + 4 + data.MAX_FRAME_BODY))
    with pytest.raises(TruncatedError):
        data.decode_frame(b"")


# --- Hypothesis ---------------------------------------------------------------------------

packets = st.builds(
    data.DataPacket,
    s.uint(8),
    s.auth_par,
    s.encr_par,
    st.booleans(),
    s.uint(32),
    s.uint(64),
    st.binary(max_size=120),
    s.hello,
)
frames = st.one_of(
    st.builds(
        data.TunnelHello,
        s.uint(64),
        st.one_of(st.sampled_from(data.TunnelRole), s.uint(8)),
        s.uint(64),
        s.uint(64),
        s.uint(64),
        s.uint(64),
        s.sig,
    ),
    st.builds(data.TunnelData, s.uint(64), s.ipv4, packets.map(lambda p: p.encode())),
    st.just(data.TunnelKeepalive()),
    st.builds(data.TunnelAck, s.uint(64)),
)

globals().update(
    s.fuzz_tests(
        "data",
        {
            "DataPacket": (data.DataPacket.decode, packets),
            "decode_frame": (data.decode_frame, frames),
        },
    )
)
