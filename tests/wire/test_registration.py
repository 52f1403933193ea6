"""Registration Request and Reply (RFC 5944 sections 3.3, 3.4), authenticators (3.5.1) and
the Identification field (5.7)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvpn.wire.codes import ReplyCode
from mvpn.wire.errors import BadValueError, LengthError, TruncatedError, UnknownTypeError
from mvpn.wire.extensions import (
    ForeignHomeAuthExtension,
    MobileForeignAuthExtension,
    MobileHomeAuthExtension,
    UnknownExtension,
)
from mvpn.wire.reader import explain
from mvpn.wire.registration import (
    MAX_MESSAGE_SIZE,
    NTP_UNIX_OFFSET,
    Identification,
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    append_authenticator,
    bytes_before,
    decode_registration,
    protected_bytes,
    with_authenticator,
)
from tests.wire.rfc5944_strategies import mutated, replies, requests, try_decode

A = ipaddress.IPv4Address

REQUEST_VECTOR = bytes.fromhex(
    "01"  # Type 1: Registration Request
    "82"  # flags: S (0x80) and T (0x02)
    "0708"  # Lifetime 1800 s
    "0a000005"  # Home Address 10.0.0.5
    "0a000001"  # Home Agent 10.0.0.1
    "c000020a"  # Care-of Address 192.0.2.10
    "e75a1b2c80000000"  # Identification: NTP seconds 0xe75a1b2c, fraction 0.5
    "20"  # extension Type 32: Mobile-Home Authentication
    "14"  # Length 20 = SPI 4 + authenticator 16
    "00000100"  # SPI 256
    "000102030405060708090a0b0c0d0e0f"  # Authenticator
)

REQUEST_VALUE = RegistrationRequest(
    RequestFlags.S | RequestFlags.T,
    1800,
    A("10.0.0.5"),
    A("10.0.0.1"),
    A("192.0.2.10"),
    0xE75A1B2C80000000,
    (MobileHomeAuthExtension(256, bytes(range(16))),),
)

REPLY_VECTOR = bytes.fromhex(
    "03"  # Type 3: Registration Reply
    "85"  # Code 133: identification mismatch
    "0000"  # Lifetime 0
    "0a000005"  # Home Address 10.0.0.5
    "0a000001"  # Home Agent 10.0.0.1
    "e75a1b3080000000"  # Identification: HA's time high, request's low half copied
    "20"  # extension Type 32
    "08"  # Length 8 = SPI 4 + authenticator 4
    "00000100"  # SPI 256
    "cafebabe"  # Authenticator
)

REPLY_VALUE = RegistrationReply(
    ReplyCode.HA_IDENTIFICATION_MISMATCH,
    0,
    A("10.0.0.5"),
    A("10.0.0.1"),
    0xE75A1B3080000000,
    (MobileHomeAuthExtension(256, bytes.fromhex("cafebabe")),),
)


def test_request_vector_decodes() -> None:
    """The hand-written request decodes field by field and keeps its raw bytes."""
    request = RegistrationRequest.decode(REQUEST_VECTOR)
    assert request == REQUEST_VALUE
    assert request.raw == REQUEST_VECTOR
    assert request.flags == RequestFlags.S | RequestFlags.T
    assert request.extensions[0].offset == 24


def test_request_vector_encodes() -> None:
    """Encoding the request value gives exactly the hand-written bytes."""
    assert REQUEST_VALUE.encode() == REQUEST_VECTOR, explain(REQUEST_VALUE.encode())


def test_reply_vector() -> None:
    """The hand-written reply decodes (code named) and the value encodes to it."""
    reply = RegistrationReply.decode(REPLY_VECTOR)
    assert reply == REPLY_VALUE
    assert reply.code is ReplyCode.HA_IDENTIFICATION_MISMATCH
    assert not reply.accepted
    assert REPLY_VALUE.encode() == REPLY_VECTOR, explain(REPLY_VALUE.encode())


def test_reply_unknown_code_kept() -> None:
    """A reply code no enum names stays a plain int, re-encodes, and is not an acceptance."""
    vector = bytes([3, 200]) + REPLY_VECTOR[2:20]
    reply = RegistrationReply.decode(vector)
    assert reply.code == 200
    assert not isinstance(reply.code, ReplyCode)
    assert not reply.accepted
    assert reply.encode() == vector
    assert "unknown (200)" in repr(reply)


@pytest.mark.parametrize("code", [0, 1])
def test_reply_accepted_codes(code: int) -> None:
    """Codes 0 and 1 accept the registration."""
    assert dataclasses.replace(REPLY_VALUE, code=ReplyCode(code)).accepted


@pytest.mark.parametrize("flag", [f for f in RequestFlags if f.value])
def test_each_request_flag(flag: RequestFlags) -> None:
    """Each flag bit (S B D M G r T x, high bit first) sits where RFC 5944 3.3 puts it."""
    bit = {"S": 7, "B": 6, "D": 5, "M": 4, "G": 3, "RESERVED_R": 2, "T": 1, "RESERVED_X": 0}
    assert flag.name is not None
    vector = bytes([1, 1 << bit[flag.name]]) + REQUEST_VECTOR[2:24]
    request = RegistrationRequest.decode(vector)
    assert request.flags == flag
    assert dataclasses.replace(REQUEST_VALUE, flags=flag, extensions=()).encode() == vector


def test_decode_registration_dispatch() -> None:
    """The first byte picks the message; anything else is UnknownTypeError."""
    assert isinstance(decode_registration(REQUEST_VECTOR), RegistrationRequest)
    assert isinstance(decode_registration(REPLY_VECTOR), RegistrationReply)
    for bad in (b"", b"\x02" + REQUEST_VECTOR[1:]):
        with pytest.raises(UnknownTypeError):
            decode_registration(bad)
    with pytest.raises(UnknownTypeError):
        RegistrationReply.decode(REQUEST_VECTOR)


def test_truncated_fixed_part() -> None:
    """A request shorter than its 24 fixed bytes raises TruncatedError."""
    with pytest.raises(TruncatedError):
        RegistrationRequest.decode(REQUEST_VECTOR[:23])


def test_size_limit() -> None:
    """A message bigger than one UDP datagram can carry is refused both ways."""
    pad = UnknownExtension(200, bytes(255))
    # 24 + 257 * 255 = 65559 > 65507
    big = dataclasses.replace(REQUEST_VALUE, extensions=(pad,) * 255)
    with pytest.raises(LengthError):
        big.encode()
    with pytest.raises(LengthError):
        RegistrationRequest.decode(bytes(MAX_MESSAGE_SIZE + 1))


def test_unknown_extensions_survive_in_messages() -> None:
    """Skippable and non-skippable unknown extensions stay in the message and re-encode."""
    vector = REQUEST_VECTOR[:24] + bytes.fromhex(
        "64"  # Type 100 (not skippable)
        "01"  # Length 1
        "aa"  # data
        "c8"  # Type 200 (skippable)
        "00"  # Length 0
    )
    request = RegistrationRequest.decode(vector)
    kept = [(e.type, e.skippable) for e in request.extensions if isinstance(e, UnknownExtension)]
    assert kept == [(100, False), (200, True)]
    assert request.encode() == vector


def test_protected_bytes_by_hand() -> None:
    """The MN-HA authenticator covers the 24 fixed bytes and the extension's Type, Length and
    SPI (RFC 5944 3.5.1), both for the decoded message and for the same value built here."""
    expected = bytes.fromhex(
        "01820708"  # Type, flags, Lifetime
        "0a000005"
        "0a000001"
        "c000020a"  # Home Address, Home Agent, Care-of Address
        "e75a1b2c80000000"  # Identification
        "2014"  # Type 32, Length 20
        "00000100"  # SPI 256
    )
    decoded = RegistrationRequest.decode(REQUEST_VECTOR)
    assert protected_bytes(decoded, decoded.extensions[0]) == expected
    assert protected_bytes(REQUEST_VALUE, REQUEST_VALUE.extensions[0]) == expected


def test_protected_bytes_include_prior_extensions() -> None:
    """An FA-HA authenticator also covers the MN-HA and MN-FA extensions before it."""
    mh = MobileHomeAuthExtension(1, b"\x11" * 4)
    mf = MobileForeignAuthExtension(2, b"\x22" * 4)
    fh = ForeignHomeAuthExtension(3, b"\x33" * 4)
    request = dataclasses.replace(REQUEST_VALUE, extensions=(mh, mf, fh))
    expected = REQUEST_VECTOR[:24] + mh.encode() + mf.encode() + bytes.fromhex("2208 00000003")
    assert protected_bytes(request, fh) == expected
    decoded = RegistrationRequest.decode(request.encode())
    assert protected_bytes(decoded, decoded.extensions[2]) == expected


def test_protected_bytes_use_what_arrived() -> None:
    """For a decoded message the bytes come from raw, so a field that would re-encode
    differently (here: a value we could not have produced) is still covered as received."""
    decoded = RegistrationRequest.decode(REQUEST_VECTOR)
    doctored = dataclasses.replace(decoded, lifetime=1, raw=decoded.raw)
    assert protected_bytes(doctored, doctored.extensions[0])[2:4] == b"\x07\x08"


def test_protected_bytes_refuses_foreign_extension() -> None:
    """Asking for an extension the message does not hold, or for one that carries no SPI, is
    a programming error."""
    with pytest.raises(ValueError):
        protected_bytes(REQUEST_VALUE, MobileHomeAuthExtension(9, b"zz"))
    unknown = UnknownExtension(200, b"\x01")
    with pytest.raises(ValueError):
        protected_bytes(dataclasses.replace(REQUEST_VALUE, extensions=(unknown,)), unknown)


def test_bytes_before() -> None:
    """bytes_before is the fixed part plus every earlier extension, built or decoded."""
    unknown = UnknownExtension(200, b"\x01")
    mh = MobileHomeAuthExtension(1, b"\x11")
    request = dataclasses.replace(REQUEST_VALUE, extensions=(unknown, mh))
    assert bytes_before(request, unknown) == REQUEST_VECTOR[:24]
    assert bytes_before(request, mh) == REQUEST_VECTOR[:24] + bytes.fromhex("c80101")
    decoded = RegistrationRequest.decode(request.encode())
    assert bytes_before(decoded, decoded.extensions[1]) == bytes_before(request, mh)


def test_with_authenticator_hmac() -> None:
    """with_authenticator appends an extension whose authenticator is the callback over the
    protected bytes (Length already counting the authenticator), and it verifies after a
    round trip."""
    key = b"k" * 16
    bare = dataclasses.replace(REQUEST_VALUE, extensions=())

    def mac(protected: bytes) -> bytes:
        return hmac.new(key, protected, hashlib.md5).digest()

    signed = with_authenticator(bare, MobileHomeAuthExtension, 256, 16, mac)
    ext = signed.extensions[-1]
    assert isinstance(ext, MobileHomeAuthExtension)
    covered = REQUEST_VECTOR[:24] + bytes.fromhex("2014 00000100")
    assert ext.authenticator == hmac.new(key, covered, hashlib.md5).digest()
    decoded = RegistrationRequest.decode(signed.encode())
    got = decoded.extensions[-1]
    assert isinstance(got, MobileHomeAuthExtension)
    assert mac(protected_bytes(decoded, got)) == got.authenticator


def test_append_authenticator_gives_the_same_bytes() -> None:
    """Appending to the encoding gives exactly what with_authenticator's message encodes
    to, for a request and a reply, one authenticator after another; a callback of the wrong
    size is refused."""

    def mac(protected: bytes) -> bytes:
        return hmac.new(b"k" * 32, protected, hashlib.sha256).digest()

    messages: list[Any] = [REQUEST_VALUE, REPLY_VALUE]
    for message in messages:
        built = with_authenticator(message, MobileHomeAuthExtension, 300, 32, mac)
        built = with_authenticator(built, ForeignHomeAuthExtension, 300, 32, mac)
        data = append_authenticator(message.encode(), MobileHomeAuthExtension, 300, 32, mac)
        data = append_authenticator(data, ForeignHomeAuthExtension, 300, 32, mac)
        assert data == built.encode()
    with pytest.raises(ValueError):
        append_authenticator(REPLY_VECTOR, ForeignHomeAuthExtension, 1, 16, lambda p: b"x")


def test_with_authenticator_wrong_size() -> None:
    """A callback that returns another size than announced is refused."""
    with pytest.raises(ValueError):
        with_authenticator(REPLY_VALUE, ForeignHomeAuthExtension, 1, 16, lambda p: b"short")


def test_with_authenticator_drops_stale_raw() -> None:
    """Appending to a decoded message forgets its raw bytes (they no longer describe it)."""
    decoded = RegistrationReply.decode(REPLY_VECTOR)
    signed = with_authenticator(decoded, ForeignHomeAuthExtension, 7, 4, lambda p: b"abcd")
    assert signed.raw is None
    assert signed.encode() == REPLY_VECTOR + bytes.fromhex("2208 00000007 61626364")


def test_reprs_are_readable() -> None:
    """Reprs show flags by name, addresses dotted, and no authenticator bytes."""
    text = repr(REQUEST_VALUE)
    assert "flags=S|T" in text
    assert "care_of_address=192.0.2.10" in text
    assert "authenticator=16 bytes" in text
    assert "HA_IDENTIFICATION_MISMATCH (133)" in repr(REPLY_VALUE)


# RFC 5944 section 5.7: Identification.


def test_identification_ntp_epoch() -> None:
    """Unix time 0 is NTP second 2208988800 (0x83aa7e80), fraction 0."""
    ident = Identification.from_unix_time(0.0)
    assert (ident.high, ident.low) == (0x83AA7E80, 0)
    assert NTP_UNIX_OFFSET == 0x83AA7E80


def test_identification_fraction() -> None:
    """Half a second is 0x80000000 in the low half; the value reads back."""
    ident = Identification.from_unix_time(1_700_000_000.5)
    assert ident.low == 0x80000000
    assert ident.high == 1_700_000_000 + NTP_UNIX_OFFSET
    assert ident.unix_time() == 1_700_000_000.5
    assert ident.skew(1_700_000_010.5) == -10.0


def test_identification_after_2036() -> None:
    """A time after the NTP era wraps (2036-02-07) reads back, not as 1900."""
    later = 2_200_000_000.25
    ident = Identification.from_unix_time(later)
    assert ident.high < 0x80000000
    assert ident.unix_time() == later


def test_identification_time_span() -> None:
    """Times the 2036 pivot cannot read back (before 1968-01-20, from 2104-02-26) and
    non-finite times are refused rather than silently wrapped."""
    Identification.from_unix_time(-61_505_152.0)
    Identification.from_unix_time(4_294_967_296 + 2**31 - NTP_UNIX_OFFSET - 1.0)
    for bad in (
        -61_505_153.0,
        4_294_967_296 + 2**31 - NTP_UNIX_OFFSET,
        float("nan"),
        float("inf"),
    ):
        with pytest.raises(BadValueError):
            Identification.from_unix_time(bad)


def test_identification_int_split() -> None:
    """The 64-bit field splits into high and low 32-bit halves and joins back."""
    ident = Identification.from_int(0x0123456789ABCDEF)
    assert (ident.high, ident.low) == (0x01234567, 0x89ABCDEF)
    assert int(ident) == ident.value == 0x0123456789ABCDEF


def test_identification_reply_and_nonces() -> None:
    """A reply copies the request's low half; nonce mode puts HA nonce high, MN nonce low."""
    request = Identification.for_nonces(home_nonce=0x11111111, mobile_nonce=0x22222222)
    assert int(request) == 0x1111111122222222
    reply = request.reply(0x33333333)
    assert int(reply) == 0x3333333322222222
    assert request.answers(reply)
    assert not request.answers(Identification(0x33333333, 0x22222223))


@settings()
@given(st.integers(0, 2**64 - 1))
def test_identification_roundtrip(value: int) -> None:
    """Every 64-bit value survives from_int and int()."""
    assert int(Identification.from_int(value)) == value


@settings()
@given(st.floats(min_value=-61_000_000, max_value=4_200_000_000, allow_nan=False))
def test_identification_time_roundtrip(t: float) -> None:
    """A Unix time from 1968 to 2103 (the span the 2036 pivot can tell apart) reads back
    within one NTP fraction step."""
    assert abs(Identification.from_unix_time(t).unix_time() - t) < 2**-31 + abs(t) * 2**-52


# Round trips and fuzzing.


@settings()
@given(requests)
def test_request_roundtrip(request: RegistrationRequest) -> None:
    """Any request value encodes and decodes back to itself; re-encoding is stable."""
    data = request.encode()
    decoded = RegistrationRequest.decode(data)
    assert decoded == request
    assert decoded.encode() == data


@settings()
@given(replies)
def test_reply_roundtrip(reply: RegistrationReply) -> None:
    """Any reply value (known code or not) encodes and decodes back to itself."""
    data = reply.encode()
    decoded = decode_registration(data)
    assert decoded == reply
    assert decoded.encode() == data


@settings()
@given(st.binary(max_size=200))
def test_fuzz_registration_arbitrary(data: bytes) -> None:
    """Arbitrary bytes, and arbitrary bytes behind a valid Type byte, decode or raise
    WireError; whatever decodes re-encodes to the input."""
    for candidate in (data, b"\x01" + data, b"\x03" + data):
        message = try_decode(decode_registration, candidate)
        if message is not None:
            assert message.encode() == candidate, explain(candidate)


@settings()
@given(st.data())
def test_fuzz_registration_mutated(data: st.DataObject) -> None:
    """Truncated, extended and bit-flipped valid messages decode or raise WireError;
    whatever decodes re-encodes to the input."""
    valid = data.draw(st.one_of(requests, replies)).encode()
    bad = data.draw(mutated(valid))
    for decode in (decode_registration, RegistrationRequest.decode, RegistrationReply.decode):
        message = try_decode(decode, bad)
        if message is not None:
            assert message.encode() == bad, explain(bad)
