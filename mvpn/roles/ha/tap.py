"""``twistd mvpn-ha``: the home agent's command-line options and ``makeService``.

::

    twistd -n mvpn-ha --store /etc/mvpn/home --name ha --database /var/lib/mvpn/ha.sqlite \\
        --tc 127.0.0.1:4353 --control-socket /run/mvpn-ha.sock
    twistd -n mvpn-ha --config /etc/mvpn/ha.toml        # its [ha] table

Options given on the command line override the configuration file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any, cast

from twisted.application.service import IService
from twisted.python import usage

from mvpn.pki.errors import PkiError
from mvpn.roles.config import (
    AgentFiles,
    ConfigError,
    Endpoint,
    HaConfig,
    SiteConfig,
    ha_from_table,
    load_toml,
    top_level_control_socket,
)


class Options(usage.Options):
    """Options of ``twistd mvpn-ha``."""

    synopsis = "[--config FILE | --store DIR --name NAME --database FILE] [options]"
    optParameters = [
        ["config", "c", None, "a TOML file (its [ha] table)"],
        ["store", "s", None, "the domain store holding the HA's certificate and keys"],
        ["name", "n", "ha", "the HA's node name in the store"],
        ["database", "d", None, "the SQLite binding store"],
        ["address", "a", None, "home agent address (default: the certificate's)"],
        ["port", "p", None, "registration UDP port (default 434)", int],
        ["control-port", None, None, "MVPN control UDP port, 0: closed (default 4350)", int],
        ["interface", "i", None, "address to listen on (default: all)"],
        ["tc", None, None, "the Trusted Centre, HOST:PORT"],
        ["lifetime", None, None, "longest registration lifetime granted (s)", int],
        ["control-socket", None, None, "UNIX socket for mvpn status"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["peer-certificates"] = []
        self["peer-cas"] = []

    def opt_peer_certificate(self, value: str) -> None:
        """A certificate known without asking the TC (repeat for several)."""
        self["peer-certificates"].append(Path(value))

    def opt_peer_ca(self, value: str) -> None:
        """Another domain's CA certificate, to check peer certificates (repeatable)."""
        self["peer-cas"].append(Path(value))

    def postOptions(self) -> None:
        if not self["config"] and not self["store"]:
            raise usage.UsageError("mvpn-ha needs --config FILE or --store DIR")
        try:
            self.config = self._config()
        except (PkiError, ValueError) as e:
            raise usage.UsageError(str(e)) from None

    def _config(self) -> HaConfig:
        if self["config"]:
            path = Path(self["config"])
            doc = load_toml(path)
            if "ha" not in doc:
                raise ConfigError(f"{path}: no [ha] table")
            config = ha_from_table(doc["ha"], path.parent, f"{path} [ha]")
            if config.control_socket is None:
                config = config.replace(control_socket=top_level_control_socket(path, doc))
            if self["store"]:
                files = AgentFiles.from_store(Path(self["store"]), self["name"])
                config = config.replace(files=files)
        else:
            if not self["database"]:
                raise ConfigError("mvpn-ha needs --database FILE (the binding store)")
            files = AgentFiles.from_store(Path(self["store"]), self["name"])
            config = HaConfig(files=files, database=Path(self["database"]))
        changes: dict[str, Any] = {}
        if self["database"]:
            changes["database"] = Path(self["database"])
        if self["address"]:
            changes["address"] = ipaddress.IPv4Address(self["address"])
        for option in ("port", "lifetime"):
            if self[option] is not None:
                changes[option] = self[option]
        if self["control-port"] is not None:
            changes["control_port"] = self["control-port"]
        if self["interface"] is not None:
            changes["interface"] = self["interface"]
        if self["tc"]:
            changes["tc"] = Endpoint.parse(self["tc"], 4353)
        if self["peer-certificates"]:
            changes["peer_certificates"] = config.peer_certificates + tuple(
                self["peer-certificates"]
            )
        if self["peer-cas"]:
            changes["peer_cas"] = config.peer_cas + tuple(self["peer-cas"])
        if self["control-socket"]:
            changes["control_socket"] = Path(self["control-socket"])
        return dataclasses.replace(config, **changes)


def makeService(options: Options) -> IService:
    """The HA service for twistd (the global reactor is imported here, at run time)."""
    from twisted.internet import reactor

    from mvpn.roles.shell import AnyClock
    from mvpn.roles.site import build_site_service

    config: HaConfig = options.config
    site = SiteConfig(ha=config, control_socket=config.control_socket)
    return cast(IService, build_site_service(site, cast(AnyClock, reactor)))
