"""The application side of an MVPN endpoint (MN or CN): the data port, the in-process API and
an optional TUN device, joined to the node's sessions (issue 5, "Applications on top";
docs/protocol.md 8).

:func:`add_endpoint` adds to a role's ``MultiService``:

- ``data``: :class:`~mvpn.roles.data.EndpointData`, the UDP data port (4351) that seals what
  the node sends and opens what arrives;
- ``tun`` (when configured): a :class:`~mvpn.roles.tun.TunService` whose packets go into the
  session with their destination and which receives every inner packet that is not API
  traffic;

and returns the node's :class:`~mvpn.api.MvpnClient`. :class:`SessionBridge` is the glue:
it finds the session for a peer address (the CN's address on an MN, the MN's home address on
a CN), and it checks that an opened inner packet comes from that session's peer before the
application sees it: the hop tag and the end-to-end tag prove who sealed the packet, and this
check proves the sealer did not put another source address inside.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import Logger

from mvpn.api import MvpnClient
from mvpn.core.dataplane import DataSession
from mvpn.core.effects import Counters
from mvpn.roles.data import EndpointData, PeerLookup
from mvpn.roles.shell import AnyClock, RoleService
from mvpn.roles.tun import TunService
from mvpn.wire.errors import WireError
from mvpn.wire.inner import MAX_INNER_PACKET, peek_ipv4

__all__ = ["SessionBridge", "TunSettings", "add_endpoint"]

SessionFinder = Callable[[ipaddress.IPv4Address], "DataSession | None"]
"""The newest live session with a peer address, or None."""


@dataclass(frozen=True)
class TunSettings:
    """A TUN device for an endpoint: its name, its address (``10.1.0.5/32`` on an MN: the
    home address), and the networks routed into it (the CNs on an MN; the MNs' home
    addresses on a CN)."""

    name: str
    address: ipaddress.IPv4Interface
    routes: tuple[ipaddress.IPv4Network, ...] = ()
    mtu: int = MAX_INNER_PACKET


class SessionBridge:
    """:class:`~mvpn.api.InnerEndpoint` over :class:`~mvpn.roles.data.EndpointData`.

    ``session_for(peer)`` finds the session with a peer address; ``peer_of(session)`` names
    the session's peer address (``cn_addr`` on an MN, ``mn_addr`` on a CN).

    Counters: ``send.no-session``, ``drops.inner-malformed``, ``drops.inner-source``.
    """

    log = Logger()

    def __init__(
        self,
        data: EndpointData,
        session_for: SessionFinder,
        peer_of: Callable[[DataSession], ipaddress.IPv4Address | None],
    ) -> None:
        self.data = data
        self.session_for = session_for
        self.peer_of = peer_of
        self.client: MvpnClient | None = None
        self.counters = Counters()
        self._sessions: dict[ipaddress.IPv4Address, tuple[int, DataSession]] = {}

    def send_inner(self, peer: ipaddress.IPv4Address, packet: bytes) -> bool:
        """Seal ``packet`` into the newest session with ``peer``; False when there is none."""
        session = self._session(peer)
        if session is None:
            self.counters.increment("send.no-session")
            return False
        return self.data.send(session.spi, packet)

    def _session(self, peer: ipaddress.IPv4Address) -> DataSession | None:
        # Per packet: the session found last time for this peer, unless a session was
        # installed since (a renewal is newer) or that one is gone.
        plane = self.data.plane
        installed = plane.counters.get("sessions.installed")
        cached = self._sessions.get(peer)
        if cached is not None:
            stamp, session = cached
            if stamp == installed and plane.sessions.get(session.spi) is session:
                return session
        found = self.session_for(peer)
        if found is None:
            self._sessions.pop(peer, None)
        else:
            self._sessions[peer] = (installed, found)
        return found

    def deliver(self, session: DataSession, inner: bytes) -> None:
        """An opened inner packet: to the client if it comes from the session's peer."""
        try:
            src, _, _ = peek_ipv4(inner)
        except WireError as e:
            self.counters.increment("drops.inner-malformed")
            self.log.debug("dropped an inner packet of SPI {spi}: {why}", spi=session.spi, why=e)
            return
        peer = self.peer_of(session)
        if peer is None or src != peer.packed:
            self.counters.increment("drops.inner-source")
            self.log.warn(
                "dropped an inner packet of SPI {spi} from {src}: not the session's peer",
                spi=session.spi,
                src=str(ipaddress.IPv4Address(src)),
            )
            return
        if self.client is not None:
            self.client.inner_received(inner)


def add_endpoint(
    top: RoleService,
    reactor: AnyClock,
    *,
    plane_owner: object,
    address: ipaddress.IPv4Address,
    peer_for: PeerLookup,
    session_for: SessionFinder,
    peer_of: Callable[[DataSession], ipaddress.IPv4Address | None],
    data_port: int,
    interface: str = "",
    tun: TunSettings | None = None,
) -> MvpnClient:
    """Add the data port (and the TUN device) of an MN or a CN to ``top``; the node's API
    client. ``plane_owner`` is the core holding the ``dataplane``; ``address`` is this
    node's own address inside the tunnel (the MN's home address, the CN's address)."""
    plane = plane_owner.dataplane  # type: ignore[attr-defined]
    data = EndpointData(plane, peer_for, None, reactor, data_port, interface=interface)
    data.setName("data")
    data.setServiceParent(top)
    top.add_counters("data.", data.counters)
    bridge = SessionBridge(data, session_for, peer_of)
    data.subscribe(bridge.deliver)
    client = MvpnClient(bridge, address)
    bridge.client = client
    top.runner.subscribe(client.event)
    top.add_counters("data.", bridge.counters.snapshot)
    top.add_counters("api.", client.counters.snapshot)
    if tun is not None:

        def from_tun(packet: bytes) -> None:
            # A refusal (no session with that destination yet) is counted by the client.
            client.send_packet(packet)

        device = TunService(
            reactor,
            tun.name,
            tun.address,
            routes=tun.routes,
            mtu=tun.mtu,
            on_packet=from_tun,
        )
        device.setServiceParent(top)
        client.other = device.write
        top.add_counters("tun.", device.counters.snapshot)
    return client
