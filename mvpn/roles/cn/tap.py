"""``twistd mvpn-cn``: the correspondent node's command-line options and ``makeService``.

::

    twistd -n mvpn-cn --store /etc/mvpn/partners --name cn --tc 127.0.0.1:4353 \\
        --peer 10.1.0.5,127.0.0.1,ha --control-socket /run/mvpn-cn.sock
    twistd -n mvpn-cn --config /etc/mvpn/cn.toml        # its [cn] table

Options given on the command line override the configuration file; ``--peer`` adds to its
peers.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, cast

from twisted.application.service import IService
from twisted.python import usage

from mvpn.pki.errors import PkiError
from mvpn.roles.cn.config import CnConfig, cn_from_file, parse_peer
from mvpn.roles.config import AgentFiles, Endpoint


class Options(usage.Options):
    """Options of ``twistd mvpn-cn``."""

    synopsis = "[--config FILE | --store DIR --name NAME] [options]"
    optParameters: list[list[Any]] = [
        ["config", "c", None, "a TOML file (its [cn] table)"],
        ["store", "s", None, "the domain store holding the CN's certificate and keys"],
        ["name", "n", "cn", "the CN's node name in the store"],
        ["address", "a", None, "the CN's address (default: the certificate's)"],
        ["interface", "i", None, "address to listen on (default: all)"],
        ["control-port", None, None, "MVPN control UDP port (default 4350)", int],
        ["data-port", None, None, "MVPN data UDP port (default 4351)", int],
        ["tc", None, None, "the Trusted Centre, HOST:PORT"],
        ["control-socket", None, None, "UNIX socket for mvpn status"],
        ["tun", None, None, "a TUN device routing the peers' home addresses (needs root)"],
    ]

    config: CnConfig

    def __init__(self) -> None:
        super().__init__()
        self["peer-certificates"] = []
        self["peer-cas"] = []
        self["peers"] = []

    def opt_peer_certificate(self, value: str) -> None:
        """A certificate known without asking the TC (repeat for several)."""
        self["peer-certificates"].append(Path(value))

    def opt_peer_ca(self, value: str) -> None:
        """Another domain's CA certificate, to check peer certificates (repeatable)."""
        self["peer-cas"].append(Path(value))

    def opt_peer(self, value: str) -> None:
        """HOME_ADDRESS,HA_ADDRESS,HA_ID_OR_NAME: a mobile node to talk to (repeatable)."""
        try:
            self["peers"].append(parse_peer(value))
        except PkiError as e:
            raise usage.UsageError(str(e)) from None

    def postOptions(self) -> None:
        if not self["config"] and not self["store"]:
            raise usage.UsageError("mvpn-cn needs --config FILE or --store DIR")
        try:
            self.config = self._config()
        except (PkiError, ValueError) as e:
            raise usage.UsageError(str(e)) from None

    def _config(self) -> CnConfig:
        if self["config"]:
            config = cn_from_file(Path(self["config"]))
            if self["store"]:
                config = config.replace(
                    files=AgentFiles.from_store(Path(self["store"]), self["name"])
                )
        else:
            files = AgentFiles.from_store(Path(self["store"]), self["name"])
            config = CnConfig(files=files, name=self["name"])
        changes: dict[str, Any] = {}
        if self["address"]:
            changes["address"] = ipaddress.IPv4Address(self["address"])
        if self["interface"] is not None:
            changes["interface"] = self["interface"]
        for option in ("control-port", "data-port"):
            if self[option] is not None:
                changes[option.replace("-", "_")] = self[option]
        if self["tc"]:
            changes["tc"] = Endpoint.parse(self["tc"], 4353)
        if self["peer-certificates"]:
            changes["peer_certificates"] = config.peer_certificates + tuple(
                self["peer-certificates"]
            )
        if self["peer-cas"]:
            changes["peer_cas"] = config.peer_cas + tuple(self["peer-cas"])
        if self["peers"]:
            changes["peers"] = config.peers + tuple(self["peers"])
        if self["control-socket"]:
            changes["control_socket"] = Path(self["control-socket"])
        if self["tun"]:
            changes["tun"] = self["tun"]
        return config.replace(**changes)


def makeService(options: Options) -> IService:
    """The CN service for twistd: the global reactor is imported here, at run time, never
    at module level (it would break ``twistd --reactor``)."""
    from twisted.internet import reactor

    from mvpn.roles.cn.service import build_cn_site
    from mvpn.roles.shell import AnyClock

    return cast(IService, build_cn_site(options.config, cast(AnyClock, reactor)))
