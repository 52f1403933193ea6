"""The FA's advertisement schedule and the MN's agent tracker (RFC 5944 2.1, 2.4)."""

from __future__ import annotations

import ipaddress

import pytest

from mvpn.core.advert import (
    MAX_USED_NONCES,
    SEQUENCE_MEMORY,
    AdvertisementSchedule,
    AgentTracker,
    NonceCheck,
    Observation,
    next_sequence,
)
from mvpn.wire.icmp import (
    AdvertisementCode,
    AgentAdvertisement,
    AgentFlags,
    MobilityAgentAdvertisementExtension,
    RouterEntry,
)
from mvpn.wire.plain import make_mn_nonce

COA = ipaddress.IPv4Address("127.0.0.2")
FA = ipaddress.IPv4Address("127.0.0.2")


def _schedule() -> AdvertisementSchedule:
    return AdvertisementSchedule(COA, 1800)


def test_sequence_starts_at_zero_and_increments() -> None:
    """The first advertisement carries 0, each later one the next number (RFC 5944 2.1.1)."""
    schedule = _schedule()
    sequences = []
    for i in range(3):
        adv = AgentAdvertisement.decode(schedule.advertisement(float(i)))
        assert adv.mobility is not None
        sequences.append(adv.mobility.sequence_number)
    assert sequences == [0, 1, 2]
    assert schedule.counters.get("advertisements") == 3


def test_sequence_wraps_to_256() -> None:
    """After 0xFFFF the Sequence Number continues at 256, never 0 (RFC 5944 2.1.1)."""
    assert next_sequence(0xFFFE) == 0xFFFF
    assert next_sequence(0xFFFF) == 256
    assert next_sequence(0) == 1


def test_advertisement_carries_care_of_lifetime_and_flags() -> None:
    """The advertisement names the care-of address, registration lifetime, F flag, and
    the 9 s ICMP lifetime of docs/protocol.md 10."""
    schedule = AdvertisementSchedule(COA, 600, AgentFlags.T)
    adv = AgentAdvertisement.decode(schedule.advertisement(0.0))
    assert adv.lifetime == 9
    assert adv.code == AdvertisementCode.MOBILITY_ONLY
    ext = adv.mobility
    assert ext is not None
    assert ext.care_of_addresses == (COA,)
    assert ext.registration_lifetime == 600
    assert ext.flags & AgentFlags.F and ext.flags & AgentFlags.T
    schedule.busy = True
    busy = AgentAdvertisement.decode(schedule.advertisement(1.0)).mobility
    assert busy is not None and busy.flags & AgentFlags.B


def test_interval_over_a_third_of_the_lifetime_is_refused() -> None:
    """RFC 5944 2.3.1: the interval must not exceed a third of the advertisement lifetime."""
    with pytest.raises(ValueError):
        AdvertisementSchedule(COA, 300, interval=4.0, lifetime=9)


def test_nonce_must_name_a_recent_sequence() -> None:
    """An MN Nonce is fresh only if its sequence half was advertised within 60 s."""
    schedule = _schedule()
    schedule.advertisement(100.0)  # sequence 0
    assert schedule.check_nonce(make_mn_nonce(0, 7), 100.0 + SEQUENCE_MEMORY) is NonceCheck.FRESH
    assert schedule.check_nonce(make_mn_nonce(1, 7), 100.0) is NonceCheck.UNKNOWN_SEQUENCE
    assert (
        schedule.check_nonce(make_mn_nonce(0, 7), 100.0 + SEQUENCE_MEMORY + 0.5)
        is NonceCheck.UNKNOWN_SEQUENCE
    )


def test_used_nonce_is_replayed() -> None:
    """A nonce used once is refused the second time; another random half is fresh."""
    schedule = _schedule()
    schedule.advertisement(0.0)
    assert schedule.use_nonce(make_mn_nonce(0, 1), 1.0) is NonceCheck.FRESH
    assert schedule.use_nonce(make_mn_nonce(0, 1), 2.0) is NonceCheck.REPLAYED
    assert schedule.use_nonce(make_mn_nonce(0, 2), 2.0) is NonceCheck.FRESH
    assert schedule.used_nonces == 2


def test_used_nonces_are_forgotten_with_their_sequence() -> None:
    """Used nonces are dropped once their sequence can no longer be accepted."""
    schedule = _schedule()
    schedule.advertisement(0.0)
    schedule.use_nonce(make_mn_nonce(0, 1), 0.0)
    schedule.advertisement(SEQUENCE_MEMORY + 1)
    assert schedule.used_nonces == 0
    assert schedule.check_nonce(make_mn_nonce(0, 1), SEQUENCE_MEMORY + 1) is (
        NonceCheck.UNKNOWN_SEQUENCE
    )


def test_used_nonce_table_is_bounded() -> None:
    """When the used-nonce table is full new nonces are refused, never an old one forgotten."""
    schedule = _schedule()
    for _ in range(MAX_USED_NONCES // 0x10000 + 1):
        schedule.advertisement(0.0)
    for i in range(MAX_USED_NONCES):
        assert schedule.use_nonce(make_mn_nonce(i >> 16, i & 0xFFFF), 0.0) is NonceCheck.FRESH
    assert schedule.use_nonce(make_mn_nonce(1, 0xFFFF), 0.0) is NonceCheck.FULL
    assert schedule.use_nonce(make_mn_nonce(0, 0), 0.0) is NonceCheck.REPLAYED


def _adv(sequence: int, lifetime: int = 9, flags: AgentFlags = AgentFlags.F) -> bytes:
    return AgentAdvertisement(
        AdvertisementCode.MOBILITY_ONLY,
        lifetime,
        (RouterEntry(FA),),
        (MobilityAgentAdvertisementExtension(sequence, 300, flags, (COA,)),),
    ).encode()


def test_tracker_learns_refreshes_and_loses_an_agent() -> None:
    """An agent is new, then refreshed, then lost when its ICMP lifetime passes."""
    tracker = AgentTracker()
    kind, info = tracker.observe(_adv(0), FA, 0.0)
    assert kind is Observation.NEW and info is not None
    assert info.care_of == COA and info.registration_lifetime == 300 and info.expires_at == 9.0
    assert tracker.observe(_adv(1), FA, 1.0)[0] is Observation.REFRESHED
    assert tracker.expire(9.5) == []
    assert tracker.choose(9.5) is not None
    lost = tracker.expire(10.0)
    assert [a.address for a in lost] == [FA]
    assert tracker.choose(10.0) is None


def test_tracker_detects_restart_but_not_wrap() -> None:
    """A sequence below 256 after a higher one is a restart; 0xFFFF -> 256 is a wrap."""
    tracker = AgentTracker()
    tracker.observe(_adv(0xFFFF), FA, 0.0)
    assert tracker.observe(_adv(256), FA, 1.0)[0] is Observation.REFRESHED
    assert tracker.observe(_adv(300), FA, 2.0)[0] is Observation.REFRESHED
    assert tracker.observe(_adv(0), FA, 3.0)[0] is Observation.RESTARTED
    assert tracker.counters.get("agent_restarts") == 1


def test_tracker_ignores_garbage_and_non_agents() -> None:
    """Malformed bytes and advertisements without an FA's extension 16 are counted, ignored."""
    tracker = AgentTracker()
    assert tracker.observe(b"\x09\x00garbage", FA, 0.0) == (Observation.MALFORMED, None)
    plain = AgentAdvertisement(AdvertisementCode.ROUTES_COMMON_TRAFFIC, 9, (RouterEntry(FA),))
    assert tracker.observe(plain.encode(), FA, 0.0) == (Observation.IGNORED, None)
    home_only = _adv(0, flags=AgentFlags.H)
    assert tracker.observe(home_only, FA, 0.0) == (Observation.IGNORED, None)
    assert tracker.agents() == []
    assert tracker.counters.snapshot() == {
        "drops.malformed_advertisement": 1,
        "drops.not_a_foreign_agent": 2,
    }


def test_choose_skips_busy_and_excluded_agents() -> None:
    """Busy agents and the one being left are never chosen; the latest heard wins."""
    tracker = AgentTracker()
    other = ipaddress.IPv4Address("127.0.0.3")
    tracker.observe(_adv(0), FA, 0.0)
    tracker.observe(_adv(0), other, 1.0)
    chosen = tracker.choose(1.0)
    assert chosen is not None and chosen.address == other
    chosen = tracker.choose(1.0, exclude=other)
    assert chosen is not None and chosen.address == FA
    tracker.observe(_adv(1, flags=AgentFlags.F | AgentFlags.B), FA, 2.0)
    assert tracker.choose(2.0, exclude=other) is None
