"""Building and opening every registration message: the wire and crypto glue.

docs/protocol.md sections 5 (first contact: MN -> FA -> HA -> FA -> MN) and 6 (re-registration,
key refresh, plain RFC 5944 nodes), for all three roles. Everything here is pure: no state, no
clock, no logging. The current time (``now``) and randomness (``random``) are arguments, and
every failure is one :class:`RegistrationError` subclass carrying the RFC 5944 reply code it
maps to (the caller decides whether to answer with it, log it, or only count it).

Who calls what:

- the MN: :func:`build_first_contact`, :func:`open_first_contact_reply`,
  :func:`build_reregistration`, :func:`open_reregistration_reply`, :func:`build_plain_request`,
  :func:`open_plain_reply`;
- the FA: :func:`classify_request`, :func:`parse_first_contact`, :func:`relay_first_contact`,
  :func:`peek_reply`, :func:`open_home_info`, :func:`check_original_request`,
  :func:`build_mobile_reply`, :func:`build_bare_reply`, :func:`check_mn_authenticator`,
  :func:`add_fa_ha_authenticator`, :func:`open_reregistration_reply_at_fa`;
- the HA: :func:`parse_relayed_first_contact`, :func:`open_relayed_first_contact`,
  :func:`build_home_info_reply`, :func:`build_bare_reply`, :func:`parse_reregistration`,
  :func:`check_reregistration`, :func:`build_reregistration_reply`,
  :func:`check_plain_request`, :func:`build_plain_reply`.

Counting public-key operations: each function that signs, verifies, seals or opens with a
public-key suite says how many it performs in :data:`PK_OPERATIONS` so that the role cores can
count them (re-registration performs none).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from mvpn.crypto.aead import SYMMETRIC_OVERHEAD, open_symmetric, seal_symmetric
from mvpn.crypto.auth import (
    FIRST_CONTACT_SPI,
    FIRST_REGISTRATION_SA_SPI,
    AuthenticatorAlgorithm,
    check_authenticator,
    compute_authenticator,
)
from mvpn.crypto.errors import CryptoError
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.crypto.random import RandomSource
from mvpn.crypto.session import RegistrationKeys
from mvpn.crypto.suite import (
    SEAL_OVERHEAD,
    SIGNATURE_SIZE,
    open_sealed,
    open_then_verify,
    seal,
    sign,
    sign_then_seal,
    verify,
)
from mvpn.wire.codes import ReplyCode, Suite
from mvpn.wire.errors import WireError
from mvpn.wire.extensions import (
    AuthenticationExtension,
    Extension,
    ForeignHomeAuthExtension,
    MobileForeignAuthExtension,
    MobileHomeAuthExtension,
    extension_type,
    is_skippable,
)
from mvpn.wire.mvpn_extensions import (
    MVPN_TYPES,
    ForeignInfoExtension,
    HomeInfoExtension,
    HomeToMobileBlock,
    KeyRefreshExtension,
    MobileInfoExtension,
    MobileReplyExtension,
    UnknownSuiteExtension,
)
from mvpn.wire.plain import (
    ForeignInfo,
    HomeInfo,
    HomeToMobile,
    KeyRefresh,
    MobileInfo,
    MobileReply,
    make_mn_nonce,
)
from mvpn.wire.registration import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    append_authenticator,
    bytes_before,
    protected_bytes,
    with_authenticator,
)

if TYPE_CHECKING:
    from mvpn.pki.bundle import SmartCard

__all__ = [
    "DEFAULT_SUITE",
    "MN_AUTH_KEY_SIZE",
    "PK_OPERATIONS",
    "AgentIdentity",
    "FirstContactRequest",
    "FirstContactSecrets",
    "ForeignAgentAuthenticationFailed",
    "HomeAddressMismatch",
    "HomeAgentAuthenticationFailed",
    "HomeInfoOpened",
    "IdentificationMismatch",
    "MalformedReply",
    "MalformedRequest",
    "MobileCredentials",
    "MobileNodeAuthenticationFailed",
    "NonceMismatch",
    "OpenedFirstContact",
    "ReRegistration",
    "RegistrationError",
    "RegistrationOutcome",
    "RelayedFirstContact",
    "RequestKind",
    "UnauthenticatedReply",
    "UnknownMobileNode",
    "UnknownSecurityAssociation",
    "UnsupportedSuite",
    "WrongHomeAgent",
    "add_fa_ha_authenticator",
    "build_bare_reply",
    "build_first_contact",
    "build_home_info_reply",
    "build_mobile_reply",
    "build_plain_reply",
    "build_plain_request",
    "build_reregistration",
    "build_reregistration_reply",
    "check_mn_authenticator",
    "check_original_request",
    "check_plain_request",
    "check_reregistration",
    "classify_request",
    "is_first_contact",
    "open_first_contact_reply",
    "open_foreign_info",
    "open_home_info",
    "open_mobile_info",
    "open_plain_reply",
    "open_relayed_first_contact",
    "open_reregistration_reply",
    "open_reregistration_reply_at_fa",
    "parse_first_contact",
    "parse_relayed_first_contact",
    "parse_reregistration",
    "peek_fa_nonce",
    "peek_reply",
    "relay_first_contact",
]

DEFAULT_SUITE = Suite.ED25519_X25519_AES128GCM
"""The only public-key suite with a layout (docs/protocol.md 1)."""

MN_AUTH_KEY_SIZE = 32
"""The MN Auth Key the MN draws per first contact (docs/protocol.md 5.1)."""

_SHA256 = AuthenticatorAlgorithm.HMAC_SHA256
_MD5 = AuthenticatorAlgorithm.HMAC_MD5

PK_OPERATIONS: dict[str, int] = {
    "build_first_contact": 2,  # seal M, sign
    "open_first_contact_reply": 4,  # verify and open W, open and verify T
    "relay_first_contact": 2,  # seal F, sign
    "open_relayed_first_contact": 4,  # verify the FA signature, open F, open M, verify MN
    "open_home_info": 2,  # open and verify Q
    "build_home_info_reply": 4,  # seal W', sign W, sign and seal Q (2 without W)
    "build_mobile_reply": 2,  # sign and seal T (0 for a bare header)
}
"""Public-key operations (signatures, verifications, seals, opens) each function performs on
its full path, for the role cores' ``pk_operations`` counter. Every other function here is
symmetric only: re-registration and plain Mobile IP perform none (docs/protocol.md 6.1)."""


# --- errors -------------------------------------------------------------------------------


class RegistrationError(Exception):
    """A registration message that cannot be accepted; ``code`` is the reply code it maps to.

    Each subclass has a default code (the one the HA, or for FA-side failures the FA, sends);
    the caller may pass another where RFC 5944 gives the FA and the HA different codes for the
    same failure (67 versus 131, 70 versus 134). ``reason`` is safe to log: no key material.
    """

    default_code: ReplyCode = ReplyCode.HA_REASON_UNSPECIFIED

    def __init__(self, reason: str, code: ReplyCode | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code: ReplyCode = code if code is not None else self.default_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={int(self.code)}, reason={self.reason!r})"


class MalformedRequest(RegistrationError):
    """A request that does not decode or lacks a required extension (RFC 5944: 134 at the HA,
    70 at the FA)."""

    default_code = ReplyCode.HA_POORLY_FORMED_REQUEST


class MalformedReply(RegistrationError):
    """A reply that does not decode or lacks a required extension (71)."""

    default_code = ReplyCode.FA_POORLY_FORMED_REPLY


class UnsupportedSuite(RegistrationError):
    """An extension 36 to 39 with a reserved or unknown suite (docs/protocol.md 1: 134 at the
    HA, 70 at the FA)."""

    default_code = ReplyCode.HA_POORLY_FORMED_REQUEST


class MobileNodeAuthenticationFailed(RegistrationError):
    """The MN's signature, seal or authenticator does not verify (131 at the HA, 67 at the
    FA)."""

    default_code = ReplyCode.HA_MN_FAILED_AUTHENTICATION


class ForeignAgentAuthenticationFailed(RegistrationError):
    """The FA's signature, seal or FA-HA authenticator does not verify (132)."""

    default_code = ReplyCode.HA_FA_FAILED_AUTHENTICATION


class HomeAgentAuthenticationFailed(RegistrationError):
    """The HA's signature, seal or authenticator does not verify (68, at the FA or MN)."""

    default_code = ReplyCode.FA_HA_FAILED_AUTHENTICATION


class UnknownMobileNode(RegistrationError):
    """The HA holds no public key for the MN's USER ID (131)."""

    default_code = ReplyCode.HA_MN_FAILED_AUTHENTICATION


class HomeAddressMismatch(RegistrationError):
    """The request's home address is not the one of the authenticated MN (129)."""

    default_code = ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED


class WrongHomeAgent(RegistrationError):
    """Extension 36 names another home agent, or M was sealed to another one (136)."""

    default_code = ReplyCode.HA_UNKNOWN_HOME_AGENT


class NonceMismatch(RegistrationError):
    """A clear nonce copy disagrees with the sealed one, or a reply answers another request
    (131 at the HA, 68 at the FA and MN)."""

    default_code = ReplyCode.HA_MN_FAILED_AUTHENTICATION


class IdentificationMismatch(RegistrationError):
    """Identification replayed, too old or out of the clock tolerance (133; RFC 5944 5.7)."""

    default_code = ReplyCode.HA_IDENTIFICATION_MISMATCH


class UnknownSecurityAssociation(RegistrationError):
    """An authenticator under an SPI nobody shares with the sender (131)."""

    default_code = ReplyCode.HA_MN_FAILED_AUTHENTICATION


class UnauthenticatedReply(RegistrationError):
    """A reply the MN cannot authenticate (a bare denial, or one without W): it is logged and
    counted, never acted on (docs/protocol.md 5.4). ``code`` is the code the reply carried."""

    default_code = ReplyCode.FA_POORLY_FORMED_REPLY


# --- identities ---------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class AgentIdentity:
    """An agent's own identity: its 64-bit node ID, private keys and registration address."""

    node_id: int
    keys: PrivateKeys
    address: ipaddress.IPv4Address

    @property
    def public(self) -> PublicKeys:
        """The agent's public keys (what its certificate carries)."""
        return self.keys.public

    def __repr__(self) -> str:
        return f"<AgentIdentity {self.node_id:#x} at {self.address}>"


@dataclass(frozen=True, repr=False)
class MobileCredentials:
    """What the MN needs to register (draft 3.1, 5.1): its identity fields, private keys, home
    address, and its HA's address, ID and public keys (from the smart card)."""

    user_id: int
    dvc_mac_id: int
    sc_id: int
    keys: PrivateKeys
    home_address: ipaddress.IPv4Address
    ha_address: ipaddress.IPv4Address
    ha_id: int
    ha_public: PublicKeys

    @classmethod
    def from_smart_card(cls, card: SmartCard) -> MobileCredentials:
        """The credentials on a :class:`~mvpn.pki.bundle.SmartCard`; the MN's home address is
        the address in its certificate (ValueError when the certificate has none)."""
        address = card.certificate.address
        if address is None or int(address) == 0:
            raise ValueError("smart card: the MN certificate carries no home address")
        return cls(
            user_id=card.user_id,
            dvc_mac_id=card.dvc_mac_id,
            sc_id=card.sc_id,
            keys=card.keys,
            home_address=address,
            ha_address=card.home_agent_address,
            ha_id=card.home_agent.node_id,
            ha_public=card.home_agent.public_keys,
        )

    def __repr__(self) -> str:
        return f"<MobileCredentials user_id={self.user_id:#x} home_address={self.home_address}>"


# --- shared helpers -----------------------------------------------------------------------

X = TypeVar("X")


def _decode_request(data: bytes, code: ReplyCode) -> RegistrationRequest:
    try:
        return RegistrationRequest.decode(data)
    except WireError as e:
        raise MalformedRequest(f"request does not decode: {e}", code) from None


def _decode_reply(data: bytes) -> RegistrationReply:
    try:
        return RegistrationReply.decode(data)
    except WireError as e:
        raise MalformedReply(f"reply does not decode: {e}") from None


def _check_known(extensions: tuple[Extension, ...], code: ReplyCode, what: str) -> None:
    """RFC 5944 1.9: an unknown extension below 128 makes the message unacceptable;
    docs/protocol.md 1: so does an MVPN extension with an unknown suite."""
    for ext in extensions:
        if isinstance(ext, UnknownSuiteExtension):
            raise UnsupportedSuite(
                f"{what}: extension {ext.type} with unsupported suite {int(ext.suite)}", code
            )
        kind = extension_type(ext)
        if not is_skippable(kind) and not _is_known(ext):
            raise MalformedRequest(f"{what}: unknown non-skippable extension {kind}", code)


def _is_known(ext: Extension) -> bool:
    return isinstance(
        ext,
        AuthenticationExtension
        | MobileInfoExtension
        | ForeignInfoExtension
        | HomeInfoExtension
        | KeyRefreshExtension
        | MobileReplyExtension,
    )


def _only(extensions: tuple[Extension, ...], cls: type[X]) -> list[X]:
    return [e for e in extensions if isinstance(e, cls)]


def _sha256(key: bytes) -> Callable[[bytes], bytes]:
    return lambda protected: compute_authenticator(_SHA256, key, protected)


def _check_auth(
    message: RegistrationRequest | RegistrationReply,
    ext: AuthenticationExtension,
    algorithm: AuthenticatorAlgorithm,
    key: bytes,
    error: type[RegistrationError],
    code: ReplyCode | None,
    what: str,
) -> None:
    try:
        check_authenticator(algorithm, key, protected_bytes(message, ext), ext.authenticator)
    except CryptoError:
        raise error(f"{what} authenticator does not verify", code) from None


def _public(data: bytes, error: type[RegistrationError], what: str) -> PublicKeys:
    try:
        return PublicKeys.from_bytes(data)
    except CryptoError:
        raise error(f"{what}: not a public key") from None


def _answers(request_identification: int, reply_identification: int, code: int) -> bool:
    """RFC 5944 5.7: an accepting reply echoes the Identification; a denial may carry the
    HA's time (or next nonce) in the high half, but always the request's low half."""
    if int(code) in (ReplyCode.ACCEPTED, ReplyCode.ACCEPTED_NO_SIMULTANEOUS_BINDINGS):
        return reply_identification == request_identification
    return (reply_identification & 0xFFFFFFFF) == (request_identification & 0xFFFFFFFF)


# --- mobile node: first contact (docs/protocol.md 5.1, 5.4) ---------------------------------


@dataclass(frozen=True, repr=False)
class FirstContactSecrets:
    """What the MN keeps between sending a first contact and opening its reply."""

    mn_nonce: int
    mn_auth_key: bytes = field(repr=False)
    identification: int
    home_address: ipaddress.IPv4Address
    care_of: ipaddress.IPv4Address

    def __repr__(self) -> str:
        return f"<FirstContactSecrets mn_nonce={self.mn_nonce:#010x}>"


@dataclass(frozen=True)
class RegistrationOutcome:
    """An authenticated reply, as the MN sees it.

    ``keys`` are the registration SA to use from now on (``None`` when denied or for a
    deregistration); ``refreshed`` says a Key Refresh extension brought new ones (6.2).
    ``fa_id``/``fa_public`` come from W (first contact only); ``ha_result`` is the HA's own
    Result from W (an FA may deny what the HA accepted).
    """

    code: ReplyCode | int
    lifetime: int
    identification: int
    keys: RegistrationKeys | None = None
    fa_id: int | None = None
    fa_public: PublicKeys | None = None
    ha_result: ReplyCode | int | None = None
    refreshed: bool = False

    @property
    def accepted(self) -> bool:
        """Codes 0 and 1 accept."""
        return int(self.code) in (ReplyCode.ACCEPTED, ReplyCode.ACCEPTED_NO_SIMULTANEOUS_BINDINGS)


def build_first_contact(
    creds: MobileCredentials,
    care_of: ipaddress.IPv4Address,
    lifetime: int,
    identification: int,
    adv_sequence: int,
    random: RandomSource,
    flags: RequestFlags = RequestFlags.NONE,
    other_info: int = 0,
) -> tuple[bytes, FirstContactSecrets]:
    """The MN's first Registration Request (docs/protocol.md 5.1).

    Header, Mobile Information extension (36) with ``M`` sealed to the HA and the whole
    signed by the MN, then the MN-HA authenticator (32) under SPI 256 keyed with a fresh MN
    Auth Key. The MN Nonce is the advertisement's ``adv_sequence`` then 16 random bits.
    """
    mn_nonce = make_mn_nonce(adv_sequence, int.from_bytes(random(2), "big"))
    mn_auth_key = random(MN_AUTH_KEY_SIZE)
    m = MobileInfo(mn_nonce, creds.dvc_mac_id, creds.user_id, creds.sc_id, mn_auth_key)
    sealed = seal(creds.ha_public, creds.ha_id, MobileInfo.LABEL, m.encode())
    header = RegistrationRequest(
        flags, lifetime, creds.home_address, creds.ha_address, care_of, identification
    )
    p = header.encode_fixed()
    e = MobileInfoExtension.signed_part_for(mn_nonce, creds.ha_id, other_info, sealed)
    signature = sign(creds.keys, MobileInfoExtension.SIGNATURE_LABEL, p, e)
    ext36 = MobileInfoExtension(
        DEFAULT_SUITE, mn_nonce, creds.ha_id, other_info, sealed, signature
    )
    request = dataclasses.replace(header, extensions=(ext36,))
    signed = with_authenticator(
        request, MobileHomeAuthExtension, FIRST_CONTACT_SPI, _SHA256.size, _sha256(mn_auth_key)
    )
    secrets = FirstContactSecrets(
        mn_nonce, mn_auth_key, identification, creds.home_address, care_of
    )
    return signed.encode(), secrets


def open_first_contact_reply(
    creds: MobileCredentials, secrets: FirstContactSecrets, data: bytes, now: float
) -> RegistrationOutcome:
    """Check and open the FA's reply to a first contact (docs/protocol.md 5.4).

    Opens W (HA signature with the smart card's ``Ku_HA``; MN Nonce, Identification and HA ID
    inside), takes ``Ku_FA`` from it, opens T (FA signature; MN Nonce; ACK equals the header's
    code), then checks extension 33 with the new Auth Key. Raises
    :class:`UnauthenticatedReply` for a bare denial or one without W,
    :class:`HomeAgentAuthenticationFailed`/:class:`NonceMismatch` for anything forged.
    """
    reply = _decode_reply(data)
    if reply.home_address != secrets.home_address or not _answers(
        secrets.identification, reply.identification, reply.code
    ):
        raise NonceMismatch(
            "reply does not answer this request (home address or Identification)",
            ReplyCode.FA_HA_FAILED_AUTHENTICATION,
        )
    ext39s = _only(reply.extensions, MobileReplyExtension)
    if not ext39s:
        if _only(reply.extensions, UnknownSuiteExtension):
            raise UnsupportedSuite("mobile reply with an unsupported suite", ReplyCode(71))
        raise UnauthenticatedReply(f"bare reply with code {int(reply.code)}", _as_code(reply.code))
    ext39 = ext39s[0]
    if ext39.mn_nonce != secrets.mn_nonce:
        raise NonceMismatch("mobile reply names another MN Nonce", ReplyCode(68))
    w = ext39.home_to_mobile
    if w is None:
        raise UnauthenticatedReply(
            f"reply with code {int(reply.code)} carries no W", _as_code(reply.code)
        )
    w_prime = _open_w(creds, w)
    if w_prime.mn_nonce != secrets.mn_nonce or w_prime.identification != reply.identification:
        raise NonceMismatch("W answers another request", ReplyCode(68))
    if w_prime.ha_id != creds.ha_id:
        raise HomeAgentAuthenticationFailed("W names another home agent")
    fa_public = _public(w_prime.ku_fa, HomeAgentAuthenticationFailed, "KuFA in W")
    try:
        t_bytes = open_then_verify(
            creds.keys,
            creds.user_id,
            fa_public,
            MobileReplyExtension.SIGNATURE_LABEL,
            ext39.sealed,
            bytes_before(reply, ext39),
            ext39.signed_part(),
        )
        t = MobileReply.decode(t_bytes)
    except (CryptoError, WireError):
        raise HomeAgentAuthenticationFailed("T does not open or verify") from None
    if t.mn_nonce != secrets.mn_nonce or t.fa_id != w_prime.fa_id:
        raise NonceMismatch("T answers another request", ReplyCode(68))
    if int(t.ack) != int(reply.code):
        raise HomeAgentAuthenticationFailed(
            f"ACK {int(t.ack)} differs from the reply code {int(reply.code)}"
        )
    outcome = RegistrationOutcome(
        code=reply.code,
        lifetime=reply.lifetime,
        identification=reply.identification,
        fa_id=w_prime.fa_id,
        fa_public=fa_public,
        ha_result=w_prime.result,
    )
    if not outcome.accepted:
        return outcome
    ext33s = [e for e in _only(reply.extensions, MobileForeignAuthExtension) if e.spi == t.spi]
    if not ext33s or not t.auth_key or t.key_lifetime == 0:
        raise HomeAgentAuthenticationFailed("accepting reply without keys or MN-FA authenticator")
    _check_auth(
        reply,
        ext33s[0],
        _SHA256,
        t.auth_key,
        HomeAgentAuthenticationFailed,
        None,
        "MN-FA",
    )
    try:
        keys = RegistrationKeys(t.spi, t.ses_key, t.auth_key, now, float(t.key_lifetime))
    except (ValueError, CryptoError) as e:
        raise HomeAgentAuthenticationFailed(f"unusable registration keys: {e}") from None
    return dataclasses.replace(outcome, keys=keys)


def _as_code(code: ReplyCode | int) -> ReplyCode:
    try:
        return ReplyCode(int(code))
    except ValueError:
        return ReplyCode.FA_POORLY_FORMED_REPLY


def _open_w(creds: MobileCredentials, w: HomeToMobileBlock) -> HomeToMobile:
    try:
        verify(creds.ha_public, HomeToMobileBlock.SIGNATURE_LABEL, w.signature, w.sealed)
        return HomeToMobile.decode(
            open_sealed(creds.keys, creds.user_id, HomeToMobileBlock.SEAL_LABEL, w.sealed)
        )
    except (CryptoError, WireError):
        raise HomeAgentAuthenticationFailed("W does not verify or open") from None


# --- mobile node: re-registration and plain Mobile IP (docs/protocol.md 6) ------------------


def build_reregistration(
    creds: MobileCredentials,
    keys: RegistrationKeys,
    care_of: ipaddress.IPv4Address,
    lifetime: int,
    identification: int,
    flags: RequestFlags = RequestFlags.NONE,
) -> bytes:
    """A re-registration (docs/protocol.md 6.1): the header and an MN-HA authenticator (32)
    under the registration SA's SPI, HMAC-SHA256 keyed with its Auth Key. Lifetime 0
    deregisters."""
    header = RegistrationRequest(
        flags, lifetime, creds.home_address, creds.ha_address, care_of, identification
    )
    signed = with_authenticator(
        header, MobileHomeAuthExtension, keys.spi, _SHA256.size, _sha256(keys.auth_key)
    )
    return signed.encode()


def open_reregistration_reply(
    creds: MobileCredentials,
    keys: RegistrationKeys,
    identification: int,
    data: bytes,
    now: float,
) -> RegistrationOutcome:
    """Check the reply to a re-registration at the MN (docs/protocol.md 6.1, 6.2).

    The MN-HA authenticator (32) must verify under the SA the request used; a Key Refresh
    extension before it is opened with the current Ses Key and its keys are returned with
    ``refreshed=True``. A reply without extension 32 is :class:`UnauthenticatedReply`.
    """
    reply = _decode_reply(data)
    if reply.home_address != creds.home_address or not _answers(
        identification, reply.identification, reply.code
    ):
        raise NonceMismatch("reply does not answer this request", ReplyCode(68))
    ext32s = [e for e in _only(reply.extensions, MobileHomeAuthExtension) if e.spi == keys.spi]
    if not ext32s:
        raise UnauthenticatedReply(
            f"reply with code {int(reply.code)} has no MN-HA authenticator", _as_code(reply.code)
        )
    ext32 = ext32s[0]
    _check_auth(reply, ext32, _SHA256, keys.auth_key, HomeAgentAuthenticationFailed, None, "MN-HA")
    outcome = RegistrationOutcome(reply.code, reply.lifetime, reply.identification)
    if not outcome.accepted or reply.lifetime == 0:
        return outcome
    index = reply.extensions.index(ext32)
    refresh = _only(reply.extensions[:index], KeyRefreshExtension)
    if refresh:
        new = _open_refresh(reply, refresh[0], keys, now, HomeAgentAuthenticationFailed)
        return dataclasses.replace(outcome, keys=new, refreshed=True)
    return dataclasses.replace(outcome, keys=keys)


def _open_refresh(
    reply: RegistrationReply,
    ext: KeyRefreshExtension,
    keys: RegistrationKeys,
    now: float,
    error: type[RegistrationError],
) -> RegistrationKeys:
    aad = bytes_before(reply, ext) + ext.associated_part()
    try:
        k = KeyRefresh.decode(open_symmetric(keys.ses_key, KeyRefresh.LABEL, ext.sealed, aad))
        return RegistrationKeys(ext.new_spi, k.ses_key, k.auth_key, now, float(ext.key_lifetime))
    except (CryptoError, WireError, ValueError):
        raise error("Key Refresh does not open or carries unusable keys") from None


def build_plain_request(
    home_address: ipaddress.IPv4Address,
    home_agent: ipaddress.IPv4Address,
    care_of: ipaddress.IPv4Address,
    lifetime: int,
    identification: int,
    spi: int,
    key: bytes,
    flags: RequestFlags = RequestFlags.NONE,
) -> bytes:
    """A plain RFC 5944 request (docs/protocol.md 6.3): the header and an MN-HA
    authenticator (32), HMAC-MD5 under a configured shared key."""
    header = RegistrationRequest(
        flags, lifetime, home_address, home_agent, care_of, identification
    )
    signed = with_authenticator(
        header,
        MobileHomeAuthExtension,
        spi,
        _MD5.size,
        lambda p: compute_authenticator(_MD5, key, p),
    )
    return signed.encode()


def open_plain_reply(
    home_address: ipaddress.IPv4Address, identification: int, spi: int, key: bytes, data: bytes
) -> RegistrationOutcome:
    """Check a plain RFC 5944 reply at the MN: it answers the request and its MN-HA
    authenticator (HMAC-MD5) verifies."""
    reply = _decode_reply(data)
    if reply.home_address != home_address or not _answers(
        identification, reply.identification, reply.code
    ):
        raise NonceMismatch("reply does not answer this request", ReplyCode(68))
    ext32s = [e for e in _only(reply.extensions, MobileHomeAuthExtension) if e.spi == spi]
    if not ext32s:
        raise UnauthenticatedReply(
            f"reply with code {int(reply.code)} has no MN-HA authenticator", _as_code(reply.code)
        )
    _check_auth(reply, ext32s[0], _MD5, key, HomeAgentAuthenticationFailed, None, "MN-HA")
    return RegistrationOutcome(reply.code, reply.lifetime, reply.identification)


# --- foreign agent (docs/protocol.md 5.2, 5.4, 6.1) ----------------------------------------


class RequestKind(enum.Enum):
    """What a request arriving at the FA is (docs/protocol.md 6.1, last paragraph)."""

    FIRST_CONTACT = "first-contact"
    """It carries extension 36."""
    AUTHENTICATED = "authenticated"
    """It ends with an MN-HA authenticator under an SPI of 257 or more: a re-registration if
    the FA has that SA for the home address, otherwise plain Mobile IP."""
    PLAIN = "plain"
    """Anything else: relayed as plain Mobile IP."""


def classify_request(data: bytes) -> tuple[RequestKind, RegistrationRequest]:
    """Decode a request at the FA and say what kind it is; :class:`MalformedRequest` (70)."""
    request = _decode_request(data, ReplyCode.FA_POORLY_FORMED_REQUEST)
    kinds = {extension_type(e) for e in request.extensions}
    if 36 in kinds:
        return RequestKind.FIRST_CONTACT, request
    ext32s = _only(request.extensions, MobileHomeAuthExtension)
    if ext32s and ext32s[-1].spi >= FIRST_REGISTRATION_SA_SPI:
        return RequestKind.AUTHENTICATED, request
    return RequestKind.PLAIN, request


@dataclass(frozen=True)
class FirstContactRequest:
    """A first contact as the FA reads it (docs/protocol.md 5.1-5.2): the decoded request,
    its extension 36 (relayed unchanged), the clear MN Nonce and HA ID, the MN's extension 32
    (checked later with the MN Auth Key from Q) and the datagram as received."""

    request: RegistrationRequest
    mobile_info: MobileInfoExtension
    mn_auth: MobileHomeAuthExtension
    data: bytes = field(repr=False)

    @property
    def mn_nonce(self) -> int:
        """The clear MN Nonce: advertisement sequence (16) | MN random (16)."""
        return self.mobile_info.mn_nonce

    @property
    def ha_id(self) -> int:
        """The HA the MN names (whose key the FA looks up)."""
        return self.mobile_info.ha_id

    @property
    def adv_sequence(self) -> int:
        """The advertisement Sequence Number the MN Nonce names."""
        return self.mobile_info.mn_nonce >> 16


def parse_first_contact(data: bytes) -> FirstContactRequest:
    """Read a first contact at the FA. The layout must be exactly header | 36 | 32 (SPI 256);
    anything else is :class:`MalformedRequest` or :class:`UnsupportedSuite` with code 70."""
    code = ReplyCode.FA_POORLY_FORMED_REQUEST
    request = _decode_request(data, code)
    _check_known(request.extensions, code, "first contact")
    exts = request.extensions
    if (
        len(exts) != 2
        or not isinstance(exts[0], MobileInfoExtension)
        or not isinstance(exts[1], MobileHomeAuthExtension)
    ):
        raise MalformedRequest("first contact must be header | 36 | 32", code)
    if exts[1].spi != FIRST_CONTACT_SPI or len(exts[1].authenticator) != _SHA256.size:
        raise MalformedRequest("first contact MN-HA authenticator is not SPI 256, SHA-256", code)
    if request.lifetime == 0:
        raise MalformedRequest("a first contact cannot deregister (lifetime 0)", code)
    return FirstContactRequest(request, exts[0], exts[1], bytes(data))


def relay_first_contact(
    fa: AgentIdentity,
    request: FirstContactRequest,
    ha_public: PublicKeys,
    ha_id: int,
    fa_nonce: int,
) -> bytes:
    """The FA -> HA message (docs/protocol.md 5.2): the MN's header and extension 36 as
    received, then the Foreign Information extension (37) with ``F`` sealed to the HA and the
    whole signed by the FA. The MN's extension 32 is not relayed."""
    ext36 = request.mobile_info
    assert ext36.offset is not None and ext36.raw is not None  # decoded by parse_first_contact
    p = request.data[: ext36.offset + len(ext36.raw)]
    f = ForeignInfo(fa.address, fa_nonce, fa.node_id)
    sealed = seal(ha_public, ha_id, ForeignInfo.LABEL, f.encode())
    e = ForeignInfoExtension.signed_part_for(fa.node_id, sealed)
    signature = sign(fa.keys, ForeignInfoExtension.SIGNATURE_LABEL, p, e)
    return p + ForeignInfoExtension(DEFAULT_SUITE, fa.node_id, sealed, signature).encode()


def peek_reply(data: bytes) -> RegistrationReply:
    """Decode a reply without checking anything (to find the pending request it answers);
    :class:`MalformedReply` (71)."""
    return _decode_reply(data)


def peek_fa_nonce(data: bytes) -> int | None:
    """The clear FA Nonce of a reply's extension 38 (Sub-Type 1), or ``None`` without one."""
    reply = _decode_reply(data)
    exts = _only(reply.extensions, HomeInfoExtension)
    return exts[0].fa_nonce if exts else None


@dataclass(frozen=True)
class HomeInfoOpened:
    """The HA's reply at the FA after :func:`open_home_info`: the reply, its extension 38
    and the opened and verified ``Q``."""

    reply: RegistrationReply
    extension: HomeInfoExtension
    home_info: HomeInfo

    @property
    def accepted(self) -> bool:
        """The HA accepted (codes 0, 1)."""
        return self.reply.accepted

    @property
    def fa_nonce(self) -> int:
        """The FA Nonce (checked equal in clear and in Q)."""
        return self.home_info.fa_nonce


def open_home_info(
    fa: AgentIdentity,
    ha_public: PublicKeys,
    data: bytes,
    pending: FirstContactRequest,
    fa_nonce: int,
) -> HomeInfoOpened:
    """Check and open the HA -> FA reply (docs/protocol.md 5.4, first half).

    The reply must answer ``pending`` (home address, Identification), its extension 38 must
    be addressed to this FA, ``Q`` must open and carry the HA's signature, the FA Nonce and
    MN Nonce must be ours, and Result must equal the header's code. Failures are
    :class:`HomeAgentAuthenticationFailed` or :class:`NonceMismatch` with code 68, or
    :class:`MalformedReply` (71).
    """
    reply = _decode_reply(data)
    exts = reply.extensions
    if not exts or not isinstance(exts[0], HomeInfoExtension):
        if _only(exts, UnknownSuiteExtension):
            raise UnsupportedSuite("home information with an unsupported suite", ReplyCode(71))
        raise MalformedReply("HA reply lacks the Home Information extension")
    ext38 = exts[0]
    request = pending.request
    if reply.home_address != request.home_address or not _answers(
        request.identification, reply.identification, reply.code
    ):
        raise NonceMismatch("HA reply does not answer the pending request", ReplyCode(68))
    if ext38.fa_id != fa.node_id or ext38.fa_nonce != fa_nonce:
        raise NonceMismatch("Home Information is for another FA or request", ReplyCode(68))
    try:
        q_bytes = open_then_verify(
            fa.keys,
            fa.node_id,
            ha_public,
            HomeInfoExtension.SIGNATURE_LABEL,
            ext38.sealed,
            bytes_before(reply, ext38),
            ext38.signed_part(),
        )
        q = HomeInfo.decode(q_bytes)
    except (CryptoError, WireError):
        raise HomeAgentAuthenticationFailed("Q does not open or verify") from None
    if q.fa_nonce != fa_nonce or q.mn_nonce != pending.mn_nonce:
        raise NonceMismatch("Q names another FA Nonce or MN Nonce", ReplyCode(68))
    if int(q.result) != int(reply.code):
        raise HomeAgentAuthenticationFailed("Q's Result differs from the reply code")
    if reply.accepted and (not q.auth_key or not q.mn_auth_key or len(q.ku_mn) == 0):
        raise HomeAgentAuthenticationFailed("accepting Q without keys")
    return HomeInfoOpened(reply, ext38, q)


def check_original_request(saved: bytes, mn_auth_key: bytes) -> None:
    """Check the MN's original first contact with the MN Auth Key the HA returned in Q
    (docs/protocol.md 5.4; the draft's "the FA is now able to authenticate the Registration
    Request"); :class:`MobileNodeAuthenticationFailed` with code 67."""
    code = ReplyCode.FA_MN_FAILED_AUTHENTICATION
    request = _decode_request(saved, code)
    ext32s = [
        e for e in _only(request.extensions, MobileHomeAuthExtension) if e.spi == FIRST_CONTACT_SPI
    ]
    if not ext32s:
        raise MobileNodeAuthenticationFailed("original request has no SPI 256 authenticator", code)
    if len(mn_auth_key) < 16:
        raise MobileNodeAuthenticationFailed("MN Auth Key from Q is too short", code)
    _check_auth(
        request, ext32s[0], _SHA256, mn_auth_key, MobileNodeAuthenticationFailed, code, "MN-HA"
    )


def build_mobile_reply(fa: AgentIdentity, opened: HomeInfoOpened, ack: int | None = None) -> bytes:
    """The FA -> MN reply (docs/protocol.md 5.4).

    With ``ack`` None the HA's code is passed on (an accepted registration gets ``T`` with
    the keys and the MN-FA authenticator (33) under the new SA). An FA denial passes its code
    as ``ack``: the header carries it and ``T`` has empty keys. When the HA gave neither W nor
    ``KuMN`` (an MN it could not identify), nothing can be sealed: a bare header goes out.
    """
    q = opened.home_info
    code = int(opened.reply.code) if ack is None else ack
    header = dataclasses.replace(opened.reply, code=code, extensions=(), raw=None)
    w = opened.extension.home_to_mobile
    if w is None or not q.ku_mn:
        return header.encode()
    mn_public = _public(q.ku_mn, HomeAgentAuthenticationFailed, "KuMN in Q")
    accepted = code in (ReplyCode.ACCEPTED, ReplyCode.ACCEPTED_NO_SIMULTANEOUS_BINDINGS)
    if accepted:
        t = MobileReply(code, q.mn_nonce, q.spi, q.key_lifetime, q.ses_key, q.auth_key, fa.node_id)
    else:
        t = MobileReply(code, q.mn_nonce, 0, 0, b"", b"", fa.node_id)
    t_bytes = t.encode()
    sealed_length = len(t_bytes) + SIGNATURE_SIZE + SEAL_OVERHEAD
    p = header.encode_fixed()
    e = MobileReplyExtension.signed_part_for(q.mn_nonce, w, sealed_length)
    sealed = sign_then_seal(
        fa.keys, mn_public, q.mn_id, MobileReplyExtension.SIGNATURE_LABEL, t_bytes, p, e
    )
    reply = dataclasses.replace(
        header, extensions=(MobileReplyExtension(DEFAULT_SUITE, q.mn_nonce, w, sealed),)
    )
    if accepted:
        reply = with_authenticator(
            reply, MobileForeignAuthExtension, q.spi, _SHA256.size, _sha256(q.auth_key)
        )
    return reply.encode()


def build_bare_reply(
    request: RegistrationRequest,
    code: ReplyCode | int,
    identification: int | None = None,
    lifetime: int = 0,
) -> bytes:
    """A reply header without extensions (docs/protocol.md 5.4 "Denials"): what an agent
    sends when it cannot authenticate its denial. The Identification is the request's unless
    given (an HA's 133 carries its own time in the high half)."""
    return RegistrationReply(
        code,
        lifetime,
        request.home_address,
        request.home_agent,
        request.identification if identification is None else identification,
    ).encode()


def _last_auth(
    request: RegistrationRequest, cls: type[X], code: ReplyCode, what: str
) -> tuple[X, int]:
    for i in range(len(request.extensions) - 1, -1, -1):
        if isinstance(request.extensions[i], cls):
            return request.extensions[i], i  # type: ignore[return-value]
    raise MalformedRequest(f"{what} authenticator missing", code)


def check_mn_authenticator(data: bytes, keys: RegistrationKeys) -> RegistrationRequest:
    """At the FA, check a re-registration's MN-HA authenticator with the visitor's Auth Key
    (docs/protocol.md 6.1: the FA always checks); :class:`MobileNodeAuthenticationFailed`
    (67) or :class:`MalformedRequest` (70)."""
    code = ReplyCode.FA_MN_FAILED_AUTHENTICATION
    request = _decode_request(data, ReplyCode.FA_POORLY_FORMED_REQUEST)
    _check_known(request.extensions, ReplyCode.FA_POORLY_FORMED_REQUEST, "re-registration")
    ext32, _ = _last_auth(
        request, MobileHomeAuthExtension, ReplyCode.FA_POORLY_FORMED_REQUEST, "MN-HA"
    )
    if ext32.spi != keys.spi:
        raise MobileNodeAuthenticationFailed(f"SPI {ext32.spi} is not the visitor's", code)
    _check_auth(request, ext32, _SHA256, keys.auth_key, MobileNodeAuthenticationFailed, code, "MN")
    return request


def add_fa_ha_authenticator(data: bytes, keys: RegistrationKeys) -> bytes:
    """The FA -> HA re-registration: the MN's bytes unchanged, then the FA-HA authenticator
    (34) under the same SA (docs/protocol.md 6.1)."""
    placeholder = ForeignHomeAuthExtension(keys.spi, bytes(_SHA256.size))
    protected = bytes(data) + placeholder.header()
    return protected + compute_authenticator(_SHA256, keys.auth_key, protected)


def open_reregistration_reply_at_fa(
    data: bytes, keys: RegistrationKeys, now: float
) -> tuple[bytes, RegistrationReply, RegistrationKeys | None]:
    """Check the HA's reply to a re-registration at the FA (docs/protocol.md 6.1, 6.2).

    The FA-HA authenticator (34), which must be the last extension, has to verify under the
    visitor's SA (:class:`HomeAgentAuthenticationFailed`, 68). Returns the bytes for the MN
    (the reply without extension 34), the decoded reply, and the refreshed keys when a Key
    Refresh extension came (the FA holds the current Ses Key and opens it too).
    """
    reply = _decode_reply(data)
    if not reply.extensions or not isinstance(reply.extensions[-1], ForeignHomeAuthExtension):
        raise UnauthenticatedReply(
            f"HA reply with code {int(reply.code)} has no FA-HA authenticator",
            _as_code(reply.code),
        )
    ext34 = reply.extensions[-1]
    if ext34.spi != keys.spi:
        raise HomeAgentAuthenticationFailed(f"FA-HA SPI {ext34.spi} is not the visitor's")
    _check_auth(reply, ext34, _SHA256, keys.auth_key, HomeAgentAuthenticationFailed, None, "FA-HA")
    assert ext34.offset is not None
    to_mn = bytes(data)[: ext34.offset]
    refreshed = None
    refresh = _only(reply.extensions, KeyRefreshExtension)
    if refresh and reply.accepted:
        refreshed = _open_refresh(reply, refresh[0], keys, now, HomeAgentAuthenticationFailed)
    return to_mn, reply, refreshed


# --- home agent: first contact (docs/protocol.md 5.2, 5.3) ---------------------------------


@dataclass(frozen=True)
class RelayedFirstContact:
    """A first contact as relayed by an FA, structurally checked but not yet verified:
    header | 36 | 37 (docs/protocol.md 5.2)."""

    request: RegistrationRequest
    mobile_info: MobileInfoExtension
    foreign_info: ForeignInfoExtension

    @property
    def fa_id(self) -> int:
        """The FA whose key the HA needs (Lookup when not cached)."""
        return self.foreign_info.fa_id


def parse_relayed_first_contact(data: bytes) -> RelayedFirstContact:
    """Decode a relayed first contact at the HA; :class:`MalformedRequest` or
    :class:`UnsupportedSuite` with code 134."""
    code = ReplyCode.HA_POORLY_FORMED_REQUEST
    request = _decode_request(data, code)
    _check_known(request.extensions, code, "relayed first contact")
    exts = request.extensions
    if (
        len(exts) != 2
        or not isinstance(exts[0], MobileInfoExtension)
        or not isinstance(exts[1], ForeignInfoExtension)
    ):
        raise MalformedRequest("relayed first contact must be header | 36 | 37", code)
    return RelayedFirstContact(request, exts[0], exts[1])


def is_first_contact(request: RegistrationRequest) -> bool:
    """Whether a decoded request carries any MVPN first-contact extension (36 or 37)."""
    return any(extension_type(e) in MVPN_TYPES for e in request.extensions)


@dataclass(frozen=True, repr=False)
class OpenedFirstContact:
    """A relayed first contact whose signatures verified and whose seals opened at the HA."""

    request: RegistrationRequest
    mobile_info: MobileInfo
    foreign_info: ForeignInfo
    mn_public: PublicKeys
    fa_public: PublicKeys

    @property
    def fa_id(self) -> int:
        """The FA's ID (equal in the clear and in F)."""
        return self.foreign_info.fa_id

    @property
    def user_id(self) -> int:
        """The MN's USER ID, from M."""
        return self.mobile_info.user_id

    def __repr__(self) -> str:
        return (
            f"<OpenedFirstContact user_id={self.user_id:#x} fa_id={self.fa_id:#x} "
            f"home_address={self.request.home_address}>"
        )


def open_foreign_info(
    ha: AgentIdentity, relayed: RelayedFirstContact, fa_public: PublicKeys
) -> ForeignInfo:
    """First half of :func:`open_relayed_first_contact`: the clear HA ID must be this HA's
    (:class:`WrongHomeAgent`, 136), the FA signature must verify and F open with the same FA
    ID inside (:class:`ForeignAgentAuthenticationFailed`, 132). Two public-key operations.

    Once F is open the HA knows the FA Nonce and can sign and seal its denials to the FA."""
    ext36, ext37 = relayed.mobile_info, relayed.foreign_info
    # The clear HA ID first: a request for another HA is not ours to spend signatures on.
    if ext36.ha_id != ha.node_id:
        raise WrongHomeAgent(f"extension 36 names HA {ext36.ha_id:#x}")
    try:
        verify(
            fa_public,
            ForeignInfoExtension.SIGNATURE_LABEL,
            ext37.signature,
            bytes_before(relayed.request, ext37),
            ext37.signed_part(),
        )
        f = ForeignInfo.decode(open_sealed(ha.keys, ha.node_id, ForeignInfo.LABEL, ext37.sealed))
    except (CryptoError, WireError):
        raise ForeignAgentAuthenticationFailed("FA signature or F does not verify") from None
    if f.fa_id != ext37.fa_id:
        raise ForeignAgentAuthenticationFailed("F names another FA than the clear FA ID")
    return f


def open_mobile_info(
    ha: AgentIdentity,
    relayed: RelayedFirstContact,
    mn_public_for: Callable[[int], PublicKeys | None],
) -> tuple[MobileInfo, PublicKeys]:
    """Second half of :func:`open_relayed_first_contact`: M must open (131), ``Ku_MN`` be
    known for its USER ID (:class:`UnknownMobileNode`, 131), the MN signature verify (131)
    and both MN Nonce copies agree (:class:`NonceMismatch`, 131). Two public-key
    operations."""
    ext36 = relayed.mobile_info
    try:
        m = MobileInfo.decode(open_sealed(ha.keys, ha.node_id, MobileInfo.LABEL, ext36.sealed))
    except (CryptoError, WireError):
        raise MobileNodeAuthenticationFailed("M does not open") from None
    mn_public = mn_public_for(m.user_id)
    if mn_public is None:
        raise UnknownMobileNode(f"no public key for USER ID {m.user_id:#x}")
    try:
        verify(
            mn_public,
            MobileInfoExtension.SIGNATURE_LABEL,
            ext36.signature,
            bytes_before(relayed.request, ext36),
            ext36.signed_part(),
        )
    except CryptoError:
        raise MobileNodeAuthenticationFailed("MN signature does not verify") from None
    if m.mn_nonce != ext36.mn_nonce:
        raise NonceMismatch("the clear MN Nonce differs from the sealed one")
    if len(m.mn_auth_key) < 16:
        raise MobileNodeAuthenticationFailed("MN Auth Key is too short")
    return m, mn_public


def open_relayed_first_contact(
    ha: AgentIdentity,
    relayed: RelayedFirstContact,
    fa_public: PublicKeys,
    mn_public_for: Callable[[int], PublicKeys | None],
) -> OpenedFirstContact:
    """Verify and open a relayed first contact at the HA (docs/protocol.md 5.2, last
    paragraph): :func:`open_foreign_info` then :func:`open_mobile_info`. Home address and
    Identification are the caller's checks (they need the binding cache)."""
    f = open_foreign_info(ha, relayed, fa_public)
    m, mn_public = open_mobile_info(ha, relayed, mn_public_for)
    return OpenedFirstContact(relayed.request, m, f, mn_public, fa_public)


def build_home_info_reply(
    ha: AgentIdentity,
    request: RegistrationRequest,
    code: ReplyCode | int,
    lifetime: int,
    identification: int,
    fa_id: int,
    fa_public: PublicKeys,
    fa_nonce: int,
    mn_nonce: int,
    keys: RegistrationKeys | None = None,
    mobile: tuple[int, PublicKeys, bytes] | None = None,
) -> bytes:
    """The HA -> FA reply (docs/protocol.md 5.3).

    ``mobile`` is ``(mn_id, Ku_MN, MN Auth Key)`` when the HA identified the MN: then W
    (``W'`` sealed to the MN, signed by the HA) is included and ``Q`` carries ``KuMN``. An
    accepting reply needs ``keys`` and ``mobile``; a denial has SPI 0, empty Ses Key, Auth Key
    and MN Auth Key (``KuMN`` stays so that the FA can seal its denial to the MN). ``Q`` and
    the HA's signature over ``P``, ``E[0:26+w]`` and ``Q`` are sealed to the FA.
    """
    accepted = int(code) in (ReplyCode.ACCEPTED, ReplyCode.ACCEPTED_NO_SIMULTANEOUS_BINDINGS)
    if accepted and (keys is None or mobile is None):
        raise ValueError("an accepting home information reply needs keys and the MN")
    header = RegistrationReply(code, lifetime, request.home_address, ha.address, identification)
    w: HomeToMobileBlock | None = None
    mn_id, ku_mn, mn_auth_key = 0, b"", b""
    if mobile is not None:
        mn_id, mn_public, auth = mobile
        ku_mn = mn_public.to_bytes()
        w_prime = HomeToMobile(
            mn_nonce, identification, int(code), fa_id, fa_public.to_bytes(), ha.node_id
        )
        sealed_w = seal(mn_public, mn_id, HomeToMobile.LABEL, w_prime.encode())
        w = HomeToMobileBlock(sealed_w, sign(ha.keys, HomeToMobileBlock.SIGNATURE_LABEL, sealed_w))
        if accepted:
            mn_auth_key = auth
    if accepted and keys is not None:
        q = HomeInfo(
            fa_nonce,
            int(code),
            mn_nonce,
            keys.spi,
            int(keys.lifetime),
            keys.ses_key,
            keys.auth_key,
            mn_auth_key,
            ku_mn,
            mn_id,
        )
    else:
        q = HomeInfo(fa_nonce, int(code), mn_nonce, 0, 0, b"", b"", b"", ku_mn, mn_id)
    q_bytes = q.encode()
    sealed_length = len(q_bytes) + SIGNATURE_SIZE + SEAL_OVERHEAD
    e = HomeInfoExtension.signed_part_for(fa_nonce, fa_id, ha.node_id, w, sealed_length)
    sealed = sign_then_seal(
        ha.keys,
        fa_public,
        fa_id,
        HomeInfoExtension.SIGNATURE_LABEL,
        q_bytes,
        header.encode_fixed(),
        e,
    )
    ext38 = HomeInfoExtension(DEFAULT_SUITE, fa_nonce, fa_id, ha.node_id, w, sealed)
    return dataclasses.replace(header, extensions=(ext38,)).encode()


# --- home agent: re-registration and plain Mobile IP (docs/protocol.md 6) -------------------


@dataclass(frozen=True)
class ReRegistration:
    """A symmetric request at the HA: the decoded request, its MN-HA authenticator (32) and
    the FA-HA authenticator (34) after it, if any (docs/protocol.md 6.1, 6.3)."""

    request: RegistrationRequest
    mn_auth: MobileHomeAuthExtension
    fa_auth: ForeignHomeAuthExtension | None

    @property
    def spi(self) -> int:
        """The MN-HA SPI: a registration SA (>= 257) or a plain node's configured SPI."""
        return self.mn_auth.spi


def parse_reregistration(
    data: bytes, decoded: RegistrationRequest | None = None
) -> ReRegistration:
    """Decode a re-registration or plain RFC 5944 request at the HA (134 when malformed).

    ``decoded`` is ``data`` already decoded (the HA decodes every request once to tell first
    contacts from the rest; decoding it again would be a fifth of a re-registration's work).
    The last MN-HA authenticator counts (RFC 5944 3.5.2: it follows every extension it
    protects); only an FA-HA authenticator (34) may follow it.
    """
    code = ReplyCode.HA_POORLY_FORMED_REQUEST
    request = decoded if decoded is not None else _decode_request(data, code)
    _check_known(request.extensions, code, "registration")
    ext32, index = _last_auth(request, MobileHomeAuthExtension, code, "MN-HA")
    after = request.extensions[index + 1 :]
    fa_auth: ForeignHomeAuthExtension | None = None
    for ext in after:
        if isinstance(ext, ForeignHomeAuthExtension) and fa_auth is None:
            fa_auth = ext
        elif not is_skippable(extension_type(ext)):
            raise MalformedRequest("extension after the MN-HA authenticator", code)
    return ReRegistration(request, ext32, fa_auth)


def check_reregistration(
    parsed: ReRegistration, keys: RegistrationKeys, require_fa_auth: bool = True
) -> None:
    """Check a re-registration at the HA under its registration SA (docs/protocol.md 6.1):
    the MN-HA authenticator (131) and the FA-HA authenticator (132; required unless
    ``require_fa_auth`` is false). No public-key operation."""
    request = parsed.request
    if parsed.spi != keys.spi:
        raise UnknownSecurityAssociation(f"SPI {parsed.spi} is not the binding's")
    _check_auth(
        request, parsed.mn_auth, _SHA256, keys.auth_key, MobileNodeAuthenticationFailed, None, "MN"
    )
    if parsed.fa_auth is None:
        if require_fa_auth:
            raise ForeignAgentAuthenticationFailed("re-registration without FA-HA authenticator")
        return
    if parsed.fa_auth.spi != keys.spi:
        raise ForeignAgentAuthenticationFailed(f"FA-HA SPI {parsed.fa_auth.spi} is not the SA's")
    _check_auth(
        request,
        parsed.fa_auth,
        _SHA256,
        keys.auth_key,
        ForeignAgentAuthenticationFailed,
        None,
        "FA-HA",
    )


def build_reregistration_reply(
    ha: AgentIdentity,
    request: RegistrationRequest,
    code: ReplyCode | int,
    lifetime: int,
    identification: int,
    keys: RegistrationKeys,
    random: RandomSource,
    refresh: RegistrationKeys | None = None,
    fa_auth: bool = True,
) -> bytes:
    """The HA's reply to a re-registration (docs/protocol.md 6.1, 6.2): header, then a Key
    Refresh extension (38, Sub-Type 128) sealed with the current Ses Key when ``refresh`` is
    given, then the MN-HA (32) and, with ``fa_auth``, FA-HA (34) authenticators, both under
    the SA the request used (``keys``)."""
    header = RegistrationReply(code, lifetime, request.home_address, ha.address, identification)
    reply = header
    if refresh is not None:
        k = KeyRefresh(refresh.ses_key, refresh.auth_key).encode()
        new_lifetime = int(refresh.lifetime)
        sealed_length = len(k) + SYMMETRIC_OVERHEAD
        aad = header.encode_fixed() + KeyRefreshExtension.associated_part_for(
            refresh.spi, new_lifetime, sealed_length
        )
        sealed = seal_symmetric(keys.ses_key, KeyRefresh.LABEL, k, aad, random)
        reply = dataclasses.replace(
            header, extensions=(KeyRefreshExtension(refresh.spi, new_lifetime, sealed),)
        )
    # Appended to the encoding: the re-registration is the hot path of an HA, and building
    # the message again per authenticator was half of its work.
    mac = _sha256(keys.auth_key)
    data = append_authenticator(
        reply.encode(), MobileHomeAuthExtension, keys.spi, _SHA256.size, mac
    )
    if fa_auth:
        data = append_authenticator(data, ForeignHomeAuthExtension, keys.spi, _SHA256.size, mac)
    return data


def check_plain_request(parsed: ReRegistration, spi: int, key: bytes) -> None:
    """Check a plain RFC 5944 request's MN-HA authenticator (HMAC-MD5, docs/protocol.md 6.3);
    :class:`UnknownSecurityAssociation` or :class:`MobileNodeAuthenticationFailed` (131)."""
    if parsed.spi != spi:
        raise UnknownSecurityAssociation(f"SPI {parsed.spi} is not the node's")
    _check_auth(
        parsed.request, parsed.mn_auth, _MD5, key, MobileNodeAuthenticationFailed, None, "MN"
    )


def build_plain_reply(
    ha: AgentIdentity,
    request: RegistrationRequest,
    code: ReplyCode | int,
    lifetime: int,
    identification: int,
    spi: int,
    key: bytes,
) -> bytes:
    """The HA's reply to a plain RFC 5944 node: header and MN-HA authenticator (HMAC-MD5)."""
    header = RegistrationReply(code, lifetime, request.home_address, ha.address, identification)
    return with_authenticator(
        header,
        MobileHomeAuthExtension,
        spi,
        _MD5.size,
        lambda p: compute_authenticator(_MD5, key, p),
    ).encode()
