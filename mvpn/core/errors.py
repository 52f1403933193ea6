"""MVPN error messages (draft section 4; docs/protocol.md 7.7): sending them, rate-limited,
and receiving them, sans I/O.

The draft's error messages are informational: "the receiver will not need to perform any
specific mechanism". mvpn therefore sends them *beside* the RFC 5944 reply codes it already
sends (never instead of one), on the MVPN control port (UDP 4350, docs/protocol.md 2), and a
receiver only logs and counts them.

- :class:`ErrorReporter` builds the :class:`~mvpn.core.effects.Send` of one
  :class:`~mvpn.wire.control.ErrorMessage` to a peer's control port. Errors are not
  authenticated and answer whoever sent the triggering datagram, so they are rate-limited per
  (destination, code): at most one per :data:`ERROR_INTERVAL`; the others are counted as
  suppressed. A flood of forged requests cannot turn an agent into a reflector.
- :func:`receive_control` reads one datagram from the control port: an Error is logged as a
  warning and counted, any other control message is counted as not handled yet (the
  correspondent-node messages of draft section 6 are another module's), and a malformed
  datagram is dropped, counted and logged. It changes no state but the counters.

A peer's control port is assumed to be this node's own ``control_port``: the draft gives the
port no field, and every mvpn node listens on the same configured port (4350 by default).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from mvpn.core.effects import Address, Channel, Counters, Effect, Send, debug, warn
from mvpn.wire.codes import MvpnError, describe
from mvpn.wire.control import MAX_REASON, ControlType, ErrorMessage, decode_control
from mvpn.wire.errors import WireError

__all__ = [
    "DEFAULT_CONTROL_PORT",
    "ERROR_INTERVAL",
    "MAX_ERROR_DESTINATIONS",
    "ControlHandler",
    "ErrorReporter",
    "receive_control",
]

DEFAULT_CONTROL_PORT = 4350
"""The MVPN control port (docs/protocol.md 2): its message types collide with the
Registration Request (1) and Reply (3) on port 434, hence a port of their own."""

ERROR_INTERVAL = 1.0
"""At most one error per (destination, code) in this many seconds (docs/protocol.md 7.7):
a mobile node retransmits no faster than once a second (RFC 5944 3.6.3), so it still hears
about every attempt, while a flood earns one datagram a second per address."""

MAX_ERROR_DESTINATIONS = 4096
"""(destination, code) pairs the rate limiter remembers; when all of them sent within the
last interval, further errors are suppressed (bounded memory whatever the source addresses)."""


def _clip(reason: str) -> str:
    """``reason`` cut to :data:`~mvpn.wire.control.MAX_REASON` UTF-8 bytes, whole
    characters only."""
    data = reason.encode("utf-8")[:MAX_REASON]
    return data.decode("utf-8", errors="ignore")


class ErrorReporter:
    """Builds rate-limited MVPN error messages for one core (draft section 4).

    :param control_port: the peers' control port (this node's own, see the module
        docstring); 0 switches sending off.
    :param counters: the core's counters: ``mvpn_errors.sent.<code>`` and
        ``mvpn_errors.suppressed`` (``.<code>`` too).
    :param interval: seconds between two errors of one code to one destination.
    :param max_destinations: bound of the limiter's memory.

    The limiter's clock is the latest ``now`` it was given: a core may report an error with
    the time its request arrived (a Trusted Centre answer carries no time of its own), and
    such an older time then counts as the latest one seen. That errs towards suppressing,
    never towards sending more than one a second.
    """

    def __init__(
        self,
        control_port: int,
        counters: Counters,
        *,
        interval: float = ERROR_INTERVAL,
        max_destinations: int = MAX_ERROR_DESTINATIONS,
    ) -> None:
        self.control_port = control_port
        self._counters = counters
        self._interval = interval
        self._max = max_destinations
        self._latest = float("-inf")
        self._sent: OrderedDict[tuple[str, int], float] = OrderedDict()
        """(host, code) -> when its last error left, oldest first."""

    def report(
        self, host: str, code: MvpnError, reference: int, reason: str, now: float
    ) -> list[Effect]:
        """An Error message with ``code`` to ``host``'s control port, or nothing when sending
        is off or the rate limit suppresses it.

        ``reference`` is what the error is about (the MN Nonce of a first contact, the SPI
        of a re-registration, else the low 32 bits of the Identification); ``reason`` is a
        short English sentence with no key material (cut to 200 bytes).
        """
        if not self.control_port:
            return []
        self._latest = now = max(now, self._latest)
        key = (host, int(code))
        # Forget the pairs whose interval has passed (oldest first, so this stops early).
        while self._sent:
            oldest, at = next(iter(self._sent.items()))
            if now - at < self._interval:
                break
            del self._sent[oldest]
        if key in self._sent or len(self._sent) >= self._max:
            self._counters.increment("mvpn_errors.suppressed")
            self._counters.increment(f"mvpn_errors.suppressed.{int(code)}")
            return [
                debug(
                    "MVPN error {code} to {peer} suppressed (rate limit)",
                    code=describe(code),
                    peer=host,
                )
            ]
        self._sent[key] = now
        message = ErrorMessage(code, reference & 0xFFFFFFFF, _clip(reason))
        self._counters.increment(f"mvpn_errors.sent.{int(code)}")
        return [
            debug(
                "MVPN error {code} to {peer}:{port}, reference {reference}: {reason}",
                code=describe(code),
                peer=host,
                port=self.control_port,
                reference=message.reference,
                reason=message.reason,
            ),
            Send(message.encode(), (host, self.control_port), Channel.CONTROL),
        ]


ControlHandler = Callable[[bytes, Address, float], list[Effect]]
"""What handles one control message type at a node: ``(datagram, source, now)`` to effects.
It decodes the datagram itself and answers bad input with its own logs and counters."""


def receive_control(
    data: bytes,
    source: Address,
    counters: Counters,
    handlers: Mapping[int, ControlHandler] | None = None,
    now: float = 0.0,
) -> list[Effect]:
    """One datagram from the MVPN control port (docs/protocol.md 7.1, 7.7).

    A message whose Type has an entry in ``handlers`` goes to that handler with ``now``
    (the correspondent-node session messages, draft section 6). An Error is logged as a
    warning with its code's name, reference, reason and peer, and counted as
    ``mvpn_errors.received.<code>``; nothing else changes (draft section 4: the receiver
    need do nothing). Other control messages are counted as
    ``control.unexpected`` (a type this role never takes, such as a Request Communication at an
    FA) and logged at debug level. A datagram that does not decode is
    dropped, counted as ``control.malformed`` and logged.
    """
    peer = f"{source[0]}:{source[1]}"
    if handlers and len(data) >= 4:
        handler = handlers.get(data[0])
        if handler is not None:
            return handler(data, source, now)
    try:
        message = decode_control(data)
    except WireError as e:
        counters.increment("control.malformed")
        return [
            warn(
                "dropped a malformed control datagram from {peer}: {reason}",
                peer=peer,
                reason=str(e),
            )
        ]
    if isinstance(message, ErrorMessage):
        counters.increment(f"mvpn_errors.received.{int(message.code)}")
        return [
            warn(
                "MVPN error {code} from {peer}, reference {reference}: {reason}",
                code=describe(message.code),
                peer=peer,
                reference=message.reference,
                reason=message.reason,
            )
        ]
    counters.increment("control.unexpected")
    return [
        debug(
            "control message {type} from {peer} dropped: not one this node takes",
            type=describe(ControlType(message.TYPE)),
            peer=peer,
        )
    ]
