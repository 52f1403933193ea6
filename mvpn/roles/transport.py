"""Datagram transports of the role shells: UDP ports and the advertisement transport.

:class:`UdpPortService` keeps one UDP port open while it runs and hands every datagram no
larger than :data:`MAX_DATAGRAM` to a callback (docs/protocol.md section 10: the largest
legitimate registration or control datagram is about 1.5 KB). Decoding is the core's job.

:class:`AdvertisementTransport` carries Agent Advertisements and Solicitations (RFC 5944
section 2, docs/protocol.md sections 2 and 3.3) in one of two ways:

- ``icmp``: a raw ICMP socket (``SOCK_RAW``, ``IPPROTO_ICMP``) opened in
  ``privilegedStartService``, read through ``reactor.addReader``; incoming packets carry their
  IPv4 header, which is stripped here; only ICMP types 9 and 10 are passed on;
- ``udp``: the same ICMP bytes as the payload of UDP datagrams on port 4349 (configurable),
  for unprivileged processes and loopback setups.

``mode = "auto"`` (the default) takes ICMP when the process may open a raw socket (root or
CAP_NET_RAW) and UDP otherwise; the choice is logged once at start.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.interfaces import (
    IReactorTime,
    IReactorUDP,
    IReadDescriptor,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from mvpn.core.effects import Address, Counters
from mvpn.wire.icmp import AGENT_ADVERTISEMENT_TYPE, AGENT_SOLICITATION_TYPE

MAX_DATAGRAM = 8192
"""Largest registration, control or advertisement datagram accepted (protocol.md 10)."""

DEFAULT_ADVERTISEMENT_PORT = 4349
"""UDP port of the advertisement fallback (docs/protocol.md section 2)."""

BROADCAST = "255.255.255.255"
"""The limited broadcast address: a ``Send`` to it (or to a multicast group) goes to the
configured targets when there are any."""


def _is_group(host: str) -> bool:
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return address.is_multicast or host == BROADCAST


DatagramHandler = Callable[[bytes, Address], None]


_SOL_RAW = 255
"""Linux's socket level of raw sockets (``SOL_RAW``)."""
_ICMP_FILTER = 1
"""Linux's ``ICMP_FILTER`` option: a 32-bit mask of ICMP types a raw socket does not get."""


class AdvertisementMode(enum.Enum):
    """How advertisements travel (``advertisement`` in the configuration)."""

    AUTO = "auto"
    ICMP = "icmp"
    UDP = "udp"


class _Receiver(DatagramProtocol):
    """Hands datagrams to a callback after the size check."""

    def __init__(self, owner: UdpPortService) -> None:
        self._owner = owner

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self._owner.received(datagram, addr)


class UdpPortService(Service):
    """A UDP port open while the service runs; datagrams go to ``handler``.

    Opened in ``privilegedStartService`` so that port 434 can be bound before twistd drops
    root. Counters: ``received``, ``drops.oversize``, ``handler_errors``.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorUDP,
        port: int,
        handler: DatagramHandler,
        *,
        interface: str = "",
        what: str = "registration",
        broadcast: bool = False,
    ) -> None:
        self._reactor = reactor
        self._port_number = port
        self._interface = interface
        self._handler = handler
        self._what = what
        self._broadcast = broadcast
        self._listening: Any = None  # an IListeningPort (UDP) while open
        self._protocol = _Receiver(self)
        self.counters = Counters()

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful with port 0)."""
        if self._listening is None:
            raise RuntimeError(f"the {self._what} port is not open")
        port: int = self._listening.getHost().port
        return port

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram from this port."""
        transport = self._protocol.transport
        if transport is None:
            raise OSError(errno.ENOTCONN, f"the {self._what} port is closed")
        cast(Any, transport).write(data, addr)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._open()

    def startService(self) -> None:
        super().startService()
        self._open()

    def stopService(self) -> object:
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is not None:
            return listening.stopListening()
        return None

    def _open(self) -> None:
        if self._listening is not None:
            return
        self._listening = cast(Any, self._reactor).listenUDP(
            self._port_number, self._protocol, interface=self._interface, maxPacketSize=65535
        )
        if self._broadcast:
            self._listening.setBroadcastAllowed(True)
        self.log.info(
            "{what} port open on UDP {interface}:{port}",
            what=self._what,
            interface=self._interface or "*",
            port=self.port,
        )

    def received(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """One datagram arrived: size check, then the handler (errors logged, never raised)."""
        self.counters.increment("received")
        if len(datagram) > MAX_DATAGRAM:
            self.counters.increment("drops.oversize")
            self.log.warn(
                "{what} datagram from {peer} dropped: {size} bytes, more than {limit}",
                what=self._what,
                peer=f"{addr[0]}:{addr[1]}",
                size=len(datagram),
                limit=MAX_DATAGRAM,
            )
            return
        try:
            self._handler(datagram, (addr[0], addr[1]))
        except Exception:
            self.counters.increment("handler_errors")
            self.log.failure(
                "{what} datagram from {peer} not handled",
                what=self._what,
                peer=f"{addr[0]}:{addr[1]}",
            )


def may_open_raw_socket() -> bool:
    """Whether this process can open a raw ICMP socket (root or CAP_NET_RAW)."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError:
        return False
    s.close()
    return True


@implementer(IReadDescriptor)
class _RawIcmpReader:
    """A raw ICMP socket as a Twisted reader (``reactor.addReader``)."""

    def __init__(self, sock: socket.socket, owner: AdvertisementTransport) -> None:
        self._sock = sock
        self._owner = owner

    def fileno(self) -> int:
        return self._sock.fileno()

    def logPrefix(self) -> str:
        return "RawICMP"

    def doRead(self) -> None:
        # Drain what is queued, as Twisted's UDP port does, without starving other readers.
        for _ in range(64):
            try:
                packet, addr = self._sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as e:
                self._owner.log.warn("raw ICMP socket read failed: {reason}", reason=str(e))
                return
            self._owner.raw_received(packet, addr[0])

    def connectionLost(self, reason: Failure) -> None:
        self._sock.close()


class AdvertisementTransport(Service):
    """Agent Advertisements and Solicitations over raw ICMP or UDP (module docstring).

    :param handler: called with the ICMP bytes and the sender's address (port 0 for ICMP).
    :param accept_types: ICMP types passed to ``handler``: an FA wants solicitations (10), a
        mobile node advertisements (9). A raw socket sees every ICMP packet of the host, its
        own included, so the filter is what keeps an agent from hearing itself.
    :param targets: where a ``Send`` to :data:`BROADCAST` or a multicast group goes (the
        foreign link's hosts on setups without broadcast, such as loopback). Empty: the
        broadcast or group itself.
    :param port: the UDP port (listening and default destination).

    Counters: ``received``, ``sent``, ``drops.oversize``, ``drops.short``, ``ignored``
    (other ICMP types), ``handler_errors``.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        handler: DatagramHandler,
        *,
        accept_types: Sequence[int] = (AGENT_ADVERTISEMENT_TYPE, AGENT_SOLICITATION_TYPE),
        mode: AdvertisementMode = AdvertisementMode.AUTO,
        interface: str = "",
        port: int = DEFAULT_ADVERTISEMENT_PORT,
        targets: Sequence[Address] = (),
        may_use_raw: Callable[[], bool] = may_open_raw_socket,
    ) -> None:
        self._reactor = reactor
        self._handler = handler
        self._accept = frozenset(accept_types)
        self._mode = mode
        self._interface = interface
        self._port_number = port
        self._targets = tuple(targets)
        self._may_use_raw = may_use_raw
        self._raw: _RawIcmpReader | None = None
        self._raw_socket: socket.socket | None = None
        self._udp = UdpPortService(
            cast(IReactorUDP, reactor),
            port,
            self._udp_received,
            interface=interface,
            what="advertisement",
            broadcast=True,
        )
        self.counters = Counters()
        self.kind: str | None = None
        """``"icmp"`` or ``"udp"`` once started."""

    @property
    def port(self) -> int:
        """The UDP port bound in ``udp`` mode."""
        return self._udp.port

    # -- service ----------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._open()

    def startService(self) -> None:
        super().startService()
        self._open()

    def stopService(self) -> object:
        super().stopService()
        if self._raw is not None:
            cast(Any, self._reactor).removeReader(self._raw)
            self._raw.connectionLost(Failure(ConnectionError("stopped")))
            self._raw = None
            self._raw_socket = None
        kind, self.kind = self.kind, None
        if kind == "udp":
            return self._udp.stopService()
        return None

    def _open(self) -> None:
        if self.kind is not None:
            return
        if self._mode is not AdvertisementMode.UDP and self._may_use_raw():
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            # Let the kernel drop every other ICMP type (pings through a TUN device, say)
            # before it reaches this process: Linux's ICMP_FILTER, a mask of types to drop.
            blocked = 0xFFFFFFFF & ~sum(1 << t for t in self._accept if t < 32)
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", blocked))
            if self._interface:
                sock.bind((self._interface, 0))
            self._raw_socket = sock
            self._raw = _RawIcmpReader(sock, self)
            cast(Any, self._reactor).addReader(self._raw)
            self.kind = "icmp"
            self.log.info(
                "advertisements over raw ICMP (types 9/10) on {interface}",
                interface=self._interface or "all interfaces",
            )
            return
        if self._mode is AdvertisementMode.ICMP:
            raise PermissionError(
                "advertisement = 'icmp' needs a raw socket (root or CAP_NET_RAW); "
                "use 'udp' or 'auto'"
            )
        self._udp.startService()
        self.kind = "udp"
        self.log.info(
            "advertisements over UDP port {port} on {interface} ({why})",
            port=self._udp.port,
            interface=self._interface or "all interfaces",
            why="configured" if self._mode is AdvertisementMode.UDP else "no raw socket allowed",
        )

    # -- sending ----------------------------------------------------------------------

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send ICMP bytes to ``addr`` (fanned out to the targets when it is the broadcast)."""
        if self.kind is None:
            raise OSError(errno.ENOTCONN, "the advertisement transport is closed")
        if self._targets and _is_group(addr[0]):
            destinations: Sequence[Address] = self._targets
        elif addr[0] == BROADCAST:
            destinations = ((BROADCAST, self._port_number),)
        else:
            destinations = (addr,)
        for host, port in destinations:
            if self._raw_socket is not None:
                self._raw_socket.sendto(data, (host, 0))
            else:
                self._udp.write(data, (host, port or self._port_number))
            self.counters.increment("sent")

    # -- receiving --------------------------------------------------------------------

    def raw_received(self, packet: bytes, source: str) -> None:
        """An IPv4 packet from the raw socket: strip the IP header, then as UDP."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self.counters.increment("drops.short")
            return
        data = packet[(packet[0] & 0x0F) * 4 :]
        if not data or data[0] not in self._accept:
            # Echo replies, our own advertisements looped back, other agents' traffic: a
            # raw socket sees all of it. (UDP datagrams all go to the core, which counts
            # what it cannot decode.)
            self.counters.increment("ignored")
            return
        self._deliver(data, (source, 0))

    def _udp_received(self, data: bytes, addr: Address) -> None:
        self._deliver(data, addr)

    def _deliver(self, data: bytes, addr: Address) -> None:
        if not data:
            self.counters.increment("drops.short")
            return
        self.counters.increment("received")
        if len(data) > MAX_DATAGRAM:
            self.counters.increment("drops.oversize")
            self.log.warn(
                "advertisement datagram from {peer} dropped: {size} bytes",
                peer=addr[0],
                size=len(data),
            )
            return
        try:
            self._handler(data, addr)
        except Exception:
            self.counters.increment("handler_errors")
            self.log.failure("advertisement datagram from {peer} not handled", peer=addr[0])
