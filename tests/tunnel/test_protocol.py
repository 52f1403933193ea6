"""The tunnel connection: Hello, data, keepalives, bad frames (mvpn.tunnel.protocol;
docs/protocol.md 8.2). StringTransport and task.Clock only."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from mvpn.core.effects import Counters
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.crypto.suite import sign
from mvpn.tunnel.protocol import (
    HELLO_TIMEOUT,
    KEEPALIVE_INTERVAL,
    TunnelIdentity,
    encode_data_frame,
)
from mvpn.wire.data import (
    MAX_FRAME_BODY,
    TunnelData,
    TunnelHello,
    TunnelKeepalive,
    TunnelRole,
    decode_frame,
)
from mvpn.wire.registration import Identification
from tests.tunnel.peers import FA, FA_ID, HA, HA_ID, MN_ADDR, START, End, make_end, packet, pump


def clock() -> Clock:
    c = Clock()
    c.advance(START)
    return c


def connected() -> tuple[Clock, End, End]:
    """An HA end that dialled the FA and the FA end, Hellos exchanged."""
    c = clock()
    ha = make_end(HA, c, expected_peer=FA_ID)
    fa = make_end(FA, c)
    pump(ha, fa)
    return c, ha, fa


def test_hello_exchange() -> None:
    """The dialling HA speaks first with a Hello signed for the FA's ID; the FA answers once
    it verified it; both ends are then ready and know the peer's ID."""
    c = clock()
    ha = make_end(HA, c, expected_peer=FA_ID)
    fa = make_end(FA, c)
    hello = decode_frame(ha.transport.value())
    assert isinstance(hello, TunnelHello)
    assert (hello.node_id, hello.role) == (HA_ID, TunnelRole.HOME_AGENT)
    assert Identification.from_int(hello.timestamp).unix_time() == pytest.approx(START)
    assert fa.transport.value() == b""
    pump(ha, fa)
    assert ha.protocol.ready and fa.protocol.ready
    assert (ha.protocol.peer_id, fa.protocol.peer_id) == (FA_ID, HA_ID)


def test_data_both_ways_in_order() -> None:
    """Data frames reach on_data in order with the MN ADDR as 4 bytes, both directions."""
    _, ha, fa = connected()
    for i in range(50):
        ha.protocol.send_data(MN_ADDR, packet(i))
    fa.protocol.send_frames([encode_data_frame(MN_ADDR, packet(1000))])
    pump(ha, fa)
    assert fa.received == [(MN_ADDR, packet(i)) for i in range(50)]
    assert ha.received == [(MN_ADDR, packet(1000))]
    assert fa.protocol.frames_in == 50 and ha.protocol.frames_out == 50


def test_encode_data_frame_matches_the_codec() -> None:
    """encode_data_frame gives the same bytes as TunnelData.encode (protocol.md 8.2)."""
    assert (
        encode_data_frame(MN_ADDR, packet(7))
        == TunnelData(IPv4Address(MN_ADDR), packet(7)).encode()
    )


def test_keepalives_and_idle_close() -> None:
    """A ready end sends a Keepalive every interval; hearing nothing for three intervals
    closes the connection (counted); frames keep it open."""
    c, ha, fa = connected()
    c.advance(KEEPALIVE_INTERVAL)
    assert decode_frame(ha.transport.value()) == TunnelKeepalive()
    pump(ha, fa)
    for _ in range(5):
        c.advance(KEEPALIVE_INTERVAL)
        pump(ha, fa)
    assert not ha.transport.disconnecting and not fa.transport.disconnecting
    # The FA stops hearing anything from here on: the tick that follows the last frame
    # starts the count, three whole silent intervals later the FA gives up.
    for _ in range(3):
        c.advance(KEEPALIVE_INTERVAL)
        ha.transport.clear()
    assert not fa.transport.disconnecting
    c.advance(KEEPALIVE_INTERVAL)
    assert fa.transport.disconnecting
    assert fa.protocol.counters.get("idle_closes") == 1
    assert not fa.protocol.ready


def test_hello_timeout() -> None:
    """A connection without a valid Hello after 10 s is closed and counted."""
    c = clock()
    fa = make_end(FA, c)
    c.advance(HELLO_TIMEOUT - 0.1)
    assert not fa.transport.disconnecting
    c.advance(0.2)
    assert fa.transport.disconnecting
    assert fa.protocol.counters.get("hello.timeout") == 1


def _hello_frame(
    identity: TunnelIdentity, for_peer: int, when: float, keys: PrivateKeys | None = None
) -> bytes:
    timestamp = Identification.from_unix_time(when).value
    signed = TunnelHello.signed_part_for(identity.node_id, identity.role, timestamp)
    signature = sign(keys or identity.keys, "tunnel-hello", for_peer.to_bytes(8, "big"), signed)
    return TunnelHello(identity.node_id, identity.role, timestamp, signature).encode()


@pytest.mark.parametrize(
    "case",
    ["wrong key", "signed for another FA", "wrong role", "stale", "unknown node", "not dialled"],
)
def test_hello_refusals(case: str) -> None:
    """Each bad Hello is refused: the connection is closed, hello.refused counted, the reason
    logged, and no data is delivered."""
    c = clock()
    fa = make_end(FA, c)
    frame = {
        "wrong key": _hello_frame(HA, FA_ID, START, PrivateKeys.from_seed(b"x" * 64)),
        "signed for another FA": _hello_frame(HA, FA_ID + 1, START),
        "wrong role": _hello_frame(FA, FA_ID, START),
        "stale": _hello_frame(HA, FA_ID, START - 31),
        "unknown node": _hello_frame(
            TunnelIdentity(HA_ID + 5, TunnelRole.HOME_AGENT, HA.keys), FA_ID, START
        ),
        "not dialled": b"",
    }[case]
    if case == "not dialled":
        # The HA dialled FA_ID but another FA (with a valid key of its own) answers.
        other = TunnelIdentity(FA_ID + 9, TunnelRole.FOREIGN_AGENT, FA.keys)
        end = make_end(HA, c, expected_peer=FA_ID)
        end.transport.clear()
        frame = _hello_frame(other, HA_ID, START)
    else:
        end = fa
    with capturedLogs() as events:
        end.protocol.dataReceived(frame + encode_data_frame(MN_ADDR, packet(1)))
    assert end.transport.disconnecting
    assert end.protocol.counters.get("hello.refused") == 1
    assert not end.protocol.ready and end.received == []
    assert any("Hello refused" in str(e.get("log_format")) for e in events)


def test_oversize_frame_closes() -> None:
    """A Frame Length over the largest Data frame closes the connection, counted and logged
    with the length."""
    _, _ha, fa = connected()
    with capturedLogs() as events:
        fa.protocol.dataReceived(struct.pack("!I", MAX_FRAME_BODY + 1) + b"\x02")
    assert fa.transport.disconnecting
    assert fa.protocol.counters.get("frames.oversize") == 1
    assert any(e.get("length") == MAX_FRAME_BODY + 1 for e in events)


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no Frame Type
        b"\x09",  # unknown Frame Type
        b"\x02\x0a\x01\x00",  # Data frame too short for a packet
        b"\x03junk",  # Keepalive with a body
    ],
)
def test_malformed_frame_after_hello_closes(body: bytes) -> None:
    """A frame that does not decode, once ready, closes the connection: counted, logged with
    the decoder's reason, nothing delivered."""
    _, _ha, fa = connected()
    with capturedLogs() as events:
        fa.protocol.dataReceived(struct.pack("!I", len(body)) + body)
    assert fa.transport.disconnecting
    assert fa.protocol.counters.get("frames.malformed") == 1
    assert fa.received == []
    assert any(str(e.get("log_level")) == str(LogLevel.warn) for e in events)


def test_second_hello_and_data_before_hello_close() -> None:
    """A Data frame as the first frame, or a Hello once ready, closes the connection."""
    c = clock()
    fa = make_end(FA, c)
    fa.protocol.dataReceived(encode_data_frame(MN_ADDR, packet(1)))
    assert fa.transport.disconnecting and fa.received == []
    _, _ha, fa2 = connected()
    fa2.protocol.dataReceived(_hello_frame(HA, FA_ID, START))
    assert fa2.transport.disconnecting
    assert fa2.protocol.counters.get("frames.malformed") == 1


def test_async_key_lookup_keeps_early_frames_in_order() -> None:
    """While the peer's keys are being looked up, the transport is paused and frames that
    already arrived wait; once the Hello verifies they are delivered in order."""
    c = clock()
    pending: Deferred[PublicKeys] = Deferred()
    fa = make_end(FA, c, peer_keys=lambda node_id, role: pending)
    frames = b"".join(encode_data_frame(MN_ADDR, packet(i)) for i in range(3))
    fa.protocol.dataReceived(_hello_frame(HA, FA_ID, START) + frames)
    assert fa.transport.producerState == "paused"
    assert fa.received == [] and not fa.protocol.ready
    pending.callback(HA.keys.public)
    assert fa.protocol.ready and fa.transport.producerState == "producing"
    assert fa.received == [(MN_ADDR, packet(i)) for i in range(3)]
    assert isinstance(decode_frame(fa.transport.value()), TunnelHello)


def test_failed_key_lookup_refuses() -> None:
    """A key lookup that fails (unknown or revoked node) refuses the Hello."""
    c = clock()
    failing: Deferred[PublicKeys] = Deferred()
    fa = make_end(FA, c, peer_keys=lambda node_id, role: failing, counters=Counters())
    fa.protocol.dataReceived(_hello_frame(HA, FA_ID, START))
    failing.errback(LookupError("revoked"))
    assert fa.transport.disconnecting
    assert fa.protocol.counters.get("hello.refused") == 1


def test_when_ready() -> None:
    """when_ready fires once the Hello verified, and fails if the connection ends first."""
    c = clock()
    ha = make_end(HA, c, expected_peer=FA_ID)
    fa = make_end(FA, c)
    ready = ha.protocol.when_ready()
    assert not ready.called
    pump(ha, fa)
    assert ready.result is ha.protocol
    lonely = make_end(HA, c, expected_peer=FA_ID)
    waiting = lonely.protocol.when_ready()
    lonely.protocol.connectionLost(None)
    failures: list[object] = []
    waiting.addErrback(failures.append)
    assert len(failures) == 1


def test_hello_timeout_during_a_slow_lookup() -> None:
    """A key lookup still running at the Hello timeout: the connection closes on the timeout,
    and the lookup's late answer neither reopens it nor counts a second refusal."""
    c = clock()
    slow: Deferred[PublicKeys] = Deferred()
    fa = make_end(FA, c, peer_keys=lambda node_id, role: slow)
    fa.protocol.dataReceived(_hello_frame(HA, FA_ID, START))
    c.advance(HELLO_TIMEOUT)
    assert fa.transport.disconnecting
    slow.callback(HA.keys.public)
    assert not fa.protocol.ready
    assert fa.protocol.counters.snapshot() == {"hello.timeout": 1}
