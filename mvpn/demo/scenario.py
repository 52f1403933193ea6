"""The demo scenario: the whole draft played once on loopback, every step verified (issue 6,
``make demo``).

:func:`run_demo` provisions both domains in a temporary directory, starts every role in this
process (:mod:`mvpn.demo.world`), and plays, checking each step by the roles' own events,
counters and tables:

1. advertisement: FA1's Agent Advertisement reaches the MN (RFC 5944 2.1, ICMP bytes in UDP);
2. first contact through FA1 (draft 3.2.1): the HA binds the home address to FA1;
3. CN authentication and key agreement (draft 3.4, 3.5, 6): Request Communication,
   Correspondent Information, Correspondent Response, Communication Reply; MN and CN share a
   session the agents cannot read;
4. data both ways through the API (draft 3.5.1), checked by sha256;
5. re-registration (draft 3.2.2) with no public-key operation and no TC request;
6. move to FA2 while data flows both ways (draft 3.3): first contact at FA2, Key Transfer,
   nothing lost, the handover gap measured on the stream to the MN;
7. data again through FA2;
8. attacks: a captured Registration Request replayed and one with a byte flipped, a data
   packet replayed and one altered: all refused or dropped, counted by the roles.

Each step is one line of the timeline (elapsed time, who, what, how long); the returned
:class:`DemoSummary` holds them with the per-phase figures. A step that cannot be verified
raises :class:`DemoFailed` naming it. Timing is reported, never asserted.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
    textFileLogObserver,
)
from zope.interface import implementer  # type: ignore[import-untyped]

from mvpn.api import IMvpnApplication, MvpnClient
from mvpn.core.effects import Event
from mvpn.demo.taps import Attacker, DataTap, RegistrationTap
from mvpn.demo.world import (
    CN_ADDRESS,
    FA1_ADDRESS,
    FA2_ADDRESS,
    HOME_ADDRESS,
    MN_ADDRESS,
    DemoWorld,
    Ports,
    provision,
)
from mvpn.roles.shell import RoleService
from mvpn.wire.codes import ReplyCode, describe, lookup
from mvpn.wire.errors import WireError
from mvpn.wire.registration import RegistrationReply

__all__ = [
    "DEFAULT_TIMEOUT",
    "DemoFailed",
    "DemoSummary",
    "PhaseFigures",
    "Refusal",
    "Step",
    "Transfer",
    "run_demo",
]

DEFAULT_TIMEOUT = 60.0
"""Seconds the whole demo may take before it gives up (it normally needs under 10)."""

STEP_TIMEOUT = 10.0
"""Seconds one step may wait for what it expects: far above what loopback needs, so a
slow machine passes and a broken step still fails well inside the overall timeout."""

POLL = 0.005
"""Seconds between two looks at the roles while waiting (5 ms: fine enough for the timeline,
cheap enough not to disturb the reactor)."""

CHUNK = 1000
"""Bytes of one API datagram's payload (below MAX_API_PAYLOAD, 1372), after a 4-byte index."""

TRANSFER_CHUNKS = 200
"""Datagrams per direction in each plain transfer: 200 KB."""

STREAM_TICK = 0.004
"""Seconds between two sends of the steady stream: 2 datagrams per tick, 500 KB/s each way."""

STREAM_AFTER_MOVE = 100
"""Datagrams the stream must deliver through the new FA before it stops."""

HOME = ipaddress.IPv4Address(HOME_ADDRESS)
CN = ipaddress.IPv4Address(CN_ADDRESS)


class DemoFailed(Exception):
    """A step of the demo could not be verified (or the demo timed out in it).

    ``step`` names it, ``reason`` says what was seen; ``log`` is the copy of the roles' log
    kept outside the removed temporary directory, when there is one.
    """

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason
        self.log: Path | None = None


@dataclass(frozen=True)
class Step:
    """One verified protocol step: when (seconds since the demo started), who, what, and how
    long it took (seconds since the previous step of its phase, or since the phase began)."""

    phase: str
    who: str
    what: str
    at: float
    took: float


@dataclass(frozen=True)
class PhaseFigures:
    """What one phase cost: its duration, the signalling messages sent by every role
    (registration, control and advertisement datagrams, and Trusted Centre requests) and the
    data packets sent or forwarded at every hop."""

    name: str
    seconds: float
    messages: int
    data_packets: int
    messages_by_kind: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Transfer:
    """Bytes sent one way through the API, and the sha256 of what was sent and of what
    arrived (reassembled in order)."""

    phase: str
    direction: str
    bytes: int
    sent_sha256: str
    received_sha256: str

    @property
    def verified(self) -> bool:
        """Everything arrived, unaltered."""
        return self.sent_sha256 == self.received_sha256


@dataclass(frozen=True)
class Refusal:
    """An attack and how the roles refused it: ``by`` the role that refused, ``how`` the
    reply code or the counter that went up."""

    attack: str
    by: str
    how: str


@dataclass(frozen=True)
class DemoSummary:
    """The verified run: every step, the figures per phase, the transfers, the handover gap
    (ms between the last datagram delivered to the MN through FA1 and the first through FA2,
    on a steady stream; negative when the two paths overlapped), the refusals, and the
    public-key operations and TC requests the re-registration needed (none)."""

    steps: tuple[Step, ...]
    phases: tuple[PhaseFigures, ...]
    transfers: tuple[Transfer, ...]
    handover_gap_ms: float
    handover_via_old: int
    handover_via_new: int
    refusals: tuple[Refusal, ...]
    reregistration_pk_operations: int
    reregistration_tc_requests: int
    seconds: float

    @property
    def bytes_sent(self) -> int:
        """Bytes sent through the API, all transfers together."""
        return sum(t.bytes for t in self.transfers)

    @property
    def bytes_verified(self) -> int:
        """Bytes whose sha256 matched at the receiver."""
        return sum(t.bytes for t in self.transfers if t.verified)

    @property
    def verified(self) -> bool:
        """Every transfer arrived intact, every attack was refused, the re-registration
        needed no public-key operation."""
        return (
            bool(self.transfers)
            and all(t.verified for t in self.transfers)
            and len(self.refusals) == 4
            and self.reregistration_pk_operations == 0
            and self.reregistration_tc_requests == 0
        )


# -- counters ---------------------------------------------------------------------------------

Snapshot = dict[str, dict[str, int]]

_SIGNALLING = {
    "shell.sent.registration": "registration",
    "shell.sent.control": "control",
    "shell.sent.advertisement": "advertisement",
    "certificates.tc_requests": "tc",
}
"""Counters that count one signalling message each (the runner counts every datagram it
sends, by channel; each TC request is one AMP exchange)."""

_DATA_PACKETS = ("data.sent.packets", "data.forwarded.packets")
"""Data packets sealed by an endpoint, and forwarded by an agent."""


def _delta(before: Snapshot, after: Snapshot, role: str, name: str) -> int:
    return after.get(role, {}).get(name, 0) - before.get(role, {}).get(name, 0)


def _sum_prefix(before: Snapshot, after: Snapshot, role: str, prefix: str) -> int:
    keys = set(after.get(role, {})) | set(before.get(role, {}))
    return sum(_delta(before, after, role, k) for k in keys if k.startswith(prefix))


# -- the run ----------------------------------------------------------------------------------


class _Run:
    """One run's state: the world, the timeline, the phase figures."""

    def __init__(self, reactor: Any, root: Path, out: Callable[[str], None]) -> None:
        self.reactor = reactor
        self.root = root
        self.out = out
        self.started = reactor.seconds()
        self.world: DemoWorld | None = None
        self.steps: list[Step] = []
        self.phases: list[PhaseFigures] = []
        self.transfers: list[Transfer] = []
        self.refusals: list[Refusal] = []
        self.phase = "set-up"
        self.step_name = "set-up"
        self.phase_started = self.started
        self.last = self.started
        self.phase_counters: Snapshot = {}
        self.events: list[tuple[float, str, Event]] = []

    # -- timeline ----------------------------------------------------------------------

    def now(self) -> float:
        seconds: float = self.reactor.seconds()
        return seconds

    def begin(self, phase: str) -> None:
        """Start a phase: close the previous one's figures, print a header."""
        self.close_phase()
        self.phase = self.step_name = phase
        self.phase_started = self.last = self.now()
        self.phase_counters = self.snapshot()
        self.out(f"-- {phase} " + "-" * max(0, 86 - len(phase)))

    def close_phase(self) -> None:
        """Record the figures of the phase that ends now."""
        if self.world is None or self.phase_started is None:
            return
        after = self.snapshot()
        before = self.phase_counters
        kinds: dict[str, int] = {}
        data = 0
        for role in after:
            for key, kind in _SIGNALLING.items():
                kinds[kind] = kinds.get(kind, 0) + _delta(before, after, role, key)
            data += sum(_delta(before, after, role, k) for k in _DATA_PACKETS)
        self.phases.append(
            PhaseFigures(
                self.phase,
                self.now() - self.phase_started,
                sum(kinds.values()),
                data,
                kinds,
            )
        )

    def step(self, who: str, what: str, at: float | None = None) -> None:
        """One verified step: record it and print its timeline line."""
        when = self.now() if at is None else at
        took = max(0.0, when - self.last)
        self.last = max(self.last, when)
        step = Step(self.phase, who, what, when - self.started, took)
        self.steps.append(step)
        self.out(f"{step.at:8.3f}s  {who:<4} {what:<70} {took * 1000:8.1f} ms")

    def expect(self, name: str) -> None:
        """The step now being waited for (named by a failure or a timeout)."""
        self.step_name = f"{self.phase}: {name}"

    def fail(self, reason: str) -> DemoFailed:
        """The failure of the step being waited for."""
        return DemoFailed(self.step_name, reason)

    # -- watching the roles ------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        if self.world is None:
            return {}
        return {name: role.counters() for name, role in self.world.roles().items()}

    def watch(self, who: str, role: RoleService) -> None:
        """Record every event of ``role`` with the time it happened."""

        def record(event: Event) -> None:
            self.events.append((self.now(), who, event))

        role.runner.subscribe(record)

    def mark(self) -> int:
        """A position in the event record: :meth:`event` looks after it."""
        return len(self.events)

    async def event(
        self,
        mark: int,
        who: str,
        name: str,
        check: Callable[[Event], bool] = lambda e: True,
        timeout: float = STEP_TIMEOUT,
    ) -> tuple[float, Event]:
        """The first event ``name`` of ``who`` recorded after ``mark`` that passes ``check``:
        its time and the event. A ``denied`` or ``failed`` event of ``who`` meanwhile
        ends the wait with the reason."""
        found: tuple[float, Event] | None = None

        def seen() -> bool:
            nonlocal found
            for at, source, event in self.events[mark:]:
                if source != who:
                    continue
                if event.name == name and check(event):
                    found = (at, event)
                    return True
            return False

        await self.until(seen, f"{who} event {name!r}", timeout)
        assert found is not None
        return found

    async def until(
        self, condition: Callable[[], object], what: str, timeout: float = STEP_TIMEOUT
    ) -> None:
        """Poll ``condition`` until true; :class:`DemoFailed` naming ``what`` after
        ``timeout`` seconds."""
        deadline = self.now() + timeout
        while not condition():
            if self.now() >= deadline:
                raise self.fail(f"no {what} within {timeout:.0f} s")
            await deferLater(self.reactor, POLL, lambda: None)

    async def settle(self, seconds: float) -> None:
        await deferLater(self.reactor, seconds, lambda: None)


# -- data through the API ---------------------------------------------------------------------


def _pattern(seed: int, index: int) -> bytes:
    """Chunk ``index`` of stream ``seed``: deterministic, different everywhere."""
    block = hashlib.sha256(struct.pack("!II", seed, index)).digest()
    return (block * (CHUNK // len(block) + 1))[:CHUNK]


@implementer(IMvpnApplication)
class _Collector:
    """An application on one endpoint: keeps the chunks from ``source`` by index, and for
    each the time it arrived and (with a :class:`DataTap`) the host that delivered it."""

    def __init__(
        self, reactor: Any, source: ipaddress.IPv4Address, tap: DataTap | None = None
    ) -> None:
        self.reactor = reactor
        self.source = source
        self.tap = tap
        self.chunks: dict[int, bytes] = {}
        self.arrivals: list[tuple[float, str | None]] = []
        self.last_datagram: bytes | None = None
        self.deliveries = 0

    def data_received(self, peer: ipaddress.IPv4Address, data: bytes) -> None:
        if peer != self.source or len(data) < 4:
            return
        self.deliveries += 1
        (index,) = struct.unpack_from("!I", data)
        self.chunks.setdefault(index, data[4:])
        via = self.tap.source if self.tap is not None else None
        if self.tap is not None and self.tap.datagram is not None:
            self.last_datagram = self.tap.datagram
        self.arrivals.append((self.reactor.seconds(), via))

    def session_started(self, info: object) -> None:
        """Sessions are watched through the roles' events."""

    def session_ended(self, info: object) -> None:
        """Sessions are watched through the roles' events."""

    def moved(self, info: object) -> None:
        """Moves are watched through the roles' events."""

    def sha256(self, count: int) -> str:
        """The sha256 of chunks 0..count-1 in order (missing ones count as empty)."""
        digest = hashlib.sha256()
        for index in range(count):
            digest.update(self.chunks.get(index, b""))
        return digest.hexdigest()


class _Stream:
    """A steady one-way stream through the API: two chunks every :data:`STREAM_TICK`."""

    def __init__(
        self,
        run: _Run,
        seed: int,
        sender: MvpnClient,
        to: ipaddress.IPv4Address,
        collector: _Collector,
    ) -> None:
        self.run = run
        self.seed = seed
        self.sender = sender
        self.to = to
        self.collector = collector
        self.sent = 0
        self.refused = 0
        self.digest = hashlib.sha256()
        self.loop = LoopingCall(self._tick)
        self.loop.clock = run.reactor

    def start(self) -> None:
        self.loop.start(STREAM_TICK, now=True)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def _tick(self) -> None:
        for _ in range(2):
            self.send_one()

    def send_one(self) -> None:
        chunk = _pattern(self.seed, self.sent)
        if not self.sender.send(self.to, struct.pack("!I", self.sent) + chunk):
            self.refused += 1
        self.digest.update(chunk)
        self.sent += 1

    def transfer(self, phase: str, direction: str) -> Transfer:
        return Transfer(
            phase,
            direction,
            self.sent * CHUNK,
            self.digest.hexdigest(),
            self.collector.sha256(self.sent),
        )


async def _transfer(
    run: _Run,
    seed: int,
    sender: MvpnClient,
    receiver: MvpnClient,
    to: ipaddress.IPv4Address,
    source: ipaddress.IPv4Address,
    direction: str,
) -> tuple[Transfer, float]:
    """Send :data:`TRANSFER_CHUNKS` chunks from ``sender`` to ``receiver``, in bursts of 20
    with a short pause (so the loopback socket buffers never overflow), and wait for all."""
    collector = _Collector(run.reactor, source)
    receiver.register(collector)
    stream = _Stream(run, seed, sender, to, collector)
    begun = run.now()
    try:
        for index in range(TRANSFER_CHUNKS):
            stream.send_one()
            if index % 20 == 19:
                await run.settle(0.002)
        if stream.refused:
            raise run.fail(f"{direction}: the API refused {stream.refused} datagrams")
        await run.until(
            lambda: len(collector.chunks) == TRANSFER_CHUNKS,
            f"{direction}: all {TRANSFER_CHUNKS} datagrams (got {len(collector.chunks)})",
        )
    finally:
        receiver.unregister(collector)
    done = collector.arrivals[-1][0] if collector.arrivals else run.now()
    transfer = stream.transfer(run.phase, direction)
    if not transfer.verified:
        raise run.fail(f"{direction}: sha256 of what arrived differs from what was sent")
    run.transfers.append(transfer)
    return transfer, done - begun


def _fmt_bytes(count: int) -> str:
    return f"{count:,} bytes"


# -- the phases -------------------------------------------------------------------------------


async def _set_up(run: _Run) -> DemoWorld:
    run.begin("set-up")
    run.expect("provisioning")
    domains = provision(run.root)
    run.step("PKI", "home.example (CA, TC, HA, CN, MN's card), visited.example (TC, FA1, FA2)")
    world = DemoWorld(run.root, run.reactor, domains, Ports.choose())
    run.world = world
    run.phase_counters = run.snapshot()
    run.expect("Trusted Centres")
    world.start_trusted_centres()
    run.step("TC", "both Trusted Centres listen (mutual TLS), each knows the other")
    ha = world.start_ha()
    fa1 = world.start_fa("fa1")
    for who, role in (("HA", ha), ("FA1", fa1)):
        run.watch(who, role)
    run.expect("agents registered with their TCs")
    for who, role in (("HA", ha), ("FA1", fa1)):

        def registered(role: RoleService = role) -> bool:
            return role.counters().get("tc_registrations", 0) >= 1

        await run.until(registered, f"{who} registered with its Trusted Centre")
    run.step("HA", "home agent up; it and its MN registered with the home TC")
    run.step("FA1", "foreign agent FA1 up, registered with the visited TC")
    return world


async def _advertisement_and_first_contact(run: _Run, world: DemoWorld) -> None:
    # One phase: the MN registers within milliseconds of the first advertisement, quicker
    # than the counters could be read in between.
    run.begin("first contact")
    mark = run.mark()
    mn = world.start_mn()
    run.watch("MN", mn)
    run.expect("FA1's advertisement at the MN")
    await run.until(
        lambda: mn.counters().get("advertisements_received", 0) >= 1,
        "Agent Advertisement heard by the MN",
    )
    run.step("FA1", "Agent Advertisement (ICMP type 9 + ext. 16, in UDP) reaches the MN")
    run.expect("first contact through FA1")
    at, _ = await run.event(mark, "HA", "registered")
    binding = _binding(world)
    if binding is None or str(binding.care_of) != FA1_ADDRESS:
        raise run.fail(f"the HA's binding is {binding!r}, not through FA1 {FA1_ADDRESS}")
    run.step("HA", "MN's signature checked (Ku_FA from the TC); home address bound to FA1", at)
    at, _ = await run.event(mark, "FA1", "registered")
    run.step("FA1", "HA's reply checked; the MN is a visitor, registration keys installed", at)
    at, event = await run.event(mark, "MN", "registered")
    if event.fields.get("fa") != FA1_ADDRESS:
        raise run.fail(f"the MN registered through {event.fields.get('fa')}, not FA1")
    run.step("MN", f"registered through FA1 for {event.fields.get('lifetime')} s", at)


def _binding(world: DemoWorld) -> Any:
    ha: Any = world.ha
    return ha.core.bindings().get(HOME)


async def _correspondent(run: _Run, world: DemoWorld) -> int:
    run.begin("CN session")
    mark = run.mark()
    cn = world.start_cn()
    run.watch("CN", cn)
    run.expect("the four session messages")
    at, event = await run.event(mark, "HA", "session-authorised")
    spi = int(str(event.fields.get("spi")))
    run.step("HA", f"Request Communication from the CN verified; SPI {spi} authorised", at)
    at, _ = await run.event(mark, "MN", "session-established")
    run.step("MN", "Correspondent Information (HA -> FA1 -> MN) opened; DH done", at)
    at, _ = await run.event(mark, "FA1", "session-relayed")
    run.step("FA1", "Correspondent Response checked; Communication Reply sent to the CN", at)
    at, _ = await run.event(mark, "CN", "session-established")
    run.step("CN", "Communication Reply verified; MN authenticated, same keys both ends", at)
    cn_session = world.cn.core.session_for(HOME) if world.cn else None
    mn_session = world.mn.core.sessions.session_for(CN) if world.mn else None
    if cn_session is None or mn_session is None or not cn_session.spi == mn_session.spi == spi:
        raise run.fail("the CN and the MN do not hold the same session")
    for who, agent in (("HA", world.ha), ("FA1", world.fas["fa1"])):
        relay = agent.core.dataplane.get(spi)  # type: ignore[union-attr]
        if relay is None or relay.send is not None or relay.receive is not None:
            raise run.fail(f"{who} should hold the session's authentication key only")
    run.step("--", "agents hold only the hop authentication key; only MN and CN can decrypt")
    return spi


async def _data(run: _Run, world: DemoWorld, phase: str, seed: int) -> None:
    run.begin(phase)
    mn, cn = world.clients()
    run.expect("CN -> MN through the API")
    transfer, _ = await _transfer(run, seed, cn, mn, HOME, CN, "CN -> MN")
    run.step("MN", f"CN -> MN {_fmt_bytes(transfer.bytes)} received, sha256 equal")
    run.expect("MN -> CN through the API")
    transfer, _ = await _transfer(run, seed + 1, mn, cn, CN, HOME, "MN -> CN")
    run.step("CN", f"MN -> CN {_fmt_bytes(transfer.bytes)} received, sha256 equal")


async def _reregistration(run: _Run, world: DemoWorld) -> tuple[int, int]:
    run.begin("re-registration")
    mark = run.mark()
    before = run.snapshot()
    run.expect("the MN's re-registration")
    at, event = await run.event(mark, "HA", "reregistered")
    run.step(
        "HA",
        f"re-registration checked with the registration keys (refreshed: "
        f"{event.fields.get('refreshed')})",
        at,
    )
    at, event = await run.event(mark, "MN", "reregistered")
    run.step("MN", f"re-registered through FA1 for {event.fields.get('lifetime')} s", at)
    after = run.snapshot()
    pk = sum(_delta(before, after, r, "pk_operations") for r in ("HA", "FA1", "MN"))
    tc = sum(_delta(before, after, r, "certificates.tc_requests") for r in ("HA", "FA1", "MN"))
    if pk or tc:
        raise run.fail(f"{pk} public-key operations and {tc} TC requests, expected none")
    run.step("--", "public-key operations: 0, Trusted Centre requests: 0 (symmetric only)")
    return pk, tc


async def _handover(run: _Run, world: DemoWorld) -> tuple[float, int, int]:
    run.begin("handover")
    mn_service = world.mn
    assert mn_service is not None
    fa2 = world.start_fa("fa2")
    run.watch("FA2", fa2)
    run.expect("FA2 up")
    await run.until(
        lambda: fa2.counters().get("tc_registrations", 0) >= 1, "FA2 registered with its TC"
    )
    run.step("FA2", "foreign agent FA2 up (the MN comes into its range)")
    mn, cn = world.clients()
    tap = DataTap(mn_service)
    down = _Collector(run.reactor, CN, tap)
    up = _Collector(run.reactor, HOME)
    mn.register(down)
    cn.register(up)
    to_mn = _Stream(run, 10, cn, HOME, down)
    to_cn = _Stream(run, 11, mn, CN, up)
    try:
        to_mn.start()
        to_cn.start()
        run.expect("the stream through FA1")
        await run.until(lambda: len(down.chunks) >= 50, "50 datagrams through FA1")
        run.step("CN", "steady stream both ways, 2 x 1000 bytes every 4 ms, through FA1")
        move_mark = run.mark()
        mn_service.move_to(FA2_ADDRESS)
        run.step("MN", "told to move to FA2")
        run.expect("first contact through FA2")
        at, _ = await run.event(move_mark, "HA", "moved")
        run.step("HA", "first contact through FA2 accepted; tunnel switched to FA2", at)
        at, _ = await run.event(
            move_mark, "MN", "registered", lambda e: e.fields["fa"] == FA2_ADDRESS
        )
        run.step("MN", "registered through FA2; sends through FA2 from now on", at)
        run.expect("the Key Transfer to FA2")
        at, _ = await run.event(move_mark, "FA2", "sessions-transferred")
        run.step("FA2", "Key Transfer opened: the data session installed, held packets go", at)
        at, _ = await run.event(move_mark, "MN", "keys-transferred")
        run.step("MN", "Key Transfer acknowledged by FA2", at)
        run.expect("the stream through FA2")
        await run.until(
            lambda: sum(1 for _, via in down.arrivals if via == FA2_ADDRESS) >= STREAM_AFTER_MOVE,
            f"{STREAM_AFTER_MOVE} datagrams through FA2",
        )
    finally:
        to_mn.stop()
        to_cn.stop()
    try:
        run.expect("every datagram of the stream")
        await run.until(
            lambda: len(down.chunks) == to_mn.sent and len(up.chunks) == to_cn.sent,
            f"all of the stream (MN {len(down.chunks)}/{to_mn.sent}, "
            f"CN {len(up.chunks)}/{to_cn.sent})",
        )
    finally:
        mn.unregister(down)
        cn.unregister(up)
        tap.remove()
    for stream, direction in ((to_mn, "CN -> MN"), (to_cn, "MN -> CN")):
        if stream.refused:
            raise run.fail(f"{direction}: the API refused {stream.refused} datagrams")
        transfer = stream.transfer(run.phase, direction)
        if not transfer.verified:
            raise run.fail(f"{direction}: sha256 of what arrived differs from what was sent")
        run.transfers.append(transfer)
    old = [at for at, via in down.arrivals if via == FA1_ADDRESS]
    new = [at for at, via in down.arrivals if via == FA2_ADDRESS]
    if not old or not new:
        raise run.fail("the stream did not reach the MN through both FAs")
    gap = (min(new) - max(old)) * 1000
    run.step(
        "MN",
        f"stream: {_fmt_bytes(to_mn.sent * CHUNK)} in, {_fmt_bytes(to_cn.sent * CHUNK)} out, "
        "sha256 equal, nothing lost",
    )
    run.step("--", f"handover gap {gap:.1f} ms ({len(old)} via FA1, then {len(new)} via FA2)")
    return gap, len(old), len(new)


async def _attacks(run: _Run, world: DemoWorld, registrations: RegistrationTap) -> None:
    run.begin("attacks")
    mn_service = world.mn
    assert mn_service is not None
    mark = run.mark()
    run.expect("a re-registration through FA2 to capture")
    await run.event(mark, "MN", "reregistered", lambda e: e.fields.get("fa") == FA2_ADDRESS)
    captured, fa_address = registrations.sent[-1]
    binding = _binding(world)
    run.step("MN", f"re-registered via FA2; the request captured on the link ({len(captured)} B)")
    attacker = Attacker(run.reactor, MN_ADDRESS)
    try:
        for attack, data in (
            ("replayed Registration Request", captured),
            ("forged Registration Request", captured[:-1] + bytes([captured[-1] ^ 0x01])),
        ):
            run.expect(attack)
            before = run.snapshot()
            replies = len(attacker.replies)
            attacker.send(data, fa_address)

            def answered(replies: int = replies) -> bool:
                return len(attacker.replies) > replies

            await run.until(answered, f"a reply to the {attack}")
            reply, _ = attacker.replies[-1]
            try:
                code = RegistrationReply.decode(reply).code
            except WireError as e:
                raise run.fail(f"the reply to the {attack} does not decode: {e}") from None
            if code == 0:
                raise run.fail(f"the {attack} was accepted")
            after = run.snapshot()
            refused_by = [
                who for who in ("FA2", "HA") if _sum_prefix(before, after, who, "denied.")
            ]
            by = refused_by[-1] if refused_by else "FA2"
            how = f"reply {describe(lookup(ReplyCode, code))}"
            run.refusals.append(Refusal(attack, by, how))
            run.step(by, f"{attack}: {how}")
        if _binding(world) is None or str(_binding(world).care_of) != FA2_ADDRESS:
            raise run.fail("the binding changed after the refused requests")
        if binding is not None and _binding(world).identification < binding.identification:
            raise run.fail("the binding went back to an older request")
        run.step("HA", "binding unchanged: still through FA2")
    finally:
        await _maybe(attacker.close())

    packet = await _capture_data_packet(run, world)
    run.step("MN", f"captured a data packet from FA2 ({len(packet)} bytes)")
    # The forgery: the next sequence number (so the replay window lets it through to the
    # authenticator) and one ciphertext byte flipped.
    (sequence,) = _SEQUENCE.unpack_from(packet, _SEQUENCE_OFFSET)
    forged = bytearray(packet)
    _SEQUENCE.pack_into(forged, _SEQUENCE_OFFSET, sequence + 1)
    forged[_SEQUENCE_OFFSET + _SEQUENCE.size] ^= 0x01
    spoofer = Attacker(run.reactor, FA2_ADDRESS)
    mn_port = (MN_ADDRESS, world.ports.data)
    try:
        for attack, data, counter in (
            ("replayed data packet", packet, "data.drops.replay"),
            ("forged data packet", bytes(forged), "data.drops.bad-tag"),
        ):
            run.expect(attack)
            before = run.snapshot()
            spoofer.send(data, mn_port)

            def dropped(counter: str = counter, before: Snapshot = before) -> bool:
                return mn_service.counters().get(counter, 0) > before["MN"].get(counter, 0)

            await run.until(dropped, f"{counter} at the MN for the {attack}")
            after = run.snapshot()
            if _delta(before, after, "MN", "data.delivered.packets"):
                raise run.fail(f"the {attack} reached the application")
            run.refusals.append(Refusal(attack, "MN", counter))
            run.step("MN", f"{attack} dropped, not delivered ({counter})")
    finally:
        await _maybe(spoofer.close())


_SEQUENCE = struct.Struct("!Q")
_SEQUENCE_OFFSET = 12
"""Where a data packet's Sequence Number sits (docs/protocol.md 8.1: clear, after the SPI)."""


async def _capture_data_packet(run: _Run, world: DemoWorld) -> bytes:
    """One genuine data packet from the CN, as it reached the MN through FA2 (the attacker
    on the foreign link records it)."""
    assert world.mn is not None
    mn, cn = world.clients()
    tap = DataTap(world.mn)
    collector = _Collector(run.reactor, CN, tap)
    mn.register(collector)
    try:
        run.expect("a data packet to capture")
        if not cn.send(HOME, struct.pack("!I", 0) + b"a datagram the attacker records"):
            raise run.fail("the CN's API refused a datagram")
        await run.until(lambda: collector.last_datagram is not None, "data packet at the MN")
    finally:
        mn.unregister(collector)
        tap.remove()
    assert collector.last_datagram is not None
    return collector.last_datagram


async def _maybe(result: object) -> None:
    if isinstance(result, Deferred):
        await result


def _descriptors(reactor: Any) -> set[object]:
    """The sockets the reactor watches now (empty on a reactor that cannot say)."""
    readers = getattr(reactor, "getReaders", list)
    writers = getattr(reactor, "getWriters", list)
    return set(readers()) | set(writers())


async def _play(run: _Run) -> DemoSummary:
    baseline = _descriptors(run.reactor)
    errors: list[str] = []
    try:
        world = await _set_up(run)
        await _advertisement_and_first_contact(run, world)
        assert world.mn is not None
        registrations = RegistrationTap(world.mn)
        await _correspondent(run, world)
        await _data(run, world, "data", 1)
        pk, tc = await _reregistration(run, world)
        gap, via_old, via_new = await _handover(run, world)
        await _data(run, world, "data again", 3)
        await _attacks(run, world, registrations)
        run.begin("teardown")
    finally:
        # Whatever happened (a failed step, a timeout, Ctrl-C), every role started so far
        # is stopped; _set_up hands the world over as soon as it exists.
        if run.world is not None:
            await run.world.stop(errors.append)
    if errors:
        raise run.fail("; ".join(errors))
    run.expect("every socket closed")
    await run.until(
        lambda: _descriptors(run.reactor) <= baseline, "closing of every role's sockets", 2.0
    )
    run.step("--", "every role stopped, every port closed")
    run.close_phase()
    return DemoSummary(
        steps=tuple(run.steps),
        phases=tuple(run.phases),
        transfers=tuple(run.transfers),
        handover_gap_ms=gap,
        handover_via_old=via_old,
        handover_via_new=via_new,
        refusals=tuple(run.refusals),
        reregistration_pk_operations=pk,
        reregistration_tc_requests=tc,
        seconds=run.now() - run.started,
    )


def _log_observer(stream: IO[str]) -> ILogObserver:
    """The roles' log at info and above (debug is one line per packet) as text."""
    observer = FilteringLogObserver(
        cast(ILogObserver, textFileLogObserver(stream)),
        [cast(ILogFilterPredicate, LogLevelFilterPredicate(defaultLogLevel=LogLevel.info))],
    )
    return cast(ILogObserver, observer)


async def run_demo(
    reactor: Any = None,
    *,
    out: Callable[[str], None] = print,
    parent: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> DemoSummary:
    """Play the demo on ``reactor`` (the global one by default), printing the timeline
    through ``out``; the temporary directory is made under ``parent`` (the system's default
    when None) and removed at the end, whatever happens.

    :returns: the :class:`DemoSummary` of a run whose every step was verified.
    :raises DemoFailed: naming the step that could not be verified (or during which
        ``timeout`` seconds ran out); ``log`` is then a copy of the roles' log.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    root = Path(tempfile.mkdtemp(prefix="mvpn-demo-", dir=parent))
    log_path = root / "roles.log"
    stream = log_path.open("w", encoding="utf-8")
    observer = _log_observer(stream)
    globalLogPublisher.addObserver(observer)
    run = _Run(reactor, root, out)
    played: Deferred[DemoSummary] = ensureDeferred(_play(run))
    played.addTimeout(timeout, reactor)
    try:
        return await played
    except DemoFailed as failed:
        failed.log = _keep_log(log_path, parent)
        raise
    except DeferredTimeout:
        timed_out = DemoFailed(run.step_name, f"the demo timed out after {timeout:g} s")
        timed_out.log = _keep_log(log_path, parent)
        raise timed_out from None
    except CancelledError:
        # Cancelled from outside (Ctrl-C): clean up, keep nothing, say nothing more.
        raise
    except Exception as e:
        broken = DemoFailed(run.step_name, f"{type(e).__name__}: {e}")
        broken.log = _keep_log(log_path, parent)
        raise broken from e
    finally:
        globalLogPublisher.removeObserver(observer)
        stream.close()
        shutil.rmtree(root, ignore_errors=True)


def _keep_log(log_path: Path, parent: Path | None) -> Path | None:
    """A copy of the roles' log outside the directory about to be removed."""
    try:
        handle, name = tempfile.mkstemp(prefix="mvpn-demo-", suffix=".log", dir=parent)
        with open(handle, "wb") as copy, log_path.open("rb") as original:
            shutil.copyfileobj(original, copy)
    except OSError:
        return None
    return Path(name)
