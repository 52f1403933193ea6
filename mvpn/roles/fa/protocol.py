"""The foreign agent's datagram entry points: bytes in, core called, effects performed.

Nothing is decoded here: the size limit is checked by the port
(:class:`~mvpn.roles.transport.UdpPortService`), everything else by
:class:`~mvpn.core.fa.ForeignAgent`, which counts and logs what it drops.
"""

from __future__ import annotations

from mvpn.core.effects import Address
from mvpn.core.fa import ForeignAgent
from mvpn.roles.shell import EffectRunner


class ForeignAgentEndpoints:
    """The handlers the FA's registration port and advertisement transport call."""

    def __init__(self, core: ForeignAgent, runner: EffectRunner) -> None:
        self.core = core
        self.runner = runner

    def registration(self, data: bytes, source: Address) -> None:
        """A datagram on the registration port (MN requests, HA replies)."""
        self.runner.call(self.core.datagram_received, data, source, self.runner.now())

    def solicitation(self, data: bytes, source: Address) -> None:
        """An Agent Solicitation (RFC 5944 2.2): the core answers with an advertisement."""
        self.runner.call(self.core.solicitation_received, data, source, self.runner.now())
