"""The data shell: type-55 packets on UDP 4351 and through the HA-FA tunnel (draft 3.5.1, 8,
3.3; docs/protocol.md 2, 8, 9).

The sans-IO :mod:`mvpn.core.dataplane` checks, re-authenticates, seals and opens packets;
this module moves them between sockets. Each node's part is a ``MultiService``:

- :class:`HaDataRelay` (home agent): a CN's packet arrives on the data port, is forwarded
  (``Relay.forward``, towards the MN) and goes into the tunnel to the FA of the MN's binding
  (one :class:`~mvpn.tunnel.client.TunnelClient` per FA, dialled the first time it is
  needed, buffering while it connects). A packet from an FA's tunnel is forwarded (from the
  MN) and sent to the CN's data port. Tunnels that no binding uses are closed after
  :data:`TUNNEL_IDLE_GRACE`.
- :class:`FaDataRelay` (foreign agent): a :class:`~mvpn.tunnel.protocol.TunnelServerFactory`
  on the tunnel port; an HA's packet is forwarded and sent to the visitor's link address; a
  visitor's packet (only from its link address) is forwarded and goes into the tunnel to its
  HA. The handover hold of protocol.md 9 keeps packets of a current visitor whose SPI is not
  known yet (the Key Transfer has not arrived) until :meth:`FaDataRelay.release`.
- :class:`EndpointData` (mobile node, correspondent node): :meth:`EndpointData.send` seals
  and sends to the peer's data port; received packets are opened and delivered.

Every drop is counted (the plane's ``drops.<reason>``, the shell's own ``drops.no-binding``,
``drops.wrong-source`` ..., ``hold.expired``, ``hold.overflow``; the data port's
``port.received`` and ``port.handler_errors``) and logged at debug level
per packet, with one warning at most per :data:`WARN_INTERVAL` and reason (how many were
dropped since the last one). :meth:`counters` of each part is what ``mvpn status`` shows
under ``data.`` (and ``tunnel.`` for the tunnel's).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import (
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IStreamClientEndpoint,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mvpn.core.dataplane import (
    DataDrop,
    DataPlane,
    DataSession,
    Endpoint,
    NodeKind,
    Relay,
    SequenceExhausted,
)
from mvpn.core.effects import Address, Counters, Event
from mvpn.crypto.keys import PublicKeys
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.tc_errors import UnknownNode
from mvpn.roles.config import DATA_PORT, TUNNEL_PORT
from mvpn.roles.shell import AnyClock, CertificateSource, Clock, DelayedCall, as_clock, logs
from mvpn.roles.transport import UdpPortService
from mvpn.tunnel.client import TunnelClient
from mvpn.tunnel.protocol import PeerKeyLookup, TunnelIdentity, TunnelServerFactory
from mvpn.wire.data import DATA_PACKET_TYPE, MAX_DATA_PACKET, MIN_DATA_PACKET, TunnelRole

__all__ = [
    "DATA_PORT",
    "HOLD_PACKETS",
    "HOLD_SECONDS",
    "RECEIVE_BUFFER",
    "TUNNEL_IDLE_GRACE",
    "TUNNEL_PORT",
    "WARN_INTERVAL",
    "BindingLookup",
    "CurrentAgent",
    "DataPort",
    "DropLog",
    "EndpointData",
    "FaDataRelay",
    "HaDataRelay",
    "HandoverHold",
    "HeldPacket",
    "TunnelListener",
    "VisitorLookup",
    "VisitorView",
    "tunnel_peer_keys",
]

HOLD_PACKETS = 512
"""Packets the new FA holds during a handover, all visitors together (protocol.md 9, 10)."""

HOLD_SECONDS = 2.0
"""How long a held packet waits for its SPI (protocol.md 9, 10): the Key Transfer round
trip with its first retransmission."""

TUNNEL_IDLE_GRACE = 60.0
"""Seconds a tunnel no binding uses stays open: an MN moving back, or re-registering late,
finds it still up."""

TUNNEL_SWEEP_INTERVAL = 10.0
"""How often the HA looks for tunnels no binding uses any more."""

WARN_INTERVAL = 1.0
"""At most one warning per reason in this many seconds: a flood of bad packets costs a
counter increment and a debug event each, not a line of log each."""

RECEIVE_BUFFER = 4 << 20
"""Bytes of socket receive buffer asked for each data port: the usual default (208 KiB)
holds fewer than a hundred full-size packets, so a burst from a peer is lost in the kernel,
uncounted; the kernel caps the request at ``net.core.rmem_max``."""

_SPI = struct.Struct("!I")
_SPI_OFFSET = 8


@functools.lru_cache(maxsize=4096)
def address_text(address: ipaddress.IPv4Address) -> str:
    """``str(address)``, remembered: a per-packet conversion costs a microsecond, and the
    addresses a node routes to are few (its FAs, HAs, CNs)."""
    return str(address)


def _spi(packet: bytes) -> int | None:
    """The SPI of something that may be a type-55 packet; None when it is too short or of
    another type (the plane then refuses it as malformed)."""
    if len(packet) < MIN_DATA_PACKET or packet[0] != DATA_PACKET_TYPE:
        return None
    spi: int = _SPI.unpack_from(packet, _SPI_OFFSET)[0]
    return spi


def _peer(address: Address | str | None) -> str:
    if address is None:
        return "?"
    if isinstance(address, str):
        return address
    return f"{address[0]}:{address[1]}"


# --- tunnel peers' keys -------------------------------------------------------------------


_TUNNEL_ROLES = {TunnelRole.HOME_AGENT: Role.HA, TunnelRole.FOREIGN_AGENT: Role.FA}


def tunnel_peer_keys(certificates: CertificateSource) -> PeerKeyLookup:
    """The tunnel's key lookup (protocol.md 8.2) through the role's certificate source
    (local certificates, cache, then the Trusted Centre): the public keys of ``node_id``,
    whose certificate must be of the Hello's role."""

    def lookup(node_id: int, role: TunnelRole) -> Deferred[PublicKeys]:
        wanted = _TUNNEL_ROLES[role]

        def check(cert: NodeCertificate) -> PublicKeys:
            if cert.node_id != node_id or cert.role is not wanted:
                raise UnknownNode(
                    f"certificate {cert.describe()} is not {wanted.name} {node_id:#x}'s"
                )
            return cert.public_keys

        return certificates.lookup(node_id).addCallback(check)

    return lookup


# --- logging drops -------------------------------------------------------------------------


class DropLog:
    """Counts and logs dropped data packets of one node.

    :meth:`note` logs every drop at debug level and at most one warning per reason per
    :data:`WARN_INTERVAL`, saying how many of that reason were dropped since the previous
    warning. Counting is the caller's choice: the plane counts its own drops already.
    """

    def __init__(self, clock: AnyClock, log: Logger, what: str, counters: Counters) -> None:
        self._clock = as_clock(clock)
        self.log = log
        self.what = what
        self.counters = counters
        self._last_warn: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def note(
        self,
        counter: str,
        peer: Address | str | None,
        spi: int | None = None,
        *,
        count: bool = True,
        why: str = "",
    ) -> None:
        """One packet dropped for ``counter`` (``drops.<reason>``, ``hold.expired`` ...)."""
        if count:
            self.counters.increment(counter)
        where = _peer(peer)
        if logs("debug"):
            self.log.debug(
                "{what}: data packet from {peer} (SPI {spi}) dropped: {reason} {why}",
                what=self.what,
                peer=where,
                spi=spi,
                reason=counter,
                why=why,
            )
        now = self._clock.seconds()
        self._since[counter] = self._since.get(counter, 0) + 1
        last = self._last_warn.get(counter)
        if last is not None and now - last < WARN_INTERVAL:
            return
        self._last_warn[counter] = now
        dropped = self._since.pop(counter)
        self.log.warn(
            "{what}: {dropped} data packet(s) dropped ({reason}), the last from {peer} "
            "(SPI {spi}) {why}",
            what=self.what,
            dropped=dropped,
            reason=counter,
            peer=where,
            spi=spi,
            why=why,
        )

    def drop(self, drop: DataDrop, peer: Address | str | None) -> None:
        """A refusal of the plane (already counted by it)."""
        self.note(drop.counter, peer, drop.spi, count=False)


# --- the UDP data port ---------------------------------------------------------------------


class DataPort(UdpPortService):
    """The UDP data port (4351): :class:`~mvpn.roles.transport.UdpPortService` with the data
    flow's size bound (a type-55 packet is at most 65535 bytes, protocol.md 8.1) and its
    drops counted in ``drops`` (``drops.oversize``, rate-limited warnings) instead of one
    warning per datagram. Opened in ``privilegedStartService``."""

    def __init__(
        self,
        reactor: IReactorUDP,
        port: int,
        handler: Callable[[bytes, Address], None],
        drops: DropLog,
        *,
        interface: str = "",
        max_size: int = MAX_DATA_PACKET,
        receive_buffer: int = RECEIVE_BUFFER,
    ) -> None:
        super().__init__(reactor, port, handler, interface=interface, what="data")
        self._drops = drops
        self.max_size = max_size
        self.receive_buffer = receive_buffer
        self._data_handler = handler

    def _open(self) -> None:
        # The port opens in privilegedStartService (or startService): grow its buffer then.
        super()._open()
        self._grow_buffer()

    def _grow_buffer(self) -> None:
        sock = getattr(self._listening, "socket", None)
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        except OSError as e:
            self.log.warn(
                "data port: receive buffer of {size} bytes refused: {reason}",
                size=self.receive_buffer,
                reason=str(e),
            )

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram: straight to the socket. Every address here comes from a
        session, a binding or a visitor (an IPv4 address already parsed), so Twisted's
        per-write address validation, which parses the string up to four times, is a cost
        without a use on this path (measured: a fifth of an endpoint's time per packet).
        :class:`OSError` as from ``sendto`` (a full socket buffer is ``BlockingIOError``)."""
        sock = getattr(self._listening, "socket", None)
        if sock is None:
            super().write(data, addr)
            return
        try:
            sock.sendto(data, addr)
        except InterruptedError:
            sock.sendto(data, addr)

    def totals(self) -> dict[str, int]:
        """The port's own counters under ``port.`` (``port.received``,
        ``port.handler_errors``)."""
        return {"port." + k: v for k, v in self.counters.snapshot().items()}

    def received(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """One datagram: size check, then the handler (a handler error is a bug: logged with
        its traceback and counted, and the port goes on)."""
        self.counters.increment("received")
        if len(datagram) > self.max_size:
            self._drops.note("drops.oversize", addr, why=f"({len(datagram)} bytes)")
            return
        try:
            self._data_handler(datagram, addr)
        except Exception:
            self.counters.increment("handler_errors")
            self.log.failure("data datagram from {peer} not handled", peer=_peer(addr))


def _merge(*sources: Mapping[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for source in sources:
        for key, value in source.items():
            merged[key] = merged.get(key, 0) + value
    return dict(sorted(merged.items()))


# --- the home agent ------------------------------------------------------------------------


BindingLookup = Callable[[ipaddress.IPv4Address], "tuple[int, ipaddress.IPv4Address | str] | None"]
"""``binding_for(home_address)``: the current binding's ``(fa_id, care_of)``, or None."""

TunnelKey = tuple[int, str]
"""(FA node ID, care-of address): one tunnel each."""


class DataTunnel(Protocol):
    """What the HA relay needs of a tunnel to an FA (a :class:`TunnelClient`; a fake in
    tests)."""

    counters: Counters

    def send_data(self, mn_addr: bytes, packet: bytes) -> bool: ...

    def setServiceParent(self, parent: Any) -> Any: ...

    def disownServiceParent(self) -> Any: ...


TunnelFactory = Callable[[int, str, Callable[[bytes, bytes], None]], DataTunnel]
"""``open(fa_id, care_of, on_data)``: a new, not yet started tunnel to that FA."""


@dataclass
class _Tunnel:
    tunnel: DataTunnel
    unused_since: float | None = None


class HaDataRelay(MultiService):
    """The home agent's data flow (module docstring; protocol.md 8, 9 step 3).

    :param plane: the HA core's data plane (``NodeKind.HA``).
    :param identity: the HA's tunnel identity (node ID, role, keys that sign the Hello).
    :param peer_keys: FA public keys by node ID and role (the certificate source).
    :param binding_for: the current binding of an MN's home address.
    :param reactor: clock, UDP and TCP.
    :param tunnel_port: the FAs' tunnel port the HA dials.
    :param data_port: the HA's own data port (0: any, see :attr:`port`).
    :param peer_data_port: the CNs' data port; by default ``data_port`` (protocol.md 2).
    :param open_tunnel: how a tunnel to an FA is made (tests); by default a
        :class:`TunnelClient` dialling ``(care_of, tunnel_port)``.

    Counters (:meth:`counters`, ``data.``): the plane's, ``received.packets``,
    ``to_tunnel.packets``, ``to_cn.packets``, ``drops.no-binding``, ``drops.no-route``,
    ``drops.wrong-source``, ``drops.tunnel-full``, ``drops.send-error``, ``tunnels.opened``,
    ``tunnels.closed``; :meth:`tunnel_counters` (``tunnel.``) sums every tunnel's.
    """

    log = Logger()

    def __init__(
        self,
        plane: DataPlane,
        identity: TunnelIdentity,
        peer_keys: PeerKeyLookup,
        binding_for: BindingLookup,
        reactor: AnyClock,
        tunnel_port: int = TUNNEL_PORT,
        data_port: int = DATA_PORT,
        *,
        interface: str = "",
        peer_data_port: int | None = None,
        idle_grace: float = TUNNEL_IDLE_GRACE,
        sweep_interval: float = TUNNEL_SWEEP_INTERVAL,
        open_tunnel: TunnelFactory | None = None,
    ) -> None:
        super().__init__()
        if plane.kind is not NodeKind.HA:
            raise ValueError(f"the HA relay needs an HA data plane, not {plane.kind.name}'s")
        self.plane = plane
        self.relay = Relay(plane)
        self.identity = identity
        self.peer_keys = peer_keys
        self.binding_for = binding_for
        self.reactor = reactor
        self.clock: Clock = as_clock(reactor)
        self.tunnel_port = tunnel_port
        self.peer_data_port = data_port if peer_data_port is None else peer_data_port
        self.idle_grace = idle_grace
        self.own = Counters()
        self.drops = DropLog(reactor, self.log, "home agent", self.own)
        self.tunnels: dict[TunnelKey, _Tunnel] = {}
        self._routes: dict[ipaddress.IPv4Address, TunnelKey] = {}
        """Which tunnel each MN's packets last went to (or were prepared for)."""
        self._retired = Counters()
        self._open_tunnel = open_tunnel or self._dial
        self.data_port = DataPort(
            cast(IReactorUDP, reactor),
            data_port,
            self.cn_datagram,
            self.drops,
            interface=interface,
        )
        self.data_port.setName("data-port")
        self.data_port.setServiceParent(self)
        self._sweep = LoopingCall(self.sweep)
        self._sweep.clock = cast(Any, reactor)
        self._sweep_interval = sweep_interval

    @property
    def port(self) -> int:
        """The data port actually bound."""
        return self.data_port.port

    def startService(self) -> None:
        super().startService()
        if not self._sweep.running:
            self._sweep.start(self._sweep_interval, now=False)

    def stopService(self) -> Any:
        if self._sweep.running:
            self._sweep.stop()
        return super().stopService()

    # -- tunnels ------------------------------------------------------------------------

    def _dial(
        self, fa_id: int, care_of: str, on_data: Callable[[bytes, bytes], None]
    ) -> DataTunnel:
        endpoint = TCP4ClientEndpoint(cast(IReactorTCP, self.reactor), care_of, self.tunnel_port)
        return TunnelClient(
            cast(IReactorTime, self.reactor),
            cast(IStreamClientEndpoint, endpoint),
            self.identity,
            fa_id,
            self.peer_keys,
            on_data,
        )

    def tunnel_to(self, fa_id: int, care_of: ipaddress.IPv4Address | str) -> DataTunnel:
        """The tunnel to the FA ``fa_id`` at ``care_of``, dialled now if there is none (it
        keeps frames while it connects, protocol.md 8.2)."""
        key = (fa_id, str(care_of))
        entry = self.tunnels.get(key)
        if entry is None:

            def on_data(mn_addr: bytes, packet: bytes) -> None:
                self.tunnel_data(key, mn_addr, packet)

            tunnel = self._open_tunnel(fa_id, key[1], on_data)
            cast(Service, tunnel).setName(f"tunnel-{fa_id:#x}-{key[1]}")
            tunnel.setServiceParent(self)
            entry = self.tunnels[key] = _Tunnel(tunnel)
            self.own.increment("tunnels.opened")
            self.log.info(
                "tunnel to foreign agent {fa_id:#x} at {care_of}:{port} opened",
                fa_id=fa_id,
                care_of=key[1],
                port=self.tunnel_port,
            )
        entry.unused_since = None
        return entry.tunnel

    def prepare(self, home_address: ipaddress.IPv4Address) -> DataTunnel | None:
        """Dial the tunnel of ``home_address``'s binding now, before any packet needs it:
        an FA can only send through a tunnel the HA opened, so an MN that speaks first
        needs it up. None when the MN has no binding."""
        binding = self.binding_for(home_address)
        if binding is None:
            return None
        key = (binding[0], address_text(binding[1]))
        self._routes[home_address] = key
        return self.tunnel_to(*key)

    def event_received(self, event: Event) -> None:
        """Subscribe this to the HA's runner: a binding that appears or moves
        ("registered", "moved", "reregistered") or a session that is authorised
        ("session-authorised") gets its tunnel dialled at once (:meth:`prepare`)."""
        if event.name in ("registered", "moved", "reregistered", "session-authorised"):
            home = event.fields.get("home_address")
            if home is not None:
                self.prepare(ipaddress.IPv4Address(str(home)))

    def sweep(self) -> None:
        """Close the tunnels that no binding has used for :attr:`idle_grace` seconds."""
        now = self.clock.seconds()
        used: set[TunnelKey] = set()
        for home in list(self._routes):
            binding = self.binding_for(home)
            if binding is None:
                del self._routes[home]
                continue
            key = self._routes[home] = (binding[0], address_text(binding[1]))
            used.add(key)
        for key, entry in list(self.tunnels.items()):
            if key in used:
                entry.unused_since = None
            elif entry.unused_since is None:
                entry.unused_since = now
            elif now - entry.unused_since >= self.idle_grace:
                self._close(key, entry)

    def _close(self, key: TunnelKey, entry: _Tunnel) -> None:
        del self.tunnels[key]
        for name, value in entry.tunnel.counters.snapshot().items():
            self._retired.increment(name, value)
        entry.tunnel.disownServiceParent()
        self.own.increment("tunnels.closed")
        self.log.info(
            "tunnel to foreign agent {fa_id:#x} at {care_of} closed: no binding used it "
            "for {grace} s",
            fa_id=key[0],
            care_of=key[1],
            grace=self.idle_grace,
        )

    # -- packets ------------------------------------------------------------------------

    def cn_datagram(self, packet: bytes, source: Address) -> None:
        """A packet from a CN (data port): forward towards the MN, into its FA's tunnel."""
        self.own.increment("received.packets")
        try:
            out = self.relay.forward(packet, False)
        except DataDrop as drop:
            self.drops.drop(drop, source)
            return
        spi = _SPI.unpack_from(out, _SPI_OFFSET)[0]
        session = self.plane.sessions[spi]
        home = session.mn_addr
        if home is None:
            self.drops.note("drops.no-route", source, spi, why="(session without MN address)")
            return
        binding = self.binding_for(home)
        if binding is None:
            self.drops.note("drops.no-binding", source, spi, why=f"(MN {home})")
            return
        key = (binding[0], address_text(binding[1]))
        self._routes[home] = key
        entry = self.tunnels.get(key)
        tunnel = entry.tunnel if entry is not None else self.tunnel_to(*key)
        if tunnel.send_data(home.packed, out):
            self.own.increment("to_tunnel.packets")
        else:
            self.drops.note("drops.tunnel-full", source, spi, why=f"(FA {key[0]:#x})")

    def tunnel_data(self, key: TunnelKey, mn_addr: bytes, packet: bytes) -> None:
        """A packet from the FA ``key``'s tunnel: forward from the MN, to the CN."""
        self.own.increment("received.packets")
        spi = _spi(packet)
        session = self.plane.sessions.get(spi) if spi is not None else None
        if session is not None and (session.mn_addr is None or session.mn_addr.packed != mn_addr):
            # The frame's MN ADDR must be the session's MN: an FA cannot relay one MN's
            # session as another's.
            self.drops.note("drops.wrong-source", key[1], spi, why="(MN ADDR not the session's)")
            return
        try:
            out = self.relay.forward(packet, True)
        except DataDrop as drop:
            self.drops.drop(drop, key[1])
            return
        assert session is not None  # forward() found it
        if session.cn_addr is None:
            self.drops.note("drops.no-route", key[1], spi, why="(session without CN address)")
            return
        try:
            self.data_port.write(out, (str(session.cn_addr), self.peer_data_port))
        except OSError as e:
            self.drops.note("drops.send-error", str(session.cn_addr), spi, why=str(e))
            return
        self.own.increment("to_cn.packets")

    # -- status -------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """The data counters: the plane's and this shell's (``data.`` in ``mvpn status``)."""
        return _merge(self.plane.counters.snapshot(), self.own.snapshot(), self.data_port.totals())

    def tunnel_counters(self) -> dict[str, int]:
        """Every tunnel's counters summed, closed ones included (``tunnel.``)."""
        return _merge(
            self._retired.snapshot(),
            *(e.tunnel.counters.snapshot() for e in self.tunnels.values()),
        )


# --- the foreign agent ---------------------------------------------------------------------


class VisitorView(Protocol):
    """What the FA relay reads of a visitor (:class:`mvpn.core.fa.Visitor`)."""

    @property
    def mn(self) -> Address:
        """The MN's address on the foreign link."""

    @property
    def ha_id(self) -> int | None:
        """The node ID of the MN's home agent (None: a plain RFC 5944 visitor)."""


VisitorLookup = Callable[[ipaddress.IPv4Address], "VisitorView | None"]
"""``visitor_for(home_address)``: the current visitor entry, or None."""


@dataclass(frozen=True)
class HeldPacket:
    """A packet the new FA holds until its SPI is known (protocol.md 9 step 5)."""

    held_at: float
    spi: int
    from_mn: bool
    packet: bytes
    source: Address | None
    """Where a packet from the MN came from (None for one from the tunnel)."""
    mn_addr: bytes
    """The MN ADDR of a packet from the tunnel (4 packed bytes; empty from the MN)."""


class HandoverHold:
    """The handover hold of protocol.md 9 step 5: at most ``limit`` packets, each at most
    ``seconds``; one timer for the oldest.

    Counters: ``hold.held``, ``hold.released``, ``hold.expired``, ``hold.overflow``.
    """

    def __init__(
        self,
        clock: AnyClock,
        drops: DropLog,
        limit: int = HOLD_PACKETS,
        seconds: float = HOLD_SECONDS,
    ) -> None:
        self.clock = as_clock(clock)
        self.drops = drops
        self.limit = limit
        self.seconds = seconds
        self.packets: deque[HeldPacket] = deque()
        self._timer: DelayedCall | None = None

    def __len__(self) -> int:
        return len(self.packets)

    def hold(self, held: HeldPacket) -> bool:
        """Keep ``held``; False (counted ``hold.overflow``, logged) when the hold is full."""
        if len(self.packets) >= self.limit:
            self.drops.note(
                "hold.overflow", held.source or "tunnel", held.spi, why="(handover hold full)"
            )
            return False
        self.packets.append(held)
        self.drops.counters.increment("hold.held")
        if self._timer is None:
            self._timer = self.clock.callLater(self.seconds, self.expire)
        return True

    def take(self, spis: Iterable[int]) -> list[HeldPacket]:
        """Remove and return, in arrival order, the held packets of ``spis``."""
        wanted = set(spis)
        taken = [h for h in self.packets if h.spi in wanted]
        if taken:
            self.packets = deque(h for h in self.packets if h.spi not in wanted)
            self.drops.counters.increment("hold.released", len(taken))
            if not self.packets:
                self._cancel()
        return taken

    def expire(self) -> None:
        """Drop (count ``hold.expired``, log) every packet held for :attr:`seconds`; arm the
        timer for the next oldest."""
        self._timer = None
        now = self.clock.seconds()
        packets = self.packets
        while packets and now - packets[0].held_at >= self.seconds:
            held = packets.popleft()
            self.drops.note(
                "hold.expired",
                held.source or "tunnel",
                held.spi,
                why=f"(SPI unknown after {self.seconds} s)",
            )
        if packets:
            delay = packets[0].held_at + self.seconds - now
            self._timer = self.clock.callLater(max(delay, 0.0), self.expire)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def stop(self) -> None:
        """Cancel the timer (the service stops); held packets stay until released."""
        self._cancel()


class TunnelListener(Service):
    """A TCP port open while the service runs (the FA's tunnel port), opened in
    ``privilegedStartService`` so that a low port can be bound before twistd drops root."""

    log = Logger()

    def __init__(
        self, reactor: IReactorTCP, port: int, factory: TunnelServerFactory, interface: str = ""
    ) -> None:
        self._reactor = reactor
        self._port_number = port
        self._factory = factory
        self._interface = interface
        self._listening: Any = None

    @property
    def port(self) -> int:
        """The TCP port actually bound."""
        if self._listening is None:
            raise RuntimeError("the tunnel port is not open")
        port: int = self._listening.getHost().port
        return port

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._open()

    def startService(self) -> None:
        super().startService()
        self._open()

    def _open(self) -> None:
        if self._listening is not None:
            return
        self._listening = cast(Any, self._reactor).listenTCP(
            self._port_number, self._factory, interface=self._interface
        )
        self.log.info(
            "tunnel port open on TCP {interface}:{port}",
            interface=self._interface or "*",
            port=self.port,
        )

    def stopService(self) -> Any:
        super().stopService()
        listening, self._listening = self._listening, None
        for protocol in list(self._factory.connections.values()):
            protocol.close("connections.stopped", "the foreign agent stops")
        if listening is not None:
            return listening.stopListening()
        return None


class FaDataRelay(MultiService):
    """The foreign agent's data flow (module docstring; protocol.md 8.2, 8.3, 9).

    :param plane: the FA core's data plane (``NodeKind.FA``).
    :param identity: the FA's tunnel identity.
    :param peer_keys: HA public keys by node ID and role.
    :param visitor_for: the current visitor entry of an MN's home address.
    :param reactor: clock, UDP and TCP.
    :param visitor_at: the current visitor whose link address is this IP (a packet from the
        MN side whose SPI is not known yet is held only for a current visitor); by default
        an index of link addresses this relay keeps from the FA core's "registered",
        "visitor-expired" and "deregistered" events (:meth:`event_received`).
    :param tunnel_port: the TCP port the FA listens on (0: any, see :attr:`tunnel_port`).
    :param data_port: the FA's own data port (0: any, see :attr:`port`).
    :param peer_data_port: the MNs' data port; by default ``data_port``.

    Counters (``data.``): the plane's, ``received.packets``, ``to_mn.packets``,
    ``to_tunnel.packets``, ``drops.no-visitor``, ``drops.wrong-source``,
    ``drops.no-home-agent``, ``drops.no-route``, ``drops.tunnel-full``, ``drops.send-error``,
    ``hold.*``; the tunnel factory's (``tunnel.``).
    """

    log = Logger()

    def __init__(
        self,
        plane: DataPlane,
        identity: TunnelIdentity,
        peer_keys: PeerKeyLookup,
        visitor_for: VisitorLookup,
        reactor: AnyClock,
        *,
        visitor_at: Callable[[str], VisitorView | None] | None = None,
        tunnel_port: int = TUNNEL_PORT,
        data_port: int = DATA_PORT,
        interface: str = "",
        peer_data_port: int | None = None,
        hold_packets: int = HOLD_PACKETS,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        super().__init__()
        if plane.kind is not NodeKind.FA:
            raise ValueError(f"the FA relay needs an FA data plane, not {plane.kind.name}'s")
        self.plane = plane
        self.relay = Relay(plane)
        self.visitor_for = visitor_for
        self.visitor_at = visitor_at or self._visitor_at
        self._links: dict[str, ipaddress.IPv4Address] = {}
        """Link IP -> home address of the visitors registered here (for the hold)."""
        self.clock: Clock = as_clock(reactor)
        self.peer_data_port = data_port if peer_data_port is None else peer_data_port
        self.own = Counters()
        self.drops = DropLog(reactor, self.log, "foreign agent", self.own)
        self.hold = HandoverHold(reactor, self.drops, hold_packets, hold_seconds)
        self.factory = TunnelServerFactory(
            identity, cast(IReactorTime, reactor), peer_keys, self.tunnel_data
        )
        self.listener = TunnelListener(
            cast(IReactorTCP, reactor), tunnel_port, self.factory, interface
        )
        self.listener.setName("tunnel-port")
        self.listener.setServiceParent(self)
        self.data_port = DataPort(
            cast(IReactorUDP, reactor),
            data_port,
            self.mn_datagram,
            self.drops,
            interface=interface,
        )
        self.data_port.setName("data-port")
        self.data_port.setServiceParent(self)

    @property
    def port(self) -> int:
        """The data port actually bound."""
        return self.data_port.port

    @property
    def tunnel_port(self) -> int:
        """The tunnel port actually bound."""
        return self.listener.port

    def stopService(self) -> Any:
        self.hold.stop()
        return super().stopService()

    # -- the handover hold --------------------------------------------------------------

    def release(self, spis: Iterable[int]) -> None:
        """The sessions ``spis`` are installed now (a Key Transfer, protocol.md 9 step 5):
        forward their held packets in arrival order."""
        for held in self.hold.take(spis):
            if held.from_mn:
                assert held.source is not None
                self._from_mn(held.packet, held.source, may_hold=False)
            else:
                self._from_tunnel(held.mn_addr, held.packet, may_hold=False)

    def event_received(self, event: Event) -> None:
        """Subscribe this to the FA's runner: "sessions-transferred" releases the held
        packets of its SPIs; "registered", "visitor-expired" and "deregistered" keep the
        index of visitors' link addresses."""
        if event.name == "sessions-transferred":
            spis = event.fields.get("spis", ())
            self.release(cast(Iterable[int], spis))
            return
        home_field = event.fields.get("home_address")
        if home_field is None:
            return
        home = ipaddress.IPv4Address(str(home_field))
        if event.name == "registered":
            visitor = self.visitor_for(home)
            if visitor is not None:
                self._links[visitor.mn[0]] = home
        elif event.name in ("visitor-expired", "deregistered"):
            for ip in [ip for ip, h in self._links.items() if h == home]:
                del self._links[ip]

    def _visitor_at(self, ip: str) -> VisitorView | None:
        home = self._links.get(ip)
        if home is None:
            return None
        visitor = self.visitor_for(home)
        if visitor is None or visitor.mn[0] != ip:
            # Gone or moved on the link without an event: forget the stale entry.
            del self._links[ip]
            return None
        return visitor

    # -- packets ------------------------------------------------------------------------

    def tunnel_data(self, mn_addr: bytes, packet: bytes) -> None:
        """A packet from an HA's tunnel: forward towards the MN, to its link address."""
        self.own.increment("received.packets")
        self._from_tunnel(mn_addr, packet, may_hold=True)

    def _from_tunnel(self, mn_addr: bytes, packet: bytes, *, may_hold: bool) -> None:
        spi = _spi(packet)
        session = self.plane.sessions.get(spi) if spi is not None else None
        if session is None and spi is not None and may_hold:
            home = ipaddress.IPv4Address(mn_addr)
            if self.visitor_for(home) is not None:
                self.hold.hold(HeldPacket(self.clock.seconds(), spi, False, packet, None, mn_addr))
                return
        try:
            out = self.relay.forward(packet, False)
        except DataDrop as drop:
            self.drops.drop(drop, "tunnel")
            return
        assert session is not None  # forward() found it
        home_address = session.mn_addr
        if home_address is None:
            self.drops.note("drops.no-route", "tunnel", spi, why="(session without MN address)")
            return
        visitor = self.visitor_for(home_address)
        if visitor is None:
            self.drops.note("drops.no-visitor", "tunnel", spi, why=f"(MN {home_address})")
            return
        to = (visitor.mn[0], self.peer_data_port)
        try:
            self.data_port.write(out, to)
        except OSError as e:
            self.drops.note("drops.send-error", to, spi, why=str(e))
            return
        self.own.increment("to_mn.packets")

    def mn_datagram(self, packet: bytes, source: Address) -> None:
        """A packet from a visitor (data port): only from its link address; forward from
        the MN, into the tunnel to its HA."""
        self.own.increment("received.packets")
        self._from_mn(packet, source, may_hold=True)

    def _from_mn(self, packet: bytes, source: Address, *, may_hold: bool) -> None:
        spi = _spi(packet)
        session = self.plane.sessions.get(spi) if spi is not None else None
        if session is None:
            if spi is not None and may_hold and self.visitor_at is not None:
                visitor = self.visitor_at(source[0])
                if visitor is not None:
                    self.hold.hold(
                        HeldPacket(self.clock.seconds(), spi, True, packet, source, b"")
                    )
                    return
            try:
                self.relay.forward(packet, True)
            except DataDrop as drop:
                self.drops.drop(drop, source)
            return
        home = session.mn_addr
        if home is None:
            self.drops.note("drops.no-route", source, spi, why="(session without MN address)")
            return
        visitor = self.visitor_for(home)
        if visitor is None:
            self.drops.note("drops.no-visitor", source, spi, why=f"(MN {home})")
            return
        if visitor.mn[0] != source[0]:
            # Checked before the tag: a packet from elsewhere on the link must not move the
            # session's replay window.
            self.drops.note(
                "drops.wrong-source", source, spi, why=f"(MN {home} is at {visitor.mn[0]})"
            )
            return
        ha_id = visitor.ha_id
        if ha_id is None:
            self.drops.note("drops.no-home-agent", source, spi, why=f"(MN {home})")
            return
        try:
            out = self.relay.forward(packet, True)
        except DataDrop as drop:
            self.drops.drop(drop, source)
            return
        if self.factory.send_data(ha_id, home.packed, out):
            self.own.increment("to_tunnel.packets")
        else:
            self.drops.note("drops.tunnel-full", source, spi, why=f"(HA {ha_id:#x})")

    # -- status -------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """The data counters (``data.``): the plane's, this shell's and the hold's."""
        return _merge(self.plane.counters.snapshot(), self.own.snapshot(), self.data_port.totals())

    def tunnel_counters(self) -> dict[str, int]:
        """The tunnel factory's counters (``tunnel.``)."""
        return self.factory.counters.snapshot()


# --- the endpoints -------------------------------------------------------------------------


class CurrentAgent:
    """The MN's current FA, from its core's events, as :class:`EndpointData`'s
    ``peer_for``: packets go to that FA's data port (protocol.md 8.3).

    "registered" and "reregistered" name the FA (``fa``), "moved" the new one (``to``); the
    MN sends through a new FA as soon as it accepted the first contact (protocol.md 9 step
    6). Before any registration there is no peer (the packet is not sent, and counted).
    """

    def __init__(self, data_port: int = DATA_PORT) -> None:
        self.data_port = data_port
        self.address: str | None = None

    def event_received(self, event: Event) -> None:
        """Subscribe this to the MN's runner."""
        if event.name in ("registered", "reregistered"):
            address = event.fields.get("fa")
        elif event.name == "moved":
            address = event.fields.get("to")
        else:
            return
        if address is not None:
            self.address = str(address)

    def peer_for(self, session: DataSession) -> Address | None:
        """The current FA's data port, for every session."""
        if self.address is None:
            return None
        return (self.address, self.data_port)


PeerLookup = Callable[[DataSession], "Address | None"]
"""``peer_for(session)``: where this endpoint's packets of ``session`` go (the MN: its
current FA's data port; the CN: the HA's), or None when there is nowhere to send."""

Delivery = Callable[[DataSession, bytes], None]
"""``deliver(session, inner_packet)``: an opened inner packet for the application."""


class EndpointData(MultiService):
    """The MN's or the CN's data flow: seal and send, receive and open (protocol.md 8.1,
    8.3).

    ``deliver`` (optional) and every callback added with :meth:`subscribe` get each opened
    inner packet with its session (the TUN device, the in-process API).

    Counters (``data.``): the plane's (``sealed.*``, ``opened.*``, ``drops.<reason>``),
    ``received.packets``, ``sent.packets``, ``delivered.packets``, ``drops.no-receiver``,
    ``send.unknown-spi``, ``send.no-cipher``, ``send.exhausted``, ``send.no-peer``,
    ``send.error``.
    """

    log = Logger()

    def __init__(
        self,
        plane: DataPlane,
        peer_for: PeerLookup,
        deliver: Delivery | None,
        reactor: AnyClock,
        data_port: int = DATA_PORT,
        *,
        interface: str = "",
    ) -> None:
        super().__init__()
        self.plane = plane
        self.endpoint = Endpoint(plane)
        self.peer_for = peer_for
        self._receivers: list[Delivery] = [] if deliver is None else [deliver]
        self._watchers: list[Callable[[bytes, Address], None]] = []
        self.own = Counters()
        what = "mobile node" if plane.kind is NodeKind.MN else "correspondent"
        self.drops = DropLog(reactor, self.log, what, self.own)
        self.data_port = DataPort(
            cast(IReactorUDP, reactor), data_port, self.datagram, self.drops, interface=interface
        )
        self.data_port.setName("data-port")
        self.data_port.setServiceParent(self)

    @property
    def port(self) -> int:
        """The data port actually bound."""
        return self.data_port.port

    def subscribe(self, receiver: Delivery) -> Callable[[], None]:
        """Give ``receiver`` every opened inner packet; returns a function that
        unsubscribes."""
        self._receivers.append(receiver)

        def unsubscribe() -> None:
            if receiver in self._receivers:
                self._receivers.remove(receiver)

        return unsubscribe

    def send(self, spi: int, inner_packet: bytes) -> bool:
        """Seal ``inner_packet`` on the session ``spi`` and send it to the peer; False
        (counted ``send.<why>``, logged rate-limited) when it cannot be sent."""
        session = self.plane.sessions.get(spi)
        if session is None:
            self.drops.note("send.unknown-spi", None, spi)
            return False
        to = self.peer_for(session)
        if to is None:
            self.drops.note("send.no-peer", None, spi)
            return False
        try:
            packet = self.endpoint.seal(spi, inner_packet)
        except DataDrop as drop:
            self.drops.note("send." + drop.reason, None, spi)
            return False
        except SequenceExhausted:
            self.drops.note("send.exhausted", None, spi)
            return False
        try:
            self.data_port.write(packet, to)
        except OSError as e:
            self.drops.note("send.error", to, spi, why=str(e))
            return False
        self.own.increment("sent.packets")
        return True

    def watch(self, watcher: Callable[[bytes, Address], None]) -> Callable[[], None]:
        """Show ``watcher`` every datagram that arrives, with its source, before it is
        opened (a tap for tools: which FA delivered what); returns a function that stops
        it. A watcher sees the datagram before any receiver sees its inner packet."""
        self._watchers.append(watcher)

        def unwatch() -> None:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

        return unwatch

    def datagram(self, packet: bytes, source: Address) -> None:
        """A packet from the data port: open it and deliver the inner packet."""
        self.own.increment("received.packets")
        for watcher in self._watchers:
            watcher(packet, source)
        try:
            inner = self.endpoint.open(packet)
        except DataDrop as drop:
            self.drops.drop(drop, source)
            return
        session = self.plane.sessions[_SPI.unpack_from(packet, _SPI_OFFSET)[0]]
        receivers = self._receivers
        if not receivers:
            self.drops.note("drops.no-receiver", source, session.spi)
            return
        self.own.increment("delivered.packets")
        for receiver in list(receivers):
            receiver(session, inner)

    def counters(self) -> dict[str, int]:
        """The data counters (``data.``): the plane's and this shell's."""
        return _merge(self.plane.counters.snapshot(), self.own.snapshot(), self.data_port.totals())
