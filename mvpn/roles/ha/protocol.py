"""The home agent's datagram entry point: bytes in, core called, effects performed.

Nothing is decoded here: the size limit is checked by the port
(:class:`~mvpn.roles.transport.UdpPortService`), everything else by
:class:`~mvpn.core.ha.HomeAgent`, which counts and logs what it drops.

**Group commit.** Every accepted registration is written to the SQLite store with
``synchronous=FULL`` before its reply may leave. Committing each one costs an fsync, which
bounds a home agent to about a thousand registrations a second whatever its CPU. So the
first datagram of a reactor turn opens a write group and holds the replies; a call scheduled
for the end of the turn commits the group (one fsync for every request of the turn) and only
then sends the replies. A failed commit sends none of them (the requesters retransmit).
"""

from __future__ import annotations

from twisted.logger import Logger

from mvpn.core.effects import Address
from mvpn.core.ha import HomeAgent
from mvpn.core.store import BindingStore
from mvpn.roles.shell import AnyClock, EffectRunner, as_clock


class HomeAgentEndpoints:
    """The handler the HA's registration port calls."""

    log = Logger()

    def __init__(
        self,
        core: HomeAgent,
        runner: EffectRunner,
        store: BindingStore | None = None,
        clock: AnyClock | None = None,
    ) -> None:
        self.core = core
        self.runner = runner
        self._store = store
        self._clock = as_clock(clock) if clock is not None else None

    def registration(self, data: bytes, source: Address) -> None:
        """A datagram on the registration port (requests relayed by FAs, plain nodes)."""
        if self._store is not None and self._clock is not None and not self._store.in_group:
            self._store.begin_group()
            self.runner.hold_sends()
            self._clock.callLater(0, self._commit)
        self.runner.call(self.core.datagram_received, data, source, self.runner.now())

    def _commit(self) -> None:
        """End of the turn: commit the group, then let its replies leave."""
        assert self._store is not None
        try:
            self._store.end_group()
        except Exception:
            dropped = self.runner.discard_held_sends()
            self.log.failure(
                "binding store commit failed: {dropped} replies not sent", dropped=dropped
            )
            return
        self.runner.release_sends()
