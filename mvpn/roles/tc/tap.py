"""``twistd mvpn-tc``: the Trusted Centre's command-line options and ``makeService``.

::

    twistd -n mvpn-tc --store /etc/mvpn/corp --interface 127.0.0.1 --port 4353 \\
        --peer branch.example=/etc/mvpn/branch-ca.pem@192.0.2.7:4353
    twistd -n mvpn-tc --config /etc/mvpn/tc.toml

Options given on the command line override the configuration file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from mvpn.pki.errors import PkiError
from mvpn.roles.tc.config import DEFAULT_PORT, PeerConfig, TcConfig


class Options(usage.Options):
    """Options of ``twistd mvpn-tc``."""

    synopsis = "[--config FILE | --store DIR] [--port N] [--interface A] [--peer ...]"
    optParameters = [
        ["config", "c", None, "a TOML configuration file"],
        ["store", "s", None, "the domain store (mvpn pki --store) holding the TC's files"],
        ["port", "p", None, f"TCP port for mutual TLS (default {DEFAULT_PORT})", int],
        ["interface", "i", None, "address to listen on (default: all)"],
        ["database", "d", None, "the SQLite registry (default: <store>/tc.sqlite)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["peers"] = []

    def opt_peer(self, value: str) -> None:
        """A peer TC: DOMAIN=CA_PEM@HOST:PORT (repeat for several)."""
        try:
            self["peers"].append(PeerConfig.parse(value))
        except PkiError as e:
            raise usage.UsageError(str(e)) from None

    def postOptions(self) -> None:
        if not self["config"] and not self["store"]:
            raise usage.UsageError("mvpn-tc needs --config FILE or --store DIR")
        try:
            self.config = self._config()
        except (PkiError, ValueError) as e:
            raise usage.UsageError(str(e)) from None

    def _config(self) -> TcConfig:
        overrides: dict[str, Any] = {}
        if self["port"] is not None:
            overrides["port"] = self["port"]
        if self["interface"] is not None:
            overrides["interface"] = self["interface"]
        if self["database"] is not None:
            overrides["database"] = Path(self["database"])
        if self["config"]:
            config = TcConfig.from_toml(Path(self["config"]))
            if self["store"]:
                store = TcConfig.from_store(Path(self["store"]))
                config = config.replace(
                    ca_certificate=store.ca_certificate,
                    certificate=store.certificate,
                    private_key=store.private_key,
                    database=store.database,
                    revocation_list=store.revocation_list,
                    nodes_dir=store.nodes_dir,
                )
        else:
            config = TcConfig.from_store(Path(self["store"]))
        if self["peers"]:
            overrides["peers"] = config.peers + tuple(self["peers"])
        return config.replace(**overrides)


def makeService(options: Options) -> IService:
    """The TC service for twistd (the global reactor is imported here, at run time)."""
    from twisted.internet import reactor

    from mvpn.roles.tc.service import build_tc_service

    service = cast(IService, build_tc_service(options.config, cast(IReactorTime, reactor)))
    return service
