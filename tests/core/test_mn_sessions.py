"""The mobile node's correspondent sessions (docs/protocol.md 7.3, 7.4, 7.6, 9): accepting a
session its FA relays, the Ku_CN cross-check, refusals, and the Key Transfer to a new FA.

HA, FA and CN are played by the pure functions of :mod:`mvpn.core.correspondent`, so every
message the MN sees is a real one. The unit tests drive :class:`MobileNodeSessions` with a
registration of their own; the last ones run the whole :class:`~mvpn.core.mn.MobileNode`
in the in-memory world of :mod:`tests.core.world` (real FA and HA registration cores).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from mvpn.core import correspondent as cor
from mvpn.core.advert import AgentInfo
from mvpn.core.dataplane import DataPlane, DataSession, Endpoint, NodeKind
from mvpn.core.effects import Channel, Send
from mvpn.core.messages import AgentIdentity, MobileCredentials
from mvpn.core.mn import MobileNode, Registration
from mvpn.core.mn_sessions import KEY_TRANSFER_TIMER, MobileNodeSessions, read_vouched_cn_key
from mvpn.crypto.dh import DhGroup
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.pki.certificate import Role
from mvpn.pki.tc_errors import CertificateRevoked, TrustedCentreUnreachable
from mvpn.wire.codes import MvpnError
from mvpn.wire.control import CorrespondentInfoToMN, ErrorMessage
from mvpn.wire.data import forward
from mvpn.wire.icmp import AgentFlags
from tests.core.test_cn import (
    CN_ID,
    CONTROL,
    FA_ADDR,
    FA_ID,
    HA_ADDR,
    HA_ID,
    HOME,
    MN_ID,
    NOW,
    SPI,
    Harness,
    Nodes,
    nodes,
    registration_keys,
)

FA_SOURCE = (str(FA_ADDR), CONTROL)


@dataclass
class Offer:
    """A Correspondent Information form 1 for the MN and what the other nodes keep."""

    data: bytes
    pending: cor.CnPending
    at_fa: cor.FaSessionInfo


def make_offer(
    n: Nodes,
    registration: RegistrationKeys,
    spi: int = SPI,
    *,
    cn: AgentIdentity | None = None,
    ha: AgentIdentity | None = None,
    fa: AgentIdentity | None = None,
    mn_id: int = MN_ID,
    mn_public: object = None,
    home: ipaddress.IPv4Address = HOME,
    now: float = NOW,
) -> Offer:
    """CN -> HA -> FA: the form 1 the FA sends the MN (real messages, each node's keys)."""
    cn = cn or n.cn
    ha = ha or n.ha
    fa = fa or n.fa
    public = mn_public or n.mn.public
    random = SeededRandom(f"offer-{spi}")
    m1, pending = cor.build_request_communication(
        cn, ha.node_id, ha.public, home, LOCAL_FLAGS, DhGroup.X25519, now, random
    )
    opened = cor.open_request_communication(ha, m1, lambda i: cn.public, now)
    m2 = cor.build_correspondent_info(
        ha,
        opened,
        spi,
        cor.new_data_auth_key(random),
        mn_id,
        public,  # type: ignore[arg-type]
        fa.node_id,
        fa.public,
        registration.auth_key,
    )
    at_fa = cor.open_correspondent_info_at_fa(fa, m2, ha.public, registration.auth_key)
    m3 = cor.build_correspondent_info_to_mn(fa, at_fa, LOCAL_FLAGS, mn_id, public)  # type: ignore[arg-type]
    return Offer(m3, pending, at_fa)


def credentials(n: Nodes) -> MobileCredentials:
    """The MN's smart card in the test domain of tests.core.test_cn."""
    return MobileCredentials(MN_ID, 0xD1, 0x5C, n.mn.keys, HOME, HA_ADDR, HA_ID, n.ha.public)


def registration(n: Nodes, keys: RegistrationKeys, fa_public: object = None) -> Registration:
    """A registration through the test FA."""
    agent = AgentInfo(FA_ADDR, FA_ADDR, 300, 300, AgentFlags.F, NOW, NOW + 9)
    return Registration(agent, 300, NOW, keys, FA_ID, fa_public or n.fa.public)  # type: ignore[arg-type]


def make_sessions(
    current: Registration | None = None,
) -> tuple[MobileNodeSessions, Harness, RegistrationKeys]:
    """The MN's sessions object, registered through the test FA."""
    n = nodes()
    keys = registration_keys()
    reg = current if current is not None else registration(n, keys)
    sessions = MobileNodeSessions(credentials(n), lambda: reg, SeededRandom("mn"), CONTROL)
    return sessions, Harness(), keys


def controls(sent: list[Send], type_: int) -> list[Send]:
    """The control messages of ``type_`` among ``sent``."""
    return [s for s in sent if s.channel is Channel.CONTROL and s.data[0] == type_]


# --- accepting a session -------------------------------------------------------------------


def test_offer_with_a_vouched_cn_key_gives_the_session_the_cn_gets() -> None:
    """No certificate for the CN (UnknownNode): the MN takes the Ku_CN its HA signed and
    sealed to it, answers with a Correspondent Response to the FA's control port, installs
    DataSession.for_mn, reports "session-established"; the CN, given the Communication
    Reply, holds the same keys (data flows both ways)."""
    n = nodes()
    sessions, h, keys = make_sessions()
    offer = make_offer(n, keys)
    h.perform(sessions.correspondent_info_received(offer.data, FA_SOURCE, h.now))
    assert h.lookups == [CN_ID]
    assert sessions.counters.get("cn_keys.vouched") == 1
    (response,) = controls(h.sent, 4)
    assert response.to == FA_SOURCE
    assert h.event_names() == ["session-established"]
    assert h.events[0].fields == {"spi": SPI, "cn": str(n.cn.address), "home_address": str(HOME)}
    session = sessions.dataplane.get(SPI)
    assert session is not None and (session.mn_addr, session.cn_addr) == (HOME, n.cn.address)
    assert sessions.session_for(n.cn.address) is session
    opened = cor.open_correspondent_response_at_fa(n.fa, response.data, n.mn.public, offer.at_fa)
    reply = cor.build_communication_reply(opened, offer.at_fa)
    cn_session = cor.open_communication_reply(n.cn, offer.pending, reply, n.mn.public)
    cn_plane = DataPlane(NodeKind.CN)
    cn_plane.install(
        DataSession.for_cn(
            SPI,
            cn_session.data_auth_key,
            cn_session.encr_sec_par,
            cn_session.data_keys.mn_to_cn,
            cn_session.data_keys.cn_to_mn,
            h.now,
        )
    )
    up = forward(Endpoint(sessions.dataplane).seal(SPI, b"up"), 2, session.auth.tag)
    assert Endpoint(cn_plane).open(up) == b"up"
    down = forward(Endpoint(cn_plane).seal(SPI, b"down"), 2, session.auth.tag)
    assert Endpoint(sessions.dataplane).open(down) == b"down"


def test_offer_with_the_cn_certificate_cross_checks_the_key() -> None:
    """With a certificate of that CN whose key is the one the HA vouched for, the session is
    accepted (counted as checked)."""
    n = nodes()
    sessions, h, keys = make_sessions()
    h.answers[CN_ID] = n.certificates[CN_ID]
    h.perform(sessions.correspondent_info_received(make_offer(n, keys).data, FA_SOURCE, h.now))
    assert sessions.counters.get("cn_keys.checked") == 1
    assert h.event_names() == ["session-established"]


def _refused(h: Harness, code: MvpnError) -> ErrorMessage:
    (error,) = controls(h.sent, 7)
    assert error.to == FA_SOURCE
    assert controls(h.sent, 4) == [] and h.event_names() == []
    message = ErrorMessage.decode(error.data)
    assert message.code == code and message.reference == SPI
    return message


def test_cn_certificate_with_another_key_is_refused() -> None:
    """The CN's certificate holds another key than the HA vouched for: Error 4 to the FA,
    a warning, nothing kept."""
    n = nodes()
    sessions, h, keys = make_sessions()
    other = PrivateKeys.generate(SeededRandom("another cn key"))
    h.answers[CN_ID] = n.issue(Role.CN, CN_ID, other, n.cn.address, 50)
    h.perform(sessions.correspondent_info_received(make_offer(n, keys).data, FA_SOURCE, h.now))
    _refused(h, MvpnError.PUBLIC_KEY_NOT_VALID)
    assert len(sessions.dataplane) == 0 and sessions.counters.get("refused.4") == 1
    assert any("another CN key" in line for line in h.warnings())


def test_certificate_of_another_role_under_the_cn_id_is_refused() -> None:
    """A certificate that is not a CN's gives no Ku_CN: refused with 4."""
    n = nodes()
    sessions, h, keys = make_sessions()
    h.answers[CN_ID] = n.issue(Role.FA, CN_ID, n.cn.keys, n.cn.address, 51)
    h.perform(sessions.correspondent_info_received(make_offer(n, keys).data, FA_SOURCE, h.now))
    _refused(h, MvpnError.PUBLIC_KEY_NOT_VALID)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (TrustedCentreUnreachable("down"), MvpnError.TRUSTED_CENTRE_NOT_FOUND),
        (CertificateRevoked("revoked"), MvpnError.PUBLIC_KEY_NOT_VALID),
    ],
)
def test_lookup_failures_other_than_unknown_node_refuse(
    answer: Exception, code: MvpnError
) -> None:
    """Only UnknownNode falls back to the HA's word; an unreachable TC or a revoked
    certificate refuses the session with the draft's code."""
    n = nodes()
    sessions, h, keys = make_sessions()
    h.answers[CN_ID] = answer
    h.perform(sessions.correspondent_info_received(make_offer(n, keys).data, FA_SOURCE, h.now))
    _refused(h, code)


def test_offer_signed_by_another_fa_is_refused() -> None:
    """A form 1 from an FA other than the registration's (its FA ID differs) is refused
    before any public-key work."""
    n = nodes()
    sessions, h, keys = make_sessions()
    stranger = AgentIdentity(FA_ID + 1, n.fa.keys, FA_ADDR)
    h.perform(
        sessions.correspondent_info_received(
            make_offer(n, keys, fa=stranger).data, FA_SOURCE, h.now
        )
    )
    _refused(h, MvpnError.PUBLIC_KEY_NOT_VALID)
    assert sessions.counters.get("pk_operations") == 0


def test_offer_with_a_forged_fa_signature_is_refused() -> None:
    """The FA signature is checked with Ku_FA from the registration reply."""
    n = nodes()
    sessions, h, keys = make_sessions()
    forger = AgentIdentity(FA_ID, PrivateKeys.generate(SeededRandom("forger")), FA_ADDR)
    h.perform(
        sessions.correspondent_info_received(make_offer(n, keys, fa=forger).data, FA_SOURCE, h.now)
    )
    _refused(h, MvpnError.PUBLIC_KEY_NOT_VALID)
    assert h.lookups == []


def test_u_from_another_ha_does_not_open() -> None:
    """U signed by another HA than the card's does not open at the MN: refused with 4."""
    n = nodes()
    sessions, h, keys = make_sessions()
    impostor = AgentIdentity(HA_ID, PrivateKeys.generate(SeededRandom("impostor")), HA_ADDR)
    offer = make_offer(n, keys, ha=impostor)
    h.perform(sessions.correspondent_info_received(offer.data, FA_SOURCE, h.now))
    _refused(h, MvpnError.PUBLIC_KEY_NOT_VALID)


def test_unregistered_mn_refuses() -> None:
    """An MN with no registration has no Ku_FA to check the offer with: refused (7)."""
    n = nodes()
    keys = registration_keys()
    sessions = MobileNodeSessions(credentials(n), lambda: None, SeededRandom("mn"), CONTROL)
    h = Harness()
    h.perform(sessions.correspondent_info_received(make_offer(n, keys).data, FA_SOURCE, h.now))
    _refused(h, MvpnError.OTHER)


def test_repeated_offer_gets_the_same_response() -> None:
    """A form 1 for an SPI already answered gets the same Correspondent Response again (a
    second Diffie-Hellman value would give MN and CN different keys)."""
    n = nodes()
    sessions, h, keys = make_sessions()
    offer = make_offer(n, keys)
    h.perform(sessions.correspondent_info_received(offer.data, FA_SOURCE, h.now))
    h.perform(sessions.correspondent_info_received(offer.data, FA_SOURCE, h.now))
    first, second = controls(h.sent, 4)
    assert first.data == second.data
    assert h.event_names() == ["session-established"]
    assert sessions.counters.get("responses.repeated") == 1


def test_garbage_and_plain_mode_are_dropped() -> None:
    """A Type 2 datagram that does not decode is dropped and counted; a plain RFC 5944 node
    (no credentials) takes part in no session."""
    sessions, h, keys = make_sessions()
    h.perform(sessions.correspondent_info_received(b"\x02\x01\x00\x04", FA_SOURCE, h.now))
    assert sessions.counters.get("drops.malformed") == 1
    plain = MobileNodeSessions(None, lambda: None, SeededRandom("p"), CONTROL)
    h.perform(plain.correspondent_info_received(make_offer(nodes(), keys).data, FA_SOURCE, h.now))
    assert plain.counters.get("drops.plain_mode") == 1 and h.sent == []


def test_read_vouched_cn_key_reads_u() -> None:
    """read_vouched_cn_key returns the CN ID and Ku_CN the HA put into U."""
    n = nodes()
    keys = registration_keys()
    message = CorrespondentInfoToMN.decode(make_offer(n, keys).data)
    assert read_vouched_cn_key(n.mn, message, n.fa.public, n.ha.public) == (CN_ID, n.cn.public)
    with pytest.raises(cor.HomeAgentAuthenticationFailed):
        read_vouched_cn_key(n.mn, message, n.fa.public, n.fa.public)


def test_sessions_expire_with_their_keys() -> None:
    """A session is removed when its keys expire ("session-expired")."""
    n = nodes()
    sessions, h, keys = make_sessions()
    h.perform(sessions.correspondent_info_received(make_offer(n, keys).data, FA_SOURCE, h.now))
    h.advance(3599)
    assert len(sessions.dataplane) == 1
    h.advance(1)
    assert len(sessions.dataplane) == 0 and sessions.sessions() == []
    assert h.event_names() == ["session-established", "session-expired"]


# --- the whole mobile node: Ku_FA kept, Key Transfer after a move ---------------------------
# tests.core.world brings in the FA and HA registration cores; imported here, where needed.

from tests.core import world as w  # noqa: E402


def _world_offer(mn: MobileNode, fa_id: int, fa_keys: PrivateKeys, fa_addr: object) -> bytes:
    """A form 1 for the world's MN through the world's FA (``fa_id``)."""
    n = nodes()
    reg = mn.core.registration
    assert reg is not None and reg.keys is not None
    ha = AgentIdentity(w.HA_ID, w.pki().ha_keys, w.HA_ADDR)
    fa = AgentIdentity(fa_id, fa_keys, fa_addr)  # type: ignore[arg-type]
    return make_offer(
        n,
        reg.keys,
        cn=n.cn,
        ha=ha,
        fa=fa,
        mn_id=w.USER_ID,
        mn_public=w.pki().mn_keys.public,
        home=w.HOME,
        now=w.T0,
    ).data


def _session_world() -> tuple[w.World, MobileNode]:
    world, mn, _fa, _ha = w.full_world()
    data = _world_offer(mn, w.FA_ID, w.pki().fa_keys, w.FA_ADDR)
    world.call("mn", mn.control_handlers()[2](data, (str(w.FA_ADDR), 4350), world.now))
    return world, mn


def test_registration_keeps_the_fa_public_key() -> None:
    """The first-contact reply's Ku_FA is kept in the registration, and a session relayed
    by that FA is established by the MN core's control handler."""
    world, mn = _session_world()
    reg = mn.core.registration
    assert reg is not None and reg.fa_public == w.pki().fa_keys.public
    assert "session-established" in world.event_names("mn")
    assert mn.dataplane.get(SPI) is not None
    assert mn.status(world.now)["sessions"][0]["spi"] == SPI  # type: ignore[index]
    (response,) = [d for d in world.sent if d.send.data[0] == 4]
    assert response.send.to == (str(w.FA_ADDR), 4350)


def _moved() -> tuple[w.World, MobileNode]:
    world, mn = _session_world()
    fa2 = w.make_fa(w.FA2_ADDR, w.FA2_ID, "fa2")
    world.add_fa("fa2", fa2)
    world.call("fa2", fa2.start(world.now))
    world.call("mn", mn.move_to(w.FA2_ADDR, world.now))
    assert mn.state == "registered"
    return world, mn


def _transfers(world: w.World) -> list[bytes]:
    return [d.send.data for d in world.sent if d.send.data[0] == 6]


def test_key_transfer_after_a_move_until_acknowledged() -> None:
    """After the first contact at FA2 the MN sends FA2 a Key Transfer with its session (its
    data keys stay unchanged) and repeats it until FA2's acknowledgement: "keys-transferred"
    {fa, spis} (draft 3.3; docs/protocol.md 7.6)."""
    world, mn = _moved()
    session = mn.dataplane.get(SPI)
    (transfer,) = _transfers(world)
    reg = mn.core.registration
    assert reg is not None and reg.keys is not None and reg.fa_id == w.FA2_ID
    opened = cor.open_key_transfer(transfer, reg.keys)
    assert [s.spi for s in opened.sessions] == [SPI]
    assert opened.sessions[0].data_auth_key == mn.sessions.sessions()[0].data_auth_key
    world.advance(1)
    assert len(_transfers(world)) == 2
    ack = cor.build_key_transfer_ack(w.HOME, reg.keys, 1)
    world.call("mn", mn.control_handlers()[6](ack, (str(w.FA2_ADDR), 4350), world.now))
    assert world.event_names("mn")[-1] == "keys-transferred"
    event = [e for n, e in world.events if n == "mn"][-1]
    assert event.fields == {"fa": str(w.FA2_ADDR), "spis": (SPI,)}
    assert ("mn", KEY_TRANSFER_TIMER) not in world.timers
    world.advance(30)
    assert len(_transfers(world)) == 2
    assert mn.dataplane.get(SPI) is session


def test_key_transfer_gives_up_after_five_requests() -> None:
    """Without an acknowledgement the Key Transfer goes out at 0, 1, 3, 7 and 15 s, then
    "keys-transfer-failed"; the session itself stays."""
    world, mn = _moved()
    world.advance(22.9)
    assert len(_transfers(world)) == 5
    assert "keys-transfer-failed" not in world.event_names("mn")
    world.advance(0.2)
    assert world.event_names("mn")[-1] == "keys-transfer-failed"
    assert mn.dataplane.get(SPI) is not None


def test_ack_under_another_sa_is_refused() -> None:
    """An acknowledgement under another registration SA does not end the transfer."""
    world, mn = _moved()
    wrong = RegistrationKeys.generate(SeededRandom("wrong"), 0x999, world.now, 300)
    ack = cor.build_key_transfer_ack(w.HOME, wrong, 1)
    world.call("mn", mn.control_handlers()[6](ack, (str(w.FA2_ADDR), 4350), world.now))
    assert "keys-transferred" not in world.event_names("mn")
    assert mn.counters.get("drops.ack.7") == 1
    world.advance(1)
    assert len(_transfers(world)) == 2


def test_first_contact_without_sessions_sends_no_transfer() -> None:
    """A move while the MN holds no session sends no Key Transfer."""
    world, mn, _fa, _ha = w.full_world()
    fa2 = w.make_fa(w.FA2_ADDR, w.FA2_ID, "fa2")
    world.add_fa("fa2", fa2)
    world.call("fa2", fa2.start(world.now))
    world.call("mn", mn.move_to(w.FA2_ADDR, world.now))
    assert mn.state == "registered" and _transfers(world) == []
