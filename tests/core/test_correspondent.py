"""Every correspondent-node session message built and opened in memory (docs/protocol.md 7).

The exchange CN -> HA -> FA -> MN -> FA -> CN with keys made at test time from a seeded random
source, for X25519 and ffdhe2048; then every refusal (unknown CN, forged signatures, tampered
sealed blobs, a wrong Hello value, stale timestamps, broken algorithms and groups, a bad
Communication Reply authenticator), each of which must raise the right typed error with its
MVPN error code; then the Key Transfer and its acknowledgement, and the Error message.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mvpn.core import correspondent as cor
from mvpn.core.messages import AgentIdentity
from mvpn.crypto.aead import DataCipher
from mvpn.crypto.auth import hmac_sha256_128
from mvpn.crypto.dh import DhGroup
from mvpn.crypto.errors import DecryptionError
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS, encode_flags
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.crypto.suite import open_sealed, seal, sign, sign_then_seal
from mvpn.wire.codes import AuthSecPar, EncrSecPar, MvpnError
from mvpn.wire.control import (
    CommunicationReply,
    CorrespondentInfoToFA,
    CorrespondentInfoToMN,
    CorrespondentResponse,
    ErrorMessage,
    KeyTransfer,
    RequestCommunication,
    decode_control,
)
from mvpn.wire.plain import (
    CorrespondentInfoForFA,
    CorrespondentInfoForMN,
    CorrespondentResponseForCN,
    RequestCommunicationInfo,
)
from mvpn.wire.registration import Identification

IP = ipaddress.IPv4Address
NOW = 1_800_000_000.0
SPI = 0x5001
AES_ONLY = encode_flags([AuthSecPar.HMAC_SHA256_128], [EncrSecPar.AES_256_GCM])
CHACHA_ONLY = encode_flags([AuthSecPar.HMAC_SHA256_128], [EncrSecPar.CHACHA20_POLY1305])


@dataclass
class World:
    """The four nodes' identities, the MN's registration SA with its FA, and a stranger."""

    cn: AgentIdentity
    ha: AgentIdentity
    fa: AgentIdentity
    mn: AgentIdentity
    registration: RegistrationKeys
    random: SeededRandom
    stranger: PrivateKeys

    def cn_keys(self, cn_id: int) -> PublicKeys | None:
        return self.cn.public if cn_id == self.cn.node_id else None


@pytest.fixture(scope="module")
def world() -> World:
    random = SeededRandom("correspondent")
    cn = AgentIdentity(0xC0, PrivateKeys.generate(random), IP("198.51.100.7"))
    ha = AgentIdentity(0x4801, PrivateKeys.generate(random), IP("10.1.0.1"))
    fa = AgentIdentity(0x4602, PrivateKeys.generate(random), IP("192.0.2.1"))
    # The MN's identity: node ID is its USER ID, address its home address.
    mn = AgentIdentity(0xAABBCCDD, PrivateKeys.generate(random), IP("10.1.0.5"))
    registration = RegistrationKeys.generate(random, 0x101, NOW, 300)
    return World(cn, ha, fa, mn, registration, random, PrivateKeys.generate(random))


@dataclass
class Flow:
    """The messages and values of one session set-up."""

    m1: bytes
    pending: cor.CnPending
    at_ha: cor.OpenedRequest
    data_auth_key: bytes
    m2: bytes
    at_fa: cor.FaSessionInfo
    m3: bytes
    offer: cor.MnSessionOffer
    m4: bytes
    mn_session: cor.MnSession
    at_fa_response: cor.FaResponseOpened
    m5: bytes
    cn_session: cor.CnSession


def run(
    w: World,
    group: DhGroup = DhGroup.X25519,
    cn_flags: int = LOCAL_FLAGS,
    fa_flags: int = LOCAL_FLAGS,
    mn_flags: int = LOCAL_FLAGS,
) -> Flow:
    """One whole exchange; each step uses only what its node holds."""
    m1, pending = cor.build_request_communication(
        w.cn, w.ha.node_id, w.ha.public, w.mn.address, cn_flags, group, NOW, w.random
    )
    at_ha = cor.open_request_communication(w.ha, m1, w.cn_keys, NOW + 1)
    data_auth_key = cor.new_data_auth_key(w.random)
    m2 = cor.build_correspondent_info(
        w.ha,
        at_ha,
        SPI,
        data_auth_key,
        w.mn.node_id,
        w.mn.public,
        w.fa.node_id,
        w.fa.public,
        w.registration.auth_key,
    )
    at_fa = cor.open_correspondent_info_at_fa(w.fa, m2, w.ha.public, w.registration.auth_key)
    m3 = cor.build_correspondent_info_to_mn(w.fa, at_fa, fa_flags, w.mn.node_id, w.mn.public)
    offer = cor.open_correspondent_info_at_mn(w.mn, m3, w.fa.public, w.ha.public, w.cn_keys)
    m4, mn_session = cor.build_correspondent_response(w.mn, offer, mn_flags, w.random)
    at_fa_response = cor.open_correspondent_response_at_fa(w.fa, m4, w.mn.public, at_fa)
    m5 = cor.build_communication_reply(at_fa_response, at_fa)
    cn_session = cor.open_communication_reply(w.cn, pending, m5, w.mn.public)
    return Flow(
        m1,
        pending,
        at_ha,
        data_auth_key,
        m2,
        at_fa,
        m3,
        offer,
        m4,
        mn_session,
        at_fa_response,
        m5,
        cn_session,
    )


@pytest.fixture(scope="module")
def flow(world: World) -> Flow:
    return run(world)


def flip(data: bytes, index: int) -> bytes:
    """``data`` with one bit of byte ``index`` changed."""
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- the whole exchange -------------------------------------------------------------------


@pytest.mark.parametrize("group", [DhGroup.X25519, DhGroup.FFDHE2048])
def test_exchange_gives_mn_and_cn_the_same_keys_and_algorithms(
    world: World, group: DhGroup
) -> None:
    """After the five messages MN and CN hold the same SPI, data authentication key,
    algorithms and data keys, and the keys really carry a packet from one to the other."""
    f = run(world, group)
    mn, cn = f.mn_session, f.cn_session
    assert mn.spi == cn.spi == SPI
    assert mn.data_auth_key == cn.data_auth_key == f.data_auth_key
    assert (mn.auth_sec_par, mn.encr_sec_par) == (cn.auth_sec_par, cn.encr_sec_par)
    assert (mn.auth_sec_par, mn.encr_sec_par) == (
        AuthSecPar.HMAC_SHA256_128,
        EncrSecPar.AES_256_GCM,
    )
    assert mn.data_keys == cn.data_keys
    assert mn.data_keys.mn_to_cn != mn.data_keys.cn_to_mn
    assert cn.mn_id == world.mn.node_id and cn.mn_addr == world.mn.address
    assert mn.cn_id == world.cn.node_id and mn.cn_addr == world.cn.address
    sent = DataCipher(mn.encr_sec_par, mn.data_keys.mn_to_cn).encrypt(1, b"ad", b"ping")
    assert DataCipher(cn.encr_sec_par, cn.data_keys.mn_to_cn).decrypt(1, b"ad", sent) == b"ping"
    assert f.pending.group is group and f.offer.group is group


def test_two_exchanges_give_unrelated_keys(world: World, flow: Flow) -> None:
    """A second session between the same nodes draws a new nonce and new DH values, so its
    data keys share nothing with the first's."""
    again = run(world)
    assert again.pending.cn_nonce != flow.pending.cn_nonce
    assert again.cn_session.data_keys.mn_to_cn != flow.cn_session.data_keys.mn_to_cn


def test_agents_hold_only_the_data_auth_key(world: World, flow: Flow) -> None:
    """HA and FA hold the data authentication key (equal to the endpoints'), and neither can
    open U (the MN's) or L (the CN's), so they never see the Diffie-Hellman values' keys."""
    ha_keys = flow.at_ha.agent_keys(SPI, flow.data_auth_key)
    fa_keys = flow.at_fa.keys
    assert ha_keys.data_auth_key == fa_keys.data_auth_key == flow.cn_session.data_auth_key
    assert (fa_keys.spi, fa_keys.mn_addr, fa_keys.cn_addr) == (
        SPI,
        world.mn.address,
        world.cn.address,
    )
    assert {f.name for f in dataclasses.fields(cor.AgentSessionKeys)} == {
        "spi",
        "mn_addr",
        "cn_id",
        "cn_addr",
        "data_auth_key",
    }
    u = CorrespondentInfoToMN.decode(flow.m3).u
    l_blob = CorrespondentResponse.decode(flow.m4).l
    for agent in (world.ha, world.fa):
        with pytest.raises(DecryptionError):
            open_sealed(agent.keys, agent.node_id, CorrespondentInfoForMN.LABEL, u)
        with pytest.raises(DecryptionError):
            open_sealed(agent.keys, agent.node_id, CorrespondentResponseForCN.LABEL, l_blob)


def test_algorithms_are_the_best_all_three_support(world: World) -> None:
    """An FA that supports only ChaCha20-Poly1305 makes MN and CN use it."""
    f = run(world, fa_flags=CHACHA_ONLY)
    assert f.mn_session.encr_sec_par is EncrSecPar.CHACHA20_POLY1305
    assert f.cn_session.encr_sec_par is EncrSecPar.CHACHA20_POLY1305
    assert f.at_fa_response.encr_sec_par == EncrSecPar.CHACHA20_POLY1305


def test_public_key_operations_are_as_declared(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One whole exchange performs exactly the public-key operations PK_OPERATIONS declares
    (sign-then-seal and open-then-verify count as two)."""
    count = [0]

    def counted(function: Callable[..., object], weight: int) -> Callable[..., object]:
        def wrapper(*args: object) -> object:
            count[0] += weight
            return function(*args)

        return wrapper

    for name, weight in (
        ("sign", 1),
        ("verify", 1),
        ("seal", 1),
        ("open_sealed", 1),
        ("sign_then_seal", 2),
        ("open_then_verify", 2),
    ):
        monkeypatch.setattr(cor, name, counted(getattr(cor, name), weight))
    run(world)
    assert count[0] == sum(cor.PK_OPERATIONS.values())


def test_no_repr_shows_a_key(world: World, flow: Flow) -> None:
    """The session values name SPIs and addresses but never show key bytes."""
    secrets = [
        flow.data_auth_key,
        flow.cn_session.data_keys.mn_to_cn,
        flow.cn_session.data_keys.cn_to_mn,
    ]
    values: list[object] = [
        flow.pending,
        flow.at_fa,
        flow.at_fa.keys,
        flow.offer,
        flow.mn_session,
        flow.cn_session,
        flow.at_ha.agent_keys(SPI, flow.data_auth_key),
    ]
    for value in values:
        text = repr(value)
        assert str(SPI) in text or "cn_nonce" in text
        for secret in secrets:
            assert secret.hex() not in text and repr(secret) not in text


# --- refusals at the HA ---------------------------------------------------------------------


def forged_request(w: World, signer: PrivateKeys | None = None, **changes: object) -> bytes:
    """A Request Communication whose V is changed as given, signed by ``signer`` (the CN by
    default) and sealed to the HA."""
    v = RequestCommunicationInfo(
        w.mn.address,
        w.cn.node_id,
        w.cn.address,
        0x1234,
        Identification.from_unix_time(NOW).value,
        LOCAL_FLAGS,
        bytes(range(1, 33)),
    )
    v = dataclasses.replace(v, **changes)  # type: ignore[arg-type]
    sealed = sign_then_seal(
        signer or w.cn.keys, w.ha.public, w.ha.node_id, RequestCommunicationInfo.LABEL, v.encode()
    )
    return RequestCommunication(v.cn_id, v.mn_addr, sealed).encode()


def refused(
    call: Callable[[], object], error: type[cor.CorrespondentError], code: MvpnError
) -> cor.CorrespondentError:
    """``call`` raises ``error`` with ``code``; returns it."""
    with pytest.raises(error) as info:
        call()
    assert info.value.code is code
    return info.value


def test_unknown_correspondent(world: World, flow: Flow) -> None:
    """A CN the HA has no key for is refused with 4 (public key not valid)."""
    refused(
        lambda: cor.open_request_communication(world.ha, flow.m1, lambda _: None, NOW),
        cor.UnknownCorrespondent,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_bad_cn_signature(world: World) -> None:
    """V signed by anyone but the CN named in it is refused with 4."""
    m1 = forged_request(world, signer=world.stranger)
    refused(
        lambda: cor.open_request_communication(world.ha, m1, world.cn_keys, NOW),
        cor.CorrespondentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_tampered_request_seal(world: World, flow: Flow) -> None:
    """A changed bit in the sealed V does not open: 4."""
    refused(
        lambda: cor.open_request_communication(
            world.ha, flip(flow.m1, len(flow.m1) - 3), world.cn_keys, NOW
        ),
        cor.CorrespondentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_request_sealed_to_another_ha(world: World, flow: Flow) -> None:
    """A request sealed to another HA does not open at this one: 4."""
    other = AgentIdentity(0x4899, world.stranger, world.ha.address)
    refused(
        lambda: cor.open_request_communication(other, flow.m1, world.cn_keys, NOW),
        cor.CorrespondentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_clear_fields_must_match_v(world: World, flow: Flow) -> None:
    """A clear MN ADDR that differs from V's is refused (7): nobody can redirect a request."""
    request = RequestCommunication.decode(flow.m1)
    moved = dataclasses.replace(request, mn_addr=IP("10.1.0.99"), raw=None).encode()
    refused(
        lambda: cor.open_request_communication(world.ha, moved, world.cn_keys, NOW),
        cor.SessionMismatch,
        MvpnError.OTHER,
    )


@pytest.mark.parametrize("skew", [-31.0, 31.0, -3600.0])
def test_timestamp_outside_window(world: World, flow: Flow, skew: float) -> None:
    """The HA refuses a request whose timestamp is more than 30 s from its clock (7)."""
    error = refused(
        lambda: cor.open_request_communication(world.ha, flow.m1, world.cn_keys, NOW - skew),
        cor.StaleRequest,
        MvpnError.OTHER,
    )
    assert "window" in error.reason


@pytest.mark.parametrize("skew", [-29.5, 29.5])
def test_timestamp_inside_window(world: World, flow: Flow, skew: float) -> None:
    """Up to 30 s either way is accepted, and the replay key is (CN ID, CN Nonce)."""
    opened = cor.open_request_communication(world.ha, flow.m1, world.cn_keys, NOW + skew)
    assert opened.replay_key == (world.cn.node_id, flow.pending.cn_nonce)


def test_cn_offering_only_broken_algorithms(world: World) -> None:
    """A CN offering only MD5 and DES is refused (7) with a reason naming them."""
    broken = encode_flags([AuthSecPar.MD5], [EncrSecPar.DES])
    m1, _ = cor.build_request_communication(
        world.cn,
        world.ha.node_id,
        world.ha.public,
        world.mn.address,
        broken,
        DhGroup.X25519,
        NOW,
        world.random,
    )
    error = refused(
        lambda: cor.open_request_communication(world.ha, m1, world.cn_keys, NOW),
        cor.UnsupportedAlgorithms,
        MvpnError.OTHER,
    )
    assert "MD5" in error.reason and "DES" in error.reason


def test_broken_dh_group(world: World) -> None:
    """The draft's 48-bit P is refused (7) with a reason naming its size."""
    m1 = forged_request(
        world, p=(0xFFFFFFFFFFC5).to_bytes(6, "big"), g=b"\x02", y_cn=b"\x00\x00\x00\x00\x10\x00"
    )
    error = refused(
        lambda: cor.open_request_communication(world.ha, m1, world.cn_keys, NOW),
        cor.UnsupportedAlgorithms,
        MvpnError.OTHER,
    )
    assert "48 bits" in error.reason


def test_dh_value_of_wrong_length(world: World) -> None:
    """An X25519 Ycn that is not 32 bytes is refused (7)."""
    m1 = forged_request(world, y_cn=bytes(31) + b"\x09" + b"\x00")
    refused(
        lambda: cor.open_request_communication(world.ha, m1, world.cn_keys, NOW),
        cor.InvalidKeyExchange,
        MvpnError.OTHER,
    )


def test_malformed_request(world: World, flow: Flow) -> None:
    """A truncated datagram is refused (7) before any cryptography."""
    refused(
        lambda: cor.peek_request_communication(flow.m1[:-1]),
        cor.MalformedMessage,
        MvpnError.OTHER,
    )


def test_ha_refuses_to_build_with_a_bad_spi_or_key(world: World, flow: Flow) -> None:
    """SPI 0 and a short data authentication key are the caller's bugs: ValueError."""
    for spi, key in ((0, flow.data_auth_key), (SPI, bytes(8))):
        with pytest.raises(ValueError):
            cor.build_correspondent_info(
                world.ha,
                flow.at_ha,
                spi,
                key,
                world.mn.node_id,
                world.mn.public,
                world.fa.node_id,
                world.fa.public,
                world.registration.auth_key,
            )


# --- refusals at the FA --------------------------------------------------------------------


def resigned_info_to_fa(w: World, m2: bytes, **changes: object) -> bytes:
    """Form 0 with fields changed and signed again by the HA (so only the change counts)."""
    message = dataclasses.replace(CorrespondentInfoToFA.decode(m2), raw=None, **changes)  # type: ignore[arg-type]
    signed = CorrespondentInfoToFA.signed_part_for(
        message.ha_id, message.mn_addr, message.spi, message.u, message.x
    )
    signature = sign(w.ha.keys, CorrespondentInfoToFA.SIGNATURE_LABEL, signed)
    return dataclasses.replace(message, signature=signature).encode()


def test_info_to_fa_with_bad_ha_signature(world: World, flow: Flow) -> None:
    """Any changed bit of form 0 fails the HA signature (4)."""
    for index in (5, 14, 17, 40, len(flow.m2) - 1):
        refused(
            lambda i=index: cor.open_correspondent_info_at_fa(  # type: ignore[misc]
                world.fa, flip(flow.m2, i), world.ha.public, world.registration.auth_key
            ),
            cor.HomeAgentAuthenticationFailed,
            MvpnError.PUBLIC_KEY_NOT_VALID,
        )


def test_tampered_x(world: World, flow: Flow) -> None:
    """An X changed and signed again by the HA itself still does not open at the FA (4)."""
    x = CorrespondentInfoToFA.decode(flow.m2).x
    m2 = resigned_info_to_fa(world, flow.m2, x=flip(x, 40))
    refused(
        lambda: cor.open_correspondent_info_at_fa(
            world.fa, m2, world.ha.public, world.registration.auth_key
        ),
        cor.HomeAgentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_wrong_hello(world: World, flow: Flow) -> None:
    """An FA whose registration Auth Key differs (another registration) refuses the Hello
    value with 1 (authentication key not valid)."""
    refused(
        lambda: cor.open_correspondent_info_at_fa(world.fa, flow.m2, world.ha.public, bytes(32)),
        cor.HelloMismatch,
        MvpnError.AUTHENTICATION_KEY_NOT_VALID,
    )


def test_hello_covers_the_cn_nonce(world: World, flow: Flow) -> None:
    """An X whose CN Nonce was changed (sealed again to the FA, signed by the HA) no longer
    matches its Hello value."""
    x = CorrespondentInfoForFA.decode(
        open_sealed(
            world.fa.keys,
            world.fa.node_id,
            CorrespondentInfoForFA.LABEL,
            CorrespondentInfoToFA.decode(flow.m2).x,
        )
    )
    changed = dataclasses.replace(x, cn_nonce=x.cn_nonce ^ 1, raw=None)
    new_x = seal(world.fa.public, world.fa.node_id, x.LABEL, changed.encode())
    m2 = resigned_info_to_fa(world, flow.m2, x=new_x)
    refused(
        lambda: cor.open_correspondent_info_at_fa(
            world.fa, m2, world.ha.public, world.registration.auth_key
        ),
        cor.HelloMismatch,
        MvpnError.AUTHENTICATION_KEY_NOT_VALID,
    )


def test_fa_supporting_nothing_the_cn_offers(world: World, flow: Flow) -> None:
    """An FA whose algorithms share nothing with the CN's refuses before answering (7)."""
    cn_aes_only = run(world, cn_flags=AES_ONLY)
    refused(
        lambda: cor.build_correspondent_info_to_mn(
            world.fa, cn_aes_only.at_fa, CHACHA_ONLY, world.mn.node_id, world.mn.public
        ),
        cor.UnsupportedAlgorithms,
        MvpnError.OTHER,
    )


def resigned_response(w: World, m4: bytes, **changes: object) -> bytes:
    """A Correspondent Response with fields changed and signed again by the MN."""
    message = dataclasses.replace(CorrespondentResponse.decode(m4), raw=None, **changes)  # type: ignore[arg-type]
    signed = CorrespondentResponse.signed_part_for(
        message.mn_addr, message.spi, message.z, message.l
    )
    signature = sign(w.mn.keys, CorrespondentResponse.SIGNATURE_LABEL, signed)
    return dataclasses.replace(message, signature=signature).encode()


def test_tampered_z(world: World, flow: Flow) -> None:
    """A Z changed and signed again by the MN does not open at the FA (4)."""
    z = CorrespondentResponse.decode(flow.m4).z
    m4 = resigned_response(world, flow.m4, z=flip(z, 35))
    refused(
        lambda: cor.open_correspondent_response_at_fa(world.fa, m4, world.mn.public, flow.at_fa),
        cor.MobileNodeAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_response_with_bad_mn_signature(world: World, flow: Flow) -> None:
    """A Correspondent Response whose L was changed on the way fails the MN signature (4)."""
    refused(
        lambda: cor.open_correspondent_response_at_fa(
            world.fa, flip(flow.m4, len(flow.m4) - 80), world.mn.public, flow.at_fa
        ),
        cor.MobileNodeAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_response_for_another_session(world: World, flow: Flow) -> None:
    """A Correspondent Response under another SPI is refused (7) before any signature."""
    m4 = resigned_response(world, flow.m4, spi=SPI + 1)
    refused(
        lambda: cor.open_correspondent_response_at_fa(world.fa, m4, world.mn.public, flow.at_fa),
        cor.SessionMismatch,
        MvpnError.OTHER,
    )


# --- refusals at the MN --------------------------------------------------------------------


def resigned_info_to_mn(w: World, m3: bytes, **changes: object) -> bytes:
    """Form 1 with fields changed and signed again by the FA."""
    message = dataclasses.replace(CorrespondentInfoToMN.decode(m3), raw=None, **changes)  # type: ignore[arg-type]
    signed = CorrespondentInfoToMN.signed_part_for(
        message.fa_id, message.mn_addr, message.spi, message.u, message.y
    )
    signature = sign(w.fa.keys, CorrespondentInfoToMN.SIGNATURE_LABEL, signed)
    return dataclasses.replace(message, signature=signature).encode()


def open_at_mn(w: World, m3: bytes) -> cor.MnSessionOffer:
    return cor.open_correspondent_info_at_mn(w.mn, m3, w.fa.public, w.ha.public, w.cn_keys)


def test_info_to_mn_with_bad_fa_signature(world: World, flow: Flow) -> None:
    """Any changed bit of form 1 fails the FA signature (4)."""
    refused(
        lambda: open_at_mn(world, flip(flow.m3, 30)),
        cor.ForeignAgentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_tampered_u(world: World, flow: Flow) -> None:
    """A U changed and signed again by the FA does not open at the MN (4): only the HA
    vouches for it."""
    u = CorrespondentInfoToMN.decode(flow.m3).u
    refused(
        lambda: open_at_mn(world, resigned_info_to_mn(world, flow.m3, u=flip(u, 50))),
        cor.HomeAgentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_u_signed_by_someone_else(world: World, flow: Flow) -> None:
    """A U sealed to the MN but signed by the FA instead of the HA is refused (4)."""
    u_prime = CorrespondentInfoForMN(
        SPI,
        bytes(32),
        flow.at_ha.v,
        flow.at_ha.cn_signature,
        world.cn.public.to_bytes(),
        world.cn.address,
    )
    u = sign_then_seal(
        world.fa.keys, world.mn.public, world.mn.node_id, u_prime.LABEL, u_prime.encode()
    )
    refused(
        lambda: open_at_mn(world, resigned_info_to_mn(world, flow.m3, u=u)),
        cor.HomeAgentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_tampered_y(world: World, flow: Flow) -> None:
    """A Y changed and signed again by the FA does not open at the MN (4)."""
    y = CorrespondentInfoToMN.decode(flow.m3).y
    refused(
        lambda: open_at_mn(world, resigned_info_to_mn(world, flow.m3, y=flip(y, 45))),
        cor.ForeignAgentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_mn_does_not_know_the_cn(world: World, flow: Flow) -> None:
    """An MN whose TC does not know the CN refuses (4); one that knows another key for the
    CN ID than the HA vouched for refuses too (4)."""
    refused(
        lambda: cor.open_correspondent_info_at_mn(
            world.mn, flow.m3, world.fa.public, world.ha.public, lambda _: None
        ),
        cor.UnknownCorrespondent,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )
    refused(
        lambda: cor.open_correspondent_info_at_mn(
            world.mn, flow.m3, world.fa.public, world.ha.public, lambda _: world.stranger.public
        ),
        cor.CorrespondentAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_info_for_another_mn(world: World, flow: Flow) -> None:
    """Form 1 addressed to another home address is refused (7)."""
    other = dataclasses.replace(world.mn, address=IP("10.1.0.6"))
    refused(
        lambda: cor.open_correspondent_info_at_mn(
            other, flow.m3, world.fa.public, world.ha.public, world.cn_keys
        ),
        cor.SessionMismatch,
        MvpnError.OTHER,
    )


def test_mn_supporting_nothing_in_common(world: World, flow: Flow) -> None:
    """An MN whose algorithms share nothing with the CN and FA refuses to answer (7)."""
    f = run(world, cn_flags=AES_ONLY)
    refused(
        lambda: cor.build_correspondent_response(world.mn, f.offer, CHACHA_ONLY, world.random),
        cor.UnsupportedAlgorithms,
        MvpnError.OTHER,
    )


# --- refusals at the CN --------------------------------------------------------------------


def reply_with(flow: Flow, l_blob: bytes, key: bytes | None = None) -> bytes:
    """A Communication Reply carrying ``l_blob``, authenticated with ``key`` (the session's
    data authentication key by default)."""
    covered = CommunicationReply.authenticated_part_for(SPI, flow.pending.cn_nonce, l_blob)
    tag = hmac_sha256_128(key or flow.data_auth_key, CommunicationReply.MAC_LABEL + covered)
    return CommunicationReply(SPI, flow.pending.cn_nonce, l_blob, tag).encode()


def test_bad_communication_reply_mac(world: World, flow: Flow) -> None:
    """A Communication Reply whose authenticator is wrong is refused with 1."""
    refused(
        lambda: cor.open_communication_reply(
            world.cn, flow.pending, flip(flow.m5, len(flow.m5) - 1), world.mn.public
        ),
        cor.ReplyAuthenticationFailed,
        MvpnError.AUTHENTICATION_KEY_NOT_VALID,
    )
    l_blob = CommunicationReply.decode(flow.m5).l
    refused(
        lambda: cor.open_communication_reply(
            world.cn, flow.pending, reply_with(flow, l_blob, bytes(32)), world.mn.public
        ),
        cor.ReplyAuthenticationFailed,
        MvpnError.AUTHENTICATION_KEY_NOT_VALID,
    )


def test_tampered_l(world: World, flow: Flow) -> None:
    """An L changed on the way (with a valid authenticator around it) does not open (4)."""
    l_blob = CommunicationReply.decode(flow.m5).l
    refused(
        lambda: cor.open_communication_reply(
            world.cn, flow.pending, reply_with(flow, flip(l_blob, 60)), world.mn.public
        ),
        cor.MobileNodeAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_l_signed_by_another_mn(world: World, flow: Flow) -> None:
    """An L that opens but is not signed by the MN the CN looked up is refused (4)."""
    refused(
        lambda: cor.open_communication_reply(
            world.cn, flow.pending, flow.m5, world.stranger.public
        ),
        cor.MobileNodeAuthenticationFailed,
        MvpnError.PUBLIC_KEY_NOT_VALID,
    )


def test_reply_to_another_request(world: World, flow: Flow) -> None:
    """A Communication Reply for another CN Nonce is refused (7)."""
    other = dataclasses.replace(flow.pending, cn_nonce=flow.pending.cn_nonce ^ 1)
    refused(
        lambda: cor.open_communication_reply(world.cn, other, flow.m5, world.mn.public),
        cor.SessionMismatch,
        MvpnError.OTHER,
    )


def test_mn_choosing_what_the_cn_did_not_offer(world: World, flow: Flow) -> None:
    """An L naming ChaCha20-Poly1305 for a CN that offered only AES-256-GCM is refused (7)."""
    f = run(world, cn_flags=AES_ONLY)
    l_prime = CorrespondentResponseForCN.decode(
        open_sealed(
            world.cn.keys,
            world.cn.node_id,
            CorrespondentResponseForCN.LABEL,
            CommunicationReply.decode(f.m5).l,
        )[:-64]
    )
    changed = dataclasses.replace(l_prime, encr_sec_par=EncrSecPar.CHACHA20_POLY1305, raw=None)
    l_blob = sign_then_seal(
        world.mn.keys, world.cn.public, world.cn.node_id, changed.LABEL, changed.encode()
    )
    refused(
        lambda: cor.open_communication_reply(
            world.cn, f.pending, reply_with(f, l_blob), world.mn.public
        ),
        cor.UnsupportedAlgorithms,
        MvpnError.OTHER,
    )


# --- key transfer (7.6) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_fa_keys(world: World) -> RegistrationKeys:
    return RegistrationKeys.generate(SeededRandom("new fa"), 0x202, NOW, 300)


def test_key_transfer_round_trip(world: World, flow: Flow, new_fa_keys: RegistrationKeys) -> None:
    """The new FA gets SPI, CN and data authentication key of every session, and the MN
    reads the FA's acknowledgement."""
    second = run(world).mn_session
    data = cor.build_key_transfer(
        world.mn.address, new_fa_keys, [flow.mn_session, second], world.random
    )
    opened = cor.open_key_transfer(data, new_fa_keys)
    assert opened.mn_addr == world.mn.address and opened.spi == new_fa_keys.spi
    assert opened.sessions == (flow.mn_session.transferred(), second.transferred())
    keys = opened.agent_keys()
    assert keys[0].data_auth_key == flow.mn_session.data_auth_key
    assert keys[1].data_auth_key == second.data_auth_key
    ack = cor.build_key_transfer_ack(world.mn.address, new_fa_keys, len(keys))
    assert cor.open_key_transfer_ack(ack, new_fa_keys) == 2
    for secret in (flow.mn_session.data_keys.mn_to_cn, flow.mn_session.data_keys.cn_to_mn):
        assert secret not in data


def test_key_transfer_tampered(world: World, flow: Flow, new_fa_keys: RegistrationKeys) -> None:
    """A changed sealed bit, a changed clear MN ADDR (additional data), another SA or the
    wrong Ses Key: 2 (session key not valid)."""
    data = cor.build_key_transfer(world.mn.address, new_fa_keys, [flow.mn_session], world.random)
    message = KeyTransfer.decode(data)
    moved = dataclasses.replace(message, mn_addr=IP("10.1.0.9"), raw=None).encode()
    other_sa = RegistrationKeys.generate(SeededRandom("other"), 0x303, NOW, 300)
    wrong_key = dataclasses.replace(other_sa, spi=new_fa_keys.spi)
    for bad, keys in (
        (flip(data, len(data) - 5), new_fa_keys),
        (moved, new_fa_keys),
        (data, other_sa),
        (data, wrong_key),
    ):
        refused(
            lambda b=bad, k=keys: cor.open_key_transfer(b, k),  # type: ignore[misc]
            cor.KeyTransferFailed,
            MvpnError.SESSION_KEY_NOT_VALID,
        )


def test_key_transfer_ack_tampered(world: World, new_fa_keys: RegistrationKeys) -> None:
    """An acknowledgement with a changed count or under the wrong Auth Key is refused (1)."""
    ack = cor.build_key_transfer_ack(world.mn.address, new_fa_keys, 1)
    other = RegistrationKeys.generate(SeededRandom("other"), new_fa_keys.spi, NOW, 300)
    for bad, keys in ((flip(ack, 12), new_fa_keys), (ack, other)):
        refused(
            lambda b=bad, k=keys: cor.open_key_transfer_ack(b, k),  # type: ignore[misc]
            cor.ReplyAuthenticationFailed,
            MvpnError.AUTHENTICATION_KEY_NOT_VALID,
        )


# --- error messages (7.7) ---------------------------------------------------------------------


def test_error_for_a_refusal(world: World, flow: Flow) -> None:
    """A refusal becomes an Error message with its code, the reference and its reason."""
    with pytest.raises(cor.CorrespondentError) as info:
        cor.open_correspondent_info_at_fa(world.fa, flow.m2, world.ha.public, bytes(32))
    message = decode_control(cor.error_for(info.value, SPI))
    assert isinstance(message, ErrorMessage)
    assert message.code is MvpnError.AUTHENTICATION_KEY_NOT_VALID
    assert message.reference == SPI
    assert message.reason == info.value.reason


def test_build_error_cuts_long_reasons() -> None:
    """A reason longer than 200 UTF-8 bytes is cut without splitting a character, and the
    reference keeps its low 32 bits."""
    message = ErrorMessage.decode(cor.build_error(MvpnError.OTHER, 0x1_0000_0007, "é" * 150))
    assert message.reason == "é" * 100
    assert message.reference == 7
