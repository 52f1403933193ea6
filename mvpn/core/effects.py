"""The effects vocabulary shared by the sans-IO core and the Twisted shells.

A core object (home agent, foreign agent, mobile node) never performs I/O. Each of its methods
takes what happened (a datagram, the source address, the current time ``now`` in seconds) and
returns a list of effects, frozen values the shell performs in order:

- :class:`Send`: write ``data`` to ``to`` on a :class:`Channel`;
- :class:`Lookup`: fetch a node's certificate (Trusted Centre client or local cache, draft
  section 7.1) and call ``then`` with the certificate or the exception; perform what it returns;
- :class:`StartTimer` / :class:`CancelTimer`: the shell owns every delayed call, a new timer of
  the same name replaces the old one, and ``fire`` gets the current time;
- :class:`Log`: a :mod:`twisted.logger` event with a PEP 3101 format and stable keys
  (``{home_address}``, ``{care_of}``, ``{code}``, ``{reason}``), never key material;
- :class:`Event`: a lifecycle notification ("registered", "denied", "moved") for the API,
  tests and ``mvpn status``.

Counters are not effects: each core object owns a :class:`Counters` that ``mvpn status`` reads.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from mvpn.pki.certificate import NodeCertificate


class Channel(enum.Enum):
    """Where a :class:`Send` goes (PROFILE.md, "Transports")."""

    REGISTRATION = "registration"
    """Registration Request / Reply, UDP port 434 (RFC 5944 section 3)."""

    ADVERTISEMENT = "advertisement"
    """Agent Advertisement / Solicitation: ICMP, or the same bytes over UDP port 4349."""

    CONTROL = "control"
    """MVPN control messages (draft sections 3.3, 4 and 6), UDP port 4350."""


Address: TypeAlias = tuple[str, int]
"""An (IPv4 address, port) pair, as Twisted's UDP transports use."""

LogLevel = Literal["debug", "info", "warn", "error"]
"""The :class:`twisted.logger.LogLevel` names a :class:`Log` may carry."""


def _frozen(fields: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(fields))


@dataclass(frozen=True)
class Send:
    """Send ``data`` as one datagram to ``to`` on ``channel``."""

    data: bytes
    to: Address
    channel: Channel


@dataclass(frozen=True)
class Lookup:
    """Fetch the certificate of ``node_id`` and call ``then`` with it or with the exception.

    The shell asks the Trusted Centre client (or its certificate cache) and, when the answer
    arrives, performs the effects ``then`` returns. ``then`` receives a
    :class:`~mvpn.pki.certificate.NodeCertificate` or the exception the lookup failed with
    (a :class:`~mvpn.pki.tc_errors.TrustedCentreError` subclass, or any other error).
    """

    node_id: int
    then: Callable[[NodeCertificate | Exception], list[Effect]] = field(compare=False)


@dataclass(frozen=True)
class StartTimer:
    """Call ``fire(now)`` after ``delay`` seconds, replacing any timer called ``name``."""

    name: str
    delay: float
    fire: Callable[[float], list[Effect]] = field(compare=False)


@dataclass(frozen=True)
class CancelTimer:
    """Cancel the timer called ``name``; nothing happens when there is none."""

    name: str


@dataclass(frozen=True)
class Log:
    """Emit a log event: ``format`` is PEP 3101 over ``fields`` (stable keys, no key material)."""

    level: LogLevel
    format: str
    fields: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _frozen(self.fields))

    def render(self) -> str:
        """The message with its fields filled in (for tests and plain-text sinks)."""
        return self.format.format(**self.fields)


@dataclass(frozen=True)
class Event:
    """A lifecycle notification (``registered``, ``denied``, ``moved`` ...) with its fields."""

    name: str
    fields: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _frozen(self.fields))


Effect: TypeAlias = Send | Lookup | StartTimer | CancelTimer | Log | Event
"""Anything a core method may ask the shell to do."""


class Counters:
    """Named monotonic counters of one core object, read by ``mvpn status``.

    Names are dotted, stable strings (``accepted``, ``denied.133``, ``drops.malformed``,
    ``pk_operations``).
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def increment(self, name: str, by: int = 1) -> None:
        """Add ``by`` (default 1) to the counter ``name``."""
        self._counts[name] += by

    def get(self, name: str) -> int:
        """The current value of ``name`` (0 when it never moved)."""
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter that moved, sorted by name."""
        return dict(sorted(self._counts.items()))


def warn(format: str, **fields: object) -> Log:
    """A warning :class:`Log` (denials and drops)."""
    return Log("warn", format, fields)


def info(format: str, **fields: object) -> Log:
    """An info :class:`Log` (lifecycle events)."""
    return Log("info", format, fields)


def debug(format: str, **fields: object) -> Log:
    """A debug :class:`Log` (per packet)."""
    return Log("debug", format, fields)
