"""What the ``twistd mvpn-ha`` and ``mvpn-fa`` command lines share.

Both agents read a TOML file (their ``[ha]`` or ``[fa]`` table) or a domain store, and the
same options override either: address, ports (registration, control, data, tunnel),
interface, Trusted Centre, lifetime, peer certificates and CAs, the status socket.
:class:`AgentOptions` holds that once; each tap adds its own options and how its config is
built without a file. :func:`make_site_service` is the ``makeService`` body of every role's
tap.
"""

from __future__ import annotations

import abc
import dataclasses
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

from twisted.application.service import IService
from twisted.python import usage

from mvpn.pki.errors import PkiError
from mvpn.roles.config import (
    AgentFiles,
    ConfigError,
    Endpoint,
    FaConfig,
    HaConfig,
    SiteConfig,
    load_toml,
    top_level_control_socket,
)

C = TypeVar("C", HaConfig, FaConfig)

COMMON_PARAMETERS: list[list[Any]] = [
    ["port", "p", None, "registration UDP port (default 434)", int],
    ["control-port", None, None, "MVPN control UDP port, 0: closed (default 4350)", int],
    ["data-port", None, None, "data UDP port (default 4351)", int],
    ["tunnel-port", None, None, "HA-FA tunnel TCP port (default 4352)", int],
    ["interface", "i", None, "address to listen on (default: all)"],
    ["tc", None, None, "the Trusted Centre, HOST:PORT"],
    ["lifetime", None, None, "longest registration lifetime granted (s)", int],
    ["control-socket", None, None, "UNIX socket for mvpn status"],
]
"""Options every agent takes, after its own ``config``/``store``/``name``/``address``."""


class AgentOptions(usage.Options, Generic[C]):
    """The options of an agent's twistd plugin; see the module docstring.

    A subclass sets :attr:`ROLE` (the TOML table and plugin name) and implements
    :meth:`read_table`, :meth:`config_from_store` and :meth:`role_changes`.
    """

    ROLE: ClassVar[str]

    config: C

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
            raise usage.UsageError(f"mvpn-{self.ROLE} needs --config FILE or --store DIR")
        try:
            self.config = self._config()
        except (PkiError, ValueError) as e:
            raise usage.UsageError(str(e)) from None

    def files(self) -> AgentFiles:
        """The agent's certificate, keys and CA from ``--store`` and ``--name``."""
        return AgentFiles.from_store(Path(self["store"]), self["name"])

    @abc.abstractmethod
    def read_table(self, table: Mapping[str, Any], base: Path, where: str) -> C:
        """This role's config from its TOML table (paths relative to ``base``)."""

    def config_from_store(self) -> C:
        """The config when no file is given (only ``--store`` and options)."""
        raise usage.UsageError(f"mvpn-{self.ROLE} needs --config FILE")

    def role_changes(self, config: C, changes: dict[str, Any]) -> None:
        """Add this role's own option overrides to ``changes``."""

    def _from_file(self, path: Path) -> C:
        doc = load_toml(path)
        if self.ROLE not in doc:
            raise ConfigError(f"{path}: no [{self.ROLE}] table")
        config = self.read_table(doc[self.ROLE], path.parent, f"{path} [{self.ROLE}]")
        if config.control_socket is None:
            config = config.replace(control_socket=top_level_control_socket(path, doc))
        if self["store"]:
            config = config.replace(files=self.files())
        return config

    def _config(self) -> C:
        config = self._from_file(Path(self["config"])) if self["config"] else None
        if config is None:
            config = self.config_from_store()
        changes: dict[str, Any] = {}
        if self["address"]:
            changes["address"] = ipaddress.IPv4Address(self["address"])
        for option in (
            "port",
            "control-port",
            "data-port",
            "tunnel-port",
            "lifetime",
            "interface",
        ):
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
        if self["control-socket"]:
            changes["control_socket"] = Path(self["control-socket"])
        self.role_changes(config, changes)
        return dataclasses.replace(config, **changes)


def make_site_service(site: SiteConfig) -> IService:
    """A role's ``makeService``: the site service on the global reactor, which is imported
    here, at run time, never at module level (it would break ``twistd --reactor``)."""
    from twisted.internet import reactor

    from mvpn.roles.shell import AnyClock
    from mvpn.roles.site import build_site_service

    return cast(IService, build_site_service(site, cast(AnyClock, reactor)))
