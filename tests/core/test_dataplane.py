"""The sans-IO data plane (mvpn.core.dataplane; docs/protocol.md 8.1, 10, 11)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mvpn.core.dataplane import (
    DATA_KEY_LIFETIME,
    BadCodePoint,
    BadHop,
    BadTag,
    DataDrop,
    DataPlane,
    DataSession,
    DecryptFailed,
    Endpoint,
    MalformedPacket,
    NoCipher,
    NodeKind,
    Relay,
    Replayed,
    SequenceExhausted,
    TooOld,
    UnknownSpi,
    WrongDirection,
)
from mvpn.crypto.auth import HopAuthenticator
from mvpn.crypto.errors import UnsupportedAlgorithmError
from mvpn.wire.codes import EncrSecPar
from mvpn.wire.data import HOP_TAG_SIZE, DataPacket, forward

SPI = 0x01020304
AUTH_KEY = bytes(range(32))
MN_TO_CN = bytes(range(32, 64))
CN_TO_MN = bytes(range(64, 96))
NOW = 1_000_000.0
INNER = bytes(range(256)) * 5 + b"tail"


@dataclass
class Chain:
    """CN -> HA -> FA -> MN with one data session installed everywhere."""

    cn: Endpoint
    ha: Relay
    fa: Relay
    mn: Endpoint

    def to_mn(self, inner: bytes) -> tuple[bytes, bytes, bytes]:
        """The packet on each link: CN->HA, HA->FA, FA->MN."""
        p0 = self.cn.seal(SPI, inner)
        p1 = self.ha.forward(p0, from_mn=False)
        p2 = self.fa.forward(p1, from_mn=False)
        return p0, p1, p2

    def from_mn(self, inner: bytes) -> tuple[bytes, bytes, bytes]:
        """The packet on each link: MN->FA, FA->HA, HA->CN."""
        p0 = self.mn.seal(SPI, inner)
        p1 = self.fa.forward(p0, from_mn=True)
        p2 = self.ha.forward(p1, from_mn=True)
        return p0, p1, p2


def make_chain(encr: EncrSecPar = EncrSecPar.AES_256_GCM) -> Chain:
    planes = {kind: DataPlane(kind) for kind in NodeKind}
    planes[NodeKind.CN].install(DataSession.for_cn(SPI, AUTH_KEY, encr, MN_TO_CN, CN_TO_MN, NOW))
    planes[NodeKind.MN].install(DataSession.for_mn(SPI, AUTH_KEY, encr, MN_TO_CN, CN_TO_MN, NOW))
    planes[NodeKind.HA].install(DataSession.for_relay(SPI, AUTH_KEY, encr, NOW))
    planes[NodeKind.FA].install(DataSession.for_relay(SPI, AUTH_KEY, encr, NOW))
    return Chain(
        Endpoint(planes[NodeKind.CN]),
        Relay(planes[NodeKind.HA]),
        Relay(planes[NodeKind.FA]),
        Endpoint(planes[NodeKind.MN]),
    )


def drops(plane: DataPlane) -> dict[str, int]:
    return {k: v for k, v in plane.counters.snapshot().items() if k.startswith("drops.")}


@pytest.mark.parametrize("encr", [EncrSecPar.AES_256_GCM, EncrSecPar.CHACHA20_POLY1305])
def test_full_chain_both_ways(encr: EncrSecPar) -> None:
    """CN -> HA -> FA -> MN and MN -> FA -> HA -> CN deliver the inner packet unchanged, with
    Hop 0, 1, 2 on the three links and the D flag set only from the MN."""
    chain = make_chain(encr)
    for i in range(5):
        links = chain.to_mn(INNER + bytes([i]))
        assert [DataPacket.decode(p).hop for p in links] == [0, 1, 2]
        assert not any(DataPacket.decode(p).from_mn for p in links)
        assert chain.mn.open(links[2]) == INNER + bytes([i])
        back = chain.from_mn(b"reply %d" % i)
        assert [DataPacket.decode(p).hop for p in back] == [0, 1, 2]
        assert all(DataPacket.decode(p).from_mn for p in back)
        assert chain.cn.open(back[2]) == b"reply %d" % i
    assert [DataPacket.decode(p).sequence for p in chain.to_mn(b"x")] == [6, 6, 6]
    ha = chain.ha.plane.counters
    assert ha.get("forwarded.packets") == 11
    assert chain.mn.plane.counters.get("opened.packets") == 5
    assert chain.mn.plane.counters.get("opened.bytes") == 5 * (len(INNER) + 1)
    assert not drops(chain.ha.plane) and not drops(chain.mn.plane)


def test_packet_layout_matches_the_wire_codec() -> None:
    """A sealed packet decodes with DataPacket (protocol.md 8.1 layout): SPI, sequence 1,
    AES-256-GCM, ciphertext = inner + 16-byte AEAD tag, and a hop tag over bytes 0..L-16."""
    chain = make_chain()
    packet = chain.cn.seal(SPI, INNER)
    value = DataPacket.decode(packet)
    assert (value.spi, value.sequence, value.encr_sec_par) == (SPI, 1, EncrSecPar.AES_256_GCM)
    assert len(value.ciphertext) == len(INNER) + 16
    assert INNER not in packet
    assert HopAuthenticator(AUTH_KEY).tag(packet[:-HOP_TAG_SIZE]) == value.tag


def test_relays_cannot_decrypt() -> None:
    """The HA and the FA hold only the authentication key: their sessions have no cipher,
    an endpoint over such a session refuses with no-cipher, and nothing they forward carries
    the plaintext."""
    chain = make_chain()
    p0, p1, p2 = chain.to_mn(INNER)
    for relay in (chain.ha, chain.fa):
        session = relay.plane.get(SPI)
        assert session is not None
        assert session.send is None and session.receive is None
    for p in (p0, p1, p2):
        assert INNER[:64] not in p
    # An MN plane holding only a relay's session (auth key, no DH keys) cannot read p2.
    thief = DataPlane(NodeKind.MN)
    thief.install(DataSession.for_relay(SPI, AUTH_KEY, EncrSecPar.AES_256_GCM, NOW))
    with pytest.raises(NoCipher):
        Endpoint(thief).open(p2)
    assert thief.counters.get("drops.no-cipher") == 1
    with pytest.raises(ValueError):
        Relay(DataPlane(NodeKind.MN))
    with pytest.raises(ValueError):
        Endpoint(DataPlane(NodeKind.HA))


def _forge_tag(packet: bytes) -> bytes:
    return packet[:-1] + bytes([packet[-1] ^ 1])


def test_forged_packets_dropped_at_every_hop_without_moving_the_window() -> None:
    """A packet whose hop tag does not verify is dropped (bad-tag) at HA, FA and MN alike;
    the window does not move, so the genuine packet with that sequence still passes."""
    chain = make_chain()
    p0, p1, p2 = chain.to_mn(INNER)
    chain2 = make_chain()
    with pytest.raises(BadTag):
        chain2.ha.forward(_forge_tag(p0), from_mn=False)
    with pytest.raises(BadTag):
        chain2.fa.forward(_forge_tag(p1), from_mn=False)
    with pytest.raises(BadTag):
        chain2.mn.open(_forge_tag(p2))
    # A changed ciphertext byte fails the tag too (it covers everything but itself).
    tampered = bytearray(p2)
    tampered[30] ^= 0xFF
    with pytest.raises(BadTag):
        chain2.mn.open(bytes(tampered))
    for node in (chain2.ha.plane, chain2.fa.plane):
        assert drops(node) == {"drops.bad-tag": 1}
        session = node.get(SPI)
        assert session is not None and session.to_mn.highest == 0
    assert drops(chain2.mn.plane) == {"drops.bad-tag": 2}
    assert chain2.ha.forward(p0, from_mn=False) == p1
    assert chain2.fa.forward(p1, from_mn=False) == p2
    assert chain2.mn.open(p2) == INNER


def test_replays_dropped_at_every_hop() -> None:
    """A packet accepted once is refused the second time (replay) by HA, FA and MN, and the
    reverse direction's window is separate (the same sequence from the MN passes)."""
    chain = make_chain()
    p0, p1, p2 = chain.to_mn(INNER)
    assert chain.mn.open(p2) == INNER
    with pytest.raises(Replayed):
        chain.ha.forward(p0, from_mn=False)
    with pytest.raises(Replayed):
        chain.fa.forward(p1, from_mn=False)
    with pytest.raises(Replayed):
        chain.mn.open(p2)
    for node in (chain.ha.plane, chain.fa.plane, chain.mn.plane):
        assert drops(node) == {"drops.replay": 1}
    q0, _q1, q2 = chain.from_mn(b"first from the MN")
    assert DataPacket.decode(q0).sequence == 1
    assert chain.cn.open(q2) == b"first from the MN"


def test_reordering_inside_and_beyond_the_window() -> None:
    """Packets reordered within the 2048-wide window are accepted at every hop; one that
    falls behind the window is dropped as too-old at every hop."""
    chain = make_chain()
    late = chain.cn.seal(SPI, b"late")
    fresh = [chain.cn.seal(SPI, b"p%d" % i) for i in range(2100)]
    # Deliver 2..2101 except the one that will arrive late, in order.
    in_window = fresh[1000]
    for p in fresh:
        if p is in_window:
            continue
        chain.mn.open(chain.fa.forward(chain.ha.forward(p, False), False))
    out = chain.mn.open(chain.fa.forward(chain.ha.forward(in_window, False), False))
    assert out == b"p1000"
    with pytest.raises(TooOld):
        chain.ha.forward(late, False)
    # The FA and the MN see it too-old as well, when re-authenticated by a key holder.
    hop1 = forward(late, 1, HopAuthenticator(AUTH_KEY).tag)
    with pytest.raises(TooOld):
        chain.fa.forward(hop1, False)
    hop2 = forward(late, 2, HopAuthenticator(AUTH_KEY).tag)
    with pytest.raises(TooOld):
        chain.mn.open(hop2)
    for node in (chain.ha.plane, chain.fa.plane, chain.mn.plane):
        assert drops(node) == {"drops.too-old": 1}


@pytest.mark.parametrize("cut", [0, 1, 19, 20, 35, 36, 60])
def test_truncated_packets_dropped_at_every_hop(cut: int) -> None:
    """A packet cut short (its Length no longer matches, or shorter than a header and a tag)
    is malformed at HA, FA and MN; nothing moves."""
    chain = make_chain()
    p0, p1, p2 = chain.to_mn(INNER)
    chain2 = make_chain()
    with pytest.raises(MalformedPacket):
        chain2.ha.forward(p0[:cut], False)
    with pytest.raises(MalformedPacket):
        chain2.fa.forward(p1[:cut], False)
    with pytest.raises(MalformedPacket):
        chain2.mn.open(p2[:cut])
    for node in (chain2.ha.plane, chain2.fa.plane, chain2.mn.plane):
        assert drops(node) == {"drops.malformed": 1}
    assert chain2.mn.open(chain2.fa.forward(chain2.ha.forward(p0, False), False)) == INNER


def _with_byte(packet: bytes, offset: int, value: int) -> bytes:
    """The packet with one header byte changed and a valid hop tag (a key holder's forgery)."""
    changed = packet[:offset] + bytes([value]) + packet[offset + 1 :]
    part = changed[:-HOP_TAG_SIZE]
    return part + HopAuthenticator(AUTH_KEY).tag(part)


def test_header_checks_and_their_reasons() -> None:
    """Each header check has its own reason: type, flags and reserved are malformed; code
    points bad-code-point; an unknown SPI unknown-spi; a D flag from the wrong side
    wrong-direction; an unexpected Hop bad-hop."""
    chain = make_chain()
    p0 = chain.cn.seal(SPI, INNER)
    cases: list[tuple[bytes, type[DataDrop]]] = [
        (_with_byte(p0, 0, 56), MalformedPacket),
        (_with_byte(p0, 6, 0x02), MalformedPacket),
        (_with_byte(p0, 7, 1), MalformedPacket),
        (_with_byte(p0, 4, 2), BadCodePoint),  # MD5
        (_with_byte(p0, 5, 1), BadCodePoint),  # DES
        (_with_byte(p0, 5, 7), BadCodePoint),  # not the session's cipher
        (_with_byte(p0, 8, 0xFF), UnknownSpi),
        (_with_byte(p0, 6, 0x01), WrongDirection),
        (_with_byte(p0, 1, 1), BadHop),
    ]
    for packet, drop in cases:
        with pytest.raises(drop) as info:
            chain.ha.forward(packet, from_mn=False)
        assert info.value.reason in str(info.value)
    assert drops(chain.ha.plane) == {
        "drops.malformed": 3,
        "drops.bad-code-point": 3,
        "drops.unknown-spi": 1,
        "drops.wrong-direction": 1,
        "drops.bad-hop": 1,
    }
    # The untouched packet still passes: none of the refusals moved the window.
    chain.ha.forward(p0, from_mn=False)


def test_decrypt_failure_is_counted() -> None:
    """A packet with a valid hop tag but the wrong end-to-end key (a relay's forgery) is
    dropped by the endpoint as decrypt."""
    chain = make_chain()
    rogue_plane = DataPlane(NodeKind.CN)
    rogue_plane.install(
        DataSession.for_cn(SPI, AUTH_KEY, EncrSecPar.AES_256_GCM, MN_TO_CN, bytes(32), NOW)
    )
    forged = Endpoint(rogue_plane).seal(SPI, b"not from the CN")
    packet = chain.fa.forward(chain.ha.forward(forged, False), False)
    with pytest.raises(DecryptFailed):
        chain.mn.open(packet)
    assert drops(chain.mn.plane) == {"drops.decrypt": 1}


def test_expiry_and_removal() -> None:
    """Sessions expire after the data key lifetime (3600 s): expire() removes exactly those,
    next_expiry() says when, and packets of an expired or removed SPI are unknown-spi."""
    plane = DataPlane(NodeKind.HA)
    plane.install(DataSession.for_relay(1, AUTH_KEY, EncrSecPar.AES_256_GCM, NOW))
    plane.install(DataSession.for_relay(2, AUTH_KEY, EncrSecPar.AES_256_GCM, NOW + 10))
    assert plane.next_expiry() == NOW + DATA_KEY_LIFETIME
    assert plane.expire(NOW + DATA_KEY_LIFETIME - 1) == []
    assert plane.expire(NOW + DATA_KEY_LIFETIME) == [1]
    assert plane.next_expiry() == NOW + 10 + DATA_KEY_LIFETIME
    assert plane.remove(2) is not None and plane.remove(2) is None
    assert len(plane) == 0 and plane.next_expiry() is None
    assert plane.counters.get("sessions.expired") == 1
    chain = make_chain()
    p0 = chain.cn.seal(SPI, INNER)
    chain.ha.plane.expire(NOW + DATA_KEY_LIFETIME)
    with pytest.raises(UnknownSpi):
        chain.ha.forward(p0, from_mn=False)


def test_seal_refusals() -> None:
    """seal() refuses an unknown SPI, a session without a cipher, an exhausted sequence
    space, and a broken cipher is refused when the session is built."""
    chain = make_chain()
    with pytest.raises(UnknownSpi):
        chain.cn.seal(SPI + 1, b"x")
    last = DataPlane(NodeKind.MN)
    last.install(
        DataSession.for_mn(
            SPI,
            AUTH_KEY,
            EncrSecPar.AES_256_GCM,
            MN_TO_CN,
            CN_TO_MN,
            NOW,
            next_sequence=(1 << 64) - 1,
        )
    )
    endpoint = Endpoint(last)
    assert DataPacket.decode(endpoint.seal(SPI, b"x")).sequence == (1 << 64) - 1
    with pytest.raises(SequenceExhausted):
        endpoint.seal(SPI, b"x")
    with pytest.raises(UnsupportedAlgorithmError):
        DataSession.for_relay(SPI, AUTH_KEY, EncrSecPar.DES, NOW)
    assert chain.cn.plane.counters.snapshot().get("drops.unknown-spi") is None
