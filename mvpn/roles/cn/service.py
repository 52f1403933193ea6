"""``build_cn_service(config, reactor)``: the correspondent node as a ``MultiService``.

Children, by name, started in this order (stopped in reverse):

- ``tc``: the Trusted Centre client (when ``tc`` is configured), for ``Ku_HA`` and ``Ku_MN``
  lookups (peer certificates answer first, without the TC);
- ``tc-registration``: registers the CN's certificate with its TC (draft 3.1: a CN's public
  key is known to its TC, so the HAs can check it);
- ``control``: the MVPN control port (UDP 4350 by default), opened in
  ``privilegedStartService``; Types 5 (Communication Reply) and 7 (Error) go to the core;
- ``core``: asks every configured peer's home agent for a session at start
  (:meth:`~mvpn.core.cn.Correspondent.connect`) and cancels every timer when stopped.

- ``data``: the data port (``data_port``, UDP 4351): seals for and opens from the peers'
  home agents (:func:`mvpn.roles.endpoint.add_endpoint`); ``tun`` when configured: a TUN
  device routing every peer's home address into MVPN. :attr:`CorrespondentService.client`
  is the in-process API.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from twisted.internet.interfaces import IReactorUNIX
from twisted.logger import Logger

from mvpn.api import MvpnClient
from mvpn.core.cn import Correspondent, CorrespondentConfig
from mvpn.core.dataplane import DataSession
from mvpn.core.effects import Address, Effect
from mvpn.core.messages import AgentIdentity
from mvpn.crypto.random import RandomSource, system_random
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.domain import DomainStore
from mvpn.roles.cn.config import CnConfig, CnPeer
from mvpn.roles.config import ConfigError
from mvpn.roles.control import ControlService
from mvpn.roles.data import PeerLookup, address_text
from mvpn.roles.endpoint import TunSettings, add_endpoint
from mvpn.roles.shell import (
    AnyClock,
    EffectRunner,
    RoleService,
    add_control_port,
    build_certificate_source,
    load_agent_credentials,
)
from mvpn.roles.site import SiteService

__all__ = ["CorrespondentService", "ResolvedPeer", "build_cn_service", "build_cn_site"]


@dataclass(frozen=True)
class ResolvedPeer:
    """A configured peer with its HA's node ID known."""

    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    home_agent_id: int


class CorrespondentService(RoleService):
    """The CN's ``MultiService``; :attr:`core` is its sans-IO :class:`Correspondent`."""

    core: Correspondent
    config: CnConfig
    peers: tuple[ResolvedPeer, ...]
    client: MvpnClient
    """The in-process API (:mod:`mvpn.api`): send to and receive from the mobile nodes."""

    def connect(
        self,
        home_address: ipaddress.IPv4Address | str,
        home_agent: ipaddress.IPv4Address | str,
        home_agent_id: int,
    ) -> None:
        """Set up a session with one more mobile node (the API; draft 3.4)."""
        self.runner.call(
            self.core.connect, home_address, home_agent, home_agent_id, self.runner.now()
        )


def _ha_certificates(paths: Iterable[Path]) -> dict[str, NodeCertificate]:
    """The HA certificates among ``paths``, by name (checked against their CAs elsewhere)."""
    found = {}
    for path in paths:
        cert = NodeCertificate.load(path)
        if cert.role is Role.HA:
            found[cert.name] = cert
    return found


def resolve_peers(config: CnConfig) -> tuple[ResolvedPeer, ...]:
    """Each peer's HA ID: given, or from the HA certificate of that name among the peer
    certificates or in the CN's domain store; :class:`ConfigError` when none is found."""
    named = _ha_certificates(config.peer_certificates)
    store = DomainStore(config.files.store) if config.files.store is not None else None
    resolved = []
    for peer in config.peers:
        ha_id = peer.home_agent_id
        if ha_id is None:
            ha_id = _ha_id_by_name(peer, named, store)
        resolved.append(ResolvedPeer(peer.home_address, peer.home_agent, ha_id))
    return tuple(resolved)


def _ha_id_by_name(
    peer: CnPeer, named: dict[str, NodeCertificate], store: DomainStore | None
) -> int:
    name = peer.home_agent_name
    assert name is not None
    cert = named.get(name)
    if cert is None and store is not None:
        path = store.certificate_path(name)
        if path.exists():
            cert = NodeCertificate.load(path)
    if cert is None or cert.role is not Role.HA:
        raise ConfigError(
            f"peer {peer.home_address}: no home agent certificate named {name!r} among "
            "peer_certificates or in the store; give home_agent_id"
        )
    return cert.node_id


def build_cn_service(
    config: CnConfig,
    reactor: AnyClock,
    *,
    random: RandomSource = system_random,
    name: str | None = None,
) -> CorrespondentService:
    """The correspondent node service (not started); configuration problems raise
    :class:`ConfigError` here, before anything listens."""
    name = name or config.name
    creds = load_agent_credentials(config.files, Role.CN, reactor)
    address = config.address or creds.certificate.address
    if address is None or int(address) == 0:
        raise ConfigError(f"{config.files.certificate}: no address; set 'address'")
    if config.control_port == 0:
        raise ConfigError("a correspondent node needs its control port (control_port 0)")
    certificates, tc_client = build_certificate_source(
        reactor, creds, config.tc, config.peer_certificates, config.peer_cas
    )
    peers = resolve_peers(config)
    log = Logger(namespace=f"mvpn.cn.{name}")
    runner = EffectRunner(reactor, {}, certificates, log)
    core = Correspondent(
        AgentIdentity(creds.certificate.node_id, creds.keys, address),
        CorrespondentConfig(control_port=config.control_port),
        random,
    )

    top = CorrespondentService("cn", name, runner, core.status)
    top.core = core
    top.config = config
    top.peers = peers
    top.add_counters("", core.counters.snapshot)
    if tc_client is not None:
        top.add_tc_registration(tc_client, [creds.certificate])
    add_control_port(
        top,
        reactor,
        config.control_port,
        core.counters,
        interface=config.interface,
        handlers=core.control_handlers(),
    )

    def start(now: float) -> list[Effect]:
        effects: list[Effect] = []
        for peer in peers:
            effects += core.connect(peer.home_address, peer.home_agent, peer.home_agent_id, now)
        return effects

    top.client = add_endpoint(
        top,
        reactor,
        plane_owner=core,
        address=address,
        peer_for=_ha_data_port(core, config.data_port),
        session_for=core.session_for,
        peer_of=lambda session: session.mn_addr,
        data_port=config.data_port,
        interface=config.interface,
        tun=_tun_settings(config, address, peers),
    )
    top.add_core(start)
    log.info(
        "correspondent node {address} ({cn_id}): {count} peer(s)",
        address=str(address),
        cn_id=f"{creds.certificate.node_id:#x}",
        count=len(peers),
    )
    return top


def _ha_data_port(core: Correspondent, data_port: int) -> PeerLookup:
    """Where the CN's packets of a session go: the MN's HA, at the data port (protocol.md 8)."""

    def peer_for(session: DataSession) -> Address | None:
        if session.mn_addr is None:
            return None
        ha = core.ha_address_for(session.mn_addr)
        return (address_text(ha), data_port) if ha is not None else None

    return peer_for


def _tun_settings(
    config: CnConfig, address: ipaddress.IPv4Address, peers: Iterable[ResolvedPeer]
) -> TunSettings | None:
    """The CN's TUN device: its own address, and every peer's home address routed in."""
    if config.tun is None:
        return None
    return TunSettings(
        config.tun,
        ipaddress.IPv4Interface(f"{address}/32"),
        tuple(ipaddress.IPv4Network(f"{p.home_address}/32") for p in peers),
    )


def build_cn_site(
    config: CnConfig, reactor: AnyClock, *, random: RandomSource = system_random
) -> SiteService:
    """The CN and, when ``control_socket`` is set, the status socket answering for it (what
    ``twistd mvpn-cn`` and ``tac/cn.tac`` run)."""
    site = SiteService()
    cn = build_cn_service(config, reactor, random=random)
    cn.setServiceParent(site)
    if config.control_socket is not None:
        control = ControlService(cast(IReactorUNIX, reactor), config.control_socket)
        control.add(cn.report())
        control.setName("control")
        control.setServiceParent(site)
    return site
