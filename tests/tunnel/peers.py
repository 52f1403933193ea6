"""Shared fixtures of the tunnel tests: an HA and an FA identity, key lookups, and a pump
that moves bytes between two protocols on StringTransports."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mvpn.core.effects import Counters
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.tunnel.buffer import TunnelSession
from mvpn.tunnel.protocol import TunnelIdentity, TunnelProtocol
from mvpn.wire.data import MIN_DATA_PACKET, TunnelRole

HA_ID = 0x4841_0000_0000_0001
FA_ID = 0x4641_0000_0000_0002
HA = TunnelIdentity(HA_ID, TunnelRole.HOME_AGENT, PrivateKeys.from_seed(b"ha" * 32))
FA = TunnelIdentity(FA_ID, TunnelRole.FOREIGN_AGENT, PrivateKeys.from_seed(b"fa" * 32))
MN_ADDR = ipaddress.IPv4Address("10.1.0.5").packed
START = 1_800_000_000.0
"""A Unix time (2027) for the clocks: Hello timestamps must be NTP-representable."""

KEYS: dict[tuple[int, TunnelRole], PublicKeys] = {
    (HA_ID, TunnelRole.HOME_AGENT): HA.keys.public,
    (FA_ID, TunnelRole.FOREIGN_AGENT): FA.keys.public,
}


def lookup(node_id: int, role: TunnelRole) -> PublicKeys:
    """The test domain's key directory: KeyError for anyone else."""
    return KEYS[(node_id, role)]


def packet(i: int, size: int = 100) -> bytes:
    """A stand-in type-55 packet numbered ``i`` (the tunnel does not look inside)."""
    return i.to_bytes(4, "big") + bytes(max(size, MIN_DATA_PACKET) - 4)


@dataclass
class End:
    """One tunnel end on a StringTransport, recording the data it receives."""

    protocol: TunnelProtocol
    transport: StringTransport
    received: list[tuple[bytes, bytes]] = field(default_factory=list)


def make_end(
    identity: TunnelIdentity,
    clock: Clock,
    *,
    expected_peer: int | None = None,
    peer_keys: Callable[..., object] = lookup,
    counters: Counters | None = None,
    sessions: Callable[[int], TunnelSession] | None = None,
) -> End:
    received: list[tuple[bytes, bytes]] = []
    protocol = TunnelProtocol(
        identity,
        clock,
        peer_keys,  # type: ignore[arg-type]
        lambda addr, pkt: received.append((addr, pkt)),
        expected_peer=expected_peer,
        counters=counters,
        sessions=sessions,
    )
    transport = StringTransport()
    protocol.makeConnection(transport)
    return End(protocol, transport, received)


def pump(a: End, b: End) -> None:
    """Move what each end wrote to the other until both are quiet."""
    while a.transport.value() or b.transport.value():
        for src, dst in ((a, b), (b, a)):
            data = src.transport.value()
            src.transport.clear()
            if data and not dst.transport.disconnecting:
                dst.protocol.dataReceived(data)
