"""A foreign agent as a .tac file: ``twistd -ny tac/fa.tac``.

Configured by the [fa] table of the TOML file named in $MVPN_FA_CONFIG (default ``fa.toml``),
built from the same Options and service builder as ``twistd mvpn-fa``.
"""

import os

from twisted.application.service import Application
from twisted.internet import reactor

from mvpn.roles.config import SiteConfig
from mvpn.roles.fa.tap import Options
from mvpn.roles.site import build_site_service

options = Options()
options.parseOptions(["--config", os.environ.get("MVPN_FA_CONFIG", "fa.toml")])
config = options.config
application = Application("mvpn-fa")
site = SiteConfig(fa=config, control_socket=config.control_socket)
build_site_service(site, reactor).setServiceParent(application)
