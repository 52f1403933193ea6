"""What the demo plugs into the running roles to watch and to attack them, standing in for a
packet capture and an attacker on the foreign link (which would need root on a real link).

- :class:`RegistrationTap` records every Registration Request the MN sends (draft 3.2), so
  that one can be replayed or forged later;
- :class:`DataTap` notes which FA each data packet reaching the MN came from and keeps the
  last one delivered, for the handover gap (draft 3.3) and the data replay (draft 3.5.1);
- :class:`Attacker` is a UDP socket on a chosen address that sends captured or altered bytes
  and collects whatever answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.protocol import DatagramProtocol

from mvpn.core.effects import Address, Channel
from mvpn.roles.mn.service import MobileNodeService
from mvpn.roles.transport import UdpPortService

__all__ = ["Attacker", "DataTap", "RegistrationTap"]


class RegistrationTap:
    """The MN's registration transport, recording each datagram before it leaves.

    Installed with the runner's public ``set_transport``; :meth:`remove` puts the port back.
    """

    def __init__(self, mn: MobileNodeService) -> None:
        self._mn = mn
        self._port = cast(UdpPortService, mn.getServiceNamed("registration"))
        self.sent: list[tuple[bytes, Address]] = []
        mn.runner.set_transport(Channel.REGISTRATION, self)

    def write(self, data: bytes, addr: Address) -> None:
        """Record, then send through the MN's own port."""
        self.sent.append((data, addr))
        self._port.write(data, addr)

    def remove(self) -> None:
        """Send straight through the port again."""
        self._mn.runner.set_transport(Channel.REGISTRATION, self._port)


class DataTap:
    """Watches the MN's data port (:meth:`~mvpn.roles.data.EndpointData.watch`, stopped by
    :meth:`remove`): :attr:`source` names the host the latest datagram came from and
    :attr:`datagram` holds its bytes. The watcher runs just before the datagram is opened and
    the API delivers synchronously, so an application callback can tell which FA carried
    the data it is given."""

    def __init__(self, mn: MobileNodeService) -> None:
        data: Any = mn.getServiceNamed("data")
        self.source: str | None = None
        self.datagram: bytes | None = None
        self._unwatch: Callable[[], None] = data.watch(self._seen)

    def _seen(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.source, self.datagram = addr[0], datagram

    def remove(self) -> None:
        """Stop watching."""
        self._unwatch()


class Attacker(DatagramProtocol):
    """A UDP socket bound to ``host`` (any port) on the reactor; :attr:`replies` collects
    what comes back, by source."""

    def __init__(self, reactor: Any, host: str) -> None:
        self.replies: list[tuple[bytes, tuple[str, int]]] = []
        self._listening: Any = reactor.listenUDP(0, self, interface=host)

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.replies.append((datagram, addr))

    def send(self, data: bytes, to: Address) -> None:
        """Send ``data`` to ``to``."""
        assert self.transport is not None
        cast(Any, self.transport).write(data, to)

    def close(self) -> object:
        """Stop listening (a Deferred or None)."""
        listening, self._listening = self._listening, None
        if listening is None:
            return None
        result: object = listening.stopListening()
        return result
