"""The Mobile IP extension framework (RFC 5944 sections 1.9 to 1.11) and types 32 to 34."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvpn.wire.errors import BadValueError, LengthError, TruncatedError
from mvpn.wire.extensions import (
    ADVERTISEMENT_EXTENSIONS,
    MAX_AUTHENTICATOR_SIZE,
    MAX_EXTENSIONS,
    REGISTRATION_EXTENSIONS,
    ExtensionBase,
    ExtensionFormat,
    ExtensionRegistry,
    ForeignHomeAuthExtension,
    MobileForeignAuthExtension,
    MobileHomeAuthExtension,
    UnknownExtension,
    UnknownSubTypeExtension,
    decode_extensions,
    encode_extension,
    encode_extensions,
    encode_long,
    encode_short,
    extension_type,
    is_skippable,
    register_extension,
)
from mvpn.wire.reader import explain
from tests.wire.rfc5944_strategies import mutated, registration_extensions, try_decode

SHORT_TYPE = 150
LONG_TYPE = 151


@dataclass(frozen=True)
class ShortThing(ExtensionBase):
    """Test-only short-format extension, one registered Sub-Type (7)."""

    TYPE: ClassVar[int] = SHORT_TYPE
    FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.SHORT
    SUB_TYPE: ClassVar[int] = 7

    data: bytes

    def encode(self) -> bytes:
        return encode_short(self.TYPE, self.SUB_TYPE, self.data)

    @classmethod
    def from_wire(cls, sub_type: int | None, body: bytes, raw: bytes, offset: int) -> ShortThing:
        return cls(body, raw=raw, offset=offset)


@dataclass(frozen=True)
class LongThing(ExtensionBase):
    """Test-only long-format extension that takes every Sub-Type."""

    TYPE: ClassVar[int] = LONG_TYPE
    FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.LONG

    sub_type: int
    data: bytes

    def encode(self) -> bytes:
        return encode_long(self.TYPE, self.sub_type, self.data)

    @classmethod
    def from_wire(cls, sub_type: int | None, body: bytes, raw: bytes, offset: int) -> LongThing:
        assert sub_type is not None
        return cls(sub_type, body, raw=raw, offset=offset)


@pytest.fixture
def registry() -> Iterator[ExtensionRegistry]:
    """A copy of the registration registry with the test-only types added."""
    copy = REGISTRATION_EXTENSIONS.copy("test")
    copy.register(ShortThing)
    copy.register(LongThing)
    yield copy


MH_AUTH_VECTOR = bytes.fromhex(
    "20"  # Type 32: Mobile-Home Authentication Extension
    "14"  # Length 20 = SPI (4) + authenticator (16)
    "00000100"  # SPI 256
    "000102030405060708090a0b0c0d0e0f"  # Authenticator, 16 bytes
)


def test_mobile_home_auth_vector() -> None:
    """A hand-written type 32 decodes to its SPI and authenticator and re-encodes exactly."""
    (ext,) = decode_extensions(MH_AUTH_VECTOR, 24)
    assert ext == MobileHomeAuthExtension(256, bytes(range(16)))
    assert ext.offset == 24
    assert ext.raw == MH_AUTH_VECTOR
    assert ext.encode() == MH_AUTH_VECTOR, explain(ext.encode())


@pytest.mark.parametrize(
    ("cls", "type_byte"),
    [
        (MobileHomeAuthExtension, 32),
        (MobileForeignAuthExtension, 33),
        (ForeignHomeAuthExtension, 34),
    ],
)
def test_each_auth_type(cls: type[MobileHomeAuthExtension], type_byte: int) -> None:
    """Types 32, 33 and 34 each decode to their own class, and Length = 4 + authenticator."""
    vector = bytes([type_byte, 6]) + bytes.fromhex("deadbeef") + b"\xaa\xbb"
    (ext,) = decode_extensions(vector)
    assert type(ext) is cls
    assert isinstance(ext, cls)
    assert (ext.spi, ext.authenticator) == (0xDEADBEEF, b"\xaa\xbb")
    assert cls(0xDEADBEEF, b"\xaa\xbb").encode() == vector
    assert cls(0xDEADBEEF, b"\xaa\xbb").header() == vector[:6]


def test_auth_extension_shorter_than_spi() -> None:
    """An authentication extension with Length < 4 has no room for its SPI: LengthError."""
    with pytest.raises(LengthError):
        decode_extensions(bytes.fromhex("2003000001"))


def test_auth_extension_limits() -> None:
    """The SPI is 32 bits and the authenticator at most 251 bytes (8-bit Length - 4)."""
    MobileHomeAuthExtension(0, bytes(MAX_AUTHENTICATOR_SIZE)).encode()
    with pytest.raises(LengthError):
        MobileHomeAuthExtension(0, bytes(MAX_AUTHENTICATOR_SIZE + 1))
    with pytest.raises(BadValueError):
        MobileHomeAuthExtension(2**32, b"")
    with pytest.raises(BadValueError):
        MobileHomeAuthExtension(-1, b"")


def test_raw_and_offset_not_compared() -> None:
    """Two extensions with the same fields are equal whatever raw bytes or offset they carry."""
    a = MobileHomeAuthExtension(1, b"x", raw=b"\x20\x05\x00\x00\x00\x01x", offset=24)
    assert a == MobileHomeAuthExtension(1, b"x")
    assert hash(a) == hash(MobileHomeAuthExtension(1, b"x"))


@pytest.mark.parametrize(("type_", "skippable"), [(100, False), (127, False), (128, True)])
def test_unknown_extension_kept(type_: int, skippable: bool) -> None:
    """An unregistered type is parsed as TLV, kept with its bytes, re-encoded unchanged, and
    says whether it is skippable (128 to 255) or not (0 to 127)."""
    vector = bytes([type_]) + bytes.fromhex(
        "03"  # Length 3
        "aabbcc"  # data
    )
    (ext,) = decode_extensions(vector, 40)
    assert ext == UnknownExtension(type_, b"\xaa\xbb\xcc")
    assert isinstance(ext, UnknownExtension)
    assert ext.skippable is skippable
    assert is_skippable(type_) is skippable
    assert ext.offset == 40
    assert ext.encode() == vector
    assert extension_type(ext) == type_


def test_unknown_extensions_sequence_offsets() -> None:
    """Several extensions decode in order, each offset counted from the message start."""
    data = (
        bytes.fromhex(
            "6400"  # type 100, Length 0
            "c80201ff"  # type 200 (skippable), Length 2, data 01 ff
        )
        + MH_AUTH_VECTOR
    )
    exts = decode_extensions(data, 24)
    assert [e.offset for e in exts] == [24, 26, 30]
    assert [extension_type(e) for e in exts] == [100, 200, 32]
    assert encode_extensions(exts) == data


SHORT_VECTOR = bytes.fromhex(
    "96"  # Type 150 (test-only, short format)
    "04"  # Length 4 = Sub-Type + 3 data bytes
    "07"  # Sub-Type 7
    "aabbcc"  # data
)
LONG_VECTOR = bytes.fromhex(
    "97"  # Type 151 (test-only, long format)
    "09"  # Sub-Type 9
    "0003"  # Length 3 = data bytes only
    "aabbcc"  # data
)


def test_short_format(registry: ExtensionRegistry) -> None:
    """A short-format type: Length counts the Sub-Type; the registered Sub-Type's class builds
    the value and re-encodes it byte for byte."""
    (ext,) = registry.decode(SHORT_VECTOR, 10)
    assert ext == ShortThing(b"\xaa\xbb\xcc")
    assert ext.offset == 10
    assert ext.encode() == SHORT_VECTOR


def test_short_format_unknown_sub_type(registry: ExtensionRegistry) -> None:
    """A Sub-Type nobody registered keeps the header it was read with and re-encodes."""
    vector = bytes.fromhex("960209ee")  # type 150, Length 2, Sub-Type 9, one byte
    (ext,) = registry.decode(vector)
    assert ext == UnknownSubTypeExtension(SHORT_TYPE, ExtensionFormat.SHORT, 9, b"\xee")
    assert ext.encode() == vector


def test_short_format_zero_length(registry: ExtensionRegistry) -> None:
    """A short-format Length of 0 cannot hold the Sub-Type: LengthError."""
    with pytest.raises(LengthError):
        registry.decode(bytes.fromhex("9600"))


def test_long_format(registry: ExtensionRegistry) -> None:
    """A long-format type: Sub-Type before a 16-bit Length of the data alone."""
    (ext,) = registry.decode(LONG_VECTOR)
    assert ext == LongThing(9, b"\xaa\xbb\xcc")
    assert ext.encode() == LONG_VECTOR
    big = LongThing(1, bytes(300))
    assert registry.decode(big.encode()) == (big,)
    assert big.encode()[:4] == bytes.fromhex("97 01 01 2c")


def test_same_bytes_differ_by_registry(registry: ExtensionRegistry) -> None:
    """Without the test-only registration the short vector is an unknown TLV extension."""
    (ext,) = decode_extensions(SHORT_VECTOR)
    assert ext == UnknownExtension(SHORT_TYPE, bytes.fromhex("07aabbcc"))
    assert SHORT_TYPE not in REGISTRATION_EXTENSIONS


def test_pad_only_in_advertisements() -> None:
    """Type 0 is the one-byte padding in advertisements, an ordinary TLV in registrations."""
    assert ADVERTISEMENT_EXTENSIONS.format_of(0) is ExtensionFormat.PAD
    assert REGISTRATION_EXTENSIONS.format_of(0) is ExtensionFormat.TLV
    assert len(decode_extensions(b"\x00", 0, ADVERTISEMENT_EXTENSIONS)) == 1
    with pytest.raises(TruncatedError):
        decode_extensions(b"\x00")


def test_registry_refuses_conflicts(registry: ExtensionRegistry) -> None:
    """A taken (Type, Sub-Type), a format clash or a class without TYPE is refused; the same
    class registered twice is harmless."""
    registry.register(ShortThing)

    @dataclass(frozen=True)
    class Clash(ShortThing):
        pass

    with pytest.raises(ValueError):
        registry.register(Clash)

    @dataclass(frozen=True)
    class WrongFormat(LongThing):
        FORMAT: ClassVar[ExtensionFormat] = ExtensionFormat.SHORT

    with pytest.raises(ValueError):
        registry.register(WrongFormat)
    with pytest.raises(TypeError):
        registry.register(int)
    registry.unregister(SHORT_TYPE)
    assert SHORT_TYPE not in registry
    assert registry.decode(SHORT_VECTOR)[0] == UnknownExtension(SHORT_TYPE, SHORT_VECTOR[2:])


def test_register_extension_default_registry() -> None:
    """register_extension() puts a class in the registration registry (and refuses a clash
    with type 32 there)."""

    @dataclass(frozen=True)
    class Impostor(MobileHomeAuthExtension):
        pass

    with pytest.raises(ValueError):
        register_extension(Impostor)


def test_too_many_extensions() -> None:
    """More than MAX_EXTENSIONS extensions in one message is refused, not parsed forever."""
    decode_extensions(b"\xc8\x00" * MAX_EXTENSIONS)
    with pytest.raises(LengthError):
        decode_extensions(b"\xc8\x00" * (MAX_EXTENSIONS + 1))


@pytest.mark.parametrize(
    "data",
    [
        b"\x20",  # Type without Length
        b"\x20\x05\x00\x00",  # Length says 5, 2 bytes follow
        b"\x97\x01\x00",  # long format cut in its Length
    ],
)
def test_truncated(registry: ExtensionRegistry, data: bytes) -> None:
    """Extensions cut short raise TruncatedError."""
    with pytest.raises(TruncatedError):
        registry.decode(data)


def test_encode_extension_limits() -> None:
    """The encoder refuses what a Length cannot describe and Sub-Types on TLV."""
    assert encode_extension(ExtensionFormat.TLV, 1, bytes(255))[:2] == b"\x01\xff"
    with pytest.raises(LengthError):
        encode_extension(ExtensionFormat.TLV, 1, bytes(256))
    with pytest.raises(LengthError):
        encode_extension(ExtensionFormat.SHORT, 1, bytes(255), 0)
    with pytest.raises(LengthError):
        encode_extension(ExtensionFormat.LONG, 1, bytes(65536), 0)
    with pytest.raises(BadValueError):
        encode_extension(ExtensionFormat.TLV, 1, b"", 3)
    with pytest.raises(BadValueError):
        encode_extension(ExtensionFormat.LONG, 1, b"")
    with pytest.raises(BadValueError):
        encode_extension(ExtensionFormat.TLV, 256, b"")


def test_reprs_are_readable() -> None:
    """Reprs name the class and the fields, and never print an authenticator."""
    text = repr(MobileHomeAuthExtension(0x100, bytes(16)))
    assert text == "MobileHomeAuthExtension(spi=0x100, authenticator=16 bytes)"
    assert "skippable" in repr(UnknownExtension(200, b"\x01"))


@settings()
@given(registration_extensions)
def test_roundtrip_registration_extensions(exts: tuple[object, ...]) -> None:
    """Any sequence of authentication and unknown extensions survives encode then decode."""
    data = encode_extensions(exts)  # type: ignore[arg-type]
    decoded = decode_extensions(data, 24)
    assert decoded == exts
    assert encode_extensions(decoded) == data


@settings()
@given(st.binary(max_size=300))
def test_fuzz_decode_extensions_arbitrary(data: bytes) -> None:
    """Arbitrary bytes decode as extensions or raise WireError, in both registries; what
    decodes re-encodes to exactly the input."""
    for context in (REGISTRATION_EXTENSIONS, ADVERTISEMENT_EXTENSIONS):
        exts = try_decode(context.decode, data)
        if exts is not None:
            assert encode_extensions(exts) == data, explain(data)


@settings()
@given(st.data())
def test_fuzz_decode_extensions_mutated(data: st.DataObject) -> None:
    """Mutated valid extension sequences (including the test-only short and long types)
    decode or raise WireError, nothing else; what decodes re-encodes to the input."""
    registry = REGISTRATION_EXTENSIONS.copy("fuzz")
    registry.register(ShortThing)
    registry.register(LongThing)
    valid = encode_extensions(data.draw(registration_extensions)) + SHORT_VECTOR + LONG_VECTOR
    bad = data.draw(mutated(valid))
    exts = try_decode(registry.decode, bad)
    if exts is not None:
        assert encode_extensions(exts) == bad, explain(bad)
