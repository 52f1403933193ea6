"""The HA's reconnecting tunnel client, the FA's server factory and the frame buffer
(mvpn.tunnel.client, .protocol, .buffer; docs/protocol.md 8.2, 10). MemoryReactorClock and
StringTransport only: the connection attempts are recorded, not made."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from mvpn.core.effects import Counters
from mvpn.crypto.keys import PrivateKeys
from mvpn.tunnel.buffer import TunnelSession, new_session_id
from mvpn.tunnel.client import TunnelClient, default_retry_policy
from mvpn.tunnel.protocol import TunnelIdentity, TunnelServerFactory, encode_data_frame
from tests.tunnel.peers import (
    FA,
    FA_ID,
    HA,
    HA_ID,
    MN_ADDR,
    START,
    End,
    lookup,
    make_end,
    packet,
    pump,
)

DONE = Failure(ConnectionDone())


class Sink:
    """A FrameSink that records what it is given."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write_frames(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


def test_session_bounds_and_order() -> None:
    """The session numbers frames from 1 and keeps them in order up to its frame and byte
    limits; overflow is refused, counted and logged once per streak (with the total when
    frames are accepted again), never silent; kept frames go to the next sink in order."""
    counters = Counters()
    session = TunnelSession(counters, "fa", max_frames=3, max_bytes=1000, session_id=7)
    with capturedLogs() as events:
        assert all(session.send(MN_ADDR, packet(i, 36)) for i in range(3))
        assert not session.send(MN_ADDR, packet(3, 36))
        assert not session.send(MN_ADDR, packet(4, 36))
    assert counters.get("buffer.overflow") == 2
    assert sum("refusing" in e["log_format"] for e in events) == 1
    sink = Sink()
    session.attach(sink)
    assert sink.frames == [encode_data_frame(i + 1, MN_ADDR, packet(i, 36)) for i in range(3)]
    assert session.unacknowledged == 3 and session.next_sequence == 4
    assert session.acknowledge(2) and len(session) == 1
    with capturedLogs() as events:
        assert session.send(MN_ADDR, packet(5, 36))
    assert sink.frames[-1] == encode_data_frame(4, MN_ADDR, packet(5, 36))
    assert any(e.get("refused") == 2 for e in events)
    assert not session.acknowledge(5)  # never written
    by_bytes = TunnelSession(counters, "fa", max_frames=100, max_bytes=120)
    assert by_bytes.send(MN_ADDR, packet(0, 50)) and not by_bytes.send(MN_ADDR, packet(1, 50))
    assert by_bytes.bytes == 17 + 50


def test_session_ids_are_random_and_non_zero() -> None:
    """Each session draws a fresh 64-bit Session ID (0 is reserved for "none")."""
    zero_then_one = iter([bytes(8), (1).to_bytes(8, "big")])
    assert new_session_id(lambda n: next(zero_then_one)) == 1
    assert TunnelSession(Counters(), "a").session_id != TunnelSession(Counters(), "b").session_id


def test_retry_policy() -> None:
    """Reconnection waits 0.5 s, then doubles, never more than 30 s (protocol.md 8.2)."""
    policy = default_retry_policy()
    assert [policy(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert policy(10_000) == 30


def _client(reactor: MemoryReactorClock, **kwargs: Any) -> tuple[TunnelClient, list[Any]]:
    received: list[Any] = []
    client = TunnelClient(
        reactor,
        cast(Any, TCP4ClientEndpoint(reactor, "127.0.0.2", 4352)),
        HA,
        FA_ID,
        lookup,
        lambda addr, pkt: received.append((addr, pkt)),
        **kwargs,
    )
    return client, received


def _accept(reactor: MemoryReactorClock, server: TunnelServerFactory) -> tuple[End, End]:
    """Complete the client's latest connection attempt against a new FA-side protocol."""
    _host, _port, factory, _timeout, _bind = reactor.tcpClients[-1]
    client_proto: Any = factory.buildProtocol(None)
    client_transport = StringTransport()
    client_proto.makeConnection(client_transport)
    server_proto = server.buildProtocol(None)
    server_transport = StringTransport()
    server_proto.makeConnection(server_transport)
    ha = End(client_proto, client_transport)
    fa = End(server_proto, server_transport)
    pump(ha, fa)
    return ha, fa


def test_client_buffers_while_down_and_flushes_in_order() -> None:
    """Frames sent before the first connection and during a reconnection are kept and
    written in order once the FA's Hello verified; the client redials 0.5 s after a loss."""
    reactor = MemoryReactorClock()
    reactor.advance(START)
    fa_received: list[Any] = []
    server = TunnelServerFactory(FA, reactor, lookup, lambda addr, pkt: fa_received.append(pkt))
    client, _ = _client(reactor)
    client.startService()
    assert len(reactor.tcpClients) == 1
    for i in range(5):
        assert client.send_data(MN_ADDR, packet(i))
    assert not client.ready and len(client.session) == 5
    ha, fa = _accept(reactor, server)
    # Written, and kept until the FA acknowledges them.
    assert client.ready and client.session.unacknowledged == 5
    client.send_data(MN_ADDR, packet(5))
    pump(ha, fa)
    assert fa_received == [packet(i) for i in range(6)]
    # The FA side drops the connection: the client buffers, then redials after 0.5 s.
    ha.protocol.connectionLost(DONE)
    fa.protocol.connectionLost(DONE)
    assert not client.ready
    for i in range(6, 9):
        client.send_data(MN_ADDR, packet(i))
    reactor.advance(0.4)
    assert len(reactor.tcpClients) == 1
    reactor.advance(0.2)
    assert len(reactor.tcpClients) == 2
    ha, fa = _accept(reactor, server)
    client.send_data(MN_ADDR, packet(9))
    pump(ha, fa)
    assert fa_received == [packet(i) for i in range(10)]
    assert client.counters.get("connections") == 2
    assert client.counters.get("buffer.flushed") == 8
    client.stopService()


def test_client_overflow_while_down() -> None:
    """With the FA unreachable, frames beyond the buffer's bound are refused and counted."""
    reactor = MemoryReactorClock()
    reactor.advance(START)
    client, _ = _client(reactor, max_frames=4)
    client.startService()
    results = [client.send_data(MN_ADDR, packet(i)) for i in range(6)]
    assert results == [True] * 4 + [False] * 2
    assert client.counters.get("buffer.overflow") == 2
    client.stopService()


def test_refused_hello_is_a_failed_attempt() -> None:
    """An FA whose Hello does not verify (signed with keys not in its certificate) is not
    used: the client
    stays down, keeps its buffer, and dials again with backoff."""
    reactor = MemoryReactorClock()
    reactor.advance(START)
    impostor = TunnelServerFactory(
        TunnelIdentity(FA_ID, FA.role, PrivateKeys.from_seed(b"i" * 64)),
        reactor,
        lookup,
        lambda a, p: None,
    )
    client, _ = _client(reactor)
    client.startService()
    client.send_data(MN_ADDR, packet(0))
    ha, _fa = _accept(reactor, impostor)
    assert not client.ready and len(client.session) == 1
    assert ha.transport.disconnecting
    assert client.counters.get("hello.refused") == 1
    ha.protocol.connectionLost(DONE)
    reactor.advance(0.5)
    assert len(reactor.tcpClients) == 2
    client.stopService()


def test_server_sends_to_known_peers_and_replaces_connections() -> None:
    """The FA side sends to a connected HA, buffers for an HA that was connected before,
    refuses (counted) an HA it never saw, and a second connection from one HA replaces the
    first."""
    reactor = MemoryReactorClock()
    reactor.advance(START)
    server = TunnelServerFactory(FA, reactor, lookup, lambda a, p: None)
    assert not server.send_data(HA_ID, MN_ADDR, packet(0))
    assert server.counters.get("frames.no_tunnel") == 1
    client, ha_received = _client(reactor)
    client.startService()
    ha, fa = _accept(reactor, server)
    assert server.send_data(HA_ID, MN_ADDR, packet(1))
    pump(ha, fa)
    assert ha_received == [(MN_ADDR, packet(1))]
    # The HA's connection dies; the FA keeps frames for it until it is back.
    fa.protocol.connectionLost(DONE)
    ha.protocol.connectionLost(DONE)
    assert server.send_data(HA_ID, MN_ADDR, packet(2))
    reactor.advance(0.5)
    ha, fa = _accept(reactor, server)
    pump(ha, fa)
    assert ha_received == [(MN_ADDR, packet(1)), (MN_ADDR, packet(2))]
    # A new connection from the same HA (it redialled) replaces this one.
    first = fa
    second = server.buildProtocol(None)
    second_transport = StringTransport()
    second.makeConnection(second_transport)
    other_ha = make_end(HA, reactor, expected_peer=FA_ID)
    pump(other_ha, End(second, second_transport))
    assert server.connections[HA_ID] is second
    assert first.transport.disconnecting
    client.stopService()
