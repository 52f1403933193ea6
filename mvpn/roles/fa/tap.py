"""``twistd mvpn-fa``: the foreign agent's command-line options and ``makeService``.

::

    twistd -n mvpn-fa --store /etc/mvpn/visited --name fa --address 192.0.2.1 \\
        --tc 192.0.2.10:4353 --control-socket /run/mvpn-fa.sock
    twistd -n mvpn-fa --config /etc/mvpn/fa.toml        # its [fa] table

Options given on the command line override the configuration file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from twisted.application.service import IService

from mvpn.roles.agent_options import COMMON_PARAMETERS, AgentOptions, make_site_service
from mvpn.roles.config import Endpoint, FaConfig, SiteConfig, fa_from_table
from mvpn.roles.transport import AdvertisementMode


class Options(AgentOptions[FaConfig]):
    """Options of ``twistd mvpn-fa``."""

    ROLE: ClassVar[str] = "fa"

    synopsis = "[--config FILE | --store DIR --name NAME] [options]"
    optParameters = [
        ["config", "c", None, "a TOML file (its [fa] table)"],
        ["store", "s", None, "the domain store holding the FA's certificate and keys"],
        ["name", "n", "fa", "the FA's node name in the store"],
        ["address", "a", None, "care-of address (default: the certificate's)"],
        ["home-agent-port", None, None, "home agents' registration port (default 434)", int],
        ["advertisement", None, None, "auto, icmp or udp (default auto)"],
        ["advertisement-port", None, None, "UDP port of advertisements (default 4349)", int],
        *COMMON_PARAMETERS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self["advertise-to"] = []

    def opt_advertise_to(self, value: str) -> None:
        """HOST:PORT an advertisement is sent to in UDP mode (repeat for several)."""
        self["advertise-to"].append(value)

    def read_table(self, table: Mapping[str, Any], base: Path, where: str) -> FaConfig:
        return fa_from_table(table, base, where)

    def config_from_store(self) -> FaConfig:
        return FaConfig(files=self.files())

    def role_changes(self, config: FaConfig, changes: dict[str, Any]) -> None:
        for option in ("home-agent-port", "advertisement-port"):
            if self[option] is not None:
                changes[option.replace("-", "_")] = self[option]
        if self["advertisement"]:
            changes["advertisement"] = AdvertisementMode(self["advertisement"])
        if self["advertise-to"]:
            port = changes.get("advertisement_port", config.advertisement_port)
            changes["advertise_to"] = tuple(Endpoint.parse(t, port) for t in self["advertise-to"])


def makeService(options: Options) -> IService:
    """The FA service for twistd."""
    return make_site_service(
        SiteConfig(fa=options.config, control_socket=options.config.control_socket)
    )
