"""Group commit at the HA's registration port: replies wait for the store's commit."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from mvpn.core.effects import Channel, Send
from mvpn.core.store import BindingStore
from mvpn.roles.ha.protocol import HomeAgentEndpoints
from mvpn.roles.shell import CertificateSource, EffectRunner


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, to: Any) -> None:
        self.sent.append((data, to))


class WritingCore:
    """A stand-in for the HomeAgent: each datagram writes to the store and answers."""

    def __init__(self, store: BindingStore) -> None:
        self.store = store

    def datagram_received(self, data: bytes, source: Any, now: float) -> list[Send]:
        self.store.set_last_identification(ipaddress.IPv4Address("10.0.0.1"), 1)
        return [Send(b"reply:" + data, source, Channel.REGISTRATION)]


class FailingStore(BindingStore):
    def end_group(self) -> None:
        super().end_group()
        raise OSError("disk full")


def make(store: BindingStore) -> tuple[HomeAgentEndpoints, FakeSender, Clock, EffectRunner]:
    clock = Clock()
    sender = FakeSender()
    runner = EffectRunner(
        clock, {Channel.REGISTRATION: sender}, CertificateSource(clock), Logger()
    )
    core: Any = WritingCore(store)
    return HomeAgentEndpoints(core, runner, store, clock), sender, clock, runner


class GroupCommitTests(SynchronousTestCase):
    def test_replies_of_one_turn_leave_after_one_commit(self) -> None:
        """Two requests in one reactor turn: no reply before the turn ends, then both, in
        order, after a single commit."""
        store = BindingStore()
        endpoints, sender, clock, _ = make(store)
        before = store.commits
        endpoints.registration(b"a", ("127.0.0.2", 434))
        endpoints.registration(b"b", ("127.0.0.3", 434))
        self.assertEqual(sender.sent, [])
        self.assertTrue(store.in_group)
        clock.advance(0)
        self.assertEqual(
            sender.sent, [(b"reply:a", ("127.0.0.2", 434)), (b"reply:b", ("127.0.0.3", 434))]
        )
        self.assertEqual(store.commits, before + 1)
        self.assertFalse(store.in_group)

    def test_next_turn_opens_a_new_group(self) -> None:
        """A request after the commit starts a new group with its own commit."""
        store = BindingStore()
        endpoints, sender, clock, _ = make(store)
        endpoints.registration(b"a", ("127.0.0.2", 434))
        clock.advance(0)
        endpoints.registration(b"b", ("127.0.0.2", 434))
        self.assertEqual(len(sender.sent), 1)
        clock.advance(0)
        self.assertEqual(len(sender.sent), 2)

    def test_failed_commit_sends_nothing(self) -> None:
        """When the commit fails, the held replies are dropped and counted, never sent."""
        store = FailingStore()
        endpoints, sender, clock, runner = make(store)
        endpoints.registration(b"a", ("127.0.0.2", 434))
        clock.advance(0)
        self.assertEqual(sender.sent, [])
        self.assertEqual(runner.counters.get("drops.uncommitted"), 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
