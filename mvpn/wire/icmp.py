"""Agent Advertisement and Agent Solicitation (RFC 5944 section 2, on RFC 1256 ICMP).

Agent Advertisement: an ICMP Router Advertisement (type 9) followed by extensions::

    Type = 9 | Code (0 or 16) | Checksum (16)
    Num Addrs (8) | Addr Entry Size = 2 (8) | Lifetime (16)
    Num Addrs x (Router Address (32) | Preference Level (32, signed))
    extensions: Mobility Agent Advertisement (16), Prefix-Lengths (19), One-byte Padding (0)

Code 16 says the agent does not route common traffic (RFC 5944 section 2.1).

Agent Solicitation: an ICMP Router Solicitation (type 10)::

    Type = 10 | Code = 0 | Checksum (16) | Reserved (32)

The Internet checksum (RFC 1071) covers the whole ICMP message; :meth:`encode` computes it
and ``decode`` insists on it (:class:`ChecksumError`). The same bytes travel in a raw ICMP
socket or, on unprivileged setups, as a UDP payload (docs/protocol.md section 2).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from mvpn.wire.errors import BadValueError, LengthError, UnknownTypeError, WireError
from mvpn.wire.extensions import (
    ADVERTISEMENT_EXTENSIONS,
    MAX_TLV_LENGTH,
    Extension,
    ExtensionBase,
    ExtensionFormat,
    ExtensionRegistry,
    encode_extension,
    encode_extensions,
    register_extension,
)
from mvpn.wire.reader import Reader

__all__ = [
    "AGENT_ADVERTISEMENT_TYPE",
    "AGENT_SOLICITATION_TYPE",
    "MAX_CARE_OF_ADDRESSES",
    "MAX_ICMP_SIZE",
    "MOBILITY_AGENT_ADVERTISEMENT_TYPE",
    "PADDING_TYPE",
    "PREFIX_LENGTHS_TYPE",
    "AdvertisementCode",
    "AgentAdvertisement",
    "AgentFlags",
    "AgentSolicitation",
    "ChecksumError",
    "IcmpMessage",
    "MobilityAgentAdvertisementExtension",
    "PaddingExtension",
    "PrefixLengthsExtension",
    "RouterEntry",
    "decode_icmp",
    "internet_checksum",
]

AGENT_ADVERTISEMENT_TYPE = 9
AGENT_SOLICITATION_TYPE = 10
PADDING_TYPE = 0
MOBILITY_AGENT_ADVERTISEMENT_TYPE = 16
PREFIX_LENGTHS_TYPE = 19

ADDR_ENTRY_SIZE = 2
"""32-bit words per router entry: address and preference (RFC 1256 section 3)."""

MAX_ICMP_SIZE = 65535 - 20 - 8
"""The smaller of the two carriers: the UDP payload limit over IPv4 (a raw ICMP message may
be 65515 bytes, but the same bytes must also fit the UDP form)."""

_MA_FIXED = 6
"""Sequence Number, Registration Lifetime and flags before the care-of addresses (2.1.1)."""

MAX_CARE_OF_ADDRESSES = (MAX_TLV_LENGTH - _MA_FIXED) // 4
"""62: the 8-bit Length of extension 16 holds 6 + 4 bytes per care-of address."""

_ICMP_HEADER = struct.Struct("!BBH")
_ADVERTISEMENT_HEADER = struct.Struct("!BBHBBH")
_ENTRY = struct.Struct("!Ii")
_SOLICITATION = struct.Struct("!BBHI")
_MA_HEADER = struct.Struct("!HHH")


class ChecksumError(WireError):
    """The ICMP checksum does not match the message (RFC 1071)."""


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum of ``data`` (RFC 1071).

    An odd length is padded with a zero byte. A message whose checksum field is right sums
    to 0 under this function.
    """
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _with_checksum(message: bytes) -> bytes:
    """``message`` (checksum field zero) with its checksum filled in."""
    checksum = internet_checksum(message)
    return message[:2] + checksum.to_bytes(2, "big") + message[4:]


def _verify_checksum(what: str, data: bytes) -> None:
    received = int.from_bytes(data[2:4], "big")
    expected = internet_checksum(data[:2] + b"\x00\x00" + data[4:])
    if received != expected:
        raise ChecksumError(f"{what} Checksum", f"{expected:#06x}", f"{received:#06x}", 2)


def _check_uint(what: str, name: str, value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise BadValueError(f"{what} {name}", f"an integer in [0, {limit}]", repr(value))


def _check_ipv4(what: str, name: str, value: ipaddress.IPv4Address) -> None:
    if not isinstance(value, ipaddress.IPv4Address):
        raise BadValueError(f"{what} {name}", "an IPv4Address", type(value).__name__)


class AgentFlags(enum.IntFlag):
    """The 16-bit flags and reserved field of extension 16 (RFC 5944 section 2.1.1).

    The five low bits are reserved (sent as zero); the codec keeps whatever arrived.
    """

    NONE = 0
    R = 0x8000
    """Registration required, even with a co-located care-of address."""
    B = 0x4000
    """Busy: no new registrations accepted."""
    H = 0x2000
    """The agent is a home agent on this link."""
    F = 0x1000
    """The agent is a foreign agent on this link."""
    M = 0x0800
    """Minimal encapsulation (RFC 2004) supported."""
    G = 0x0400
    """GRE encapsulation (RFC 2784) supported."""
    RESERVED_R = 0x0200
    """``r``: sent as zero (formerly Van Jacobson header compression)."""
    T = 0x0100
    """Reverse tunnelling (RFC 3024) supported."""
    U = 0x0080
    """UDP tunnelling (RFC 3519) supported."""
    X = 0x0040
    """Registration revocation (RFC 3543) supported."""
    I = 0x0020  # noqa: E741 - the RFC's name for the bit
    """Regional registration (RFC 4857) supported."""


def _flag_names(flags: int) -> str:
    names = [m.name for m in AgentFlags if m.value and flags & m.value and m.name]
    rest = flags & 0x1F
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


@dataclass(frozen=True, repr=False)
class MobilityAgentAdvertisementExtension(ExtensionBase):
    """Mobility Agent Advertisement extension, type 16 (RFC 5944 section 2.1.1).

    ``Type | Length = 6 + 4N | Sequence Number (16) | Registration Lifetime (16) | flags
    (16) | N care-of addresses``.
    """

    TYPE: ClassVar[int] = MOBILITY_AGENT_ADVERTISEMENT_TYPE
    FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.TLV
    NAME: ClassVar[str] = "Mobility Agent Advertisement extension"

    sequence_number: int
    registration_lifetime: int
    """The longest Lifetime the agent grants in seconds; 0xFFFF means infinity."""
    flags: AgentFlags
    care_of_addresses: tuple[ipaddress.IPv4Address, ...] = ()

    def __post_init__(self) -> None:
        _check_uint(self.NAME, "Sequence Number", self.sequence_number, 0xFFFF)
        _check_uint(self.NAME, "Registration Lifetime", self.registration_lifetime, 0xFFFF)
        _check_uint(self.NAME, "flags", int(self.flags), 0xFFFF)
        if not isinstance(self.care_of_addresses, tuple):
            raise BadValueError(
                f"{self.NAME} care-of addresses", "a tuple", type(self.care_of_addresses).__name__
            )
        if len(self.care_of_addresses) > MAX_CARE_OF_ADDRESSES:
            raise LengthError(
                f"{self.NAME} care-of addresses",
                f"at most {MAX_CARE_OF_ADDRESSES}",
                str(len(self.care_of_addresses)),
            )
        for address in self.care_of_addresses:
            _check_ipv4(self.NAME, "care-of address", address)

    def encode(self) -> bytes:
        """The whole extension."""
        body = _MA_HEADER.pack(
            self.sequence_number, self.registration_lifetime, int(self.flags)
        ) + b"".join(a.packed for a in self.care_of_addresses)
        return encode_extension(self.FORMAT, self.TYPE, body)

    @classmethod
    def from_wire(
        cls, sub_type: int | None, body: bytes, raw: bytes, offset: int
    ) -> MobilityAgentAdvertisementExtension:
        """Parse the data bytes (Length must be 6 + 4N)."""
        if len(body) < _MA_FIXED or (len(body) - _MA_FIXED) % 4:
            raise LengthError(f"{cls.NAME} Length", "6 + 4N", str(len(body)), offset + 1)
        sequence, lifetime, flags = _MA_HEADER.unpack_from(body)
        addresses = tuple(
            ipaddress.IPv4Address(body[i : i + 4]) for i in range(_MA_FIXED, len(body), 4)
        )
        return cls(sequence, lifetime, AgentFlags(flags), addresses, raw=raw, offset=offset)

    def __repr__(self) -> str:
        addresses = ", ".join(str(a) for a in self.care_of_addresses)
        return (
            f"MobilityAgentAdvertisementExtension(sequence_number={self.sequence_number}, "
            f"registration_lifetime={self.registration_lifetime}, "
            f"flags={_flag_names(self.flags)}, care_of_addresses=[{addresses}])"
        )


@dataclass(frozen=True)
class PrefixLengthsExtension(ExtensionBase):
    """Prefix-Lengths extension, type 19 (RFC 5944 section 2.1.2).

    ``Type | Length = N | N prefix lengths (8 each)``, one per router address of the
    advertisement, in the same order.
    """

    TYPE: ClassVar[int] = PREFIX_LENGTHS_TYPE
    FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.TLV
    NAME: ClassVar[str] = "Prefix-Lengths extension"

    prefix_lengths: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.prefix_lengths, tuple):
            raise BadValueError(
                f"{self.NAME} prefix lengths", "a tuple", type(self.prefix_lengths).__name__
            )
        if len(self.prefix_lengths) > MAX_TLV_LENGTH:
            raise LengthError(
                f"{self.NAME} Length", f"at most {MAX_TLV_LENGTH}", str(len(self.prefix_lengths))
            )
        for length in self.prefix_lengths:
            # An IPv4 prefix is 0 to 32 bits long.
            _check_uint(self.NAME, "prefix length", length, 32)

    def encode(self) -> bytes:
        """The whole extension."""
        return encode_extension(self.FORMAT, self.TYPE, bytes(self.prefix_lengths))

    @classmethod
    def from_wire(
        cls, sub_type: int | None, body: bytes, raw: bytes, offset: int
    ) -> PrefixLengthsExtension:
        """Parse the data bytes (one prefix length per byte)."""
        return cls(tuple(body), raw=raw, offset=offset)


@dataclass(frozen=True)
class PaddingExtension(ExtensionBase):
    """One-byte Padding extension, type 0 (RFC 5944 section 2.1.3): no Length, no data.

    Some IP stacks need an even-length ICMP message; one such byte makes it so.
    """

    TYPE: ClassVar[int] = PADDING_TYPE
    FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.PAD

    def encode(self) -> bytes:
        """The single zero byte."""
        return encode_extension(self.FORMAT, self.TYPE)

    @classmethod
    def from_wire(
        cls, sub_type: int | None, body: bytes, raw: bytes, offset: int
    ) -> PaddingExtension:
        """The padding byte."""
        return cls(raw=raw, offset=offset)


register_extension(MobilityAgentAdvertisementExtension, ADVERTISEMENT_EXTENSIONS)
register_extension(PrefixLengthsExtension, ADVERTISEMENT_EXTENSIONS)
register_extension(PaddingExtension, ADVERTISEMENT_EXTENSIONS)


class AdvertisementCode(enum.IntEnum):
    """Agent Advertisement codes (RFC 5944 section 2.1)."""

    ROUTES_COMMON_TRAFFIC = 0
    MOBILITY_ONLY = 16
    """The agent does not route common (non-mobile) traffic."""


@dataclass(frozen=True)
class RouterEntry:
    """One router address and its preference (RFC 1256 section 3).

    The preference is a signed 32-bit integer; -2**31 (0x80000000) means "never a default
    router".
    """

    address: ipaddress.IPv4Address
    preference: int = 0

    def __post_init__(self) -> None:
        _check_ipv4("router entry", "address", self.address)
        if (
            isinstance(self.preference, bool)
            or not isinstance(self.preference, int)
            or not -(1 << 31) <= self.preference < (1 << 31)
        ):
            raise BadValueError(
                "router entry preference", "a signed 32-bit integer", repr(self.preference)
            )

    def __repr__(self) -> str:
        return f"RouterEntry({self.address}, preference={self.preference})"


@dataclass(frozen=True, repr=False)
class AgentAdvertisement:
    """Agent Advertisement: ICMP type 9 with mobility extensions (RFC 5944 section 2.1).

    When a Prefix-Lengths extension is present it has one entry per router address, as
    RFC 5944 section 2.1.2 requires; both the builder and the decoder insist on it.
    """

    TYPE: ClassVar[int] = AGENT_ADVERTISEMENT_TYPE
    NAME: ClassVar[str] = "Agent Advertisement"
    FIXED_SIZE: ClassVar[int] = _ADVERTISEMENT_HEADER.size

    code: AdvertisementCode
    lifetime: int
    """Seconds the router addresses stay valid (RFC 1256)."""
    routers: tuple[RouterEntry, ...] = ()
    extensions: tuple[Extension, ...] = ()
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.code not in (AdvertisementCode.ROUTES_COMMON_TRAFFIC, 16):
            raise BadValueError(f"{self.NAME} Code", "0 or 16", repr(self.code))
        _check_uint(self.NAME, "Lifetime", self.lifetime, 0xFFFF)
        if not isinstance(self.routers, tuple) or not isinstance(self.extensions, tuple):
            raise BadValueError(f"{self.NAME} routers and extensions", "tuples", "other")
        if len(self.routers) > 0xFF:
            raise LengthError(f"{self.NAME} Num Addrs", "at most 255", str(len(self.routers)))
        for entry in self.routers:
            if not isinstance(entry, RouterEntry):
                raise BadValueError(f"{self.NAME} router", "a RouterEntry", type(entry).__name__)
        for ext in self.extensions:
            if isinstance(ext, PrefixLengthsExtension) and len(ext.prefix_lengths) != len(
                self.routers
            ):
                raise LengthError(
                    f"{self.NAME} Prefix-Lengths extension",
                    f"{len(self.routers)} prefix lengths (Num Addrs)",
                    str(len(ext.prefix_lengths)),
                    ext.offset,
                )

    @property
    def mobility(self) -> MobilityAgentAdvertisementExtension | None:
        """The first Mobility Agent Advertisement extension, which makes this an agent's
        advertisement rather than a plain router's (RFC 5944 section 2.1)."""
        for ext in self.extensions:
            if isinstance(ext, MobilityAgentAdvertisementExtension):
                return ext
        return None

    def encode(self) -> bytes:
        """The whole ICMP message, checksum computed.

        :raises LengthError: it would not fit in :data:`MAX_ICMP_SIZE`.
        """
        header = _ADVERTISEMENT_HEADER.pack(
            self.TYPE, int(self.code), 0, len(self.routers), ADDR_ENTRY_SIZE, self.lifetime
        )
        entries = b"".join(_ENTRY.pack(int(e.address), e.preference) for e in self.routers)
        message = header + entries + encode_extensions(self.extensions)
        if len(message) > MAX_ICMP_SIZE:
            raise LengthError(self.NAME, f"at most {MAX_ICMP_SIZE} bytes", f"{len(message)}")
        return _with_checksum(message)

    @classmethod
    def decode(
        cls, data: bytes, registry: ExtensionRegistry = ADVERTISEMENT_EXTENSIONS
    ) -> AgentAdvertisement:
        """Parse and checksum-verify a whole Agent Advertisement; ``raw`` keeps ``data``."""
        data = bytes(data)
        if len(data) > MAX_ICMP_SIZE:
            raise LengthError(cls.NAME, f"at most {MAX_ICMP_SIZE} bytes", f"{len(data)}")
        r = Reader(data, cls.NAME)
        type_ = r.u8("Type")
        if type_ != cls.TYPE:
            raise UnknownTypeError(f"{cls.NAME} Type", str(cls.TYPE), str(type_), 0)
        code = r.u8("Code")
        if code not in (0, 16):
            raise BadValueError(f"{cls.NAME} Code", "0 or 16", str(code), 1)
        r.u16("Checksum")
        count = r.u8("Num Addrs")
        entry_size = r.u8("Addr Entry Size")
        if entry_size != ADDR_ENTRY_SIZE:
            raise BadValueError(
                f"{cls.NAME} Addr Entry Size", str(ADDR_ENTRY_SIZE), str(entry_size), 5
            )
        lifetime = r.u16("Lifetime")
        entries = []
        for _ in range(count):
            address = r.ipv4("Router Address")
            preference = int.from_bytes(r.take(4, "Preference Level"), "big", signed=True)
            entries.append(RouterEntry(address, preference))
        _verify_checksum(cls.NAME, data)
        start = r.offset
        extensions = registry.decode(r.rest(), start)
        return cls(AdvertisementCode(code), lifetime, tuple(entries), extensions, data)

    def __repr__(self) -> str:
        return (
            f"AgentAdvertisement(code={self.code.name}, lifetime={self.lifetime}, "
            f"routers={list(self.routers)}, extensions={list(self.extensions)})"
        )


@dataclass(frozen=True)
class AgentSolicitation:
    """Agent Solicitation: ICMP type 10, code 0 (RFC 5944 section 2.2, RFC 1256 section 3).

    Exactly 8 bytes: RFC 5944 defines no extension for it. ``reserved`` is sent as zero
    and kept as received, so the message re-encodes unchanged.
    """

    TYPE: ClassVar[int] = AGENT_SOLICITATION_TYPE
    NAME: ClassVar[str] = "Agent Solicitation"
    SIZE: ClassVar[int] = _SOLICITATION.size

    reserved: int = 0
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_uint(self.NAME, "Reserved", self.reserved, 0xFFFFFFFF)

    def encode(self) -> bytes:
        """The 8-byte ICMP message, checksum computed."""
        return _with_checksum(_SOLICITATION.pack(self.TYPE, 0, 0, self.reserved))

    @classmethod
    def decode(cls, data: bytes) -> AgentSolicitation:
        """Parse and checksum-verify an Agent Solicitation."""
        data = bytes(data)
        r = Reader(data, cls.NAME)
        type_ = r.u8("Type")
        if type_ != cls.TYPE:
            raise UnknownTypeError(f"{cls.NAME} Type", str(cls.TYPE), str(type_), 0)
        code = r.u8("Code")
        if code != 0:
            raise BadValueError(f"{cls.NAME} Code", "0", str(code), 1)
        r.u16("Checksum")
        reserved = r.u32("Reserved")
        r.end()
        _verify_checksum(cls.NAME, data)
        return cls(reserved, data)


IcmpMessage: TypeAlias = AgentAdvertisement | AgentSolicitation


def decode_icmp(data: bytes) -> IcmpMessage:
    """Decode an ICMP message by its Type: 9 (advertisement) or 10 (solicitation)."""
    if not data:
        raise UnknownTypeError("ICMP Type", "9 or 10", "empty message", 0)
    if data[0] == AGENT_ADVERTISEMENT_TYPE:
        return AgentAdvertisement.decode(data)
    if data[0] == AGENT_SOLICITATION_TYPE:
        return AgentSolicitation.decode(data)
    raise UnknownTypeError("ICMP Type", "9 or 10", str(data[0]), 0)
