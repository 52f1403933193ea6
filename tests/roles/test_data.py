"""Units of the data shell (mvpn.roles.data): routing at the HA, the FA and the endpoints,
every drop counted by reason at each hop, the handover hold, idle tunnels, rate-limited
logging (docs/protocol.md 8, 9). Fake UDP and TCP on a MemoryReactorClock; time is its
Clock; no socket, no sleep."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from mvpn.core.dataplane import (
    MAX_SEQUENCE,
    DataPlane,
    DataSession,
    Endpoint,
    NodeKind,
    Relay,
)
from mvpn.core.effects import Address, Counters, Event
from mvpn.pki.certificate import Role
from mvpn.pki.tc_errors import UnknownNode
from mvpn.roles.config import ConfigError, site_from_toml
from mvpn.roles.data import (
    DATA_PORT,
    HOLD_PACKETS,
    CurrentAgent,
    EndpointData,
    FaDataRelay,
    HaDataRelay,
    VisitorView,
    tunnel_peer_keys,
)
from mvpn.roles.shell import set_log_level
from mvpn.tunnel.buffer import TunnelSession
from mvpn.wire.codes import EncrSecPar
from mvpn.wire.data import TunnelRole
from tests.tunnel.peers import FA, FA_ID, HA, HA_ID, START, lookup

SPI = 0x1000
SPI2 = 0x2000
AUTH_KEY = bytes(range(32))
MN_TO_CN = b"m" * 32
CN_TO_MN = b"c" * 32
HOME = ipaddress.IPv4Address("10.1.0.5")
HOME2 = ipaddress.IPv4Address("10.1.0.6")
CN_ADDR = ipaddress.IPv4Address("127.0.0.5")
CARE_OF = "127.0.0.2"
FA2_ID = FA_ID + 1
MN_LINK = "127.0.0.4"
CN_SOURCE: Address = (str(CN_ADDR), DATA_PORT)
MN_SOURCE: Address = (MN_LINK, DATA_PORT)
ENCR = EncrSecPar.AES_256_GCM


# --- fakes ---------------------------------------------------------------------------------


class FakeUdpTransport:
    """Records what a DatagramProtocol writes."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Address]] = []

    def write(self, data: bytes, addr: Address) -> None:
        self.written.append((data, addr))


class FakeUdpPort:
    """The listening port listenUDP returns."""

    def __init__(self, port: int) -> None:
        self._port = port

    def getHost(self) -> Any:
        return type("Host", (), {"port": self._port})()

    def stopListening(self) -> None:
        return None


class FakeReactor(MemoryReactorClock):
    """MemoryReactorClock (TCP, time) with the listenUDP it lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.udp: dict[int, FakeUdpTransport] = {}
        self._next_port = 40000

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUdpPort:
        if port == 0:
            self._next_port += 1
            port = self._next_port
        transport = FakeUdpTransport()
        self.udp[port] = transport
        protocol.makeConnection(transport)
        return FakeUdpPort(port)


class FakeTunnel(Service):
    """A tunnel to an FA that records the Data frames it is given."""

    def __init__(self, fa_id: int, care_of: str, on_data: Callable[[bytes, bytes], None]):
        self.fa_id = fa_id
        self.care_of = care_of
        self.on_data = on_data
        self.counters = Counters()
        self.frames: list[tuple[bytes, bytes]] = []
        self.accept = True

    def send_data(self, mn_addr: bytes, packet: bytes) -> bool:
        if not self.accept:
            self.counters.increment("buffer.overflow")
            return False
        self.frames.append((mn_addr, packet))
        return True


@dataclass(frozen=True)
class FakeVisitor:
    """A visitor entry as the FA relay reads it."""

    mn: Address
    ha_id: int | None = HA_ID


@dataclass
class Sink:
    """A tunnel connection stand-in: records the frames a TunnelSession writes."""

    frames: list[bytes] = field(default_factory=list)

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def write_frames(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)

    def packets(self) -> list[tuple[bytes, bytes]]:
        """(MN ADDR, type-55 packet) of every Data frame."""
        return [(f[13:17], f[17:]) for f in self.frames]


# --- sessions ------------------------------------------------------------------------------


def relay_plane(kind: NodeKind, *spis: int, home: ipaddress.IPv4Address = HOME) -> DataPlane:
    plane = DataPlane(kind)
    for spi in spis or (SPI,):
        plane.install(
            DataSession.for_relay(spi, AUTH_KEY, ENCR, START, mn_addr=home, cn_addr=CN_ADDR)
        )
    return plane


def endpoint_plane(kind: NodeKind, spi: int = SPI) -> DataPlane:
    plane = DataPlane(kind)
    build = DataSession.for_mn if kind is NodeKind.MN else DataSession.for_cn
    plane.install(
        build(spi, AUTH_KEY, ENCR, MN_TO_CN, CN_TO_MN, START, mn_addr=HOME, cn_addr=CN_ADDR)
    )
    return plane


@dataclass
class Chain:
    """The four planes of one session, and helpers that make packets at each hop."""

    cn: DataPlane = field(default_factory=lambda: endpoint_plane(NodeKind.CN))
    mn: DataPlane = field(default_factory=lambda: endpoint_plane(NodeKind.MN))
    ha: DataPlane = field(default_factory=lambda: relay_plane(NodeKind.HA))
    fa: DataPlane = field(default_factory=lambda: relay_plane(NodeKind.FA))

    def from_cn(self, inner: bytes, spi: int = SPI) -> bytes:
        """A packet as the CN sends it (Hop 0)."""
        return Endpoint(self.cn).seal(spi, inner)

    def from_mn(self, inner: bytes, spi: int = SPI) -> bytes:
        """A packet as the MN sends it (Hop 0)."""
        return Endpoint(self.mn).seal(spi, inner)

    def ha_forwarded(self, inner: bytes) -> bytes:
        """A packet as the HA sends it into the tunnel (Hop 1), made on a separate HA plane
        so that the FA's and the HA's windows under test are not moved."""
        return Relay(relay_plane(NodeKind.HA)).forward(self.from_cn(inner), False)

    def fa_forwarded(self, inner: bytes) -> bytes:
        """A packet as the FA sends it into the tunnel (Hop 1)."""
        return Relay(relay_plane(NodeKind.FA)).forward(self.from_mn(inner), True)


def advance(reactor: FakeReactor, seconds: float) -> None:
    """Move the clock one second at a time, as time really passes (a LoopingCall fires
    once per advance, however far it goes)."""
    for _ in range(int(seconds)):
        reactor.advance(1.0)


def events_of(relay: Any) -> list[dict[str, Any]]:
    """Capture the log events of ``relay``'s drop log."""
    events: list[dict[str, Any]] = []
    relay.drops.log = type(relay.drops.log)(observer=events.append)
    return events


# --- the HA --------------------------------------------------------------------------------


@dataclass
class HaFixture:
    reactor: FakeReactor
    chain: Chain
    bindings: dict[ipaddress.IPv4Address, tuple[int, str]]
    relay: HaDataRelay
    tunnels: list[FakeTunnel]

    def cn_writes(self) -> list[tuple[bytes, Address]]:
        return self.reactor.udp[self.relay.port].written


def ha_fixture(**kw: Any) -> HaFixture:
    reactor = FakeReactor()
    reactor.advance(START)
    chain = Chain()
    bindings = {HOME: (FA_ID, CARE_OF)}
    tunnels: list[FakeTunnel] = []

    def open_tunnel(fa_id: int, care_of: str, on_data: Callable[[bytes, bytes], None]) -> Any:
        tunnel = FakeTunnel(fa_id, care_of, on_data)
        tunnels.append(tunnel)
        return tunnel

    relay = HaDataRelay(
        chain.ha,
        HA,
        lookup,
        bindings.get,
        reactor,
        data_port=0,
        peer_data_port=5555,
        open_tunnel=open_tunnel,
        **kw,
    )
    relay.startService()
    return HaFixture(reactor, chain, bindings, relay, tunnels)


def test_ha_cn_packet_goes_into_the_tunnel_of_the_binding() -> None:
    """A CN's packet is forwarded (Hop 1, a new tag the FA accepts) into the tunnel to the
    FA of the MN's binding, with the MN's home address as MN ADDR; the tunnel is dialled on
    demand, once."""
    f = ha_fixture()
    for i in range(3):
        f.relay.cn_datagram(f.chain.from_cn(b"inner %d" % i), CN_SOURCE)
    assert len(f.tunnels) == 1
    tunnel = f.tunnels[0]
    assert (tunnel.fa_id, tunnel.care_of, tunnel.running) == (FA_ID, CARE_OF, 1)
    assert [addr for addr, _ in tunnel.frames] == [HOME.packed] * 3
    fa = Relay(f.chain.fa)
    mn = Endpoint(f.chain.mn)
    got = [mn.open(fa.forward(pkt, False)) for _, pkt in tunnel.frames]
    assert got == [b"inner 0", b"inner 1", b"inner 2"]
    assert f.relay.counters()["to_tunnel.packets"] == 3
    assert f.relay.counters()["tunnels.opened"] == 1


def test_ha_one_tunnel_per_fa() -> None:
    """Two MNs at one FA share its tunnel; an MN at another FA gets a tunnel of its own."""
    f = ha_fixture()
    home3 = ipaddress.IPv4Address("10.1.0.7")
    for spi, home in ((SPI2, HOME2), (0x3000, home3)):
        f.chain.ha.install(
            DataSession.for_relay(spi, AUTH_KEY, ENCR, START, mn_addr=home, cn_addr=CN_ADDR)
        )
        f.chain.cn.install(
            DataSession.for_cn(spi, AUTH_KEY, ENCR, MN_TO_CN, CN_TO_MN, START, mn_addr=home)
        )
    f.bindings[HOME2] = (FA_ID, CARE_OF)
    f.bindings[home3] = (FA2_ID, "127.0.0.3")
    f.relay.cn_datagram(f.chain.from_cn(b"a"), CN_SOURCE)
    f.relay.cn_datagram(f.chain.from_cn(b"b", SPI2), CN_SOURCE)
    f.relay.cn_datagram(f.chain.from_cn(b"c", 0x3000), CN_SOURCE)
    assert [(t.fa_id, t.care_of, len(t.frames)) for t in f.tunnels] == [
        (FA_ID, CARE_OF, 2),
        (FA2_ID, "127.0.0.3", 1),
    ]
    assert [a for a, _ in f.tunnels[0].frames] == [HOME.packed, HOME2.packed]


def test_ha_drops_a_packet_for_an_mn_without_binding() -> None:
    """No binding for the session's MN: dropped and counted ``drops.no-binding``, no
    tunnel dialled."""
    f = ha_fixture()
    del f.bindings[HOME]
    f.relay.cn_datagram(f.chain.from_cn(b"x"), CN_SOURCE)
    assert f.tunnels == []
    assert f.relay.counters()["drops.no-binding"] == 1


def test_ha_tunnel_packet_goes_to_the_cn() -> None:
    """A packet from the FA's tunnel is forwarded (Hop 2) to the session's CN at the CN
    data port, and the CN opens it."""
    f = ha_fixture()
    f.relay.tunnel_data((FA_ID, CARE_OF), HOME.packed, f.chain.fa_forwarded(b"up"))
    [(packet, to)] = f.cn_writes()
    assert to == (str(CN_ADDR), 5555)
    assert Endpoint(f.chain.cn).open(packet) == b"up"
    assert f.relay.counters()["to_cn.packets"] == 1


def test_ha_refuses_a_tunnel_packet_under_another_mns_address() -> None:
    """A frame whose MN ADDR is not the session's MN is dropped (``drops.wrong-source``)
    before the tag check: the window does not move, the same packet under the right
    address then passes."""
    f = ha_fixture()
    packet = f.chain.fa_forwarded(b"up")
    f.relay.tunnel_data((FA_ID, CARE_OF), HOME2.packed, packet)
    assert f.cn_writes() == []
    assert f.relay.counters()["drops.wrong-source"] == 1
    f.relay.tunnel_data((FA_ID, CARE_OF), HOME.packed, packet)
    assert len(f.cn_writes()) == 1


def test_ha_counts_a_full_tunnel() -> None:
    """A tunnel that refuses the frame (its buffer is full): ``drops.tunnel-full``, and
    the tunnel's own counter shows under tunnel_counters."""
    f = ha_fixture()
    f.relay.cn_datagram(f.chain.from_cn(b"1"), CN_SOURCE)
    f.tunnels[0].accept = False
    f.relay.cn_datagram(f.chain.from_cn(b"2"), CN_SOURCE)
    assert f.relay.counters()["drops.tunnel-full"] == 1
    assert f.relay.tunnel_counters() == {"buffer.overflow": 1}


def tamper(packet: bytes, how: str) -> bytes:
    if how == "forged":
        return packet[:-1] + bytes([packet[-1] ^ 1])
    if how == "truncated":
        return packet[:-1]
    if how == "flipped-ciphertext":
        return packet[:25] + bytes([packet[25] ^ 0x80]) + packet[26:]
    raise ValueError(how)


@pytest.mark.parametrize(
    ("how", "counter"),
    [
        ("forged", "drops.bad-tag"),
        ("truncated", "drops.malformed"),
        ("flipped-ciphertext", "drops.bad-tag"),
    ],
)
def test_ha_drops_damaged_packets_both_ways(how: str, counter: str) -> None:
    """A forged tag, a truncated packet or a changed ciphertext byte is refused at the HA
    from either side, counted by reason; nothing is sent on."""
    f = ha_fixture()
    f.relay.cn_datagram(tamper(f.chain.from_cn(b"down"), how), CN_SOURCE)
    f.relay.tunnel_data((FA_ID, CARE_OF), HOME.packed, tamper(f.chain.fa_forwarded(b"up"), how))
    assert f.tunnels == [] or f.tunnels[0].frames == []
    assert f.cn_writes() == []
    assert f.relay.counters()[counter] == 2


def test_ha_drops_replayed_and_too_old_packets() -> None:
    """A packet accepted once is refused the second time (``drops.replay``); one more than
    the window (2048) behind the highest accepted is refused as ``drops.too-old``."""
    f = ha_fixture()
    first = f.chain.from_cn(b"1")
    f.relay.cn_datagram(first, CN_SOURCE)
    f.relay.cn_datagram(first, CN_SOURCE)
    f.chain.cn.sessions[SPI].next_sequence = 1 + 2048 + 10
    f.relay.cn_datagram(f.chain.from_cn(b"far"), CN_SOURCE)
    f.chain.cn.sessions[SPI].next_sequence = 5
    f.relay.cn_datagram(f.chain.from_cn(b"late"), CN_SOURCE)
    counters = f.relay.counters()
    assert (counters["drops.replay"], counters["drops.too-old"]) == (1, 1)
    assert len(f.tunnels[0].frames) == 2


def test_ha_drops_unknown_spi() -> None:
    """A packet of a session the HA does not hold: ``drops.unknown-spi``."""
    f = ha_fixture()
    f.chain.cn.install(
        DataSession.for_cn(0x9999, AUTH_KEY, ENCR, MN_TO_CN, CN_TO_MN, START, mn_addr=HOME)
    )
    f.relay.cn_datagram(f.chain.from_cn(b"?", 0x9999), CN_SOURCE)
    assert f.relay.counters()["drops.unknown-spi"] == 1


def test_ha_prepares_the_tunnel_on_binding_events() -> None:
    """ "registered", "moved" and "session-authorised" dial the binding's tunnel before any
    packet; other events and MNs without binding dial nothing."""
    f = ha_fixture()
    f.relay.event_received(Event("denied", {"home_address": HOME}))
    f.relay.event_received(Event("registered", {"home_address": HOME2}))
    assert f.tunnels == []
    f.relay.event_received(Event("registered", {"home_address": HOME}))
    assert [(t.fa_id, t.running) for t in f.tunnels] == [(FA_ID, 1)]
    f.bindings[HOME] = (FA2_ID, "127.0.0.3")
    f.relay.event_received(Event("moved", {"home_address": str(HOME)}))
    assert [t.fa_id for t in f.tunnels] == [FA_ID, FA2_ID]


def test_ha_closes_a_tunnel_no_binding_uses_after_the_grace() -> None:
    """After the MN moved to FA2, the tunnel to FA1 stays open for the grace (60 s) and is
    then closed (stopped, counters kept); the tunnel to FA2 stays."""
    f = ha_fixture()
    f.relay.cn_datagram(f.chain.from_cn(b"1"), CN_SOURCE)
    f.tunnels[0].counters.increment("connections")
    f.bindings[HOME] = (FA2_ID, "127.0.0.3")
    f.relay.cn_datagram(f.chain.from_cn(b"2"), CN_SOURCE)
    old, new = f.tunnels
    advance(f.reactor, 10)  # the first sweep notices FA1 is unused
    advance(f.reactor, 55)
    assert old.running and (FA_ID, CARE_OF) in f.relay.tunnels
    advance(f.reactor, 10)
    assert not old.running and (FA_ID, CARE_OF) not in f.relay.tunnels
    assert new.running
    assert f.relay.counters()["tunnels.closed"] == 1
    assert f.relay.tunnel_counters() == {"connections": 1}
    advance(f.reactor, 600)
    assert new.running


def test_ha_closes_the_tunnel_when_the_binding_goes() -> None:
    """A deregistered MN (no binding): its tunnel closes after the grace."""
    f = ha_fixture(idle_grace=20.0, sweep_interval=5.0)
    f.relay.cn_datagram(f.chain.from_cn(b"1"), CN_SOURCE)
    del f.bindings[HOME]
    advance(f.reactor, 20)
    assert f.tunnels[0].running
    advance(f.reactor, 10)
    assert not f.tunnels[0].running


def test_ha_stop_stops_tunnels_and_sweeps() -> None:
    """Stopping the relay stops its tunnels and its sweep timer."""
    f = ha_fixture()
    f.relay.cn_datagram(f.chain.from_cn(b"1"), CN_SOURCE)
    f.relay.stopService()
    assert not f.tunnels[0].running
    assert f.reactor.getDelayedCalls() == []


def test_drops_are_logged_rate_limited() -> None:
    """A flood of bad packets: one debug event each (only when the log level is debug), one
    warning per reason per second saying how many were dropped since the last; after a
    second, the next drop warns with the count of those in between."""
    f = ha_fixture()
    events = events_of(f.relay)
    bad = tamper(f.chain.from_cn(b"x"), "forged")
    f.relay.cn_datagram(bad, CN_SOURCE)
    assert not [e for e in events if e["log_level"] is LogLevel.debug]  # level info
    set_log_level("debug")
    try:
        for _ in range(99):
            f.relay.cn_datagram(bad, CN_SOURCE)
        f.relay.cn_datagram(b"short", CN_SOURCE)
    finally:
        set_log_level("info")
    warns = [e for e in events if e["log_level"] is LogLevel.warn]
    debugs = [e for e in events if e["log_level"] is LogLevel.debug]
    assert len(debugs) == 100
    assert [(w["reason"], w["dropped"]) for w in warns] == [
        ("drops.bad-tag", 1),
        ("drops.malformed", 1),
    ]
    f.reactor.advance(1.0)
    f.relay.cn_datagram(bad, CN_SOURCE)
    warns = [e for e in events if e["log_level"] is LogLevel.warn]
    assert (warns[-1]["reason"], warns[-1]["dropped"]) == ("drops.bad-tag", 100)
    assert f.relay.counters()["drops.bad-tag"] == 101


def test_data_port_drops_oversize_datagrams() -> None:
    """A datagram over 65535 bytes never reaches the handler: ``drops.oversize``."""
    f = ha_fixture()
    f.relay.data_port.received(b"\x37" * 65536, CN_SOURCE)
    assert f.relay.counters()["drops.oversize"] == 1
    assert "received.packets" not in f.relay.counters()


def test_ha_relay_needs_an_ha_plane() -> None:
    """An FA plane given to the HA relay is refused at construction."""
    with pytest.raises(ValueError, match="HA data plane"):
        HaDataRelay(relay_plane(NodeKind.FA), HA, lookup, lambda h: None, FakeReactor())


# --- the FA --------------------------------------------------------------------------------


@dataclass
class FaFixture:
    reactor: FakeReactor
    chain: Chain
    visitors: dict[ipaddress.IPv4Address, FakeVisitor]
    relay: FaDataRelay
    sink: Sink

    def mn_writes(self) -> list[tuple[bytes, Address]]:
        return self.reactor.udp[self.relay.port].written


def fa_fixture(*, hold_packets: int = HOLD_PACKETS) -> FaFixture:
    reactor = FakeReactor()
    reactor.advance(START)
    chain = Chain()
    visitors = {HOME: FakeVisitor((MN_LINK, 434))}

    def visitor_at(ip: str) -> VisitorView | None:
        return next((v for v in visitors.values() if v.mn[0] == ip), None)

    relay = FaDataRelay(
        chain.fa,
        FA,
        lookup,
        visitors.get,
        reactor,
        visitor_at=visitor_at,
        tunnel_port=0,
        data_port=0,
        peer_data_port=6666,
        hold_packets=hold_packets,
    )
    relay.startService()
    # The HA connected once: its pair state exists, and a sink stands for the connection.
    sink = Sink()
    session = TunnelSession(relay.factory.counters, "ha")
    relay.factory.sessions[HA_ID] = session
    session.attach(sink)
    return FaFixture(reactor, chain, visitors, relay, sink)


def test_fa_tunnel_packet_goes_to_the_visitor_link_address() -> None:
    """An HA's packet is forwarded (Hop 2) to the visitor's link address at the MN data
    port; the MN opens it."""
    f = fa_fixture()
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"down"))
    [(packet, to)] = f.mn_writes()
    assert to == (MN_LINK, 6666)
    assert Endpoint(f.chain.mn).open(packet) == b"down"
    assert f.relay.counters()["to_mn.packets"] == 1


def test_fa_listens_on_the_tunnel_port() -> None:
    """The tunnel server factory listens (TCP) while the relay runs."""
    f = fa_fixture()
    [(port, factory, _, _)] = f.reactor.tcpServers
    assert (port, factory) == (0, f.relay.factory)


def test_fa_drops_a_tunnel_packet_for_no_visitor() -> None:
    """A known session whose MN is no current visitor: ``drops.no-visitor``."""
    f = fa_fixture()
    del f.visitors[HOME]
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"down"))
    assert f.mn_writes() == []
    assert f.relay.counters()["drops.no-visitor"] == 1


def test_fa_mn_packet_goes_into_the_tunnel_to_its_ha() -> None:
    """A visitor's packet from its link address is forwarded (Hop 1) into the tunnel to
    the visitor's HA with the MN's home address; the HA accepts it."""
    f = fa_fixture()
    f.relay.mn_datagram(f.chain.from_mn(b"up"), MN_SOURCE)
    [(addr, packet)] = f.sink.packets()
    assert addr == HOME.packed
    Relay(f.chain.ha).forward(packet, True)
    assert f.relay.counters()["to_tunnel.packets"] == 1


def test_fa_drops_an_mn_packet_from_another_source() -> None:
    """A packet of the visitor's session from another address on the link: dropped
    (``drops.wrong-source``) before the tag check; the window did not move, so the same
    packet from the visitor's address passes."""
    f = fa_fixture()
    packet = f.chain.from_mn(b"up")
    f.relay.mn_datagram(packet, ("127.0.0.9", DATA_PORT))
    assert f.sink.frames == []
    assert f.relay.counters()["drops.wrong-source"] == 1
    f.relay.mn_datagram(packet, (MN_LINK, 12345))
    assert len(f.sink.frames) == 1


def test_fa_drops_an_mn_packet_without_home_agent_or_tunnel() -> None:
    """A visitor without HA ID (plain RFC 5944): ``drops.no-home-agent``; an HA that never
    connected: ``drops.tunnel-full`` and the factory's ``frames.no_tunnel``."""
    f = fa_fixture()
    f.visitors[HOME] = FakeVisitor((MN_LINK, 434), None)
    f.relay.mn_datagram(f.chain.from_mn(b"1"), MN_SOURCE)
    assert f.relay.counters()["drops.no-home-agent"] == 1
    f.visitors[HOME] = FakeVisitor((MN_LINK, 434), HA_ID + 7)
    f.relay.mn_datagram(f.chain.from_mn(b"2"), MN_SOURCE)
    assert f.relay.counters()["drops.tunnel-full"] == 1
    assert f.relay.tunnel_counters()["frames.no_tunnel"] == 1


@pytest.mark.parametrize(
    ("how", "counter"), [("forged", "drops.bad-tag"), ("truncated", "drops.malformed")]
)
def test_fa_drops_damaged_packets_both_ways(how: str, counter: str) -> None:
    """Forged and truncated packets are refused at the FA from either side, counted."""
    f = fa_fixture()
    f.relay.tunnel_data(HOME.packed, tamper(f.chain.ha_forwarded(b"down"), how))
    f.relay.mn_datagram(tamper(f.chain.from_mn(b"up"), how), MN_SOURCE)
    assert f.mn_writes() == [] and f.sink.frames == []
    assert f.relay.counters()[counter] == 2
    assert len(f.relay.hold) == 0


def test_fa_drops_replayed_and_reordered_packets() -> None:
    """At the FA: a replayed packet (``drops.replay``) and one beyond the window
    (``drops.too-old``), from the MN side."""
    f = fa_fixture()
    first = f.chain.from_mn(b"1")
    f.relay.mn_datagram(first, MN_SOURCE)
    f.relay.mn_datagram(first, MN_SOURCE)
    f.chain.mn.sessions[SPI].next_sequence = 3000
    f.relay.mn_datagram(f.chain.from_mn(b"far"), MN_SOURCE)
    f.chain.mn.sessions[SPI].next_sequence = 2
    f.relay.mn_datagram(f.chain.from_mn(b"late"), MN_SOURCE)
    counters = f.relay.counters()
    assert (counters["drops.replay"], counters["drops.too-old"]) == (1, 1)
    assert len(f.sink.frames) == 2


def test_fa_drops_unknown_spi_of_no_current_visitor() -> None:
    """A packet of an unknown SPI for no current visitor (tunnel side: its MN ADDR; MN side:
    its source address) is dropped at once as ``drops.unknown-spi``, not held."""
    f = fa_fixture()
    f.chain.fa.remove(SPI)
    f.relay.tunnel_data(HOME2.packed, f.chain.ha_forwarded(b"down"))
    f.relay.mn_datagram(f.chain.from_mn(b"up"), ("127.0.0.9", DATA_PORT))
    assert len(f.relay.hold) == 0
    assert f.relay.counters()["drops.unknown-spi"] == 2


def test_fa_holds_and_releases_in_arrival_order() -> None:
    """Before the Key Transfer: packets of a current visitor with an unknown SPI are held
    (both directions). release() after the session is installed forwards them in arrival
    order; a later packet then goes straight through."""
    f = fa_fixture()
    f.chain.fa.remove(SPI)
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"d1"))
    f.relay.mn_datagram(f.chain.from_mn(b"u1"), MN_SOURCE)
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"d2"))
    assert len(f.relay.hold) == 3
    assert f.mn_writes() == [] and f.sink.frames == []
    f.relay.release([SPI2])
    assert len(f.relay.hold) == 3
    f.chain.fa.install(
        DataSession.for_relay(SPI, AUTH_KEY, ENCR, START, mn_addr=HOME, cn_addr=CN_ADDR)
    )
    f.relay.release([SPI])
    assert len(f.relay.hold) == 0
    mn = Endpoint(f.chain.mn)
    assert [mn.open(p) for p, _ in f.mn_writes()] == [b"d1", b"d2"]
    assert len(f.sink.frames) == 1
    counters = f.relay.counters()
    assert (counters["hold.held"], counters["hold.released"]) == (3, 3)
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"d3"))
    assert mn.open(f.mn_writes()[-1][0]) == b"d3"
    assert f.relay.hold._timer is None


def test_fa_sessions_transferred_event_releases() -> None:
    """The FA core's "sessions-transferred" event releases the held packets of its SPIs."""
    f = fa_fixture()
    f.chain.fa.remove(SPI)
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"d1"))
    f.chain.fa.install(
        DataSession.for_relay(SPI, AUTH_KEY, ENCR, START, mn_addr=HOME, cn_addr=CN_ADDR)
    )
    f.relay.event_received(Event("sessions-transferred", {"home_address": HOME, "spis": (SPI,)}))
    assert len(f.mn_writes()) == 1


def test_fa_held_packets_expire_after_two_seconds_each() -> None:
    """Each held packet waits at most 2 s from its arrival: expired ones are dropped and
    counted (``hold.expired``) and logged; a later packet waits its own 2 s; a release
    after the expiry forwards only what is still held."""
    f = fa_fixture()
    events = events_of(f.relay)
    f.chain.fa.remove(SPI)
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"d1"))
    f.reactor.advance(1.5)
    f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"d2"))
    f.reactor.advance(0.5)
    assert len(f.relay.hold) == 1
    assert f.relay.counters()["hold.expired"] == 1
    assert any(e["log_level"] is LogLevel.warn and e["reason"] == "hold.expired" for e in events)
    f.reactor.advance(1.0)
    f.chain.fa.install(
        DataSession.for_relay(SPI, AUTH_KEY, ENCR, START, mn_addr=HOME, cn_addr=CN_ADDR)
    )
    f.relay.release([SPI])
    assert [Endpoint(f.chain.mn).open(p) for p, _ in f.mn_writes()] == [b"d2"]
    f.reactor.advance(5.0)
    assert f.relay.counters()["hold.expired"] == 1


def test_fa_hold_overflow_is_counted() -> None:
    """Beyond the hold's bound a packet is dropped and counted (``hold.overflow``)."""
    f = fa_fixture(hold_packets=4)
    f.chain.fa.remove(SPI)
    for i in range(6):
        f.relay.tunnel_data(HOME.packed, f.chain.ha_forwarded(b"%d" % i))
    assert len(f.relay.hold) == 4
    assert f.relay.counters()["hold.overflow"] == 2


def test_fa_hold_bound_default_is_512() -> None:
    """The default bound is protocol.md 10's 512 packets: the 513th is refused."""
    f = fa_fixture()
    f.chain.fa.remove(SPI)
    packet = f.chain.ha_forwarded(b"x")
    for _ in range(513):
        f.relay.tunnel_data(HOME.packed, packet)
    assert len(f.relay.hold) == 512
    assert f.relay.counters()["hold.overflow"] == 1


def test_fa_released_packets_are_checked() -> None:
    """A held packet is checked when released: a forged one is dropped then (bad-tag)."""
    f = fa_fixture()
    f.chain.fa.remove(SPI)
    f.relay.tunnel_data(HOME.packed, tamper(f.chain.ha_forwarded(b"x"), "forged"))
    f.chain.fa.install(
        DataSession.for_relay(SPI, AUTH_KEY, ENCR, START, mn_addr=HOME, cn_addr=CN_ADDR)
    )
    f.relay.release([SPI])
    assert f.mn_writes() == []
    assert f.relay.counters()["drops.bad-tag"] == 1


# --- the endpoints -------------------------------------------------------------------------


@dataclass
class EndFixture:
    reactor: FakeReactor
    chain: Chain
    data: EndpointData
    delivered: list[tuple[DataSession, bytes]]

    def writes(self) -> list[tuple[bytes, Address]]:
        return self.reactor.udp[self.data.port].written


def end_fixture(kind: NodeKind, peer: Address | None = (CARE_OF, 7777)) -> EndFixture:
    reactor = FakeReactor()
    reactor.advance(START)
    chain = Chain()
    delivered: list[tuple[DataSession, bytes]] = []
    plane = chain.mn if kind is NodeKind.MN else chain.cn
    data = EndpointData(
        plane, lambda s: peer, lambda s, p: delivered.append((s, p)), reactor, data_port=0
    )
    data.startService()
    return EndFixture(reactor, chain, data, delivered)


def test_mn_sends_sealed_packets_to_its_fa() -> None:
    """send() seals on the session and sends to peer_for(session); the FA and the CN's
    end accept what it sent."""
    f = end_fixture(NodeKind.MN)
    assert f.data.send(SPI, b"hello")
    [(packet, to)] = f.writes()
    assert to == (CARE_OF, 7777)
    out = Relay(f.chain.fa).forward(packet, True)
    assert Endpoint(f.chain.cn).open(Relay(f.chain.ha).forward(out, True)) == b"hello"
    assert f.data.counters()["sent.packets"] == 1


def test_cn_receives_and_delivers() -> None:
    """A packet from the HA (Hop 2) is opened and delivered with its session."""
    f = end_fixture(NodeKind.CN)
    up = Relay(f.chain.ha).forward(f.chain.fa_forwarded(b"from mn"), True)
    f.data.datagram(up, ("127.0.0.1", DATA_PORT))
    assert [(s.spi, p) for s, p in f.delivered] == [(SPI, b"from mn")]
    assert f.data.counters()["delivered.packets"] == 1


@pytest.mark.parametrize(
    ("how", "counter"),
    [("forged", "drops.bad-tag"), ("truncated", "drops.malformed")],
)
def test_mn_drops_damaged_packets(how: str, counter: str) -> None:
    """At the MN a forged or truncated packet is dropped, counted, never delivered."""
    f = end_fixture(NodeKind.MN)
    down = Relay(f.chain.fa).forward(f.chain.ha_forwarded(b"x"), False)
    f.data.datagram(tamper(down, how), (CARE_OF, DATA_PORT))
    assert f.delivered == []
    assert f.data.counters()[counter] == 1


def test_mn_drops_replayed_and_too_old_packets() -> None:
    """At the MN: a replay (``drops.replay``) and a packet beyond the window
    (``drops.too-old``) are dropped, the others delivered once."""
    f = end_fixture(NodeKind.MN)

    def down(inner: bytes) -> bytes:
        return Relay(relay_plane(NodeKind.FA)).forward(f.chain.ha_forwarded(inner), False)

    first = down(b"1")
    f.chain.cn.sessions[SPI].next_sequence = 4000
    far = down(b"far")
    f.chain.cn.sessions[SPI].next_sequence = 2
    late = down(b"late")
    for p in (first, first, far, late):
        f.data.datagram(p, (CARE_OF, DATA_PORT))
    assert [p for _, p in f.delivered] == [b"1", b"far"]
    counters = f.data.counters()
    assert (counters["drops.replay"], counters["drops.too-old"]) == (1, 1)


def test_endpoint_refuses_to_send_what_it_cannot() -> None:
    """send() is False and counted for an unknown SPI, a session without a peer, a session
    without a cipher, and exhausted sequence numbers; nothing is written."""
    f = end_fixture(NodeKind.MN)
    assert not f.data.send(0x7777, b"x")
    f.chain.mn.install(DataSession.for_relay(SPI2, AUTH_KEY, ENCR, START, mn_addr=HOME))
    assert not f.data.send(SPI2, b"x")
    f.chain.mn.sessions[SPI].next_sequence = MAX_SEQUENCE + 1
    assert not f.data.send(SPI, b"x")
    assert f.writes() == []
    counters = f.data.counters()
    assert (
        counters["send.unknown-spi"],
        counters["send.no-cipher"],
        counters["send.exhausted"],
    ) == (
        1,
        1,
        1,
    )
    g = end_fixture(NodeKind.CN, peer=None)
    assert not g.data.send(SPI, b"x")
    assert g.data.counters()["send.no-peer"] == 1


def test_endpoint_send_on_a_closed_port_is_counted() -> None:
    """send() before the port is open (or after it closed) is False, ``send.error``."""
    chain = Chain()
    data = EndpointData(chain.cn, lambda s: ("127.0.0.1", 1), lambda s, p: None, FakeReactor())
    assert not data.send(SPI, b"x")
    assert data.counters()["send.error"] == 1


def test_endpoint_delivers_to_every_subscriber_or_counts_none() -> None:
    """Opened packets go to every subscriber until it unsubscribes; with no receiver at
    all the packet is dropped and counted (``drops.no-receiver``)."""
    reactor = FakeReactor()
    chain = Chain()
    data = EndpointData(chain.mn, lambda s: None, None, reactor, data_port=0)
    got: list[bytes] = []
    unsubscribe = data.subscribe(lambda s, p: got.append(p))

    def down(inner: bytes) -> bytes:
        return Relay(relay_plane(NodeKind.FA)).forward(chain.ha_forwarded(inner), False)

    data.datagram(down(b"1"), (CARE_OF, DATA_PORT))
    unsubscribe()
    unsubscribe()
    data.datagram(down(b"2"), (CARE_OF, DATA_PORT))
    assert got == [b"1"]
    assert data.counters()["drops.no-receiver"] == 1


def test_endpoint_watchers_see_every_datagram_before_it_is_opened() -> None:
    """A watcher gets each arriving datagram with its source, before receivers get the inner
    packet, dropped ones too; after unwatching, nothing."""
    reactor = FakeReactor()
    chain = Chain()
    data = EndpointData(chain.mn, lambda s: None, None, reactor, data_port=0)
    order: list[object] = []
    unwatch = data.watch(lambda packet, source: order.append(("watch", source[0], len(packet))))
    data.subscribe(lambda s, p: order.append(("deliver", p)))
    packet = Relay(relay_plane(NodeKind.FA)).forward(chain.ha_forwarded(b"1"), False)
    data.datagram(packet, (CARE_OF, DATA_PORT))
    data.datagram(b"garbage", (CARE_OF, DATA_PORT))
    unwatch()
    unwatch()
    data.datagram(b"more", (CARE_OF, DATA_PORT))
    assert order == [
        ("watch", CARE_OF, len(packet)),
        ("deliver", b"1"),
        ("watch", CARE_OF, len(b"garbage")),
    ]


def test_current_agent_follows_registrations_and_moves() -> None:
    """The MN's peer is the FA of its latest registration or move, at the data port; none
    before the first registration; other events change nothing."""
    agent = CurrentAgent(4351)
    session = endpoint_plane(NodeKind.MN).sessions[SPI]
    assert agent.peer_for(session) is None
    agent.event_received(Event("registered", {"fa": "127.0.0.2", "care_of": "127.0.0.2"}))
    assert agent.peer_for(session) == ("127.0.0.2", 4351)
    agent.event_received(Event("moved", {"from": "127.0.0.2", "to": "127.0.0.3"}))
    agent.event_received(Event("agent-lost", {"fa": "127.0.0.3"}))
    assert agent.peer_for(session) == ("127.0.0.3", 4351)
    agent.event_received(Event("reregistered", {"fa": "127.0.0.3"}))
    assert agent.peer_for(session) == ("127.0.0.3", 4351)


@dataclass
class FakeCertificate:
    """What tunnel_peer_keys reads of a certificate."""

    node_id: int
    role: Role
    public_keys: Any = "keys"

    def describe(self) -> str:
        return f"{self.role.name} {self.node_id:#x}"


class FakeSource:
    """A certificate source answering from a dict."""

    def __init__(self, certs: dict[int, FakeCertificate]) -> None:
        self.certs = certs

    def lookup(self, node_id: int) -> Deferred[Any]:
        cert = self.certs.get(node_id)
        return succeed(cert) if cert is not None else fail(UnknownNode(str(node_id)))


def test_tunnel_peer_keys_checks_the_role() -> None:
    """The tunnel's key lookup answers an FA's keys for an FA Hello and refuses a
    certificate of another role or an unknown node."""
    source = FakeSource(
        {FA_ID: FakeCertificate(FA_ID, Role.FA), HA_ID: FakeCertificate(HA_ID, Role.HA)}
    )
    keys = tunnel_peer_keys(cast(Any, source))
    results: list[Any] = []
    d = keys(FA_ID, TunnelRole.FOREIGN_AGENT)
    d.addBoth(results.append)  # type: ignore[union-attr]
    assert results == ["keys"]
    for node, role in ((HA_ID, TunnelRole.FOREIGN_AGENT), (FA2_ID, TunnelRole.FOREIGN_AGENT)):
        d = keys(node, role)
        d.addBoth(results.append)  # type: ignore[union-attr]
        assert isinstance(results[-1], Failure) and results[-1].check(UnknownNode)


def test_ports_from_files_and_options(tmp_path: Any) -> None:
    """``data_port`` (4351) and ``tunnel_port`` (4352) default for HA and FA, ``data_port``
    for the MN; each is read from its TOML table, refused out of range, and overridden by
    ``--data-port`` / ``--tunnel-port``."""
    from mvpn.roles.fa.tap import Options as FaOptions
    from mvpn.roles.ha.tap import Options as HaOptions
    from mvpn.roles.mn.tap import Options as MnOptions

    files = "certificate = 'c.pem'\nprivate_key = 'k.pem'\nca_certificate = 'ca.pem'\n"
    mn = (
        "[mn]\nmode = 'rfc5944'\nhome_address = '10.1.0.9'\nhome_agent = '127.0.0.1'\n"
        "plain_spi = 1000\nplain_key = '0011'\n"
    )
    path = tmp_path / "site.toml"
    path.write_text(f"[ha]\n{files}database = 'ha.sqlite'\n[fa]\n{files}{mn}")
    site = site_from_toml(path)
    assert site.ha is not None and site.fa is not None
    assert (site.ha.data_port, site.ha.tunnel_port) == (4351, 4352)
    assert (site.fa.data_port, site.fa.tunnel_port) == (4351, 4352)
    assert site.mn[0].data_port == 4351
    path.write_text(
        f"[ha]\n{files}database = 'ha.sqlite'\ndata_port = 5351\ntunnel_port = 5352\n"
        f"[fa]\n{files}data_port = 6351\ntunnel_port = 6352\n{mn}data_port = 7351\n"
    )
    site = site_from_toml(path)
    assert site.ha is not None and site.fa is not None
    assert (site.ha.data_port, site.ha.tunnel_port) == (5351, 5352)
    assert (site.fa.data_port, site.fa.tunnel_port) == (6351, 6352)
    assert site.mn[0].data_port == 7351
    for options in (HaOptions(), FaOptions()):
        options.parseOptions(
            ["--config", str(path), "--data-port", "8351", "--tunnel-port", "8352"]
        )
        assert (options.config.data_port, options.config.tunnel_port) == (8351, 8352)
    mn_options = MnOptions()
    mn_options.parseOptions(["--config", str(path), "--data-port", "9351"])
    assert mn_options.config.data_port == 9351
    path.write_text(f"[fa]\n{files}tunnel_port = 65536\n")
    with pytest.raises(ConfigError, match="tunnel_port"):
        site_from_toml(path)


def test_fa_holds_mn_packets_of_visitors_it_learnt_from_events() -> None:
    """Without an injected lookup, the FA relay learns visitors' link addresses from the
    core's "registered" events: a packet with an unknown SPI from a registered visitor's
    address is held, and after "deregistered" (or when the entry is gone) it is not."""
    reactor = FakeReactor()
    chain = Chain()
    chain.fa.remove(SPI)
    visitors = {HOME: FakeVisitor((MN_LINK, 434))}
    relay = FaDataRelay(chain.fa, FA, lookup, visitors.get, reactor, tunnel_port=0, data_port=0)
    relay.mn_datagram(chain.from_mn(b"1"), MN_SOURCE)
    assert len(relay.hold) == 0
    relay.event_received(Event("registered", {"home_address": str(HOME)}))
    relay.mn_datagram(chain.from_mn(b"2"), MN_SOURCE)
    assert len(relay.hold) == 1
    relay.event_received(Event("deregistered", {"home_address": str(HOME)}))
    relay.mn_datagram(chain.from_mn(b"3"), MN_SOURCE)
    relay.event_received(Event("registered", {"home_address": str(HOME)}))
    del visitors[HOME]
    relay.mn_datagram(chain.from_mn(b"4"), MN_SOURCE)
    assert len(relay.hold) == 1
    assert relay.counters()["drops.unknown-spi"] == 3


def test_a_failing_receiver_is_counted_and_the_port_goes_on() -> None:
    """A receiver that raises is a bug: the port counts it (``port.handler_errors``) and
    serves the next datagram; ``port.received`` counts both."""
    reactor = FakeReactor()
    chain = Chain()
    got: list[bytes] = []

    def receiver(session: DataSession, inner: bytes) -> None:
        if inner == b"boom":
            raise RuntimeError("application bug")
        got.append(inner)

    data = EndpointData(chain.mn, lambda s: None, receiver, reactor, data_port=0)
    for inner in (b"boom", b"fine"):
        packet = Relay(relay_plane(NodeKind.FA)).forward(chain.ha_forwarded(inner), False)
        data.data_port.received(packet, (CARE_OF, DATA_PORT))
    assert got == [b"fine"]
    counters = data.counters()
    assert (counters["port.received"], counters["port.handler_errors"]) == (2, 1)


# --- every attack at every hop -------------------------------------------------------------


@dataclass
class Hop:
    """One receiving hop: how a packet reaches it, how it is made, what came out."""

    counters: Callable[[], dict[str, int]]
    make: Callable[[bytes], bytes]
    receive: Callable[[bytes], None]
    out: Callable[[], int]
    sender: DataSession
    """The originating endpoint's session (its next_sequence makes packets out of order)."""


def _hop(name: str) -> Hop:
    if name.startswith("ha"):
        h = ha_fixture()

        def ha_out() -> int:
            return len(h.cn_writes()) + sum(len(t.frames) for t in h.tunnels)

        if name == "ha-from-cn":
            return Hop(
                h.relay.counters,
                h.chain.from_cn,
                lambda p: h.relay.cn_datagram(p, CN_SOURCE),
                ha_out,
                h.chain.cn.sessions[SPI],
            )
        return Hop(
            h.relay.counters,
            h.chain.fa_forwarded,
            lambda p: h.relay.tunnel_data((FA_ID, CARE_OF), HOME.packed, p),
            ha_out,
            h.chain.mn.sessions[SPI],
        )
    if name.startswith("fa"):
        f = fa_fixture()

        def fa_out() -> int:
            return len(f.mn_writes()) + len(f.sink.frames)

        if name == "fa-from-tunnel":
            return Hop(
                f.relay.counters,
                f.chain.ha_forwarded,
                lambda p: f.relay.tunnel_data(HOME.packed, p),
                fa_out,
                f.chain.cn.sessions[SPI],
            )
        return Hop(
            f.relay.counters,
            f.chain.from_mn,
            lambda p: f.relay.mn_datagram(p, MN_SOURCE),
            fa_out,
            f.chain.mn.sessions[SPI],
        )
    e = end_fixture(NodeKind.MN if name == "mn" else NodeKind.CN)
    chain = e.chain

    def to_mn(inner: bytes) -> bytes:
        return Relay(relay_plane(NodeKind.FA)).forward(chain.ha_forwarded(inner), False)

    def to_cn(inner: bytes) -> bytes:
        return Relay(relay_plane(NodeKind.HA)).forward(chain.fa_forwarded(inner), True)

    return Hop(
        e.data.counters,
        to_mn if name == "mn" else to_cn,
        lambda p: e.data.datagram(p, (CARE_OF, DATA_PORT)),
        lambda: len(e.delivered),
        (chain.cn if name == "mn" else chain.mn).sessions[SPI],
    )


HOPS = ["ha-from-cn", "ha-from-tunnel", "fa-from-tunnel", "fa-from-mn", "mn", "cn"]


@pytest.mark.parametrize("name", HOPS)
def test_every_hop_drops_every_attack(name: str) -> None:
    """At each of the six receiving hops: a forged tag, a truncated packet, a replay and a
    packet reordered beyond the window (2048) are each dropped and counted by reason, and
    only the two genuine packets go on."""
    hop = _hop(name)
    hop.receive(tamper(hop.make(b"forged"), "forged"))
    hop.receive(tamper(hop.make(b"truncated"), "truncated"))
    hop.sender.next_sequence = 5000
    genuine = hop.make(b"far ahead")
    hop.receive(genuine)
    hop.receive(genuine)
    hop.sender.next_sequence = 10
    hop.receive(hop.make(b"too late"))
    hop.sender.next_sequence = 4000
    hop.receive(hop.make(b"inside the window"))
    counters = hop.counters()
    assert [counters.get(f"drops.{r}") for r in ("bad-tag", "malformed", "replay", "too-old")] == [
        1,
        1,
        1,
        1,
    ]
    assert hop.out() == 2
