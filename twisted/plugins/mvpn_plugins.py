"""twistd plugins of mvpn: one ServiceMaker per role (``twistd mvpn-<role>``).

No ``__init__.py`` under ``twisted/`` (twisted.plugins is a namespace Twisted scans). Adding
a role is one line in ``_ROLES``: (plugin name, tap module, description).
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

_ROLES = [
    ("mvpn-tc", "mvpn.roles.tc.tap", "MVPN Trusted Centre: key registry over mutual TLS"),
]

for _name, _module, _description in _ROLES:
    globals()[_name.replace("-", "_")] = ServiceMaker(_name, _module, _description, _name)
