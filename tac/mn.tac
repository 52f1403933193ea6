"""A mobile node as a .tac file: ``twistd -ny tac/mn.tac``.

Configured by the [mn] table of the TOML file named in $MVPN_MN_CONFIG (default ``mn.toml``),
built from the same Options and service builder as ``twistd mvpn-mn``.
"""

import os

from twisted.application.service import Application
from twisted.internet import reactor

from mvpn.roles.config import SiteConfig
from mvpn.roles.mn.tap import Options
from mvpn.roles.site import build_site_service

options = Options()
options.parseOptions(["--config", os.environ.get("MVPN_MN_CONFIG", "mn.toml")])
config = options.config
application = Application("mvpn-mn")
site = SiteConfig(mn=(config,), control_socket=config.control_socket)
build_site_service(site, reactor).setServiceParent(application)
