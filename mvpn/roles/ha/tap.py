"""``twistd mvpn-ha``: the home agent's command-line options and ``makeService``.

::

    twistd -n mvpn-ha --store /etc/mvpn/home --name ha --database /var/lib/mvpn/ha.sqlite \\
        --tc 127.0.0.1:4353 --control-socket /run/mvpn-ha.sock
    twistd -n mvpn-ha --config /etc/mvpn/ha.toml        # its [ha] table

Options given on the command line override the configuration file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from twisted.application.service import IService

from mvpn.roles.agent_options import COMMON_PARAMETERS, AgentOptions, make_site_service
from mvpn.roles.config import ConfigError, HaConfig, SiteConfig, ha_from_table


class Options(AgentOptions[HaConfig]):
    """Options of ``twistd mvpn-ha``."""

    ROLE: ClassVar[str] = "ha"

    synopsis = "[--config FILE | --store DIR --name NAME --database FILE] [options]"
    optParameters = [
        ["config", "c", None, "a TOML file (its [ha] table)"],
        ["store", "s", None, "the domain store holding the HA's certificate and keys"],
        ["name", "n", "ha", "the HA's node name in the store"],
        ["address", "a", None, "home agent address (default: the certificate's)"],
        ["database", "d", None, "the SQLite binding store"],
        *COMMON_PARAMETERS,
    ]

    def read_table(self, table: Mapping[str, Any], base: Path, where: str) -> HaConfig:
        return ha_from_table(table, base, where)

    def config_from_store(self) -> HaConfig:
        if not self["database"]:
            raise ConfigError("mvpn-ha needs --database FILE (the binding store)")
        return HaConfig(files=self.files(), database=Path(self["database"]))

    def role_changes(self, config: HaConfig, changes: dict[str, Any]) -> None:
        if self["database"]:
            changes["database"] = Path(self["database"])


def makeService(options: Options) -> IService:
    """The HA service for twistd."""
    return make_site_service(
        SiteConfig(ha=options.config, control_socket=options.config.control_socket)
    )
