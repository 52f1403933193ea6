"""The Python API for in-process applications on a mobile node or a correspondent node
(issue 5, "Applications on top"; docs/protocol.md 8 and 10).

An application sends bytes to its peer (the CN's address on an MN, the MN's home address on a
CN), receives bytes from it, and is told of session and handover events. Underneath, each
send is one inner IPv4/UDP packet from :data:`~mvpn.wire.inner.API_PORT` to the same port at
the peer (:mod:`mvpn.wire.inner`), carried by the node's data session like any packet a TUN
device would carry. So API and TUN share one session: inner packets that are not API traffic
go to an optional ``other`` sink (the TUN device's ``write``).

Two styles, usable together:

- push: :meth:`MvpnClient.register` an :class:`IMvpnApplication`; it gets
  ``data_received(peer, data)`` and the session events;
- pull: :meth:`MvpnClient.receive` returns a Deferred firing with the next datagram from a
  peer, :meth:`MvpnClient.wait_for` one firing with the next matching :class:`Event`.

A datagram goes to every registered application and to the oldest pending ``receive`` for its
peer; when no ``receive`` waits and no application is registered it is queued for a later
``receive`` (at most ``queue_limit`` datagrams in all; beyond that it is dropped, counted
``receive.overflow`` and logged). With applications registered nothing is queued: they have
had the data.

The client sits on an abstract :class:`InnerEndpoint` (``send_inner(peer, packet) -> bool``);
the node's data shell calls :meth:`MvpnClient.inner_received` with each opened inner packet
and :meth:`MvpnClient.event` with each core :class:`Event`.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import Interface  # type: ignore[import-untyped]

from mvpn.core.effects import Counters, Event
from mvpn.roles.shell import logs
from mvpn.wire.errors import WireError
from mvpn.wire.inner import (
    API_PORT,
    MAX_API_PAYLOAD,
    MAX_INNER_PACKET,
    UdpPacket,
    build_udp,
    peek_ipv4,
)

__all__ = [
    "API_PORT",
    "DEFAULT_QUEUE_LIMIT",
    "EVENT_METHODS",
    "MAX_API_PAYLOAD",
    "IMvpnApplication",
    "InnerEndpoint",
    "MvpnClient",
]

DEFAULT_QUEUE_LIMIT = 1024
"""Datagrams kept for ``receive`` at most (all peers together): about 1.4 MB, so an
application that stops reading cannot make the node hold unbounded memory."""

EVENT_METHODS: Mapping[str, str] = {
    "session-established": "session_started",
    "session-expired": "session_ended",
    "session-ended": "session_ended",
    "session-refused": "session_ended",
    "session-failed": "session_ended",
    "moved": "moved",
}
"""Which :class:`IMvpnApplication` method each core event name calls (the event is the
``info``); other events reach only :meth:`MvpnClient.wait_for`."""


class IMvpnApplication(Interface):
    """An in-process application using MVPN on an MN or a CN (issue 5)."""

    def session_started(info: Event) -> None:
        """A data session with a peer is ready (``session-established``: spi, and the peer as
        ``cn`` on an MN or ``home_address`` on a CN)."""

    def data_received(peer: ipaddress.IPv4Address, data: bytes) -> None:
        """``data`` (one datagram) arrived from ``peer`` through the session."""

    def session_ended(info: Event) -> None:
        """A session ended or could not be set up (``session-expired``, ``session-refused``
        {code, reason}, ``session-failed``); ``info.name`` says which."""

    def moved(info: Event) -> None:
        """The mobile node changed foreign agent (``moved``); sessions go on."""


class InnerEndpoint(Protocol):
    """What the client sends through: the node's data shell, adapted by its owner."""

    def send_inner(self, peer: ipaddress.IPv4Address, packet: bytes) -> bool:
        """Seal ``packet`` (a whole inner IPv4 packet) into the session with ``peer``; False
        when it cannot go (no session, a full buffer)."""
        ...


PacketSink = Callable[[bytes], object]
"""Where non-API inner packets go (``ITunDevice.write``)."""


def _matches(fields: Mapping[str, object], wanted: Mapping[str, object]) -> bool:
    """Every wanted field equal, or equal as text (so ``cn="10.0.0.1"`` matches an
    ``IPv4Address``)."""
    for key, value in wanted.items():
        if key not in fields:
            return False
        have = fields[key]
        if have != value and str(have) != str(value):
            return False
    return True


class MvpnClient:
    """The API of one node: send, receive, events (see the module docstring).

    :param endpoint: sends inner packets into the sessions.
    :param address: this node's inner address (the MN's home address, the CN's address),
        the source of what it sends and the destination of what it accepts as API traffic.
    :param other: where other inner packets go (a TUN device's ``write``); without it they
        are dropped and counted ``drops.no_sink``.
    :param queue_limit: datagrams kept for ``receive`` at most.

    Counters: ``sent``, ``send.refused``, ``received``, ``receive.overflow``, ``other``,
    ``drops.malformed``, ``drops.no_sink``, ``application_errors``.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: InnerEndpoint,
        address: ipaddress.IPv4Address,
        *,
        other: PacketSink | None = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
    ) -> None:
        if queue_limit < 0:
            raise ValueError(f"queue_limit {queue_limit}: must be 0 or more")
        self._endpoint = endpoint
        self.address = ipaddress.IPv4Address(address)
        self._packed = self.address.packed
        self.other = other
        self._queue_limit = queue_limit
        self._queued: dict[ipaddress.IPv4Address, deque[bytes]] = {}
        self._queued_total = 0
        self._overflowing = 0
        self._receivers: dict[ipaddress.IPv4Address, deque[Deferred[bytes]]] = {}
        self._event_waiters: list[tuple[str, dict[str, object], Deferred[Event]]] = []
        self._applications: list[Any] = []
        self._identification = 0
        self.counters = Counters()

    # -- sending -------------------------------------------------------------------------

    def send(self, peer: ipaddress.IPv4Address, data: bytes) -> bool:
        """Send ``data`` as one datagram to ``peer``; False when the session refused it.

        Raises :class:`ValueError` when ``data`` is longer than :data:`MAX_API_PAYLOAD`
        (1372 bytes: one inner packet is at most 1400 bytes, docs/protocol.md 10).
        """
        if len(data) > MAX_API_PAYLOAD:
            raise ValueError(
                f"{len(data)} bytes do not fit one MVPN datagram: at most {MAX_API_PAYLOAD} "
                f"(inner packets are at most {MAX_INNER_PACKET} bytes with their IPv4 and UDP "
                "headers, docs/protocol.md 10); split the data"
            )
        peer = ipaddress.IPv4Address(peer)
        self._identification = (self._identification + 1) & 0xFFFF
        packet = build_udp(
            self.address,
            peer,
            API_PORT,
            API_PORT,
            bytes(data),
            identification=self._identification,
        )
        return self._send(peer, packet)

    def send_packet(self, packet: bytes) -> bool:
        """Send a whole inner IPv4 packet (one a TUN device read) to its destination.

        Use it as the TUN device's ``on_packet``. A packet that is not a well-formed IPv4
        packet of at most 1400 bytes is dropped, counted ``drops.malformed``: False.
        """
        try:
            _, dst, _ = peek_ipv4(packet)
        except WireError as e:
            self.counters.increment("drops.malformed")
            self.log.warn("outgoing inner packet dropped: {error}", error=str(e))
            return False
        return self._send(ipaddress.IPv4Address(dst), packet)

    def _send(self, peer: ipaddress.IPv4Address, packet: bytes) -> bool:
        if self._endpoint.send_inner(peer, packet):
            self.counters.increment("sent")
            return True
        self.counters.increment("send.refused")
        if logs("debug"):
            self.log.debug("inner packet for {peer} refused by the data plane", peer=str(peer))
        return False

    # -- receiving -----------------------------------------------------------------------

    def receive(self, peer: ipaddress.IPv4Address) -> Deferred[bytes]:
        """The next datagram from ``peer``: at once if one is queued, else when it arrives.

        Cancelling the Deferred withdraws the request.
        """
        peer = ipaddress.IPv4Address(peer)
        queued = self._queued.get(peer)
        if queued:
            data = queued.popleft()
            self._queued_total -= 1
            if not queued:
                del self._queued[peer]
            return succeed(data)

        def cancel(d: Deferred[bytes]) -> None:
            waiting = self._receivers.get(peer)
            if waiting is not None and d in waiting:
                waiting.remove(d)
                if not waiting:
                    del self._receivers[peer]

        d: Deferred[bytes] = Deferred(cancel)
        self._receivers.setdefault(peer, deque()).append(d)
        return d

    def inner_received(self, packet: bytes) -> None:
        """An inner packet came out of a session: API datagrams are delivered, the rest go
        to ``other``."""
        try:
            # The fast path (peek_ipv4) routes; only API traffic is decoded and checked
            # fully. A TUN device's traffic goes to the kernel, which checks it itself.
            _, dst, api = peek_ipv4(packet)
            api = api and dst == self._packed
            datagram = UdpPacket.decode(packet) if api else None
        except WireError as e:
            self.counters.increment("drops.malformed")
            self.log.warn("inner packet dropped: {error}", error=str(e))
            return
        if datagram is None:
            self._to_other(packet)
            return
        self.counters.increment("received")
        self._deliver(datagram.src, datagram.payload)

    def _to_other(self, packet: bytes) -> None:
        if self.other is None:
            self.counters.increment("drops.no_sink")
            if logs("debug"):
                self.log.debug("non-API inner packet dropped: no TUN device")
            return
        self.counters.increment("other")
        self.other(packet)

    def _deliver(self, peer: ipaddress.IPv4Address, data: bytes) -> None:
        for application in list(self._applications):
            try:
                application.data_received(peer, data)
            except Exception:
                self.counters.increment("application_errors")
                self.log.failure("application failed on data from {peer}", peer=str(peer))
        waiting = self._receivers.get(peer)
        if waiting:
            d = waiting.popleft()
            if not waiting:
                del self._receivers[peer]
            d.callback(data)
            return
        if self._applications:
            return
        if self._queued_total >= self._queue_limit:
            self.counters.increment("receive.overflow")
            if not self._overflowing:
                self.log.warn(
                    "datagrams from {peer} dropped: {limit} already wait for receive()",
                    peer=str(peer),
                    limit=self._queue_limit,
                )
            self._overflowing += 1
            return
        if self._overflowing:
            self.log.info(
                "receive queue accepting again after {count} dropped datagrams",
                count=self._overflowing,
            )
            self._overflowing = 0
        self._queued.setdefault(peer, deque()).append(data)
        self._queued_total += 1

    @property
    def queued(self) -> int:
        """Datagrams waiting for ``receive``."""
        return self._queued_total

    # -- events --------------------------------------------------------------------------

    def wait_for(self, event_name: str, **match: object) -> Deferred[Event]:
        """The next event called ``event_name`` whose fields include ``match``.

        Only events after the call count. Values compare equal or equal as text, so
        ``wait_for("session-established", cn="10.0.0.1")`` matches an ``IPv4Address``.
        Cancelling the Deferred withdraws the wait.
        """

        def cancel(d: Deferred[Event]) -> None:
            self._event_waiters[:] = [w for w in self._event_waiters if w[2] is not d]

        d: Deferred[Event] = Deferred(cancel)
        self._event_waiters.append((event_name, dict(match), d))
        return d

    def event(self, event: Event) -> None:
        """A core event: tell the applications (:data:`EVENT_METHODS`), then the waiters."""
        method = EVENT_METHODS.get(event.name)
        if method is not None:
            for application in list(self._applications):
                try:
                    getattr(application, method)(event)
                except Exception:
                    self.counters.increment("application_errors")
                    self.log.failure("application failed on event {event}", event=event.name)
        fired: list[Deferred[Event]] = []
        kept = []
        for waiter in self._event_waiters:
            name, wanted, d = waiter
            if name == event.name and _matches(event.fields, wanted):
                fired.append(d)
            else:
                kept.append(waiter)
        # Removed before firing: a callback may wait again, and must not see this event.
        self._event_waiters[:] = kept
        for d in fired:
            d.callback(event)

    # -- applications --------------------------------------------------------------------

    def register(self, application: object) -> None:
        """Push data and events to ``application`` (an :class:`IMvpnApplication`)."""
        if not IMvpnApplication.providedBy(application):
            raise TypeError(f"{application!r} does not provide IMvpnApplication")
        if application not in self._applications:
            self._applications.append(application)

    def unregister(self, application: object) -> None:
        """Stop pushing to ``application``; nothing happens if it was not registered."""
        if application in self._applications:
            self._applications.remove(application)
