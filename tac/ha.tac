"""A home agent as a .tac file: ``twistd -ny tac/ha.tac``.

Configured by the [ha] table of the TOML file named in $MVPN_HA_CONFIG (default ``ha.toml``),
built from the same Options and service builder as ``twistd mvpn-ha``.
"""

import os

from twisted.application.service import Application
from twisted.internet import reactor

from mvpn.roles.config import SiteConfig
from mvpn.roles.ha.tap import Options
from mvpn.roles.site import build_site_service

options = Options()
options.parseOptions(["--config", os.environ.get("MVPN_HA_CONFIG", "ha.toml")])
config = options.config
application = Application("mvpn-ha")
site = SiteConfig(ha=config, control_socket=config.control_socket)
build_site_service(site, reactor).setServiceParent(application)
