"""The demo's world: two domains provisioned with :mod:`mvpn.pki` in a directory, and every
role built as a service of this process on its own loopback address (issue 6, ``make
demo``).

Layout (draft section 2: a home network with its HA and a correspondent, a visited network
with two foreign agents, a Trusted Centre per domain)::

    home.example     TC 127.0.10.1   HA 127.0.10.2   CN 127.0.10.3   MN card (home 10.1.0.5)
    visited.example  TC 127.0.10.11  FA1 127.0.10.12  FA2 127.0.10.13
    foreign link     the MN listens on 127.0.10.20

Every port is chosen by the kernel (bound, read, released) so that the demo never needs root
and never collides with a running deployment on the well-known ports. Where the protocol
assumes a peer uses the node's own port number (control, data and tunnel ports,
docs/protocol.md 2 and 7.7; the FAs' registration and advertisement ports, as on real links)
one number free on every address concerned is picked. Advertisements travel as ICMP bytes in
UDP (raw ICMP needs root, PROFILE.md "Transports").
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred

from mvpn.api import MvpnClient
from mvpn.pki.bundle import SmartCard
from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore
from mvpn.roles.cn.config import CnConfig, CnPeer
from mvpn.roles.cn.service import CorrespondentService, build_cn_service
from mvpn.roles.config import AgentFiles, Endpoint, FaConfig, HaConfig, MnConfig
from mvpn.roles.fa.service import build_fa_service
from mvpn.roles.ha.service import build_ha_service
from mvpn.roles.mn.service import MobileNodeService, build_mn_service
from mvpn.roles.shell import RoleService
from mvpn.roles.tc.config import PeerConfig, TcConfig
from mvpn.roles.tc.service import build_tc_service
from mvpn.roles.transport import AdvertisementMode

__all__ = [
    "CN_ADDRESS",
    "FA1_ADDRESS",
    "FA2_ADDRESS",
    "HA_ADDRESS",
    "HOME_ADDRESS",
    "MN_ADDRESS",
    "DemoWorld",
    "Ports",
    "provision",
]

PASSWORD = b"mvpn demo: throw-away keys"
"""Protects the CA and agent keys in the temporary stores, which live only for one run."""

HOME_DOMAIN = "home.example"
VISITED_DOMAIN = "visited.example"
HOME_TC_ADDRESS = "127.0.10.1"
HA_ADDRESS = "127.0.10.2"
CN_ADDRESS = "127.0.10.3"
VISITED_TC_ADDRESS = "127.0.10.11"
FA1_ADDRESS = "127.0.10.12"
FA2_ADDRESS = "127.0.10.13"
MN_ADDRESS = "127.0.10.20"
"""Each node has its own 127/8 address (Linux answers on all of 127.0.0.0/8), so agents are
told apart by address as on a real link; 127.0.10.0/24 keeps clear of the test suite's
127.0.0.x."""
HOME_ADDRESS = "10.1.0.5"
"""The MN's home address: inside the tunnel only, never bound on this host."""

REGISTRATION_LIFETIME = 3
"""Seconds the MN asks for: it re-registers at 80 % of it (mvpn.core.mn.REREGISTER_AT), so
the demo sees a re-registration within 2.4 s."""

ADVERTISEMENT_INTERVAL = 0.2
"""Seconds between advertisements: a short interval makes discovery quick on loopback."""

ADVERTISEMENT_LIFETIME = 3
"""Seconds an MN trusts one advertisement: well over the interval."""


def _now() -> datetime.datetime:
    """Wall-clock now: the services check certificates against the reactor's real time."""
    return datetime.datetime.now(datetime.UTC)


def _free_port(kind: int, hosts: tuple[str, ...]) -> int:
    """A port number of ``kind`` (UDP or TCP) free on every one of ``hosts`` right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind((hosts[0], 0))
            port: int = first.getsockname()[1]
            try:
                for host in hosts[1:]:
                    with socket.socket(socket.AF_INET, kind) as other:
                        other.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no port free on all of {hosts}")


def free_udp(*hosts: str) -> int:
    """A UDP port free on every one of ``hosts``."""
    return _free_port(socket.SOCK_DGRAM, hosts)


def free_tcp(*hosts: str) -> int:
    """A TCP port free on every one of ``hosts``."""
    return _free_port(socket.SOCK_STREAM, hosts)


@dataclass(frozen=True)
class Domains:
    """The two provisioned domain stores and the MN's smart card."""

    home: DomainStore
    visited: DomainStore
    card: Path


def provision(root: Path) -> Domains:
    """``mvpn pki`` in code: the home domain (its TC, the HA, the CN and the MN's smart card,
    whose home agent is the HA) and the visited domain (its TC, FA1 and FA2), under
    ``root``."""
    home = DomainStore.init(root / "home", HOME_DOMAIN, PASSWORD, _now())
    visited = DomainStore.init(root / "visited", VISITED_DOMAIN, PASSWORD, _now())
    home.issue(Role.HA, "ha", PASSWORD, _now(), address=ipaddress.IPv4Address(HA_ADDRESS))
    home.issue(Role.CN, "cn", PASSWORD, _now(), address=ipaddress.IPv4Address(CN_ADDRESS))
    for name, address in (("fa1", FA1_ADDRESS), ("fa2", FA2_ADDRESS)):
        visited.issue(Role.FA, name, PASSWORD, _now(), address=ipaddress.IPv4Address(address))
    card: SmartCard = home.issue_mobile_node(
        "mn", "ha", PASSWORD, _now(), address=ipaddress.IPv4Address(HOME_ADDRESS)
    )
    path = root / "mn.card"
    card.save(path)
    return Domains(home, visited, path)


@dataclass(frozen=True)
class Ports:
    """The port numbers of one run (all kernel-chosen)."""

    home_tc: int
    visited_tc: int
    ha_registration: int
    fa_registration: int
    advertisement: int
    control: int
    data: int
    tunnel: int

    @classmethod
    def choose(cls) -> Ports:
        """Pick every port (see the module docstring for which must be equal where)."""
        everyone = (HA_ADDRESS, CN_ADDRESS, FA1_ADDRESS, FA2_ADDRESS, MN_ADDRESS)
        return cls(
            home_tc=free_tcp(HOME_TC_ADDRESS),
            visited_tc=free_tcp(VISITED_TC_ADDRESS),
            ha_registration=free_udp(HA_ADDRESS),
            fa_registration=free_udp(FA1_ADDRESS, FA2_ADDRESS),
            advertisement=free_udp(FA1_ADDRESS, FA2_ADDRESS, MN_ADDRESS),
            control=free_udp(*everyone),
            data=free_udp(*everyone),
            tunnel=free_tcp(FA1_ADDRESS, FA2_ADDRESS),
        )


async def _maybe(result: object) -> None:
    if isinstance(result, Deferred):
        await result


class DemoWorld:
    """Both domains' services, built on demand and all stopped by :meth:`stop`.

    ``reactor`` is the reactor every service runs on; ``root`` the directory holding the
    stores, the HA's database and nothing else.
    """

    def __init__(self, root: Path, reactor: Any, domains: Domains, ports: Ports) -> None:
        self.root = root
        self.reactor = reactor
        self.domains = domains
        self.ports = ports
        self.services: list[Any] = []
        self.ha: RoleService | None = None
        self.fas: dict[str, RoleService] = {}
        self.mn: MobileNodeService | None = None
        self.cn: CorrespondentService | None = None

    def _start(self, service: Any) -> Any:
        # Recorded before starting: a service that fails half-way is still stopped.
        self.services.append(service)
        service.privilegedStartService()
        service.startService()
        return service

    def start_trusted_centres(self) -> None:
        """Both TCs, each knowing the other (federation: a lookup of a visited-domain node by
        the HA goes through its own TC to the peer TC, draft 7.2)."""
        home, visited = self.domains.home, self.domains.visited
        sides = (
            (home, HOME_TC_ADDRESS, self.ports.home_tc, visited, VISITED_TC_ADDRESS),
            (visited, VISITED_TC_ADDRESS, self.ports.visited_tc, home, HOME_TC_ADDRESS),
        )
        for store, address, port, peer, peer_address in sides:
            peer_port = self.ports.visited_tc if peer is visited else self.ports.home_tc
            config = TcConfig.from_store(
                store.path,
                port=port,
                interface=address,
                peers=(PeerConfig(peer.domain, peer.ca_path, peer_address, peer_port),),
            )
            self._start(build_tc_service(config, self.reactor))

    def start_ha(self) -> RoleService:
        """The home agent (it registers its own and its mobile nodes' certificates with the
        home TC at start)."""
        config = HaConfig(
            files=AgentFiles.from_store(self.domains.home.path, "ha"),
            database=self.root / "ha.sqlite",
            port=self.ports.ha_registration,
            interface=HA_ADDRESS,
            control_port=self.ports.control,
            data_port=self.ports.data,
            tunnel_port=self.ports.tunnel,
            tc=Endpoint(HOME_TC_ADDRESS, self.ports.home_tc),
            lifetime=REGISTRATION_LIFETIME,
        )
        self.ha = self._start(build_ha_service(config, self.reactor))
        return self.ha

    def start_fa(self, name: str) -> RoleService:
        """Foreign agent ``name`` ("fa1" or "fa2"), advertising to the MN's link address."""
        address = FA1_ADDRESS if name == "fa1" else FA2_ADDRESS
        config = FaConfig(
            files=AgentFiles.from_store(self.domains.visited.path, name),
            port=self.ports.fa_registration,
            interface=address,
            control_port=self.ports.control,
            data_port=self.ports.data,
            tunnel_port=self.ports.tunnel,
            home_agent_port=self.ports.ha_registration,
            tc=Endpoint(VISITED_TC_ADDRESS, self.ports.visited_tc),
            advertisement=AdvertisementMode.UDP,
            advertisement_port=self.ports.advertisement,
            advertise_to=(Endpoint(MN_ADDRESS, self.ports.advertisement),),
            advertisement_interval=ADVERTISEMENT_INTERVAL,
            advertisement_lifetime=ADVERTISEMENT_LIFETIME,
        )
        fa: RoleService = self._start(build_fa_service(config, self.reactor, name=name))
        self.fas[name] = fa
        return fa

    def start_mn(self) -> MobileNodeService:
        """The mobile node with its smart card, soliciting both FAs' advertisement ports."""
        config = MnConfig(
            smart_card=self.domains.card,
            name="mn",
            address=MN_ADDRESS,
            advertisement=AdvertisementMode.UDP,
            advertisement_port=self.ports.advertisement,
            solicit_to=(
                Endpoint(FA1_ADDRESS, self.ports.advertisement),
                Endpoint(FA2_ADDRESS, self.ports.advertisement),
            ),
            agent_port=self.ports.fa_registration,
            control_port=self.ports.control,
            data_port=self.ports.data,
            lifetime=REGISTRATION_LIFETIME,
        )
        self.mn = self._start(build_mn_service(config, self.reactor))
        return self.mn

    def start_cn(self) -> CorrespondentService:
        """The correspondent node; at start it asks the HA for a session with the MN."""
        config = CnConfig(
            files=AgentFiles.from_store(self.domains.home.path, "cn"),
            interface=CN_ADDRESS,
            control_port=self.ports.control,
            data_port=self.ports.data,
            tc=Endpoint(HOME_TC_ADDRESS, self.ports.home_tc),
            peers=(
                CnPeer(
                    ipaddress.IPv4Address(HOME_ADDRESS),
                    ipaddress.IPv4Address(HA_ADDRESS),
                    home_agent_name="ha",
                ),
            ),
        )
        self.cn = self._start(build_cn_service(config, self.reactor))
        return self.cn

    def roles(self) -> dict[str, RoleService]:
        """The running role services by the demo's short names (HA, FA1, FA2, MN, CN)."""
        named: dict[str, RoleService] = {}
        if self.ha is not None:
            named["HA"] = self.ha
        for name, fa in self.fas.items():
            named[name.upper()] = fa
        if self.mn is not None:
            named["MN"] = self.mn
        if self.cn is not None:
            named["CN"] = self.cn
        return named

    def clients(self) -> tuple[MvpnClient, MvpnClient]:
        """The API clients of the MN and the CN."""
        assert self.mn is not None and self.cn is not None
        return self.mn.client, self.cn.client

    async def stop(self, on_error: Callable[[str], None] | None = None) -> None:
        """Stop every service, last started first; an error stopping one is reported through
        ``on_error`` and the others are still stopped."""
        while self.services:
            service = self.services.pop()
            if not service.running:
                continue
            try:
                await _maybe(service.stopService())
            except Exception as e:
                if on_error is not None:
                    on_error(f"stopping {service.name}: {e}")
