"""``twistd mvpn-fa``: the foreign agent's command-line options and ``makeService``.

::

    twistd -n mvpn-fa --store /etc/mvpn/visited --name fa --address 192.0.2.1 \\
        --tc 192.0.2.10:4353 --control-socket /run/mvpn-fa.sock
    twistd -n mvpn-fa --config /etc/mvpn/fa.toml        # its [fa] table

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
    FaConfig,
    SiteConfig,
    fa_from_table,
    load_toml,
    top_level_control_socket,
)
from mvpn.roles.transport import AdvertisementMode


class Options(usage.Options):
    """Options of ``twistd mvpn-fa``."""

    synopsis = "[--config FILE | --store DIR --name NAME] [options]"
    optParameters = [
        ["config", "c", None, "a TOML file (its [fa] table)"],
        ["store", "s", None, "the domain store holding the FA's certificate and keys"],
        ["name", "n", "fa", "the FA's node name in the store"],
        ["address", "a", None, "care-of address (default: the certificate's)"],
        ["port", "p", None, "registration UDP port (default 434)", int],
        ["control-port", None, None, "MVPN control UDP port, 0: closed (default 4350)", int],
        ["interface", "i", None, "address to listen on (default: all)"],
        ["tc", None, None, "the Trusted Centre, HOST:PORT"],
        ["home-agent-port", None, None, "home agents' registration port (default 434)", int],
        ["advertisement", None, None, "auto, icmp or udp (default auto)"],
        ["advertisement-port", None, None, "UDP port of advertisements (default 4349)", int],
        ["lifetime", None, None, "longest registration lifetime granted (s)", int],
        ["control-socket", None, None, "UNIX socket for mvpn status"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["advertise-to"] = []
        self["peer-certificates"] = []
        self["peer-cas"] = []

    def opt_advertise_to(self, value: str) -> None:
        """HOST:PORT an advertisement is sent to in UDP mode (repeat for several)."""
        self["advertise-to"].append(value)

    def opt_peer_certificate(self, value: str) -> None:
        """A certificate known without asking the TC (repeat for several)."""
        self["peer-certificates"].append(Path(value))

    def opt_peer_ca(self, value: str) -> None:
        """Another domain's CA certificate, to check peer certificates (repeatable)."""
        self["peer-cas"].append(Path(value))

    def postOptions(self) -> None:
        if not self["config"] and not self["store"]:
            raise usage.UsageError("mvpn-fa needs --config FILE or --store DIR")
        try:
            self.config = self._config()
        except (PkiError, ValueError) as e:
            raise usage.UsageError(str(e)) from None

    def _config(self) -> FaConfig:
        if self["config"]:
            path = Path(self["config"])
            doc = load_toml(path)
            if "fa" not in doc:
                raise ConfigError(f"{path}: no [fa] table")
            config = fa_from_table(doc["fa"], path.parent, f"{path} [fa]")
            if config.control_socket is None:
                config = config.replace(control_socket=top_level_control_socket(path, doc))
            if self["store"]:
                config = config.replace(
                    files=AgentFiles.from_store(Path(self["store"]), self["name"])
                )
        else:
            config = FaConfig(files=AgentFiles.from_store(Path(self["store"]), self["name"]))
        changes: dict[str, Any] = {}
        if self["address"]:
            changes["address"] = ipaddress.IPv4Address(self["address"])
        for option, field in (
            ("port", "port"),
            ("control-port", "control_port"),
            ("home-agent-port", "home_agent_port"),
            ("advertisement-port", "advertisement_port"),
            ("lifetime", "lifetime"),
        ):
            if self[option] is not None:
                changes[field] = self[option]
        if self["interface"] is not None:
            changes["interface"] = self["interface"]
        if self["tc"]:
            changes["tc"] = Endpoint.parse(self["tc"], 4353)
        if self["advertisement"]:
            changes["advertisement"] = AdvertisementMode(self["advertisement"])
        if self["advertise-to"]:
            port = changes.get("advertisement_port", config.advertisement_port)
            changes["advertise_to"] = tuple(Endpoint.parse(t, port) for t in self["advertise-to"])
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
    """The FA service for twistd (the global reactor is imported here, at run time)."""
    from twisted.internet import reactor

    from mvpn.roles.shell import AnyClock
    from mvpn.roles.site import build_site_service

    config: FaConfig = options.config
    site = SiteConfig(fa=config, control_socket=config.control_socket)
    return cast(IService, build_site_service(site, cast(AnyClock, reactor)))
