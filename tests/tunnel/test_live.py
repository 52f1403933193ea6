"""The tunnel over real loopback TCP: a connection killed mid-stream, reconnection, a
restarted peer, and every accepted frame delivered exactly once and in order, both ways
(docs/protocol.md 8.2)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from typing import Any, cast

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.task import deferLater

from mvpn.tunnel.client import TunnelClient
from mvpn.tunnel.protocol import TunnelServerFactory
from tests.tunnel.peers import FA, FA_ID, HA, HA_ID, MN_ADDR, lookup, packet

reactor: Any = _reactor
TIMEOUT = 20.0


def until(condition: Callable[[], bool]) -> Deferred[None]:
    """Poll ``condition`` every 10 ms; fail after TIMEOUT seconds."""

    async def wait() -> None:
        waited = 0.0
        while not condition():
            if waited > TIMEOUT:
                raise AssertionError("condition not reached in time")
            await deferLater(reactor, 0.01, lambda: None)
            waited += 0.01

    return Deferred.fromCoroutine(wait())


@pytest_twisted.inlineCallbacks
def test_kill_mid_stream_every_frame_once_in_order() -> Generator[Any, Any, None]:
    """The HA streams Data frames to the FA; the FA side aborts the TCP connection in the
    middle of the stream; frames the HA accepts while the tunnel is down are buffered; the
    client redials, the Hellos verify again, and the FA has every accepted frame exactly
    once, in order. The FA can also answer through the new connection."""
    fa_got: list[bytes] = []
    ha_got: list[bytes] = []
    server = TunnelServerFactory(FA, reactor, lookup, lambda addr, pkt: fa_got.append(pkt))
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
    client = TunnelClient(
        reactor,
        cast(Any, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)),
        HA,
        FA_ID,
        lookup,
        lambda addr, pkt: ha_got.append(pkt),
    )
    client.startService()
    try:
        sent: list[bytes] = []

        def send(n: int) -> None:
            for _ in range(n):
                p = packet(len(sent), 1400)
                assert client.send_data(MN_ADDR, p)
                sent.append(p)

        send(300)  # accepted before the first connection: buffered
        yield client.when_ready()
        send(400)  # the bound (1 MiB) counts these until the FA acknowledges them
        yield until(lambda: len(fa_got) == len(sent) and len(client.session) == 0)
        # Kill the connection from the FA's side with an RST, mid-stream.
        first = server.connections[HA_ID]
        first.transport.abortConnection()  # type: ignore[union-attr]
        yield until(lambda: not client.ready)
        send(500)  # the tunnel is down: these are kept, in order
        assert len(client.session) == 500
        yield client.when_ready()
        send(200)
        yield until(lambda: len(fa_got) == len(sent))
        assert fa_got == sent
        assert client.counters.get("connections") == 2
        assert client.counters.get("buffer.flushed") == 800
        assert client.counters.get("buffer.overflow") == 0
        assert server.send_data(HA_ID, MN_ADDR, packet(99_999))
        yield until(lambda: ha_got == [packet(99_999)])
    finally:
        yield client.stopService()
        yield port.stopListening()
        for protocol in list(server.connections.values()):
            protocol.transport.abortConnection()  # type: ignore[union-attr]


def digest(payloads: list[bytes]) -> str:
    """sha256 over a sequence of payloads, each length-prefixed."""
    h = hashlib.sha256()
    for p in payloads:
        h.update(len(p).to_bytes(4, "big") + p)
    return h.hexdigest()


@pytest_twisted.inlineCallbacks
def test_kill_while_frames_are_in_flight() -> Generator[Any, Any, None]:
    """The FA aborts the connection while both ends are still writing (a real mid-stream
    kill): every frame either end accepted arrives exactly once and in order at the other
    (sha256 over the payload sequence equal), including those written to the killed
    connection (kept until acknowledged, resent after the Hellos); frames refused by the
    bound are counted and never arrive."""
    fa_got: list[bytes] = []
    ha_got: list[bytes] = []
    server = TunnelServerFactory(FA, reactor, lookup, lambda addr, pkt: fa_got.append(pkt))
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
    client = TunnelClient(
        reactor,
        cast(Any, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)),
        HA,
        FA_ID,
        lookup,
        lambda addr, pkt: ha_got.append(pkt),
    )
    client.startService()
    ha_accepted: list[bytes] = []
    fa_accepted: list[bytes] = []
    ha_refused = fa_refused = 0
    total = 6000
    try:
        yield client.when_ready()
        killed = False
        for i in range(total):
            p = packet(i, 1400)
            if client.send_data(MN_ADDR, p):
                ha_accepted.append(p)
            else:
                ha_refused += 1
            q = packet(1_000_000 + i, 700)
            if server.send_data(HA_ID, MN_ADDR, q):
                fa_accepted.append(q)
            else:
                fa_refused += 1
            if i % 100 == 99:
                yield deferLater(reactor, 0.001, lambda: None)
            if not killed and len(fa_got) >= 1000:
                assert client.session.unacknowledged > 0  # frames in flight when killed
                server.connections[HA_ID].transport.abortConnection()  # type: ignore[union-attr]
                killed = True
        assert killed
        yield until(lambda: len(fa_got) >= len(ha_accepted) and len(ha_got) >= len(fa_accepted))
        yield deferLater(reactor, 0.1, lambda: None)  # anything extra would show up now
        assert digest(fa_got) == digest(ha_accepted)
        assert digest(ha_got) == digest(fa_accepted)
        assert client.counters.get("buffer.overflow") == ha_refused
        assert server.counters.get("buffer.overflow") == fa_refused
        assert client.counters.get("connections") >= 2
        assert client.counters.get("frames.peer_restarted") == 0
        yield until(lambda: len(client.session) == 0 and len(server.sessions[HA_ID]) == 0)
    finally:
        yield client.stopService()
        yield port.stopListening()
        for protocol in list(server.connections.values()):
            protocol.transport.abortConnection()  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_restarted_fa_gets_no_frame_twice() -> Generator[Any, Any, None]:
    """The FA process is replaced (a new server with a new Session ID on the same port) while
    the HA has frames written to the old one and unacknowledged: the HA drops those
    (counted), the new FA receives only frames never written before, in order, once."""
    old_got: list[bytes] = []
    old = TunnelServerFactory(FA, reactor, lookup, lambda addr, pkt: old_got.append(pkt))
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = yield endpoint.listen(old)
    number = port.getHost().port
    client = TunnelClient(
        reactor,
        cast(Any, TCP4ClientEndpoint(reactor, "127.0.0.1", number)),
        HA,
        FA_ID,
        lookup,
        lambda addr, pkt: None,
    )
    client.startService()
    new_got: list[bytes] = []
    new = TunnelServerFactory(FA, reactor, lookup, lambda addr, pkt: new_got.append(pkt))
    new_port = None
    try:
        yield client.when_ready()
        sent = [packet(i) for i in range(10)]
        for p in sent:
            assert client.send_data(MN_ADDR, p)
        yield until(lambda: len(old_got) == 10)
        # The old FA dies before its 50 ms Ack timer: nothing of it reaches the HA.
        yield port.stopListening()
        for protocol in list(old.connections.values()):
            protocol._cancel_timers()
            protocol.transport.abortConnection()  # type: ignore[union-attr]
        yield until(lambda: not client.ready)
        assert client.session.unacknowledged == 10
        later = [packet(i) for i in range(10, 15)]
        for p in later:
            assert client.send_data(MN_ADDR, p)
        new_port = yield TCP4ServerEndpoint(reactor, number, interface="127.0.0.1").listen(new)
        yield client.when_ready()
        yield until(lambda: len(new_got) == 5)
        yield deferLater(reactor, 0.1, lambda: None)
        assert new_got == later and old_got == sent
        assert client.counters.get("frames.peer_restarted") == 10
    finally:
        yield client.stopService()
        if new_port is not None:
            yield new_port.stopListening()
        for protocol in list(new.connections.values()):
            protocol.transport.abortConnection()  # type: ignore[union-attr]
