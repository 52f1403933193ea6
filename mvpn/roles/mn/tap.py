"""``twistd mvpn-mn``: the mobile node's command-line options and ``makeService``.

::

    twistd -n mvpn-mn --smart-card alice.card --address 192.0.2.77 \\
        --solicit 192.0.2.1:4349 --control-socket /run/mvpn-mn.sock
    twistd -n mvpn-mn --config /etc/mvpn/mn.toml        # its [mn] table

The smart card's PIN, if it has one, is read from $MVPN_PIN. Options given on the command
line override the configuration file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from mvpn.pki.errors import PkiError
from mvpn.roles.agent_options import make_site_service
from mvpn.roles.config import (
    ConfigError,
    Endpoint,
    MnConfig,
    SiteConfig,
    load_toml,
    mn_from_table,
    parse_networks,
    top_level_control_socket,
)
from mvpn.roles.transport import AdvertisementMode


class Options(usage.Options):
    """Options of ``twistd mvpn-mn``."""

    synopsis = "[--config FILE | --smart-card FILE] [options]"
    optParameters = [
        ["config", "c", None, "a TOML file (its [mn] table; with [[mn]], the one --name names)"],
        ["smart-card", "s", None, "the MN's smart card (mvpn pki issue-mn)"],
        ["name", "n", None, "the MN's name in logs and status (default: mn)"],
        ["mode", "m", None, "mvpn (default) or rfc5944 (plain Mobile IP)"],
        ["home-address", None, None, "home address (default: the smart card's)"],
        ["home-agent", None, None, "home agent address (default: the smart card's)"],
        ["address", "a", None, "address the MN listens on"],
        ["port", "p", None, "UDP port the MN registers from (default: any)", int],
        ["control-port", None, None, "MVPN control UDP port, 0: closed (default 4350)", int],
        ["data-port", None, None, "data UDP port (default 4351)", int],
        ["advertisement", None, None, "auto, icmp or udp (default auto)"],
        ["advertisement-port", None, None, "UDP port of advertisements (default 4349)", int],
        ["agent-port", None, None, "the foreign agents' registration port (default 434)", int],
        ["lifetime", None, None, "registration lifetime asked for (s)", int],
        ["plain-spi", None, None, "rfc5944 mode: the SPI of the key shared with the HA", int],
        ["plain-key", None, None, "rfc5944 mode: the shared HMAC-MD5 key, hex"],
        ["control-socket", None, None, "UNIX socket for mvpn status"],
        ["tun", None, None, "a TUN device with the home address (needs root)"],
        ["tun-routes", None, None, "networks routed into the TUN device, comma-separated"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["solicit"] = []

    def opt_solicit(self, value: str) -> None:
        """HOST:PORT an Agent Solicitation is sent to (repeat for several)."""
        self["solicit"].append(value)

    def postOptions(self) -> None:
        if not self["config"] and not self["smart-card"] and self["mode"] != "rfc5944":
            raise usage.UsageError("mvpn-mn needs --config FILE or --smart-card FILE")
        try:
            self.config = self._config()
        except (PkiError, ValueError) as e:
            raise usage.UsageError(str(e)) from None

    def _from_file(self, path: Path) -> dict[str, Any]:
        whole = load_toml(path)
        doc = whole.get("mn")
        tables = [doc] if isinstance(doc, dict) else list(doc or [])
        if self["name"]:
            tables = [t for t in tables if t.get("name", "mn") == self["name"]]
        if not tables:
            raise ConfigError(
                f"{path}: no [mn] table" + (f" named {self['name']!r}" if self["name"] else "")
            )
        config = mn_from_table(tables[0], path.parent, f"{path} [mn]")
        if config.control_socket is None:
            config = config.replace(control_socket=top_level_control_socket(path, whole))
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        return {k: v for k, v in values.items() if v is not None}

    def _config(self) -> MnConfig:
        fields: dict[str, Any] = {}
        if self["config"]:
            fields.update(self._from_file(Path(self["config"])))
        if self["smart-card"]:
            fields["smart_card"] = Path(self["smart-card"])
        for option, field in (
            ("name", "name"),
            ("mode", "mode"),
            ("address", "address"),
            ("port", "port"),
            ("control-port", "control_port"),
            ("data-port", "data_port"),
            ("advertisement-port", "advertisement_port"),
            ("agent-port", "agent_port"),
            ("lifetime", "lifetime"),
            ("plain-spi", "plain_spi"),
        ):
            if self[option] is not None:
                fields[field] = self[option]
        for option, field in (("home-address", "home_address"), ("home-agent", "home_agent")):
            if self[option]:
                fields[field] = ipaddress.IPv4Address(self[option])
        if self["advertisement"]:
            fields["advertisement"] = AdvertisementMode(self["advertisement"])
        if self["plain-key"]:
            fields["plain_key"] = bytes.fromhex(self["plain-key"])
        if self["solicit"]:
            port = fields.get("advertisement_port", 4349)
            fields["solicit_to"] = tuple(Endpoint.parse(t, port) for t in self["solicit"])
        if self["control-socket"]:
            fields["control_socket"] = Path(self["control-socket"])
        if self["tun"]:
            fields["tun"] = self["tun"]
        if self["tun-routes"]:
            fields["tun_routes"] = parse_networks(self["tun-routes"], "--tun-routes")
        pin = os.environ.get("MVPN_PIN")
        if pin:
            fields["pin"] = pin.encode()
        return MnConfig(**fields)


def makeService(options: Options) -> IService:
    """The MN service for twistd."""
    config: MnConfig = options.config
    return make_site_service(SiteConfig(mn=(config,), control_socket=config.control_socket))
