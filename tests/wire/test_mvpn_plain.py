"""The sealed plaintexts of docs/protocol.md sections 5 to 7, byte by byte."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import strategies as st

from mvpn.wire import plain
from mvpn.wire.codes import AuthSecPar, EncrSecPar, ReplyCode
from mvpn.wire.errors import LengthError, TrailingDataError, TruncatedError, WireError
from tests.wire import mvpn_strategies as s

A = ipaddress.IPv4Address
CN_SIG = b"C" * 64
KU_CN = b"K" * 64
KU_FA = b"F" * 64
KU_MN = b"M" * 64
HELLO = b"H" * 16

M_VECTOR = bytes.fromhex(
    "0007abcd"  # MN Nonce: advertisement sequence 7, MN random 0xabcd
    "000002005e102030"  # DVC MAC ID
    "0000000004d2"  # USER ID (48 bits) = 1234
    "0000000000000000"  # SC ID: no smart card
    "04"  # MN Auth Key length
    "6b657921"  # MN Auth Key "key!"
)
M_VALUE = plain.MobileInfo(0x0007ABCD, 0x02005E102030, 1234, 0, b"key!")

F_VECTOR = bytes.fromhex(
    "c0000201"  # FA ADDR 192.0.2.1
    "11223344"  # FA Nonce
    "00000000000000fa"  # FA ID 250
)
F_VALUE = plain.ForeignInfo(A("192.0.2.1"), 0x11223344, 250)

Q_VECTOR = (
    bytes.fromhex(
        "11223344"  # FA Nonce
        "00"  # Result: accepted
        "0007abcd"  # MN Nonce
        "00000101"  # SPI 257
        "0000012c"  # Key Lifetime 300 s
        "02"
        "5353"  # len8 + Ses Key "SS"
        "02"
        "4141"  # len8 + Auth Key "AA"
        "04"
        "6b657921"  # len8 + MN Auth Key "key!"
        "40"  # KuMN length 64
    )
    + KU_MN  # KuMN
    + bytes.fromhex("00000000000004d2")  # MN ID 1234
)
Q_VALUE = plain.HomeInfo(
    0x11223344, ReplyCode.ACCEPTED, 0x0007ABCD, 257, 300, b"SS", b"AA", b"key!", KU_MN, 1234
)

W_VECTOR = (
    bytes.fromhex(
        "0007abcd"  # MN Nonce
        "e4f5a6b700000001"  # Identification (NTP timestamp)
        "00"  # Result
        "00000000000000fa"  # FA ID 250
    )
    + KU_FA  # KuFA, 64 bytes, no length prefix
    + bytes.fromhex("000000000000000a")  # HA ID 10
)
W_VALUE = plain.HomeToMobile(0x0007ABCD, 0xE4F5A6B700000001, ReplyCode.ACCEPTED, 250, KU_FA, 10)

T_VECTOR = bytes.fromhex(
    "00000000"  # ACK: authenticated at HA and FA
    "0007abcd"  # MN Nonce
    "00000101"  # SPI 257
    "0000012c"  # Key Lifetime 300 s
    "02"
    "5353"  # len8 + Ses Key
    "02"
    "4141"  # len8 + Auth Key
    "00000000000000fa"  # FA ID 250
)
T_VALUE = plain.MobileReply(ReplyCode.ACCEPTED, 0x0007ABCD, 257, 300, b"SS", b"AA", 250)

K_VECTOR = bytes.fromhex(
    "03"
    "6e5353"  # len8 + new Ses Key "nSS"
    "03"
    "6e4141"  # len8 + new Auth Key "nAA"
)
K_VALUE = plain.KeyRefresh(b"nSS", b"nAA")

V_VECTOR = bytes.fromhex(
    "0a000005"  # MN ADDR 10.0.0.5
    "00000000000000cc"  # CN ID 204
    "c6336401"  # CN ADDR 198.51.100.1
    "0badf00d"  # CN Nonce
    "e4f5a6b780000000"  # Timestamp (NTP)
    "6010"  # Sec Par: Auth 5 (bit 4), Encr 6 (bit 13) and 7 (bit 14)
    "0004"
    "59595959"  # len16 + Ycn "YYYY"
    "0000"  # len16 + P: empty (X25519)
    "0000"  # len16 + g: empty
)
V_VALUE = plain.RequestCommunicationInfo(
    A("10.0.0.5"), 204, A("198.51.100.1"), 0x0BADF00D, 0xE4F5A6B780000000, 0x6010, b"YYYY"
)

U_VECTOR = (
    bytes.fromhex(
        "00000102"  # SPI 258: the data SA
        "02"
        "4444"  # len8 + Data Auth Key "DD"
    )
    + V_VECTOR  # V, exactly as the CN sent it
    + CN_SIG  # sig_CN
    + KU_CN  # KuCN
    + bytes.fromhex("c6336401")  # CN ADDR
)
U_VALUE = plain.CorrespondentInfoForMN(258, b"DD", V_VALUE, CN_SIG, KU_CN, A("198.51.100.1"))

X_VECTOR = HELLO + bytes.fromhex(  # Hello value, 16 bytes
    "00000102"  # SPI
    "02"
    "4444"  # len8 + Data Auth Key
    "00000000000000cc"  # CN ID
    "c6336401"  # CN ADDR
    "0a000005"  # MN ADDR
    "6010"  # Sec Par
    "0000"  # len16 + P
    "0000"  # len16 + g
    "0badf00d"  # CN Nonce
)
X_VALUE = plain.CorrespondentInfoForFA(
    HELLO, 258, b"DD", 204, A("198.51.100.1"), A("10.0.0.5"), 0x6010, cn_nonce=0x0BADF00D
)

Y_VECTOR = HELLO + bytes.fromhex(  # Hello value
    "00000102"  # SPI
    "2010"  # Sec Par: CN's AND FA's = Auth 5, Encr 6
)
Y_VALUE = plain.CorrespondentInfoFAToMN(HELLO, 258, 0x2010)

Z_VECTOR = bytes.fromhex(
    "00000102"  # SPI
    "00000000000000cc"  # CN ID
    "c6336401"  # CN ADDR
    "05"  # Auth Sec Par: HMAC-SHA256-128
    "06"  # Encr Sec Par: AES-256-GCM
)
Z_VALUE = plain.CorrespondentResponseForFA(
    258, 204, A("198.51.100.1"), AuthSecPar.HMAC_SHA256_128, EncrSecPar.AES_256_GCM
)

L_VECTOR = bytes.fromhex(
    "00000102"  # SPI
    "0a000005"  # MN ADDR
    "00000000000004d2"  # MN ID 1234
    "0badf00d"  # CN Nonce
    "02"
    "4444"  # len8 + Data Auth Key
    "6010"  # Sec Par
    "05"  # Auth Sec Par
    "07"  # Encr Sec Par: ChaCha20-Poly1305
    "0004"
    "4d4d4d4d"  # len16 + Ymn "MMMM"
    "0000"  # len16 + P
    "0000"  # len16 + g
)
L_VALUE = plain.CorrespondentResponseForCN(
    258,
    A("10.0.0.5"),
    1234,
    0x0BADF00D,
    b"DD",
    0x6010,
    AuthSecPar.HMAC_SHA256_128,
    EncrSecPar.CHACHA20_POLY1305,
    b"MMMM",
)

S_VECTOR = bytes.fromhex(
    "02"  # Count
    # session 1
    "00000102"  # SPI
    "c6336401"  # CN ADDR
    "00000000000000cc"  # CN ID
    "05"
    "06"  # Auth Sec Par, Encr Sec Par
    "02"
    "4444"  # len8 + Data Auth Key
    # session 2
    "00000103"  # SPI
    "c6336402"  # CN ADDR
    "00000000000000dd"  # CN ID
    "05"
    "63"  # Auth Sec Par, Encr Sec Par 99: unknown, kept as an int
    "00"  # len8 + Data Auth Key: empty
)
S_VALUE = plain.KeyTransferInfo(
    (
        plain.TransferredSession(258, A("198.51.100.1"), 204, 5, 6, b"DD"),
        plain.TransferredSession(259, A("198.51.100.2"), 221, 5, 99, b""),
    )
)

VECTORS: list[tuple[Any, bytes, Any]] = [
    (plain.MobileInfo, M_VECTOR, M_VALUE),
    (plain.ForeignInfo, F_VECTOR, F_VALUE),
    (plain.HomeInfo, Q_VECTOR, Q_VALUE),
    (plain.HomeToMobile, W_VECTOR, W_VALUE),
    (plain.MobileReply, T_VECTOR, T_VALUE),
    (plain.KeyRefresh, K_VECTOR, K_VALUE),
    (plain.RequestCommunicationInfo, V_VECTOR, V_VALUE),
    (plain.CorrespondentInfoForMN, U_VECTOR, U_VALUE),
    (plain.CorrespondentInfoForFA, X_VECTOR, X_VALUE),
    (plain.CorrespondentInfoFAToMN, Y_VECTOR, Y_VALUE),
    (plain.CorrespondentResponseForFA, Z_VECTOR, Z_VALUE),
    (plain.CorrespondentResponseForCN, L_VECTOR, L_VALUE),
    (plain.KeyTransferInfo, S_VECTOR, S_VALUE),
]
IDS = [cls.__name__ for cls, _, _ in VECTORS]


@pytest.mark.parametrize(("cls", "vector", "value"), VECTORS, ids=IDS)
def test_vector_decodes_to_value(cls: Any, vector: bytes, value: Any) -> None:
    """The hand-written vector decodes to the expected value and keeps its raw bytes."""
    decoded = cls.decode(vector)
    assert decoded == value
    assert decoded.raw == vector


@pytest.mark.parametrize(("cls", "vector", "value"), VECTORS, ids=IDS)
def test_value_encodes_to_vector(cls: Any, vector: bytes, value: Any) -> None:
    """Encoding the value gives exactly the hand-written bytes."""
    assert value.encode() == vector


@pytest.mark.parametrize(("cls", "vector", "value"), VECTORS, ids=IDS)
def test_vector_rejects_trailing_and_truncation(cls: Any, vector: bytes, value: Any) -> None:
    """One byte more is trailing data; one byte less is a truncated field."""
    with pytest.raises(TrailingDataError):
        cls.decode(vector + b"\x00")
    with pytest.raises(TruncatedError):
        cls.decode(vector[:-1])


def test_known_codes_decode_to_enums() -> None:
    """Known reply codes and Sec Par code points decode to enum members, unknown to ints."""
    assert plain.HomeInfo.decode(Q_VECTOR).result is ReplyCode.ACCEPTED
    z = plain.CorrespondentResponseForFA.decode(Z_VECTOR)
    assert z.auth_sec_par is AuthSecPar.HMAC_SHA256_128
    assert z.encr_sec_par is EncrSecPar.AES_256_GCM
    second = plain.KeyTransferInfo.decode(S_VECTOR).sessions[1]
    assert type(second.encr_sec_par) is int
    assert second.encr_sec_par == 99


def test_u_prime_embeds_v_as_received() -> None:
    """U' carries the CN's V inside it, decoded, with V's own raw bytes."""
    u = plain.CorrespondentInfoForMN.decode(U_VECTOR)
    assert u.request == V_VALUE
    assert u.request.raw == V_VECTOR


def test_key_bytes_never_in_repr() -> None:
    """No key byte string shows up in the repr of a value that carries one."""
    secret = b"\xaa" * 32
    values = [
        plain.MobileInfo(1, 2, 3, 4, secret),
        plain.HomeInfo(1, 0, 2, 257, 300, secret, secret, secret, KU_MN, 5),
        plain.MobileReply(0, 2, 257, 300, secret, secret, 5),
        plain.KeyRefresh(secret, secret),
        plain.CorrespondentInfoForMN(258, secret, V_VALUE, CN_SIG, KU_CN, A("192.0.2.9")),
        plain.CorrespondentInfoForFA(HELLO, 258, secret, 1, A("192.0.2.9"), A("10.0.0.5"), 0),
        plain.CorrespondentResponseForCN(258, A("10.0.0.5"), 1, 2, secret, 0, 5, 6, b"Y"),
        plain.TransferredSession(258, A("192.0.2.9"), 1, 5, 6, secret),
    ]
    for value in values:
        text = repr(value)
        assert repr(secret) not in text, text
        assert "aaaa" not in text, text
        assert "_key" not in text, text


def test_limits_are_enforced_when_building_and_decoding() -> None:
    """MN Auth Key (64), other keys (64) and DH values (512): over-limit values never build,
    and an over-limit field on the wire is a LengthError."""
    with pytest.raises(LengthError):
        plain.MobileInfo(1, 2, 3, 4, b"k" * (plain.MAX_MN_AUTH_KEY + 1))
    plain.MobileInfo(1, 2, 3, 4, b"k" * plain.MAX_MN_AUTH_KEY)
    with pytest.raises(LengthError):
        plain.MobileInfo.decode(M_VECTOR[:26] + bytes((65,)) + b"k" * 65)
    with pytest.raises(LengthError):
        plain.KeyRefresh(b"s" * (plain.MAX_KEY + 1), b"")
    big = b"y" * (plain.MAX_DH_VALUE + 1)
    with pytest.raises(LengthError):
        plain.RequestCommunicationInfo(A("10.0.0.5"), 1, A("10.0.0.6"), 1, 1, 0, big)
    plain.RequestCommunicationInfo(A("10.0.0.5"), 1, A("10.0.0.6"), 1, 1, 0, big[:-1])
    on_wire = V_VECTOR[:-10] + len(big).to_bytes(2, "big") + big + bytes(4)
    with pytest.raises(LengthError):
        plain.RequestCommunicationInfo.decode(on_wire)


def test_fixed_size_fields_and_ranges_are_enforced() -> None:
    """KuMN is 0 or 64 bytes, KuFA and signatures exactly 64, Hello 16; integers must fit."""
    with pytest.raises(LengthError):
        plain.HomeInfo(1, 0, 2, 257, 300, b"", b"", b"", b"x" * 63, 5)
    plain.HomeInfo(1, 70, 2, 0, 0, b"", b"", b"", b"", 5)  # a denial: empty keys
    with pytest.raises(LengthError):
        plain.HomeToMobile(1, 2, 0, 3, b"x" * 65, 4)
    with pytest.raises(LengthError):
        plain.CorrespondentInfoFAToMN(b"h" * 15, 1, 0)
    with pytest.raises(LengthError):
        plain.CorrespondentInfoForMN(1, b"", V_VALUE, b"s" * 63, KU_CN, A("10.0.0.1"))
    with pytest.raises(WireError):
        plain.MobileInfo(1, 2, 1 << 48, 4, b"")
    with pytest.raises(WireError):
        plain.HomeInfo(1, 256, 2, 257, 300, b"", b"", b"", b"", 5)
    with pytest.raises(WireError):
        plain.ForeignInfo("192.0.2.1", 1, 2)  # type: ignore[arg-type]
    with pytest.raises(LengthError):
        plain.KeyTransferInfo(
            tuple(plain.TransferredSession(i, A("10.0.0.1"), 1, 5, 6, b"") for i in range(256))
        )


def test_sec_par_bits() -> None:
    """Auth Sec Par n is bit n-1, Encr Sec Par n bit 8+n-1 (doc 7.1), both ways."""
    flags = plain.sec_par_flags([AuthSecPar.HMAC_SHA256_128], [6, EncrSecPar.CHACHA20_POLY1305])
    assert flags == 0x6010
    assert plain.sec_par_auth(flags) == {AuthSecPar.HMAC_SHA256_128}
    assert plain.sec_par_encr(flags) == {EncrSecPar.AES_256_GCM, EncrSecPar.CHACHA20_POLY1305}
    assert plain.sec_par_auth(0x0080) == {8}
    with pytest.raises(ValueError):
        plain.sec_par_flags([9])
    with pytest.raises(ValueError):
        plain.sec_par_flags((), [0])


def test_split_signed() -> None:
    """An opened Q || sig_HA splits into Q and the 64-byte signature; shorter is truncated."""
    q, sig = plain.split_signed(Q_VECTOR + b"s" * 64, "Q")
    assert (q, sig) == (Q_VECTOR, b"s" * 64)
    assert plain.HomeInfo.decode(q) == Q_VALUE
    assert plain.split_signed(b"s" * 64, "Q") == (b"", b"s" * 64)
    with pytest.raises(TruncatedError):
        plain.split_signed(b"s" * 63, "Q")


def test_fixed_sizes() -> None:
    """W' is 93 bytes; Y 22; Z 18; F 16 (the layouts of docs/protocol.md 5.2 to 7.4)."""
    assert len(W_VECTOR) == plain.HomeToMobile.SIZE == 93
    assert (len(Y_VECTOR), len(Z_VECTOR), len(F_VECTOR)) == (22, 18, 16)


def test_mn_nonce_halves() -> None:
    """The MN Nonce is the advertisement Sequence Number, then 16 random bits."""
    assert plain.make_mn_nonce(7, 0xABCD) == 0x0007ABCD == M_VALUE.mn_nonce
    assert plain.mn_nonce_sequence(0x0007ABCD) == 7
    with pytest.raises(WireError):
        plain.make_mn_nonce(1 << 16, 0)


def test_hello_input() -> None:
    """The Hello HMAC input is "hello" || SPI || CN Nonce (doc 7.3)."""
    assert plain.hello_input(258, 0x0BADF00D) == b"hello" + bytes.fromhex("000001020badf00d")


# --- Hypothesis ---------------------------------------------------------------------------

v_values = st.builds(
    plain.RequestCommunicationInfo,
    s.ipv4,
    s.uint(64),
    s.ipv4,
    s.uint(32),
    s.uint(64),
    s.uint(16),
    s.dh,
    s.dh,
    s.dh,
)
session_values = st.builds(
    plain.TransferredSession, s.uint(32), s.ipv4, s.uint(64), s.auth_par, s.encr_par, s.key
)

STRATEGIES: dict[Any, st.SearchStrategy[Any]] = {
    plain.MobileInfo: st.builds(
        plain.MobileInfo,
        s.uint(32),
        s.uint(64),
        s.uint(48),
        s.uint(64),
        st.binary(max_size=plain.MAX_MN_AUTH_KEY),
    ),
    plain.ForeignInfo: st.builds(plain.ForeignInfo, s.ipv4, s.uint(32), s.uint(64)),
    plain.HomeInfo: st.builds(
        plain.HomeInfo,
        s.uint(32),
        s.reply_code,
        s.uint(32),
        s.uint(32),
        s.uint(32),
        s.key,
        s.key,
        st.binary(max_size=plain.MAX_MN_AUTH_KEY),
        st.sampled_from([b"", KU_MN]),
        s.uint(64),
    ),
    plain.HomeToMobile: st.builds(
        plain.HomeToMobile, s.uint(32), s.uint(64), s.reply_code, s.uint(64), s.pub, s.uint(64)
    ),
    plain.MobileReply: st.builds(
        plain.MobileReply,
        st.one_of(st.sampled_from(ReplyCode), s.uint(32)),
        s.uint(32),
        s.uint(32),
        s.uint(32),
        s.key,
        s.key,
        s.uint(64),
    ),
    plain.KeyRefresh: st.builds(plain.KeyRefresh, s.key, s.key),
    plain.RequestCommunicationInfo: v_values,
    plain.CorrespondentInfoForMN: st.builds(
        plain.CorrespondentInfoForMN, s.uint(32), s.key, v_values, s.sig, s.pub, s.ipv4
    ),
    plain.CorrespondentInfoForFA: st.builds(
        plain.CorrespondentInfoForFA,
        s.hello,
        s.uint(32),
        s.key,
        s.uint(64),
        s.ipv4,
        s.ipv4,
        s.uint(16),
        s.dh,
        s.dh,
        s.uint(32),
    ),
    plain.CorrespondentInfoFAToMN: st.builds(
        plain.CorrespondentInfoFAToMN, s.hello, s.uint(32), s.uint(16)
    ),
    plain.CorrespondentResponseForFA: st.builds(
        plain.CorrespondentResponseForFA,
        s.uint(32),
        s.uint(64),
        s.ipv4,
        s.auth_par,
        s.encr_par,
    ),
    plain.CorrespondentResponseForCN: st.builds(
        plain.CorrespondentResponseForCN,
        s.uint(32),
        s.ipv4,
        s.uint(64),
        s.uint(32),
        s.key,
        s.uint(16),
        s.auth_par,
        s.encr_par,
        s.dh,
        s.dh,
        s.dh,
    ),
    plain.KeyTransferInfo: st.builds(
        plain.KeyTransferInfo, st.lists(session_values, max_size=4).map(tuple)
    ),
}


globals().update(
    s.fuzz_tests(
        "plain", {cls.__name__: (cls.decode, strategy) for cls, strategy in STRATEGIES.items()}
    )
)
