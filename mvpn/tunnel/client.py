"""The HA's end of an HA-FA tunnel: dial, keep dialling, buffer while down (draft section 8;
docs/protocol.md 8.2).

:class:`TunnelClient` is a service around Twisted's ``ClientService``: it connects to the FA,
and a connection is used only once the FA's Hello verified; a connection closed before that
counts as a failed attempt, like a refused TCP connection. (Not through ``ClientService``'s
``prepareConnection``: its state machine has no transition for a connection lost after a
refused preparation.) Attempts back off
exponentially from 0.5 s to 30 s (factor 2, no jitter: there is one connection per HA-FA
pair, no herd to spread). Every accepted frame is numbered and kept in the pair's bounded
:class:`~mvpn.tunnel.buffer.TunnelSession` until the FA acknowledges it; frames accepted
while no connection is ready wait there, and after a reconnection everything the FA's Hello
does not acknowledge is written again, in order, before anything new (protocol.md 8.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import Logger

from mvpn.core.effects import Counters
from mvpn.tunnel.buffer import MAX_BUFFERED_BYTES, MAX_BUFFERED_FRAMES, TunnelSession
from mvpn.tunnel.protocol import (
    DataReceiver,
    PeerKeyLookup,
    TunnelIdentity,
    TunnelProtocol,
)

__all__ = ["RETRY_INITIAL", "RETRY_MAX", "TunnelClient", "default_retry_policy"]

RETRY_INITIAL = 0.5
"""Seconds before the first reconnection attempt (protocol.md 8.2)."""

RETRY_MAX = 30.0
"""The longest wait between attempts (protocol.md 8.2)."""


def default_retry_policy() -> Callable[[int], float]:
    """0.5 s, 1 s, 2 s ... at most 30 s between attempts.

    ``ClientService`` asks with the number of failed attempts in a row, 1 for the first
    wait (after a refused attempt or a lost connection alike)."""

    def policy(failed_attempts: int) -> float:
        return min(RETRY_INITIAL * 2.0 ** min(max(failed_attempts - 1, 0), 16), RETRY_MAX)

    return policy


class TunnelClient(Service):
    """The tunnel from this HA to the FA ``peer_id`` at ``endpoint``.

    :meth:`send_data` writes at once when the tunnel is ready and keeps the frame until the
    FA acknowledges it (:attr:`session`).
    ``counters`` (also the connections'): ``buffer.*``, ``hello.*``, ``frames.*``,
    ``connections``.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime | Clock,
        endpoint: IStreamClientEndpoint,
        identity: TunnelIdentity,
        peer_id: int,
        peer_keys: PeerKeyLookup,
        on_data: DataReceiver,
        *,
        max_frames: int = MAX_BUFFERED_FRAMES,
        max_bytes: int = MAX_BUFFERED_BYTES,
        retry_policy: Callable[[int], float] | None = None,
    ) -> None:
        self.clock = clock
        self.identity = identity
        self.peer_id = peer_id
        self.counters = Counters()
        self.session = TunnelSession(self.counters, f"{peer_id:#x}", max_frames, max_bytes)
        self.protocol: TunnelProtocol | None = None
        """The ready connection, or None while down."""

        self._unready_streak = 0
        self._ready_waiters: list[Deferred[TunnelProtocol]] = []
        policy = retry_policy or default_retry_policy()

        def build() -> TunnelProtocol:
            return TunnelProtocol(
                identity,
                clock,
                peer_keys,
                on_data,
                expected_peer=peer_id,
                on_ready=self._ready,
                on_lost=self._lost,
                on_failed=self._failed,
                counters=self.counters,
                sessions=lambda _peer: self.session,
            )

        def retry(failed_attempts: int) -> float:
            # ClientService counts refused TCP attempts only (a TCP connection resets its
            # count); connections closed before the Hello verified count here, so that a
            # peer refusing our Hello is dialled with backoff too.
            return policy(max(failed_attempts, self._unready_streak))

        factory = Factory.forProtocol(build)
        self._service = ClientService(
            endpoint,
            cast(IProtocolFactory, factory),
            retryPolicy=retry,
            clock=cast(IReactorTime, clock),
        )

    def _ready(self, protocol: TunnelProtocol) -> None:
        self.protocol = protocol
        self._unready_streak = 0
        self.counters.increment("connections")
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(protocol)

    def _lost(self, protocol: TunnelProtocol) -> None:
        if self.protocol is protocol:
            self.protocol = None

    def _failed(self, protocol: TunnelProtocol) -> None:
        self._unready_streak += 1

    @property
    def ready(self) -> bool:
        """Whether a connection is up and its Hello exchange done."""
        return self.protocol is not None

    def send_data(self, mn_addr: bytes, packet: bytes) -> bool:
        """Send ``packet`` to the MN ``mn_addr`` (4 packed bytes) through the tunnel; False
        (counted and logged by the session) when the frames unacknowledged or waiting for a
        connection reach the bounds."""
        return self.session.send(mn_addr, packet)

    def when_ready(self) -> Deferred[TunnelProtocol]:
        """The ready connection, now or when the next one is."""
        d: Deferred[TunnelProtocol] = Deferred()
        if self.protocol is not None:
            d.callback(self.protocol)
        else:
            self._ready_waiters.append(d)
        return d

    def startService(self) -> None:
        super().startService()
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        d: Deferred[None] = self._service.stopService()
        return d
