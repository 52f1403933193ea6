"""Live loopback tests of the datagram transports (mvpn.roles.transport): real UDP sockets on
127.0.0.1 with ports chosen by the kernel, and the raw ICMP socket where the process may."""

from __future__ import annotations

import os
import socket
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from mvpn.core.effects import Address
from mvpn.roles.transport import (
    BROADCAST,
    MAX_DATAGRAM,
    AdvertisementMode,
    AdvertisementTransport,
    UdpPortService,
    may_open_raw_socket,
)
from mvpn.wire.icmp import AgentSolicitation

reactor: Any = _reactor


def settle(seconds: float = 0.05) -> Deferred[None]:
    """Let the reactor deliver datagrams already on the loopback."""
    return deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    """A plain UDP socket on 127.0.0.1 for the test to talk from and listen on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    yield s
    s.close()


@pytest_twisted.inlineCallbacks
def test_udp_port_hands_datagrams_to_handler(peer: socket.socket) -> Generator[Any, Any, None]:
    """A datagram sent to the port reaches the handler with its source address; write()
    answers from the port."""
    got: list[tuple[bytes, Address]] = []
    service = UdpPortService(reactor, 0, lambda d, a: got.append((d, a)), interface="127.0.0.1")
    service.startService()
    try:
        peer.sendto(b"hello", ("127.0.0.1", service.port))
        yield settle()
        assert got == [(b"hello", peer.getsockname())]
        service.write(b"back", peer.getsockname())
        assert peer.recvfrom(100) == (b"back", ("127.0.0.1", service.port))
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_udp_port_drops_oversize_and_survives_handler_errors(
    peer: socket.socket,
) -> Generator[Any, Any, None]:
    """A datagram over 8192 bytes is dropped and counted before the handler; a handler that
    raises is logged and counted, and the next datagram is still served."""
    got: list[bytes] = []

    def handler(data: bytes, addr: Address) -> None:
        if data == b"boom":
            raise RuntimeError("handler bug")
        got.append(data)

    service = UdpPortService(reactor, 0, handler, interface="127.0.0.1")
    service.startService()
    try:
        peer.sendto(b"x" * (MAX_DATAGRAM + 1), ("127.0.0.1", service.port))
        peer.sendto(b"boom", ("127.0.0.1", service.port))
        peer.sendto(b"fine", ("127.0.0.1", service.port))
        yield settle()
        assert got == [b"fine"]
        assert service.counters.get("drops.oversize") == 1
        assert service.counters.get("handler_errors") == 1
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_udp_advertisements_fan_out_to_targets(peer: socket.socket) -> Generator[Any, Any, None]:
    """In UDP mode a Send to the broadcast address goes to every configured target, and a
    unicast Send only to its address; the mode is chosen and reported as 'udp'."""
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.settimeout(2)
    transport = AdvertisementTransport(
        reactor,
        lambda d, a: None,
        mode=AdvertisementMode.UDP,
        interface="127.0.0.1",
        port=0,
        targets=(peer.getsockname(), other.getsockname()),
    )
    transport.startService()
    try:
        assert transport.kind == "udp"
        message = AgentSolicitation().encode()
        transport.write(message, (BROADCAST, 4349))
        assert peer.recvfrom(100)[0] == message
        assert other.recvfrom(100)[0] == message
        transport.write(b"only-peer", peer.getsockname())
        assert peer.recvfrom(100)[0] == b"only-peer"
        assert transport.counters.get("sent") == 3
    finally:
        other.close()
        yield transport.stopService()


@pytest_twisted.inlineCallbacks
def test_auto_without_raw_permission_falls_back_to_udp(
    peer: socket.socket,
) -> Generator[Any, Any, None]:
    """mode 'auto' in a process that may not open a raw socket listens on UDP and hands
    received ICMP bytes to the handler."""
    got: list[bytes] = []
    transport = AdvertisementTransport(
        reactor,
        lambda d, a: got.append(d),
        interface="127.0.0.1",
        port=0,
        may_use_raw=lambda: False,
    )
    transport.startService()
    try:
        assert transport.kind == "udp"
        peer.sendto(AgentSolicitation().encode(), ("127.0.0.1", transport.port))
        yield settle()
        assert got == [AgentSolicitation().encode()]
    finally:
        yield transport.stopService()


def test_icmp_without_permission_refuses_to_start() -> None:
    """mode 'icmp' where no raw socket may be opened fails the start with a clear error
    instead of silently using UDP."""
    transport = AdvertisementTransport(
        reactor, lambda d, a: None, mode=AdvertisementMode.ICMP, may_use_raw=lambda: False
    )
    with pytest.raises(PermissionError, match="raw socket"):
        transport.privilegedStartService()


@pytest_twisted.inlineCallbacks
def test_raw_icmp_round_trip_or_refusal() -> Generator[Any, Any, None]:
    """With a raw socket allowed (root), an ICMP Agent Solicitation sent by one transport
    reaches another that accepts type 10, with the IPv4 header stripped; a transport that
    accepts only type 9 never sees it: the kernel filters other types out (ICMP_FILTER), so
    not even its "ignored" counter moves. Without the permission, mode 'icmp' refuses to start."""
    received: list[tuple[bytes, Address]] = []
    listener = AdvertisementTransport(
        reactor,
        lambda d, a: received.append((d, a)),
        accept_types=(10,),
        mode=AdvertisementMode.ICMP,
    )
    if not may_open_raw_socket():
        # CI runs as root: there the raw path must be exercised, never the refusal alone.
        assert not os.environ.get("CI"), "CI must be able to open raw ICMP sockets (root)"
        with pytest.raises(PermissionError):
            listener.privilegedStartService()
        return
    deaf: list[bytes] = []
    other = AdvertisementTransport(
        reactor, lambda d, a: deaf.append(d), accept_types=(9,), mode=AdvertisementMode.ICMP
    )
    listener.privilegedStartService()
    other.privilegedStartService()
    try:
        assert listener.kind == "icmp"
        message = AgentSolicitation().encode()
        other.write(message, ("127.0.0.1", 0))
        yield settle(0.2)
        assert (message, ("127.0.0.1", 0)) in received
        assert deaf == []
        assert other.counters.get("ignored") == 0
    finally:
        listener.stopService()
        other.stopService()
