"""twistd plugins of mvpn: one ServiceMaker per role (``twistd mvpn-<role>``).

No ``__init__.py`` under ``twisted/`` (twisted.plugins is a namespace Twisted scans). Adding
a role is one line in ``_ROLES``: (plugin name, tap module, description).
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

_ROLES = [
    ("mvpn-tc", "mvpn.roles.tc.tap", "MVPN Trusted Centre: key registry over mutual TLS"),
    ("mvpn-ha", "mvpn.roles.ha.tap", "MVPN home agent: bindings and registration keys"),
    ("mvpn-fa", "mvpn.roles.fa.tap", "MVPN foreign agent: advertisements, relaying, visitors"),
    ("mvpn-mn", "mvpn.roles.mn.tap", "MVPN mobile node: registers through foreign agents"),
    ("mvpn-cn", "mvpn.roles.cn.tap", "MVPN correspondent node: sessions with mobile nodes"),
    ("mvpn-site", "mvpn.roles.site", "several MVPN roles in one process, from one TOML file"),
]

for _name, _module, _description in _ROLES:
    globals()[_name.replace("-", "_")] = ServiceMaker(_name, _module, _description, _name)
