"""A correspondent node as a .tac file: ``twistd -ny tac/cn.tac``.

Configured by the [cn] table of the TOML file named in $MVPN_CN_CONFIG (default ``cn.toml``),
built from the same Options and service builder as ``twistd mvpn-cn``.
"""

import os

from twisted.application.service import Application
from twisted.internet import reactor

from mvpn.roles.cn.service import build_cn_site
from mvpn.roles.cn.tap import Options

options = Options()
options.parseOptions(["--config", os.environ.get("MVPN_CN_CONFIG", "cn.toml")])
application = Application("mvpn-cn")
build_cn_site(options.config, reactor).setServiceParent(application)
