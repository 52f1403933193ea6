"""The expiry of an agent's data sessions (docs/protocol.md 10: data keys live 3600 s): one
timer per agent, always set to the plane's next expiry, sans I/O."""

from __future__ import annotations

from collections.abc import Callable

from mvpn.core.dataplane import DataPlane
from mvpn.core.effects import CancelTimer, Counters, Effect, StartTimer, info

__all__ = ["SessionExpiry"]


class SessionExpiry:
    """Removes the sessions of ``plane`` whose keys expired and keeps one timer, ``name``, set
    to the next expiry. ``forget`` is told the SPIs removed (the owner's own indexes)."""

    def __init__(
        self,
        plane: DataPlane,
        counters: Counters,
        name: str,
        forget: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.plane = plane
        self.name = name
        self._counters = counters
        self._forget = forget

    def timer(self, now: float) -> list[Effect]:
        """The timer set to the next expiry (cancelled when no session is left)."""
        at = self.plane.next_expiry()
        if at is None:
            return [CancelTimer(self.name)]
        return [StartTimer(self.name, max(0.0, at - now), self.expire)]

    def expire(self, now: float) -> list[Effect]:
        """Remove what expired by ``now`` (counted ``sessions.expired``, logged), then re-arm."""
        gone = self.plane.expire(now)
        effects: list[Effect] = []
        if gone:
            if self._forget is not None:
                self._forget(gone)
            self._counters.increment("sessions.expired", len(gone))
            effects.append(
                info(
                    "{count} data sessions expired: {spis}",
                    count=len(gone),
                    spis=", ".join(str(s) for s in gone),
                )
            )
        return effects + self.timer(now)
