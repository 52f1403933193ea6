"""The correspondent node's core (docs/protocol.md 7.2, 7.5, 7.7, 10): connect, retransmit,
accept a Communication Reply, refuse on an Error, renew and expire sessions.

The CN is the real :class:`~mvpn.core.cn.Correspondent`; HA, FA and MN are played by the
pure functions of :mod:`mvpn.core.correspondent` with their own keys, so every message the CN
sees is a real one. Effects are performed by :class:`Harness` (a fake clock, Lookups
answered from a certificate table, Sends recorded).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from mvpn.core import correspondent as cor
from mvpn.core.cn import (
    MAX_ATTEMPTS,
    Correspondent,
    CorrespondentConfig,
    backoff,
    read_reply_mn_id,
)
from mvpn.core.dataplane import DATA_KEY_LIFETIME, DataPlane, DataSession, Endpoint, NodeKind
from mvpn.core.effects import (
    CancelTimer,
    Channel,
    Effect,
    Event,
    Log,
    Lookup,
    Send,
    StartTimer,
)
from mvpn.core.messages import AgentIdentity
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.pki.certificate import NodeCertificate, Role, issue_certificate, make_ca_certificate
from mvpn.pki.tc_errors import TrustedCentreUnreachable, UnknownNode
from mvpn.wire.codes import MvpnError
from mvpn.wire.control import CommunicationReply, ErrorMessage, RequestCommunication
from mvpn.wire.data import forward

IP = ipaddress.IPv4Address
CERT_TIME = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
NOW = CERT_TIME.timestamp()
CONTROL = 4350
CN_ID = 0xC0FFEE
HA_ID = 0x4801
FA_ID = 0x4602
MN_ID = 0xAABBCCDD
CN_ADDR = IP("127.0.0.20")
HA_ADDR = IP("127.0.0.1")
FA_ADDR = IP("127.0.0.2")
HOME = IP("10.1.0.5")
FA_SOURCE = (str(FA_ADDR), CONTROL)
SPI = 0x5001


def _keys(seed: str) -> PrivateKeys:
    return PrivateKeys.generate(SeededRandom(seed))


@dataclass
class Nodes:
    """Identities and certificates of the five nodes of a session (made once per module)."""

    cn: AgentIdentity
    ha: AgentIdentity
    fa: AgentIdentity
    mn: AgentIdentity
    certificates: dict[int, NodeCertificate]
    ca_keys: PrivateKeys
    ca: NodeCertificate

    def issue(
        self, role: Role, node_id: int, keys: PrivateKeys, address: IP | None, serial: int
    ) -> NodeCertificate:
        """A certificate of this test domain, valid around NOW."""
        return issue_certificate(
            self.ca,
            self.ca_keys,
            role,
            node_id,
            f"n{serial}",
            keys.public,
            address,
            CERT_TIME - datetime.timedelta(days=1),
            CERT_TIME + datetime.timedelta(days=10),
            serial,
        )


_NODES: Nodes | None = None


def nodes() -> Nodes:
    """The test domain (key and certificate generation is slow-ish: made once)."""
    global _NODES
    if _NODES is None:
        ca_keys = _keys("cn-test-ca")
        ca = make_ca_certificate(
            "cn.example",
            1,
            ca_keys,
            CERT_TIME - datetime.timedelta(days=1),
            CERT_TIME + datetime.timedelta(days=30),
            1,
        )
        made = Nodes(
            AgentIdentity(CN_ID, _keys("cn"), CN_ADDR),
            AgentIdentity(HA_ID, _keys("ha"), HA_ADDR),
            AgentIdentity(FA_ID, _keys("fa"), FA_ADDR),
            AgentIdentity(MN_ID, _keys("mn"), HOME),
            {},
            ca_keys,
            ca,
        )
        for serial, (role, identity, address) in enumerate(
            (
                (Role.CN, made.cn, CN_ADDR),
                (Role.HA, made.ha, HA_ADDR),
                (Role.FA, made.fa, FA_ADDR),
                (Role.MN, made.mn, HOME),
            ),
            start=2,
        ):
            made.certificates[identity.node_id] = made.issue(
                role, identity.node_id, identity.keys, address, serial
            )
        _NODES = made
    return _NODES


@dataclass
class Harness:
    """Performs one core's effects the way a shell does, on a clock the test moves."""

    now: float = NOW
    answers: dict[int, NodeCertificate | Exception] = field(default_factory=dict)
    sent: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    logs: list[Log] = field(default_factory=list)
    lookups: list[int] = field(default_factory=list)
    timers: dict[str, tuple[float, int, Callable[[float], list[Effect]]]] = field(
        default_factory=dict
    )
    _order: int = 0

    def perform(self, effects: list[Effect]) -> None:
        """Do what a shell does with ``effects``."""
        for effect in effects:
            if isinstance(effect, Send):
                self.sent.append(effect)
            elif isinstance(effect, Lookup):
                self.lookups.append(effect.node_id)
                answer = self.answers.get(effect.node_id, UnknownNode(str(effect.node_id)))
                self.perform(effect.then(answer))
            elif isinstance(effect, StartTimer):
                self._order += 1
                self.timers[effect.name] = (self.now + effect.delay, self._order, effect.fire)
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.name, None)
            elif isinstance(effect, Event):
                self.events.append(effect)
            elif isinstance(effect, Log):
                effect.render()  # every format must fill from its fields
                self.logs.append(effect)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers in order."""
        end = self.now + seconds
        while True:
            due = [(at, order, name) for name, (at, order, _) in self.timers.items() if at <= end]
            if not due:
                break
            at, _, name = min(due)
            _, _, fire = self.timers.pop(name)
            self.now = max(self.now, at)
            self.perform(fire(self.now))
        self.now = end

    def take(self) -> list[Send]:
        """The Sends so far, removed."""
        sent, self.sent = self.sent, []
        return sent

    def event_names(self) -> list[str]:
        """The names of the events so far, in order."""
        return [e.name for e in self.events]

    def warnings(self) -> list[str]:
        """The rendered warning lines."""
        return [log.render() for log in self.logs if log.level == "warn"]


def registration_keys() -> RegistrationKeys:
    """The MN's registration SA with its FA (keys the Hello value)."""
    return RegistrationKeys.generate(SeededRandom("cn-test-registration"), 0x101, NOW, 300)


def answer_request(
    n: Nodes, request: bytes, now: float, registration: RegistrationKeys, spi: int = SPI
) -> tuple[bytes, cor.MnSession]:
    """HA, FA and MN answer a Request Communication: the Communication Reply the FA sends
    to the CN, and the MN's end of the session."""
    random = SeededRandom(f"answer-{spi}-{request[:40].hex()}")
    opened = cor.open_request_communication(
        n.ha, request, lambda i: n.cn.public if i == CN_ID else None, now
    )
    data_auth_key = cor.new_data_auth_key(random)
    m2 = cor.build_correspondent_info(
        n.ha,
        opened,
        spi,
        data_auth_key,
        MN_ID,
        n.mn.public,
        FA_ID,
        n.fa.public,
        registration.auth_key,
    )
    at_fa = cor.open_correspondent_info_at_fa(n.fa, m2, n.ha.public, registration.auth_key)
    m3 = cor.build_correspondent_info_to_mn(n.fa, at_fa, LOCAL_FLAGS, MN_ID, n.mn.public)
    offer = cor.open_correspondent_info_at_mn(
        n.mn, m3, n.fa.public, n.ha.public, lambda i: n.cn.public if i == CN_ID else None
    )
    m4, mn_session = cor.build_correspondent_response(n.mn, offer, LOCAL_FLAGS, random)
    response = cor.open_correspondent_response_at_fa(n.fa, m4, n.mn.public, at_fa)
    return cor.build_communication_reply(response, at_fa), mn_session


def make_cn(config: CorrespondentConfig | None = None) -> tuple[Correspondent, Harness]:
    """A CN whose certificate table knows the HA and the MN."""
    n = nodes()
    cn = Correspondent(
        n.cn, config or CorrespondentConfig(control_port=CONTROL), SeededRandom("cn")
    )
    harness = Harness(answers={HA_ID: n.certificates[HA_ID], MN_ID: n.certificates[MN_ID]})
    return cn, harness


def requests(sent: list[Send]) -> list[Send]:
    """The Request Communications among ``sent``."""
    return [s for s in sent if s.data[0] == 1]


def connected() -> tuple[Correspondent, Harness, bytes]:
    """A CN that sent its first Request Communication; returns that request."""
    cn, h = make_cn()
    h.perform(cn.connect(HOME, HA_ADDR, HA_ID, h.now))
    (request,) = requests(h.take())
    return cn, h, request.data


def established() -> tuple[Correspondent, Harness, cor.MnSession]:
    """A CN with an established session; returns the MN's end of it."""
    cn, h, request = connected()
    reply, mn_session = answer_request(nodes(), request, h.now, registration_keys())
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    return cn, h, mn_session


# --- connect and the request --------------------------------------------------------------


def test_connect_looks_up_the_ha_and_sends_a_request_to_its_control_port() -> None:
    """connect() looks Ku_HA up by HA ID, then sends a Request Communication sealed to that
    HA, for the MN's home address, to the HA's control port (docs/protocol.md 7.2)."""
    cn, h = make_cn()
    h.perform(cn.connect(HOME, HA_ADDR, HA_ID, h.now))
    assert h.lookups == [HA_ID]
    (send,) = h.sent
    assert send.to == (str(HA_ADDR), CONTROL) and send.channel is Channel.CONTROL
    request = RequestCommunication.decode(send.data)
    assert request.cn_id == CN_ID and request.mn_addr == HOME
    opened = cor.open_request_communication(
        nodes().ha, send.data, lambda i: nodes().cn.public, h.now
    )
    assert opened.v.cn_addr == CN_ADDR
    assert cn.status(h.now)["peers"] == [
        {
            "home_address": str(HOME),
            "home_agent": str(HA_ADDR),
            "state": "requesting",
            "spi": None,
            "attempts": 1,
        }
    ]


def test_connect_while_a_round_runs_sends_nothing_more() -> None:
    """A second connect() for a peer being set up does not start a second round."""
    cn, h, _ = connected()
    h.perform(cn.connect(HOME, HA_ADDR, HA_ID, h.now))
    assert requests(h.take()) == []
    assert h.lookups == [HA_ID]


def test_retransmission_backoff_with_a_new_nonce_each_time_then_session_failed() -> None:
    """Without an answer the CN sends a new request each time (new CN Nonce, which the HA
    requires), gives up 8 s after the fifth with "session-failed", and tries a new round
    30 s later (docs/protocol.md 10)."""
    cn, h, first = connected()
    sent = [first]
    h.advance(15)
    sent += [s.data for s in requests(h.take())]
    nonces = {
        cor.open_request_communication(
            nodes().ha, m, lambda i: nodes().cn.public, h.now
        ).v.cn_nonce
        for m in sent
    }
    assert len(sent) == MAX_ATTEMPTS and len(nonces) == MAX_ATTEMPTS
    assert [backoff(i) for i in range(1, 6)] == [1, 2, 4, 8, 8]
    h.advance(7.9)
    assert h.event_names() == []
    h.advance(0.1)
    assert h.event_names() == ["session-failed"]
    assert h.events[0].fields == {"home_address": str(HOME), "reason": "no reply"}
    assert cn.counters.get("gave_up") == 1
    assert requests(h.take()) == []
    h.advance(30)
    assert h.lookups == [HA_ID, HA_ID]
    assert len(requests(h.take())) == 1


def test_retransmissions_follow_the_backoff_schedule() -> None:
    """Requests leave at 0, 1, 3, 7 and 15 s (1 s doubling, at most 8 s, 5 attempts)."""
    _, h, _ = connected()
    sent_at = [0.0]
    for _ in range(23):
        h.advance(1)
        sent_at += [h.now - NOW] * len(requests(h.take()))
    assert sent_at == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert h.event_names() == ["session-failed"]


# --- the reply -----------------------------------------------------------------------------


def test_reply_establishes_the_session_shared_with_the_mn() -> None:
    """A Communication Reply: the CN reads the MN ID from L, looks Ku_MN up, installs
    DataSession.for_cn (mn_addr, cn_addr set) and reports "session-established"; its
    packets open at the MN's end and the MN's open at the CN (docs/protocol.md 7.5, 8.1)."""
    cn, h, mn_session = established()
    assert h.lookups == [HA_ID, MN_ID]
    assert h.event_names() == ["session-established"]
    assert h.events[0].fields == {"spi": SPI, "home_address": str(HOME)}
    session = cn.dataplane.get(SPI)
    assert session is not None
    assert (session.mn_addr, session.cn_addr) == (HOME, CN_ADDR)
    assert cn.session_for(HOME) is session and cn.ha_address_for(HOME) == HA_ADDR
    assert "request:10.1.0.5" not in h.timers and "rekey:10.1.0.5" in h.timers
    mn_plane = DataPlane(NodeKind.MN)
    keys = mn_session.data_keys
    mn_plane.install(
        DataSession.for_mn(
            SPI,
            mn_session.data_auth_key,
            mn_session.encr_sec_par,
            keys.mn_to_cn,
            keys.cn_to_mn,
            h.now,
        )
    )
    relay_hops = 2  # HA and FA each add one to Hop on the way to the MN
    packet = Endpoint(cn.dataplane).seal(SPI, b"to the mobile node")
    rehopped = forward(packet, relay_hops, mn_plane.sessions[SPI].auth.tag)
    assert Endpoint(mn_plane).open(rehopped) == b"to the mobile node"
    back = Endpoint(mn_plane).seal(SPI, b"to the correspondent")
    back = forward(back, relay_hops, mn_plane.sessions[SPI].auth.tag)
    assert Endpoint(cn.dataplane).open(back) == b"to the correspondent"
    assert cn.status(h.now)["peers"][0]["state"] == "established"  # type: ignore[index]


def test_reply_to_an_earlier_attempt_is_accepted() -> None:
    """After a retransmission, the reply to the first request still completes the round
    (the HA may have answered it late); later timers send nothing."""
    cn, h, first = connected()
    h.advance(1.5)
    assert len(requests(h.take())) == 1
    reply, _ = answer_request(nodes(), first, h.now, registration_keys())
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    assert h.event_names() == ["session-established"]
    h.advance(20)
    assert requests(h.take()) == []


def test_a_second_reply_to_a_finished_round_is_dropped() -> None:
    """A duplicate Communication Reply after establishment answers no pending request: it
    is counted and changes nothing."""
    cn, h, request = connected()
    reply, _ = answer_request(nodes(), request, h.now, registration_keys())
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    assert h.event_names() == ["session-established"]
    assert cn.counters.get("drops.unknown_reply") == 1
    assert len(cn.dataplane) == 1


def test_forged_reply_is_answered_with_an_error_and_the_round_goes_on() -> None:
    """A reply whose HMAC does not verify is refused with Error 1 to its sender; the round
    keeps retransmitting, so the genuine reply still completes it."""
    cn, h, request = connected()
    reply, _ = answer_request(nodes(), request, h.now, registration_keys())
    forged = reply[:-1] + bytes([reply[-1] ^ 1])
    h.perform(cn.communication_reply_received(forged, FA_SOURCE, h.now))
    (error,) = [s for s in h.take() if s.data[0] == 7]
    message = ErrorMessage.decode(error.data)
    assert message.code == MvpnError.AUTHENTICATION_KEY_NOT_VALID and message.reference == SPI
    assert error.to == FA_SOURCE
    assert cn.dataplane.get(SPI) is None and h.event_names() == []
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    assert h.event_names() == ["session-established"]


def test_mn_certificate_for_another_home_address_is_refused() -> None:
    """Ku_MN must come from an MN certificate naming the home address the CN asked for."""
    n = nodes()
    cn, h, request = connected()
    h.answers[MN_ID] = n.issue(Role.MN, MN_ID, n.mn.keys, IP("10.1.0.99"), 40)
    reply, _ = answer_request(n, request, h.now, registration_keys())
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    assert cn.dataplane.get(SPI) is None
    assert cn.counters.get("drops.reply.4") == 1
    assert any("10.1.0.99" in line for line in h.warnings())


def test_unknown_mn_is_refused() -> None:
    """No certificate for the MN ID in L: the reply cannot be checked and is refused."""
    cn, h, request = connected()
    del h.answers[MN_ID]
    reply, _ = answer_request(nodes(), request, h.now, registration_keys())
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    assert cn.dataplane.get(SPI) is None and cn.counters.get("drops.reply.4") == 1


def test_garbage_reply_is_dropped_and_counted() -> None:
    """A Type 5 datagram that does not decode is dropped with a warning and a counter."""
    cn, h, _ = connected()
    h.perform(cn.communication_reply_received(b"\x05\x00\x00\x04", FA_SOURCE, h.now))
    assert cn.counters.get("drops.malformed") == 1 and len(h.warnings()) == 1


def test_read_reply_mn_id_needs_the_cn_key() -> None:
    """read_reply_mn_id opens L with the CN's key; another node cannot read it."""
    n = nodes()
    _, h, request = connected()
    reply, _ = answer_request(n, request, h.now, registration_keys())
    decoded = CommunicationReply.decode(reply)
    assert read_reply_mn_id(n.cn, decoded) == MN_ID
    with pytest.raises(cor.MobileNodeAuthenticationFailed):
        read_reply_mn_id(n.fa, decoded)


# --- errors and refusals -----------------------------------------------------------------


def _error_about(request: bytes, code: MvpnError, reason: str) -> bytes:
    opened = cor.open_request_communication(nodes().ha, request, lambda i: nodes().cn.public, NOW)
    return cor.build_error(code, opened.v.cn_nonce, reason)


def test_error_naming_a_pending_request_ends_the_round_as_refused() -> None:
    """An Error whose Reference is the CN Nonce of a pending request: "session-refused" with
    its code and reason, the retransmissions stop, a retry is armed (docs/protocol.md 7.7)."""
    cn, h, request = connected()
    error = _error_about(request, MvpnError.OTHER, "The mobile node is not registered.")
    h.perform(cn.error_received(error, (str(HA_ADDR), CONTROL), h.now))
    assert h.event_names() == ["session-refused"]
    assert h.events[0].fields == {
        "home_address": str(HOME),
        "code": 7,
        "reason": "The mobile node is not registered.",
    }
    assert cn.counters.get("mvpn_errors.received.7") == 1
    assert "request:10.1.0.5" not in h.timers and "retry:10.1.0.5" in h.timers
    h.advance(29)
    assert requests(h.take()) == []
    reply, _ = answer_request(nodes(), request, h.now, registration_keys())
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    assert cn.dataplane.get(SPI) is None and cn.counters.get("drops.unknown_reply") == 1
    h.advance(1)
    assert len(requests(h.take())) == 1


def test_error_about_something_else_is_only_logged() -> None:
    """An Error whose Reference names no pending request is logged and counted; the round
    goes on (errors are not authenticated: draft section 4)."""
    cn, h, _ = connected()
    h.perform(cn.error_received(cor.build_error(4, 12345, "x"), (str(HA_ADDR), CONTROL), h.now))
    assert h.event_names() == []
    assert cn.counters.get("mvpn_errors.received.4") == 1 and len(h.warnings()) == 1
    h.advance(1)
    assert len(requests(h.take())) == 1


def test_malformed_error_is_dropped() -> None:
    """A Type 7 datagram that does not decode is counted as control.malformed."""
    cn, h, _ = connected()
    h.perform(cn.error_received(b"\x07\x00\x00\x05x", (str(HA_ADDR), CONTROL), h.now))
    assert cn.counters.get("control.malformed") == 1 and h.event_names() == []


def test_control_handlers_route_types_5_and_7() -> None:
    """control_handlers() maps Type 5 to the reply handler and Type 7 to the error handler."""
    cn, _ = make_cn()
    handlers = cn.control_handlers()
    assert set(handlers) == {5, 7}
    assert handlers[5] == cn.communication_reply_received
    assert handlers[7] == cn.error_received


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (UnknownNode("no such HA"), MvpnError.HOME_AGENT_NOT_FOUND),
        (TrustedCentreUnreachable("down"), MvpnError.TRUSTED_CENTRE_NOT_FOUND),
    ],
)
def test_ha_key_lookup_failure_is_a_refusal(answer: Exception, code: MvpnError) -> None:
    """No Ku_HA: nothing is sent, "session-refused" with the draft's code (5 home agent not
    found, 6 Trusted Centre not found)."""
    cn, h = make_cn()
    h.answers[HA_ID] = answer
    h.perform(cn.connect(HOME, HA_ADDR, HA_ID, h.now))
    assert h.sent == []
    assert h.event_names() == ["session-refused"]
    assert h.events[0].fields["code"] == int(code)


def test_ha_certificate_of_another_role_is_refused() -> None:
    """A certificate that is not the HA's (here the FA's under the HA ID) gives no Ku_HA."""
    n = nodes()
    cn, h = make_cn()
    h.answers[HA_ID] = n.certificates[FA_ID]
    h.perform(cn.connect(HOME, HA_ADDR, HA_ID, h.now))
    assert h.sent == [] and h.events[0].fields["code"] == int(MvpnError.PUBLIC_KEY_NOT_VALID)


# --- renewal and expiry --------------------------------------------------------------------


def test_session_is_renewed_at_80_percent_and_the_old_one_expires() -> None:
    """At 80 % of the key lifetime a new round starts; the new session (another SPI)
    becomes the one to seal with, and the old one is removed when its keys expire
    ("session-expired")."""
    cn, h, _ = established()
    h.advance(DATA_KEY_LIFETIME * 0.8 - 1)
    assert requests(h.take()) == []
    h.advance(1)
    (renewal,) = requests(h.take())
    reply, _ = answer_request(nodes(), renewal.data, h.now, registration_keys(), spi=SPI + 1)
    h.perform(cn.communication_reply_received(reply, FA_SOURCE, h.now))
    assert len(cn.dataplane) == 2
    new_session = cn.session_for(HOME)
    assert new_session is not None and new_session.spi == SPI + 1
    h.advance(DATA_KEY_LIFETIME * 0.2)
    assert cn.dataplane.get(SPI) is None and cn.dataplane.get(SPI + 1) is not None
    assert h.event_names() == ["session-established", "session-established", "session-expired"]
    assert h.events[-1].fields == {"spi": SPI, "home_address": str(HOME)}


def test_config_rejects_nonsense() -> None:
    """rekey_at outside (0, 1) or a negative retry is a configuration error."""
    with pytest.raises(ValueError):
        CorrespondentConfig(rekey_at=1.0)
    with pytest.raises(ValueError):
        CorrespondentConfig(retry_after=-1)


def test_no_retry_when_switched_off() -> None:
    """retry_after = 0: a refused peer stays idle."""
    cn, h = make_cn(CorrespondentConfig(control_port=CONTROL, retry_after=0))
    h.answers[HA_ID] = UnknownNode("x")
    h.perform(cn.connect(HOME, HA_ADDR, HA_ID, h.now))
    assert h.timers == {}
    assert cn.status(h.now)["peers"][0]["state"] == "idle"  # type: ignore[index]
