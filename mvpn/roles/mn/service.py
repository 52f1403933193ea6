"""``build_mn_service(config, reactor)``: a mobile node as a ``MultiService``.

Children, by name, started in this order:

- ``registration``: the UDP socket the MN registers from (and its FA answers to);
- ``control``: the MVPN control port (4350): Correspondent Information from its FA, the Key
  Transfer acknowledgement, errors;
- ``advertisement``: Agent Advertisements in, Solicitations out (raw ICMP or UDP 4349);
- ``data``: the data port (UDP 4351) through the current FA, and ``tun`` when configured: a
  TUN device with the home address (:func:`mvpn.roles.endpoint.add_endpoint`);
  :attr:`MobileNodeService.client` is the in-process API;
- ``core``: starts the :class:`~mvpn.core.mn.MobileNode` machine (solicit, pick an FA,
  first contact, re-register at 80 % of the lifetime, retransmit with RFC 5944 3.6.3
  backoff, move when the FA goes quiet) and cancels every timer when stopped.

:meth:`MobileNodeService.move_to` is the API to change foreign agent (draft 3.3); the control
socket's ``move`` command calls it (``mvpn move``). ``when`` (every role service has it)
waits for a lifecycle event ("registered", "reregistered", "denied", ...).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import cast

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mvpn.api import MvpnClient
from mvpn.core.messages import MobileCredentials
from mvpn.core.mn import MobileNode, MobileNodeConfig
from mvpn.crypto.random import RandomSource, system_random
from mvpn.pki.bundle import SmartCard
from mvpn.pki.errors import PkiError
from mvpn.roles.config import ConfigError, MnConfig
from mvpn.roles.control import RoleReport
from mvpn.roles.data import CurrentAgent
from mvpn.roles.endpoint import TunSettings, add_endpoint
from mvpn.roles.mn.protocol import MobileNodeEndpoints
from mvpn.roles.shell import (
    AnyClock,
    CertificateSource,
    EffectRunner,
    RoleService,
    add_control_port,
    clock_datetime,
)
from mvpn.roles.transport import BROADCAST, AdvertisementTransport
from mvpn.wire.icmp import AGENT_ADVERTISEMENT_TYPE


class MobileNodeService(RoleService):
    """A mobile node's ``MultiService``; :attr:`core` is its sans-IO machine."""

    core: MobileNode
    client: MvpnClient
    """The in-process API (:mod:`mvpn.api`): send to and receive from correspondent nodes."""

    def move_to(self, fa_address: str | None = None) -> None:
        """Leave the current FA for the one at ``fa_address`` (any other when ``None``).

        :raises ValueError: ``fa_address`` is not an IPv4 address.
        """
        if fa_address is not None:
            fa_address = str(ipaddress.IPv4Address(fa_address))
        self.runner.call(self.core.move_to, fa_address, self.runner.now())

    def report(self) -> RoleReport:
        """This node's control-socket entry, with the ``move`` command."""
        return dataclasses.replace(super().report(), move=self.move_to)


def load_credentials(config: MnConfig, clock: AnyClock) -> MobileCredentials:
    """The MN's smart card, checked (certificates valid and issued by its CA, keys matching),
    as the core's credentials; ``home_address`` in the config overrides the card's."""
    if config.smart_card is None:
        raise ConfigError(f"mobile node {config.name!r}: mode 'mvpn' needs 'smart_card'")
    card = SmartCard.load(config.smart_card, config.pin)
    try:
        card.verify(clock_datetime(clock))
    except PkiError as e:
        raise ConfigError(f"{config.smart_card}: {e}") from e
    home_address = config.home_address or card.certificate.address
    if home_address is None or int(home_address) == 0:
        raise ConfigError(f"{config.smart_card}: no home address on the card; set 'home_address'")
    return MobileCredentials(
        user_id=card.user_id,
        dvc_mac_id=card.dvc_mac_id,
        sc_id=card.sc_id,
        keys=card.keys,
        home_address=home_address,
        ha_address=config.home_agent or card.home_agent_address,
        ha_id=card.home_agent.node_id,
        ha_public=card.home_agent.public_keys,
    )


def core_config(config: MnConfig, clock: AnyClock) -> MobileNodeConfig:
    """The core's settings from the shell's."""
    # Solicitations go to every configured address through the transport's fan-out.
    solicitation = (BROADCAST, config.advertisement_port) if config.solicit_to else None
    if config.mode == "rfc5944":
        if config.home_address is None or config.home_agent is None:
            raise ConfigError(
                f"mobile node {config.name!r}: mode 'rfc5944' needs home_address and home_agent"
            )
        return MobileNodeConfig(
            config.home_address,
            config.home_agent,
            mode="rfc5944",
            lifetime=config.lifetime,
            registration_port=config.agent_port,
            solicitation_to=solicitation,
            plain_spi=config.plain_spi or 0,
            plain_key=config.plain_key or b"",
            control_port=config.control_port,
        )
    return MobileNodeConfig.from_credentials(
        load_credentials(config, clock),
        lifetime=config.lifetime,
        registration_port=config.agent_port,
        solicitation_to=solicitation,
        control_port=config.control_port,
    )


def build_mn_service(
    config: MnConfig,
    reactor: AnyClock,
    *,
    random: RandomSource = system_random,
) -> MobileNodeService:
    """The mobile node service (not started)."""
    try:
        core = MobileNode(core_config(config, reactor), random)
    except ValueError as e:
        raise ConfigError(f"mobile node {config.name!r}: {e}") from e
    log = Logger(namespace=f"mvpn.mn.{config.name}")
    # The MN needs no certificate lookup: its HA's keys are on its smart card and its FA's
    # come, signed by the HA, in the reply (docs/protocol.md 5.3, W).
    runner = EffectRunner(reactor, {}, CertificateSource(reactor), log)
    endpoints = MobileNodeEndpoints(core, runner)

    top = MobileNodeService("mn", f"mn:{config.name}", runner, core.status)
    top.core = core
    top.add_counters("", core.counters.snapshot)
    top.add_registration_port(reactor, config.port, endpoints.registration, config.address)
    add_control_port(
        top,
        reactor,
        config.control_port,
        core.counters,
        interface=config.address,
        handlers=core.control_handlers(),
    )
    top.add_advertisements(
        AdvertisementTransport(
            cast(IReactorTime, reactor),
            endpoints.advertisement,
            accept_types=(AGENT_ADVERTISEMENT_TYPE,),
            mode=config.advertisement,
            interface=config.address,
            port=config.advertisement_port,
            targets=tuple(t.as_tuple() for t in config.solicit_to),
        )
    )
    agent = CurrentAgent(config.data_port)
    runner.subscribe(agent.event_received)
    top.client = add_endpoint(
        top,
        reactor,
        plane_owner=core,
        address=core.core.config.home_address,
        peer_for=agent.peer_for,
        session_for=core.sessions.session_for,
        peer_of=lambda session: session.cn_addr,
        data_port=config.data_port,
        interface=config.address,
        tun=_tun_settings(config, core.core.config.home_address),
    )
    top.add_core(core.start)
    return top


def _tun_settings(config: MnConfig, home: ipaddress.IPv4Address) -> TunSettings | None:
    """The MN's TUN device: the home address, and the configured networks routed in."""
    if config.tun is None:
        return None
    return TunSettings(config.tun, ipaddress.IPv4Interface(f"{home}/32"), config.tun_routes)
