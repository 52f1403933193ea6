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
from mvpn.tunnel.buffer import TunnelSession
from mvpn.tunnel.protocol import (
    ACK_DELAY,
    HELLO_TIMEOUT,
    KEEPALIVE_INTERVAL,
    TunnelIdentity,
    encode_data_frame,
)
from mvpn.wire.data import (
    MAX_FRAME_BODY,
    TunnelAck,
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
    """Data frames reach on_data in order with the MN ADDR as 4 bytes, both directions, each
    series numbered from 1."""
    _, ha, fa = connected()
    for i in range(50):
        ha.protocol.send_data(MN_ADDR, packet(i))
    assert fa.protocol.send_data(MN_ADDR, packet(1000))
    pump(ha, fa)
    assert fa.received == [(MN_ADDR, packet(i)) for i in range(50)]
    assert ha.received == [(MN_ADDR, packet(1000))]
    assert fa.protocol.frames_in == 50 and ha.protocol.frames_out == 50


def test_encode_data_frame_matches_the_codec() -> None:
    """encode_data_frame gives the same bytes as TunnelData.encode (protocol.md 8.2)."""
    assert (
        encode_data_frame(9, MN_ADDR, packet(7))
        == TunnelData(9, IPv4Address(MN_ADDR), packet(7)).encode()
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
    fields = (identity.node_id, identity.role, timestamp, 0x5E55, 0, 0)
    signed = TunnelHello.signed_part_for(*fields)
    signature = sign(keys or identity.keys, "tunnel-hello", for_peer.to_bytes(8, "big"), signed)
    return TunnelHello(*fields, signature).encode()


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
        end.protocol.dataReceived(frame + encode_data_frame(1, MN_ADDR, packet(1)))
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
    fa.protocol.dataReceived(encode_data_frame(1, MN_ADDR, packet(1)))
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
    frames = b"".join(encode_data_frame(i + 1, MN_ADDR, packet(i)) for i in range(3))
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


# --- sequence numbers and acknowledgements (protocol.md 8.2) ------------------------------


def _frames(data: bytes) -> list[object]:
    """Every whole frame in ``data``, decoded."""
    out: list[object] = []
    while data:
        (length,) = struct.unpack_from("!I", data)
        out.append(decode_frame(data[: 4 + length]))
        data = data[4 + length :]
    return out


def test_ack_every_32_frames_or_after_50_ms_and_with_keepalives() -> None:
    """The receiver acknowledges cumulatively after 32 delivered frames at once, otherwise
    50 ms after the first unacknowledged one, and with every Keepalive; never one Ack per
    frame. Acks release the sender's kept frames."""
    c, ha, fa = connected()
    for i in range(40):
        ha.protocol.send_data(MN_ADDR, packet(i))
    fa.protocol.dataReceived(ha.transport.value())
    ha.transport.clear()
    assert _frames(fa.transport.value()) == [TunnelAck(32)]
    fa.transport.clear()
    c.advance(ACK_DELAY - 0.01)
    assert fa.transport.value() == b""
    c.advance(0.01)
    assert _frames(fa.transport.value()) == [TunnelAck(40)]
    session = ha.protocol.session
    assert session is not None and len(session) == 40
    pump(ha, fa)
    assert len(session) == 0 and session.bytes == 0
    c.advance(KEEPALIVE_INTERVAL)
    assert _frames(fa.transport.value()) == [TunnelKeepalive(), TunnelAck(40)]
    assert fa.protocol.frames_in == 40


def test_duplicates_dropped_and_gaps_close() -> None:
    """A Data frame with a Sequence already delivered is dropped and counted; one beyond the
    next expected (frames missing) closes the connection, counted and logged."""
    _, ha, fa = connected()
    ha.protocol.send_data(MN_ADDR, packet(0))
    ha.protocol.send_data(MN_ADDR, packet(1))
    pump(ha, fa)
    fa.protocol.dataReceived(encode_data_frame(1, MN_ADDR, packet(0)))
    assert fa.received == [(MN_ADDR, packet(0)), (MN_ADDR, packet(1))]
    assert fa.protocol.counters.get("frames.duplicate") == 1
    with capturedLogs() as events:
        fa.protocol.dataReceived(encode_data_frame(5, MN_ADDR, packet(4)))
    assert fa.transport.disconnecting and len(fa.received) == 2
    assert fa.protocol.counters.get("frames.gap") == 1
    assert any(e.get("expected") == 3 for e in events)


def test_ack_of_a_frame_never_sent_closes() -> None:
    """An Ack beyond the last Sequence written is a broken peer: the connection closes."""
    _, ha, _fa = connected()
    ha.protocol.send_data(MN_ADDR, packet(0))
    ha.protocol.dataReceived(TunnelAck(2).encode())
    assert ha.transport.disconnecting
    assert ha.protocol.counters.get("frames.malformed") == 1


def _pair(c: Clock, ha_session: TunnelSession, fa_session: TunnelSession) -> tuple[End, End]:
    """A new connection between the HA and the FA using the pair state given."""
    ha = make_end(HA, c, expected_peer=FA_ID, sessions=lambda _p: ha_session)
    fa = make_end(FA, c, sessions=lambda _p: fa_session)
    pump(ha, fa)
    assert ha.protocol.ready and fa.protocol.ready
    return ha, fa


def test_reconnection_resends_what_the_peer_lacks_once_in_order() -> None:
    """Frames written to a connection that dies (some delivered but not yet acknowledged,
    some lost in flight) and frames accepted while down: after the reconnection the peer's
    Hello says what it has, the rest is written again first, and every frame is delivered
    exactly once and in order, both directions."""
    c = clock()
    ha_session = TunnelSession(Counters(), "fa")
    fa_session = TunnelSession(Counters(), "ha")
    ha, fa = _pair(c, ha_session, fa_session)
    fa_got: list[bytes] = []
    ha_got: list[bytes] = []
    for i in range(10):
        ha_session.send(MN_ADDR, packet(i))
        fa_session.send(MN_ADDR, packet(100 + i))
    # The first 6 each way arrive (unacknowledged: under 32 frames, no time passed), the
    # other 4 die with the connection.
    fa.protocol.dataReceived(b"".join(_raw_frames(ha.transport.value())[:6]))
    ha.protocol.dataReceived(b"".join(_raw_frames(fa.transport.value())[:6]))
    fa_got += [p for _, p in fa.received]
    ha_got += [p for _, p in ha.received]
    ha.protocol.connectionLost(None)
    fa.protocol.connectionLost(None)
    assert len(ha_session) == 10 and ha_session.unacknowledged == 10
    for i in range(10, 15):
        assert ha_session.send(MN_ADDR, packet(i))
    ha, fa = _pair(c, ha_session, fa_session)
    pump(ha, fa)
    fa_got += [p for _, p in fa.received]
    ha_got += [p for _, p in ha.received]
    assert fa_got == [packet(i) for i in range(15)]
    assert ha_got == [packet(100 + i) for i in range(10)]
    assert fa.protocol.counters.get("frames.duplicate") == 0
    assert ha_session.counters.get("buffer.flushed") == 9  # 7..15, not 1..6


def _raw_frames(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    while data:
        (length,) = struct.unpack_from("!I", data)
        out.append(data[: 4 + length])
        data = data[4 + length :]
    return out


def test_restarted_peer_gets_no_old_unacknowledged_frames() -> None:
    """When the FA comes back with a new Session ID (a restarted process), the HA drops the
    frames it wrote to the old process without an acknowledgement (counted, logged: they may
    have been delivered there) and sends only the frames never written; the new FA accepts
    the HA's series from that frame on."""
    c = clock()
    ha_session = TunnelSession(Counters(), "fa")
    ha, fa = _pair(c, ha_session, TunnelSession(Counters(), "ha"))
    for i in range(4):
        ha_session.send(MN_ADDR, packet(i))
    pump(ha, fa)
    assert len(fa.received) == 4 and len(ha_session) == 4
    ha.protocol.connectionLost(None)
    fa.protocol.connectionLost(None)
    for i in range(4, 7):
        ha_session.send(MN_ADDR, packet(i))
    with capturedLogs() as events:
        ha, fa = _pair(c, ha_session, TunnelSession(Counters(), "ha"))
    pump(ha, fa)
    assert fa.received == [(MN_ADDR, packet(i)) for i in range(4, 7)]
    assert ha_session.counters.get("frames.peer_restarted") == 4
    assert any(e.get("dropped") == 4 for e in events)


def test_bounds_count_unacknowledged_and_waiting_frames() -> None:
    """The session's bound counts frames written but unacknowledged as well as frames
    waiting for a connection: beyond it frames are refused, counted and logged once per
    streak, with the total when frames are accepted again."""
    c = clock()
    counters = Counters()
    ha_session = TunnelSession(counters, "fa", max_frames=3)
    ha, fa = _pair(c, ha_session, TunnelSession(Counters(), "ha"))
    with capturedLogs() as events:
        results = [ha_session.send(MN_ADDR, packet(i)) for i in range(5)]
        assert results == [True] * 3 + [False] * 2
        pump(ha, fa)
        c.advance(ACK_DELAY)
        pump(ha, fa)
        assert ha_session.send(MN_ADDR, packet(5))
    assert counters.get("buffer.overflow") == 2
    assert sum("refusing" in e["log_format"] for e in events) == 1
    assert any(e.get("refused") == 2 for e in events)
