"""The Mobile IP extension framework (RFC 5944 sections 1.9 to 1.11) and extensions 32 to 34.

Extensions follow the fixed part of a Registration Request or Reply (and of an ICMP Agent
Advertisement) back to back. Each one starts with its Type; what follows depends on the
format the type uses:

- :attr:`ExtensionFormat.TLV` (section 1.9): ``Type (8) | Length (8) | data``; Length counts
  the data only. Used by 32, 33, 34 (authentication) and 16, 19 (advertisement).
- :attr:`ExtensionFormat.SHORT` (section 1.11): ``Type | Length (8) | Sub-Type (8) | data``;
  Length counts the Sub-Type and the data.
- :attr:`ExtensionFormat.LONG` (section 1.10): ``Type | Sub-Type (8) | Length (16) | data``;
  Length counts the data only.
- :attr:`ExtensionFormat.PAD`: the one-byte Padding extension of advertisements (section
  2.1.3), a Type 0 byte with no Length and no data.

A registry maps type numbers to classes. A type nobody registered is parsed as TLV (the only
layout an agent can assume, section 1.9) into :class:`UnknownExtension`, which re-encodes
byte for byte. Whether an unknown type is fatal (0 to 127) or skipped (128 to 255) is policy
above the codec: :attr:`UnknownExtension.skippable` only says which range it is in.

Every decoded extension keeps ``raw`` (its exact bytes) and ``offset`` (where it starts in the
enclosing message). Neither takes part in equality, and both let an authenticator be checked
over exactly what arrived (see :func:`mvpn.wire.registration.protected_bytes`).

Adding an extension type: write a frozen dataclass with ``TYPE: ClassVar[int]``, ``FORMAT:
ClassVar[ExtensionFormat]``, ``raw``/``offset`` fields (inherit :class:`ExtensionBase` for
them), ``encode()`` (use :func:`encode_extension`) and a classmethod
``from_wire(sub_type, body, raw, offset)``; then ``register_extension(cls)``. For the short
and long formats a class may also declare ``SUB_TYPE: ClassVar[int]`` to claim one Sub-Type
only, and :func:`register_decoder` claims every other Sub-Type of a type; a Sub-Type that
nobody claims decodes to :class:`UnknownSubTypeExtension`, which re-encodes unchanged.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar

from mvpn.wire.errors import BadValueError, LengthError
from mvpn.wire.reader import Reader

__all__ = [
    "ADVERTISEMENT_EXTENSIONS",
    "AUTHENTICATION_TYPES",
    "FOREIGN_HOME_AUTH_TYPE",
    "MAX_AUTHENTICATOR_SIZE",
    "MAX_EXTENSIONS",
    "MAX_LONG_LENGTH",
    "MAX_TLV_LENGTH",
    "MOBILE_FOREIGN_AUTH_TYPE",
    "MOBILE_HOME_AUTH_TYPE",
    "REGISTRATION_EXTENSIONS",
    "SKIPPABLE_FROM",
    "AuthenticationExtension",
    "Extension",
    "ExtensionBase",
    "ExtensionFormat",
    "ExtensionRegistry",
    "ForeignHomeAuthExtension",
    "MobileForeignAuthExtension",
    "MobileHomeAuthExtension",
    "UnknownExtension",
    "UnknownSubTypeExtension",
    "decode_extensions",
    "encode_extension",
    "encode_extensions",
    "encode_long",
    "encode_short",
    "encode_tlv",
    "extension_type",
    "is_skippable",
    "register_decoder",
    "register_extension",
]

MAX_TLV_LENGTH = 0xFF
"""The 8-bit Length of the TLV and short formats (RFC 5944 sections 1.9 and 1.11)."""

MAX_LONG_LENGTH = 0xFFFF
"""The 16-bit Length of the long format (RFC 5944 section 1.10)."""

MAX_EXTENSIONS = 64
"""Most extensions decoded from one message: bounds the work a hostile datagram can cause;
a real request (MN-HA, MN-FA, FA-HA, NAI, four MVPN extensions) carries fewer than 16."""

SKIPPABLE_FROM = 128
"""Types 128 to 255 may be skipped when unknown; 0 to 127 make the message invalid (1.9)."""

MOBILE_HOME_AUTH_TYPE = 32
MOBILE_FOREIGN_AUTH_TYPE = 33
FOREIGN_HOME_AUTH_TYPE = 34
AUTHENTICATION_TYPES = frozenset(
    {MOBILE_HOME_AUTH_TYPE, MOBILE_FOREIGN_AUTH_TYPE, FOREIGN_HOME_AUTH_TYPE}
)

SPI_SIZE = 4
"""The Security Parameter Index of an authentication extension (RFC 5944 section 3.5.1)."""

MAX_AUTHENTICATOR_SIZE = MAX_TLV_LENGTH - SPI_SIZE
"""The 8-bit Length covers the SPI and the authenticator, so 251 bytes at most."""

_SHORT_HEADER = struct.Struct("!BBB")
_LONG_HEADER = struct.Struct("!BBH")
_TLV_HEADER = struct.Struct("!BB")
_SPI = struct.Struct("!I")


def is_skippable(type_: int) -> bool:
    """Whether an agent that does not know ``type_`` may skip it (RFC 5944 section 1.9)."""
    return type_ >= SKIPPABLE_FROM


class ExtensionFormat(enum.Enum):
    """How an extension type lays out its header (RFC 5944 sections 1.9 to 1.11, 2.1.3)."""

    TLV = "tlv"
    SHORT = "short"
    LONG = "long"
    PAD = "pad"


def _check_type(type_: int) -> None:
    if isinstance(type_, bool) or not isinstance(type_, int) or not 0 <= type_ <= 0xFF:
        raise BadValueError("extension Type", "an integer in [0, 255]", repr(type_))


def encode_extension(
    fmt: ExtensionFormat, type_: int, body: bytes = b"", sub_type: int | None = None
) -> bytes:
    """One whole extension of format ``fmt``; refuses a body its Length cannot describe.

    ``sub_type`` is required for the short and long formats and refused otherwise.
    """
    _check_type(type_)
    if fmt is ExtensionFormat.PAD:
        if body or sub_type is not None:
            raise BadValueError(f"extension {type_}", "no data (padding)", f"{len(body)} bytes")
        return bytes((type_,))
    if fmt is ExtensionFormat.TLV:
        if sub_type is not None:
            raise BadValueError(f"extension {type_} Sub-Type", "none (TLV format)", str(sub_type))
        if len(body) > MAX_TLV_LENGTH:
            raise LengthError(
                f"extension {type_} data", f"at most {MAX_TLV_LENGTH} bytes", f"{len(body)}"
            )
        return _TLV_HEADER.pack(type_, len(body)) + body
    if sub_type is None or not 0 <= sub_type <= 0xFF:
        raise BadValueError(
            f"extension {type_} Sub-Type", "an integer in [0, 255]", repr(sub_type)
        )
    if fmt is ExtensionFormat.SHORT:
        # The short form's Length counts the Sub-Type byte too (section 1.11).
        if len(body) + 1 > MAX_TLV_LENGTH:
            raise LengthError(
                f"extension {type_} data", f"at most {MAX_TLV_LENGTH - 1} bytes", f"{len(body)}"
            )
        return _SHORT_HEADER.pack(type_, len(body) + 1, sub_type) + body
    if len(body) > MAX_LONG_LENGTH:
        raise LengthError(
            f"extension {type_} data", f"at most {MAX_LONG_LENGTH} bytes", f"{len(body)}"
        )
    return _LONG_HEADER.pack(type_, sub_type, len(body)) + body


def encode_tlv(type_: int, body: bytes) -> bytes:
    """``Type | Length (8) | data`` (RFC 5944 section 1.9)."""
    return encode_extension(ExtensionFormat.TLV, type_, body)


def encode_short(type_: int, sub_type: int, body: bytes) -> bytes:
    """``Type | Length (8) | Sub-Type | data`` (RFC 5944 section 1.11)."""
    return encode_extension(ExtensionFormat.SHORT, type_, body, sub_type)


def encode_long(type_: int, sub_type: int, body: bytes) -> bytes:
    """``Type | Sub-Type | Length (16) | data`` (RFC 5944 section 1.10)."""
    return encode_extension(ExtensionFormat.LONG, type_, body, sub_type)


class Extension(Protocol):
    """What the framework needs of every extension value, registered or not."""

    @property
    def raw(self) -> bytes | None:
        """The exact bytes it was decoded from (``None`` when built locally)."""

    @property
    def offset(self) -> int | None:
        """Where it started in the enclosing message (``None`` when built locally)."""

    def encode(self) -> bytes:
        """The whole extension, header included."""


def extension_type(ext: Extension) -> int:
    """The Type byte of any extension value."""
    return (ext.raw or ext.encode())[0]


@dataclass(frozen=True)
class ExtensionBase:
    """Shared fields for registered extensions: ``raw`` and ``offset``, keyword-only and
    excluded from equality, so a decoded value equals the one that was encoded."""

    TYPE: ClassVar[int]
    FORMAT: ClassVar[ExtensionFormat]

    raw: bytes | None = field(default=None, compare=False, repr=False, kw_only=True)
    offset: int | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def skippable(self) -> bool:
        """Whether an agent that did not know this type could skip it (section 1.9)."""
        return is_skippable(self.TYPE)


@dataclass(frozen=True)
class UnknownExtension:
    """An extension whose type nobody registered, parsed as TLV (RFC 5944 section 1.9).

    It re-encodes byte for byte; :attr:`skippable` tells policy which range it is in.
    """

    type: int
    body: bytes
    raw: bytes | None = field(default=None, compare=False, repr=False)
    offset: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_type(self.type)
        if not isinstance(self.body, bytes):
            raise BadValueError("unknown extension data", "bytes", type(self.body).__name__)
        if len(self.body) > MAX_TLV_LENGTH:
            raise LengthError(
                f"extension {self.type} data",
                f"at most {MAX_TLV_LENGTH} bytes",
                f"{len(self.body)} bytes",
            )

    @property
    def skippable(self) -> bool:
        """True for 128 to 255 (skip and go on), False for 0 to 127 (drop the message)."""
        return is_skippable(self.type)

    def encode(self) -> bytes:
        """``Type | Length | data``, as received."""
        return encode_tlv(self.type, self.body)

    def __repr__(self) -> str:
        kind = "skippable" if self.skippable else "not skippable"
        return f"UnknownExtension(type={self.type}, {kind}, body={self.body.hex() or '-'})"


@dataclass(frozen=True)
class UnknownSubTypeExtension:
    """A short- or long-format type that is registered, with a Sub-Type nobody registered.

    The header is known, so the value keeps the Sub-Type and the data and re-encodes byte
    for byte; whether to refuse it is policy.
    """

    type: int
    format: ExtensionFormat
    sub_type: int
    body: bytes
    raw: bytes | None = field(default=None, compare=False, repr=False)
    offset: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.format not in (ExtensionFormat.SHORT, ExtensionFormat.LONG):
            raise BadValueError(
                f"extension {self.type} format", "short or long", str(self.format.value)
            )
        # Building the bytes checks the Type, Sub-Type and data length once, here.
        self.encode()

    @property
    def skippable(self) -> bool:
        """Whether an agent that did not know this type could skip it (section 1.9)."""
        return is_skippable(self.type)

    def encode(self) -> bytes:
        """The whole extension, as received."""
        return encode_extension(self.format, self.type, self.body, self.sub_type)

    def __repr__(self) -> str:
        return (
            f"UnknownSubTypeExtension(type={self.type}, {self.format.value}, "
            f"sub_type={self.sub_type}, body={self.body.hex() or '-'})"
        )


FromWire = Callable[[int | None, bytes, bytes, int], Extension]
"""``from_wire(sub_type, body, raw, offset)``: how a registered type builds its value."""

T = TypeVar("T")


class ExtensionRegistry:
    """Type number (and Sub-Type) -> format and builder, for one message family.

    Registration messages and ICMP advertisements number their extensions separately (two
    IANA registries), so each has its own registry; tests copy one to add test-only types.
    For the short and long formats a builder may serve one Sub-Type (a class with
    ``SUB_TYPE``) or every Sub-Type of its type (:meth:`register_decoder`); a Sub-Type with
    neither decodes to :class:`UnknownSubTypeExtension`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._formats: dict[int, ExtensionFormat] = {}
        self._by_type: dict[int, FromWire] = {}
        self._by_sub_type: dict[tuple[int, int], FromWire] = {}
        self._owners: dict[tuple[int, int | None], object] = {}

    def _claim(
        self, type_: int, sub_type: int | None, fmt: ExtensionFormat, owner: object
    ) -> None:
        held_format = self._formats.get(type_)
        if held_format is not None and held_format is not fmt:
            raise ValueError(
                f"{self.name} extension type {type_} is {held_format.value}, not {fmt.value}"
            )
        if sub_type is not None and fmt not in (ExtensionFormat.SHORT, ExtensionFormat.LONG):
            raise ValueError(f"{self.name} extension type {type_}: only short/long have Sub-Types")
        held = self._owners.get((type_, sub_type))
        if held is not None and held is not owner:
            raise ValueError(
                f"{self.name} extension {type_}/{sub_type} already registered to {held!r}"
            )
        self._formats[type_] = fmt
        self._owners[(type_, sub_type)] = owner

    def register(self, cls: type[T]) -> type[T]:
        """Register ``cls`` by its ``TYPE``, ``FORMAT`` and optional ``SUB_TYPE``.

        Usable as a class decorator; registering the same class twice is harmless.

        :raises TypeError: ``cls`` lacks ``TYPE``, ``FORMAT`` or ``from_wire``.
        :raises ValueError: the number is taken, or its format disagrees.
        """
        type_ = getattr(cls, "TYPE", None)
        fmt = getattr(cls, "FORMAT", None)
        sub_type = getattr(cls, "SUB_TYPE", None)
        from_wire = getattr(cls, "from_wire", None)
        if isinstance(type_, bool) or not isinstance(type_, int) or not 0 <= type_ <= 0xFF:
            raise TypeError(f"{cls.__name__}.TYPE must be an int in [0, 255], not {type_!r}")
        if not isinstance(fmt, ExtensionFormat):
            raise TypeError(f"{cls.__name__}.FORMAT must be an ExtensionFormat, not {fmt!r}")
        if sub_type is not None and (not isinstance(sub_type, int) or not 0 <= sub_type <= 0xFF):
            raise TypeError(f"{cls.__name__}.SUB_TYPE must be an int in [0, 255]")
        if not callable(from_wire):
            raise TypeError(f"{cls.__name__} needs from_wire(sub_type, body, raw, offset)")
        self._claim(type_, sub_type, fmt, cls)
        if sub_type is None:
            self._by_type[type_] = from_wire
        else:
            self._by_sub_type[(type_, int(sub_type))] = from_wire
        return cls

    def register_decoder(self, type_: int, fmt: ExtensionFormat, decoder: FromWire) -> None:
        """Decode every Sub-Type of ``type_`` without a class of its own with ``decoder``."""
        _check_type(type_)
        self._claim(type_, None, fmt, decoder)
        self._by_type[type_] = decoder

    def unregister(self, type_: int) -> None:
        """Forget ``type_`` and its Sub-Types (it decodes as :class:`UnknownExtension`)."""
        self._formats.pop(type_, None)
        self._by_type.pop(type_, None)
        for key in [k for k in self._by_sub_type if k[0] == type_]:
            del self._by_sub_type[key]
        for owner_key in [k for k in self._owners if k[0] == type_]:
            del self._owners[owner_key]

    def copy(self, name: str | None = None) -> ExtensionRegistry:
        """An independent registry with the same entries."""
        new = ExtensionRegistry(name or self.name)
        new._formats = dict(self._formats)
        new._by_type = dict(self._by_type)
        new._by_sub_type = dict(self._by_sub_type)
        new._owners = dict(self._owners)
        return new

    def format_of(self, type_: int) -> ExtensionFormat:
        """The format ``type_`` is parsed with (TLV when unregistered)."""
        return self._formats.get(type_, ExtensionFormat.TLV)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._formats

    def __repr__(self) -> str:
        types = ", ".join(f"{t}:{f.value}" for t, f in sorted(self._formats.items()))
        return f"<ExtensionRegistry {self.name}: {types}>"

    def decode(self, data: bytes, offset_base: int = 0) -> tuple[Extension, ...]:
        """Every extension in ``data`` (which holds nothing else), in order.

        ``offset_base`` is where ``data`` starts in the enclosing message, so each
        extension's ``offset`` is relative to that message.
        """
        r = Reader(data, f"{self.name} extension")
        found: list[Extension] = []
        while r.remaining:
            if len(found) >= MAX_EXTENSIONS:
                raise LengthError(
                    f"{self.name} extensions",
                    f"at most {MAX_EXTENSIONS} extensions",
                    f"more ({r.remaining} bytes left)",
                    offset_base + r.offset,
                )
            found.append(self._decode_one(r, offset_base))
        return tuple(found)

    def _decode_one(self, r: Reader, offset_base: int) -> Extension:
        start = r.offset
        type_ = r.u8("Type")
        fmt = self._formats.get(type_)
        sub_type: int | None = None
        if fmt is ExtensionFormat.PAD:
            body = b""
        elif fmt is None or fmt is ExtensionFormat.TLV:
            body = r.take(r.u8(f"{type_} Length"), f"{type_} data")
        elif fmt is ExtensionFormat.SHORT:
            length = r.u8(f"{type_} Length")
            if length < 1:
                raise LengthError(
                    f"{self.name} extension {type_} Length",
                    "at least 1 (it counts the Sub-Type)",
                    "0",
                    offset_base + start + 1,
                )
            sub_type = r.u8(f"{type_} Sub-Type")
            body = r.take(length - 1, f"{type_} data")
        else:
            sub_type = r.u8(f"{type_} Sub-Type")
            body = r.take(r.u16(f"{type_} Length"), f"{type_} data")
        raw = r.data[start : r.offset]
        offset = offset_base + start
        if fmt is None:
            return UnknownExtension(type_, body, raw, offset)
        if sub_type is None:
            # A registered TLV or PAD type always has its type-wide builder (register()).
            return self._by_type[type_](None, body, raw, offset)
        builder = self._by_sub_type.get((type_, sub_type)) or self._by_type.get(type_)
        if builder is None:
            return UnknownSubTypeExtension(type_, fmt, sub_type, body, raw, offset)
        return builder(sub_type, body, raw, offset)


REGISTRATION_EXTENSIONS = ExtensionRegistry("registration")
"""Extensions of Registration Requests and Replies (RFC 5944 section 3)."""

ADVERTISEMENT_EXTENSIONS = ExtensionRegistry("advertisement")
"""Extensions of ICMP Agent Advertisements (RFC 5944 section 2.1)."""


def register_extension(
    cls: type[T], registry: ExtensionRegistry = REGISTRATION_EXTENSIONS
) -> type[T]:
    """Register ``cls`` for its ``TYPE`` (registration messages unless told otherwise)."""
    return registry.register(cls)


def register_decoder(
    type_: int,
    fmt: ExtensionFormat,
    decoder: FromWire,
    registry: ExtensionRegistry = REGISTRATION_EXTENSIONS,
) -> None:
    """Decode every otherwise unclaimed Sub-Type of ``type_`` with ``decoder``."""
    registry.register_decoder(type_, fmt, decoder)


def decode_extensions(
    data: bytes, offset_base: int = 0, context: ExtensionRegistry = REGISTRATION_EXTENSIONS
) -> tuple[Extension, ...]:
    """Decode the extensions that fill ``data``, using the registry ``context``."""
    return context.decode(data, offset_base)


def encode_extensions(extensions: Iterable[Extension]) -> bytes:
    """The extensions back to back."""
    return b"".join(ext.encode() for ext in extensions)


@dataclass(frozen=True)
class AuthenticationExtension(ExtensionBase):
    """``Type | Length | SPI (32) | Authenticator``, Length = 4 + authenticator (3.5.1).

    The authenticator covers the message, every earlier extension and this one's Type,
    Length and SPI (see :func:`mvpn.wire.registration.protected_bytes`).
    """

    FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.TLV
    NAME: ClassVar[str] = "authentication extension"

    spi: int
    authenticator: bytes

    def __post_init__(self) -> None:
        if isinstance(self.spi, bool) or not isinstance(self.spi, int):
            raise BadValueError(f"{self.NAME} SPI", "an integer", type(self.spi).__name__)
        if not 0 <= self.spi <= 0xFFFFFFFF:
            raise BadValueError(f"{self.NAME} SPI", "an integer in [0, 2**32)", str(self.spi))
        if not isinstance(self.authenticator, bytes):
            raise BadValueError(
                f"{self.NAME} Authenticator", "bytes", type(self.authenticator).__name__
            )
        if len(self.authenticator) > MAX_AUTHENTICATOR_SIZE:
            raise LengthError(
                f"{self.NAME} Authenticator",
                f"at most {MAX_AUTHENTICATOR_SIZE} bytes",
                f"{len(self.authenticator)} bytes",
            )

    def header(self) -> bytes:
        """``Type | Length | SPI``: the part of this extension its authenticator covers."""
        return _TLV_HEADER.pack(self.TYPE, SPI_SIZE + len(self.authenticator)) + _SPI.pack(
            self.spi
        )

    def encode(self) -> bytes:
        """The whole extension."""
        return self.header() + self.authenticator

    @classmethod
    def from_wire(cls: type[A], sub_type: int | None, body: bytes, raw: bytes, offset: int) -> A:
        """Parse the data bytes (SPI then authenticator)."""
        if len(body) < SPI_SIZE:
            raise LengthError(
                f"{cls.NAME} Length", f"at least {SPI_SIZE} (the SPI)", str(len(body)), offset + 1
            )
        return cls(_SPI.unpack_from(body)[0], body[SPI_SIZE:], raw=raw, offset=offset)

    def __repr__(self) -> str:
        where = f", offset={self.offset}" if self.offset is not None else ""
        return (
            f"{type(self).__name__}(spi={self.spi:#x}, "
            f"authenticator={len(self.authenticator)} bytes{where})"
        )


A = TypeVar("A", bound=AuthenticationExtension)


@register_extension
@dataclass(frozen=True, repr=False)
class MobileHomeAuthExtension(AuthenticationExtension):
    """Mobile-Home Authentication Extension, type 32 (RFC 5944 section 3.5.2)."""

    TYPE: ClassVar[int] = MOBILE_HOME_AUTH_TYPE
    NAME: ClassVar[str] = "Mobile-Home Authentication Extension"


@register_extension
@dataclass(frozen=True, repr=False)
class MobileForeignAuthExtension(AuthenticationExtension):
    """Mobile-Foreign Authentication Extension, type 33 (RFC 5944 section 3.5.3)."""

    TYPE: ClassVar[int] = MOBILE_FOREIGN_AUTH_TYPE
    NAME: ClassVar[str] = "Mobile-Foreign Authentication Extension"


@register_extension
@dataclass(frozen=True, repr=False)
class ForeignHomeAuthExtension(AuthenticationExtension):
    """Foreign-Home Authentication Extension, type 34 (RFC 5944 section 3.5.4)."""

    TYPE: ClassVar[int] = FOREIGN_HOME_AUTH_TYPE
    NAME: ClassVar[str] = "Foreign-Home Authentication Extension"
