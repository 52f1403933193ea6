"""The data shell over real loopback sockets: a CN endpoint, an HA relay, a real TCP tunnel,
an FA relay and an MN endpoint, each on its own 127.0.0.x address with kernel-chosen ports
and sessions installed directly; data both ways, then the tunnel connection killed in the
middle of a stream and every packet still delivered exactly once (docs/protocol.md 8, 9)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.task import deferLater

from mvpn.core.dataplane import DataPlane, DataSession, NodeKind
from mvpn.core.effects import Address, Event
from mvpn.roles.data import RECEIVE_BUFFER, EndpointData, FaDataRelay, HaDataRelay
from mvpn.tunnel.client import TunnelClient
from mvpn.wire.codes import EncrSecPar
from tests.roles.live import (
    FA1_ADDRESS,
    HA_ADDRESS,
    HOME_ADDRESS,
    MN_ADDRESS,
    Home,
    World,
)
from tests.roles.test_registration_live import ScriptedMobile
from tests.tunnel.peers import FA, FA_ID, HA, HA_ID, lookup

reactor: Any = _reactor
TIMEOUT = 20.0
HA_IP = "127.0.0.1"
FA_IP = "127.0.0.2"
MN_IP = "127.0.0.4"
CN_IP = "127.0.0.5"
HOME = ipaddress.IPv4Address("10.1.0.5")
SPI = 0x5151
AUTH_KEY = bytes(range(32))
MN_TO_CN = b"m" * 32
CN_TO_MN = b"c" * 32
ENCR = EncrSecPar.CHACHA20_POLY1305


def until(condition: Callable[[], bool]) -> Deferred[None]:
    """Poll ``condition`` every 10 ms; fail after TIMEOUT seconds."""

    async def wait() -> None:
        waited = 0.0
        while not condition():
            if waited > TIMEOUT:
                raise AssertionError("condition not reached in time")
            await deferLater(reactor, 0.01, lambda: None)
            waited += 0.01

    return Deferred.fromCoroutine(wait())


def turn() -> Deferred[None]:
    """Let the reactor run one iteration (sockets read, writes flushed)."""
    return deferLater(reactor, 0, lambda: None)


@dataclass(frozen=True)
class Visitor:
    """The FA's visitor entry for the MN."""

    mn: Address
    ha_id: int | None = HA_ID


@dataclass
class Network:
    """The five nodes, started, with what each endpoint received."""

    cn: EndpointData
    ha: HaDataRelay
    fa: FaDataRelay
    mn: EndpointData
    at_mn: list[bytes]
    at_cn: list[bytes]

    def tunnel(self) -> TunnelClient:
        [entry] = self.ha.tunnels.values()
        assert isinstance(entry.tunnel, TunnelClient)
        return entry.tunnel

    def stop(self) -> Deferred[list[object]]:
        """Stop every node (the HA first: it dials)."""
        return gatherResults(
            [maybeDeferred(s.stopService) for s in (self.ha, self.fa, self.mn, self.cn)]
        )


def build_network() -> Network:
    """Start MN and CN endpoints, the FA relay, then the HA relay dialling the FA's tunnel
    port; the session installed at all four."""
    now = reactor.seconds()
    mn_plane = DataPlane(NodeKind.MN)
    mn_plane.install(
        DataSession.for_mn(SPI, AUTH_KEY, ENCR, MN_TO_CN, CN_TO_MN, now, mn_addr=HOME)
    )
    cn_plane = DataPlane(NodeKind.CN)
    cn_plane.install(
        DataSession.for_cn(SPI, AUTH_KEY, ENCR, MN_TO_CN, CN_TO_MN, now, mn_addr=HOME)
    )
    ha_plane, fa_plane = DataPlane(NodeKind.HA), DataPlane(NodeKind.FA)
    for plane in (ha_plane, fa_plane):
        plane.install(
            DataSession.for_relay(
                SPI, AUTH_KEY, ENCR, now, mn_addr=HOME, cn_addr=ipaddress.IPv4Address(CN_IP)
            )
        )
    at_mn: list[bytes] = []
    at_cn: list[bytes] = []
    holder: dict[str, Any] = {}
    mn = EndpointData(
        mn_plane,
        lambda s: (FA_IP, holder["fa"].port),
        lambda s, p: at_mn.append(p),
        reactor,
        data_port=0,
        interface=MN_IP,
    )
    cn = EndpointData(
        cn_plane,
        lambda s: (HA_IP, holder["ha"].port),
        lambda s, p: at_cn.append(p),
        reactor,
        data_port=0,
        interface=CN_IP,
    )
    mn.startService()
    cn.startService()
    visitor = Visitor((MN_IP, 434))
    fa = FaDataRelay(
        fa_plane,
        FA,
        lookup,
        lambda home: visitor if home == HOME else None,
        reactor,
        tunnel_port=0,
        data_port=0,
        interface=FA_IP,
        peer_data_port=mn.port,
    )
    fa.startService()
    ha = HaDataRelay(
        ha_plane,
        HA,
        lookup,
        lambda home: (FA_ID, FA_IP) if home == HOME else None,
        reactor,
        tunnel_port=fa.tunnel_port,
        data_port=0,
        interface=HA_IP,
        peer_data_port=cn.port,
    )
    ha.startService()
    holder.update(fa=fa, ha=ha)
    return Network(cn, ha, fa, mn, at_mn, at_cn)


@pytest.fixture
def network() -> Iterator[Network]:
    """The started network; stopped after the test."""
    net = build_network()
    yield net
    pytest_twisted.blockon(net.stop())


def inner(i: int, size: int = 1400) -> bytes:
    """Inner packet number ``i``: its number then filler, ``size`` bytes."""
    return i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4)


@pytest_twisted.inlineCallbacks
def test_data_both_ways(network: Network) -> Generator[Any, Any, None]:
    """CN -> HA -> tunnel -> FA -> MN and MN -> FA -> tunnel -> HA -> CN over real
    sockets: each side receives exactly what the other sent, in order; the relays count
    what they forwarded and dropped nothing."""
    net = network
    down = [inner(i, 200) for i in range(20)]
    up = [inner(1000 + i, 300) for i in range(20)]
    for p in down:
        assert net.cn.send(SPI, p)
    yield until(lambda: len(net.at_mn) == len(down))
    for p in up:
        assert net.mn.send(SPI, p)
    yield until(lambda: len(net.at_cn) == len(up))
    assert net.at_mn == down
    assert net.at_cn == up
    for relay in (net.ha, net.fa):
        counters = relay.counters()
        assert counters["forwarded.packets"] == 40
        assert not any(k.startswith("drops.") for k in counters)
    assert net.ha.tunnel_counters()["connections"] == 1


@pytest_twisted.inlineCallbacks
def test_tunnel_dropped_mid_stream_every_packet_once(
    network: Network,
) -> Generator[Any, Any, None]:
    """A stream of 2000 packets CN -> MN; after 700 the tunnel's TCP connection is
    aborted, after 1400 it is closed cleanly: the HA keeps frames while it redials, the FA
    drops what it had already received, and the MN gets every packet exactly once, in
    order. The reverse direction still works afterwards."""
    net = network
    assert net.ha.prepare(HOME) is not None
    tunnel = net.tunnel()
    yield tunnel.when_ready()
    sent: list[bytes] = []
    for i in range(2000):
        if i % 50 == 0:
            # Pace like a sender with a window: no more in flight than the tunnel keeps,
            # and no more UDP than the loopback socket buffers hold.
            yield until(lambda: len(net.at_mn) >= len(sent) - 300)
            yield until(lambda: len(tunnel.session) < 400)
            yield turn()
        if i == 700:
            assert tunnel.protocol is not None
            cast(Any, tunnel.protocol.transport).abortConnection()
        if i == 1400:
            yield tunnel.when_ready()
            server_side = net.fa.factory.connections[HA_ID]
            cast(Any, server_side.transport).loseConnection()
        p = inner(i)
        assert net.cn.send(SPI, p)
        sent.append(p)
    yield until(lambda: len(net.at_mn) >= len(sent))
    yield deferLater(reactor, 0.2, lambda: None)
    assert len(net.at_mn) == len(sent)
    assert net.at_mn == sent
    tunnel_counters = net.ha.tunnel_counters()
    assert tunnel_counters["connections"] == 3
    # Frames accepted while the tunnel was down were kept and written after the redial.
    assert tunnel_counters["buffer.kept"] > 0 and tunnel_counters["buffer.flushed"] > 0
    assert not any(k.startswith("drops.") for k in net.fa.counters())
    assert net.mn.send(SPI, b"after")
    yield until(lambda: net.at_cn == [b"after"])


@pytest_twisted.ensureDeferred
async def test_services_route_by_registration_and_hold_during_handover(tmp_path: Path) -> None:
    """The data shells as the HA and FA services build them (real registrations through
    the Trusted Centres, tunnel keys looked up through them): with relay sessions installed
    in the cores' planes, CN -> HA -> tunnel -> FA1 -> MN and back works. After the MN's
    first contact at FA2, the HA's packets go to FA2, which holds them (no session yet);
    once FA2's plane has the session, "sessions-transferred" releases them to the MN, in
    order."""
    world = World(tmp_path)
    home = Home(world)
    cn_addr = ipaddress.IPv4Address(CN_IP)
    home_address = ipaddress.IPv4Address(HOME_ADDRESS)
    mn_data: EndpointData | None = None
    cn_data: EndpointData | None = None
    try:
        await home.ready()
        mobile = ScriptedMobile(home)
        assert (await mobile.first_contact(0)).accepted
        ha, fa1, fa2 = home.ha, home.fas[0], home.fas[1]
        now = reactor.seconds()
        for plane in (ha.core.dataplane, fa1.core.dataplane):
            plane.install(
                DataSession.for_relay(
                    SPI, AUTH_KEY, ENCR, now, mn_addr=home_address, cn_addr=cn_addr
                )
            )
        mn_plane, cn_plane = DataPlane(NodeKind.MN), DataPlane(NodeKind.CN)
        mn_plane.install(
            DataSession.for_mn(SPI, AUTH_KEY, ENCR, MN_TO_CN, CN_TO_MN, now, mn_addr=home_address)
        )
        cn_plane.install(
            DataSession.for_cn(SPI, AUTH_KEY, ENCR, MN_TO_CN, CN_TO_MN, now, mn_addr=home_address)
        )
        at_mn: list[bytes] = []
        at_cn: list[bytes] = []
        current_fa = [fa1]
        # Every node assumes its peers use its own data port (docs/protocol.md 2).
        mn_data = EndpointData(
            mn_plane,
            lambda s: (FA1_ADDRESS, current_fa[0].data.port),
            lambda s, p: at_mn.append(p),
            reactor,
            fa1.data.peer_data_port,
            interface=MN_ADDRESS,
        )
        cn_data = EndpointData(
            cn_plane,
            lambda s: (HA_ADDRESS, ha.data.port),
            lambda s, p: at_cn.append(p),
            reactor,
            ha.data.peer_data_port,
            interface=CN_IP,
        )
        mn_data.startService()
        cn_data.startService()
        down = [inner(i, 300) for i in range(10)]
        for p in down:
            assert cn_data.send(SPI, p)
        await until(lambda: len(at_mn) == len(down))
        up = [inner(100 + i, 300) for i in range(10)]
        for p in up:
            assert mn_data.send(SPI, p)
        await until(lambda: len(at_cn) == len(up))
        assert (at_mn, at_cn) == (down, up)

        # Handover: FA2 accepts a first contact; the HA's packets now go to FA2 and wait.
        assert (await mobile.first_contact(1)).accepted
        more = [inner(200 + i, 300) for i in range(10)]
        for p in more:
            assert cn_data.send(SPI, p)
        await until(lambda: len(fa2.data.hold) == len(more))
        assert len(at_mn) == len(down)
        fa2.core.dataplane.install(
            DataSession.for_relay(SPI, AUTH_KEY, ENCR, now, mn_addr=home_address, cn_addr=cn_addr)
        )
        fa2.runner.run(
            [Event("sessions-transferred", {"home_address": HOME_ADDRESS, "spis": (SPI,)})]
        )
        await until(lambda: len(at_mn) == len(down) + len(more))
        assert at_mn[len(down) :] == more
        counters = fa2.counters()
        assert (counters["data.hold.held"], counters["data.hold.released"]) == (10, 10)
        assert ha.counters()["tunnel.connections"] == 2
        assert ha.counters()["data.tunnels.opened"] == 2
    finally:
        for service in (mn_data, cn_data):
            if service is not None:
                await maybeDeferred(service.stopService)
        await world.stop()
        await home.link.port.stopListening()


@pytest_twisted.inlineCallbacks
def test_data_port_asks_for_a_large_receive_buffer() -> Generator[Any, Any, None]:
    """The data port's socket gets the receive buffer it asks for, up to the kernel's
    net.core.rmem_max (Linux reports twice the granted size)."""
    data = EndpointData(DataPlane(NodeKind.MN), lambda s: None, None, reactor, 0, interface=MN_IP)
    data.startService()
    try:
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
        sock = data.data_port._listening.socket
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert granted == 2 * min(RECEIVE_BUFFER, rmem_max)
    finally:
        yield data.stopService()
