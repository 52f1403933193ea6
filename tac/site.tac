"""Several roles in one process as a .tac file: ``twistd -ny tac/site.tac``.

Configured by the TOML file named in $MVPN_SITE_CONFIG (default ``site.toml``) with [ha],
[fa] and/or [mn] tables, built like ``twistd mvpn-site``.
"""

import os

from twisted.application.service import Application
from twisted.internet import reactor

from mvpn.roles.site import Options, build_site_service

options = Options()
options.parseOptions(["--config", os.environ.get("MVPN_SITE_CONFIG", "site.toml")])
application = Application("mvpn-site")
build_site_service(options.config, reactor).setServiceParent(application)
