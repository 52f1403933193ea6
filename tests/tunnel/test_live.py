"""The tunnel over real loopback TCP: a connection killed mid-stream, reconnection, and every
accepted frame delivered exactly once and in order (docs/protocol.md 8.2)."""

from __future__ import annotations

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
        send(700)
        yield until(lambda: len(fa_got) == len(sent))
        # Kill the connection from the FA's side with an RST, mid-stream.
        first = server.connections[HA_ID]
        first.transport.abortConnection()  # type: ignore[union-attr]
        yield until(lambda: not client.ready)
        send(500)  # the tunnel is down: these are kept, in order
        assert len(client.buffer) == 500
        yield client.when_ready()
        send(500)
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


@pytest_twisted.inlineCallbacks
def test_kill_while_frames_are_in_flight() -> Generator[Any, Any, None]:
    """The FA aborts the connection while the HA is still writing (a real mid-stream kill):
    nothing arrives twice or out of order; every frame accepted while the tunnel was down or
    after it came back arrives; frames refused by the full buffer are counted; only frames
    already written to the killed connection may be missing (no acknowledgements in
    protocol.md 8.2: the inner transport retransmits)."""
    fa_got: list[int] = []
    server = TunnelServerFactory(
        FA, reactor, lookup, lambda addr, pkt: fa_got.append(int.from_bytes(pkt[:4], "big"))
    )
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
    client = TunnelClient(
        reactor,
        cast(Any, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)),
        HA,
        FA_ID,
        lookup,
        lambda addr, pkt: None,
    )
    client.startService()
    written_to_first: set[int] = set()
    must_arrive: set[int] = set()
    refused: set[int] = set()
    total = 6000
    try:
        yield client.when_ready()
        killed = False
        for i in range(total):
            direct_on_first = client.ready and client.counters.get("connections") == 1
            if not client.send_data(MN_ADDR, packet(i, 1400)):
                refused.add(i)  # the buffer was full: refused and counted, not accepted
                continue
            (written_to_first if direct_on_first else must_arrive).add(i)
            if i % 100 == 99:
                yield deferLater(reactor, 0.001, lambda: None)
            if not killed and len(fa_got) >= 1000:
                server.connections[HA_ID].transport.abortConnection()  # type: ignore[union-attr]
                killed = True
        assert killed and must_arrive
        yield client.when_ready()
        for i in range(total, total + 500):
            assert client.send_data(MN_ADDR, packet(i, 1400))
            must_arrive.add(i)
        total += 500
        yield until(lambda: must_arrive <= set(fa_got))
        assert fa_got == sorted(set(fa_got))  # in order, each once
        assert set(range(total)) - set(fa_got) - refused <= written_to_first
        assert not refused & set(fa_got)
        assert client.counters.get("buffer.overflow") == len(refused)
        assert client.counters.get("connections") == 2
    finally:
        yield client.stopService()
        yield port.stopListening()
        for protocol in list(server.connections.values()):
            protocol.transport.abortConnection()  # type: ignore[union-attr]
