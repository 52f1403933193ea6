"""MVPN control messages on UDP 4350 (draft sections 3.3, 4, 6; docs/protocol.md 7).

Every message starts with the 4-byte control header (7.1): ``Type (8) | Form (8) | Length
(16)``, where Length counts the whole datagram. :func:`decode_control` dispatches on
``(Type, Form)``. Sealed blobs, signatures and authenticators are opaque bytes here; each
protected message names the exact bytes its signature, authenticator or additional data
covers (``signed_part()``, ``authenticated_part()``, ``associated_part()``) so the crypto
layer never computes offsets. Where those bytes include the Length field and therefore the
size of a signature or seal not yet made, a classmethod ``..._for(...)`` builds them from
the fields and the final sizes.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from mvpn.wire._fields import (
    MAX_LEN16,
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
from mvpn.wire.codes import MvpnError, lookup
from mvpn.wire.errors import BadValueError, LengthError, UnknownTypeError
from mvpn.wire.reader import Reader

__all__ = [
    "CONTROL_HEADER_SIZE",
    "CONTROL_TAG_SIZE",
    "MAX_CONTROL_SIZE",
    "MAX_REASON",
    "CommunicationReply",
    "ControlHeader",
    "ControlMessage",
    "ControlType",
    "CorrespondentInfoToFA",
    "CorrespondentInfoToMN",
    "CorrespondentResponse",
    "ErrorMessage",
    "KeyTransfer",
    "KeyTransferAck",
    "RequestCommunication",
    "decode_control",
]

CONTROL_HEADER_SIZE = 4
MAX_CONTROL_SIZE = 8192
"""Largest control datagram accepted or built: the largest legitimate one is about 1.5 KB
(docs/protocol.md 10)."""

MAX_REASON = 200
"""Error reason, UTF-8 bytes (docs/protocol.md 7.7)."""

CONTROL_TAG_SIZE = 16
"""HMAC-SHA256-128 authenticators of Communication Reply and Key Transfer acknowledgements."""

_HEADER = struct.Struct("!BBH")


class ControlType(enum.IntEnum):
    """Control message types (docs/protocol.md 7.1; 6 and 7 are ours, see section 2)."""

    REQUEST_COMMUNICATION = 1
    CORRESPONDENT_INFORMATION = 2
    CORRESPONDENT_RESPONSE = 4
    COMMUNICATION_REPLY = 5
    KEY_TRANSFER = 6
    ERROR = 7


@dataclass(frozen=True)
class ControlHeader:
    """The 4-byte header of every control message (docs/protocol.md 7.1)."""

    type: ControlType | int
    form: int
    length: int

    @classmethod
    def decode(cls, data: bytes) -> ControlHeader:
        """Read the header of ``data`` and check that Length equals the datagram length."""
        if len(data) < CONTROL_HEADER_SIZE:
            raise LengthError(
                "control message", f"at least {CONTROL_HEADER_SIZE} bytes", f"{len(data)}"
            )
        if len(data) > MAX_CONTROL_SIZE:
            raise LengthError(
                "control message", f"at most {MAX_CONTROL_SIZE} bytes", f"{len(data)}"
            )
        type_, form, length = _HEADER.unpack_from(data)
        if length != len(data):
            raise LengthError(
                "control message Length", f"the datagram length {len(data)}", f"{length}", 2
            )
        return cls(lookup(ControlType, type_), form, length)


def _message(type_: int, form: int, body: bytes) -> bytes:
    """Header plus body; refuses a message larger than :data:`MAX_CONTROL_SIZE`."""
    length = CONTROL_HEADER_SIZE + len(body)
    if length > MAX_CONTROL_SIZE:
        raise LengthError("control message", f"at most {MAX_CONTROL_SIZE} bytes", f"{length}")
    return _HEADER.pack(type_, form, length) + body


def _body(data: bytes, cls: type[_Control]) -> Reader:
    """A reader positioned after a header that was checked against ``cls``."""
    header = ControlHeader.decode(data)
    if header.type != cls.TYPE or header.form != cls.FORM:
        raise UnknownTypeError(
            cls.__name__,
            f"Type {cls.TYPE} Form {cls.FORM}",
            f"Type {int(header.type)} Form {header.form}",
            0,
        )
    return Reader(data, cls.__name__, CONTROL_HEADER_SIZE)


class _Control:
    """What every control message class declares."""

    TYPE: ClassVar[int]
    FORM: ClassVar[int]


def _check_signature(what: str, signature: bytes) -> None:
    check_size(what, "signature", signature, (SIGNATURE_SIZE,))


def _check_blob(what: str, name: str, value: bytes) -> None:
    check_bytes(what, name, value, MAX_LEN16)


@dataclass(frozen=True)
class RequestCommunication(_Control):
    """Request Communication (type 1), CN → HA (draft 6.1; doc 7.2).

    ``Header | CN ID (64) | MN ADDR | n (16) | seal_HA("request-communication", V || sig_CN)``.
    """

    TYPE: ClassVar[int] = ControlType.REQUEST_COMMUNICATION
    FORM: ClassVar[int] = 0
    SEAL_LABEL: ClassVar[str] = "request-communication"

    cn_id: int
    mn_addr: ipaddress.IPv4Address
    sealed: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_uint("Request Communication", "CN ID", self.cn_id, 64)
        check_ipv4("Request Communication", "MN ADDR", self.mn_addr)
        _check_blob("Request Communication", "sealed V", self.sealed)

    def encode(self) -> bytes:
        """The datagram."""
        body = U64.pack(self.cn_id) + self.mn_addr.packed + len16(self.sealed)
        return _message(self.TYPE, self.FORM, body)

    @classmethod
    def decode(cls, data: bytes) -> RequestCommunication:
        """Parse a whole datagram."""
        r = _body(data, cls)
        value = cls(r.u64("CN ID"), r.ipv4("MN ADDR"), r.u16_prefixed("sealed V"), raw=r.data)
        r.end()
        return value


def _signed_prefix(type_: int, form: int, body: bytes) -> bytes:
    """Header and body of a message whose last field is a 64-byte signature, without it."""
    return _message(type_, form, body + bytes(SIGNATURE_SIZE))[:-SIGNATURE_SIZE]


@dataclass(frozen=True)
class CorrespondentInfoToFA(_Control):
    """Correspondent Information form 0 (type 2), HA → FA (draft 6.2; doc 7.3).

    ``Header | HA ID (64) | MN ADDR | SPI (32) | len16 + U | len16 + X | sig_HA
    ("correspondent-info", all bytes before)``.
    """

    TYPE: ClassVar[int] = ControlType.CORRESPONDENT_INFORMATION
    FORM: ClassVar[int] = 0
    SIGNATURE_LABEL: ClassVar[str] = "correspondent-info"

    ha_id: int
    mn_addr: ipaddress.IPv4Address
    spi: int
    u: bytes
    x: bytes
    signature: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "Correspondent Information form 0"
        check_uint(what, "HA ID", self.ha_id, 64)
        check_ipv4(what, "MN ADDR", self.mn_addr)
        check_uint(what, "SPI", self.spi, 32)
        _check_blob(what, "U", self.u)
        _check_blob(what, "X", self.x)
        _check_signature(what, self.signature)

    @classmethod
    def signed_part_for(
        cls, ha_id: int, mn_addr: ipaddress.IPv4Address, spi: int, u: bytes, x: bytes
    ) -> bytes:
        """The bytes the HA signs, before the signature exists."""
        return cls(ha_id, mn_addr, spi, u, x, bytes(SIGNATURE_SIZE)).signed_part()

    def signed_part(self) -> bytes:
        """Every byte before the signature (as received, when decoded)."""
        return (self.raw or self.encode())[:-SIGNATURE_SIZE]

    def encode(self) -> bytes:
        """The datagram."""
        body = U64.pack(self.ha_id) + self.mn_addr.packed + U32.pack(self.spi)
        return _message(
            self.TYPE, self.FORM, body + len16(self.u) + len16(self.x) + self.signature
        )

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentInfoToFA:
        """Parse a whole datagram."""
        r = _body(data, cls)
        value = cls(
            r.u64("HA ID"),
            r.ipv4("MN ADDR"),
            r.u32("SPI"),
            r.u16_prefixed("U"),
            r.u16_prefixed("X"),
            r.take(SIGNATURE_SIZE, "signature"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class CorrespondentInfoToMN(_Control):
    """Correspondent Information form 1 (type 2), FA → MN (draft 6.2; doc 7.3).

    ``Header | FA ID (64) | MN ADDR | SPI (32) | len16 + U | len16 + Y | sig_FA
    ("correspondent-info/fa-to-mn", all bytes before)``; U exactly as the HA sent it.
    """

    TYPE: ClassVar[int] = ControlType.CORRESPONDENT_INFORMATION
    FORM: ClassVar[int] = 1
    SIGNATURE_LABEL: ClassVar[str] = "correspondent-info/fa-to-mn"

    fa_id: int
    mn_addr: ipaddress.IPv4Address
    spi: int
    u: bytes
    y: bytes
    signature: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "Correspondent Information form 1"
        check_uint(what, "FA ID", self.fa_id, 64)
        check_ipv4(what, "MN ADDR", self.mn_addr)
        check_uint(what, "SPI", self.spi, 32)
        _check_blob(what, "U", self.u)
        _check_blob(what, "Y", self.y)
        _check_signature(what, self.signature)

    @classmethod
    def signed_part_for(
        cls, fa_id: int, mn_addr: ipaddress.IPv4Address, spi: int, u: bytes, y: bytes
    ) -> bytes:
        """The bytes the FA signs, before the signature exists."""
        return cls(fa_id, mn_addr, spi, u, y, bytes(SIGNATURE_SIZE)).signed_part()

    def signed_part(self) -> bytes:
        """Every byte before the signature (as received, when decoded)."""
        return (self.raw or self.encode())[:-SIGNATURE_SIZE]

    def encode(self) -> bytes:
        """The datagram."""
        body = U64.pack(self.fa_id) + self.mn_addr.packed + U32.pack(self.spi)
        return _message(
            self.TYPE, self.FORM, body + len16(self.u) + len16(self.y) + self.signature
        )

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentInfoToMN:
        """Parse a whole datagram."""
        r = _body(data, cls)
        value = cls(
            r.u64("FA ID"),
            r.ipv4("MN ADDR"),
            r.u32("SPI"),
            r.u16_prefixed("U"),
            r.u16_prefixed("Y"),
            r.take(SIGNATURE_SIZE, "signature"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class CorrespondentResponse(_Control):
    """Correspondent Response (type 4), MN → FA (draft 6.3; doc 7.4).

    ``Header | MN ADDR | SPI (32) | len16 + Z | len16 + L | sig_MN("correspondent-response",
    all bytes before)``.
    """

    TYPE: ClassVar[int] = ControlType.CORRESPONDENT_RESPONSE
    FORM: ClassVar[int] = 0
    SIGNATURE_LABEL: ClassVar[str] = "correspondent-response"

    mn_addr: ipaddress.IPv4Address
    spi: int
    z: bytes
    l: bytes  # noqa: E741 - the document's name for the CN's sealed blob
    signature: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "Correspondent Response"
        check_ipv4(what, "MN ADDR", self.mn_addr)
        check_uint(what, "SPI", self.spi, 32)
        _check_blob(what, "Z", self.z)
        _check_blob(what, "L", self.l)
        _check_signature(what, self.signature)

    @classmethod
    def signed_part_for(
        cls,
        mn_addr: ipaddress.IPv4Address,
        spi: int,
        z: bytes,
        l: bytes,  # noqa: E741
    ) -> bytes:
        """The bytes the MN signs, before the signature exists."""
        return cls(mn_addr, spi, z, l, bytes(SIGNATURE_SIZE)).signed_part()

    def signed_part(self) -> bytes:
        """Every byte before the signature (as received, when decoded)."""
        return (self.raw or self.encode())[:-SIGNATURE_SIZE]

    def encode(self) -> bytes:
        """The datagram."""
        body = self.mn_addr.packed + U32.pack(self.spi) + len16(self.z) + len16(self.l)
        return _message(self.TYPE, self.FORM, body + self.signature)

    @classmethod
    def decode(cls, data: bytes) -> CorrespondentResponse:
        """Parse a whole datagram."""
        r = _body(data, cls)
        value = cls(
            r.ipv4("MN ADDR"),
            r.u32("SPI"),
            r.u16_prefixed("Z"),
            r.u16_prefixed("L"),
            r.take(SIGNATURE_SIZE, "signature"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class CommunicationReply(_Control):
    """Communication Reply (type 5), FA → CN (draft 6.4; doc 7.5).

    ``Header | SPI (32) | CN Nonce (32) | len16 + L | HMAC-SHA256-128(Data Auth Key,
    "communication-reply" || all bytes before)``.
    """

    TYPE: ClassVar[int] = ControlType.COMMUNICATION_REPLY
    FORM: ClassVar[int] = 0
    MAC_LABEL: ClassVar[bytes] = b"communication-reply"

    spi: int
    cn_nonce: int
    l: bytes  # noqa: E741 - the document's name for the CN's sealed blob
    tag: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "Communication Reply"
        check_uint(what, "SPI", self.spi, 32)
        check_uint(what, "CN Nonce", self.cn_nonce, 32)
        _check_blob(what, "L", self.l)
        check_size(what, "authenticator", self.tag, (CONTROL_TAG_SIZE,))

    @classmethod
    def authenticated_part_for(cls, spi: int, cn_nonce: int, l: bytes) -> bytes:  # noqa: E741
        """The bytes after :attr:`MAC_LABEL` that the authenticator covers, before it exists."""
        return cls(spi, cn_nonce, l, bytes(CONTROL_TAG_SIZE)).authenticated_part()

    def authenticated_part(self) -> bytes:
        """Every byte before the authenticator (the HMAC input is ``MAC_LABEL`` || these)."""
        return (self.raw or self.encode())[:-CONTROL_TAG_SIZE]

    def encode(self) -> bytes:
        """The datagram."""
        body = U32.pack(self.spi) + U32.pack(self.cn_nonce) + len16(self.l) + self.tag
        return _message(self.TYPE, self.FORM, body)

    @classmethod
    def decode(cls, data: bytes) -> CommunicationReply:
        """Parse a whole datagram."""
        r = _body(data, cls)
        value = cls(
            r.u32("SPI"),
            r.u32("CN Nonce"),
            r.u16_prefixed("L"),
            r.take(CONTROL_TAG_SIZE, "authenticator"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class KeyTransfer(_Control):
    """Key Transfer form 0 (type 6), MN → new FA (draft 3.3; doc 7.6).

    ``Header | MN ADDR | SPI (32) | seal_symmetric(Ses Key, "key-transfer", S, ad = bytes
    0..12)``: the sealed blob runs to the end of the datagram.
    """

    TYPE: ClassVar[int] = ControlType.KEY_TRANSFER
    FORM: ClassVar[int] = 0
    SEAL_LABEL: ClassVar[str] = "key-transfer"

    mn_addr: ipaddress.IPv4Address
    spi: int
    sealed: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_ipv4("Key Transfer", "MN ADDR", self.mn_addr)
        check_uint("Key Transfer", "SPI", self.spi, 32)
        check_bytes("Key Transfer", "sealed S", self.sealed, MAX_CONTROL_SIZE)

    @classmethod
    def associated_part_for(
        cls, mn_addr: ipaddress.IPv4Address, spi: int, sealed_length: int
    ) -> bytes:
        """Bytes 0..12, the additional data of the seal, for a seal of ``sealed_length``."""
        return cls(mn_addr, spi, bytes(sealed_length)).associated_part()

    def associated_part(self) -> bytes:
        """Bytes 0..12 (header, MN ADDR, SPI): the seal's additional data."""
        return (self.raw or self.encode())[:12]

    def encode(self) -> bytes:
        """The datagram."""
        return _message(
            self.TYPE, self.FORM, self.mn_addr.packed + U32.pack(self.spi) + self.sealed
        )

    @classmethod
    def decode(cls, data: bytes) -> KeyTransfer:
        """Parse a whole datagram."""
        r = _body(data, cls)
        return cls(r.ipv4("MN ADDR"), r.u32("SPI"), r.rest(), raw=r.data)


@dataclass(frozen=True)
class KeyTransferAck(_Control):
    """Key Transfer form 1 (type 6), FA → MN: the acknowledgement (doc 7.6).

    ``Header | MN ADDR | SPI (32) | Count accepted (8) | HMAC-SHA256-128(Auth Key,
    "key-transfer-ack" || bytes 0..13)``: 29 bytes.
    """

    TYPE: ClassVar[int] = ControlType.KEY_TRANSFER
    FORM: ClassVar[int] = 1
    MAC_LABEL: ClassVar[bytes] = b"key-transfer-ack"

    mn_addr: ipaddress.IPv4Address
    spi: int
    count: int
    tag: bytes
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        what = "Key Transfer acknowledgement"
        check_ipv4(what, "MN ADDR", self.mn_addr)
        check_uint(what, "SPI", self.spi, 32)
        check_uint(what, "Count", self.count, 8)
        check_size(what, "authenticator", self.tag, (CONTROL_TAG_SIZE,))

    @classmethod
    def authenticated_part_for(cls, mn_addr: ipaddress.IPv4Address, spi: int, count: int) -> bytes:
        """Bytes 0..13 (what follows :attr:`MAC_LABEL` in the HMAC input), before the tag."""
        return cls(mn_addr, spi, count, bytes(CONTROL_TAG_SIZE)).authenticated_part()

    def authenticated_part(self) -> bytes:
        """Bytes 0..13: header, MN ADDR, SPI, Count."""
        return (self.raw or self.encode())[:13]

    def encode(self) -> bytes:
        """The 29-byte datagram."""
        body = self.mn_addr.packed + U32.pack(self.spi) + bytes((self.count,)) + self.tag
        return _message(self.TYPE, self.FORM, body)

    @classmethod
    def decode(cls, data: bytes) -> KeyTransferAck:
        """Parse a whole datagram."""
        r = _body(data, cls)
        value = cls(
            r.ipv4("MN ADDR"),
            r.u32("SPI"),
            r.u8("Count"),
            r.take(CONTROL_TAG_SIZE, "authenticator"),
            raw=r.data,
        )
        r.end()
        return value


@dataclass(frozen=True)
class ErrorMessage(_Control):
    """Error (type 7), draft section 4 (doc 7.7). Informational and not authenticated.

    ``Header | Error code (16) | Reserved (16) = 0 | Reference (32) | len8 + reason (UTF-8, at
    most 200 bytes)``.
    """

    TYPE: ClassVar[int] = ControlType.ERROR
    FORM: ClassVar[int] = 0

    code: MvpnError | int
    reference: int = 0
    reason: str = ""
    raw: bytes | None = raw_field()

    def __post_init__(self) -> None:
        check_code("Error", "code", self.code, 16)
        check_uint("Error", "Reference", self.reference, 32)
        if not isinstance(self.reason, str):
            raise BadValueError("Error reason", "a str", type(self.reason).__name__)
        try:
            encoded = self.reason.encode("utf-8")
        except UnicodeError as e:
            raise BadValueError("Error reason", "text encodable as UTF-8", str(e)) from None
        check_bytes("Error", "reason", encoded, MAX_REASON)

    def encode(self) -> bytes:
        """The datagram."""
        body = U16.pack(int(self.code)) + U16.pack(0) + U32.pack(self.reference)
        return _message(self.TYPE, self.FORM, body + len8(self.reason.encode("utf-8")))

    @classmethod
    def decode(cls, data: bytes) -> ErrorMessage:
        """Parse a whole datagram."""
        r = _body(data, cls)
        code = lookup(MvpnError, r.u16("Error code"))
        reserved = r.u16("Reserved")
        if reserved:
            raise BadValueError("Error Reserved", "0", f"{reserved:#06x}", 6)
        reference = r.u32("Reference")
        reason_bytes = r.u8_prefixed("reason")
        r.end()
        try:
            reason = reason_bytes.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadValueError(
                "Error reason", "UTF-8", f"invalid byte at {e.start}", 13
            ) from None
        return cls(code, reference, reason, raw=r.data)


ControlMessage: TypeAlias = (
    RequestCommunication
    | CorrespondentInfoToFA
    | CorrespondentInfoToMN
    | CorrespondentResponse
    | CommunicationReply
    | KeyTransfer
    | KeyTransferAck
    | ErrorMessage
)

_BY_TYPE_FORM: dict[tuple[int, int], type[ControlMessage]] = {
    (cls.TYPE, cls.FORM): cls
    for cls in (
        RequestCommunication,
        CorrespondentInfoToFA,
        CorrespondentInfoToMN,
        CorrespondentResponse,
        CommunicationReply,
        KeyTransfer,
        KeyTransferAck,
        ErrorMessage,
    )
}


def decode_control(data: bytes) -> ControlMessage:
    """Decode one control datagram, choosing the class by ``(Type, Form)``.

    Raises :class:`UnknownTypeError` for a ``(Type, Form)`` no class is registered for and
    :class:`LengthError` when the Length field is not the datagram length.
    """
    header = ControlHeader.decode(data)
    cls = _BY_TYPE_FORM.get((int(header.type), header.form))
    if cls is None:
        raise UnknownTypeError(
            "control message",
            "a known (Type, Form)",
            f"Type {int(header.type)} Form {header.form}",
            0,
        )
    return cls.decode(data)
