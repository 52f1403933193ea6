"""The home agent's datagram entry point: bytes in, core called, effects performed.

Nothing is decoded here: the size limit is checked by the port
(:class:`~mvpn.roles.transport.UdpPortService`), everything else by
:class:`~mvpn.core.ha.HomeAgent`, which counts and logs what it drops.
"""

from __future__ import annotations

from mvpn.core.effects import Address
from mvpn.core.ha import HomeAgent
from mvpn.roles.shell import EffectRunner


class HomeAgentEndpoints:
    """The handler the HA's registration port calls."""

    def __init__(self, core: HomeAgent, runner: EffectRunner) -> None:
        self.core = core
        self.runner = runner

    def registration(self, data: bytes, source: Address) -> None:
        """A datagram on the registration port (requests relayed by FAs, plain nodes)."""
        self.runner.call(self.core.datagram_received, data, source, self.runner.now())
