"""The inner plaintexts of MVPN: the values that are sealed (docs/protocol.md sections 5 to 7).

Each class is one letter of the draft (``M``, ``F``, ``Q``, ...) as laid out byte by byte in
docs/protocol.md. Their ``encode()`` output is what the crypto layer seals (with the class's
:attr:`LABEL`), and ``decode()`` reads what it opened. Where the document seals a value
together with a signature (``seal(label, Q || sig(label, ..., Q))``), the value here is only
``Q``: the crypto layer appends and splits the fixed-size signature (:data:`SIGNATURE_SIZE`).

Key bytes never appear in a ``repr``. Limits are named constants with their reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from mvpn.wire._fields import (
    PUBLIC_KEYS_SIZE,
    SIGNATURE_SIZE,
    U16,
    U32,
    U64,
    check_bytes,
    check_code,
    check_ipv4,
    check_size,
    check_uint,
    len8,
    len16,
    raw_field,
)
from mvpn.wire.codes import AuthSecPar, EncrSecPar, ReplyCode, lookup
from mvpn.wire.errors import LengthError, TruncatedError
from mvpn.wire.reader import Reader

__all__ = [
    "HELLO_SIZE",
    "MAX_DH_VALUE",
    "MAX_KEY",
    "MAX_MN_AUTH_KEY",
    "MAX_TRANSFERRED_SESSIONS",
    "PUBLIC_KEYS_SIZE",
    "SIGNATURE_SIZE",
    "CorrespondentInfoFAToMN",
    "CorrespondentInfoForFA",
    "CorrespondentInfoForMN",
    "CorrespondentResponseForCN",
    "CorrespondentResponseForFA",
    "ForeignInfo",
    "HomeInfo",
    "HomeToMobile",
    "KeyRefresh",
    "KeyTransferInfo",
    "MobileInfo",
    "MobileReply",
    "RequestCommunicationInfo",
    "TransferredSession",
    "hello_input",
    "make_mn_nonce",
    "mn_nonce_sequence",
    "sec_par_auth",
    "sec_par_encr",
    "sec_par_flags",
    "split_signed",
]

MAX_MN_AUTH_KEY = 64
"""MN Auth Key: 32 bytes in the default suite, at most 64 (docs/protocol.md 5.1)."""

MAX_KEY = 64
"""Any other symmetric key (Ses Key, Auth Key, Data Auth Key): 32 bytes today; the codec
accepts up to 64 so that a later suite with longer keys needs no wire change."""

MAX_DH_VALUE = 512
"""Diffie-Hellman values, P and g: an RFC 7919 ffdhe4096 value is 512 bytes (7.1)."""

HELLO_SIZE = 16
"""The Hello value: HMAC-SHA256 truncated to 16 bytes (docs/protocol.md 7.3)."""

MAX_TRANSFERRED_SESSIONS = 0xFF
"""Key Transfer carries an 8-bit session count (docs/protocol.md 7.6)."""


def _u48(r: Reader, name: str) -> int:
    return int.from_bytes(r.take(6, name), "big")


# --- Sec Par (docs/protocol.md 7.1) -------------------------------------------------------


def sec_par_flags(
    auth: Iterable[AuthSecPar | int] = (), encr: Iterable[EncrSecPar | int] = ()
) -> int:
    """The 16-bit Sec Par naming the given code points (7.1).

    Auth Sec Par ``n`` sets bit ``n - 1`` of the low byte, Encr Sec Par ``n`` bit ``8 + n - 1``;
    code points outside 1 to 8 have no bit and raise :class:`ValueError`.
    """
    flags = 0
    for value in auth:
        if not 1 <= int(value) <= 8:
            raise ValueError(f"Auth Sec Par {int(value)} has no Sec Par bit (1 to 8)")
        flags |= 1 << (int(value) - 1)
    for value in encr:
        if not 1 <= int(value) <= 8:
            raise ValueError(f"Encr Sec Par {int(value)} has no Sec Par bit (1 to 8)")
        flags |= 1 << (8 + int(value) - 1)
    return flags


def sec_par_auth(flags: int) -> frozenset[AuthSecPar | int]:
    """The Auth Sec Par code points set in ``flags`` (unknown ones as plain ints)."""
    return frozenset(lookup(AuthSecPar, n) for n in range(1, 9) if flags & (1 << (n - 1)))


def sec_par_encr(flags: int) -> frozenset[EncrSecPar | int]:
    """The Encr Sec Par code points set in ``flags`` (unknown ones as plain ints)."""
    return frozenset(lookup(EncrSecPar, n) for n in range(1, 9) if flags & (1 << (n + 7)))


def make_mn_nonce(sequence: int, random_half: int) -> int:
    """The MN Nonce (draft 5.1; doc 5.1): the advertisement Sequence Number (16) then 16
    random bits."""
    check_uint("MN Nonce", "Sequence Number", sequence, 16)
    check_uint("MN Nonce", "random half", random_half, 16)
    return sequence << 16 | random_half


def mn_nonce_sequence(mn_nonce: int) -> int:
    """The advertisement Sequence Number an MN Nonce names (its high 16 bits)."""
    return mn_nonce >> 16


def split_signed(data: bytes, what: str) -> tuple[bytes, bytes]:
    """Split an opened ``m || signature`` (sign-then-seal, docs/protocol.md 1) into ``m`` and
    the trailing :data:`SIGNATURE_SIZE`-byte signature; ``what`` names ``m`` in errors."""
    if len(data) < SIGNATURE_SIZE:
        raise TruncatedError(
            f"{what} signature", f"{SIGNATURE_SIZE} bytes", f"{len(data)} bytes", 0
        )
    return data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]


def hello_input(spi: int, cn_nonce: int) -> bytes:
    """The bytes after the label that the Hello value's HMAC covers: ``"hello" || SPI || CN
    Nonce`` (docs/protocol.md 7.3). The key is the Auth Key of the MN's registration SA."""
    check_uint("Hello", "SPI", spi, 32)
    check_uint("Hello", "CN Nonce", cn_nonce, 32)
    return b"hello" + U32.pack(spi) + U32.pack(cn_nonce)


# --- First contact (docs/protocol.md 5) ---------------------------------------------------


@dataclass(frozen=True)
class MobileInfo:
    """``M``, sealed to the HA in the Mobile Information extension (draft 5.1; doc 5.1).

    ``MN Nonce (32) | DVC MAC ID (64) | USER ID (48) | SC ID (64) | len8 + MN Auth Key``.
    """

    LABEL: ClassVar[str] = "mobile-info"

    mn_nonce: int
    dvc_mac_id: int
    user_id: int
    sc_id: int
    mn_auth_key: bytes = field(repr=False)
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "M"
        check_uint(what, "MN Nonce", self.mn_nonce, 32)
        check_uint(what, "DVC MAC ID", self.dvc_mac_id, 64)
        check_uint(what, "USER ID", self.user_id, 48)
        check_uint(what, "SC ID", self.sc_id, 64)
        check_bytes(what, "MN Auth Key", self.mn_auth_key, MAX_MN_AUTH_KEY)

    def encode(self) -> bytes:
        """The plaintext bytes, 27 + len(MN Auth Key)."""
        return b"".join(
            (
                U32.pack(self.mn_nonce),
                U64.pack(self.dvc_mac_id),
                self.user_id.to_bytes(6, "big"),
                U64.pack(self.sc_id),
                len8(self.mn_auth_key),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> MobileInfo:
        """Parse ``M``; :class:`~mvpn.wire.errors.WireError` on anything else."""
        r = Reader(data, "M")
        value = cls(
            r.u32("MN Nonce"),
            r.u64("DVC MAC ID"),
            _u48(r, "USER ID"),
            r.u64("SC ID"),
            r.u8_prefixed("MN Auth Key"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class ForeignInfo:
    """``F``, sealed to the HA in the Foreign Information extension (draft 5.2; doc 5.2).

    ``FA ADDR (IPv4) | FA Nonce (32) | FA ID (64)``.
    """

    LABEL: ClassVar[str] = "foreign-info"

    fa_addr: ipaddress.IPv4Address
    fa_nonce: int
    fa_id: int
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_ipv4("F", "FA ADDR", self.fa_addr)
        check_uint("F", "FA Nonce", self.fa_nonce, 32)
        check_uint("F", "FA ID", self.fa_id, 64)

    def encode(self) -> bytes:
        """The 16 plaintext bytes."""
        return self.fa_addr.packed + U32.pack(self.fa_nonce) + U64.pack(self.fa_id)

    @classmethod
    def decode(cls, data: bytes) -> ForeignInfo:
        """Parse ``F``."""
        r = Reader(data, "F")
        value = cls(r.ipv4("FA ADDR"), r.u32("FA Nonce"), r.u64("FA ID"), raw=r.data)
        r.end()
        return value


@dataclass(frozen=True)
class HomeInfo:
    """``Q``, signed by the HA then sealed to the FA in extension 38 (draft 5.3; doc 5.3).

    ``FA Nonce (32) | Result (8) | MN Nonce (32) | SPI (32) | Key Lifetime (32) | len8 + Ses
    Key | len8 + Auth Key | len8 + MN Auth Key | len8 + KuMN | MN ID (64)``. A denial has
    SPI 0 and empty keys.
    """

    LABEL: ClassVar[str] = "home-info"

    fa_nonce: int
    result: ReplyCode | int
    mn_nonce: int
    spi: int
    key_lifetime: int
    ses_key: bytes = field(repr=False)
    auth_key: bytes = field(repr=False)
    mn_auth_key: bytes = field(repr=False)
    ku_mn: bytes
    mn_id: int
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "Q"
        check_uint(what, "FA Nonce", self.fa_nonce, 32)
        check_code(what, "Result", self.result, 8)
        check_uint(what, "MN Nonce", self.mn_nonce, 32)
        check_uint(what, "SPI", self.spi, 32)
        check_uint(what, "Key Lifetime", self.key_lifetime, 32)
        check_bytes(what, "Ses Key", self.ses_key, MAX_KEY)
        check_bytes(what, "Auth Key", self.auth_key, MAX_KEY)
        check_bytes(what, "MN Auth Key", self.mn_auth_key, MAX_MN_AUTH_KEY)
        check_size(what, "KuMN", self.ku_mn, (0, PUBLIC_KEYS_SIZE))
        check_uint(what, "MN ID", self.mn_id, 64)

    def encode(self) -> bytes:
        """The plaintext bytes (without the HA signature that follows them in the seal)."""
        return b"".join(
            (
                U32.pack(self.fa_nonce),
                bytes((int(self.result),)),
                U32.pack(self.mn_nonce),
                U32.pack(self.spi),
                U32.pack(self.key_lifetime),
                len8(self.ses_key),
                len8(self.auth_key),
                len8(self.mn_auth_key),
                len8(self.ku_mn),
                U64.pack(self.mn_id),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> HomeInfo:
        """Parse ``Q``."""
        r = Reader(data, "Q")
        value = cls(
            r.u32("FA Nonce"),
            lookup(ReplyCode, r.u8("Result")),
            r.u32("MN Nonce"),
            r.u32("SPI"),
            r.u32("Key Lifetime"),
            r.u8_prefixed("Ses Key"),
            r.u8_prefixed("Auth Key"),
            r.u8_prefixed("MN Auth Key"),
            r.u8_prefixed("KuMN"),
            r.u64("MN ID"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class HomeToMobile:
    """``W'``, sealed to the MN inside ``W`` of extensions 38 and 39 (draft 5.3; doc 5.3).

    ``MN Nonce (32) | Identification (64) | Result (8) | FA ID (64) | KuFA (64 bytes) | HA ID
    (64)``: 93 bytes.
    """

    LABEL: ClassVar[str] = "home-to-mobile"
    SIZE: ClassVar[int] = 93

    mn_nonce: int
    identification: int
    result: ReplyCode | int
    fa_id: int
    ku_fa: bytes
    ha_id: int
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "W'"
        check_uint(what, "MN Nonce", self.mn_nonce, 32)
        check_uint(what, "Identification", self.identification, 64)
        check_code(what, "Result", self.result, 8)
        check_uint(what, "FA ID", self.fa_id, 64)
        check_size(what, "KuFA", self.ku_fa, (PUBLIC_KEYS_SIZE,))
        check_uint(what, "HA ID", self.ha_id, 64)

    def encode(self) -> bytes:
        """The 93 plaintext bytes."""
        return b"".join(
            (
                U32.pack(self.mn_nonce),
                U64.pack(self.identification),
                bytes((int(self.result),)),
                U64.pack(self.fa_id),
                self.ku_fa,
                U64.pack(self.ha_id),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> HomeToMobile:
        """Parse ``W'``."""
        r = Reader(data, "W'")
        value = cls(
            r.u32("MN Nonce"),
            r.u64("Identification"),
            lookup(ReplyCode, r.u8("Result")),
            r.u64("FA ID"),
            r.take(PUBLIC_KEYS_SIZE, "KuFA"),
            r.u64("HA ID"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class MobileReply:
    """``T``, signed by the FA then sealed to the MN in extension 39 (draft 5.4; doc 5.4).

    ``ACK (32) | MN Nonce (32) | SPI (32) | Key Lifetime (32) | len8 + Ses Key | len8 + Auth
    Key | FA ID (64)``. ACK is 0 or the denying reply code.
    """

    LABEL: ClassVar[str] = "mobile-reply"

    ack: ReplyCode | int
    mn_nonce: int
    spi: int
    key_lifetime: int
    ses_key: bytes = field(repr=False)
    auth_key: bytes = field(repr=False)
    fa_id: int
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "T"
        check_code(what, "ACK", self.ack, 32)
        check_uint(what, "MN Nonce", self.mn_nonce, 32)
        check_uint(what, "SPI", self.spi, 32)
        check_uint(what, "Key Lifetime", self.key_lifetime, 32)
        check_bytes(what, "Ses Key", self.ses_key, MAX_KEY)
        check_bytes(what, "Auth Key", self.auth_key, MAX_KEY)
        check_uint(what, "FA ID", self.fa_id, 64)

    def encode(self) -> bytes:
        """The plaintext bytes (without the FA signature that follows them in the seal)."""
        return b"".join(
            (
                U32.pack(int(self.ack)),
                U32.pack(self.mn_nonce),
                U32.pack(self.spi),
                U32.pack(self.key_lifetime),
                len8(self.ses_key),
                len8(self.auth_key),
                U64.pack(self.fa_id),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> MobileReply:
        """Parse ``T``."""
        r = Reader(data, "T")
        value = cls(
            lookup(ReplyCode, r.u32("ACK")),
            r.u32("MN Nonce"),
            r.u32("SPI"),
            r.u32("Key Lifetime"),
            r.u8_prefixed("Ses Key"),
            r.u8_prefixed("Auth Key"),
            r.u64("FA ID"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class KeyRefresh:
    """``K``, sealed with the current Ses Key in extension 38 Sub-Type 128 (doc 6.2).

    ``len8 + new Ses Key | len8 + new Auth Key``.
    """

    LABEL: ClassVar[str] = "key-refresh"

    ses_key: bytes = field(repr=False)
    auth_key: bytes = field(repr=False)
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_bytes("K", "new Ses Key", self.ses_key, MAX_KEY)
        check_bytes("K", "new Auth Key", self.auth_key, MAX_KEY)

    def encode(self) -> bytes:
        """The plaintext bytes."""
        return len8(self.ses_key) + len8(self.auth_key)

    @classmethod
    def decode(cls, data: bytes) -> KeyRefresh:
        """Parse ``K``."""
        r = Reader(data, "K")
        value = cls(r.u8_prefixed("new Ses Key"), r.u8_prefixed("new Auth Key"), raw=r.data)
        r.end()
        return value


# --- Correspondent nodes (docs/protocol.md 7) ---------------------------------------------


@dataclass(frozen=True)
class RequestCommunicationInfo:
    """``V``, signed by the CN then sealed to the HA in Request Communication (draft 6; doc 7.2).

    ``MN ADDR | CN ID (64) | CN ADDR | CN Nonce (32) | Timestamp (64, NTP) | Sec Par (16) |
    len16 + Ycn | len16 + P | len16 + g``. With X25519 (the default) P and g are empty.
    """

    LABEL: ClassVar[str] = "request-communication"

    mn_addr: ipaddress.IPv4Address
    cn_id: int
    cn_addr: ipaddress.IPv4Address
    cn_nonce: int
    timestamp: int
    sec_par: int
    y_cn: bytes
    p: bytes = b""
    g: bytes = b""
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "V"
        check_ipv4(what, "MN ADDR", self.mn_addr)
        check_uint(what, "CN ID", self.cn_id, 64)
        check_ipv4(what, "CN ADDR", self.cn_addr)
        check_uint(what, "CN Nonce", self.cn_nonce, 32)
        check_uint(what, "Timestamp", self.timestamp, 64)
        check_uint(what, "Sec Par", self.sec_par, 16)
        check_bytes(what, "Ycn", self.y_cn, MAX_DH_VALUE)
        check_bytes(what, "P", self.p, MAX_DH_VALUE)
        check_bytes(what, "g", self.g, MAX_DH_VALUE)

    def encode(self) -> bytes:
        """The plaintext bytes (without the CN signature that follows them in the seal)."""
        return b"".join(
            (
                self.mn_addr.packed,
                U64.pack(self.cn_id),
                self.cn_addr.packed,
                U32.pack(self.cn_nonce),
                U64.pack(self.timestamp),
                U16.pack(self.sec_par),
                len16(self.y_cn),
                len16(self.p),
                len16(self.g),
            )
        )

    @classmethod
    def read(cls, r: Reader) -> RequestCommunicationInfo:
        """Read ``V`` from ``r`` (it delimits itself), leaving ``r`` after it."""
        start = r.offset
        mn_addr = r.ipv4("MN ADDR")
        cn_id = r.u64("CN ID")
        cn_addr = r.ipv4("CN ADDR")
        cn_nonce = r.u32("CN Nonce")
        timestamp = r.u64("Timestamp")
        sec_par = r.u16("Sec Par")
        y_cn = r.u16_prefixed("Ycn")
        p = r.u16_prefixed("P")
        g = r.u16_prefixed("g")
        return cls(
            mn_addr,
            cn_id,
            cn_addr,
            cn_nonce,
            timestamp,
            sec_par,
            y_cn,
            p,
            g,
            raw=r.data[start : r.offset],
        )

    @classmethod
    def decode(cls, data: bytes) -> RequestCommunicationInfo:
        """Parse ``V``."""
        r = Reader(data, "V")
        value = cls.read(r)
        r.end()
        return value


@dataclass(frozen=True)
class CorrespondentInfoForMN:
    """``U'``, signed by the HA then sealed to the MN in Correspondent Information (doc 7.3).

    ``SPI (32) | len8 + Data Auth Key | V | sig_CN (64) | KuCN (64 bytes) | CN ADDR``: the
    CN's ``V`` and its signature exactly as the HA received them, so the MN can check them.
    """

    LABEL: ClassVar[str] = "correspondent-info/mn"

    spi: int
    data_auth_key: bytes = field(repr=False)
    request: RequestCommunicationInfo
    cn_signature: bytes
    ku_cn: bytes
    cn_addr: ipaddress.IPv4Address
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "U'"
        check_uint(what, "SPI", self.spi, 32)
        check_bytes(what, "Data Auth Key", self.data_auth_key, MAX_KEY)
        check_size(what, "sig_CN", self.cn_signature, (SIGNATURE_SIZE,))
        check_size(what, "KuCN", self.ku_cn, (PUBLIC_KEYS_SIZE,))
        check_ipv4(what, "CN ADDR", self.cn_addr)

    def encode(self) -> bytes:
        """The plaintext bytes (without the HA signature that follows them in the seal)."""
        return b"".join(
            (
                U32.pack(self.spi),
                len8(self.data_auth_key),
                self.request.encode(),
                self.cn_signature,
                self.ku_cn,
                self.cn_addr.packed,
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentInfoForMN:
        """Parse ``U'``."""
        r = Reader(data, "U'")
        value = cls(
            r.u32("SPI"),
            r.u8_prefixed("Data Auth Key"),
            RequestCommunicationInfo.read(r),
            r.take(SIGNATURE_SIZE, "sig_CN"),
            r.take(PUBLIC_KEYS_SIZE, "KuCN"),
            r.ipv4("CN ADDR"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class CorrespondentInfoForFA:
    """``X'``, sealed to the FA in Correspondent Information form 0 (doc 7.3).

    ``Hello (16) | SPI (32) | len8 + Data Auth Key | CN ID (64) | CN ADDR | MN ADDR | Sec Par
    (16) | len16 + P | len16 + g | CN Nonce (32)``. The FA needs the CN Nonce to check the
    Hello value and to write it into the Communication Reply (7.5); it comes last so that the
    fields before it keep their offsets.
    """

    LABEL: ClassVar[str] = "correspondent-info/fa"

    hello: bytes
    spi: int
    data_auth_key: bytes = field(repr=False)
    cn_id: int
    cn_addr: ipaddress.IPv4Address
    mn_addr: ipaddress.IPv4Address
    sec_par: int
    p: bytes = b""
    g: bytes = b""
    cn_nonce: int = 0
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "X'"
        check_size(what, "Hello", self.hello, (HELLO_SIZE,))
        check_uint(what, "SPI", self.spi, 32)
        check_bytes(what, "Data Auth Key", self.data_auth_key, MAX_KEY)
        check_uint(what, "CN ID", self.cn_id, 64)
        check_ipv4(what, "CN ADDR", self.cn_addr)
        check_ipv4(what, "MN ADDR", self.mn_addr)
        check_uint(what, "Sec Par", self.sec_par, 16)
        check_bytes(what, "P", self.p, MAX_DH_VALUE)
        check_bytes(what, "g", self.g, MAX_DH_VALUE)
        check_uint(what, "CN Nonce", self.cn_nonce, 32)

    def encode(self) -> bytes:
        """The plaintext bytes."""
        return b"".join(
            (
                self.hello,
                U32.pack(self.spi),
                len8(self.data_auth_key),
                U64.pack(self.cn_id),
                self.cn_addr.packed,
                self.mn_addr.packed,
                U16.pack(self.sec_par),
                len16(self.p),
                len16(self.g),
                U32.pack(self.cn_nonce),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentInfoForFA:
        """Parse ``X'``."""
        r = Reader(data, "X'")
        value = cls(
            r.take(HELLO_SIZE, "Hello"),
            r.u32("SPI"),
            r.u8_prefixed("Data Auth Key"),
            r.u64("CN ID"),
            r.ipv4("CN ADDR"),
            r.ipv4("MN ADDR"),
            r.u16("Sec Par"),
            r.u16_prefixed("P"),
            r.u16_prefixed("g"),
            r.u32("CN Nonce"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class CorrespondentInfoFAToMN:
    """``Y``, sealed by the FA to the MN in Correspondent Information form 1 (doc 7.3).

    ``Hello (16) | SPI (32) | Sec Par (16)``: the Sec Par is the CN's AND the FA's.
    """

    LABEL: ClassVar[str] = "correspondent-info/fa-to-mn"

    hello: bytes
    spi: int
    sec_par: int
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_size("Y", "Hello", self.hello, (HELLO_SIZE,))
        check_uint("Y", "SPI", self.spi, 32)
        check_uint("Y", "Sec Par", self.sec_par, 16)

    def encode(self) -> bytes:
        """The 22 plaintext bytes."""
        return self.hello + U32.pack(self.spi) + U16.pack(self.sec_par)

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentInfoFAToMN:
        """Parse ``Y``."""
        r = Reader(data, "Y")
        value = cls(r.take(HELLO_SIZE, "Hello"), r.u32("SPI"), r.u16("Sec Par"), raw=r.data)
        r.end()
        return value


@dataclass(frozen=True)
class CorrespondentResponseForFA:
    """``Z``, sealed by the MN to the FA in Correspondent Response (doc 7.4).

    ``SPI (32) | CN ID (64) | CN ADDR | Auth Sec Par (8) | Encr Sec Par (8)``.
    """

    LABEL: ClassVar[str] = "correspondent-response/fa"

    spi: int
    cn_id: int
    cn_addr: ipaddress.IPv4Address
    auth_sec_par: AuthSecPar | int
    encr_sec_par: EncrSecPar | int
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "Z"
        check_uint(what, "SPI", self.spi, 32)
        check_uint(what, "CN ID", self.cn_id, 64)
        check_ipv4(what, "CN ADDR", self.cn_addr)
        check_code(what, "Auth Sec Par", self.auth_sec_par, 8)
        check_code(what, "Encr Sec Par", self.encr_sec_par, 8)

    def encode(self) -> bytes:
        """The 18 plaintext bytes."""
        return b"".join(
            (
                U32.pack(self.spi),
                U64.pack(self.cn_id),
                self.cn_addr.packed,
                bytes((int(self.auth_sec_par), int(self.encr_sec_par))),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentResponseForFA:
        """Parse ``Z``."""
        r = Reader(data, "Z")
        value = cls(
            r.u32("SPI"),
            r.u64("CN ID"),
            r.ipv4("CN ADDR"),
            lookup(AuthSecPar, r.u8("Auth Sec Par")),
            lookup(EncrSecPar, r.u8("Encr Sec Par")),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class CorrespondentResponseForCN:
    """``L'``, signed by the MN then sealed to the CN in Correspondent Response (doc 7.4).

    ``SPI (32) | MN ADDR | MN ID (64) | CN Nonce (32) | len8 + Data Auth Key | Sec Par (16) |
    Auth Sec Par (8) | Encr Sec Par (8) | len16 + Ymn | len16 + P | len16 + g``.
    """

    LABEL: ClassVar[str] = "correspondent-response/cn"

    spi: int
    mn_addr: ipaddress.IPv4Address
    mn_id: int
    cn_nonce: int
    data_auth_key: bytes = field(repr=False)
    sec_par: int
    auth_sec_par: AuthSecPar | int
    encr_sec_par: EncrSecPar | int
    y_mn: bytes
    p: bytes = b""
    g: bytes = b""
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "L'"
        check_uint(what, "SPI", self.spi, 32)
        check_ipv4(what, "MN ADDR", self.mn_addr)
        check_uint(what, "MN ID", self.mn_id, 64)
        check_uint(what, "CN Nonce", self.cn_nonce, 32)
        check_bytes(what, "Data Auth Key", self.data_auth_key, MAX_KEY)
        check_uint(what, "Sec Par", self.sec_par, 16)
        check_code(what, "Auth Sec Par", self.auth_sec_par, 8)
        check_code(what, "Encr Sec Par", self.encr_sec_par, 8)
        check_bytes(what, "Ymn", self.y_mn, MAX_DH_VALUE)
        check_bytes(what, "P", self.p, MAX_DH_VALUE)
        check_bytes(what, "g", self.g, MAX_DH_VALUE)

    def encode(self) -> bytes:
        """The plaintext bytes (without the MN signature that follows them in the seal)."""
        return b"".join(
            (
                U32.pack(self.spi),
                self.mn_addr.packed,
                U64.pack(self.mn_id),
                U32.pack(self.cn_nonce),
                len8(self.data_auth_key),
                U16.pack(self.sec_par),
                bytes((int(self.auth_sec_par), int(self.encr_sec_par))),
                len16(self.y_mn),
                len16(self.p),
                len16(self.g),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentResponseForCN:
        """Parse ``L'``."""
        r = Reader(data, "L'")
        value = cls(
            r.u32("SPI"),
            r.ipv4("MN ADDR"),
            r.u64("MN ID"),
            r.u32("CN Nonce"),
            r.u8_prefixed("Data Auth Key"),
            r.u16("Sec Par"),
            lookup(AuthSecPar, r.u8("Auth Sec Par")),
            lookup(EncrSecPar, r.u8("Encr Sec Par")),
            r.u16_prefixed("Ymn"),
            r.u16_prefixed("P"),
            r.u16_prefixed("g"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class TransferredSession:
    """One data session inside ``S`` (doc 7.6).

    ``SPI (32) | CN ADDR | CN ID (64) | Auth Sec Par (8) | Encr Sec Par (8) | len8 + Data Auth
    Key``.
    """

    spi: int
    cn_addr: ipaddress.IPv4Address
    cn_id: int
    auth_sec_par: AuthSecPar | int
    encr_sec_par: EncrSecPar | int
    data_auth_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        what = "S session"
        check_uint(what, "SPI", self.spi, 32)
        check_ipv4(what, "CN ADDR", self.cn_addr)
        check_uint(what, "CN ID", self.cn_id, 64)
        check_code(what, "Auth Sec Par", self.auth_sec_par, 8)
        check_code(what, "Encr Sec Par", self.encr_sec_par, 8)
        check_bytes(what, "Data Auth Key", self.data_auth_key, MAX_KEY)

    def encode(self) -> bytes:
        """The session's bytes."""
        return b"".join(
            (
                U32.pack(self.spi),
                self.cn_addr.packed,
                U64.pack(self.cn_id),
                bytes((int(self.auth_sec_par), int(self.encr_sec_par))),
                len8(self.data_auth_key),
            )
        )

    @classmethod
    def read(cls, r: Reader) -> TransferredSession:
        """Read one session from ``r``."""
        return cls(
            r.u32("SPI"),
            r.ipv4("CN ADDR"),
            r.u64("CN ID"),
            lookup(AuthSecPar, r.u8("Auth Sec Par")),
            lookup(EncrSecPar, r.u8("Encr Sec Par")),
            r.u8_prefixed("Data Auth Key"),
        )


@dataclass(frozen=True)
class KeyTransferInfo:
    """``S``, sealed with the Ses Key in Key Transfer form 0 (draft 3.3; doc 7.6).

    ``Count (8)``, then ``Count`` sessions (:class:`TransferredSession`).
    """

    LABEL: ClassVar[str] = "key-transfer"

    sessions: tuple[TransferredSession, ...]
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        if len(self.sessions) > MAX_TRANSFERRED_SESSIONS:
            raise LengthError(
                "S Count",
                f"at most {MAX_TRANSFERRED_SESSIONS} sessions",
                f"{len(self.sessions)} sessions",
            )

    def encode(self) -> bytes:
        """The plaintext bytes."""
        return bytes((len(self.sessions),)) + b"".join(s.encode() for s in self.sessions)

    @classmethod
    def decode(cls, data: bytes) -> KeyTransferInfo:
        """Parse ``S``."""
        r = Reader(data, "S")
        count = r.u8("Count")
        sessions = tuple(TransferredSession.read(r) for _ in range(count))
        r.end()
        return cls(sessions, raw=r.data)
