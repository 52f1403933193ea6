"""The mobile node's datagram entry points: bytes in, core called, effects performed.

Nothing is decoded here: the size limit is checked by the port
(:class:`~mvpn.roles.transport.UdpPortService`), everything else by
:class:`~mvpn.core.mn.MobileNode`, which counts and logs what it drops.
"""

from __future__ import annotations

from mvpn.core.effects import Address
from mvpn.core.mn import MobileNode
from mvpn.roles.shell import EffectRunner


class MobileNodeEndpoints:
    """The handlers the MN's registration socket and advertisement transport call."""

    def __init__(self, core: MobileNode, runner: EffectRunner) -> None:
        self.core = core
        self.runner = runner

    def registration(self, data: bytes, source: Address) -> None:
        """A datagram on the MN's registration socket (its FA's replies)."""
        self.runner.call(self.core.datagram_received, data, source, self.runner.now())

    def advertisement(self, data: bytes, source: Address) -> None:
        """An Agent Advertisement (RFC 5944 2.1) heard on the link."""
        self.runner.call(self.core.advertisement_received, data, source, self.runner.now())
