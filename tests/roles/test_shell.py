"""The effect runner (mvpn.roles.shell): each effect performed as the core asked, with a
task.Clock and fake transports; core exceptions logged and survived."""

from __future__ import annotations

import datetime
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from mvpn.core.effects import (
    CancelTimer,
    Channel,
    Effect,
    Event,
    Log,
    Lookup,
    Send,
    StartTimer,
    warn,
)
from mvpn.pki.certificate import NodeCertificate
from mvpn.pki.tc_errors import TrustedCentreUnreachable, UnknownNode
from mvpn.roles.shell import CertificateSource, EffectRunner, logs, set_log_level


class FakeSender:
    """Records datagrams; raises OSError when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.fail = fail

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.fail:
            raise OSError("network unreachable")
        self.sent.append((data, addr))


class FakeTc:
    """A TC client whose lookups the test answers by hand."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.pending: list[Deferred[NodeCertificate]] = []

    def lookup(self, node_id: int, domain: str | None = None) -> Deferred[NodeCertificate]:
        self.asked.append(node_id)
        d: Deferred[NodeCertificate] = Deferred()
        self.pending.append(d)
        return d


class FakeCert:
    """Just what CertificateSource reads of a certificate."""

    def __init__(self, node_id: int, not_after: float) -> None:
        self.node_id = node_id
        self.not_after = datetime.datetime.fromtimestamp(not_after, datetime.UTC)


def cert(node_id: int, not_after: float = 1e10) -> Any:
    return FakeCert(node_id, not_after)


def record(into: list[Any], value: object = None) -> Any:
    """A then()/fire() callback that appends ``value`` (or what it is given) and asks for
    nothing."""

    def callback(arg: object) -> list[Effect]:
        into.append(arg if value is None else value)
        return []

    return callback


class Captured:
    """A logger whose events are kept."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.log = Logger(namespace="test", observer=cast(ILogObserver, self.events.append))


def make(
    clock: Clock | None = None, tc: FakeTc | None = None, **senders: FakeSender
) -> tuple[EffectRunner, Captured, Clock]:
    clock = clock or Clock()
    captured = Captured()
    transports = {Channel[name.upper()]: sender for name, sender in senders.items()}
    runner = EffectRunner(clock, transports, CertificateSource(clock, tc), captured.log)
    return runner, captured, clock


class SendTests(SynchronousTestCase):
    def test_send_goes_to_its_channel(self) -> None:
        """A Send is written on the transport of its channel, to its address, and counted."""
        reg, adv = FakeSender(), FakeSender()
        runner, _, _ = make(registration=reg, advertisement=adv)
        runner.run([Send(b"abc", ("127.0.0.1", 434), Channel.REGISTRATION)])
        self.assertEqual(reg.sent, [(b"abc", ("127.0.0.1", 434))])
        self.assertEqual(adv.sent, [])
        self.assertEqual(runner.counters.get("sent.registration"), 1)

    def test_send_without_transport_is_dropped_and_logged(self) -> None:
        """A Send on a channel the role has no transport for is dropped, warned and counted."""
        runner, captured, _ = make()
        runner.run([Send(b"x", ("127.0.0.1", 4350), Channel.CONTROL)])
        self.assertEqual(runner.counters.get("drops.no_transport"), 1)
        self.assertEqual(captured.events[-1]["log_level"], LogLevel.warn)

    def test_send_error_is_survived(self) -> None:
        """An OSError from the socket is a warning and a counter; later effects still run."""
        runner, _, _ = make(registration=FakeSender(fail=True))
        seen: list[Event] = []
        runner.subscribe(seen.append)
        runner.run([Send(b"x", ("127.0.0.1", 1), Channel.REGISTRATION), Event("after", {"n": 1})])
        self.assertEqual(runner.counters.get("drops.send_error"), 1)
        self.assertEqual([e.name for e in seen], ["after"])


class TimerTests(SynchronousTestCase):
    def test_timer_fires_with_now(self) -> None:
        """StartTimer calls fire(now) after the delay with the clock's time, and performs the
        effects it returns."""
        reg = FakeSender()
        runner, _, clock = make(registration=reg)
        clock.advance(100)
        fired: list[float] = []

        def fire(now: float) -> list[Effect]:
            fired.append(now)
            return [Send(b"t", ("127.0.0.1", 9), Channel.REGISTRATION)]

        runner.run([StartTimer("retry", 2.5, fire)])
        clock.advance(2.4)
        self.assertEqual(fired, [])
        clock.advance(0.1)
        self.assertEqual(fired, [102.5])
        self.assertEqual(reg.sent, [(b"t", ("127.0.0.1", 9))])
        self.assertEqual(runner.timer_names(), [])

    def test_same_name_replaces(self) -> None:
        """A second StartTimer of the same name replaces the first: only the second fires."""
        runner, _, clock = make()
        fired: list[str] = []
        runner.run([StartTimer("t", 1, record(fired, "a"))])
        runner.run([StartTimer("t", 3, record(fired, "b"))])
        clock.advance(5)
        self.assertEqual(fired, ["b"])

    def test_cancel(self) -> None:
        """CancelTimer stops a timer; cancelling an unknown name does nothing."""
        runner, _, clock = make()
        fired: list[str] = []
        runner.run([StartTimer("t", 1, record(fired, "a")), CancelTimer("t")])
        runner.run([CancelTimer("nothing")])
        clock.advance(5)
        self.assertEqual(fired, [])

    def test_fire_may_rearm_itself(self) -> None:
        """A timer whose fire() arms a timer of the same name keeps running (periodic
        advertisements, retransmissions)."""
        runner, _, clock = make()
        fired: list[float] = []

        def fire(now: float) -> list[Effect]:
            fired.append(now)
            return [StartTimer("tick", 1, fire)]

        runner.run([StartTimer("tick", 1, fire)])
        clock.advance(1)
        clock.advance(1)
        clock.advance(1)
        self.assertEqual(fired, [1, 2, 3])
        self.assertEqual(runner.timer_names(), ["tick"])

    def test_stop_cancels_every_timer(self) -> None:
        """stop() cancels every timer; none fires afterwards and new ones are not armed."""
        runner, _, clock = make()
        fired: list[str] = []
        runner.run([StartTimer(n, 1, record(fired, n)) for n in "abc"])
        runner.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
        runner.run([StartTimer("d", 1, record(fired, "d"))])
        clock.advance(2)
        self.assertEqual(fired, [])


class FailureTests(SynchronousTestCase):
    def test_core_exception_is_logged_and_survived(self) -> None:
        """A core method that raises is logged with its traceback and counted; the runner
        goes on serving the next input."""
        reg = FakeSender()
        runner, captured, _ = make(registration=reg)

        def broken(data: bytes) -> list[Effect]:
            raise ZeroDivisionError("core bug")

        runner.call(broken, b"x")
        runner.call(lambda d: [Send(d, ("127.0.0.1", 1), Channel.REGISTRATION)], b"ok")
        self.assertEqual(runner.counters.get("core_errors"), 1)
        failures = [e for e in captured.events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(reg.sent, [(b"ok", ("127.0.0.1", 1))])

    def test_failing_timer_does_not_stop_others(self) -> None:
        """A timer whose fire() raises is logged; other timers still fire."""
        runner, _, clock = make()
        fired: list[str] = []

        def bad(now: float) -> list[Effect]:
            raise RuntimeError("boom")

        runner.run([StartTimer("bad", 1, bad), StartTimer("good", 2, record(fired, "g"))])
        clock.advance(3)
        self.assertEqual(fired, ["g"])
        self.assertEqual(runner.counters.get("core_errors"), 1)


class LogAndEventTests(SynchronousTestCase):
    def test_log_effect_becomes_logger_event(self) -> None:
        """A Log effect is emitted at its level with its format and fields as event keys."""
        runner, captured, _ = make()
        runner.run([warn("denied {home_address}: {reason}", home_address="10.0.0.1", reason="r")])
        event = captured.events[-1]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["log_format"], "denied {home_address}: {reason}")
        self.assertEqual((event["home_address"], event["reason"]), ("10.0.0.1", "r"))

    def test_log_level_filters_before_formatting(self) -> None:
        """At the default level (info) a debug Log effect is not emitted at all; at level
        debug it is; at warn, info goes too; an unknown level name is refused."""
        runner, captured, _ = make()
        runner.run([Log("debug", "per packet {n}", {"n": 1}), Log("info", "kept", {})])
        self.assertEqual([e["log_format"] for e in captured.events], ["kept"])
        try:
            set_log_level("debug")
            self.assertTrue(logs("debug"))
            runner.run([Log("debug", "per packet {n}", {"n": 2})])
            set_log_level("warn")
            runner.run([Log("info", "dropped", {})])
        finally:
            set_log_level("info")
        self.assertEqual([e["log_format"] for e in captured.events], ["kept", "per packet {n}"])
        self.assertRaises(ValueError, set_log_level, "verbose")
        self.assertFalse(logs("debug"))

    def test_reserved_field_names_are_renamed(self) -> None:
        """A core field called like a logger argument ("level", "format") is renamed in both
        the fields and the format, instead of breaking the emit call."""
        runner, captured, _ = make()
        runner.run([Log("info", "at {level}", {"level": 3})])
        event = captured.events[-1]
        self.assertEqual(event["log_format"], "at {field_level}")
        self.assertEqual(event["field_level"], 3)

    def test_events_reach_subscribers_until_unsubscribed(self) -> None:
        """Every subscriber sees each Event; after unsubscribing, no more; a failing
        subscriber does not keep the others from it."""
        runner, _, _ = make()
        a: list[str] = []
        b: list[str] = []

        def broken(event: Event) -> None:
            raise ValueError("subscriber bug")

        runner.subscribe(broken)
        stop_a = runner.subscribe(lambda e: a.append(e.name))
        runner.subscribe(lambda e: b.append(e.name))
        runner.run([Event("registered")])
        stop_a()
        runner.run([Event("moved")])
        self.assertEqual(a, ["registered"])
        self.assertEqual(b, ["registered", "moved"])
        self.assertEqual(runner.counters.get("core_errors"), 2)


class LookupTests(SynchronousTestCase):
    def test_lookup_goes_to_tc_then_cache(self) -> None:
        """The first Lookup of a node asks the TC and calls then() with the answer; the next
        one, within the cache TTL, is answered from the cache without a TC request."""
        tc = FakeTc()
        runner, _, clock = make(tc=tc)
        answers: list[object] = []
        runner.run([Lookup(7, record(answers))])
        self.assertEqual(tc.asked, [7])
        self.assertEqual(answers, [])
        c = cert(7)
        tc.pending[0].callback(c)
        self.assertEqual(answers, [c])
        runner.run([Lookup(7, record(answers))])
        self.assertEqual(tc.asked, [7])
        self.assertEqual(answers, [c, c])
        counters = runner.certificates.counters
        self.assertEqual((counters.get("tc_requests"), counters.get("lookups.cached")), (1, 1))
        clock.advance(301)
        runner.run([Lookup(7, record(answers))])
        self.assertEqual(tc.asked, [7, 7])

    def test_lookup_failure_reaches_then(self) -> None:
        """A TC error is handed to then() as the exception, and what then() returns is
        performed."""
        tc = FakeTc()
        reg = FakeSender()
        runner, _, _ = make(tc=tc, registration=reg)
        seen: list[object] = []

        def then(answer: object) -> list[Effect]:
            seen.append(answer)
            return [Send(b"denied", ("127.0.0.1", 5), Channel.REGISTRATION)]

        runner.run([Lookup(9, then)])
        tc.pending[0].errback(TrustedCentreUnreachable("down"))
        self.assertIsInstance(seen[0], TrustedCentreUnreachable)
        self.assertEqual(reg.sent, [(b"denied", ("127.0.0.1", 5))])
        self.assertEqual(runner.certificates.counters.get("lookups.failed"), 1)

    def test_local_certificate_needs_no_tc(self) -> None:
        """A certificate configured locally answers without any TC request; with no TC and
        no local copy, then() gets UnknownNode."""
        clock = Clock()
        source = CertificateSource(clock, None, [cert(3)])
        captured = Captured()
        runner = EffectRunner(clock, {}, source, captured.log)
        seen: list[object] = []
        runner.run([Lookup(3, record(seen)), Lookup(4, record(seen))])
        self.assertEqual(seen[0].node_id, 3)  # type: ignore[attr-defined]
        self.assertIsInstance(seen[1], UnknownNode)
        self.assertEqual(source.counters.get("tc_requests"), 0)

    def test_answer_after_stop_is_dropped(self) -> None:
        """A lookup answered after stop() does not run then() (the role is gone)."""
        tc = FakeTc()
        runner, _, _ = make(tc=tc)
        seen: list[object] = []
        runner.run([Lookup(1, record(seen))])
        runner.stop()
        tc.pending[0].callback(cert(1))
        self.assertEqual(seen, [])
        self.assertEqual(runner.counters.get("lookups.late"), 1)

    def test_expired_cache_entry_not_used(self) -> None:
        """A cached certificate is not used past its not_after, even within the TTL."""
        tc = FakeTc()
        clock = Clock()
        source = CertificateSource(clock, tc)
        d = source.lookup(5)
        tc.pending[0].callback(cert(5, not_after=10))
        self.successResultOf(d)
        clock.advance(11)
        source.lookup(5)
        self.assertEqual(tc.asked, [5, 5])
