"""Registration Request and Reply (RFC 5944 sections 3.3 and 3.4), authenticators (3.5.1)
and the Identification field (5.7).

Request, Type 1, 24 fixed bytes then extensions::

    Type (8) | S B D M G r T x (8) | Lifetime (16)
    Home Address (32) | Home Agent (32) | Care-of Address (32) | Identification (64)

Reply, Type 3, 20 fixed bytes then extensions::

    Type (8) | Code (8) | Lifetime (16)
    Home Address (32) | Home Agent (32) | Identification (64)

Both travel as the payload of one UDP datagram (port 434), so a message is at most
:data:`MAX_MESSAGE_SIZE` bytes. Decoding keeps ``raw`` (the whole message) and each
extension's ``offset`` in it, which is what :func:`protected_bytes` reads.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import ipaddress
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias, TypeVar

from mvpn.wire.codes import ReplyCode, describe, lookup
from mvpn.wire.errors import BadValueError, LengthError, UnknownTypeError
from mvpn.wire.extensions import (
    REGISTRATION_EXTENSIONS,
    SPI_SIZE,
    AuthenticationExtension,
    Extension,
    ExtensionRegistry,
    encode_extensions,
)
from mvpn.wire.reader import Reader

__all__ = [
    "MAX_MESSAGE_SIZE",
    "NTP_UNIX_OFFSET",
    "REGISTRATION_REPLY_TYPE",
    "REGISTRATION_REQUEST_TYPE",
    "REPLY_FIXED_SIZE",
    "REQUEST_FIXED_SIZE",
    "Identification",
    "RegistrationMessage",
    "RegistrationReply",
    "RegistrationRequest",
    "RequestFlags",
    "append_authenticator",
    "bytes_before",
    "decode_registration",
    "protected_bytes",
    "with_authenticator",
]

REGISTRATION_REQUEST_TYPE = 1
REGISTRATION_REPLY_TYPE = 3

MAX_MESSAGE_SIZE = 65535 - 20 - 8
"""The largest UDP payload over IPv4: an IP datagram of 65535 minus the 20-byte IP header
and the 8-byte UDP header. Registration messages are UDP payloads (RFC 5944 section 3)."""

_REQUEST = struct.Struct("!BBHIIIQ")
_REPLY = struct.Struct("!BBHIIQ")
REQUEST_FIXED_SIZE = _REQUEST.size
"""24 bytes before the first extension of a request (RFC 5944 section 3.3)."""
REPLY_FIXED_SIZE = _REPLY.size
"""20 bytes before the first extension of a reply (RFC 5944 section 3.4)."""

_U16_MAX = 0xFFFF
_U64_MAX = (1 << 64) - 1


class RequestFlags(enum.IntFlag):
    """The flag byte of a Registration Request (RFC 5944 section 3.3), high bit first.

    ``RESERVED_R`` and ``RESERVED_X`` are sent as zero and ignored on receipt; the codec
    keeps whatever arrived so that the message re-encodes unchanged.
    """

    NONE = 0
    S = 0x80
    """Simultaneous bindings: keep earlier care-of addresses."""
    B = 0x40
    """Broadcast datagrams: tunnel broadcasts on the home network to the mobile node."""
    D = 0x20
    """Decapsulation by the mobile node (co-located care-of address)."""
    M = 0x10
    """Minimal encapsulation (RFC 2004) requested."""
    G = 0x08
    """GRE encapsulation (RFC 2784) requested."""
    RESERVED_R = 0x04
    """``r``: reserved, sent as zero."""
    T = 0x02
    """Reverse tunnelling requested (RFC 3024)."""
    RESERVED_X = 0x01
    """``x``: reserved, sent as zero."""


def _flag_names(flags: int, flag_type: type[enum.IntFlag]) -> str:
    names = [m.name for m in flag_type if m.value and flags & m.value and m.name]
    return "|".join(names) or "0"


def _check_uint(what: str, name: str, value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise BadValueError(f"{what} {name}", f"an integer in [0, {limit}]", repr(value))


def _check_ipv4(what: str, name: str, value: ipaddress.IPv4Address) -> None:
    if not isinstance(value, ipaddress.IPv4Address):
        raise BadValueError(f"{what} {name}", "an IPv4Address", type(value).__name__)


def _check_size(what: str, size: int) -> None:
    if size > MAX_MESSAGE_SIZE:
        raise LengthError(what, f"at most {MAX_MESSAGE_SIZE} bytes", f"{size} bytes")


def _extensions_repr(extensions: tuple[Extension, ...]) -> str:
    return "[" + ", ".join(repr(e) for e in extensions) + "]"


class _RegistrationMessage(abc.ABC):
    """What the Request and the Reply share: the fixed part, then the extensions."""

    TYPE: ClassVar[int]
    FIXED_SIZE: ClassVar[int]
    NAME: ClassVar[str]
    extensions: tuple[Extension, ...]

    @classmethod
    def fixed_size(cls) -> int:
        """The bytes before the first extension (24 for a request, 20 for a reply)."""
        return cls.FIXED_SIZE

    @abc.abstractmethod
    def encode_fixed(self) -> bytes:
        """The bytes before the extensions."""

    def encode(self) -> bytes:
        """The whole message: the fixed part, then every extension in order.

        :raises LengthError: the message would not fit in one UDP datagram.
        """
        data = self.encode_fixed() + encode_extensions(self.extensions)
        _check_size(self.NAME, len(data))
        return data

    @classmethod
    def _reader(cls, data: bytes) -> Reader:
        """A reader past the Type byte, once size and Type are checked."""
        _check_size(cls.NAME, len(data))
        r = Reader(data, cls.NAME)
        type_ = r.u8("Type")
        if type_ != cls.TYPE:
            raise UnknownTypeError(f"{cls.NAME} Type", str(cls.TYPE), str(type_), 0)
        return r


@dataclass(frozen=True, repr=False)
class RegistrationRequest(_RegistrationMessage):
    """Registration Request, Type 1 (RFC 5944 section 3.3)."""

    TYPE: ClassVar[int] = REGISTRATION_REQUEST_TYPE
    FIXED_SIZE: ClassVar[int] = REQUEST_FIXED_SIZE
    NAME: ClassVar[str] = "Registration Request"

    flags: RequestFlags
    lifetime: int
    """Seconds; 0 deregisters, 0xFFFF means infinity."""
    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    care_of_address: ipaddress.IPv4Address
    identification: int
    extensions: tuple[Extension, ...] = ()
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        what = self.NAME
        _check_uint(what, "flags", int(self.flags), 0xFF)
        _check_uint(what, "Lifetime", self.lifetime, _U16_MAX)
        _check_ipv4(what, "Home Address", self.home_address)
        _check_ipv4(what, "Home Agent", self.home_agent)
        _check_ipv4(what, "Care-of Address", self.care_of_address)
        _check_uint(what, "Identification", self.identification, _U64_MAX)
        if not isinstance(self.extensions, tuple):
            raise BadValueError(f"{what} extensions", "a tuple", type(self.extensions).__name__)

    def encode_fixed(self) -> bytes:
        """The 24 bytes before the extensions."""
        return _REQUEST.pack(
            self.TYPE,
            int(self.flags),
            self.lifetime,
            int(self.home_address),
            int(self.home_agent),
            int(self.care_of_address),
            self.identification,
        )

    @classmethod
    def decode(
        cls, data: bytes, registry: ExtensionRegistry = REGISTRATION_EXTENSIONS
    ) -> RegistrationRequest:
        """Parse a whole Registration Request; ``raw`` keeps ``data``."""
        data = bytes(data)
        r = cls._reader(data)
        flags = RequestFlags(r.u8("flags"))
        lifetime = r.u16("Lifetime")
        home_address = r.ipv4("Home Address")
        home_agent = r.ipv4("Home Agent")
        care_of = r.ipv4("Care-of Address")
        identification = r.u64("Identification")
        extensions = registry.decode(r.rest(), cls.FIXED_SIZE)
        return cls(
            flags, lifetime, home_address, home_agent, care_of, identification, extensions, data
        )

    def __repr__(self) -> str:
        return (
            f"RegistrationRequest(flags={_flag_names(self.flags, RequestFlags)}, "
            f"lifetime={self.lifetime}, home_address={self.home_address}, "
            f"home_agent={self.home_agent}, care_of_address={self.care_of_address}, "
            f"identification={self.identification:#018x}, "
            f"extensions={_extensions_repr(self.extensions)})"
        )


@dataclass(frozen=True, repr=False)
class RegistrationReply(_RegistrationMessage):
    """Registration Reply, Type 3 (RFC 5944 section 3.4).

    ``code`` is a :class:`~mvpn.wire.codes.ReplyCode` when known and the plain integer
    otherwise, so a new code from a peer is reported rather than rejected.
    """

    TYPE: ClassVar[int] = REGISTRATION_REPLY_TYPE
    FIXED_SIZE: ClassVar[int] = REPLY_FIXED_SIZE
    NAME: ClassVar[str] = "Registration Reply"

    code: ReplyCode | int
    lifetime: int
    """Seconds granted; 0 confirms a deregistration, 0xFFFF means infinity."""
    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    identification: int
    extensions: tuple[Extension, ...] = ()
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        what = self.NAME
        _check_uint(what, "Code", int(self.code), 0xFF)
        _check_uint(what, "Lifetime", self.lifetime, _U16_MAX)
        _check_ipv4(what, "Home Address", self.home_address)
        _check_ipv4(what, "Home Agent", self.home_agent)
        _check_uint(what, "Identification", self.identification, _U64_MAX)
        if not isinstance(self.extensions, tuple):
            raise BadValueError(f"{what} extensions", "a tuple", type(self.extensions).__name__)

    @property
    def accepted(self) -> bool:
        """Codes 0 and 1 accept the registration; any other code, known or not, denies it."""
        return int(self.code) in (ReplyCode.ACCEPTED, ReplyCode.ACCEPTED_NO_SIMULTANEOUS_BINDINGS)

    def encode_fixed(self) -> bytes:
        """The 20 bytes before the extensions."""
        return _REPLY.pack(
            self.TYPE,
            int(self.code),
            self.lifetime,
            int(self.home_address),
            int(self.home_agent),
            self.identification,
        )

    @classmethod
    def decode(
        cls, data: bytes, registry: ExtensionRegistry = REGISTRATION_EXTENSIONS
    ) -> RegistrationReply:
        """Parse a whole Registration Reply; ``raw`` keeps ``data``."""
        data = bytes(data)
        r = cls._reader(data)
        code = lookup(ReplyCode, r.u8("Code"))
        lifetime = r.u16("Lifetime")
        home_address = r.ipv4("Home Address")
        home_agent = r.ipv4("Home Agent")
        identification = r.u64("Identification")
        extensions = registry.decode(r.rest(), cls.FIXED_SIZE)
        return cls(code, lifetime, home_address, home_agent, identification, extensions, data)

    def __repr__(self) -> str:
        return (
            f"RegistrationReply(code={describe(self.code)}, lifetime={self.lifetime}, "
            f"home_address={self.home_address}, home_agent={self.home_agent}, "
            f"identification={self.identification:#018x}, "
            f"extensions={_extensions_repr(self.extensions)})"
        )


RegistrationMessage: TypeAlias = RegistrationRequest | RegistrationReply
M = TypeVar("M", RegistrationRequest, RegistrationReply)


def decode_registration(
    data: bytes, registry: ExtensionRegistry = REGISTRATION_EXTENSIONS
) -> RegistrationMessage:
    """Decode a datagram from the registration port by its first byte (1 or 3)."""
    if not data:
        raise UnknownTypeError("registration message Type", "1 or 3", "empty datagram", 0)
    if data[0] == REGISTRATION_REQUEST_TYPE:
        return RegistrationRequest.decode(data, registry)
    if data[0] == REGISTRATION_REPLY_TYPE:
        return RegistrationReply.decode(data, registry)
    raise UnknownTypeError("registration message Type", "1 or 3", str(data[0]), 0)


def _index_of(message: RegistrationMessage, ext: Extension) -> int:
    for i, candidate in enumerate(message.extensions):
        if candidate is ext:
            return i
    for i, candidate in enumerate(message.extensions):
        if candidate == ext:
            return i
    raise ValueError(f"{ext!r} is not an extension of {message!r}")


def bytes_before(message: RegistrationMessage, ext: Extension) -> bytes:
    """The message up to ``ext``: the fixed part and every earlier extension in its entirety.

    For a decoded message (``raw`` set and ``ext`` carrying its ``offset``) the bytes are cut
    from what arrived; for a message built here, from its encoding. This is the "P" of the
    MVPN signatures and the start of every RFC 5944 authenticator's input.

    :raises ValueError: ``ext`` is not one of the message's extensions.
    """
    index = _index_of(message, ext)
    if message.raw is not None and ext.offset is not None:
        if not message.fixed_size() <= ext.offset <= len(message.raw):
            raise ValueError(f"{ext!r} does not lie inside the message's raw bytes")
        return message.raw[: ext.offset]
    return message.encode_fixed() + encode_extensions(message.extensions[:index])


def protected_bytes(message: RegistrationMessage, ext: Extension) -> bytes:
    """The bytes the authenticator of ``ext`` covers (RFC 5944 section 3.5.1).

    That is :func:`bytes_before` ``ext`` followed by ``ext``'s Type, Length and SPI (its
    first 6 bytes, as received when decoded).

    :raises ValueError: ``ext`` is not one of the message's extensions, or is not an
        authentication extension (32, 33, 34 or another ``Type | Length | SPI`` TLV).
    """
    if not isinstance(ext, AuthenticationExtension):
        raise ValueError(f"{ext!r} is not an authentication extension")
    head = ext.raw[: 2 + SPI_SIZE] if ext.raw is not None else ext.header()
    return bytes_before(message, ext) + head


def with_authenticator(
    message: M,
    ext_type: type[AuthenticationExtension],
    spi: int,
    authenticator_size: int,
    compute: Callable[[bytes], bytes],
) -> M:
    """``message`` with an authentication extension appended, its authenticator computed.

    The Length field, which the authenticator covers, depends on the authenticator's size,
    so the caller states ``authenticator_size`` (16 for HMAC-MD5, 32 for HMAC-SHA256);
    ``compute(protected)`` returns the authenticator over the protected bytes. Keeping the
    callback here keeps any cryptography out of :mod:`mvpn.wire`.

    :raises ValueError: ``compute`` returned a value of another size.
    """
    placeholder = ext_type(spi, bytes(authenticator_size))
    draft = dataclasses.replace(message, extensions=(*message.extensions, placeholder), raw=None)
    authenticator = compute(protected_bytes(draft, placeholder))
    if len(authenticator) != authenticator_size:
        raise ValueError(
            f"authenticator is {len(authenticator)} bytes, announced {authenticator_size}"
        )
    final = ext_type(spi, authenticator)
    return dataclasses.replace(message, extensions=(*message.extensions, final), raw=None)


def append_authenticator(
    encoded: bytes,
    ext_type: type[AuthenticationExtension],
    spi: int,
    authenticator_size: int,
    compute: Callable[[bytes], bytes],
) -> bytes:
    """:func:`with_authenticator` on an already encoded message: the same bytes, without
    building the message again. The protected bytes are, by RFC 5944 3.5.1, everything
    before the new extension and its Type, Length and SPI: here ``encoded`` and that head.

    :raises ValueError: ``compute`` returned a value of another size.
    """
    head = ext_type(spi, bytes(authenticator_size)).header()
    protected = encoded + head
    authenticator = compute(protected)
    if len(authenticator) != authenticator_size:
        raise ValueError(
            f"authenticator is {len(authenticator)} bytes, announced {authenticator_size}"
        )
    return protected + authenticator


NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from 1900-01-01 (the NTP epoch) to 1970-01-01 (the Unix epoch)."""

_U32_MAX = 0xFFFFFFFF
_FRACTION = 1 << 32
_FIRST_TIME = (1 << 31) - NTP_UNIX_OFFSET
"""1968-01-20: the earliest time :meth:`Identification.unix_time` reads back (top bit set)."""
_LAST_TIME = (1 << 32) + (1 << 31) - NTP_UNIX_OFFSET
"""2104-02-26: past it, NTP seconds would read back as 1968 (RFC 4330 section 3 pivot)."""


@dataclass(frozen=True)
class Identification:
    """The 64-bit Identification field, as its two 32-bit halves (RFC 5944 section 5.7).

    - Timestamps (5.7.1): the request carries a 64-bit NTP timestamp, ``high`` the seconds
      since 1900 and ``low`` the binary fraction of a second. The reply copies ``low``
      from the request; its ``high`` is the home agent's time when it refuses with code 133.
    - Nonces (5.7.2): the request carries the home agent's last nonce in ``high`` and a new
      mobile node nonce in ``low``; the reply copies ``low`` and puts the home agent's next
      nonce in ``high``.

    The helpers are pure: the time and the random numbers are arguments.
    """

    high: int
    low: int

    def __post_init__(self) -> None:
        _check_uint("Identification", "high 32 bits", self.high, _U32_MAX)
        _check_uint("Identification", "low 32 bits", self.low, _U32_MAX)

    def __int__(self) -> int:
        return (self.high << 32) | self.low

    @property
    def value(self) -> int:
        """The 64-bit field."""
        return int(self)

    @classmethod
    def from_int(cls, value: int) -> Identification:
        """Split a 64-bit Identification into its halves."""
        _check_uint("Identification", "value", value, _U64_MAX)
        return cls(value >> 32, value & _U32_MAX)

    @classmethod
    def from_unix_time(cls, unix_time: float) -> Identification:
        """The NTP timestamp of a Unix time in seconds (seconds modulo 2**32, so 2036's wrap
        is handled by :meth:`unix_time`'s pivot); times outside 1968 to 2104 are refused."""
        if not math.isfinite(unix_time) or not _FIRST_TIME <= unix_time < _LAST_TIME:
            raise BadValueError(
                "Identification time",
                f"a Unix time in [{_FIRST_TIME}, {_LAST_TIME}) (1968 to 2104)",
                repr(unix_time),
            )
        whole = math.floor(unix_time)
        fraction = int((unix_time - whole) * _FRACTION)
        return cls((whole + NTP_UNIX_OFFSET) & _U32_MAX, min(fraction, _U32_MAX))

    def unix_time(self) -> float:
        """The Unix time of a timestamp Identification.

        NTP seconds wrap in 2036: a value with the top bit clear is read as after the wrap
        (2036 to 2104), as RFC 4330 section 3 recommends, so times from 1968 to 2104 work.
        """
        seconds = self.high if self.high & 0x80000000 else self.high + _FRACTION
        return seconds - NTP_UNIX_OFFSET + self.low / _FRACTION

    def skew(self, now: float) -> float:
        """How far this timestamp is ahead of ``now`` (negative when behind), in seconds."""
        return self.unix_time() - now

    @classmethod
    def for_nonces(cls, home_nonce: int, mobile_nonce: int) -> Identification:
        """A nonce-mode request: the home agent's last nonce, then a fresh mobile nonce."""
        return cls(home_nonce, mobile_nonce)

    def reply(self, high: int) -> Identification:
        """The reply to a request with this Identification: ``low`` copied, ``high`` given
        (the home agent's time or next nonce)."""
        return Identification(high, self.low)

    def answers(self, reply: Identification) -> bool:
        """Whether ``reply`` can answer a request with this Identification (low halves
        equal; RFC 5944 section 5.7)."""
        return reply.low == self.low

    def __repr__(self) -> str:
        return f"Identification(high={self.high:#010x}, low={self.low:#010x})"
