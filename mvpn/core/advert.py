"""Agent advertisements: the foreign agent's schedule and the mobile node's view of agents.

Foreign agent side (:class:`AdvertisementSchedule`, RFC 5944 section 2.1 and 2.3;
docs/protocol.md 3.3 and 10):

- one Agent Advertisement every :data:`ADVERTISEMENT_INTERVAL` seconds, and one in answer to
  every Agent Solicitation, each with the next Sequence Number: 0 after start, +1 per
  advertisement, wrapping from 0xFFFF to 256 (RFC 5944 2.1.1), so that only a restarted
  agent ever sends a number below 256 again;
- the advertisement carries the agent's care-of address, the longest registration lifetime
  it grants and its flags (F, plus whatever the configuration adds);
- it remembers when each Sequence Number was last advertised: the draft's MN Nonce starts
  with one of them (section 5.1) and the FA accepts it only when that number was advertised
  in the last :data:`SEQUENCE_MEMORY` seconds (docs/protocol.md 10);
- it remembers which MN Nonces were used, for as long as their Sequence Number is
  acceptable, so that a replayed first-contact request is refused.

Mobile node side (:class:`AgentTracker`, RFC 5944 sections 2.4 and 3.6.2.1):

- every advertisement that carries a Mobility Agent Advertisement extension with the F flag
  and a care-of address refreshes that agent's entry (address, care-of address, last
  Sequence Number, expiry = now + the ICMP Lifetime);
- an agent whose lifetime passes without another advertisement is lost;
- an agent whose Sequence Number falls below 256 after having been higher has restarted
  (RFC 5944 section 2.4.2: after the wrap an agent never sends 0 to 255 again) and has lost
  its visitor list, so its mobile nodes must register again;
- :meth:`AgentTracker.choose` picks an agent that is alive and not busy.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

from mvpn.core.effects import Counters
from mvpn.wire.errors import WireError
from mvpn.wire.icmp import (
    AdvertisementCode,
    AgentAdvertisement,
    AgentFlags,
    MobilityAgentAdvertisementExtension,
    RouterEntry,
)
from mvpn.wire.plain import mn_nonce_sequence

__all__ = [
    "ADVERTISEMENT_INTERVAL",
    "ADVERTISEMENT_LIFETIME",
    "MAX_USED_NONCES",
    "SEQUENCE_MEMORY",
    "SEQUENCE_WRAP_TO",
    "AdvertisementSchedule",
    "AgentInfo",
    "AgentTracker",
    "NonceCheck",
    "Observation",
    "next_sequence",
]

ADVERTISEMENT_INTERVAL = 1.0
"""Seconds between unsolicited advertisements: RFC 5944 2.3.1 allows up to a third of the
advertisement lifetime (docs/protocol.md 10)."""

ADVERTISEMENT_LIFETIME = 9
"""The ICMP Lifetime of our advertisements: three missed ones mean the FA is gone."""

SEQUENCE_MEMORY = 60.0
"""Seconds for which an advertised Sequence Number may start an MN Nonce (docs/protocol.md
10): bounds what the FA must remember."""

SEQUENCE_WRAP_TO = 256
"""After 0xFFFF the Sequence Number goes on at 256, not 0 (RFC 5944 2.1.1): 0 to 255 then
mean "just restarted"."""

MAX_SEQUENCE = 0xFFFF

MAX_USED_NONCES = 65536
"""Most MN Nonces remembered at once. The pending table admits at most 4096 requests per 7 s
(about 35,000 per :data:`SEQUENCE_MEMORY`), so a legitimate load never reaches this; when a
flood does, new first contacts are refused (reply 66) rather than a nonce forgotten early."""

MAX_AGENTS = 64
"""Most agents a mobile node tracks at once: one link rarely has more than a few; the bound
keeps forged advertisements from growing the table without limit."""


def next_sequence(sequence: int) -> int:
    """The Sequence Number after ``sequence``: +1, and 0xFFFF is followed by 256."""
    return SEQUENCE_WRAP_TO if sequence >= MAX_SEQUENCE else sequence + 1


class NonceCheck(enum.Enum):
    """The outcome of :meth:`AdvertisementSchedule.use_nonce`."""

    FRESH = "fresh"
    """Names a recent advertisement and was never used: now marked used."""
    UNKNOWN_SEQUENCE = "unknown-sequence"
    """Its Sequence Number was not advertised in the last :data:`SEQUENCE_MEMORY` seconds."""
    REPLAYED = "replayed"
    """It was used before."""
    FULL = "full"
    """The table of used nonces is full (a flood); the request is refused with reply 66."""


class AdvertisementSchedule:
    """A foreign agent's advertisements and its memory of them (RFC 5944 2.1, 2.3).

    ``care_of`` is the address mobile nodes register through; ``router`` the agent's own
    address on the link (the ICMP router entry; it defaults to ``care_of``).
    """

    def __init__(
        self,
        care_of: ipaddress.IPv4Address,
        registration_lifetime: int,
        flags: AgentFlags = AgentFlags.F,
        *,
        router: ipaddress.IPv4Address | None = None,
        interval: float = ADVERTISEMENT_INTERVAL,
        lifetime: int = ADVERTISEMENT_LIFETIME,
        counters: Counters | None = None,
    ) -> None:
        if not 0 < registration_lifetime <= MAX_SEQUENCE:
            raise ValueError(f"registration lifetime {registration_lifetime}: not in 1..65535")
        if not 0 < interval <= lifetime / 3:
            # RFC 5944 2.3.1: the interval SHOULD be at most a third of the lifetime.
            raise ValueError(f"advertisement interval {interval}: not in (0, lifetime / 3]")
        self.care_of = care_of
        self.router = router if router is not None else care_of
        self.registration_lifetime = registration_lifetime
        self.flags = flags | AgentFlags.F
        self.interval = interval
        self.lifetime = lifetime
        self.counters = counters if counters is not None else Counters()
        self._next = 0
        self._advertised: OrderedDict[int, float] = OrderedDict()
        self._used: OrderedDict[int, float] = OrderedDict()
        self.busy = False

    @property
    def last_sequence(self) -> int | None:
        """The Sequence Number of the latest advertisement, ``None`` before the first."""
        return next(reversed(self._advertised), None)

    def advertisement(self, now: float) -> bytes:
        """The next Agent Advertisement's ICMP bytes; its Sequence Number is remembered."""
        sequence = self._next
        self._next = next_sequence(sequence)
        flags = self.flags | AgentFlags.B if self.busy else self.flags
        message = AgentAdvertisement(
            AdvertisementCode.MOBILITY_ONLY,
            self.lifetime,
            (RouterEntry(self.router),),
            (
                MobilityAgentAdvertisementExtension(
                    sequence, self.registration_lifetime, flags, (self.care_of,)
                ),
            ),
        )
        self._advertised.pop(sequence, None)
        self._advertised[sequence] = now
        self._forget(now)
        self.counters.increment("advertisements")
        return message.encode()

    def sequence_is_recent(self, sequence: int, now: float) -> bool:
        """Whether ``sequence`` was advertised within the last :data:`SEQUENCE_MEMORY` s."""
        at = self._advertised.get(sequence)
        return at is not None and now - at <= SEQUENCE_MEMORY

    def check_nonce(self, mn_nonce: int, now: float) -> NonceCheck:
        """Check an MN Nonce (draft 5.1) without marking it used."""
        self._forget(now)
        if not self.sequence_is_recent(mn_nonce_sequence(mn_nonce), now):
            return NonceCheck.UNKNOWN_SEQUENCE
        if mn_nonce in self._used:
            return NonceCheck.REPLAYED
        if len(self._used) >= MAX_USED_NONCES:
            return NonceCheck.FULL
        return NonceCheck.FRESH

    def use_nonce(self, mn_nonce: int, now: float) -> NonceCheck:
        """Check an MN Nonce and, when it is fresh, mark it used (replay protection)."""
        result = self.check_nonce(mn_nonce, now)
        if result is NonceCheck.FRESH:
            self._used[mn_nonce] = now
        return result

    def _forget(self, now: float) -> None:
        # Both tables are in time order: drop from the front while too old. A used nonce
        # may be forgotten once its sequence can no longer be accepted, that is after the
        # sequence memory (the nonce was used no earlier than its sequence was advertised).
        while self._advertised:
            sequence, at = next(iter(self._advertised.items()))
            if now - at <= SEQUENCE_MEMORY:
                break
            del self._advertised[sequence]
        while self._used:
            nonce, at = next(iter(self._used.items()))
            if now - at <= SEQUENCE_MEMORY:
                break
            del self._used[nonce]

    @property
    def used_nonces(self) -> int:
        """How many MN Nonces are remembered as used."""
        return len(self._used)


class Observation(enum.Enum):
    """What one received advertisement meant to :class:`AgentTracker`."""

    NEW = "new"
    REFRESHED = "refreshed"
    RESTARTED = "restarted"
    """Sequence Number below 256 after a higher one: the agent lost its state."""
    IGNORED = "ignored"
    """Not a foreign agent's advertisement (no extension 16, no F flag, no care-of)."""
    MALFORMED = "malformed"


@dataclass(frozen=True)
class AgentInfo:
    """What a mobile node knows of one foreign agent (RFC 5944 2.1.1)."""

    address: ipaddress.IPv4Address
    """Where its advertisements came from (and where registrations go)."""
    care_of: ipaddress.IPv4Address
    """The first care-of address it advertises."""
    sequence: int
    registration_lifetime: int
    flags: AgentFlags
    heard_at: float
    expires_at: float

    @property
    def busy(self) -> bool:
        """The B flag: the agent accepts no new registration."""
        return bool(self.flags & AgentFlags.B)

    def alive(self, now: float) -> bool:
        """Whether its advertisement lifetime has not passed."""
        return now < self.expires_at


class AgentTracker:
    """The mobile node's table of foreign agents heard on its link (RFC 5944 2.4, 3.6.2.1)."""

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters if counters is not None else Counters()
        self._agents: OrderedDict[ipaddress.IPv4Address, AgentInfo] = OrderedDict()

    def observe(
        self, data: bytes, source: ipaddress.IPv4Address, now: float
    ) -> tuple[Observation, AgentInfo | None]:
        """Take in one advertisement's ICMP bytes from ``source``; never raises."""
        try:
            message = AgentAdvertisement.decode(data)
        except WireError:
            self.counters.increment("drops.malformed_advertisement")
            return Observation.MALFORMED, None
        ext = message.mobility
        if ext is None or not ext.flags & AgentFlags.F or not ext.care_of_addresses:
            self.counters.increment("drops.not_a_foreign_agent")
            return Observation.IGNORED, None
        info = AgentInfo(
            source,
            ext.care_of_addresses[0],
            ext.sequence_number,
            ext.registration_lifetime,
            ext.flags,
            now,
            now + message.lifetime,
        )
        old = self._agents.pop(source, None)
        if old is None and len(self._agents) >= MAX_AGENTS:
            # Make room by forgetting the agent heard from longest ago.
            self._agents.popitem(last=False)
        self._agents[source] = info
        self.counters.increment("advertisements_received")
        if old is None:
            return Observation.NEW, info
        if info.sequence < SEQUENCE_WRAP_TO and info.sequence < old.sequence:
            self.counters.increment("agent_restarts")
            return Observation.RESTARTED, info
        return Observation.REFRESHED, info

    def get(self, address: ipaddress.IPv4Address) -> AgentInfo | None:
        """The entry of the agent at ``address``, alive or not."""
        return self._agents.get(address)

    def expire(self, now: float) -> list[AgentInfo]:
        """Drop and return the agents whose lifetime has passed."""
        lost = [a for a in self._agents.values() if not a.alive(now)]
        for agent in lost:
            del self._agents[agent.address]
        return lost

    def choose(self, now: float, exclude: ipaddress.IPv4Address | None = None) -> AgentInfo | None:
        """The agent to register with: alive, not busy, not ``exclude``; the most recently
        heard wins (it is the likeliest to still be reachable)."""
        candidates = [
            a
            for a in self._agents.values()
            if a.alive(now) and not a.busy and a.address != exclude
        ]
        return max(candidates, key=lambda a: a.heard_at, default=None)

    def agents(self) -> list[AgentInfo]:
        """Every tracked agent, oldest heard first."""
        return list(self._agents.values())
