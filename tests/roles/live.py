"""Helpers of the live role tests: domains provisioned at test time with mvpn.pki, configs
for HA, FA and MN on 127.0.0.0/8 with kernel-chosen ports, and waiting for events."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater

from mvpn.pki.bundle import SmartCard
from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore

reactor: Any = _reactor

PASSWORD = b"live roles test password"
HA_ADDRESS = "127.0.0.1"
"""The home agent's address in its certificate (and where it listens)."""
FA1_ADDRESS = "127.0.0.2"
FA2_ADDRESS = "127.0.0.3"
MN_ADDRESS = "127.0.0.4"
"""Where mobile nodes listen: on loopback every role has its own 127/8 address, so that
agents are told apart by address as on a real link."""
CN_ADDRESS = "127.0.0.5"
"""The correspondent node (its certificate, of the home domain, carries this address)."""
HOME_ADDRESS = "10.1.0.5"
PLAIN_HOME_ADDRESS = "10.1.0.9"


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody has bound right now on ``host`` (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def now() -> datetime.datetime:
    """Wall-clock now: the services check certificates against the reactor's real time."""
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Domains:
    """A home domain (TC, HA, mobile nodes) and a visited domain (TC, two FAs)."""

    root: Path
    home: DomainStore = field(init=False)
    visited: DomainStore = field(init=False)

    def __post_init__(self) -> None:
        self.home = DomainStore.init(self.root / "home", "home.example", PASSWORD, now())
        self.visited = DomainStore.init(self.root / "visited", "visited.example", PASSWORD, now())
        self.home.issue(Role.HA, "ha", PASSWORD, now(), address=ipaddress.IPv4Address(HA_ADDRESS))
        self.visited.issue(
            Role.FA, "fa1", PASSWORD, now(), address=ipaddress.IPv4Address(FA1_ADDRESS)
        )
        self.visited.issue(
            Role.FA, "fa2", PASSWORD, now(), address=ipaddress.IPv4Address(FA2_ADDRESS)
        )
        self.home.issue(Role.CN, "cn", PASSWORD, now(), address=ipaddress.IPv4Address(CN_ADDRESS))

    def smart_card(self, name: str, home_address: str = HOME_ADDRESS) -> Path:
        """Issue a mobile node of the home domain; its card is saved as ``<name>.card``."""
        card: SmartCard = self.home.issue_mobile_node(
            name, "ha", PASSWORD, now(), address=ipaddress.IPv4Address(home_address)
        )
        path = self.root / f"{name}.card"
        card.save(path)
        return path


def settle(seconds: float = 0.05) -> Deferred[None]:
    """Let the reactor run for ``seconds``."""
    return deferLater(reactor, seconds, lambda: None)


async def wait_for(
    condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` every 20 ms until it is true; AssertionError after ``timeout``."""
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await settle(0.02)
        waited += 0.02


def common_free_udp_port(*hosts: str) -> int:
    """A UDP port free on every one of ``hosts`` right now."""
    return _common_free_port(socket.SOCK_DGRAM, free_udp_port, hosts)


def _common_free_port(kind: int, free: Callable[[str], int], hosts: tuple[str, ...]) -> int:
    for _ in range(100):
        port = free(hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise AssertionError(f"no port free on all of {hosts}")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def common_free_tcp_port(*hosts: str) -> int:
    """A TCP port free on every one of ``hosts`` right now."""
    return _common_free_port(socket.SOCK_STREAM, free_tcp_port, hosts)


class Link(DatagramProtocol):
    """A test peer on the foreign link: a UDP socket whose datagrams queue up by source."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.port: Any = None

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.received.append((datagram, addr))

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        cast(Any, self.transport).write(data, to)

    @property
    def address(self) -> tuple[str, int]:
        host = self.port.getHost()
        return (host.host, host.port)

    def take(self, source: tuple[str, int] | None = None) -> list[bytes]:
        """The datagrams received (from ``source`` only, when given), removed."""
        taken = [d for d, a in self.received if source is None or a == source]
        self.received = [(d, a) for d, a in self.received if source is not None and a != source]
        return taken

    async def next_from(self, source: tuple[str, int], timeout: float = 10.0) -> bytes:
        """Wait for the next datagram from ``source``."""
        await wait_for(lambda: any(a == source for _, a in self.received), timeout, f"{source}")
        for i, (data, addr) in enumerate(self.received):
            if addr == source:
                del self.received[i]
                return data
        raise AssertionError("unreachable")


def open_link(host: str = MN_ADDRESS) -> Link:
    """A :class:`Link` listening on ``host``, any port."""
    link = Link()
    link.port = reactor.listenUDP(0, link, interface=host)
    return link


class World:
    """Two domains with their Trusted Centres running in this process, trusting each other;
    services are added to it and all stopped by :meth:`stop`."""

    def __init__(self, root: Path) -> None:
        from mvpn.roles.tc.config import PeerConfig, TcConfig
        from mvpn.roles.tc.service import build_tc_service

        self.root = root
        self.domains = Domains(root)
        home, visited = self.domains.home, self.domains.visited
        self.tc_ports = {"home": free_tcp_port(), "visited": free_tcp_port()}
        self.services: list[Any] = []
        for store, peer, key, peer_key in (
            (home, visited, "home", "visited"),
            (visited, home, "visited", "home"),
        ):
            config = TcConfig.from_store(
                store.path,
                port=self.tc_ports[key],
                interface="127.0.0.1",
                peers=(
                    PeerConfig(peer.domain, peer.ca_path, "127.0.0.1", self.tc_ports[peer_key]),
                ),
            )
            self.start(build_tc_service(config, reactor))

    def start(self, service: Any) -> Any:
        service.privilegedStartService()
        service.startService()
        self.services.append(service)
        return service

    async def stop(self) -> None:
        for service in reversed(self.services):
            if service.running:
                await maybe(service.stopService())
        self.services.clear()


async def maybe(result: object) -> None:
    """Await ``result`` if it is a Deferred (stopService may return one or None)."""
    if isinstance(result, Deferred):
        await result


class Home:
    """A world with a home agent and two foreign agents running, all through the TCs."""

    def __init__(
        self,
        world: World,
        lifetime: int = 300,
        plain_key: bytes = b"",
        advertisement_interval: float = 0.5,
        advertisement_lifetime: int = 9,
        advertisement: Any = None,
    ) -> None:
        from mvpn.roles.config import AgentFiles, Endpoint, FaConfig, HaConfig, PlainNode
        from mvpn.roles.fa.service import build_fa_service
        from mvpn.roles.ha.service import build_ha_service
        from mvpn.roles.transport import AdvertisementMode

        self.world = world
        self.advertisement = advertisement or AdvertisementMode.UDP
        domains = world.domains
        self.card = domains.smart_card("alice")
        self.link = open_link()
        # One MVPN control port free on every address: nodes assume their peers listen on
        # their own control port (docs/protocol.md 7.7), and the default 4350 would clash
        # with other test runs.
        self.control_port = common_free_udp_port(
            HA_ADDRESS, FA1_ADDRESS, FA2_ADDRESS, MN_ADDRESS, CN_ADDRESS
        )
        # The data and tunnel ports follow the same rule (docs/protocol.md 2).
        self.data_port = common_free_udp_port(
            HA_ADDRESS, FA1_ADDRESS, FA2_ADDRESS, MN_ADDRESS, CN_ADDRESS
        )
        self.tunnel_port = common_free_tcp_port(FA1_ADDRESS, FA2_ADDRESS)
        self.ha_config = HaConfig(
            files=AgentFiles.from_store(domains.home.path, "ha"),
            database=world.root / "ha.sqlite",
            port=free_udp_port(HA_ADDRESS),
            interface=HA_ADDRESS,
            control_port=self.control_port,
            data_port=self.data_port,
            tunnel_port=self.tunnel_port,
            tc=Endpoint("127.0.0.1", world.tc_ports["home"]),
            lifetime=lifetime,
            plain_nodes=(
                (PlainNode(ipaddress.IPv4Address(PLAIN_HOME_ADDRESS), 1000, plain_key),)
                if plain_key
                else ()
            ),
        )
        self.ha = world.start(build_ha_service(self.ha_config, reactor))
        self.fas = []
        # One registration port and one advertisement port free on both FA addresses, as
        # on two real links where every agent uses the same well-known ports.
        self.fa_port = common_free_udp_port(FA1_ADDRESS, FA2_ADDRESS)
        self.adv_port = common_free_udp_port(FA1_ADDRESS, FA2_ADDRESS, MN_ADDRESS)
        for name, address in (("fa1", FA1_ADDRESS), ("fa2", FA2_ADDRESS)):
            config = FaConfig(
                files=AgentFiles.from_store(domains.visited.path, name),
                port=self.fa_port,
                interface=address,
                control_port=self.control_port,
                data_port=self.data_port,
                tunnel_port=self.tunnel_port,
                home_agent_port=self.ha_config.port,
                tc=Endpoint("127.0.0.1", world.tc_ports["visited"]),
                advertisement=self.advertisement,
                advertisement_port=self.adv_port,
                advertise_to=(Endpoint(*self.link.address), Endpoint(MN_ADDRESS, self.adv_port)),
                advertisement_interval=advertisement_interval,
                advertisement_lifetime=advertisement_lifetime,
                lifetime=lifetime,
            )
            self.fas.append(world.start(build_fa_service(config, reactor, name=name)))

    async def ready(self) -> None:
        """Wait until every agent has registered its certificate with its TC."""
        for agent in (self.ha, *self.fas):

            def registered(agent: Any = agent) -> bool:
                return bool(agent.counters().get("tc_registrations", 0) >= 1)

            await wait_for(registered, what=f"{agent.name} registered with its TC")

    def mobile_config(self, **changes: Any) -> Any:
        """An MnConfig for the MVPN mobile node whose card this world issued."""
        from mvpn.roles.config import Endpoint, MnConfig

        config = MnConfig(
            smart_card=self.card,
            name="alice",
            address=MN_ADDRESS,
            advertisement=self.advertisement,
            advertisement_port=self.adv_port,
            solicit_to=(
                Endpoint(FA1_ADDRESS, self.adv_port),
                Endpoint(FA2_ADDRESS, self.adv_port),
            ),
            agent_port=self.fa_port,
            control_port=self.control_port,
            data_port=self.data_port,
        )
        return dataclasses.replace(config, **changes)

    def cn_config(self, **changes: Any) -> Any:
        """A CnConfig for the home domain's correspondent node, with this world's MN as its
        peer (the HA named by its certificate in the store), through the home TC."""
        from mvpn.roles.cn.config import CnConfig, CnPeer
        from mvpn.roles.config import AgentFiles, Endpoint

        config = CnConfig(
            files=AgentFiles.from_store(self.world.domains.home.path, "cn"),
            interface=CN_ADDRESS,
            control_port=self.control_port,
            data_port=self.data_port,
            tc=Endpoint("127.0.0.1", self.world.tc_ports["home"]),
            peers=(
                CnPeer(
                    ipaddress.IPv4Address(HOME_ADDRESS),
                    ipaddress.IPv4Address(HA_ADDRESS),
                    home_agent_name="ha",
                ),
            ),
        )
        return dataclasses.replace(config, **changes)

    def fa_registration(self, index: int) -> tuple[str, int]:
        fa = self.fas[index]
        return (fa.core.config.care_of.exploded, fa.getServiceNamed("registration").port)

    def fa_advertisement(self, index: int) -> tuple[str, int]:
        fa = self.fas[index]
        return (fa.core.config.care_of.exploded, fa.getServiceNamed("advertisement").port)
