"""MVPN control messages (docs/protocol.md 7): header, every type and form, byte by byte."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import strategies as st

from mvpn.wire import control
from mvpn.wire.codes import MvpnError
from mvpn.wire.errors import (
    BadValueError,
    LengthError,
    TrailingDataError,
    TruncatedError,
    UnknownTypeError,
)
from tests.wire import mvpn_strategies as s

A = ipaddress.IPv4Address
SIG = b"S" * 64
TAG = b"T" * 16

REQUEST_VECTOR = bytes.fromhex(
    "01"  # Type 1: Request Communication
    "00"  # Form 0
    "0018"  # Length 24: the whole datagram
    "00000000000000cc"  # CN ID 204
    "0a000005"  # MN ADDR 10.0.0.5
    "0006"  # n
    "7365616c6564"  # seal_HA("request-communication", V || sig_CN): dummy "sealed"
)
REQUEST_VALUE = control.RequestCommunication(204, A("10.0.0.5"), b"sealed")

INFO_FA_VECTOR = (
    bytes.fromhex(
        "02"  # Type 2: Correspondent Information
        "00"  # Form 0: HA -> FA
        "005d"  # Length 93
        "000000000000000a"  # HA ID 10
        "0a000005"  # MN ADDR
        "00000102"  # SPI 258: the data SA
        "0003"
        "555555"  # len16 + U (dummy "UUU")
        "0002"
        "5858"  # len16 + X (dummy "XX")
    )
    + SIG  # sig_HA("correspondent-info", all bytes before)
)
INFO_FA_VALUE = control.CorrespondentInfoToFA(10, A("10.0.0.5"), 258, b"UUU", b"XX", SIG)

INFO_MN_VECTOR = (
    bytes.fromhex(
        "02"  # Type 2
        "01"  # Form 1: FA -> MN
        "005d"  # Length 93
        "00000000000000fa"  # FA ID 250
        "0a000005"  # MN ADDR
        "00000102"  # SPI
        "0003"
        "555555"  # len16 + U, as received from the HA
        "0002"
        "5959"  # len16 + Y (dummy "YY")
    )
    + SIG  # sig_FA("correspondent-info/fa-to-mn", all bytes before)
)
INFO_MN_VALUE = control.CorrespondentInfoToMN(250, A("10.0.0.5"), 258, b"UUU", b"YY", SIG)

RESPONSE_VECTOR = (
    bytes.fromhex(
        "04"  # Type 4: Correspondent Response
        "00"  # Form 0
        "0055"  # Length 85
        "0a000005"  # MN ADDR
        "00000102"  # SPI
        "0002"
        "5a5a"  # len16 + Z (dummy "ZZ")
        "0003"
        "4c4c4c"  # len16 + L (dummy "LLL")
    )
    + SIG  # sig_MN("correspondent-response", all bytes before)
)
RESPONSE_VALUE = control.CorrespondentResponse(A("10.0.0.5"), 258, b"ZZ", b"LLL", SIG)

REPLY_VECTOR = (
    bytes.fromhex(
        "05"  # Type 5: Communication Reply
        "00"  # Form 0
        "0021"  # Length 33
        "00000102"  # SPI
        "0badf00d"  # CN Nonce
        "0003"
        "4c4c4c"  # len16 + L, as received from the MN
    )
    + TAG  # HMAC-SHA256-128(Data Auth Key, "communication-reply" || all bytes before)
)
REPLY_VALUE = control.CommunicationReply(258, 0x0BADF00D, b"LLL", TAG)

TRANSFER_VECTOR = bytes.fromhex(
    "06"  # Type 6: Key Transfer
    "00"  # Form 0: MN -> FA
    "0012"  # Length 18
    "0a000005"  # MN ADDR
    "00000101"  # SPI 257: the registration SA with this FA
    "7365616c6564"  # seal_symmetric(Ses Key, "key-transfer", S): dummy, to the end
)
TRANSFER_VALUE = control.KeyTransfer(A("10.0.0.5"), 257, b"sealed")

ACK_VECTOR = (
    bytes.fromhex(
        "06"  # Type 6
        "01"  # Form 1: FA -> MN acknowledgement
        "001d"  # Length 29
        "0a000005"  # MN ADDR
        "00000101"  # SPI
        "02"  # Count accepted
    )
    + TAG  # HMAC-SHA256-128(Auth Key, "key-transfer-ack" || bytes 0..13)
)
ACK_VALUE = control.KeyTransferAck(A("10.0.0.5"), 257, 2, TAG)

ERROR_VECTOR = bytes.fromhex(
    "07"  # Type 7: Error
    "00"  # Form 0
    "0018"  # Length 24
    "0004"  # Error code 4: public key not valid
    "0000"  # Reserved
    "00000101"  # Reference: SPI 257
    "0b"  # len8 + reason
    "756e6b6e6f776e206b6579"  # "unknown key"
)
ERROR_VALUE = control.ErrorMessage(MvpnError.PUBLIC_KEY_NOT_VALID, 257, "unknown key")

VECTORS: list[tuple[Any, bytes, Any]] = [
    (control.RequestCommunication, REQUEST_VECTOR, REQUEST_VALUE),
    (control.CorrespondentInfoToFA, INFO_FA_VECTOR, INFO_FA_VALUE),
    (control.CorrespondentInfoToMN, INFO_MN_VECTOR, INFO_MN_VALUE),
    (control.CorrespondentResponse, RESPONSE_VECTOR, RESPONSE_VALUE),
    (control.CommunicationReply, REPLY_VECTOR, REPLY_VALUE),
    (control.KeyTransfer, TRANSFER_VECTOR, TRANSFER_VALUE),
    (control.KeyTransferAck, ACK_VECTOR, ACK_VALUE),
    (control.ErrorMessage, ERROR_VECTOR, ERROR_VALUE),
]
IDS = [cls.__name__ for cls, _, _ in VECTORS]


@pytest.mark.parametrize(("cls", "vector", "value"), VECTORS, ids=IDS)
def test_vector_decodes_to_value(cls: Any, vector: bytes, value: Any) -> None:
    """The vector decodes to the value, by its class and through decode_control."""
    decoded = cls.decode(vector)
    assert decoded == value
    assert decoded.raw == vector
    dispatched = control.decode_control(vector)
    assert type(dispatched) is cls
    assert dispatched == value


@pytest.mark.parametrize(("cls", "vector", "value"), VECTORS, ids=IDS)
def test_value_encodes_to_vector(cls: Any, vector: bytes, value: Any) -> None:
    """Encoding gives exactly the hand-written bytes (Length included)."""
    assert value.encode() == vector


@pytest.mark.parametrize(("cls", "vector", "value"), VECTORS, ids=IDS)
def test_length_must_equal_datagram(cls: Any, vector: bytes, value: Any) -> None:
    """A Length that disagrees with the datagram, either way, is a LengthError."""
    longer = vector + b"\x00"
    with pytest.raises(LengthError):
        cls.decode(longer)
    with pytest.raises(LengthError):
        control.decode_control(vector[:-1])


@pytest.mark.parametrize(
    ("cls", "vector", "value"),
    [v for v in VECTORS if v[0] is not control.KeyTransfer],
    ids=[i for i in IDS if i != "KeyTransfer"],
)
def test_fixed_trailer_checked_with_consistent_length(cls: Any, vector: bytes, value: Any) -> None:
    """With Length patched to match, an extra byte is trailing data and a missing one a
    truncated field (Key Transfer's seal runs to the end, so it has no trailer)."""
    longer = vector[:2] + (len(vector) + 1).to_bytes(2, "big") + vector[4:] + b"\x00"
    with pytest.raises(TrailingDataError):
        cls.decode(longer)
    shorter = vector[:2] + (len(vector) - 1).to_bytes(2, "big") + vector[4:-1]
    with pytest.raises(TruncatedError):
        cls.decode(shorter)


def test_signed_parts_are_all_bytes_before_the_signature() -> None:
    """signed_part() is every byte before the 64-byte signature, Length included; the
    ``_for`` form gives the same bytes before the signature exists."""
    assert INFO_FA_VALUE.signed_part() == INFO_FA_VECTOR[:29]
    assert (
        control.CorrespondentInfoToFA.decode(INFO_FA_VECTOR).signed_part() == (INFO_FA_VECTOR[:29])
    )
    assert INFO_FA_VECTOR[:4] == bytes.fromhex("0200005d")
    assert (
        control.CorrespondentInfoToFA.signed_part_for(10, A("10.0.0.5"), 258, b"UUU", b"XX")
        == INFO_FA_VECTOR[:29]
    )
    assert INFO_MN_VALUE.signed_part() == INFO_MN_VECTOR[:29]
    assert (
        control.CorrespondentInfoToMN.signed_part_for(250, A("10.0.0.5"), 258, b"UUU", b"YY")
        == INFO_MN_VECTOR[:29]
    )
    assert RESPONSE_VALUE.signed_part() == RESPONSE_VECTOR[:21]
    assert (
        control.CorrespondentResponse.signed_part_for(A("10.0.0.5"), 258, b"ZZ", b"LLL")
        == RESPONSE_VECTOR[:21]
    )


def test_authenticated_and_associated_parts() -> None:
    """The Communication Reply HMAC covers bytes 0..17, the acknowledgement's bytes 0..13,
    and the Key Transfer seal's additional data is bytes 0..12."""
    assert REPLY_VALUE.authenticated_part() == REPLY_VECTOR[:17]
    assert (
        control.CommunicationReply.authenticated_part_for(258, 0x0BADF00D, b"LLL")
        == (REPLY_VECTOR[:17])
    )
    assert control.CommunicationReply.MAC_LABEL == b"communication-reply"
    assert ACK_VALUE.authenticated_part() == ACK_VECTOR[:13]
    assert (
        control.KeyTransferAck.authenticated_part_for(A("10.0.0.5"), 257, 2) == (ACK_VECTOR[:13])
    )
    assert TRANSFER_VALUE.associated_part() == TRANSFER_VECTOR[:12]
    assert control.KeyTransfer.associated_part_for(A("10.0.0.5"), 257, 6) == (TRANSFER_VECTOR[:12])


def test_unknown_type_or_form_is_refused() -> None:
    """decode_control refuses (Type, Form) pairs it has no class for; a class refuses
    another class's bytes."""
    for type_, form in [(3, 0), (1, 1), (2, 2), (55, 0), (0, 0)]:
        with pytest.raises(UnknownTypeError):
            control.decode_control(bytes((type_, form, 0, 4)))
    with pytest.raises(UnknownTypeError):
        control.KeyTransferAck.decode(TRANSFER_VECTOR)


def test_header_limits() -> None:
    """Fewer than 4 bytes, or more than 8192, are refused before anything is parsed."""
    with pytest.raises(LengthError):
        control.decode_control(b"\x07\x00\x00")
    big = bytes((6, 0)) + (8193).to_bytes(2, "big") + bytes(8189)
    with pytest.raises(LengthError):
        control.decode_control(big)
    with pytest.raises(LengthError):
        control.KeyTransfer(A("10.0.0.5"), 257, bytes(8181)).encode()
    assert len(control.KeyTransfer(A("10.0.0.5"), 257, bytes(8180)).encode()) == 8192


def test_error_message_rules() -> None:
    """Unknown codes stay ints; Reserved must be 0; the reason is UTF-8 of at most 200
    bytes."""
    unknown = control.ErrorMessage.decode(ERROR_VECTOR[:4] + b"\x01\x00" + ERROR_VECTOR[6:])
    assert type(unknown.code) is int
    assert unknown.code == 256
    assert control.ErrorMessage.decode(ERROR_VECTOR).code is MvpnError.PUBLIC_KEY_NOT_VALID
    with pytest.raises(BadValueError):
        control.ErrorMessage.decode(ERROR_VECTOR[:6] + b"\x00\x01" + ERROR_VECTOR[8:])
    with pytest.raises(BadValueError):
        control.ErrorMessage.decode(ERROR_VECTOR[:-1] + b"\xff")
    with pytest.raises(LengthError):
        control.ErrorMessage(MvpnError.OTHER, 0, "é" * 101)
    assert len(control.ErrorMessage(MvpnError.OTHER, 0, "é" * 100).encode()) == 213
    with pytest.raises(BadValueError):
        control.ErrorMessage(MvpnError.OTHER, 0, "\udc80")


def test_signatures_and_tags_have_fixed_sizes() -> None:
    """A signature must be 64 bytes and an authenticator 16 to build a message."""
    with pytest.raises(LengthError):
        control.CorrespondentResponse(A("10.0.0.5"), 258, b"", b"", SIG[:-1])
    with pytest.raises(LengthError):
        control.CommunicationReply(258, 1, b"", TAG + b"x")


# --- Hypothesis ---------------------------------------------------------------------------

STRATEGIES: dict[Any, st.SearchStrategy[Any]] = {
    control.RequestCommunication: st.builds(
        control.RequestCommunication, s.uint(64), s.ipv4, s.blob
    ),
    control.CorrespondentInfoToFA: st.builds(
        control.CorrespondentInfoToFA, s.uint(64), s.ipv4, s.uint(32), s.blob, s.blob, s.sig
    ),
    control.CorrespondentInfoToMN: st.builds(
        control.CorrespondentInfoToMN, s.uint(64), s.ipv4, s.uint(32), s.blob, s.blob, s.sig
    ),
    control.CorrespondentResponse: st.builds(
        control.CorrespondentResponse, s.ipv4, s.uint(32), s.blob, s.blob, s.sig
    ),
    control.CommunicationReply: st.builds(
        control.CommunicationReply, s.uint(32), s.uint(32), s.blob, s.hello
    ),
    control.KeyTransfer: st.builds(control.KeyTransfer, s.ipv4, s.uint(32), s.blob),
    control.KeyTransferAck: st.builds(
        control.KeyTransferAck, s.ipv4, s.uint(32), s.uint(8), s.hello
    ),
    control.ErrorMessage: st.builds(
        control.ErrorMessage,
        s.mvpn_error,
        s.uint(32),
        st.text(max_size=20),  # at most 80 UTF-8 bytes; Hypothesis draws no surrogates
    ),
}


globals().update(
    s.fuzz_tests(
        "control", {cls.__name__: (cls.decode, strategy) for cls, strategy in STRATEGIES.items()}
    )
)
globals().update(
    s.fuzz_tests(
        "control", {"decode_control": (control.decode_control, st.one_of(*STRATEGIES.values()))}
    )
)
