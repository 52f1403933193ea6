"""The foreign agent's session handling, in memory (docs/protocol.md 7.3-7.6, 9).

The real MN, FA and HA cores register the MN (:mod:`tests.core.world`); control datagrams
travel between HA and FA through their control handlers; the MN's and the CN's side of
the exchange are the pure functions of :mod:`mvpn.core.correspondent`. Then the data flow
goes through both agents' relays: they forward, they cannot read.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mvpn.core import correspondent as cor
from mvpn.core.dataplane import (
    BadTag,
    DataPlane,
    DataSession,
    Endpoint,
    NodeKind,
    Relay,
    UnknownSpi,
)
from mvpn.core.effects import Address, Channel, Effect, Send
from mvpn.core.fa import ForeignAgent
from mvpn.core.fa_sessions import EXPIRY_TIMER
from mvpn.core.ha import HomeAgent
from mvpn.core.messages import AgentIdentity
from mvpn.core.mn import MobileNode
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.wire.codes import AuthSecPar, EncrSecPar, MvpnError
from mvpn.wire.control import (
    CorrespondentInfoToMN,
    ErrorMessage,
    KeyTransferAck,
    decode_control,
)
from mvpn.wire.plain import TransferredSession
from tests.core.world import (
    CN_ADDR,
    CN_ID,
    FA2_ADDR,
    FA2_ID,
    FA_ADDR,
    FA_ID,
    HA_ADDR,
    HA_ID,
    HOME,
    MN_LINK,
    USER_ID,
    World,
    attach_control,
    cn_identity,
    full_world,
    keys,
    make_fa,
    mn_identity,
    pki,
    request_communication,
)

CONTROL = 4350
RANDOM = SeededRandom("fa-sessions")
OTHER_HOME = ipaddress.IPv4Address("10.0.0.77")


def ha_identity(private: PrivateKeys | None = None) -> AgentIdentity:
    """The test HA (or an impostor with its ID and other keys)."""
    return AgentIdentity(HA_ID, private or pki().ha_keys, HA_ADDR)


@dataclass
class Net:
    """The world, its cores and what reached the MN's and the CN's control ports."""

    world: World
    mn: MobileNode
    fa: ForeignAgent
    ha: HomeAgent
    at_mn: list[bytes]
    at_cn: list[bytes]
    at_ha: list[bytes]

    def errors(self, to: list[bytes]) -> list[ErrorMessage]:
        out = []
        for data in to:
            message = decode_control(data)
            if isinstance(message, ErrorMessage):
                out.append(message)
        return out

    def registration(self) -> RegistrationKeys:
        visitor = self.fa.visitor(HOME)
        assert visitor is not None and visitor.keys is not None
        return visitor.keys

    def to_fa(self, sender: str, data: bytes, fa: str = str(FA_ADDR)) -> None:
        self.world.call(sender, [Send(data, (fa, CONTROL), Channel.CONTROL)])


def net(ha_reaches_fa: bool = True, **fa_options: Any) -> Net:
    """The MN registered through the FA; FA (and HA) control handlers attached; MN and CN
    control ports recorded. With ``ha_reaches_fa`` false, the HA's messages are recorded
    instead of delivered (tests that hand the FA crafted ones)."""
    world, mn, fa, ha = full_world(**fa_options)
    assert mn.state == "registered"
    at_mn: list[bytes] = []
    at_cn: list[bytes] = []
    at_ha: list[bytes] = []

    def recorder(into: list[bytes]) -> Callable[[bytes, Address, float], list[Effect]]:
        def record(data: bytes, source: Address, now: float) -> list[Effect]:
            into.append(data)
            return []

        return record

    attach_control(world, "fa", fa)
    if ha_reaches_fa:
        attach_control(world, "ha", ha)
    else:
        world.add_control("ha-control", str(HA_ADDR), recorder(at_ha))
    world.add_control("mn-control", MN_LINK[0], recorder(at_mn))
    world.add_control("cn", str(CN_ADDR), recorder(at_cn))
    world.addresses["cn"] = (str(CN_ADDR), CONTROL)
    world.addresses["ha-direct"] = (str(HA_ADDR), CONTROL)
    return Net(world, mn, fa, ha, at_mn, at_cn, at_ha)


def cn_key(cn_id: int) -> PublicKeys | None:
    return pki().cn_keys.public if cn_id == CN_ID else None


@dataclass
class Established:
    """One whole set-up through the real agents."""

    pending: cor.CnPending
    offer: cor.MnSessionOffer
    response: bytes
    mn_session: cor.MnSession
    cn_session: cor.CnSession


def offer_at_mn(n: Net, data: bytes, fa_public: PublicKeys | None = None) -> cor.MnSessionOffer:
    return cor.open_correspondent_info_at_mn(
        mn_identity(), data, fa_public or pki().fa_keys.public, pki().ha_keys.public, cn_key
    )


def establish(n: Net, fa: str = str(FA_ADDR)) -> Established:
    """CN -> HA -> FA -> MN -> FA -> CN with the real HA and FA."""
    request, pending = request_communication(n.world)
    n.world.call("cn", [Send(request, (str(HA_ADDR), CONTROL), Channel.CONTROL)])
    fa_public = pki().fa_keys.public if fa == str(FA_ADDR) else pki().fa2_keys.public
    offer = offer_at_mn(n, n.at_mn[-1], fa_public)
    response, mn_session = cor.build_correspondent_response(
        mn_identity(), offer, LOCAL_FLAGS, RANDOM
    )
    n.to_fa("mn", response, fa)
    cn_session = cor.open_communication_reply(
        cn_identity(), pending, n.at_cn[-1], pki().mn_keys.public
    )
    return Established(pending, offer, response, mn_session, cn_session)


def endpoints(e: Established, now: float) -> tuple[Endpoint, Endpoint]:
    """The MN's and the CN's data endpoints of an established session."""
    mn_plane, cn_plane = DataPlane(NodeKind.MN), DataPlane(NodeKind.CN)
    s, c = e.mn_session, e.cn_session
    mn_plane.install(
        DataSession.for_mn(
            s.spi,
            s.data_auth_key,
            s.encr_sec_par,
            s.data_keys.mn_to_cn,
            s.data_keys.cn_to_mn,
            now,
        )
    )
    cn_plane.install(
        DataSession.for_cn(
            c.spi,
            c.data_auth_key,
            c.encr_sec_par,
            c.data_keys.mn_to_cn,
            c.data_keys.cn_to_mn,
            now,
        )
    )
    return Endpoint(mn_plane), Endpoint(cn_plane)


# --- the whole set-up through the agents ----------------------------------------------------


def test_session_is_set_up_through_ha_and_fa() -> None:
    """The five messages through the real HA and FA: the MN and the CN end with the same
    session, the FA installs a relay session (no cipher) and reports "session-relayed"."""
    n = net()
    e = establish(n)
    spi = e.cn_session.spi
    assert e.mn_session.spi == spi and e.mn_session.data_keys == e.cn_session.data_keys
    session = n.fa.dataplane.get(spi)
    assert session is not None
    assert session.mn_addr == HOME and session.cn_addr == CN_ADDR
    assert session.send is None and session.receive is None
    [event] = [ev for name, ev in n.world.events if name == "fa" and ev.name == "session-relayed"]
    assert event.fields["spi"] == spi
    assert event.fields["home_address"] == str(HOME) and event.fields["cn"] == str(CN_ADDR)
    assert n.fa.status(n.world.now)["sessions"] == 1
    assert n.fa.sessions.pending_count() == 0
    assert ("fa", EXPIRY_TIMER) in n.world.timers
    # Ku_HA came from the first contact's lookup, Ku_MN from Q: no new lookup at the FA.
    assert n.world.lookups.count(("fa", HA_ID)) == 1
    assert n.fa.counters.get("sessions.refused") == 0


def test_agents_forward_both_ways_but_cannot_read() -> None:
    """CN -> HA -> FA -> MN and back: both relays forward (Hop + 1, new hop tag), the MN
    and the CN open; the agents hold no cipher and the inner bytes never appear in clear."""
    n = net()
    e = establish(n)
    now = n.world.now
    mn, cn = endpoints(e, now)
    ha_relay, fa_relay = Relay(n.ha.dataplane), Relay(n.fa.dataplane)
    secret = b"a secret only the MN and the CN may read"
    packet = cn.seal(e.cn_session.spi, secret)
    at_fa = ha_relay.forward(packet, from_mn=False)
    at_mn = fa_relay.forward(at_fa, from_mn=False)
    assert secret not in packet + at_fa + at_mn
    assert mn.open(at_mn) == secret
    back = mn.seal(e.mn_session.spi, b"pong")
    assert cn.open(ha_relay.forward(fa_relay.forward(back, from_mn=True), from_mn=True)) == b"pong"
    for plane in (n.ha.dataplane, n.fa.dataplane):
        [session] = list(plane)
        assert session.send is None and session.receive is None
        with pytest.raises(ValueError):
            Endpoint(plane)
    fresh = ha_relay.forward(cn.seal(e.cn_session.spi, secret), from_mn=False)
    forged = fresh[:-1] + bytes([fresh[-1] ^ 1])
    with pytest.raises(BadTag):
        fa_relay.forward(forged, from_mn=False)


# --- Correspondent Information refusals -----------------------------------------------------


def crafted_info(
    n: Net,
    registration_auth_key: bytes | None = None,
    ha: AgentIdentity | None = None,
    mn_address: ipaddress.IPv4Address = HOME,
    spi: int = 0x7001,
    sec_par: int | None = None,
) -> bytes:
    """A Correspondent Information form 0 built outside the HA (to test the FA alone)."""
    request, _ = request_communication(n.world, mn_address=mn_address)
    opened = cor.open_request_communication(
        ha_identity(), request, lambda i: cn_key(i), n.world.now
    )
    if sec_par is not None:
        opened = dataclasses.replace(opened, v=dataclasses.replace(opened.v, sec_par=sec_par))
    return cor.build_correspondent_info(
        ha or ha_identity(),
        opened,
        spi,
        cor.new_data_auth_key(RANDOM),
        USER_ID,
        pki().mn_keys.public,
        FA_ID,
        pki().fa_keys.public,
        registration_auth_key if registration_auth_key is not None else n.registration().auth_key,
    )


def test_crafted_info_with_the_right_keys_is_offered() -> None:
    """The crafted message of these tests is accepted when nothing is wrong with it: the
    offer goes to the MN's link address and is pending under its SPI."""
    n = net(ha_reaches_fa=False)
    n.to_fa("ha-direct", crafted_info(n))
    [offer] = n.at_mn
    assert CorrespondentInfoToMN.decode(offer).spi == 0x7001
    assert n.fa.sessions.pending_count() == 1 and n.at_ha == []


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong-hello", MvpnError.AUTHENTICATION_KEY_NOT_VALID),
        ("forged-ha", MvpnError.PUBLIC_KEY_NOT_VALID),
        ("not-a-visitor", MvpnError.OTHER),
        ("broken-algorithms", MvpnError.OTHER),
        ("garbage", MvpnError.OTHER),
    ],
)
def test_refused_info_sends_an_error_to_the_ha(case: str, code: MvpnError) -> None:
    """A wrong Hello value (error 1), a forged HA signature (4), an MN that is not a
    visitor here (7), a CN offer with nothing the FA supports (7) and garbage (7) are each
    refused with an Error to the HA; nothing is pending, nothing is installed, nothing goes
    to the MN."""
    n = net(ha_reaches_fa=False)
    data = {
        "wrong-hello": lambda: crafted_info(n, registration_auth_key=bytes(32)),
        "forged-ha": lambda: crafted_info(n, ha=ha_identity(keys("impostor"))),
        "not-a-visitor": lambda: crafted_info(n, mn_address=OTHER_HOME),
        "broken-algorithms": lambda: crafted_info(n, sec_par=0x0101),
        "garbage": lambda: b"\x02\x00\x00\x06ab",
    }[case]()
    n.to_fa("ha-direct", data)
    [error] = n.errors(n.at_ha)
    assert error.code == code
    assert error.reference == (0 if case == "garbage" else 0x7001)
    assert n.at_mn == []
    assert n.fa.sessions.pending_count() == 0 and len(n.fa.dataplane) == 0
    assert n.fa.counters.get(f"sessions.refused.{int(code)}") == 1
    assert any("refused a Correspondent Information" in w for w in n.world.warnings("fa"))


def test_info_from_another_ha_is_refused_without_a_lookup() -> None:
    """A clear HA ID that is not the visitor's home agent is refused (7) before any key
    lookup."""
    n = net(ha_reaches_fa=False)
    lookups = len(n.world.lookups)
    other = AgentIdentity(FA2_ID, pki().fa2_keys, FA2_ADDR)
    n.to_fa("ha-direct", crafted_info(n, ha=other))
    [error] = n.errors(n.at_ha)
    assert error.code == MvpnError.OTHER and "not the home agent" in error.reason
    assert len(n.world.lookups) == lookups


def test_ha_key_is_looked_up_when_not_cached() -> None:
    """Once the cached Ku_HA is older than its lifetime the FA looks it up again."""
    n = net(ha_reaches_fa=False, ha_key_cache_lifetime=0.0)
    n.to_fa("ha-direct", crafted_info(n))
    assert n.world.lookups.count(("fa", HA_ID)) == 2
    assert len(n.at_mn) == 1


def test_duplicate_info_is_answered_again_and_a_reused_spi_refused() -> None:
    """The same Correspondent Information again: the same offer again, one pending entry;
    another message under an SPI already pending is refused (7)."""
    n = net(ha_reaches_fa=False)
    data = crafted_info(n)
    n.to_fa("ha-direct", data)
    n.to_fa("ha-direct", data)
    assert len(n.at_mn) == 2 and n.at_mn[0] == n.at_mn[1]
    assert n.fa.sessions.pending_count() == 1
    n.to_fa("ha-direct", crafted_info(n))
    [error] = n.errors(n.at_ha)
    assert "already in use" in error.reason


def test_pending_session_expires() -> None:
    """An offer the MN never answers is forgotten after the pending timeout; a late
    response is refused (7) to the MN."""
    n = net()
    request, _ = request_communication(n.world)
    n.world.call("cn", [Send(request, (str(HA_ADDR), CONTROL), Channel.CONTROL)])
    offer = offer_at_mn(n, n.at_mn[-1])
    response, _ = cor.build_correspondent_response(mn_identity(), offer, LOCAL_FLAGS, RANDOM)
    assert n.fa.sessions.pending_count() == 1
    n.world.advance(7.0)
    assert n.fa.sessions.pending_count() == 0
    assert n.fa.counters.get("sessions.pending_timeouts") == 1
    n.to_fa("mn", response)
    [error] = n.errors(n.at_mn[1:])
    assert error.code == MvpnError.OTHER and error.reference == offer.spi
    assert len(n.fa.dataplane) == 0 and n.at_cn == []


# --- Correspondent Response -----------------------------------------------------------------


def test_forged_response_is_refused_and_the_genuine_one_still_works() -> None:
    """A response signed with other keys: error 4 to the MN, the pending session stays;
    the genuine response then completes it."""
    n = net()
    request, pending = request_communication(n.world)
    n.world.call("cn", [Send(request, (str(HA_ADDR), CONTROL), Channel.CONTROL)])
    offer = offer_at_mn(n, n.at_mn[-1])
    impostor = AgentIdentity(USER_ID, keys("impostor"), HOME)
    forged, _ = cor.build_correspondent_response(impostor, offer, LOCAL_FLAGS, RANDOM)
    n.to_fa("mn", forged)
    [error] = n.errors(n.at_mn[1:])
    assert error.code == MvpnError.PUBLIC_KEY_NOT_VALID
    assert n.fa.sessions.pending_count() == 1 and len(n.fa.dataplane) == 0 and n.at_cn == []
    genuine, _ = cor.build_correspondent_response(mn_identity(), offer, LOCAL_FLAGS, RANDOM)
    n.to_fa("mn", genuine)
    assert len(n.fa.dataplane) == 1
    cor.open_communication_reply(cn_identity(), pending, n.at_cn[-1], pki().mn_keys.public)


def test_response_for_an_unknown_spi_is_refused() -> None:
    """A Correspondent Response for no pending session: error 7 to the MN, nothing sent to
    any CN."""
    n = net()
    e = establish(n)
    response = bytearray(e.response)
    response[8:12] = (0x7777).to_bytes(4, "big")
    n.to_fa("mn", bytes(response))
    [error] = n.errors(n.at_mn)
    assert error.code == MvpnError.OTHER and error.reference == 0x7777
    assert len(n.at_cn) == 1


def test_retransmitted_response_gets_the_same_reply() -> None:
    """The same Correspondent Response again (the reply was lost): the same Communication
    Reply again, and still one session."""
    n = net()
    e = establish(n)
    n.to_fa("mn", e.response)
    assert len(n.at_cn) == 2 and n.at_cn[0] == n.at_cn[1]
    assert len(n.fa.dataplane) == 1
    assert n.fa.counters.get("sessions.duplicates") == 1


# --- Key Transfer (draft 3.3) ---------------------------------------------------------------


def moved(n: Net) -> ForeignAgent:
    """Move the MN to FA2 (a first contact there); FA2's control handlers attached."""
    fa2 = make_fa(FA2_ADDR, FA2_ID, "fa2")
    n.world.add_fa("fa2", fa2)
    n.world.call("fa2", fa2.start(n.world.now))
    attach_control(n.world, "fa2", fa2)
    n.world.call("mn", n.mn.move_to(FA2_ADDR, n.world.now))
    assert n.mn.state == "registered"
    return fa2


def fa2_keys(fa2: ForeignAgent) -> RegistrationKeys:
    visitor = fa2.visitor(HOME)
    assert visitor is not None and visitor.keys is not None
    return visitor.keys


def test_key_transfer_installs_sessions_at_the_new_fa() -> None:
    """After a move the MN hands FA2 its session: FA2 installs a relay session with fresh
    windows, acknowledges with the count (form 1, HMAC under the registration Auth Key),
    reports "sessions-transferred", and the data flow goes on through FA2."""
    n = net()
    e = establish(n)
    now = n.world.now
    mn, cn = endpoints(e, now)
    ha_relay, fa1_relay = Relay(n.ha.dataplane), Relay(n.fa.dataplane)
    for i in range(3):
        mn.open(
            fa1_relay.forward(ha_relay.forward(cn.seal(e.cn_session.spi, b"%d" % i), False), False)
        )
    fa2 = moved(n)
    registration = fa2_keys(fa2)
    transfer = cor.build_key_transfer(HOME, registration, [e.mn_session], RANDOM)
    n.to_fa("mn", transfer, str(FA2_ADDR))
    assert cor.open_key_transfer_ack(n.at_mn[-1], registration) == 1
    session = fa2.dataplane.get(e.cn_session.spi)
    assert session is not None and session.mn_addr == HOME and session.cn_addr == CN_ADDR
    [event] = [
        ev for name, ev in n.world.events if name == "fa2" and ev.name == "sessions-transferred"
    ]
    assert event.fields == {"home_address": str(HOME), "spis": (e.cn_session.spi,)}
    fa2_relay = Relay(fa2.dataplane)
    inner = fa2_relay.forward(ha_relay.forward(cn.seal(e.cn_session.spi, b"after"), False), False)
    assert mn.open(inner) == b"after"
    assert (
        cn.open(ha_relay.forward(fa2_relay.forward(mn.seal(e.mn_session.spi, b"up"), True), True))
        == b"up"
    )


def test_retransmitted_key_transfer_is_answered_again_and_keeps_the_windows() -> None:
    """A Key Transfer again (the ack was lost): the same count again, the installed session
    (and its replay windows) left as it is."""
    n = net()
    e = establish(n)
    fa2 = moved(n)
    registration = fa2_keys(fa2)
    transfer = cor.build_key_transfer(HOME, registration, [e.mn_session], RANDOM)
    n.to_fa("mn", transfer, str(FA2_ADDR))
    installed = fa2.dataplane.get(e.mn_session.spi)
    n.to_fa("mn", transfer, str(FA2_ADDR))
    acks = [KeyTransferAck.decode(d) for d in n.at_mn if d[0] == 6]
    assert [a.count for a in acks] == [1, 1]
    assert fa2.dataplane.get(e.mn_session.spi) is installed


def test_key_transfer_under_a_wrong_spi_is_refused_with_2() -> None:
    """A Key Transfer under an SPI that is not the visitor's registration SA (or sealed with
    another key): error 2 to the MN, nothing installed, no acknowledgement."""
    n = net()
    e = establish(n)
    fa2 = moved(n)
    registration = fa2_keys(fa2)
    wrong_spi = dataclasses.replace(registration, spi=registration.spi + 100)
    n.to_fa("mn", cor.build_key_transfer(HOME, wrong_spi, [e.mn_session], RANDOM), str(FA2_ADDR))
    n.world.now += 2  # past the Error rate limit
    wrong_key = RegistrationKeys.generate(RANDOM, registration.spi, n.world.now, 300.0)
    n.to_fa("mn", cor.build_key_transfer(HOME, wrong_key, [e.mn_session], RANDOM), str(FA2_ADDR))
    errors = n.errors(n.at_mn)
    assert [(x.code, x.reference) for x in errors] == [
        (MvpnError.SESSION_KEY_NOT_VALID, registration.spi + 100),
        (MvpnError.SESSION_KEY_NOT_VALID, registration.spi),
    ]
    assert len(fa2.dataplane) == 0
    assert [d for d in n.at_mn if d[0] == 6] == []
    assert "sessions-transferred" not in n.world.event_names("fa2")


def test_key_transfer_skips_broken_and_foreign_sessions() -> None:
    """Sessions with code points mvpn does not use, or whose SPI is another MN's session
    at this FA, are not installed; the acknowledgement counts only the others."""
    n = net()
    e = establish(n)
    fa2 = moved(n)
    fa2.dataplane.install(
        DataSession.for_relay(
            0x9001, bytes(32), EncrSecPar.AES_256_GCM, n.world.now, mn_addr=OTHER_HOME
        )
    )
    broken = TransferredSession(
        0x9002, CN_ADDR, CN_ID, AuthSecPar.HMAC_SHA256_128, EncrSecPar.DES, bytes(32)
    )
    foreign = TransferredSession(
        0x9001,
        CN_ADDR,
        CN_ID,
        AuthSecPar.HMAC_SHA256_128,
        EncrSecPar.AES_256_GCM,
        bytes(range(32)),
    )
    registration = fa2_keys(fa2)
    transfer = cor.build_key_transfer(HOME, registration, [e.mn_session, broken, foreign], RANDOM)
    n.to_fa("mn", transfer, str(FA2_ADDR))
    assert cor.open_key_transfer_ack(n.at_mn[-1], registration) == 1
    assert fa2.dataplane.get(0x9002) is None
    other = fa2.dataplane.get(0x9001)
    assert other is not None and other.mn_addr == OTHER_HOME
    assert fa2.counters.get("sessions.transfer_skipped") == 2


# --- sessions and visitors ------------------------------------------------------------------


def test_sessions_end_with_the_visitor() -> None:
    """When the visitor expires (its re-registrations are lost) the FA removes its data
    sessions and pending set-ups, with a "sessions-removed" event; its packets are then
    unknown."""
    n = net()
    e = establish(n)
    request, _ = request_communication(n.world)
    n.world.call("cn", [Send(request, (str(HA_ADDR), CONTROL), Channel.CONTROL)])
    assert n.fa.sessions.pending_count() == 1
    _, cn = endpoints(e, n.world.now)
    packet = Relay(n.ha.dataplane).forward(cn.seal(e.cn_session.spi, b"x"), False)
    n.world.drop = lambda d: d.sender == "mn"
    n.world.advance(301)
    assert n.fa.visitor(HOME) is None
    assert len(n.fa.dataplane) == 0 and n.fa.sessions.pending_count() == 0
    removed = [ev for name, ev in n.world.events if name == "fa" and ev.name == "sessions-removed"]
    assert [ev.fields["spis"] for ev in removed] == [(e.cn_session.spi,)]
    with pytest.raises(UnknownSpi):
        Relay(n.fa.dataplane).forward(packet, from_mn=False)


def test_fa_sessions_expire_after_their_lifetime() -> None:
    """The FA's expiry timer removes a session when its lifetime ends."""
    n = net()
    e = establish(n)
    n.world.advance(3600.5)
    assert n.fa.dataplane.get(e.cn_session.spi) is None
    assert n.fa.counters.get("sessions.expired") == 1


def test_key_transfer_after_coming_back_starts_fresh_windows() -> None:
    """Back at FA1 under a new registration SA, a Key Transfer replaces FA1's old session
    with fresh replay windows (a fresh window accepts any first number, however far the
    session went while the MN was away); only a retransmission under the same SA keeps the
    installed session."""
    n = net()
    e = establish(n)
    mn, cn = endpoints(e, n.world.now)
    ha_relay = Relay(n.ha.dataplane)
    spi = e.cn_session.spi
    mn.open(Relay(n.fa.dataplane).forward(ha_relay.forward(cn.seal(spi, b"1"), False), False))
    old = n.fa.dataplane.get(spi)
    fa2 = moved(n)
    n.to_fa(
        "mn", cor.build_key_transfer(HOME, fa2_keys(fa2), [e.mn_session], RANDOM), str(FA2_ADDR)
    )
    n.world.call("mn", n.mn.move_to(FA_ADDR, n.world.now))
    n.world.advance(1.0)
    registration = n.registration()
    assert n.mn.status(n.world.now)["fa"] == str(FA_ADDR)
    n.to_fa("mn", cor.build_key_transfer(HOME, registration, [e.mn_session], RANDOM))
    assert cor.open_key_transfer_ack(n.at_mn[-1], registration) == 1
    new = n.fa.dataplane.get(spi)
    assert new is not None and new is not old
    assert new.to_mn.highest == 0 and old is not None and old.to_mn.highest == 1
    packet = ha_relay.forward(cn.seal(spi, b"later"), False)
    assert mn.open(Relay(n.fa.dataplane).forward(packet, False)) == b"later"
