"""Hypothesis strategies for the RFC 5944 codecs and a byte mutator for fuzz tests."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TypeVar

from hypothesis import strategies as st

from mvpn.wire.codes import ReplyCode
from mvpn.wire.errors import WireError
from mvpn.wire.extensions import (
    ADVERTISEMENT_EXTENSIONS,
    REGISTRATION_EXTENSIONS,
    Extension,
    ForeignHomeAuthExtension,
    MobileForeignAuthExtension,
    MobileHomeAuthExtension,
    UnknownExtension,
)
from mvpn.wire.icmp import (
    AdvertisementCode,
    AgentAdvertisement,
    AgentFlags,
    AgentSolicitation,
    MobilityAgentAdvertisementExtension,
    PaddingExtension,
    PrefixLengthsExtension,
    RouterEntry,
)
from mvpn.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags

T = TypeVar("T")

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)

auth_extensions = st.builds(
    lambda cls, spi, auth: cls(spi, auth),
    st.sampled_from(
        [MobileHomeAuthExtension, MobileForeignAuthExtension, ForeignHomeAuthExtension]
    ),
    u32,
    st.binary(max_size=40),
)

unknown_registration_extensions = st.builds(
    UnknownExtension,
    # Types some class decodes (32 to 34, the MVPN 36 to 39, ...) would not stay unknown.
    st.integers(0, 255).filter(lambda t: t not in REGISTRATION_EXTENSIONS),
    st.binary(max_size=40),
)

registration_extensions: st.SearchStrategy[tuple[Extension, ...]] = st.lists(
    st.one_of(auth_extensions, unknown_registration_extensions), max_size=6
).map(tuple)

requests = st.builds(
    RegistrationRequest,
    st.integers(0, 0xFF).map(RequestFlags),
    u16,
    ipv4,
    ipv4,
    ipv4,
    u64,
    registration_extensions,
)

reply_codes = st.one_of(st.sampled_from(list(ReplyCode)), st.integers(0, 255))

replies = st.builds(
    RegistrationReply,
    reply_codes,
    u16,
    ipv4,
    ipv4,
    u64,
    registration_extensions,
)

router_entries = st.builds(RouterEntry, ipv4, st.integers(-(2**31), 2**31 - 1))

mobility_extensions = st.builds(
    MobilityAgentAdvertisementExtension,
    u16,
    u16,
    u16.map(AgentFlags),
    st.lists(ipv4, max_size=5).map(tuple),
)


@st.composite
def advertisements(draw: st.DrawFn) -> AgentAdvertisement:
    """An Agent Advertisement whose Prefix-Lengths extension (if any) fits its routers."""
    routers = tuple(draw(st.lists(router_entries, max_size=4)))
    extensions: list[Extension] = []
    if draw(st.booleans()):
        extensions.append(draw(mobility_extensions))
    if draw(st.booleans()):
        lengths = draw(st.lists(st.integers(0, 32), min_size=len(routers), max_size=len(routers)))
        extensions.append(PrefixLengthsExtension(tuple(lengths)))
    extensions.extend(
        draw(
            st.lists(
                st.builds(
                    UnknownExtension,
                    st.integers(0, 255).filter(lambda t: t not in ADVERTISEMENT_EXTENSIONS),
                    st.binary(max_size=12),
                ),
                max_size=2,
            )
        )
    )
    if draw(st.booleans()):
        extensions.append(PaddingExtension())
    code = draw(st.sampled_from(list(AdvertisementCode)))
    return AgentAdvertisement(code, draw(u16), routers, tuple(extensions))


solicitations = st.builds(AgentSolicitation, u32)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` truncated, extended and/or with some bytes flipped."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "extend", "flip", "insert"]))
        if op == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def fix_icmp_checksum(data: bytes) -> bytes:
    """``data`` with its ICMP checksum recomputed, so a mutation reaches past the check.

    Written independently of mvpn.wire.icmp (RFC 1071: one's complement of the one's
    complement sum of 16-bit words, an odd byte padded with zero).
    """
    if len(data) < 4:
        return data
    zeroed = data[:2] + b"\x00\x00" + data[4:]
    padded = zeroed + b"\x00" * (len(zeroed) % 2)
    total = 0
    for i in range(0, len(padded), 2):
        total += (padded[i] << 8) | padded[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return data[:2] + (~total & 0xFFFF).to_bytes(2, "big") + data[4:]


def try_decode(decode: Callable[[bytes], T], data: bytes) -> T | None:
    """``decode(data)``, or ``None`` when it raises a WireError; any other exception escapes
    (and fails the fuzz test that called it)."""
    try:
        return decode(data)
    except WireError:
        return None
