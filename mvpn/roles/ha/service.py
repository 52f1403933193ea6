"""``build_ha_service(config, reactor)``: the home agent as a ``MultiService``.

Children, by name, started in this order (stopped in reverse):

- ``store``: the SQLite binding store (mode 0600: it holds registration keys), closed last;
- ``tc``: the Trusted Centre client (when ``tc`` is configured), for ``Ku_FA`` lookups;
- ``tc-registration``: registers the HA's certificate and its mobile nodes' with the TC;
- ``registration``: the registration UDP port (434 by default), opened in
  ``privilegedStartService``;
- ``control``: the MVPN control port (4350);
- ``data``: the data shell (:class:`~mvpn.roles.data.HaDataRelay`): the data port (UDP
  4351) for CNs' packets and one tunnel per FA (dialled at its ``tunnel_port``, TCP 4352);
- ``core``: starts the :class:`~mvpn.core.ha.HomeAgent` (bindings that survived a restart get
  their expiry timers again) and cancels every timer when stopped.

The HA's mobile nodes (draft 7.1: the HA created their keys) are the MN certificates of its
domain store whose home agent is this HA (``mvpn pki issue-mn --home-agent NAME``), plus any
listed in ``mobile_nodes``; each must carry its home address.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path

from twisted.application.service import Service
from twisted.logger import Logger

from mvpn.core.ha import HomeAgent, HomeAgentConfig, MobileNodeRecord, PlainNodeRecord
from mvpn.core.messages import AgentIdentity
from mvpn.core.store import BindingStore
from mvpn.crypto.random import RandomSource, system_random
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.errors import PkiError
from mvpn.roles.config import ConfigError, HaConfig
from mvpn.roles.data import HaDataRelay, tunnel_peer_keys
from mvpn.roles.ha.protocol import HomeAgentEndpoints
from mvpn.roles.shell import (
    AgentCredentials,
    AnyClock,
    CertificateSource,
    EffectRunner,
    RoleService,
    add_control_port,
    build_certificate_source,
    clock_datetime,
    load_agent_credentials,
)
from mvpn.tunnel.protocol import TunnelIdentity
from mvpn.wire.data import TunnelRole

DATABASE_MODE = 0o600
"""The binding store holds registration keys: only the HA's account may read it."""


class HomeAgentService(RoleService):
    """The HA's ``MultiService``; :attr:`core` is its sans-IO home agent, :attr:`data` its
    data shell."""

    core: HomeAgent
    store: BindingStore
    data: HaDataRelay


def add_ha_data(
    top: RoleService,
    core: HomeAgent,
    creds: AgentCredentials,
    certificates: CertificateSource,
    reactor: AnyClock,
    config: HaConfig,
) -> HaDataRelay:
    """The data shell as the child ``data`` of ``top``: packets of the core's data plane
    routed by its bindings; tunnels dialled when a binding appears or moves (the runner's
    events), so that an MN may speak first; counters under ``data.`` and ``tunnel.``."""

    def binding_for(
        home_address: ipaddress.IPv4Address,
    ) -> tuple[int, ipaddress.IPv4Address] | None:
        binding = core.binding(home_address)
        if binding is None or binding.fa_id is None:
            return None
        return (binding.fa_id, binding.care_of)

    data = HaDataRelay(
        core.dataplane,
        TunnelIdentity(creds.certificate.node_id, TunnelRole.HOME_AGENT, creds.keys),
        tunnel_peer_keys(certificates),
        binding_for,
        reactor,
        tunnel_port=config.tunnel_port,
        data_port=config.data_port,
        interface=config.interface,
    )
    top.add_child("data", data)
    top.add_counters("data.", data.counters)
    top.add_counters("tunnel.", data.tunnel_counters)
    top.runner.subscribe(data.event_received)
    return data


class _StoreService(Service):
    """Closes the binding store when the HA stops (after the core, which stops first)."""

    def __init__(self, store: BindingStore) -> None:
        self.store = store

    def stopService(self) -> None:
        super().stopService()
        self.store.close()


def open_binding_store(path: Path) -> BindingStore:
    """Open (creating it mode 0600 first) the HA's SQLite binding store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, DATABASE_MODE)
    os.close(fd)
    os.chmod(path, DATABASE_MODE)
    return BindingStore(path)


def store_mobile_nodes(store: Path, ha_name: str) -> list[Path]:
    """Certificates of the mobile nodes a domain store lists with ``ha_name`` as home agent
    (``nodes/<name>.json``, written by ``mvpn pki issue-mn``)."""
    found = []
    for identity in sorted((store / "nodes").glob("*.json")):
        try:
            doc = json.loads(identity.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{identity}: {e}") from e
        if isinstance(doc, dict) and doc.get("home_agent") == ha_name:
            found.append(identity.with_suffix(".pem"))
    return found


def mobile_node_records(
    paths: Iterable[Path], creds: AgentCredentials, clock: AnyClock
) -> tuple[list[MobileNodeRecord], list[NodeCertificate]]:
    """The records (home address, USER ID, public keys) of the MN certificates at ``paths``,
    each checked against the HA's CA; and the certificates themselves."""
    records, certs = [], []
    now = clock_datetime(clock)
    for path in paths:
        cert = NodeCertificate.load(path)
        try:
            cert.verify_issued_by(creds.ca, now)
        except PkiError as e:
            raise ConfigError(f"{path}: {e}") from e
        if cert.role is not Role.MN:
            raise ConfigError(f"{path}: a {cert.role.name} certificate, not a mobile node's")
        if cert.address is None or int(cert.address) == 0:
            raise ConfigError(f"{path}: the mobile node's certificate carries no home address")
        records.append(MobileNodeRecord(cert.address, cert.node_id, cert.public_keys))
        certs.append(cert)
    return records, certs


def build_ha_service(
    config: HaConfig,
    reactor: AnyClock,
    *,
    random: RandomSource = system_random,
    name: str = "ha",
) -> HomeAgentService:
    """The home agent service (not started). The binding store is opened here, so that a
    configuration or database problem stops twistd before anything listens."""
    creds = load_agent_credentials(config.files, Role.HA, reactor)
    address = config.address or creds.certificate.address
    if address is None:
        raise ConfigError(f"{config.files.certificate}: no address; set 'address'")
    certificates, tc_client = build_certificate_source(
        reactor, creds, config.tc, config.peer_certificates, config.peer_cas
    )
    mn_paths = list(config.mobile_nodes)
    if config.files.store is not None and config.files.name is not None:
        mn_paths += store_mobile_nodes(config.files.store, config.files.name)
    mobiles, mobile_certs = mobile_node_records(dict.fromkeys(mn_paths), creds, reactor)
    store = open_binding_store(config.database)
    log = Logger(namespace=f"mvpn.ha.{name}")
    runner = EffectRunner(reactor, {}, certificates, log)
    core = HomeAgent(
        AgentIdentity(creds.certificate.node_id, creds.keys, address),
        store,
        random,
        HomeAgentConfig(
            max_lifetime=config.lifetime,
            key_refresh_fraction=config.key_refresh,
            control_port=config.control_port,
        ),
        mobiles,
        [PlainNodeRecord(p.home_address, p.spi, p.key) for p in config.plain_nodes],
    )
    endpoints = HomeAgentEndpoints(core, runner, store, reactor)

    top = HomeAgentService("ha", name, runner, core.status)
    top.core = core
    top.store = store
    top.add_counters("", core.counters.snapshot)
    top.add_child("store", _StoreService(store))
    if tc_client is not None:
        top.add_tc_registration(tc_client, [creds.certificate, *mobile_certs])
    top.add_registration_port(reactor, config.port, endpoints.registration, config.interface)
    add_control_port(
        top,
        reactor,
        config.control_port,
        core.counters,
        interface=config.interface,
        handlers=core.control_handlers(),
    )
    top.data = add_ha_data(top, core, creds, certificates, reactor, config)
    top.add_core(core.start)
    log.info(
        "home agent {address}: {mobiles} mobile node(s), {plain} plain node(s), store {path}",
        address=str(address),
        mobiles=len(mobiles),
        plain=len(config.plain_nodes),
        path=str(config.database),
    )
    return top
