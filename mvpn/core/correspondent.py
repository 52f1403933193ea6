"""Building and opening every correspondent-node session message: the wire and crypto glue.

docs/protocol.md section 7 (draft 3.3, 3.4, 3.5, 4 and 6): Request Communication (CN -> HA),
Correspondent Information (HA -> FA, form 0; FA -> MN, form 1), Correspondent Response
(MN -> FA), Communication Reply (FA -> CN), Key Transfer (MN -> new FA and its
acknowledgement) and the Error message. Everything here is pure: no state, no clock, no
logging. The current time (``now``) and randomness (``random``) are arguments, and every
failure is one :class:`CorrespondentError` subclass carrying the MVPN error code (draft
section 4) it maps to; the caller decides whether to answer with an Error message, log it or
only count it. Nothing half-built is ever returned: a function either returns a complete
value or raises.

Who calls what:

- the CN: :func:`build_request_communication`, :func:`open_communication_reply`;
- the HA: :func:`peek_request_communication` (to look ``Ku_CN`` up first),
  :func:`open_request_communication`, :func:`new_data_auth_key`,
  :func:`build_correspondent_info`;
- the FA: :func:`open_correspondent_info_at_fa`, :func:`build_correspondent_info_to_mn`,
  :func:`open_correspondent_response_at_fa`, :func:`build_communication_reply`,
  :func:`peek_key_transfer`, :func:`open_key_transfer`, :func:`build_key_transfer_ack`;
- the MN: :func:`open_correspondent_info_at_mn`, :func:`build_correspondent_response`,
  :func:`build_key_transfer`, :func:`open_key_transfer_ack`;
- anyone: :func:`build_error`, :func:`error_for`.

Who ends up holding which key (docs/protocol.md 11): the HA creates the data authentication
key; the FA takes it from X; the MN from U; the CN from L. Only the MN and the CN run the
Diffie-Hellman exchange, so only they hold :class:`~mvpn.crypto.dh.DataKeys`: the values the
agents keep (:class:`AgentSessionKeys`) have no field for them.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from mvpn.core.messages import AgentIdentity
from mvpn.crypto.aead import SYMMETRIC_OVERHEAD, open_symmetric, seal_symmetric
from mvpn.crypto.auth import hmac_sha256_128
from mvpn.crypto.dh import (
    DataKeys,
    DhGroup,
    DhKeyPair,
    data_key_transcript,
    derive_data_keys,
    group_from_params,
)
from mvpn.crypto.errors import CryptoError, KeyFormatError, UnsupportedAlgorithmError
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS, decode_flags, describe_offer, negotiate
from mvpn.crypto.random import RandomSource
from mvpn.crypto.session import RegistrationKeys
from mvpn.crypto.suite import (
    open_sealed,
    open_then_verify,
    seal,
    sign,
    sign_then_seal,
    verify,
)
from mvpn.wire._fields import U32
from mvpn.wire.codes import AuthSecPar, EncrSecPar, MvpnError
from mvpn.wire.control import (
    MAX_REASON,
    CommunicationReply,
    CorrespondentInfoToFA,
    CorrespondentInfoToMN,
    CorrespondentResponse,
    ErrorMessage,
    KeyTransfer,
    KeyTransferAck,
    RequestCommunication,
)
from mvpn.wire.errors import WireError
from mvpn.wire.plain import (
    CorrespondentInfoFAToMN,
    CorrespondentInfoForFA,
    CorrespondentInfoForMN,
    CorrespondentResponseForCN,
    CorrespondentResponseForFA,
    KeyTransferInfo,
    RequestCommunicationInfo,
    TransferredSession,
    hello_input,
    split_signed,
)
from mvpn.wire.registration import Identification

__all__ = [
    "DATA_AUTH_KEY_SIZE",
    "PK_OPERATIONS",
    "TIMESTAMP_WINDOW",
    "AgentSessionKeys",
    "CnPending",
    "CnSession",
    "CorrespondentAuthenticationFailed",
    "CorrespondentError",
    "FaResponseOpened",
    "FaSessionInfo",
    "ForeignAgentAuthenticationFailed",
    "HelloMismatch",
    "HomeAgentAuthenticationFailed",
    "InvalidKeyExchange",
    "KeyTransferFailed",
    "KeyTransferOpened",
    "MalformedMessage",
    "MnSession",
    "MnSessionOffer",
    "MobileNodeAuthenticationFailed",
    "OpenedRequest",
    "ReplyAuthenticationFailed",
    "SessionMismatch",
    "StaleRequest",
    "UnknownCorrespondent",
    "UnsupportedAlgorithms",
    "build_communication_reply",
    "build_correspondent_info",
    "build_correspondent_info_to_mn",
    "build_correspondent_response",
    "build_error",
    "build_key_transfer",
    "build_key_transfer_ack",
    "build_request_communication",
    "error_for",
    "new_data_auth_key",
    "open_communication_reply",
    "open_correspondent_info_at_fa",
    "open_correspondent_info_at_mn",
    "open_correspondent_response_at_fa",
    "open_key_transfer",
    "open_key_transfer_ack",
    "open_request_communication",
    "peek_key_transfer",
    "peek_request_communication",
]

PK_OPERATIONS: dict[str, int] = {
    "build_request_communication": 2,  # sign and seal V
    "open_request_communication": 2,  # open V, verify the CN
    "build_correspondent_info": 4,  # sign and seal U', seal X', sign the message
    "open_correspondent_info_at_fa": 2,  # verify the HA, open X
    "build_correspondent_info_to_mn": 2,  # seal Y, sign the message
    "open_correspondent_info_at_mn": 5,  # verify the FA, open Y, open U and verify the HA,
    # verify the CN
    "build_correspondent_response": 4,  # seal Z, sign and seal L', sign the message
    "open_correspondent_response_at_fa": 2,  # verify the MN, open Z
    "open_communication_reply": 2,  # open L and verify the MN
}
"""Signatures, verifications, seals and opens each function performs on its full path, for
the role cores' ``pk_operations`` counter (as :data:`mvpn.core.messages.PK_OPERATIONS`). The
Diffie-Hellman exchange of :func:`build_correspondent_response` and
:func:`open_communication_reply` comes on top; key transfer and errors use none."""

TIMESTAMP_WINDOW = 30.0
"""The HA refuses a Request Communication whose timestamp is further than this from its clock
(docs/protocol.md 7.2 and 10: clocks are loosely synchronised)."""

DATA_AUTH_KEY_SIZE = 32
"""The data authentication key the HA draws per session: HMAC-SHA256 (docs/protocol.md 11)."""

_MIN_DATA_AUTH_KEY = 16
"""A shorter data authentication key in X, U or L is refused: the hop authenticator needs
at least 16 bytes (mvpn.crypto.auth)."""


# --- errors -------------------------------------------------------------------------------


class CorrespondentError(Exception):
    """A session set-up message that cannot be accepted; ``code`` is the MVPN error code
    (draft section 4, docs/protocol.md 7.7) it maps to. ``reason`` is safe to log and to put
    into an Error message: it never contains key material."""

    default_code: MvpnError = MvpnError.OTHER

    def __init__(self, reason: str, code: MvpnError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code: MvpnError = code if code is not None else self.default_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={int(self.code)}, reason={self.reason!r})"


class MalformedMessage(CorrespondentError):
    """A datagram or sealed value that does not decode (7, other)."""

    default_code = MvpnError.OTHER


class UnknownCorrespondent(CorrespondentError):
    """No public key is known for the CN ID (4, public key not valid)."""

    default_code = MvpnError.PUBLIC_KEY_NOT_VALID


class CorrespondentAuthenticationFailed(CorrespondentError):
    """The CN's sealed request does not open at the HA, or the CN signature over V does not
    verify (4, public key not valid)."""

    default_code = MvpnError.PUBLIC_KEY_NOT_VALID


class HomeAgentAuthenticationFailed(CorrespondentError):
    """The HA's signature, U or X does not verify or open (4, public key not valid)."""

    default_code = MvpnError.PUBLIC_KEY_NOT_VALID


class ForeignAgentAuthenticationFailed(CorrespondentError):
    """The FA's signature or Y does not verify or open (4, public key not valid)."""

    default_code = MvpnError.PUBLIC_KEY_NOT_VALID


class MobileNodeAuthenticationFailed(CorrespondentError):
    """The MN's signature, Z or L does not verify or open (4, public key not valid)."""

    default_code = MvpnError.PUBLIC_KEY_NOT_VALID


class HelloMismatch(CorrespondentError):
    """The Hello value is not the one of the MN's current registration (1, authentication
    key not valid: it is keyed with the registration Auth Key, docs/protocol.md 7.3)."""

    default_code = MvpnError.AUTHENTICATION_KEY_NOT_VALID


class ReplyAuthenticationFailed(CorrespondentError):
    """A Communication Reply or Key Transfer acknowledgement whose HMAC does not verify (1,
    authentication key not valid)."""

    default_code = MvpnError.AUTHENTICATION_KEY_NOT_VALID


class KeyTransferFailed(CorrespondentError):
    """A Key Transfer under another registration SA, or whose seal does not open (2, session
    key not valid: it is sealed with the registration Ses Key)."""

    default_code = MvpnError.SESSION_KEY_NOT_VALID


class StaleRequest(CorrespondentError):
    """A Request Communication timestamp outside :data:`TIMESTAMP_WINDOW` (7, other)."""

    default_code = MvpnError.OTHER


class SessionMismatch(CorrespondentError):
    """Authenticated fields that disagree with the clear header or with the session they
    answer (SPI, addresses, CN Nonce, CN ID) (7, other)."""

    default_code = MvpnError.OTHER


class UnsupportedAlgorithms(CorrespondentError):
    """No usable algorithm common to all parties, or a refused Diffie-Hellman group such as
    the draft's 48-bit values (7, other, with the reason; docs/protocol.md 7.1)."""

    default_code = MvpnError.OTHER


class InvalidKeyExchange(CorrespondentError):
    """A Diffie-Hellman public value of the wrong length, outside ``[2, p-2]`` or of small
    order (7, other)."""

    default_code = MvpnError.OTHER


# --- session values -----------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class AgentSessionKeys:
    """What an agent (HA or FA) keeps of a data session: the data authentication key only.

    The agents can check and recompute hop authenticators but hold no encryption key, so
    they can filter the data flow but never read it (draft 3.4; docs/protocol.md 11).
    """

    spi: int
    mn_addr: ipaddress.IPv4Address
    cn_id: int
    cn_addr: ipaddress.IPv4Address
    data_auth_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"<AgentSessionKeys spi={self.spi} mn={self.mn_addr} cn={self.cn_addr} "
            f"cn_id={self.cn_id:#x}>"
        )


@dataclass(frozen=True, repr=False)
class CnSession:
    """The CN's end of an established session (docs/protocol.md 7.5, 11)."""

    spi: int
    cn_id: int
    mn_id: int
    mn_addr: ipaddress.IPv4Address
    auth_sec_par: AuthSecPar
    encr_sec_par: EncrSecPar
    data_auth_key: bytes = field(repr=False)
    data_keys: DataKeys = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"<CnSession spi={self.spi} mn={self.mn_addr} mn_id={self.mn_id:#x} "
            f"{self.auth_sec_par.name}/{self.encr_sec_par.name}>"
        )


@dataclass(frozen=True, repr=False)
class MnSession:
    """The MN's end of an established session (docs/protocol.md 7.4, 11)."""

    spi: int
    mn_addr: ipaddress.IPv4Address
    cn_id: int
    cn_addr: ipaddress.IPv4Address
    auth_sec_par: AuthSecPar
    encr_sec_par: EncrSecPar
    data_auth_key: bytes = field(repr=False)
    data_keys: DataKeys = field(repr=False)

    def transferred(self) -> TransferredSession:
        """The session as a new FA receives it in a Key Transfer (docs/protocol.md 7.6):
        everything but the data encryption keys."""
        return TransferredSession(
            self.spi,
            self.cn_addr,
            self.cn_id,
            self.auth_sec_par,
            self.encr_sec_par,
            self.data_auth_key,
        )

    def __repr__(self) -> str:
        return (
            f"<MnSession spi={self.spi} cn={self.cn_addr} cn_id={self.cn_id:#x} "
            f"{self.auth_sec_par.name}/{self.encr_sec_par.name}>"
        )


# --- helpers ------------------------------------------------------------------------------

T = TypeVar("T")


def _decode(decoder: Callable[[bytes], T], data: bytes, what: str) -> T:
    try:
        return decoder(data)
    except WireError as e:
        raise MalformedMessage(f"{what} does not decode: {e}") from None


def _group(p: bytes, g: bytes) -> DhGroup:
    try:
        return group_from_params(p, g)
    except UnsupportedAlgorithmError as e:
        raise UnsupportedAlgorithms(str(e)) from None


def _negotiate(*flag_sets: int) -> tuple[AuthSecPar, EncrSecPar]:
    try:
        return negotiate(*flag_sets)
    except UnsupportedAlgorithmError as e:
        raise UnsupportedAlgorithms(str(e)) from None


def _check_y(group: DhGroup, y: bytes, who: str) -> None:
    if len(y) != group.public_size:
        raise InvalidKeyExchange(
            f"{who}'s {group.value} public value has {len(y)} bytes, not {group.public_size}"
        )


def _data_keys(dh: DhKeyPair, peer_y: bytes, spi: int, transcript: bytes, who: str) -> DataKeys:
    try:
        return derive_data_keys(dh.exchange(peer_y), transcript, salt=U32.pack(spi))
    except KeyFormatError as e:
        raise InvalidKeyExchange(f"{who}'s Diffie-Hellman value refused: {e}") from None


def _check_data_auth_key(key: bytes, what: str, error: type[CorrespondentError]) -> None:
    if len(key) < _MIN_DATA_AUTH_KEY:
        raise error(f"{what}: data authentication key of {len(key)} bytes is too short")


def _hello(registration_auth_key: bytes, spi: int, cn_nonce: int) -> bytes:
    """The Hello value (docs/protocol.md 7.3)."""
    return hmac_sha256_128(registration_auth_key, hello_input(spi, cn_nonce))


def new_data_auth_key(random: RandomSource) -> bytes:
    """A fresh data authentication key for a session (the HA's, draft 3.4)."""
    key = random(DATA_AUTH_KEY_SIZE)
    if len(key) != DATA_AUTH_KEY_SIZE:
        raise ValueError(f"random source returned {len(key)} bytes, not {DATA_AUTH_KEY_SIZE}")
    return key


# --- correspondent node: Request Communication (7.2) ---------------------------------------


@dataclass(frozen=True, repr=False)
class CnPending:
    """What the CN keeps between its Request Communication and the Communication Reply:
    the request's values and the ephemeral Diffie-Hellman key (never shown in a repr)."""

    cn_id: int
    ha_id: int
    mn_addr: ipaddress.IPv4Address
    cn_nonce: int
    sec_par: int
    group: DhGroup
    y_cn: bytes
    dh: DhKeyPair = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"<CnPending mn={self.mn_addr} cn_nonce={self.cn_nonce:#010x} "
            f"group={self.group.value}>"
        )


def build_request_communication(
    cn: AgentIdentity,
    ha_id: int,
    ha_public: PublicKeys,
    mn_address: ipaddress.IPv4Address,
    sec_par: int,
    dh_group: DhGroup,
    now: float,
    random: RandomSource,
) -> tuple[bytes, CnPending]:
    """The CN's Request Communication to the MN's HA (docs/protocol.md 7.2).

    Draws the CN Nonce and the ephemeral Diffie-Hellman key from ``random``; the Timestamp is
    ``now`` in NTP form. ``V`` is signed by the CN and ``V || sig_CN`` sealed to the HA.
    """
    cn_nonce = int.from_bytes(random(4), "big")
    dh = DhKeyPair.generate(dh_group, random)
    y_cn = dh.public_bytes()
    p, g = dh_group.params()
    v = RequestCommunicationInfo(
        mn_address,
        cn.node_id,
        cn.address,
        cn_nonce,
        Identification.from_unix_time(now).value,
        sec_par,
        y_cn,
        p,
        g,
    )
    sealed = sign_then_seal(cn.keys, ha_public, ha_id, RequestCommunicationInfo.LABEL, v.encode())
    message = RequestCommunication(cn.node_id, mn_address, sealed).encode()
    return message, CnPending(cn.node_id, ha_id, mn_address, cn_nonce, sec_par, dh_group, y_cn, dh)


# --- home agent: Request Communication and Correspondent Information (7.2, 7.3) ------------


@dataclass(frozen=True)
class OpenedRequest:
    """A Request Communication the HA opened and verified (docs/protocol.md 7.2).

    ``v`` and ``cn_signature`` are exactly as received: the HA forwards both to the MN in U.
    """

    request: RequestCommunication
    v: RequestCommunicationInfo
    cn_signature: bytes
    cn_public: PublicKeys
    group: DhGroup

    @property
    def replay_key(self) -> tuple[int, int]:
        """``(CN ID, CN Nonce)``: the HA refuses a pair it has seen (its replay cache)."""
        return self.v.cn_id, self.v.cn_nonce

    def agent_keys(self, spi: int, data_auth_key: bytes) -> AgentSessionKeys:
        """What the HA keeps once it assigned ``spi`` and ``data_auth_key`` to the session."""
        return AgentSessionKeys(spi, self.v.mn_addr, self.v.cn_id, self.v.cn_addr, data_auth_key)


def peek_request_communication(data: bytes) -> RequestCommunication:
    """Decode a Request Communication without any cryptography, so the HA can look ``Ku_CN``
    up (TC) by the clear CN ID before :func:`open_request_communication`
    (:class:`MalformedMessage`, 7)."""
    return _decode(RequestCommunication.decode, data, "Request Communication")


def open_request_communication(
    ha: AgentIdentity,
    data: bytes,
    cn_public_for: Callable[[int], PublicKeys | None],
    now: float,
) -> OpenedRequest:
    """Open and check a Request Communication at the HA (docs/protocol.md 7.2).

    Cheapest and least revealing first: decode (:class:`MalformedMessage`); open the seal and
    read V (:class:`CorrespondentAuthenticationFailed`); the clear CN ID and MN ADDR equal
    V's (:class:`SessionMismatch`); the timestamp lies within :data:`TIMESTAMP_WINDOW` of
    ``now`` (:class:`StaleRequest`); ``Ku_CN`` is known (:class:`UnknownCorrespondent`); the
    CN signature verifies (:class:`CorrespondentAuthenticationFailed`); the Diffie-Hellman
    group and Y are acceptable (:class:`UnsupportedAlgorithms`,
    :class:`InvalidKeyExchange`); and the CN offers something mvpn can use
    (:class:`UnsupportedAlgorithms`). The replay cache (:attr:`OpenedRequest.replay_key`)
    and whether the MN is registered are the caller's checks: they need its tables.
    """
    request = peek_request_communication(data)
    try:
        opened = open_sealed(ha.keys, ha.node_id, RequestCommunicationInfo.LABEL, request.sealed)
        v_bytes, cn_signature = split_signed(opened, "V")
        v = RequestCommunicationInfo.decode(v_bytes)
    except (CryptoError, WireError):
        raise CorrespondentAuthenticationFailed("sealed V does not open or decode") from None
    if v.cn_id != request.cn_id or v.mn_addr != request.mn_addr:
        raise SessionMismatch("the clear CN ID or MN ADDR differs from V's")
    skew = Identification.from_int(v.timestamp).unix_time() - now
    if abs(skew) > TIMESTAMP_WINDOW:
        raise StaleRequest(
            f"timestamp {skew:+.1f} s from the HA's clock (window ±{TIMESTAMP_WINDOW:.0f} s)"
        )
    cn_public = cn_public_for(v.cn_id)
    if cn_public is None:
        raise UnknownCorrespondent(f"no public key for CN {v.cn_id:#x}")
    try:
        verify(cn_public, RequestCommunicationInfo.LABEL, cn_signature, v_bytes)
    except CryptoError:
        raise CorrespondentAuthenticationFailed("CN signature over V does not verify") from None
    group = _group(v.p, v.g)
    _check_y(group, v.y_cn, "CN")
    _negotiate(v.sec_par, LOCAL_FLAGS)
    return OpenedRequest(request, v, cn_signature, cn_public, group)


def build_correspondent_info(
    ha: AgentIdentity,
    request: OpenedRequest,
    spi: int,
    data_auth_key: bytes,
    mn_id: int,
    mn_public: PublicKeys,
    fa_id: int,
    fa_public: PublicKeys,
    registration_auth_key: bytes,
) -> bytes:
    """The HA's Correspondent Information form 0 to the MN's current FA (docs/protocol.md 7.3).

    U (sealed to the MN, signed inside by the HA) carries the data authentication key, V and
    the CN signature as received, ``Ku_CN`` and the CN address; X (sealed to the FA) carries
    the Hello value keyed with the MN's registration Auth Key, the data authentication key and
    the CN Nonce. The HA signs the whole message. ``spi`` (1 to 2**32 - 1, unique per HA) and
    ``data_auth_key`` (:func:`new_data_auth_key`) are the caller's; a bad one is a
    :class:`ValueError` (a bug, not a peer's fault).
    """
    if not 1 <= spi <= 0xFFFFFFFF:
        raise ValueError(f"data-flow SPI must be in [1, 2**32 - 1], got {spi}")
    if len(data_auth_key) < _MIN_DATA_AUTH_KEY:
        raise ValueError(f"data authentication key of {len(data_auth_key)} bytes is too short")
    v = request.v
    u_prime = CorrespondentInfoForMN(
        spi, data_auth_key, v, request.cn_signature, request.cn_public.to_bytes(), v.cn_addr
    )
    u = sign_then_seal(ha.keys, mn_public, mn_id, CorrespondentInfoForMN.LABEL, u_prime.encode())
    x_prime = CorrespondentInfoForFA(
        _hello(registration_auth_key, spi, v.cn_nonce),
        spi,
        data_auth_key,
        v.cn_id,
        v.cn_addr,
        v.mn_addr,
        v.sec_par,
        v.p,
        v.g,
        cn_nonce=v.cn_nonce,
    )
    x = seal(fa_public, fa_id, CorrespondentInfoForFA.LABEL, x_prime.encode())
    signed = CorrespondentInfoToFA.signed_part_for(ha.node_id, v.mn_addr, spi, u, x)
    signature = sign(ha.keys, CorrespondentInfoToFA.SIGNATURE_LABEL, signed)
    return CorrespondentInfoToFA(ha.node_id, v.mn_addr, spi, u, x, signature).encode()


# --- foreign agent (7.3, 7.4, 7.5) ---------------------------------------------------------


@dataclass(frozen=True, repr=False)
class FaSessionInfo:
    """What the FA learnt from a Correspondent Information form 0 (docs/protocol.md 7.3):
    the session's identifiers, the CN's offer and the data authentication key; ``u`` is the
    MN's sealed blob, forwarded unchanged (the FA cannot open it)."""

    ha_id: int
    spi: int
    mn_addr: ipaddress.IPv4Address
    cn_id: int
    cn_addr: ipaddress.IPv4Address
    cn_nonce: int
    cn_sec_par: int
    hello: bytes
    u: bytes
    data_auth_key: bytes = field(repr=False)

    @property
    def keys(self) -> AgentSessionKeys:
        """What the FA keeps of the session: the data authentication key only."""
        return AgentSessionKeys(
            self.spi, self.mn_addr, self.cn_id, self.cn_addr, self.data_auth_key
        )

    def __repr__(self) -> str:
        return f"<FaSessionInfo spi={self.spi} mn={self.mn_addr} cn={self.cn_addr}>"


def open_correspondent_info_at_fa(
    fa: AgentIdentity, data: bytes, ha_public: PublicKeys, registration_auth_key: bytes
) -> FaSessionInfo:
    """Check a Correspondent Information form 0 at the FA (docs/protocol.md 7.3).

    ``ha_public`` is the key of the MN's HA and ``registration_auth_key`` the Auth Key of the
    MN's current registration SA (the caller finds both by the clear MN ADDR). In order: decode
    (:class:`MalformedMessage`); the HA signature, then X opens
    (:class:`HomeAgentAuthenticationFailed`); X agrees with the clear SPI and MN ADDR
    (:class:`SessionMismatch`); the Hello value (:class:`HelloMismatch`); the Diffie-Hellman
    group is one mvpn accepts (:class:`UnsupportedAlgorithms`).
    """
    message = _decode(CorrespondentInfoToFA.decode, data, "Correspondent Information")
    try:
        verify(
            ha_public,
            CorrespondentInfoToFA.SIGNATURE_LABEL,
            message.signature,
            message.signed_part(),
        )
        x = CorrespondentInfoForFA.decode(
            open_sealed(fa.keys, fa.node_id, CorrespondentInfoForFA.LABEL, message.x)
        )
    except (CryptoError, WireError):
        raise HomeAgentAuthenticationFailed("HA signature or X does not verify") from None
    if x.spi != message.spi or x.mn_addr != message.mn_addr:
        raise SessionMismatch("X names another SPI or MN than the clear header")
    if not hmac.compare_digest(x.hello, _hello(registration_auth_key, x.spi, x.cn_nonce)):
        raise HelloMismatch("Hello value is not the MN's current registration's")
    _check_data_auth_key(x.data_auth_key, "X", HomeAgentAuthenticationFailed)
    _group(x.p, x.g)
    return FaSessionInfo(
        message.ha_id,
        x.spi,
        x.mn_addr,
        x.cn_id,
        x.cn_addr,
        x.cn_nonce,
        x.sec_par,
        x.hello,
        message.u,
        x.data_auth_key,
    )


def build_correspondent_info_to_mn(
    fa: AgentIdentity,
    opened: FaSessionInfo,
    fa_sec_par: int,
    mn_id: int,
    mn_public: PublicKeys,
) -> bytes:
    """The FA's Correspondent Information form 1 to the MN (docs/protocol.md 7.3).

    Y carries the Hello value and the CN's Sec Par AND the FA's; when nothing usable is left
    the FA refuses here (:class:`UnsupportedAlgorithms`) rather than let the MN fail later.
    U is forwarded as received; the FA signs the message.
    """
    sec_par = opened.cn_sec_par & fa_sec_par
    _negotiate(sec_par)
    y_prime = CorrespondentInfoFAToMN(opened.hello, opened.spi, sec_par)
    y = seal(mn_public, mn_id, CorrespondentInfoFAToMN.LABEL, y_prime.encode())
    signed = CorrespondentInfoToMN.signed_part_for(
        fa.node_id, opened.mn_addr, opened.spi, opened.u, y
    )
    signature = sign(fa.keys, CorrespondentInfoToMN.SIGNATURE_LABEL, signed)
    return CorrespondentInfoToMN(
        fa.node_id, opened.mn_addr, opened.spi, opened.u, y, signature
    ).encode()


@dataclass(frozen=True)
class FaResponseOpened:
    """A Correspondent Response the FA verified (docs/protocol.md 7.4): the message (its L
    goes on to the CN unchanged) and Z, the algorithms the MN chose."""

    response: CorrespondentResponse
    z: CorrespondentResponseForFA

    @property
    def auth_sec_par(self) -> AuthSecPar | int:
        """The authentication algorithm of the data flow."""
        return self.z.auth_sec_par

    @property
    def encr_sec_par(self) -> EncrSecPar | int:
        """The encryption algorithm of the data flow (the FA only checks the code point)."""
        return self.z.encr_sec_par


def open_correspondent_response_at_fa(
    fa: AgentIdentity, data: bytes, mn_public: PublicKeys, session: FaSessionInfo
) -> FaResponseOpened:
    """Check a Correspondent Response at the FA (docs/protocol.md 7.4) against the session
    the FA announced to the MN: decode (:class:`MalformedMessage`); clear MN ADDR and SPI are
    the session's (:class:`SessionMismatch`); the MN signature, then Z opens
    (:class:`MobileNodeAuthenticationFailed`); Z names the session's SPI and CN
    (:class:`SessionMismatch`); the chosen algorithms are ones the CN offered and mvpn
    implements (:class:`UnsupportedAlgorithms`)."""
    message = _decode(CorrespondentResponse.decode, data, "Correspondent Response")
    if message.mn_addr != session.mn_addr or message.spi != session.spi:
        raise SessionMismatch("Correspondent Response for another MN or SPI")
    try:
        verify(
            mn_public,
            CorrespondentResponse.SIGNATURE_LABEL,
            message.signature,
            message.signed_part(),
        )
        z = CorrespondentResponseForFA.decode(
            open_sealed(fa.keys, fa.node_id, CorrespondentResponseForFA.LABEL, message.z)
        )
    except (CryptoError, WireError):
        raise MobileNodeAuthenticationFailed("MN signature or Z does not verify") from None
    if z.spi != session.spi or z.cn_id != session.cn_id or z.cn_addr != session.cn_addr:
        raise SessionMismatch("Z names another session than the FA announced")
    _check_chosen(z.auth_sec_par, z.encr_sec_par, session.cn_sec_par, "the CN")
    return FaResponseOpened(message, z)


def _check_chosen(
    auth: AuthSecPar | int, encr: EncrSecPar | int, offer: int, whom: str
) -> tuple[AuthSecPar, EncrSecPar]:
    """The chosen algorithms must be offered in ``offer`` and usable by mvpn."""
    offered_auth, offered_encr = decode_flags(offer)
    if auth not in offered_auth or encr not in offered_encr:
        raise UnsupportedAlgorithms(
            f"chosen Auth {int(auth)} / Encr {int(encr)} not offered by {whom} "
            f"({describe_offer(offer)})"
        )
    chosen = _negotiate(offer & _flags_of(auth, encr))
    return chosen


def _flags_of(auth: AuthSecPar | int, encr: EncrSecPar | int) -> int:
    auth_bit = 1 << (int(auth) - 1) if 1 <= int(auth) <= 8 else 0
    encr_bit = 1 << (8 + int(encr) - 1) if 1 <= int(encr) <= 8 else 0
    return auth_bit | encr_bit


def build_communication_reply(opened: FaResponseOpened, session: FaSessionInfo) -> bytes:
    """The FA's Communication Reply to the CN (docs/protocol.md 7.5): SPI, the CN Nonce, L as
    the MN sent it, and an HMAC-SHA256-128 under the data authentication key."""
    l_blob = opened.response.l
    covered = CommunicationReply.authenticated_part_for(session.spi, session.cn_nonce, l_blob)
    tag = hmac_sha256_128(session.data_auth_key, CommunicationReply.MAC_LABEL + covered)
    return CommunicationReply(session.spi, session.cn_nonce, l_blob, tag).encode()


# --- mobile node (7.3, 7.4) ----------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class MnSessionOffer:
    """A Correspondent Information form 1 the MN verified (docs/protocol.md 7.3): the CN's
    request, the FA's narrowed Sec Par and the data authentication key."""

    fa_id: int
    fa_public: PublicKeys
    spi: int
    v: RequestCommunicationInfo
    cn_public: PublicKeys
    cn_addr: ipaddress.IPv4Address
    fa_sec_par: int
    group: DhGroup
    data_auth_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"<MnSessionOffer spi={self.spi} cn={self.cn_addr} cn_id={self.v.cn_id:#x} "
            f"group={self.group.value}>"
        )


def open_correspondent_info_at_mn(
    mn: AgentIdentity,
    data: bytes,
    fa_public: PublicKeys,
    ha_public: PublicKeys,
    cn_public_for: Callable[[int], PublicKeys | None],
) -> MnSessionOffer:
    """Check a Correspondent Information form 1 at the MN (docs/protocol.md 7.3).

    ``mn`` is the MN's identity (node ID = USER ID, address = home address). In order:
    decode (:class:`MalformedMessage`); the clear MN ADDR is ours (:class:`SessionMismatch`);
    the FA signature and Y (:class:`ForeignAgentAuthenticationFailed`); U opens with the HA's
    signature inside (:class:`HomeAgentAuthenticationFailed`); U, Y and the header name one
    SPI and V names this MN (:class:`SessionMismatch`); ``Ku_CN`` is known
    (:class:`UnknownCorrespondent`) and equals the one the HA vouched for, and the CN
    signature over V verifies (:class:`CorrespondentAuthenticationFailed`); the group is
    acceptable (:class:`UnsupportedAlgorithms`, :class:`InvalidKeyExchange`).
    """
    message = _decode(CorrespondentInfoToMN.decode, data, "Correspondent Information")
    if message.mn_addr != mn.address:
        raise SessionMismatch(f"Correspondent Information for {message.mn_addr}")
    try:
        verify(
            fa_public,
            CorrespondentInfoToMN.SIGNATURE_LABEL,
            message.signature,
            message.signed_part(),
        )
        y = CorrespondentInfoFAToMN.decode(
            open_sealed(mn.keys, mn.node_id, CorrespondentInfoFAToMN.LABEL, message.y)
        )
    except (CryptoError, WireError):
        raise ForeignAgentAuthenticationFailed("FA signature or Y does not verify") from None
    try:
        u = CorrespondentInfoForMN.decode(
            open_then_verify(
                mn.keys, mn.node_id, ha_public, CorrespondentInfoForMN.LABEL, message.u
            )
        )
    except (CryptoError, WireError):
        raise HomeAgentAuthenticationFailed("U does not open or its HA signature fails") from None
    v = u.request
    if u.spi != message.spi or y.spi != message.spi:
        raise SessionMismatch("U, Y and the header name different SPIs")
    if v.mn_addr != mn.address or u.cn_addr != v.cn_addr:
        raise SessionMismatch("V names another MN, or U another CN address than V")
    _check_data_auth_key(u.data_auth_key, "U", HomeAgentAuthenticationFailed)
    cn_public = cn_public_for(v.cn_id)
    if cn_public is None:
        raise UnknownCorrespondent(f"no public key for CN {v.cn_id:#x}")
    if cn_public.to_bytes() != u.ku_cn:
        raise CorrespondentAuthenticationFailed("the HA vouched for another CN key")
    try:
        verify(cn_public, RequestCommunicationInfo.LABEL, u.cn_signature, v.encode())
    except CryptoError:
        raise CorrespondentAuthenticationFailed("CN signature over V does not verify") from None
    group = _group(v.p, v.g)
    _check_y(group, v.y_cn, "CN")
    return MnSessionOffer(
        message.fa_id,
        fa_public,
        u.spi,
        v,
        cn_public,
        u.cn_addr,
        y.sec_par,
        group,
        u.data_auth_key,
    )


def build_correspondent_response(
    mn: AgentIdentity, offer: MnSessionOffer, mn_sec_par: int, random: RandomSource
) -> tuple[bytes, MnSession]:
    """The MN's Correspondent Response and its end of the session (docs/protocol.md 7.4, 11).

    Chooses the best algorithms the CN, the FA (Y's Sec Par is already the CN's AND the
    FA's) and the MN support (:class:`UnsupportedAlgorithms` when none), runs its half of the
    Diffie-Hellman exchange (:class:`InvalidKeyExchange` for a bad Ycn) and derives the data
    keys. Z tells the FA the choice; L tells the CN everything, signed by the MN.
    """
    v = offer.v
    auth, encr = _negotiate(v.sec_par, offer.fa_sec_par, mn_sec_par)
    dh = DhKeyPair.generate(offer.group, random)
    y_mn = dh.public_bytes()
    transcript = data_key_transcript(v.cn_id, mn.node_id, v.cn_nonce, v.y_cn, y_mn)
    data_keys = _data_keys(dh, v.y_cn, offer.spi, transcript, "CN")
    z = seal(
        offer.fa_public,
        offer.fa_id,
        CorrespondentResponseForFA.LABEL,
        CorrespondentResponseForFA(offer.spi, v.cn_id, offer.cn_addr, auth, encr).encode(),
    )
    l_prime = CorrespondentResponseForCN(
        offer.spi,
        mn.address,
        mn.node_id,
        v.cn_nonce,
        offer.data_auth_key,
        mn_sec_par,
        auth,
        encr,
        y_mn,
        v.p,
        v.g,
    )
    l_blob = sign_then_seal(
        mn.keys, offer.cn_public, v.cn_id, CorrespondentResponseForCN.LABEL, l_prime.encode()
    )
    signed = CorrespondentResponse.signed_part_for(mn.address, offer.spi, z, l_blob)
    signature = sign(mn.keys, CorrespondentResponse.SIGNATURE_LABEL, signed)
    message = CorrespondentResponse(mn.address, offer.spi, z, l_blob, signature).encode()
    session = MnSession(
        offer.spi, mn.address, v.cn_id, offer.cn_addr, auth, encr, offer.data_auth_key, data_keys
    )
    return message, session


# --- correspondent node: Communication Reply (7.5) -----------------------------------------


def open_communication_reply(
    cn: AgentIdentity, pending: CnPending, data: bytes, mn_public: PublicKeys
) -> CnSession:
    """Check a Communication Reply at the CN and derive its end of the session
    (docs/protocol.md 7.5, 11).

    ``mn_public`` is ``Ku_MN`` from the CN's TC, looked up by the MN's home address. In
    order: decode (:class:`MalformedMessage`); the clear CN Nonce is the pending request's
    (:class:`SessionMismatch`); L opens and the MN signature inside verifies
    (:class:`MobileNodeAuthenticationFailed`); L names the header's SPI, our CN Nonce and the
    MN we asked for (:class:`SessionMismatch`); the HMAC under L's data authentication key
    (:class:`ReplyAuthenticationFailed`); the algorithms are ones we offered and mvpn uses,
    and the group is ours (:class:`UnsupportedAlgorithms`); Ymn (:class:`InvalidKeyExchange`).
    """
    message = _decode(CommunicationReply.decode, data, "Communication Reply")
    if message.cn_nonce != pending.cn_nonce:
        raise SessionMismatch("Communication Reply answers another CN Nonce")
    try:
        l_prime = CorrespondentResponseForCN.decode(
            open_then_verify(
                cn.keys, cn.node_id, mn_public, CorrespondentResponseForCN.LABEL, message.l
            )
        )
    except (CryptoError, WireError):
        raise MobileNodeAuthenticationFailed("L does not open or its MN signature fails") from None
    if (
        l_prime.spi != message.spi
        or l_prime.cn_nonce != pending.cn_nonce
        or l_prime.mn_addr != pending.mn_addr
    ):
        raise SessionMismatch("L names another SPI, CN Nonce or MN than the reply answers")
    _check_data_auth_key(l_prime.data_auth_key, "L", MobileNodeAuthenticationFailed)
    expected = hmac_sha256_128(
        l_prime.data_auth_key, CommunicationReply.MAC_LABEL + message.authenticated_part()
    )
    if not hmac.compare_digest(expected, message.tag):
        raise ReplyAuthenticationFailed("Communication Reply authenticator does not verify")
    auth, encr = _check_chosen(
        l_prime.auth_sec_par, l_prime.encr_sec_par, pending.sec_par, "this CN"
    )
    if (l_prime.p, l_prime.g) != pending.group.params():
        raise UnsupportedAlgorithms("the MN answered in another Diffie-Hellman group")
    _check_y(pending.group, l_prime.y_mn, "MN")
    transcript = data_key_transcript(
        cn.node_id, l_prime.mn_id, pending.cn_nonce, pending.y_cn, l_prime.y_mn
    )
    data_keys = _data_keys(pending.dh, l_prime.y_mn, l_prime.spi, transcript, "MN")
    return CnSession(
        l_prime.spi,
        cn.node_id,
        l_prime.mn_id,
        l_prime.mn_addr,
        auth,
        encr,
        l_prime.data_auth_key,
        data_keys,
    )


# --- key transfer (7.6) ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyTransferOpened:
    """A Key Transfer the new FA opened (docs/protocol.md 7.6)."""

    mn_addr: ipaddress.IPv4Address
    spi: int
    sessions: tuple[TransferredSession, ...]

    def agent_keys(self) -> tuple[AgentSessionKeys, ...]:
        """What the FA keeps of each transferred session."""
        return tuple(
            AgentSessionKeys(s.spi, self.mn_addr, s.cn_id, s.cn_addr, s.data_auth_key)
            for s in self.sessions
        )


def build_key_transfer(
    mn_address: ipaddress.IPv4Address,
    registration_keys: RegistrationKeys,
    sessions: Iterable[MnSession | TransferredSession],
    random: RandomSource,
) -> bytes:
    """The MN's Key Transfer form 0 to its new FA (draft 3.3; docs/protocol.md 7.6): S, sealed
    with the Ses Key of the registration SA with that FA, the header, MN ADDR and SPI as
    additional data. The data encryption keys are never part of it."""
    s = KeyTransferInfo(
        tuple(x.transferred() if isinstance(x, MnSession) else x for x in sessions)
    ).encode()
    spi = registration_keys.spi
    ad = KeyTransfer.associated_part_for(mn_address, spi, len(s) + SYMMETRIC_OVERHEAD)
    sealed = seal_symmetric(registration_keys.ses_key, KeyTransfer.SEAL_LABEL, s, ad, random)
    return KeyTransfer(mn_address, spi, sealed).encode()


def peek_key_transfer(data: bytes) -> KeyTransfer:
    """Decode a Key Transfer without opening it, so the FA can find the registration SA by
    MN ADDR and SPI (:class:`MalformedMessage`)."""
    return _decode(KeyTransfer.decode, data, "Key Transfer")


def open_key_transfer(data: bytes, registration_keys: RegistrationKeys) -> KeyTransferOpened:
    """Open a Key Transfer at the FA: the SPI must be the registration SA's and the seal
    open under its Ses Key (:class:`KeyTransferFailed`), S must decode and every data
    authentication key be long enough (:class:`MalformedMessage`)."""
    message = peek_key_transfer(data)
    if message.spi != registration_keys.spi:
        raise KeyTransferFailed(f"Key Transfer under SPI {message.spi}, not the SA's")
    try:
        s_bytes = open_symmetric(
            registration_keys.ses_key,
            KeyTransfer.SEAL_LABEL,
            message.sealed,
            message.associated_part(),
        )
    except CryptoError:
        raise KeyTransferFailed("Key Transfer seal does not open") from None
    s = _decode(KeyTransferInfo.decode, s_bytes, "S")
    for session in s.sessions:
        _check_data_auth_key(session.data_auth_key, "S", MalformedMessage)
    return KeyTransferOpened(message.mn_addr, message.spi, s.sessions)


def build_key_transfer_ack(
    mn_address: ipaddress.IPv4Address, registration_keys: RegistrationKeys, count: int
) -> bytes:
    """The FA's acknowledgement (Key Transfer form 1, docs/protocol.md 7.6): how many
    sessions it accepted, under an HMAC with the registration Auth Key."""
    spi = registration_keys.spi
    covered = KeyTransferAck.authenticated_part_for(mn_address, spi, count)
    tag = hmac_sha256_128(registration_keys.auth_key, KeyTransferAck.MAC_LABEL + covered)
    return KeyTransferAck(mn_address, spi, count, tag).encode()


def open_key_transfer_ack(data: bytes, registration_keys: RegistrationKeys) -> int:
    """Check a Key Transfer acknowledgement at the MN and return the count accepted:
    :class:`MalformedMessage`, :class:`SessionMismatch` for another SA, and
    :class:`ReplyAuthenticationFailed` for a bad HMAC."""
    message = _decode(KeyTransferAck.decode, data, "Key Transfer acknowledgement")
    if message.spi != registration_keys.spi:
        raise SessionMismatch(f"acknowledgement under SPI {message.spi}, not the SA's")
    expected = hmac_sha256_128(
        registration_keys.auth_key, KeyTransferAck.MAC_LABEL + message.authenticated_part()
    )
    if not hmac.compare_digest(expected, message.tag):
        raise ReplyAuthenticationFailed("Key Transfer acknowledgement does not verify")
    return message.count


# --- errors on the wire (7.7) ----------------------------------------------------------------


def _truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def build_error(code: MvpnError | int, reference: int, reason: str) -> bytes:
    """An Error message (docs/protocol.md 7.7). ``reference`` is the SPI, nonce or
    Identification (low 32 bits are kept) the error is about; ``reason`` is cut to
    :data:`~mvpn.wire.control.MAX_REASON` bytes."""
    return ErrorMessage(code, reference & 0xFFFFFFFF, _truncate_utf8(reason, MAX_REASON)).encode()


def error_for(error: CorrespondentError, reference: int) -> bytes:
    """The Error message answering ``error``: its code and its (key-free) reason."""
    return build_error(error.code, reference, error.reason)
