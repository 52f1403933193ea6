"""Agent Advertisement and Solicitation (RFC 5944 section 2, RFC 1256) and the checksum."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvpn.wire.errors import BadValueError, LengthError, TruncatedError, UnknownTypeError
from mvpn.wire.extensions import UnknownExtension
from mvpn.wire.icmp import (
    AdvertisementCode,
    AgentAdvertisement,
    AgentFlags,
    AgentSolicitation,
    ChecksumError,
    MobilityAgentAdvertisementExtension,
    PaddingExtension,
    PrefixLengthsExtension,
    RouterEntry,
    decode_icmp,
    internet_checksum,
)
from mvpn.wire.reader import explain
from tests.wire.rfc5944_strategies import (
    advertisements,
    fix_icmp_checksum,
    mutated,
    solicitations,
    try_decode,
)

A = ipaddress.IPv4Address

# Checksum by hand: the 16-bit words, checksum field zero, are
# 0910 0000 0102 0708 c000 0201 0000 0000 100a 002a 012c 1100 c000 0201 1301 1800;
# their sum is 0x1e27d, folded 0xe27d + 0x1 = 0xe27e, complemented 0x1d81.
ADVERTISEMENT_VECTOR = bytes.fromhex(
    "09"  # Type 9: Router Advertisement
    "10"  # Code 16: mobility agent only, routes no common traffic
    "1d81"  # Checksum
    "01"  # Num Addrs 1
    "02"  # Addr Entry Size 2 (32-bit words)
    "0708"  # Lifetime 1800 s
    "c0000201"  # Router Address 192.0.2.1
    "00000000"  # Preference Level 0
    "10"  # extension Type 16: Mobility Agent Advertisement
    "0a"  # Length 10 = 6 + 4 x 1 care-of address
    "002a"  # Sequence Number 42
    "012c"  # Registration Lifetime 300 s
    "1100"  # flags F (0x1000) and T (0x0100), reserved 0
    "c0000201"  # Care-of Address 192.0.2.1
    "13"  # extension Type 19: Prefix-Lengths
    "01"  # Length 1 (= Num Addrs)
    "18"  # prefix length 24
    "00"  # extension Type 0: one-byte padding
)

MOBILITY = MobilityAgentAdvertisementExtension(
    42, 300, AgentFlags.F | AgentFlags.T, (A("192.0.2.1"),)
)
ADVERTISEMENT_VALUE = AgentAdvertisement(
    AdvertisementCode.MOBILITY_ONLY,
    1800,
    (RouterEntry(A("192.0.2.1"), 0),),
    (MOBILITY, PrefixLengthsExtension((24,)), PaddingExtension()),
)

SOLICITATION_VECTOR = bytes.fromhex(
    "0a"  # Type 10: Router Solicitation
    "00"  # Code 0
    "f5ff"  # Checksum: ~0x0a00
    "00000000"  # Reserved
)


def test_advertisement_vector() -> None:
    """The hand-written advertisement decodes field by field and the value encodes to it."""
    adv = AgentAdvertisement.decode(ADVERTISEMENT_VECTOR)
    assert adv == ADVERTISEMENT_VALUE
    assert adv.raw == ADVERTISEMENT_VECTOR
    assert adv.mobility == MOBILITY
    assert [e.offset for e in adv.extensions] == [16, 28, 31]
    assert ADVERTISEMENT_VALUE.encode() == ADVERTISEMENT_VECTOR, explain(
        ADVERTISEMENT_VALUE.encode()
    )


def test_solicitation_vector() -> None:
    """The hand-written solicitation decodes and the value encodes to it."""
    assert AgentSolicitation.decode(SOLICITATION_VECTOR) == AgentSolicitation()
    assert AgentSolicitation().encode() == SOLICITATION_VECTOR


def test_decode_icmp_dispatch() -> None:
    """Type 9 is an advertisement, 10 a solicitation, anything else UnknownTypeError."""
    assert isinstance(decode_icmp(ADVERTISEMENT_VECTOR), AgentAdvertisement)
    assert isinstance(decode_icmp(SOLICITATION_VECTOR), AgentSolicitation)
    for bad in (b"", b"\x08" + SOLICITATION_VECTOR[1:]):
        with pytest.raises(UnknownTypeError):
            decode_icmp(bad)


def test_internet_checksum_rfc1071_example() -> None:
    """RFC 1071 section 3's example: words 0001 f203 f4f5 f6f7 sum to 0xddf2 (folded), so the
    checksum is 0x220d; an odd length is padded with a zero byte."""
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00") == 0xFEFF


@pytest.mark.parametrize("vector", [ADVERTISEMENT_VECTOR, SOLICITATION_VECTOR])
def test_checksum_mismatch(vector: bytes) -> None:
    """A wrong checksum raises ChecksumError naming the expected and the received value."""
    bad = vector[:2] + b"\x12\x34" + vector[4:]
    with pytest.raises(ChecksumError) as caught:
        decode_icmp(bad)
    assert caught.value.got == "0x1234"
    assert caught.value.expected == f"{int.from_bytes(vector[2:4], 'big'):#06x}"


def test_checksum_covers_extensions() -> None:
    """A flipped bit in an extension (after the router entries) fails the checksum."""
    bad = bytearray(ADVERTISEMENT_VECTOR)
    bad[19] ^= 0x01  # Sequence Number 42 -> 43
    with pytest.raises(ChecksumError):
        AgentAdvertisement.decode(bytes(bad))


@pytest.mark.parametrize("flag", [f for f in AgentFlags if f.value])
def test_each_agent_flag(flag: AgentFlags) -> None:
    """Each bit R B H F M G r T U X I sits where RFC 5944 2.1.1 puts it, high bit first."""
    order = ["R", "B", "H", "F", "M", "G", "RESERVED_R", "T", "U", "X", "I"]
    assert flag.name is not None
    bits = 1 << (15 - order.index(flag.name))
    ext = bytes.fromhex("100600010002") + bits.to_bytes(2, "big")
    adv = AgentAdvertisement(AdvertisementCode.ROUTES_COMMON_TRAFFIC, 0)
    vector = fix_icmp_checksum(adv.encode() + ext)
    decoded = AgentAdvertisement.decode(vector)
    assert decoded.mobility is not None
    assert decoded.mobility.flags == flag
    assert dataclasses.replace(adv, extensions=(decoded.mobility,)).encode() == vector


def test_reserved_agent_flags_kept() -> None:
    """The five reserved low bits are kept as received, so the message re-encodes."""
    ext = MobilityAgentAdvertisementExtension(1, 2, AgentFlags(0x001F))
    assert ext.encode()[-2:] == b"\x00\x1f"
    adv = AgentAdvertisement(AdvertisementCode.ROUTES_COMMON_TRAFFIC, 0, (), (ext,))
    assert AgentAdvertisement.decode(adv.encode()) == adv


def test_preference_is_signed() -> None:
    """Preference 0x80000000 is -2**31 ("never default", RFC 1256) and round-trips."""
    entry = RouterEntry(A("198.51.100.1"), -(2**31))
    adv = AgentAdvertisement(AdvertisementCode.ROUTES_COMMON_TRAFFIC, 60, (entry,))
    data = adv.encode()
    assert data[12:16] == b"\x80\x00\x00\x00"
    assert AgentAdvertisement.decode(data).routers == (entry,)


def test_bad_addr_entry_size() -> None:
    """Addr Entry Size other than 2 is refused."""
    bad = bytearray(ADVERTISEMENT_VECTOR)
    bad[5] = 3
    with pytest.raises(BadValueError):
        AgentAdvertisement.decode(fix_icmp_checksum(bytes(bad)))


@pytest.mark.parametrize("code", [1, 15, 17])
def test_bad_advertisement_code(code: int) -> None:
    """Codes other than 0 and 16 are refused."""
    bad = bytes([9, code]) + ADVERTISEMENT_VECTOR[2:]
    with pytest.raises(BadValueError):
        AgentAdvertisement.decode(fix_icmp_checksum(bad))


def test_prefix_lengths_must_match_num_addrs() -> None:
    """A Prefix-Lengths extension with another count than Num Addrs is refused on decode and
    on build."""
    with pytest.raises(LengthError):
        dataclasses.replace(ADVERTISEMENT_VALUE, extensions=(PrefixLengthsExtension((24, 16)),))
    bad = ADVERTISEMENT_VECTOR[:28] + bytes.fromhex("13021810") + b"\x00"
    with pytest.raises(LengthError):
        AgentAdvertisement.decode(fix_icmp_checksum(bad))


def test_prefix_length_over_32() -> None:
    """An IPv4 prefix length above 32 is refused."""
    bad = ADVERTISEMENT_VECTOR[:30] + b"\x21\x00"
    with pytest.raises(BadValueError):
        AgentAdvertisement.decode(fix_icmp_checksum(bad))


def test_mobility_extension_length_must_fit_addresses() -> None:
    """Extension 16's Length must be 6 + 4N."""
    bad = ADVERTISEMENT_VECTOR[:16] + bytes.fromhex("1007 002a 012c 1100 c0") + b"\x00"
    with pytest.raises(LengthError):
        AgentAdvertisement.decode(fix_icmp_checksum(bad))


def test_unknown_advertisement_extension_kept() -> None:
    """An unknown advertisement extension stays and re-encodes (skippable or not)."""
    data = fix_icmp_checksum(ADVERTISEMENT_VECTOR + bytes.fromhex("8302abcd 2000"))
    adv = AgentAdvertisement.decode(data)
    assert adv.extensions[-2:] == (
        UnknownExtension(0x83, b"\xab\xcd"),
        UnknownExtension(0x20, b""),
    )
    assert adv.encode() == data


def test_solicitation_strict() -> None:
    """A solicitation is exactly 8 bytes with Code 0; the reserved word is kept."""
    with pytest.raises(TruncatedError):
        AgentSolicitation.decode(SOLICITATION_VECTOR[:7])
    with pytest.raises(BadValueError):
        AgentSolicitation.decode(fix_icmp_checksum(b"\x0a\x01" + SOLICITATION_VECTOR[2:]))
    odd = fix_icmp_checksum(SOLICITATION_VECTOR[:4] + b"\x00\x00\x00\x07")
    assert AgentSolicitation.decode(odd).reserved == 7
    assert AgentSolicitation(7).encode() == odd


def test_advertisement_reprs() -> None:
    """The advertisement repr names flags and addresses."""
    text = repr(ADVERTISEMENT_VALUE)
    assert "MOBILITY_ONLY" in text
    assert "flags=F|T" in text
    assert "care_of_addresses=[192.0.2.1]" in text


@settings()
@given(advertisements())
def test_advertisement_roundtrip(adv: AgentAdvertisement) -> None:
    """Any advertisement encodes to a message whose checksum verifies and decodes back."""
    data = adv.encode()
    assert internet_checksum(data) == 0
    decoded = decode_icmp(data)
    assert decoded == adv
    assert decoded.encode() == data


@settings()
@given(solicitations)
def test_solicitation_roundtrip(sol: AgentSolicitation) -> None:
    """Any solicitation encodes and decodes back to itself."""
    assert decode_icmp(sol.encode()) == sol


@settings()
@given(st.binary(max_size=120))
def test_fuzz_icmp_arbitrary(data: bytes) -> None:
    """Arbitrary bytes, also with a valid Type and a fixed checksum, decode or raise
    WireError; whatever decodes re-encodes to the input."""
    for candidate in (
        data,
        fix_icmp_checksum(b"\x09\x00" + data),
        fix_icmp_checksum(b"\x09\x10\x00\x00" + data),
        fix_icmp_checksum(b"\x0a\x00" + data),
    ):
        message = try_decode(decode_icmp, candidate)
        if message is not None:
            assert message.encode() == candidate, explain(candidate)


@settings()
@given(st.data())
def test_fuzz_icmp_mutated(data: st.DataObject) -> None:
    """Mutated valid messages, with the checksum left wrong or fixed so decoding goes deeper,
    decode or raise WireError; whatever decodes re-encodes to the input."""
    valid = data.draw(st.one_of(advertisements(), solicitations)).encode()
    bad = data.draw(mutated(valid))
    for candidate in (bad, fix_icmp_checksum(bad)):
        for decode in (decode_icmp, AgentAdvertisement.decode, AgentSolicitation.decode):
            message = try_decode(decode, candidate)
            if message is not None:
                assert message.encode() == candidate, explain(candidate)
