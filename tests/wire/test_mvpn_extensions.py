"""The MVPN extensions 36 to 39 (docs/protocol.md 5 and 6.2), byte by byte."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mvpn.wire import mvpn_extensions as mx
from mvpn.wire.codes import Suite
from mvpn.wire.errors import (
    BadValueError,
    LengthError,
    TrailingDataError,
    TruncatedError,
    UnknownTypeError,
)
from mvpn.wire.extensions import MobileHomeAuthExtension, decode_extensions, encode_extensions
from tests.wire import mvpn_strategies as s

SUITE = Suite.ED25519_X25519_AES128GCM
SIG = b"S" * 64
HA_SIG = b"W" * 64

MOBILE_INFO_VECTOR = (
    bytes.fromhex(
        "24"  # Type 36: Mobile Information
        "01"  # Sub-Type: suite 1
        "005c"  # Length 92: data bytes after this field
        "0007abcd"  # MN Nonce, clear copy
        "000000000000000a"  # HA ID 10
        "0000000000000000"  # OTHER INFO: absent
        "0006"  # n
        "7365616c6564"  # seal_HA("mobile-info", M): dummy "sealed"
    )
    + SIG  # sig_MN("mobile-info", P, E[0:26+n])
)
MOBILE_INFO_VALUE = mx.MobileInfoExtension(SUITE, 0x0007ABCD, 10, 0, b"sealed", SIG)

FOREIGN_INFO_VECTOR = (
    bytes.fromhex(
        "25"  # Type 37: Foreign Information
        "01"  # Sub-Type: suite 1
        "0050"  # Length 80
        "00000000000000fa"  # FA ID 250
        "0006"  # n
        "7365616c6564"  # seal_HA("foreign-info", F)
    )
    + SIG  # sig_FA("foreign-info", P, E[0:14+n])
)
FOREIGN_INFO_VALUE = mx.ForeignInfoExtension(SUITE, 250, b"sealed", SIG)

W_BYTES = (
    bytes.fromhex(
        "0005"  # m
        "777365616c"  # seal_MN("home-to-mobile", W'): dummy "wseal"
    )
    + HA_SIG  # sig_HA("home-to-mobile", seal bytes)
)
W_VALUE = mx.HomeToMobileBlock(b"wseal", HA_SIG)

HOME_INFO_VECTOR = (
    bytes.fromhex(
        "26"  # Type 38: Home Information
        "01"  # Sub-Type: suite 1
        "0065"  # Length 101
        "11223344"  # FA Nonce, clear copy
        "00000000000000fa"  # FA ID 250
        "000000000000000a"  # HA ID 10
        "0047"  # w = 71
    )
    + W_BYTES  # W, for the MN
    + bytes.fromhex(
        "0006"  # n
        "7365616c6564"  # seal_FA("home-info", Q || sig_HA(...))
    )
)
HOME_INFO_VALUE = mx.HomeInfoExtension(SUITE, 0x11223344, 250, 10, W_VALUE, b"sealed")

HOME_DENIAL_VECTOR = bytes.fromhex(
    "26"  # Type 38
    "01"  # Sub-Type: suite 1
    "001e"  # Length 30
    "11223344"  # FA Nonce
    "00000000000000fa"  # FA ID
    "000000000000000a"  # HA ID
    "0000"  # w = 0: the HA could not identify the MN
    "0006"  # n
    "7365616c6564"  # sealed Q with the denying Result
)
HOME_DENIAL_VALUE = mx.HomeInfoExtension(SUITE, 0x11223344, 250, 10, None, b"sealed")

KEY_REFRESH_VECTOR = bytes.fromhex(
    "26"  # Type 38
    "80"  # Sub-Type 128: key refresh
    "000e"  # Length 14
    "00000102"  # New SPI 258
    "0000012c"  # Key Lifetime 300 s
    "7365616c6564"  # seal_symmetric(Ses Key, "key-refresh", K, ad = P || E[0:12]), to the end
)
KEY_REFRESH_VALUE = mx.KeyRefreshExtension(258, 300, b"sealed")

MOBILE_REPLY_VECTOR = (
    bytes.fromhex(
        "27"  # Type 39: Mobile Reply
        "01"  # Sub-Type: suite 1
        "0055"  # Length 85
        "0007abcd"  # MN Nonce, clear copy
        "0047"  # w = 71
    )
    + W_BYTES  # W, copied from extension 38
    + bytes.fromhex(
        "0006"  # n
        "7365616c6564"  # seal_MN("mobile-reply", T || sig_FA(...))
    )
)
MOBILE_REPLY_VALUE = mx.MobileReplyExtension(SUITE, 0x0007ABCD, W_VALUE, b"sealed")

RESERVED_SUITE_VECTOR = bytes.fromhex(
    "24"  # Type 36
    "02"  # Sub-Type 2: RSA-3072, reserved
    "0003"  # Length 3
    "abcdef"  # data, kept as it is
)
RESERVED_SUITE_VALUE = mx.UnknownSuiteExtension(36, Suite.RSA3072_PSS_OAEP, b"\xab\xcd\xef")

REFRESH_ON_39_VECTOR = bytes.fromhex(
    "27"  # Type 39
    "80"  # Sub-Type 128: only extension 38 has a key refresh form
    "0000"  # Length 0
)
REFRESH_ON_39_VALUE = mx.UnknownSuiteExtension(39, 128, b"")

VECTORS: list[tuple[str, bytes, Any]] = [
    ("mobile_info", MOBILE_INFO_VECTOR, MOBILE_INFO_VALUE),
    ("foreign_info", FOREIGN_INFO_VECTOR, FOREIGN_INFO_VALUE),
    ("home_info", HOME_INFO_VECTOR, HOME_INFO_VALUE),
    ("home_denial", HOME_DENIAL_VECTOR, HOME_DENIAL_VALUE),
    ("key_refresh", KEY_REFRESH_VECTOR, KEY_REFRESH_VALUE),
    ("mobile_reply", MOBILE_REPLY_VECTOR, MOBILE_REPLY_VALUE),
    ("reserved_suite", RESERVED_SUITE_VECTOR, RESERVED_SUITE_VALUE),
    ("refresh_on_39", REFRESH_ON_39_VECTOR, REFRESH_ON_39_VALUE),
]
IDS = [name for name, _, _ in VECTORS]


@pytest.mark.parametrize(("name", "vector", "value"), VECTORS, ids=IDS)
def test_vector_decodes_to_value(name: str, vector: bytes, value: Any) -> None:
    """The vector decodes to the value of the class its (Type, Sub-Type) selects."""
    decoded = mx.decode_mvpn_extension(vector)
    assert type(decoded) is type(value)
    assert decoded == value
    assert decoded.raw == vector


@pytest.mark.parametrize(("name", "vector", "value"), VECTORS, ids=IDS)
def test_value_encodes_to_vector(name: str, vector: bytes, value: Any) -> None:
    """Encoding gives exactly the hand-written bytes."""
    assert value.encode() == vector
    assert value.encode_data() == vector[4:]


@pytest.mark.parametrize(
    ("name", "vector", "value"),
    [v for v in VECTORS if v[0] not in {"key_refresh", "reserved_suite", "refresh_on_39"}],
    ids=[i for i in IDS if i not in {"key_refresh", "reserved_suite", "refresh_on_39"}],
)
def test_data_must_be_exactly_consumed(name: str, vector: bytes, value: Any) -> None:
    """With Length patched to match, one byte more is trailing data and one byte less a
    truncated field."""
    length = int.from_bytes(vector[2:4], "big")
    longer = vector[:2] + (length + 1).to_bytes(2, "big") + vector[4:] + b"\x00"
    with pytest.raises(TrailingDataError):
        mx.decode_mvpn_extension(longer)
    shorter = vector[:2] + (length - 1).to_bytes(2, "big") + vector[4:-1]
    with pytest.raises(TruncatedError):
        mx.decode_mvpn_extension(shorter)


def test_signed_parts() -> None:
    """signed_part() is E[0:26+n] (36), E[0:14+n] (37), E[0:26+w] (38), E[0:10+w] (39), and
    the ``_for`` forms give the same bytes before the signature or seal exists."""
    assert MOBILE_INFO_VALUE.signed_part() == MOBILE_INFO_VECTOR[: 26 + 6]
    assert (
        mx.MobileInfoExtension.signed_part_for(0x0007ABCD, 10, 0, b"sealed")
        == (MOBILE_INFO_VECTOR[:32])
    )
    assert FOREIGN_INFO_VALUE.signed_part() == FOREIGN_INFO_VECTOR[: 14 + 6]
    assert mx.ForeignInfoExtension.signed_part_for(250, b"sealed") == FOREIGN_INFO_VECTOR[:20]
    assert HOME_INFO_VALUE.signed_part() == HOME_INFO_VECTOR[: 26 + 71]
    assert (
        mx.HomeInfoExtension.signed_part_for(0x11223344, 250, 10, W_VALUE, 6)
        == (HOME_INFO_VECTOR[:97])
    )
    assert HOME_DENIAL_VALUE.signed_part() == HOME_DENIAL_VECTOR[:26]
    assert MOBILE_REPLY_VALUE.signed_part() == MOBILE_REPLY_VECTOR[: 10 + 71]
    assert (
        mx.MobileReplyExtension.signed_part_for(0x0007ABCD, W_VALUE, 6)
        == (MOBILE_REPLY_VECTOR[:81])
    )
    assert W_VALUE.signed_part() == b"wseal"
    assert KEY_REFRESH_VALUE.associated_part() == KEY_REFRESH_VECTOR[:12]
    assert mx.KeyRefreshExtension.associated_part_for(258, 300, 6) == KEY_REFRESH_VECTOR[:12]


def test_signed_part_of_decoded_value_is_as_received() -> None:
    """A decoded extension's signed part is sliced from the bytes that arrived."""
    decoded = mx.decode_mvpn_extension(MOBILE_REPLY_VECTOR)
    assert isinstance(decoded, mx.MobileReplyExtension)
    assert decoded.signed_part() == MOBILE_REPLY_VECTOR[:81]
    assert decoded.home_to_mobile is not None
    assert decoded.home_to_mobile.raw == W_BYTES


def test_w_block_must_parse() -> None:
    """A non-empty W must be exactly m, the seal and a 64-byte signature."""
    bad_w = W_BYTES[:-1]
    data = HOME_INFO_VECTOR[4:24] + len(bad_w).to_bytes(2, "big") + bad_w + b"\x00\x00"
    with pytest.raises(TruncatedError):
        mx.decode_mvpn_extension(b"\x26\x01" + len(data).to_bytes(2, "big") + data)


def test_suites_and_types() -> None:
    """Only laid-out suites build structured values; unknown Sub-Types are kept and named;
    types other than 36 to 39 are not ours."""
    reserved = mx.decode_mvpn_extension(RESERVED_SUITE_VECTOR)
    assert isinstance(reserved, mx.UnknownSuiteExtension)
    assert reserved.suite is Suite.RSA3072_PSS_OAEP
    assert reserved.skippable is False
    unknown = mx.decode_mvpn_extension(b"\x25\xc8\x00\x01\x00")
    assert isinstance(unknown, mx.UnknownSuiteExtension)
    assert (type(unknown.suite), unknown.suite, unknown.type) == (int, 200, 37)
    with pytest.raises(BadValueError):
        mx.MobileInfoExtension(Suite.RSA3072_PSS_OAEP, 1, 2, 3, b"", SIG)
    with pytest.raises(BadValueError):
        mx.UnknownSuiteExtension(40, 2, b"")
    with pytest.raises(UnknownTypeError):
        mx.decode_mvpn_extension(b"\x20\x01\x00\x00")


def test_sizes_are_checked() -> None:
    """Signatures are 64 bytes; the data must fit the 16-bit Length; Length must match."""
    with pytest.raises(LengthError):
        mx.ForeignInfoExtension(SUITE, 1, b"", SIG + b"x")
    with pytest.raises(LengthError):
        mx.HomeToMobileBlock(b"", b"")
    with pytest.raises(LengthError):
        mx.MobileInfoExtension(SUITE, 1, 2, 3, bytes(0xFFFF - 84), SIG).encode()
    assert len(mx.MobileInfoExtension(SUITE, 1, 2, 3, bytes(0xFFFF - 86), SIG).encode()) == (
        0xFFFF + 4
    )
    with pytest.raises(TrailingDataError):
        mx.decode_mvpn_extension(KEY_REFRESH_VECTOR + b"\x00")
    with pytest.raises(TruncatedError):
        mx.decode_mvpn_extension(KEY_REFRESH_VECTOR[:-1])


def test_registry_decodes_every_form_in_a_message() -> None:
    """decode_extensions (the registration registry) picks the class by (Type, Sub-Type),
    38/1 and 38/128 included, names unknown suites, and records each extension's offset."""
    auth = bytes.fromhex("202400000100") + bytes(32)  # MN-HA auth, SPI 256, 32-byte MAC
    data = b"".join(
        [
            MOBILE_INFO_VECTOR,
            FOREIGN_INFO_VECTOR,
            HOME_INFO_VECTOR,
            KEY_REFRESH_VECTOR,
            MOBILE_REPLY_VECTOR,
            RESERVED_SUITE_VECTOR,
            REFRESH_ON_39_VECTOR,
            auth,
        ]
    )
    decoded = decode_extensions(data, offset_base=24)
    assert list(decoded[:7]) == [
        MOBILE_INFO_VALUE,
        FOREIGN_INFO_VALUE,
        HOME_INFO_VALUE,
        KEY_REFRESH_VALUE,
        MOBILE_REPLY_VALUE,
        RESERVED_SUITE_VALUE,
        REFRESH_ON_39_VALUE,
    ]
    assert [type(e) for e in decoded[:7]] == [
        mx.MobileInfoExtension,
        mx.ForeignInfoExtension,
        mx.HomeInfoExtension,
        mx.KeyRefreshExtension,
        mx.MobileReplyExtension,
        mx.UnknownSuiteExtension,
        mx.UnknownSuiteExtension,
    ]
    assert isinstance(decoded[7], MobileHomeAuthExtension)
    offsets = [e.offset for e in decoded]
    assert offsets[0] == 24
    assert offsets[1] == 24 + len(MOBILE_INFO_VECTOR)
    for ext, offset in zip(decoded, offsets, strict=True):
        assert offset is not None
        assert data[offset - 24 : offset - 24 + len(ext.encode())] == ext.raw
    assert encode_extensions(decoded) == data


def test_extension_values_are_not_skippable() -> None:
    """36 to 39 sit below 128: no agent may skip them (RFC 5944 1.9, docs/protocol.md 4)."""
    assert not MOBILE_INFO_VALUE.skippable
    assert not KEY_REFRESH_VALUE.skippable
    assert not RESERVED_SUITE_VALUE.skippable


# --- Hypothesis ---------------------------------------------------------------------------

w_blocks = st.builds(mx.HomeToMobileBlock, s.blob, s.sig)
STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "MobileInfoExtension": st.builds(
        mx.MobileInfoExtension,
        st.just(SUITE),
        s.uint(32),
        s.uint(64),
        s.uint(64),
        s.blob,
        s.sig,
    ),
    "ForeignInfoExtension": st.builds(
        mx.ForeignInfoExtension, st.just(SUITE), s.uint(64), s.blob, s.sig
    ),
    "HomeInfoExtension": st.builds(
        mx.HomeInfoExtension,
        st.just(SUITE),
        s.uint(32),
        s.uint(64),
        s.uint(64),
        st.none() | w_blocks,
        s.blob,
    ),
    "KeyRefreshExtension": st.builds(mx.KeyRefreshExtension, s.uint(32), s.uint(32), s.blob),
    "MobileReplyExtension": st.builds(
        mx.MobileReplyExtension, st.just(SUITE), s.uint(32), st.none() | w_blocks, s.blob
    ),
    "UnknownSuiteExtension": st.builds(
        mx.UnknownSuiteExtension,
        st.sampled_from([36, 37, 38, 39]),
        s.uint(8).filter(lambda v: v not in (1, 128)),
        s.blob,
    ),
}

globals().update(
    s.fuzz_tests(
        "mvpn_extension",
        {name: (mx.decode_mvpn_extension, strategy) for name, strategy in STRATEGIES.items()},
    )
)
globals().update(
    s.fuzz_tests("mvpn_extension", {"HomeToMobileBlock": (mx.HomeToMobileBlock.decode, w_blocks)})
)


@given(
    extensions=st.lists(st.one_of(*STRATEGIES.values()), max_size=4),
    edit=s.edits,
)
def test_fuzz_mvpn_extension_sequences_through_registry(
    extensions: list[Any], edit: s.Edit
) -> None:
    """A run of MVPN extensions decodes through the registration registry to the same
    values and re-encodes to the same bytes; an edited run decodes or raises WireError."""
    data = b"".join(e.encode() for e in extensions)
    decoded = decode_extensions(data)
    assert list(decoded) == extensions
    assert encode_extensions(decoded) == data
    s.decodes_or_wire_error(decode_extensions, s.mutate(data, edit))
