"""Several roles in one process: ``twistd -n mvpn-site --config site.toml``.

:func:`build_site_service` hosts whatever a :class:`~mvpn.roles.config.SiteConfig` defines
(a home agent, a foreign agent, any number of mobile nodes) as children of one
``MultiService`` (named ``ha``, ``fa``, ``mn:<name>``), plus one ``control`` child, the
status socket answering for all of them. The single-role plugins (``mvpn-ha``, ``mvpn-fa``,
``mvpn-mn``) build their service the same way, with one role.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from twisted.application.service import IService, MultiService
from twisted.internet.interfaces import IReactorUNIX
from twisted.python import usage

from mvpn.crypto.random import RandomSource, system_random
from mvpn.pki.errors import PkiError
from mvpn.roles.config import SiteConfig, site_from_toml
from mvpn.roles.control import ControlService
from mvpn.roles.shell import AnyClock, RoleService


class SiteService(MultiService):
    """The roles of one process; :meth:`role` finds one by its service name."""

    def role(self, name: str) -> RoleService:
        """The hosted role called ``name`` (``ha``, ``fa``, ``mn:<name>``)."""
        return cast(RoleService, self.getServiceNamed(name))

    @property
    def roles(self) -> list[RoleService]:
        """Every hosted role, in start order."""
        return [s for s in self if isinstance(s, RoleService)]


def build_site_service(
    config: SiteConfig, reactor: AnyClock, *, random: RandomSource = system_random
) -> SiteService:
    """Every role ``config`` defines, and the control socket when one is configured."""
    # Imported here: each role module pulls in its core, and a site may host only some.
    site = SiteService()
    if config.ha is not None:
        from mvpn.roles.ha.service import build_ha_service

        build_ha_service(config.ha, reactor, random=random).setServiceParent(site)
    if config.fa is not None:
        from mvpn.roles.fa.service import build_fa_service

        build_fa_service(config.fa, reactor, random=random).setServiceParent(site)
    for mn in config.mn:
        from mvpn.roles.mn.service import build_mn_service

        build_mn_service(mn, reactor, random=random).setServiceParent(site)
    if config.control_socket is not None:
        control = ControlService(cast(IReactorUNIX, reactor), config.control_socket)
        for role in site.roles:
            control.add(role.report())
        control.setName("control")
        control.setServiceParent(site)
    return site


class Options(usage.Options):
    """Options of ``twistd mvpn-site``."""

    synopsis = "--config FILE"
    optParameters = [
        ["config", "c", None, "a TOML file with [ha], [fa] and/or [mn] tables"],
        ["control-socket", None, None, "the status socket (overrides control_socket)"],
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("mvpn-site needs --config FILE")
        try:
            config = site_from_toml(Path(self["config"]))
        except (PkiError, ValueError) as e:
            raise usage.UsageError(str(e)) from None
        if self["control-socket"]:
            config = SiteConfig(config.ha, config.fa, config.mn, Path(self["control-socket"]))
        self.config = config


def makeService(options: Options) -> IService:
    """The site service for twistd (the global reactor is imported here, at run time)."""
    from twisted.internet import reactor

    return cast(IService, build_site_service(options.config, cast(AnyClock, reactor)))
