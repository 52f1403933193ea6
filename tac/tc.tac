"""A Trusted Centre as a .tac file: ``twistd -ny tac/tc.tac``.

Configured by the TOML file named in $MVPN_TC_CONFIG (default ``tc.toml``), built from the
same Options and service builder as ``twistd mvpn-tc``.
"""

import os

from twisted.application.service import Application
from twisted.internet import reactor

from mvpn.roles.tc.service import build_tc_service
from mvpn.roles.tc.tap import Options

options = Options()
options.parseOptions(["--config", os.environ.get("MVPN_TC_CONFIG", "tc.toml")])
application = Application("mvpn-tc")
build_tc_service(options.config, reactor).setServiceParent(application)
