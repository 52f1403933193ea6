"""Every registration message built and opened in memory (docs/protocol.md 5 and 6).

The four first-contact messages MN -> FA -> HA -> FA -> MN, then a re-registration and a key
refresh, with keys made at test time from a seeded random source; then every tamper, forgery,
replay and wrong-key case, each of which must raise the right typed error with the right code.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

import pytest

from mvpn.core import messages as msg
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.wire.codes import ReplyCode
from mvpn.wire.extensions import extension_type
from mvpn.wire.registration import RegistrationReply, RegistrationRequest

IP = ipaddress.IPv4Address
HOME = IP("10.1.0.5")
HA_ADDR = IP("10.1.0.1")
FA_ADDR = IP("192.0.2.1")
NOW = 1_800_000_000.0
IDENT = 0x1122334455667788


@dataclass
class World:
    """Three nodes' keys and identities, made from one seed."""

    mn: msg.MobileCredentials
    fa: msg.AgentIdentity
    ha: msg.AgentIdentity
    random: SeededRandom
    stranger: PrivateKeys


@pytest.fixture
def world() -> World:
    random = SeededRandom("messages")
    ha = msg.AgentIdentity(0x4801, PrivateKeys.generate(random), HA_ADDR)
    fa = msg.AgentIdentity(0x4602, PrivateKeys.generate(random), FA_ADDR)
    mn = msg.MobileCredentials(
        user_id=0x0000AABBCCDD,
        dvc_mac_id=0x0102030405060708,
        sc_id=0x99,
        keys=PrivateKeys.generate(random),
        home_address=HOME,
        ha_address=HA_ADDR,
        ha_id=ha.node_id,
        ha_public=ha.public,
    )
    return World(mn, fa, ha, random, PrivateKeys.generate(random))


@dataclass
class Flow:
    """The intermediate values of one first contact."""

    m1: bytes
    secrets: msg.FirstContactSecrets
    pending: msg.FirstContactRequest
    m2: bytes
    opened_at_ha: msg.OpenedFirstContact
    keys: RegistrationKeys
    m3: bytes
    opened_at_fa: msg.HomeInfoOpened
    m4: bytes


FA_NONCE = 0xCAFEF00D


def mn_keys_for(w: World) -> dict[int, PublicKeys]:
    return {w.mn.user_id: w.mn.keys.public}


def first_contact(w: World, code: ReplyCode = ReplyCode.ACCEPTED) -> Flow:
    """Run MN -> FA -> HA -> FA and return every message."""
    m1, secrets = msg.build_first_contact(w.mn, FA_ADDR, 300, IDENT, 7, w.random)
    pending = msg.parse_first_contact(m1)
    m2 = msg.relay_first_contact(w.fa, pending, w.ha.public, pending.ha_id, FA_NONCE)
    relayed = msg.parse_relayed_first_contact(m2)
    opened = msg.open_relayed_first_contact(w.ha, relayed, w.fa.public, mn_keys_for(w).get)
    keys = RegistrationKeys.generate(w.random, 1000, NOW, 300.0)
    m3 = msg.build_home_info_reply(
        w.ha,
        opened.request,
        code,
        300 if code == ReplyCode.ACCEPTED else 0,
        IDENT,
        opened.fa_id,
        w.fa.public,
        opened.foreign_info.fa_nonce,
        opened.mobile_info.mn_nonce,
        keys if code == ReplyCode.ACCEPTED else None,
        (opened.user_id, opened.mn_public, opened.mobile_info.mn_auth_key),
    )
    at_fa = msg.open_home_info(w.fa, w.ha.public, m3, pending, FA_NONCE)
    m4 = msg.build_mobile_reply(w.fa, at_fa)
    return Flow(m1, secrets, pending, m2, opened, keys, m3, at_fa, m4)


def test_first_contact_four_messages(world: World) -> None:
    """The MN registers through the FA: every hop verifies and the MN and FA end with the keys
    the HA generated, and the FA with the HA's view of the MN's nonce and address."""
    flow = first_contact(world)
    assert flow.pending.adv_sequence == 7
    assert flow.opened_at_ha.foreign_info.fa_addr == FA_ADDR
    assert flow.opened_at_ha.foreign_info.fa_nonce == FA_NONCE
    assert flow.opened_at_ha.mobile_info.mn_nonce == flow.secrets.mn_nonce
    assert flow.opened_at_ha.mobile_info.mn_auth_key == flow.secrets.mn_auth_key
    assert flow.opened_at_ha.request.home_address == HOME
    # The FA authenticates the MN's original request with the key from Q.
    q = flow.opened_at_fa.home_info
    msg.check_original_request(flow.pending.data, q.mn_auth_key)
    assert q.ses_key == flow.keys.ses_key and q.spi == 1000
    outcome = msg.open_first_contact_reply(world.mn, flow.secrets, flow.m4, NOW + 1)
    assert outcome.accepted and outcome.code == ReplyCode.ACCEPTED
    assert outcome.lifetime == 300
    assert outcome.fa_id == world.fa.node_id and outcome.fa_public == world.fa.public
    assert outcome.keys is not None
    assert outcome.keys.spi == 1000
    assert outcome.keys.auth_key == flow.keys.auth_key
    assert outcome.keys.ses_key == flow.keys.ses_key
    assert outcome.keys.created_at == NOW + 1
    # Exactly header | 39 | 33 reaches the MN, header | 36 | 37 the HA.
    reply = RegistrationReply.decode(flow.m4)
    assert [extension_type(e) for e in reply.extensions] == [39, 33]
    request = RegistrationRequest.decode(flow.m2)
    assert [extension_type(e) for e in request.extensions] == [36, 37]


def test_reregistration_and_key_refresh(world: World) -> None:
    """A re-registration goes MN -> FA -> HA -> FA -> MN with symmetric keys only, and a key
    refresh hands both the FA and the MN the same new SA."""
    flow = first_contact(world)
    keys = flow.keys
    ident2 = IDENT + 10
    r1 = msg.build_reregistration(world.mn, keys, FA_ADDR, 300, ident2)
    kind, _ = msg.classify_request(r1)
    assert kind is msg.RequestKind.AUTHENTICATED
    msg.check_mn_authenticator(r1, keys)
    r2 = msg.add_fa_ha_authenticator(r1, keys)
    parsed = msg.parse_reregistration(r2)
    assert parsed.spi == keys.spi and parsed.fa_auth is not None
    msg.check_reregistration(parsed, keys)
    new = RegistrationKeys.generate(world.random, 1001, NOW + 100, 300.0)
    r3 = msg.build_reregistration_reply(
        world.ha, parsed.request, ReplyCode.ACCEPTED, 300, ident2, keys, world.random, new
    )
    r4, reply, at_fa = msg.open_reregistration_reply_at_fa(r3, keys, NOW + 100)
    assert reply.accepted and at_fa is not None
    assert (at_fa.spi, at_fa.ses_key, at_fa.auth_key) == (1001, new.ses_key, new.auth_key)
    outcome = msg.open_reregistration_reply(world.mn, keys, ident2, r4, NOW + 100)
    assert outcome.accepted and outcome.refreshed
    assert outcome.keys is not None
    assert (outcome.keys.spi, outcome.keys.auth_key) == (1001, new.auth_key)
    # Without a refresh the SA stays.
    r3b = msg.build_reregistration_reply(
        world.ha, parsed.request, ReplyCode.ACCEPTED, 300, ident2, keys, world.random
    )
    r4b, _, none = msg.open_reregistration_reply_at_fa(r3b, keys, NOW)
    assert none is None
    plain = msg.open_reregistration_reply(world.mn, keys, ident2, r4b, NOW)
    assert plain.keys is keys and not plain.refreshed
    # The next re-registration under the refreshed SA verifies at the HA.
    r5 = msg.add_fa_ha_authenticator(
        msg.build_reregistration(world.mn, at_fa, FA_ADDR, 300, ident2 + 1), at_fa
    )
    msg.check_reregistration(msg.parse_reregistration(r5), at_fa)


def test_public_key_operation_table() -> None:
    """The symmetric functions are absent from the public-key table (they perform none)."""
    symmetric = {
        "build_reregistration",
        "check_mn_authenticator",
        "add_fa_ha_authenticator",
        "check_reregistration",
        "build_reregistration_reply",
        "open_reregistration_reply_at_fa",
        "open_reregistration_reply",
    }
    assert not symmetric & set(msg.PK_OPERATIONS)
    assert msg.PK_OPERATIONS["open_relayed_first_contact"] == 4


def test_plain_rfc5944_round_trip(world: World) -> None:
    """A plain node's request (HMAC-MD5, shared key) verifies at the HA and its reply at the
    node; the wrong key fails with code 131 / 68."""
    key = b"k" * 16
    data = msg.build_plain_request(HOME, HA_ADDR, FA_ADDR, 600, IDENT, 0x1234, key)
    # The FA cannot tell it from a re-registration by its bytes: only its visitor list can.
    kind, _ = msg.classify_request(data)
    assert kind is msg.RequestKind.AUTHENTICATED
    assert msg.classify_request(data[:24])[0] is msg.RequestKind.PLAIN
    parsed = msg.parse_reregistration(data)
    assert parsed.fa_auth is None
    msg.check_plain_request(parsed, 0x1234, key)
    with pytest.raises(msg.MobileNodeAuthenticationFailed) as e:
        msg.check_plain_request(parsed, 0x1234, b"x" * 16)
    assert e.value.code == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    with pytest.raises(msg.UnknownSecurityAssociation):
        msg.check_plain_request(parsed, 0x9999, key)
    reply = msg.build_plain_reply(
        world.ha, parsed.request, ReplyCode.ACCEPTED, 600, IDENT, 0x1234, key
    )
    outcome = msg.open_plain_reply(HOME, IDENT, 0x1234, key, reply)
    assert outcome.accepted and outcome.lifetime == 600
    with pytest.raises(msg.HomeAgentAuthenticationFailed):
        msg.open_plain_reply(HOME, IDENT, 0x1234, b"y" * 16, reply)


def test_from_smart_card_requires_an_address() -> None:
    """from_smart_card takes the home address from the MN certificate and refuses none."""

    class Cert:
        def __init__(self, address: IP | None, node_id: int, public: PublicKeys) -> None:
            self.address = address
            self.node_id = node_id
            self.public_keys = public

    random = SeededRandom(3)
    keys = PrivateKeys.generate(random)
    ha_keys = PrivateKeys.generate(random)

    @dataclass
    class Card:
        user_id: int
        dvc_mac_id: int
        sc_id: int
        keys: PrivateKeys
        certificate: Cert
        home_agent: Cert
        home_agent_address: IP

    card = Card(5, 6, 7, keys, Cert(HOME, 5, keys.public), Cert(None, 9, ha_keys.public), HA_ADDR)
    creds = msg.MobileCredentials.from_smart_card(card)  # type: ignore[arg-type]
    assert (creds.home_address, creds.ha_id, creds.ha_public) == (HOME, 9, ha_keys.public)
    assert "user_id" in repr(creds) and "PrivateKeys" not in repr(creds)
    bad = dataclasses.replace(card, certificate=Cert(None, 5, keys.public))
    with pytest.raises(ValueError):
        msg.MobileCredentials.from_smart_card(bad)  # type: ignore[arg-type]


# --- failure paths ------------------------------------------------------------------------


def flip(data: bytes, offset: int) -> bytes:
    """``data`` with one bit flipped at ``offset`` (negative counts from the end)."""
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


def test_fa_refuses_malformed_first_contacts(world: World) -> None:
    """Garbage, a truncated request, a missing 32 and a reordered request are 70 at the FA."""
    m1, _ = msg.build_first_contact(world.mn, FA_ADDR, 300, IDENT, 7, world.random)
    for data in (b"", b"\x01\x00", m1[:-5], m1[:24]):
        with pytest.raises(msg.MalformedRequest) as e:
            msg.parse_first_contact(data)
        assert e.value.code == ReplyCode.FA_POORLY_FORMED_REQUEST
    # An unsupported suite in 36 (Sub-Type 2) is refused with 70 as well.
    with pytest.raises(msg.UnsupportedSuite) as e2:
        msg.parse_first_contact(m1[:25] + b"\x02" + m1[26:])
    assert e2.value.code == ReplyCode.FA_POORLY_FORMED_REQUEST
    # Lifetime 0 cannot be a first contact.
    with pytest.raises(msg.MalformedRequest):
        msg.parse_first_contact(m1[:2] + b"\x00\x00" + m1[4:])


def test_fa_detects_forged_mn_authenticator(world: World) -> None:
    """An MN-HA authenticator that does not verify with the MN Auth Key from Q is 67."""
    flow = first_contact(world)
    q = flow.opened_at_fa.home_info
    with pytest.raises(msg.MobileNodeAuthenticationFailed) as e:
        msg.check_original_request(flip(flow.pending.data, -1), q.mn_auth_key)
    assert e.value.code == ReplyCode.FA_MN_FAILED_AUTHENTICATION
    with pytest.raises(msg.MobileNodeAuthenticationFailed):
        msg.check_original_request(flow.pending.data, b"\x00" * 32)


def test_ha_refuses_tampered_relays(world: World) -> None:
    """At the HA: a flipped bit in the header, in 36 or in 37 fails with 131 or 132; an
    unknown FA key with 132; an unknown MN with 131; another HA's request with 136."""
    flow = first_contact(world)
    m2 = flow.m2
    mn_for = mn_keys_for(world).get

    def open_(data: bytes, fa_public: PublicKeys = world.fa.public) -> None:
        msg.open_relayed_first_contact(
            world.ha, msg.parse_relayed_first_contact(data), fa_public, mn_for
        )

    ext37_at = RegistrationRequest.decode(m2).extensions[1].offset
    assert ext37_at is not None
    # The care-of address (covered by both signatures): the FA signature fails first.
    with pytest.raises(msg.ForeignAgentAuthenticationFailed) as e:
        open_(flip(m2, 14))
    assert e.value.code == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    with pytest.raises(msg.ForeignAgentAuthenticationFailed):
        open_(flip(m2, -1))  # FA signature
    with pytest.raises(msg.ForeignAgentAuthenticationFailed):
        open_(m2, world.stranger.public)  # the wrong FA key
    # An FA that re-signs a changed header: the MN signature catches it.
    pending = msg.parse_first_contact(flip(flow.m1, 14))
    forged = msg.relay_first_contact(world.fa, pending, world.ha.public, world.ha.node_id, 1)
    with pytest.raises(msg.MobileNodeAuthenticationFailed) as e2:
        open_(forged)
    assert e2.value.code == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    # An MN the HA does not know.
    no_keys: dict[int, PublicKeys] = {}
    with pytest.raises(msg.UnknownMobileNode) as e3:
        msg.open_relayed_first_contact(
            world.ha, msg.parse_relayed_first_contact(m2), world.fa.public, no_keys.get
        )
    assert e3.value.code == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    # An MN signing with the wrong key.
    with pytest.raises(msg.MobileNodeAuthenticationFailed):
        msg.open_relayed_first_contact(
            world.ha,
            msg.parse_relayed_first_contact(m2),
            world.fa.public,
            {world.mn.user_id: world.stranger.public}.get,
        )
    # A request for another HA.
    other = msg.AgentIdentity(0x4899, world.stranger, HA_ADDR)
    with pytest.raises(msg.WrongHomeAgent) as e4:
        msg.open_relayed_first_contact(
            other, msg.parse_relayed_first_contact(m2), world.fa.public, mn_for
        )
    assert e4.value.code == ReplyCode.HA_UNKNOWN_HOME_AGENT
    # A request without 37, or with extensions in the wrong order.
    with pytest.raises(msg.MalformedRequest) as e5:
        msg.parse_relayed_first_contact(m2[:ext37_at])
    assert e5.value.code == ReplyCode.HA_POORLY_FORMED_REQUEST


def test_ha_detects_nonce_copy_mismatch(world: World) -> None:
    """A clear MN Nonce that differs from the sealed one is refused even when the MN signed
    it (a buggy or hostile MN), with 131."""
    m1, secrets = msg.build_first_contact(world.mn, FA_ADDR, 300, IDENT, 7, world.random)
    request = RegistrationRequest.decode(m1)
    ext36 = request.extensions[0]
    assert isinstance(ext36, msg.MobileInfoExtension)
    wrong_nonce = ext36.mn_nonce ^ 1
    p = request.encode_fixed()
    e = msg.MobileInfoExtension.signed_part_for(wrong_nonce, ext36.ha_id, 0, ext36.sealed)
    from mvpn.crypto.suite import sign

    sig = sign(world.mn.keys, "mobile-info", p, e)
    forged36 = dataclasses.replace(ext36, mn_nonce=wrong_nonce, signature=sig, raw=None)
    forged = dataclasses.replace(request, extensions=(forged36, request.extensions[1]), raw=None)
    pending = msg.parse_first_contact(forged.encode())
    m2 = msg.relay_first_contact(world.fa, pending, world.ha.public, world.ha.node_id, 1)
    with pytest.raises(msg.NonceMismatch) as err:
        msg.open_relayed_first_contact(
            world.ha, msg.parse_relayed_first_contact(m2), world.fa.public, mn_keys_for(world).get
        )
    assert err.value.code == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    assert secrets.mn_nonce == ext36.mn_nonce


def test_fa_refuses_forged_home_info(world: World) -> None:
    """At the FA: a flipped bit in the reply, a reply for another FA nonce, another pending
    request or signed by another key fails with 68; a reply without 38 is 71."""
    flow = first_contact(world)
    m3, pending = flow.m3, flow.pending
    with pytest.raises(msg.HomeAgentAuthenticationFailed) as e:
        msg.open_home_info(world.fa, world.ha.public, flip(m3, -1), pending, FA_NONCE)
    assert e.value.code == ReplyCode.FA_HA_FAILED_AUTHENTICATION
    with pytest.raises(msg.HomeAgentAuthenticationFailed):
        msg.open_home_info(world.fa, world.stranger.public, m3, pending, FA_NONCE)
    with pytest.raises(msg.HomeAgentAuthenticationFailed):
        msg.open_home_info(world.fa, world.ha.public, flip(m3, 2), pending, FA_NONCE)  # lifetime
    with pytest.raises(msg.NonceMismatch) as e2:
        msg.open_home_info(world.fa, world.ha.public, m3, pending, FA_NONCE + 1)
    assert e2.value.code == ReplyCode.FA_HA_FAILED_AUTHENTICATION
    other, _ = msg.build_first_contact(world.mn, FA_ADDR, 300, IDENT + 1, 7, world.random)
    with pytest.raises(msg.NonceMismatch):
        msg.open_home_info(world.fa, world.ha.public, m3, msg.parse_first_contact(other), FA_NONCE)
    with pytest.raises(msg.MalformedReply) as e3:
        msg.open_home_info(world.fa, world.ha.public, m3[:20], pending, FA_NONCE)
    assert e3.value.code == ReplyCode.FA_POORLY_FORMED_REPLY
    assert msg.peek_fa_nonce(m3) == FA_NONCE
    assert msg.peek_fa_nonce(m3[:20]) is None


def test_mn_refuses_forged_replies(world: World) -> None:
    """At the MN: a flipped bit anywhere in the FA's reply, a reply to another request, or a
    reply whose T was signed by someone other than the FA named in W fails; a bare denial is
    UnauthenticatedReply carrying its code."""
    flow = first_contact(world)
    for offset in (2, 30, -40, -1):
        with pytest.raises(msg.RegistrationError):
            msg.open_first_contact_reply(world.mn, flow.secrets, flip(flow.m4, offset), NOW)
    other_secrets = dataclasses.replace(flow.secrets, mn_nonce=flow.secrets.mn_nonce ^ 1)
    with pytest.raises(msg.NonceMismatch):
        msg.open_first_contact_reply(world.mn, other_secrets, flow.m4, NOW)
    impostor = msg.AgentIdentity(world.fa.node_id, world.stranger, FA_ADDR)
    forged = msg.build_mobile_reply(impostor, flow.opened_at_fa)
    with pytest.raises(msg.HomeAgentAuthenticationFailed):
        msg.open_first_contact_reply(world.mn, flow.secrets, forged, NOW)
    bare = msg.build_bare_reply(flow.pending.request, ReplyCode.FA_REGISTRATION_TIMEOUT)
    with pytest.raises(msg.UnauthenticatedReply) as e:
        msg.open_first_contact_reply(world.mn, flow.secrets, bare, NOW)
    assert e.value.code == ReplyCode.FA_REGISTRATION_TIMEOUT


def test_authenticated_denials_reach_the_mn(world: World) -> None:
    """An HA denial (133) and an FA denial (67) after an HA acceptance are both signed and
    sealed to the MN: it learns the code and gets no keys."""
    flow = first_contact(world, ReplyCode.HA_IDENTIFICATION_MISMATCH)
    assert not flow.opened_at_fa.accepted
    assert flow.opened_at_fa.home_info.ses_key == b""
    assert flow.opened_at_fa.home_info.mn_auth_key == b""
    outcome = msg.open_first_contact_reply(world.mn, flow.secrets, flow.m4, NOW)
    assert outcome.code == ReplyCode.HA_IDENTIFICATION_MISMATCH and outcome.keys is None
    accepted = first_contact(world)
    denial = msg.build_mobile_reply(
        world.fa, accepted.opened_at_fa, ack=ReplyCode.FA_MN_FAILED_AUTHENTICATION
    )
    outcome2 = msg.open_first_contact_reply(world.mn, accepted.secrets, denial, NOW)
    assert outcome2.code == ReplyCode.FA_MN_FAILED_AUTHENTICATION
    assert outcome2.ha_result == ReplyCode.ACCEPTED and outcome2.keys is None
    assert extension_type(RegistrationReply.decode(denial).extensions[-1]) == 39


def test_home_info_without_mobile_is_bare_for_the_mn(world: World) -> None:
    """When the HA could not identify the MN (no W, no KuMN) the FA can only send a bare
    header, which the MN cannot authenticate."""
    flow = first_contact(world)
    m3 = msg.build_home_info_reply(
        world.ha,
        flow.opened_at_ha.request,
        ReplyCode.HA_MN_FAILED_AUTHENTICATION,
        0,
        IDENT,
        world.fa.node_id,
        world.fa.public,
        FA_NONCE,
        flow.secrets.mn_nonce,
    )
    opened = msg.open_home_info(world.fa, world.ha.public, m3, flow.pending, FA_NONCE)
    assert opened.extension.home_to_mobile is None
    m4 = msg.build_mobile_reply(world.fa, opened)
    assert len(m4) == 20
    with pytest.raises(msg.UnauthenticatedReply):
        msg.open_first_contact_reply(world.mn, flow.secrets, m4, NOW)
    with pytest.raises(ValueError):
        msg.build_home_info_reply(
            world.ha,
            flow.opened_at_ha.request,
            ReplyCode.ACCEPTED,
            300,
            IDENT,
            world.fa.node_id,
            world.fa.public,
            FA_NONCE,
            flow.secrets.mn_nonce,
        )


def test_reregistration_failures(world: World) -> None:
    """Re-registration: a forged MN authenticator is 67 at the FA and 131 at the HA; a missing
    or forged FA-HA authenticator is 132; another SA is refused; a forged reply is 68 at the
    FA and MN; a reply without authenticator cannot be trusted."""
    flow = first_contact(world)
    keys = flow.keys
    other = RegistrationKeys.generate(world.random, 2000, NOW, 300.0)
    r1 = msg.build_reregistration(world.mn, keys, FA_ADDR, 300, IDENT + 5)
    with pytest.raises(msg.MobileNodeAuthenticationFailed) as e:
        msg.check_mn_authenticator(flip(r1, -1), keys)
    assert e.value.code == ReplyCode.FA_MN_FAILED_AUTHENTICATION
    with pytest.raises(msg.MobileNodeAuthenticationFailed):
        msg.check_mn_authenticator(r1, dataclasses.replace(keys, auth_key=other.auth_key))
    with pytest.raises(msg.MobileNodeAuthenticationFailed):
        msg.check_mn_authenticator(r1, other)  # another SPI
    r2 = msg.add_fa_ha_authenticator(r1, keys)
    parsed = msg.parse_reregistration(r2)
    with pytest.raises(msg.ForeignAgentAuthenticationFailed) as e2:
        msg.check_reregistration(msg.parse_reregistration(flip(r2, -1)), keys)
    assert e2.value.code == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    with pytest.raises(msg.ForeignAgentAuthenticationFailed):
        msg.check_reregistration(msg.parse_reregistration(r1), keys)
    msg.check_reregistration(msg.parse_reregistration(r1), keys, require_fa_auth=False)
    with pytest.raises(msg.MobileNodeAuthenticationFailed) as e3:
        msg.check_reregistration(
            msg.parse_reregistration(msg.add_fa_ha_authenticator(flip(r1, 10), keys)), keys
        )
    assert e3.value.code == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    with pytest.raises(msg.UnknownSecurityAssociation):
        msg.check_reregistration(parsed, other)
    with pytest.raises(msg.MalformedRequest):
        msg.parse_reregistration(r1[:24])
    r3 = msg.build_reregistration_reply(
        world.ha, parsed.request, ReplyCode.ACCEPTED, 300, IDENT + 5, keys, world.random, other
    )
    with pytest.raises(msg.HomeAgentAuthenticationFailed) as e4:
        msg.open_reregistration_reply_at_fa(flip(r3, 2), keys, NOW)
    assert e4.value.code == ReplyCode.FA_HA_FAILED_AUTHENTICATION
    to_mn, _, _ = msg.open_reregistration_reply_at_fa(r3, keys, NOW)
    with pytest.raises(msg.HomeAgentAuthenticationFailed):
        msg.open_reregistration_reply(world.mn, keys, IDENT + 5, flip(to_mn, 30), NOW)
    with pytest.raises(msg.NonceMismatch):
        msg.open_reregistration_reply(world.mn, keys, IDENT + 6, to_mn, NOW)
    with pytest.raises(msg.UnauthenticatedReply):
        msg.open_reregistration_reply(world.mn, keys, IDENT + 5, to_mn[:20], NOW)
    with pytest.raises(msg.UnauthenticatedReply):
        msg.open_reregistration_reply_at_fa(to_mn[:20], keys, NOW)
    # The key refresh sealed under another Ses Key does not open (re-authenticated so that
    # only the seal is wrong).
    bad = msg.build_reregistration_reply(
        world.ha,
        parsed.request,
        ReplyCode.ACCEPTED,
        300,
        IDENT + 5,
        dataclasses.replace(keys, ses_key=other.ses_key),
        world.random,
        other,
    )
    with pytest.raises(msg.HomeAgentAuthenticationFailed):
        msg.open_reregistration_reply_at_fa(bad, keys, NOW)


def test_denial_replies_keep_identification_low_half(world: World) -> None:
    """A 133 denial whose high half is the HA's time still answers the request (RFC 5944
    5.7), an accepting reply must echo the whole Identification."""
    flow = first_contact(world)
    keys = flow.keys
    r1 = msg.build_reregistration(world.mn, keys, FA_ADDR, 300, IDENT)
    parsed = msg.parse_reregistration(msg.add_fa_ha_authenticator(r1, keys))
    ha_time = (0xDEADBEEF << 32) | (IDENT & 0xFFFFFFFF)
    denial = msg.build_reregistration_reply(
        world.ha,
        parsed.request,
        ReplyCode.HA_IDENTIFICATION_MISMATCH,
        0,
        ha_time,
        keys,
        world.random,
    )
    to_mn, _, _ = msg.open_reregistration_reply_at_fa(denial, keys, NOW)
    outcome = msg.open_reregistration_reply(world.mn, keys, IDENT, to_mn, NOW)
    assert outcome.code == ReplyCode.HA_IDENTIFICATION_MISMATCH
    assert outcome.identification == ha_time and outcome.keys is None
    wrong = msg.build_reregistration_reply(
        world.ha, parsed.request, ReplyCode.ACCEPTED, 300, ha_time, keys, world.random
    )
    to_mn2, _, _ = msg.open_reregistration_reply_at_fa(wrong, keys, NOW)
    with pytest.raises(msg.NonceMismatch):
        msg.open_reregistration_reply(world.mn, keys, IDENT, to_mn2, NOW)


def test_classify_and_bare_reply(world: World) -> None:
    """classify_request tells first contacts from authenticated and plain requests, and a
    bare reply copies the request's addresses and Identification."""
    m1, _ = msg.build_first_contact(world.mn, FA_ADDR, 300, IDENT, 1, world.random)
    kind, request = msg.classify_request(m1)
    assert kind is msg.RequestKind.FIRST_CONTACT and msg.is_first_contact(request)
    with pytest.raises(msg.MalformedRequest) as e:
        msg.classify_request(b"\x03" + bytes(19))
    assert e.value.code == ReplyCode.FA_POORLY_FORMED_REQUEST
    bare = RegistrationReply.decode(msg.build_bare_reply(request, 66))
    assert (bare.code, bare.home_address, bare.identification) == (66, HOME, IDENT)
    assert msg.peek_reply(msg.build_bare_reply(request, 66)).lifetime == 0
    assert "code=131" in repr(msg.MobileNodeAuthenticationFailed("x"))
