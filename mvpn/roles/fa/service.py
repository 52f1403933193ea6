"""``build_fa_service(config, reactor)``: the foreign agent as a ``MultiService``.

Children, by name, started in this order:

- ``tc``: the Trusted Centre client (when ``tc`` is configured), for ``Ku_HA`` lookups;
- ``registration``: the registration UDP port (434 by default), opened in
  ``privilegedStartService``;
- ``control``: the MVPN control port (4350);
- ``advertisement``: Agent Advertisements out, Solicitations in (raw ICMP or UDP 4349);
- ``data``: the data shell (:class:`~mvpn.roles.data.FaDataRelay`): the tunnel port (TCP
  4352) home agents connect to, the data port (UDP 4351) of visitors' packets, and the
  handover hold, released when the core reports "sessions-transferred";
- ``core``: starts the :class:`~mvpn.core.fa.ForeignAgent` (first advertisement, then one per
  interval) and cancels every timer when stopped.
"""

from __future__ import annotations

import ipaddress
from typing import cast

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mvpn.core.fa import ForeignAgent, ForeignAgentConfig
from mvpn.crypto.random import RandomSource, system_random
from mvpn.pki.certificate import Role
from mvpn.roles.config import ConfigError, FaConfig
from mvpn.roles.data import FaDataRelay, tunnel_peer_keys
from mvpn.roles.fa.protocol import ForeignAgentEndpoints
from mvpn.roles.shell import (
    AgentCredentials,
    AnyClock,
    CertificateSource,
    EffectRunner,
    RoleService,
    add_control_port,
    build_certificate_source,
    load_agent_credentials,
)
from mvpn.roles.transport import (
    BROADCAST,
    AdvertisementMode,
    AdvertisementTransport,
)
from mvpn.tunnel.protocol import TunnelIdentity
from mvpn.wire.data import TunnelRole
from mvpn.wire.icmp import AGENT_SOLICITATION_TYPE

ALL_SYSTEMS = "224.0.0.1"
"""RFC 5944 2.3.1: unsolicited advertisements go to the all-systems multicast group (or the
limited broadcast)."""


class ForeignAgentService(RoleService):
    """The FA's ``MultiService``; :attr:`core` is its sans-IO foreign agent, :attr:`data`
    its data shell."""

    core: ForeignAgent
    data: FaDataRelay


def add_fa_data(
    top: RoleService,
    core: ForeignAgent,
    creds: AgentCredentials,
    certificates: CertificateSource,
    reactor: AnyClock,
    config: FaConfig,
) -> FaDataRelay:
    """The data shell as the child ``data`` of ``top``: packets of the core's data plane
    routed to its visitors and their HAs; the runner's events release the handover hold and
    keep the visitors' link addresses; counters under ``data.`` and ``tunnel.``."""
    data = FaDataRelay(
        core.dataplane,
        TunnelIdentity(creds.certificate.node_id, TunnelRole.FOREIGN_AGENT, creds.keys),
        tunnel_peer_keys(certificates),
        core.visitor,
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


def build_fa_service(
    config: FaConfig,
    reactor: AnyClock,
    *,
    random: RandomSource = system_random,
    name: str = "fa",
) -> ForeignAgentService:
    """The foreign agent service (not started)."""
    creds = load_agent_credentials(config.files, Role.FA, reactor)
    care_of = config.address or creds.certificate.address
    if care_of is None:
        raise ConfigError(f"{config.files.certificate}: no address; set 'address'")
    certificates, tc_client = build_certificate_source(
        reactor, creds, config.tc, config.peer_certificates, config.peer_cas
    )
    log = Logger(namespace=f"mvpn.fa.{name}")
    runner = EffectRunner(reactor, {}, certificates, log)
    # With targets, the UDP form's "multicast" is the list of configured addresses.
    group = BROADCAST if config.advertisement is AdvertisementMode.UDP else ALL_SYSTEMS
    try:
        fa_config = ForeignAgentConfig(
            fa_id=creds.certificate.node_id,
            keys=creds.keys,
            care_of=ipaddress.IPv4Address(care_of),
            max_lifetime=config.lifetime,
            ha_port=config.home_agent_port,
            advertisement_to=(group, config.advertisement_port),
            advertisement_interval=config.advertisement_interval,
            advertisement_lifetime=config.advertisement_lifetime,
            control_port=config.control_port,
        )
        core = ForeignAgent(fa_config, random)
    except ValueError as e:
        raise ConfigError(f"foreign agent {name!r}: {e}") from e
    endpoints = ForeignAgentEndpoints(core, runner)

    top = ForeignAgentService("fa", name, runner, core.status)
    top.core = core
    top.add_counters("", core.counters.snapshot)
    if tc_client is not None:
        top.add_tc_registration(tc_client, [creds.certificate])
    top.add_registration_port(reactor, config.port, endpoints.registration, config.interface)
    add_control_port(
        top,
        reactor,
        config.control_port,
        core.counters,
        interface=config.interface,
        handlers=core.control_handlers(),
    )
    top.add_advertisements(
        AdvertisementTransport(
            cast(IReactorTime, reactor),
            endpoints.solicitation,
            accept_types=(AGENT_SOLICITATION_TYPE,),
            mode=config.advertisement,
            interface=config.interface,
            port=config.advertisement_port,
            targets=tuple(t.as_tuple() for t in config.advertise_to),
        )
    )
    top.data = add_fa_data(top, core, creds, certificates, reactor, config)
    top.add_core(core.start)
    return top
