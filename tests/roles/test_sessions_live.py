"""Correspondent sessions and the data flow end to end on loopback (issue 5): both Trusted
Centres, the HA, two FAs, a mobile node and a correspondent node run as real services in
this process on their own 127/8 addresses, with real UDP ports and real HA-FA TCP tunnels.

The CN sets up a session through the four messages of draft 3.5 (Request Communication,
Correspondent Information, Correspondent Response, Communication Reply); data then flows both
ways through HA, tunnel and FA; replayed and forged packets are dropped at every hop; and the
MN changes FA in the middle of a transfer in both directions, with the Key Transfer, and
every byte arrives (sha256 of what arrived equals what was sent).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from zope.interface import implementer  # type: ignore[import-untyped]

from mvpn.api import IMvpnApplication, MvpnClient
from mvpn.roles.cn.service import CorrespondentService, build_cn_service
from mvpn.roles.mn.service import MobileNodeService, build_mn_service
from mvpn.wire.data import HOP_TAG_SIZE
from tests.roles.live import (
    CN_ADDRESS,
    FA1_ADDRESS,
    FA2_ADDRESS,
    HA_ADDRESS,
    HOME_ADDRESS,
    MN_ADDRESS,
    Home,
    World,
    reactor,
    settle,
    wait_for,
)

HOME = ipaddress.IPv4Address(HOME_ADDRESS)
CN = ipaddress.IPv4Address(CN_ADDRESS)


@dataclass
class Nodes:
    """The running world: agents, the MN and the CN with their API clients."""

    home: Home
    mn: MobileNodeService
    cn: CorrespondentService

    @property
    def mn_client(self) -> MvpnClient:
        return self.mn.client

    @property
    def cn_client(self) -> MvpnClient:
        return self.cn.client

    def fa(self, address: str) -> Any:
        return self.home.fas[0] if address == FA1_ADDRESS else self.home.fas[1]

    @property
    def spi(self) -> int:
        """The SPI of the CN's session with the MN."""
        session = self.cn.core.session_for(HOME)
        assert session is not None
        return session.spi

    def current_fa(self) -> Any:
        binding = self.home.ha.core.bindings()[HOME]
        return self.fa(str(binding.care_of))


def counter(service: Any, name: str) -> int:
    return int(service.counters().get(name, 0))


@pytest_twisted.async_yield_fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    world = World(tmp_path)
    home = Home(world, advertisement_interval=0.3)
    try:
        await home.ready()
        mn = world.start(build_mn_service(home.mobile_config(), reactor))
        await wait_for(lambda: HOME in home.ha.core.bindings(), what="the MN's binding")
        cn = world.start(build_cn_service(home.cn_config(), reactor))
        try:
            await wait_for(
                lambda: (
                    cn.core.session_for(HOME) is not None
                    and mn.core.sessions.session_for(CN) is not None
                ),
                what="the CN session at both ends",
            )
        except AssertionError as e:
            # Say where the set-up stopped: each node's session and control counters.
            nodes = {"cn": cn, "ha": home.ha, "fa1": home.fas[0], "fa2": home.fas[1], "mn": mn}
            counts = {
                name: {
                    k: v for k, v in node.counters().items() if "session" in k or "control" in k
                }
                for name, node in nodes.items()
            }
            raise AssertionError(f"{e}: {counts}") from None
        yield Nodes(home, mn, cn)
    finally:
        await world.stop()
        await home.link.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_four_messages_set_up_one_session_that_agents_cannot_read(nodes: Nodes) -> None:
    """One Request Communication, Correspondent Information (to FA, to MN), Correspondent
    Response and Communication Reply: HA, FA, MN and CN then hold the session under one SPI;
    only MN and CN hold ciphers, the agents only the authentication key."""
    ha, fa = nodes.home.ha, nodes.current_fa()
    assert counter(ha, "sessions.authorised") == 1
    assert counter(fa, "sessions.relayed") == 1
    spi = nodes.spi
    mn_session = nodes.mn.core.sessions.session_for(CN)
    assert mn_session is not None and mn_session.spi == spi
    for agent in (ha, fa):
        relay = agent.core.dataplane.get(spi)
        assert relay is not None
        assert relay.send is None and relay.receive is None
        assert relay.mn_addr == HOME and relay.cn_addr == CN


@pytest_twisted.ensureDeferred
async def test_data_both_ways(nodes: Nodes) -> None:
    """Bytes sent by the CN's API arrive at the MN's, and back, through HA, tunnel and FA."""
    assert nodes.cn_client.send(HOME, b"to the mobile node")
    assert await nodes.mn_client.receive(CN) == b"to the mobile node"
    assert nodes.mn_client.send(CN, b"to the correspondent")
    assert await nodes.cn_client.receive(HOME) == b"to the correspondent"
    fa = nodes.current_fa()
    assert counter(nodes.home.ha, "data.forwarded.packets") == 2
    assert counter(fa, "data.forwarded.packets") == 2


class Tap:
    """Raw UDP socket on a node's address used to inject packets at one hop."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(data, to)

    def close(self) -> None:
        self.sock.close()


def sealed_by(client_owner: Any, spi: int, payload: bytes) -> bytes:
    """A genuine Hop-0 packet sealed by an endpoint's data plane (as if captured)."""
    data = client_owner.getServiceNamed("data")
    packet: bytes = data.endpoint.seal(spi, payload)
    return packet


def forged(packet: bytes) -> bytes:
    """``packet`` with its hop tag changed."""
    return packet[:-HOP_TAG_SIZE] + bytes(b ^ 0xFF for b in packet[-HOP_TAG_SIZE:])


@pytest_twisted.ensureDeferred
async def test_replayed_and_forged_packets_are_dropped_at_every_hop(nodes: Nodes) -> None:
    """A packet replayed to the HA (from the CN's side) and to the FA (from the MN's side),
    one with a forged hop tag, and a truncated one are dropped and counted at that hop; the
    same at the MN and at the CN for packets injected into their data ports."""
    home, fa = nodes.home, nodes.current_fa()
    port = home.data_port
    spi = nodes.spi
    inner = b"\x45" + bytes(27)  # never opened: the relays only check

    cn_tap, mn_tap, agent_tap = Tap(CN_ADDRESS), Tap(MN_ADDRESS), Tap(FA1_ADDRESS)
    try:
        # The HA: a genuine CN packet once, then replayed; forged; truncated.
        packet = sealed_by(nodes.cn, spi, inner)
        for data in (packet, packet, forged(sealed_by(nodes.cn, spi, inner)), packet[:30]):
            cn_tap.send(data, (HA_ADDRESS, port))
        await wait_for(
            lambda: (
                counter(home.ha, "data.drops.replay") == 1
                and counter(home.ha, "data.drops.bad-tag") == 1
                and counter(home.ha, "data.drops.malformed") == 1
            ),
            what="the HA's drops",
        )
        # The FA: the same from the MN's side.
        packet = sealed_by(nodes.mn, spi, inner)
        fa_address = str(fa.core.config.care_of)
        for data in (packet, packet, forged(sealed_by(nodes.mn, spi, inner)), packet[:30]):
            mn_tap.send(data, (fa_address, port))
        await wait_for(
            lambda: (
                counter(fa, "data.drops.replay") == 1
                and counter(fa, "data.drops.bad-tag") == 1
                and counter(fa, "data.drops.malformed") == 1
            ),
            what="the FA's drops",
        )
        # The endpoints: a packet in the wrong direction (Hop 0 from a peer endpoint is a
        # bad hop) and a forged one.
        agent_tap.send(forged(sealed_by(nodes.cn, spi, inner)), (MN_ADDRESS, port))
        agent_tap.send(sealed_by(nodes.cn, spi, inner), (MN_ADDRESS, port))
        await wait_for(lambda: counter(nodes.mn, "data.drops.bad-hop") == 2, what="the MN's drops")
        agent_tap.send(sealed_by(nodes.mn, spi, inner)[:40], (CN_ADDRESS, port))
        await wait_for(
            lambda: counter(nodes.cn, "data.drops.malformed") == 1, what="the CN's drops"
        )
    finally:
        for tap in (cn_tap, mn_tap, agent_tap):
            tap.close()
    # Nothing reached the applications.
    assert nodes.mn_client.queued == 0
    assert nodes.cn_client.queued == 0


CHUNK = 1000
CHUNKS = 600


def chunk(stream: bytes, index: int) -> bytes:
    """Chunk ``index`` of ``stream`` with its index in front (the application's framing)."""
    return struct.pack("!I", index) + stream[index * CHUNK : (index + 1) * CHUNK]


async def transfer(
    sender: MvpnClient,
    receiver: MvpnClient,
    to: ipaddress.IPv4Address,
    source: ipaddress.IPv4Address,
    move: Callable[[], object],
) -> tuple[str, str]:
    """Send CHUNKS chunks from ``sender`` to ``receiver``, calling ``move`` half-way; the
    sha256 of what was sent and of what arrived, reassembled by index."""
    stream = bytes((i * 7 + i // 251) & 0xFF for i in range(CHUNK * CHUNKS))
    arrived: dict[int, bytes] = {}

    @implementer(IMvpnApplication)
    class Collector:
        def data_received(self, peer: ipaddress.IPv4Address, data: bytes) -> None:
            if peer == source:
                (index,) = struct.unpack_from("!I", data)
                arrived.setdefault(index, data[4:])

        def session_started(self, info: object) -> None: ...

        def session_ended(self, info: object) -> None: ...

        def moved(self, info: object) -> None: ...

    collector = Collector()
    receiver.register(collector)
    try:
        for index in range(CHUNKS):
            assert sender.send(to, chunk(stream, index)), f"chunk {index} refused"
            if index == CHUNKS // 2:
                move()
            if index % 20 == 0:
                await settle(0.002)
        await wait_for(lambda: len(arrived) == CHUNKS, timeout=20, what="every chunk")
    finally:
        receiver.unregister(collector)
    received = b"".join(arrived[i] for i in range(CHUNKS))
    return hashlib.sha256(stream).hexdigest(), hashlib.sha256(received).hexdigest()


@pytest_twisted.ensureDeferred
async def test_handover_during_a_transfer_to_the_mobile_node_loses_nothing(
    nodes: Nodes,
) -> None:
    """The CN sends 600 KB in 600 datagrams; half-way the MN moves to the other FA (first
    contact there, Key Transfer). Every datagram arrives: the HA switches the tunnel, the
    new FA holds what comes before the Key Transfer, the old FA delivers what it had."""
    before = nodes.current_fa()
    target = FA2_ADDRESS if before is nodes.home.fas[0] else FA1_ADDRESS
    moved = nodes.mn.when("keys-transferred")
    sent, arrived = await transfer(
        nodes.cn_client, nodes.mn_client, HOME, CN, lambda: nodes.mn.move_to(target)
    )
    assert arrived == sent
    event = await moved
    assert event.fields["fa"] == target
    assert nodes.current_fa() is nodes.fa(target)
    assert counter(nodes.fa(target), "data.hold.expired") == 0
    assert counter(nodes.fa(target), "data.hold.overflow") == 0


@pytest_twisted.ensureDeferred
async def test_handover_during_a_transfer_from_the_mobile_node_loses_nothing(
    nodes: Nodes,
) -> None:
    """The same transfer in the other direction: the MN keeps sending through the new FA as
    soon as its first contact there succeeded; the new FA holds until the Key Transfer."""
    before = nodes.current_fa()
    target = FA2_ADDRESS if before is nodes.home.fas[0] else FA1_ADDRESS
    sent, arrived = await transfer(
        nodes.mn_client, nodes.cn_client, CN, HOME, lambda: nodes.mn.move_to(target)
    )
    assert arrived == sent
    await wait_for(lambda: nodes.current_fa() is nodes.fa(target), what="the new binding")


@pytest_twisted.ensureDeferred
async def test_request_for_an_unregistered_mobile_node_is_refused(tmp_path: Path) -> None:
    """A CN asking for a session with an MN that has no binding gets the draft's error
    message (7, "other": the draft has no closer code) from the HA: the CN reports the
    session refused, and no node keeps anything of the attempt."""
    world = World(tmp_path)
    home = Home(world)
    try:
        await home.ready()
        cn = world.start(build_cn_service(home.cn_config(), reactor))
        refused = await cn.when("session-refused")
        assert refused.fields["code"] == 7
        assert "not registered" in str(refused.fields["reason"])
        assert counter(home.ha, "sessions.refused.7") >= 1
        assert len(home.ha.core.dataplane) == 0
        assert cn.core.session_for(HOME) is None
    finally:
        await world.stop()
        await home.link.port.stopListening()
