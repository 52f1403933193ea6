"""The MVPN registration extensions 36 to 39 (draft section 5; docs/protocol.md 4 to 6).

All four use RFC 5944's long extension format, ``Type (8) | Sub-Type (8) | Length (16) =
data bytes | data``, with the Sub-Type naming the public-key suite (docs/protocol.md 1):

- 36 :class:`MobileInfoExtension` (Sub-Type 1), 37 :class:`ForeignInfoExtension` (1),
- 38 :class:`HomeInfoExtension` (1) and :class:`KeyRefreshExtension` (128): the same type
  number, the Sub-Type selects the class,
- 39 :class:`MobileReplyExtension` (1),
- any other Sub-Type of 36 to 39: :class:`UnknownSuiteExtension`, which names the suite and
  keeps the data bytes; policy refuses it (reply code 134 at the HA, 70 at the FA).

Sealed blobs and signatures are opaque bytes. ``signed_part()`` returns the bytes of the
extension a signature covers (``E[0:26+n]`` and so on; ``P``, the message before the
extension, is the signature's other part and belongs to the registration layer). Where those
bytes include the Length, and so the size of a seal that will contain the signature
(extensions 38 and 39 sign, then seal), a classmethod ``signed_part_for(...)`` builds them
from the fields and the final sealed length, before the seal exists.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from mvpn.wire._fields import (
    MAX_LEN16,
    SIGNATURE_SIZE,
    U32,
    U64,
    check_bytes,
    check_size,
    check_uint,
    len16,
    offset_field,
    raw_field,
)
from mvpn.wire.codes import Suite, lookup
from mvpn.wire.errors import BadValueError, UnknownTypeError
from mvpn.wire.extensions import (
    ExtensionBase,
    ExtensionFormat,
    encode_long,
    is_skippable,
    register_decoder,
    register_extension,
)
from mvpn.wire.reader import Reader

__all__ = [
    "FOREIGN_INFO_TYPE",
    "HOME_INFO_TYPE",
    "KEY_REFRESH_SUB_TYPE",
    "LONG_HEADER_SIZE",
    "MOBILE_INFO_TYPE",
    "MOBILE_REPLY_TYPE",
    "ForeignInfoExtension",
    "HomeInfoExtension",
    "HomeToMobileBlock",
    "KeyRefreshExtension",
    "MobileInfoExtension",
    "MobileReplyExtension",
    "MvpnExtension",
    "UnknownSuiteExtension",
    "decode_mvpn_extension",
]

MOBILE_INFO_TYPE = 36
FOREIGN_INFO_TYPE = 37
HOME_INFO_TYPE = 38
MOBILE_REPLY_TYPE = 39
MVPN_TYPES = frozenset({MOBILE_INFO_TYPE, FOREIGN_INFO_TYPE, HOME_INFO_TYPE, MOBILE_REPLY_TYPE})

KEY_REFRESH_SUB_TYPE = 128
"""Sub-Type of extension 38 carrying a symmetric key refresh (docs/protocol.md 6.2)."""

LONG_HEADER_SIZE = 4

_DEFAULT_SUITE = Suite.ED25519_X25519_AES128GCM
_LAID_OUT_SUITES = frozenset({_DEFAULT_SUITE})
"""Suites whose extension layout docs/protocol.md defines (a 64-byte Ed25519 signature)."""


def _check_suite(what: str, suite: Suite | int) -> None:
    if suite not in _LAID_OUT_SUITES:
        raise BadValueError(
            f"{what} Sub-Type",
            f"a suite with a defined layout ({', '.join(str(int(s)) for s in _LAID_OUT_SUITES)})",
            str(int(suite)),
        )


def _suite(sub_type: int | None) -> Suite | int:
    """The suite a LONG extension's Sub-Type names (the registry always passes one)."""
    if sub_type is None:
        raise BadValueError("MVPN extension", "a Sub-Type", "none")
    return lookup(Suite, sub_type)


def _check_blob(what: str, name: str, value: bytes) -> None:
    check_bytes(what, name, value, MAX_LEN16)


@dataclass(frozen=True)
class HomeToMobileBlock:
    """``W``, the HA's message to the MN inside extensions 38 and 39 (doc 5.3).

    ``m (16) | seal_MN("home-to-mobile", W') | sig_HA("home-to-mobile", seal bytes)``. The FA
    copies it unchanged from 38 into 39; an extension without it carries ``w = 0``.
    """

    SEAL_LABEL: ClassVar[str] = "home-to-mobile"
    SIGNATURE_LABEL: ClassVar[str] = "home-to-mobile"

    sealed: bytes
    signature: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        _check_blob("W", "sealed W'", self.sealed)
        check_size("W", "signature", self.signature, (SIGNATURE_SIZE,))

    def signed_part(self) -> bytes:
        """The seal bytes: what the HA's signature covers."""
        return self.sealed

    def encode(self) -> bytes:
        """``W``: m, the seal, the signature."""
        return len16(self.sealed) + self.signature

    @classmethod
    def decode(cls, data: bytes) -> HomeToMobileBlock:
        """Parse ``W`` (the w bytes of an extension, w > 0)."""
        r = Reader(data, "W")
        value = cls(r.u16_prefixed("sealed W'"), r.take(SIGNATURE_SIZE, "signature"), raw=r.data)
        r.end()
        return value


def _encode_w(w: HomeToMobileBlock | None) -> bytes:
    return len16(w.encode() if w is not None else b"")


def _read_w(r: Reader) -> HomeToMobileBlock | None:
    w = r.u16_prefixed("W")
    return HomeToMobileBlock.decode(w) if w else None


@dataclass(frozen=True)
class _LongExtension(ExtensionBase):
    """What extensions 36 to 39 share: the long format, with the Sub-Type from ``suite``
    (or the class's fixed ``SUB_TYPE``) and the data from ``encode_data()``."""

    FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.LONG
    SUB_TYPE: ClassVar[int]

    @property
    def sub_type(self) -> int:
        """The Sub-Type byte: the suite, or the class's fixed Sub-Type."""
        suite: Suite | int | None = getattr(self, "suite", None)
        return self.SUB_TYPE if suite is None else int(suite)

    @abc.abstractmethod
    def encode_data(self) -> bytes:
        """The data bytes (after Length)."""

    def encode(self) -> bytes:
        """The whole extension."""
        return encode_long(self.TYPE, self.sub_type, self.encode_data())

    def _cut(self, end: int) -> bytes:
        """Bytes ``E[0:end]`` (negative: from the end) of the extension as received."""
        return (self.raw or self.encode())[:end]


@dataclass(frozen=True)
class MobileInfoExtension(_LongExtension):
    """Mobile Information extension (36), MN → FA → HA (draft 5.1; doc 5.1).

    ``Type 36 | Sub-Type = suite | Length | MN Nonce (32) | HA ID (64) | OTHER INFO (64) | n
    (16) | seal_HA("mobile-info", M) | sig_MN("mobile-info", P, E[0:26+n])``.
    """

    TYPE: ClassVar[int] = MOBILE_INFO_TYPE
    SUB_TYPE: ClassVar[int] = _DEFAULT_SUITE
    SEAL_LABEL: ClassVar[str] = "mobile-info"
    SIGNATURE_LABEL: ClassVar[str] = "mobile-info"

    suite: Suite | int
    mn_nonce: int
    ha_id: int
    other_info: int
    sealed: bytes
    signature: bytes

    def __post_init__(self) -> None:
        what = "Mobile Information extension"
        _check_suite(what, self.suite)
        check_uint(what, "MN Nonce", self.mn_nonce, 32)
        check_uint(what, "HA ID", self.ha_id, 64)
        check_uint(what, "OTHER INFO", self.other_info, 64)
        _check_blob(what, "sealed M", self.sealed)
        check_size(what, "signature", self.signature, (SIGNATURE_SIZE,))

    @classmethod
    def signed_part_for(
        cls,
        mn_nonce: int,
        ha_id: int,
        other_info: int,
        sealed: bytes,
        suite: Suite | int = _DEFAULT_SUITE,
    ) -> bytes:
        """``E[0:26+n]`` of the extension these fields make, before the MN has signed."""
        return cls(suite, mn_nonce, ha_id, other_info, sealed, bytes(SIGNATURE_SIZE)).signed_part()

    def signed_part(self) -> bytes:
        """``E[0:26+n]``: every byte of the extension but the signature (as received)."""
        return self._cut(-SIGNATURE_SIZE)

    def encode_data(self) -> bytes:
        """The data bytes (after Length)."""
        return b"".join(
            (
                U32.pack(self.mn_nonce),
                U64.pack(self.ha_id),
                U64.pack(self.other_info),
                len16(self.sealed),
                self.signature,
            )
        )

    @classmethod
    def from_wire(
        cls,
        sub_type: int | None,
        body: bytes,
        raw: bytes | None = None,
        offset: int | None = None,
    ) -> MobileInfoExtension:
        """The value from the data of an extension 36 whose Sub-Type is a laid-out suite."""
        r = Reader(body, "Mobile Information extension")
        value = cls(
            _suite(sub_type),
            r.u32("MN Nonce"),
            r.u64("HA ID"),
            r.u64("OTHER INFO"),
            r.u16_prefixed("sealed M"),
            r.take(SIGNATURE_SIZE, "signature"),
            raw=raw,
            offset=offset,
        )
        r.end()
        return value


@dataclass(frozen=True)
class ForeignInfoExtension(_LongExtension):
    """Foreign Information extension (37), FA → HA (draft 5.2; doc 5.2).

    ``Type 37 | Sub-Type = suite | Length | FA ID (64) | n (16) | seal_HA("foreign-info", F)
    | sig_FA("foreign-info", P, E[0:14+n])``.
    """

    TYPE: ClassVar[int] = FOREIGN_INFO_TYPE
    SUB_TYPE: ClassVar[int] = _DEFAULT_SUITE
    SEAL_LABEL: ClassVar[str] = "foreign-info"
    SIGNATURE_LABEL: ClassVar[str] = "foreign-info"

    suite: Suite | int
    fa_id: int
    sealed: bytes
    signature: bytes

    def __post_init__(self) -> None:
        what = "Foreign Information extension"
        _check_suite(what, self.suite)
        check_uint(what, "FA ID", self.fa_id, 64)
        _check_blob(what, "sealed F", self.sealed)
        check_size(what, "signature", self.signature, (SIGNATURE_SIZE,))

    @classmethod
    def signed_part_for(
        cls, fa_id: int, sealed: bytes, suite: Suite | int = _DEFAULT_SUITE
    ) -> bytes:
        """``E[0:14+n]`` of the extension these fields make, before the FA has signed."""
        return cls(suite, fa_id, sealed, bytes(SIGNATURE_SIZE)).signed_part()

    def signed_part(self) -> bytes:
        """``E[0:14+n]``: every byte of the extension but the signature (as received)."""
        return self._cut(-SIGNATURE_SIZE)

    def encode_data(self) -> bytes:
        """The data bytes (after Length)."""
        return U64.pack(self.fa_id) + len16(self.sealed) + self.signature

    @classmethod
    def from_wire(
        cls,
        sub_type: int | None,
        body: bytes,
        raw: bytes | None = None,
        offset: int | None = None,
    ) -> ForeignInfoExtension:
        """The value from the data of an extension 37 whose Sub-Type is a laid-out suite."""
        r = Reader(body, "Foreign Information extension")
        value = cls(
            _suite(sub_type),
            r.u64("FA ID"),
            r.u16_prefixed("sealed F"),
            r.take(SIGNATURE_SIZE, "signature"),
            raw=raw,
            offset=offset,
        )
        r.end()
        return value


@dataclass(frozen=True)
class HomeInfoExtension(_LongExtension):
    """Home Information extension (38, Sub-Type = suite), HA → FA (draft 5.3; doc 5.3).

    ``Type 38 | Sub-Type | Length | FA Nonce (32) | FA ID (64) | HA ID (64) | w (16) | W | n
    (16) | seal_FA("home-info", Q || sig_HA("home-info", P, E[0:26+w], Q))``. ``W`` is
    ``None`` when ``w = 0`` (a denial for an MN the HA could not identify).
    """

    TYPE: ClassVar[int] = HOME_INFO_TYPE
    SUB_TYPE: ClassVar[int] = _DEFAULT_SUITE
    SEAL_LABEL: ClassVar[str] = "home-info"
    SIGNATURE_LABEL: ClassVar[str] = "home-info"

    suite: Suite | int
    fa_nonce: int
    fa_id: int
    ha_id: int
    home_to_mobile: HomeToMobileBlock | None
    sealed: bytes

    def __post_init__(self) -> None:
        what = "Home Information extension"
        _check_suite(what, self.suite)
        check_uint(what, "FA Nonce", self.fa_nonce, 32)
        check_uint(what, "FA ID", self.fa_id, 64)
        check_uint(what, "HA ID", self.ha_id, 64)
        _check_blob(what, "sealed Q", self.sealed)
        if self.home_to_mobile is not None:
            _check_blob(what, "W", self.home_to_mobile.encode())

    @classmethod
    def signed_part_for(
        cls,
        fa_nonce: int,
        fa_id: int,
        ha_id: int,
        home_to_mobile: HomeToMobileBlock | None,
        sealed_length: int,
        suite: Suite | int = _DEFAULT_SUITE,
    ) -> bytes:
        """``E[0:26+w]`` for a seal that will be ``sealed_length`` bytes long.

        The HA signs before it seals, and the Length it signs counts the seal, so it passes
        the seal's final size: ``len(Q) + 64`` (signature) ``+ 56`` (HPKE, suite 1).
        """
        check_uint("Home Information extension", "sealed length", sealed_length, 16)
        return cls(
            suite, fa_nonce, fa_id, ha_id, home_to_mobile, bytes(sealed_length)
        ).signed_part()

    def signed_part(self) -> bytes:
        """``E[0:26+w]``: the extension up to and including ``W`` (as received)."""
        w = self.home_to_mobile.encode() if self.home_to_mobile is not None else b""
        return self._cut(26 + len(w))

    def encode_data(self) -> bytes:
        """The data bytes (after Length)."""
        return b"".join(
            (
                U32.pack(self.fa_nonce),
                U64.pack(self.fa_id),
                U64.pack(self.ha_id),
                _encode_w(self.home_to_mobile),
                len16(self.sealed),
            )
        )

    @classmethod
    def from_wire(
        cls,
        sub_type: int | None,
        body: bytes,
        raw: bytes | None = None,
        offset: int | None = None,
    ) -> HomeInfoExtension:
        """The value from the data of an extension 38 whose Sub-Type is a laid-out suite."""
        r = Reader(body, "Home Information extension")
        value = cls(
            _suite(sub_type),
            r.u32("FA Nonce"),
            r.u64("FA ID"),
            r.u64("HA ID"),
            _read_w(r),
            r.u16_prefixed("sealed Q"),
            raw=raw,
            offset=offset,
        )
        r.end()
        return value


@dataclass(frozen=True)
class KeyRefreshExtension(_LongExtension):
    """Key Refresh extension (38, Sub-Type 128), HA → FA → MN (doc 6.2).

    ``Type 38 | Sub-Type 128 | Length | New SPI (32) | Key Lifetime (32) |
    seal_symmetric(current Ses Key, "key-refresh", K, ad = P || E[0:12])``: the seal runs to
    the end of the extension.
    """

    TYPE: ClassVar[int] = HOME_INFO_TYPE
    SUB_TYPE: ClassVar[int] = KEY_REFRESH_SUB_TYPE
    SEAL_LABEL: ClassVar[str] = "key-refresh"

    new_spi: int
    key_lifetime: int
    sealed: bytes

    def __post_init__(self) -> None:
        what = "Key Refresh extension"
        check_uint(what, "New SPI", self.new_spi, 32)
        check_uint(what, "Key Lifetime", self.key_lifetime, 32)
        check_bytes(what, "sealed K", self.sealed, MAX_LEN16 - 8)

    @classmethod
    def associated_part_for(cls, new_spi: int, key_lifetime: int, sealed_length: int) -> bytes:
        """``E[0:12]`` for a seal of ``sealed_length`` bytes (``len(K) + 28``)."""
        check_uint("Key Refresh extension", "sealed length", sealed_length, 16)
        return cls(new_spi, key_lifetime, bytes(sealed_length)).associated_part()

    def associated_part(self) -> bytes:
        """``E[0:12]``: the seal's additional data after ``P``."""
        return self._cut(12)

    def encode_data(self) -> bytes:
        """The data bytes (after Length)."""
        return U32.pack(self.new_spi) + U32.pack(self.key_lifetime) + self.sealed

    @classmethod
    def from_wire(
        cls,
        sub_type: int | None,
        body: bytes,
        raw: bytes | None = None,
        offset: int | None = None,
    ) -> KeyRefreshExtension:
        """The value from the data of an extension 38 with Sub-Type 128."""
        r = Reader(body, "Key Refresh extension")
        return cls(r.u32("New SPI"), r.u32("Key Lifetime"), r.rest(), raw=raw, offset=offset)


@dataclass(frozen=True)
class MobileReplyExtension(_LongExtension):
    """Mobile Reply extension (39), FA → MN (draft 5.4; doc 5.4).

    ``Type 39 | Sub-Type = suite | Length | MN Nonce (32) | w (16) | W | n (16) |
    seal_MN("mobile-reply", T || sig_FA("mobile-reply", P, E[0:10+w], T))``.
    """

    TYPE: ClassVar[int] = MOBILE_REPLY_TYPE
    SUB_TYPE: ClassVar[int] = _DEFAULT_SUITE
    SEAL_LABEL: ClassVar[str] = "mobile-reply"
    SIGNATURE_LABEL: ClassVar[str] = "mobile-reply"

    suite: Suite | int
    mn_nonce: int
    home_to_mobile: HomeToMobileBlock | None
    sealed: bytes

    def __post_init__(self) -> None:
        what = "Mobile Reply extension"
        _check_suite(what, self.suite)
        check_uint(what, "MN Nonce", self.mn_nonce, 32)
        _check_blob(what, "sealed T", self.sealed)
        if self.home_to_mobile is not None:
            _check_blob(what, "W", self.home_to_mobile.encode())

    @classmethod
    def signed_part_for(
        cls,
        mn_nonce: int,
        home_to_mobile: HomeToMobileBlock | None,
        sealed_length: int,
        suite: Suite | int = _DEFAULT_SUITE,
    ) -> bytes:
        """``E[0:10+w]`` for a seal that will be ``sealed_length`` bytes long.

        The FA signs before it seals and the signed Length counts the seal: pass ``len(T) +
        64`` (signature) ``+ 56`` (HPKE, suite 1).
        """
        check_uint("Mobile Reply extension", "sealed length", sealed_length, 16)
        return cls(suite, mn_nonce, home_to_mobile, bytes(sealed_length)).signed_part()

    def signed_part(self) -> bytes:
        """``E[0:10+w]``: the extension up to and including ``W`` (as received)."""
        w = self.home_to_mobile.encode() if self.home_to_mobile is not None else b""
        return self._cut(10 + len(w))

    def encode_data(self) -> bytes:
        """The data bytes (after Length)."""
        return U32.pack(self.mn_nonce) + _encode_w(self.home_to_mobile) + len16(self.sealed)

    @classmethod
    def from_wire(
        cls,
        sub_type: int | None,
        body: bytes,
        raw: bytes | None = None,
        offset: int | None = None,
    ) -> MobileReplyExtension:
        """The value from the data of an extension 39 whose Sub-Type is a laid-out suite."""
        r = Reader(body, "Mobile Reply extension")
        value = cls(
            _suite(sub_type),
            r.u32("MN Nonce"),
            _read_w(r),
            r.u16_prefixed("sealed T"),
            raw=raw,
            offset=offset,
        )
        r.end()
        return value


@dataclass(frozen=True)
class UnknownSuiteExtension:
    """An extension 36 to 39 whose Sub-Type has no layout here: a reserved or unknown suite,
    or 128 on a type other than 38 (docs/protocol.md 1).

    It names the suite, keeps the data bytes and re-encodes unchanged. It is never
    skippable (36 to 39 are below 128): policy refuses it with reply code 134 at the HA and
    70 at the FA.
    """

    type: int
    suite: Suite | int
    body: bytes
    raw: bytes | None = raw_field()
    offset: int | None = offset_field()

    def __post_init__(self) -> None:
        if self.type not in MVPN_TYPES:
            raise BadValueError("MVPN extension Type", "36 to 39", str(self.type))
        check_uint("MVPN extension", "Sub-Type", int(self.suite), 8)
        check_bytes("MVPN extension", "data", self.body, MAX_LEN16)

    @property
    def sub_type(self) -> int:
        """The Sub-Type byte."""
        return int(self.suite)

    @property
    def skippable(self) -> bool:
        """Always false: RFC 5944 section 1.9, Types below 128."""
        return is_skippable(self.type)

    def encode_data(self) -> bytes:
        """The data bytes, unchanged."""
        return self.body

    def encode(self) -> bytes:
        """The whole extension, as received."""
        return encode_long(self.type, self.sub_type, self.body)


MvpnExtension: TypeAlias = (
    MobileInfoExtension
    | ForeignInfoExtension
    | HomeInfoExtension
    | KeyRefreshExtension
    | MobileReplyExtension
    | UnknownSuiteExtension
)

_LAID_OUT = (
    MobileInfoExtension,
    ForeignInfoExtension,
    HomeInfoExtension,
    KeyRefreshExtension,
    MobileReplyExtension,
)


def _unknown_suite_decoder(type_: int) -> Callable[[int | None, bytes, bytes, int], MvpnExtension]:
    def decode(sub_type: int | None, body: bytes, raw: bytes, offset: int) -> MvpnExtension:
        return UnknownSuiteExtension(type_, _suite(sub_type), body, raw=raw, offset=offset)

    return decode


# The (Type, Sub-Type) pairs with a layout get their class; every other Sub-Type of 36 to 39
# falls to the Type-wide decoder, which names the suite (the registry's own fallback,
# UnknownSubTypeExtension, would not).
for _cls in _LAID_OUT:
    register_extension(_cls)
for _type in sorted(MVPN_TYPES):
    register_decoder(_type, ExtensionFormat.LONG, _unknown_suite_decoder(_type))


def decode_mvpn_extension(data: bytes) -> MvpnExtension:
    """Decode exactly one whole extension 36 to 39, header included, at offset 0.

    Registration messages decode theirs with :func:`mvpn.wire.extensions.decode_extensions`;
    this is for code and tests that hold a lone extension.
    """
    r = Reader(data, "MVPN extension")
    type_ = r.u8("Type")
    sub_type = r.u8("Sub-Type")
    body = r.u16_prefixed(f"extension {type_} data")
    r.end()
    if type_ not in MVPN_TYPES:
        raise UnknownTypeError("MVPN extension Type", "36 to 39", str(type_), 0)
    for cls in _LAID_OUT:
        if type_ == cls.TYPE and sub_type == cls.SUB_TYPE:
            return cls.from_wire(sub_type, body, r.data, 0)
    return UnknownSuiteExtension(type_, lookup(Suite, sub_type), body, raw=r.data, offset=0)
