"""TUN devices: unmodified programs talk through MVPN (issue 5, "Applications on top").

:class:`TunService` owns one Linux TUN device (``IFF_TUN | IFF_NO_PI``: bare IPv4 packets, no
packet-information header) through :class:`twisted.pair.tuntap.TuntapPort`, wrapped behind
our own :class:`ITunDevice` so the rest of mvpn never sees Twisted's private TUN seams.

- ``privilegedStartService`` opens ``/dev/net/tun`` and creates the interface (both need
  CAP_NET_ADMIN, so before twistd drops privileges), then sets MTU, address, link up and
  routes with iproute2. The MN's daemon gives its home address to the device; the CN's
  routes the MN's home address into it.
- Packets the kernel routes into the device are read and handed to ``on_packet``; packets
  given to :meth:`TunService.write` go to the kernel as if they had arrived on that link.
- ``stopService`` closes the device. It is not persistent, so the kernel deletes the
  interface and with it every address and route we set: nothing is left behind even after
  twistd dropped the privilege ``ip`` would need to remove them one by one.

Why ``ip`` through a subprocess and not pyroute2: four commands once at start are not worth a
new dependency (and its netlink code) in the pinned set; iproute2 is on every host that has
TUN devices; and the commands run in ``privilegedStartService``, before the reactor runs, so
that they block for a few milliseconds harms nothing. Failures carry ``ip``'s own message.

When the device cannot be opened (no ``/dev/net/tun``, no CAP_NET_ADMIN, a name in use) the
service raises :class:`TunUnavailable` from :meth:`TunService.open`; ``privilegedStartService``
logs it and raises :class:`SystemExit` with the same message, so twistd exits with status 1
and that one line instead of a traceback.

Writes are non-blocking and bounded: a packet the kernel refuses with EAGAIN/ENOBUFS waits in
a queue of at most ``queue_limit`` packets, retried after :data:`WRITE_RETRY_DELAY` (a TUN
descriptor is nearly always "writable", so waiting for writability would spin); beyond the
bound packets are dropped and counted. Counters: ``read.packets``, ``read.bytes``,
``written.packets``, ``written.bytes``, ``drops.queue_full``, ``drops.write_error``,
``drops.oversize``, ``drops.not_ipv4``, ``drops.closed``, ``drops.stopped``,
``reader_errors``.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.logger import Logger
from twisted.pair.raw import IRawPacketProtocol
from twisted.pair.tuntap import TuntapPort
from zope.interface import Attribute, Interface, implementer  # type: ignore[import-untyped]

from mvpn.core.effects import Counters
from mvpn.roles.config import ConfigError
from mvpn.roles.shell import AnyClock, DelayedCall, as_clock
from mvpn.wire.inner import MAX_INNER_PACKET

__all__ = [
    "DEFAULT_QUEUE_LIMIT",
    "TUN_DEVICE",
    "WRITE_RETRY_DELAY",
    "ITunDevice",
    "TunService",
    "TunUnavailable",
    "run_ip",
]

TUN_DEVICE = "/dev/net/tun"
"""The clone device every TUN interface is created through (Linux tuntap.txt)."""

IFNAMSIZ = 16
"""Linux interface names are at most 15 bytes plus the terminating NUL."""

DEFAULT_QUEUE_LIMIT = 1024
"""Packets waiting for the kernel at most: a few milliseconds of traffic at the target rate,
so a stalled device cannot pin unbounded memory."""

WRITE_RETRY_DELAY = 0.005
"""Seconds before a refused write (EAGAIN/ENOBUFS) is tried again."""

IP_TIMEOUT = 10.0
"""Seconds one ``ip`` command may take before start fails."""

READ_SIZE = 65535
"""Bytes asked for per read: more than any packet, so none is silently truncated."""

_RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})


class TunUnavailable(ConfigError):
    """The TUN device cannot be opened or configured; the message says why and what to do."""


class ITunDevice(Interface):
    """A point-to-point link to the host's IP stack carrying bare IPv4 packets."""

    name = Attribute(
        "The interface name (``str``) as the kernel knows it; for :class:`TunService` it is "
        "also the service's name in its parent ``MultiService``."
    )

    on_packet = Attribute(
        "The reader callback: called with each packet (``bytes``) the kernel routes into "
        "the device. May be replaced at any time; ``None`` drops what is read."
    )

    def write(packet: bytes) -> bool:  # type: ignore[empty-body]
        """Give ``packet`` to the kernel as if it arrived on the link; False when dropped."""


CommandRunner = Callable[[Sequence[str]], None]
"""Runs one ``ip`` command (arguments after ``ip``); raises :class:`TunUnavailable`."""


def run_ip(args: Sequence[str]) -> None:
    """Run ``ip ARGS`` synchronously; raise :class:`TunUnavailable` with its error."""
    command = ["ip", *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
        )
    except FileNotFoundError as e:
        raise TunUnavailable(
            "cannot configure the TUN device: the 'ip' command (iproute2) is not installed"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise TunUnavailable(f"'{' '.join(command)}' took more than {IP_TIMEOUT} s") from e
    if result.returncode != 0:
        raise TunUnavailable(
            f"'{' '.join(command)}' failed: {result.stderr.strip() or result.returncode}"
        )


class _DeviceSystem:
    """The OS calls :class:`TuntapPort` makes, opening ``device`` as the clone device.

    Twisted hard-codes ``/dev/net/tun``; a configurable path lets a container mount it
    elsewhere and lets tests show what happens when it is missing.
    """

    O_RDWR = os.O_RDWR
    O_NONBLOCK = os.O_NONBLOCK
    O_CLOEXEC = os.O_CLOEXEC
    read = staticmethod(os.read)
    write = staticmethod(os.write)
    close = staticmethod(os.close)
    ioctl = staticmethod(fcntl.ioctl)

    def __init__(self, device: str) -> None:
        self._device = device

    def open(self, filename: bytes, flag: int, mode: int = 0o777) -> int:
        return os.open(self._device, flag, mode)


def _unavailable(name: str, device: str, error: BaseException | None) -> TunUnavailable:
    """A :class:`TunUnavailable` whose message names the cause and the remedy."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
        why = (
            f"{device} does not exist (load the 'tun' kernel module; in a container, "
            f"pass the device, e.g. --device {TUN_DEVICE})"
        )
    elif code in (errno.EPERM, errno.EACCES):
        why = (
            f"permission denied on {device}: creating a TUN device needs root or the "
            "CAP_NET_ADMIN capability"
        )
    elif code == errno.EBUSY:
        why = f"an interface called {name!r} exists and is not a free TUN device"
    else:
        why = f"{device}: {error}"
    return TunUnavailable(f"cannot open TUN device {name!r}: {why}")


@implementer(IRawPacketProtocol)
class _TunProtocol(AbstractDatagramProtocol):
    """What :class:`TuntapPort` reads into: hands each packet to the service."""

    def __init__(self, owner: TunService) -> None:
        self._owner = owner

    def addProto(self, num: int, proto: object) -> None:
        # IRawPacketProtocol's demultiplexing is not used: every packet goes to the service.
        raise TypeError("a TUN device here carries IPv4 packets to one callback, no protocols")

    def datagramReceived(  # type: ignore[override]
        self,
        data: bytes,
        partial: int = 0,
        dest: object = None,
        source: object = None,
        protocol: object = None,
    ) -> None:
        self._owner.packet_read(data)


@implementer(ITunDevice)
class TunService(Service):
    """One TUN interface, configured while the service runs.

    :param reactor: for the port and the write retries.
    :param name: the interface name (at most 15 bytes), e.g. ``mvpn0``.
    :param address: the local address with its prefix length (``10.9.0.2/24``); with
        ``peer``, a point-to-point address (the prefix length is then ignored).
    :param peer: the far end of a point-to-point link (``ip address add A peer P``).
    :param routes: networks routed into the device besides the connected prefix.
    :param mtu: the device MTU; :data:`~mvpn.wire.inner.MAX_INNER_PACKET` by default
        (docs/protocol.md 10). Larger packets given to :meth:`write` are dropped.
    :param on_packet: the reader callback (:attr:`ITunDevice.on_packet`).
    :param queue_limit: packets waiting for the kernel at most.
    :param device: the clone device (``/dev/net/tun``).
    :param run: runs one ``ip`` command (tests pass a recorder).
    :param system: the OS calls behind the port (tests pass Twisted's ``MemoryIOSystem``).
    """

    log = Logger()

    def __init__(
        self,
        reactor: AnyClock,
        name: str,
        address: ipaddress.IPv4Interface,
        *,
        peer: ipaddress.IPv4Address | None = None,
        routes: Sequence[ipaddress.IPv4Network] = (),
        mtu: int = MAX_INNER_PACKET,
        on_packet: Callable[[bytes], None] | None = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        device: str = TUN_DEVICE,
        run: CommandRunner = run_ip,
        system: object | None = None,
    ) -> None:
        encoded = name.encode("ascii", "replace")
        if not name or len(encoded) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
            raise ConfigError(f"TUN device name {name!r}: 1 to {IFNAMSIZ - 1} characters")
        if not 68 <= mtu <= 65535:
            raise ConfigError(f"TUN device {name!r}: MTU {mtu} not in 68..65535 (RFC 791)")
        if queue_limit < 1:
            raise ConfigError(f"TUN device {name!r}: queue_limit must be at least 1")
        self._reactor = reactor
        self._clock = as_clock(reactor)
        self.name: str = name
        self.address = address
        self.peer = peer
        self.routes = tuple(routes)
        self.mtu = mtu
        self.on_packet = on_packet
        self._queue_limit = queue_limit
        self._device = device
        self._run = run
        self._system = system if system is not None else _DeviceSystem(device)
        self._protocol = _TunProtocol(self)
        self._port: Any = None  # a TuntapPort while open
        self._queue: deque[bytes] = deque()
        self._retry: DelayedCall | None = None
        self.counters = Counters()

    @property
    def is_open(self) -> bool:
        """Whether the device is open."""
        return self._port is not None

    def ip_commands(self) -> list[list[str]]:
        """The ``ip`` commands that configure the open device, in order."""
        commands = [["link", "set", "dev", self.name, "mtu", str(self.mtu)]]
        if self.peer is not None:
            commands.append(
                ["address", "add", str(self.address.ip), "peer", str(self.peer), "dev", self.name]
            )
        else:
            commands.append(["address", "add", self.address.with_prefixlen, "dev", self.name])
        commands.append(["link", "set", "dev", self.name, "up"])
        for route in self.routes:
            commands.append(["route", "add", route.with_prefixlen, "dev", self.name])
        return commands

    def open(self) -> None:
        """Create and configure the device; :class:`TunUnavailable` when it cannot be."""
        if self._port is not None:
            return
        port = TuntapPort(
            self.name.encode("ascii"),
            self._protocol,
            maxPacketSize=READ_SIZE,
            reactor=self._reactor,
            system=self._system,
        )
        try:
            port.startListening()
        except CannotListenError as e:
            raise _unavailable(self.name, self._device, e.socketError) from None
        # The kernel may have changed the name (a pattern such as "mvpn%d").
        self.name = cast(bytes, port.interface).split(b"\0")[0].decode("ascii")
        self._port = port
        try:
            for command in self.ip_commands():
                self._run(command)
        except BaseException:
            self._close_now()
            raise
        self.log.info(
            "TUN device {name} up: {address}, MTU {mtu}, routes {routes}",
            name=self.name,
            address=self.address.with_prefixlen if self.peer is None else self.address.ip,
            mtu=self.mtu,
            routes=", ".join(r.with_prefixlen for r in self.routes) or "none",
        )

    def setName(self, name: str) -> None:
        """The service is named after its interface: another name would rename the device."""
        if name != self.name:
            raise ValueError(
                f"TunService {self.name!r} is named after its interface; cannot call it {name!r}"
            )

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        try:
            self.open()
        except TunUnavailable as e:
            # twistd writes a SystemExit's message to stderr (its log, once it logs) and
            # exits 1; any other exception from privilegedStartService ends in a traceback.
            raise SystemExit(f"mvpn: {e}") from None

    def startService(self) -> None:
        super().startService()
        if self._port is None:
            self.privilegedStartService()

    def stopService(self) -> object:
        super().stopService()
        self._cancel_retry()
        dropped = len(self._queue)
        if dropped:
            self.counters.increment("drops.stopped", dropped)
            self.log.warn(
                "{count} packets for TUN device {name} dropped: stopping",
                count=dropped,
                name=self.name,
            )
            self._queue.clear()
        port, self._port = self._port, None
        if port is None:
            return None
        self.log.info("TUN device {name} closed", name=self.name)
        return port.stopListening()

    def _close_now(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.connectionLost(None)

    def packet_read(self, packet: bytes) -> None:
        """One packet came out of the kernel: count it, hand IPv4 to ``on_packet``."""
        self.counters.increment("read.packets")
        self.counters.increment("read.bytes", len(packet))
        if not packet or packet[0] >> 4 != 4:
            # IPv6 router solicitations and the like: MVPN carries IPv4 only.
            self.counters.increment("drops.not_ipv4")
            return
        callback = self.on_packet
        if callback is None:
            return
        try:
            callback(packet)
        except Exception:
            self.counters.increment("reader_errors")
            self.log.failure("packet from TUN device {name} not handled", name=self.name)

    def write(self, packet: bytes) -> bool:
        """Give one IPv4 packet to the kernel; False (and counted) when it is dropped."""
        if self._port is None:
            self.counters.increment("drops.closed")
            return False
        if len(packet) > self.mtu:
            self.counters.increment("drops.oversize")
            self.log.warn(
                "packet of {size} bytes for TUN device {name} dropped: MTU {mtu}",
                size=len(packet),
                name=self.name,
                mtu=self.mtu,
            )
            return False
        if self._queue:
            return self._enqueue(packet)
        return self._write_now(packet)

    def _write_now(self, packet: bytes) -> bool:
        try:
            self._port.write(packet)
        except OSError as e:
            if e.errno in _RETRY_ERRNOS:
                return self._enqueue(packet)
            self.counters.increment("drops.write_error")
            self.log.warn("packet for TUN device {name} dropped: {error}", name=self.name, error=e)
            return False
        self.counters.increment("written.packets")
        self.counters.increment("written.bytes", len(packet))
        return True

    def _enqueue(self, packet: bytes) -> bool:
        if len(self._queue) >= self._queue_limit:
            self.counters.increment("drops.queue_full")
            self.log.warn(
                "packet for TUN device {name} dropped: {limit} packets already wait",
                name=self.name,
                limit=self._queue_limit,
            )
            return False
        self._queue.append(packet)
        if self._retry is None:
            self._retry = self._clock.callLater(WRITE_RETRY_DELAY, self._flush)
        return True

    def _flush(self) -> None:
        """Write queued packets in order until the kernel refuses one again."""
        self._retry = None
        while self._queue and self._port is not None:
            packet = self._queue[0]
            try:
                self._port.write(packet)
            except OSError as e:
                if e.errno in _RETRY_ERRNOS:
                    self._retry = self._clock.callLater(WRITE_RETRY_DELAY, self._flush)
                    return
                self._queue.popleft()
                self.counters.increment("drops.write_error")
                self.log.warn(
                    "packet for TUN device {name} dropped: {error}", name=self.name, error=e
                )
                continue
            self._queue.popleft()
            self.counters.increment("written.packets")
            self.counters.increment("written.bytes", len(packet))

    def _cancel_retry(self) -> None:
        retry, self._retry = self._retry, None
        if retry is not None and retry.active():
            retry.cancel()

    @property
    def queued(self) -> int:
        """Packets waiting for the kernel."""
        return len(self._queue)
