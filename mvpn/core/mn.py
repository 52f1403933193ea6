"""The mobile node's registration lifecycle (draft 3.1-3.3; RFC 5944 3.6; docs/protocol.md 5, 6,
9, 10), as an Automat typed state machine.

States (every (state, input) pair has a transition; the ones that mean nothing in a state
loop and are counted as ``ignored.<input>``):

- ``idle``: not started;
- ``discovering``: listening for an acceptable foreign agent's advertisement;
- ``moving``: like discovering, but for a chosen FA (``move_to``) or any FA but the one being
  left;
- ``registering`` (data: :class:`FirstContactAttempt`, the request in flight and its
  retransmission count): a first contact (docs/protocol.md 5) or, in ``rfc5944`` mode, a
  plain RFC 5944 request (6.3);
- ``registered``: bound through an FA, re-registration due at 80 % of the lifetime;
- ``reregistering`` (data: :class:`ReRegistrationAttempt`): re-registration with the shared
  keys only (6.1);
- ``failed``: denied, or the retransmission budget ran out; a first contact is tried again
  after :data:`RETRY_AFTER` seconds.

Inputs from the outside world are ``start``, ``advertisement``, ``reply_received``,
``timer_fired`` (a retransmission or retry timer), ``lifetime_due``, ``move_requested`` and
``agent_lost``. The machine feeds itself the decisions it takes (``agent_chosen``,
``accepted``, ``denied``, ``gave_up``); Automat runs them after the current transition.

Retransmission follows RFC 5944 3.6.3 and docs/protocol.md 10: 1 s, doubling, at most 8 s,
5 attempts in all. Each retransmission is a new request (new Identification and, for a first
contact, a new MN Nonce), because the FA refuses a reused MN Nonce; a reply to any attempt
of the current round is accepted.

Inputs return nothing: transitions put :mod:`~mvpn.core.effects` in the core's outbox, and
:class:`MobileNode` returns them to the shell. Nothing here reads a clock or a socket.

The MN's correspondent sessions live beside the machine in
:class:`~mvpn.core.mn_sessions.MobileNodeSessions` (``MobileNode.sessions``, its control
handlers and ``dataplane``); every accepted first contact tells it, so that the new FA gets
a Key Transfer (draft 3.3).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from automat import TypeMachineBuilder

from mvpn.core.advert import AgentInfo, AgentTracker, Observation
from mvpn.core.dataplane import DataPlane
from mvpn.core.effects import (
    Address,
    CancelTimer,
    Channel,
    Counters,
    Effect,
    Event,
    Log,
    Send,
    StartTimer,
    debug,
    info,
    warn,
)
from mvpn.core.errors import DEFAULT_CONTROL_PORT, ControlHandler
from mvpn.core.messages import (
    PK_OPERATIONS,
    FirstContactSecrets,
    MobileCredentials,
    RegistrationError,
    RegistrationOutcome,
    UnauthenticatedReply,
    build_first_contact,
    build_plain_request,
    build_reregistration,
    open_first_contact_reply,
    open_plain_reply,
    open_reregistration_reply,
)
from mvpn.core.mn_sessions import MobileNodeSessions
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.random import RandomSource
from mvpn.crypto.session import RegistrationKeys
from mvpn.wire.codes import ReplyCode, describe, lookup
from mvpn.wire.icmp import AgentSolicitation
from mvpn.wire.registration import Identification

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "REREGISTER_AT",
    "RETRY_AFTER",
    "FirstContactAttempt",
    "MobileNode",
    "MobileNodeConfig",
    "MobileNodeCore",
    "MobileNodeInputs",
    "ReRegistrationAttempt",
    "Registration",
    "backoff",
]

INITIAL_BACKOFF = 1.0
"""RFC 5944 3.6.3: the first retransmission timeout is at least 1 s."""

MAX_BACKOFF = 8.0
"""The timeout doubles up to 8 s (docs/protocol.md 10)."""

MAX_ATTEMPTS = 5
"""Requests sent per round before giving up (docs/protocol.md 10)."""

REREGISTER_AT = 0.8
"""Re-register at 80 % of the granted lifetime: leaves the retransmission budget (23 s)
before expiry at the default 300 s (docs/protocol.md 10)."""

RETRY_AFTER = 30.0
"""Seconds in ``failed`` before a new first contact: RFC 5944 3.6.3 asks for continued
attempts at a low rate after the retransmissions ran out."""

AGENT_CHECK_INTERVAL = 1.0
"""How often the MN looks for agents whose advertisement lifetime passed (one advertisement
interval)."""

Mode = Literal["mvpn", "rfc5944"]


def backoff(attempt: int) -> float:
    """The timeout after the ``attempt``-th request (1-based): 1, 2, 4, 8, 8 s."""
    return min(INITIAL_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF)


@dataclass(frozen=True)
class MobileNodeConfig:
    """A mobile node's settings (docs/protocol.md 5, 6.3, 10).

    In ``mvpn`` mode ``credentials`` (from the smart card) are required; in ``rfc5944``
    mode the MN registers as a plain Mobile IP node with ``plain_spi`` and ``plain_key``
    (HMAC-MD5, RFC 5944 3.5.1) and needs only ``home_address`` and ``home_agent``.
    """

    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    credentials: MobileCredentials | None = None
    mode: Mode = "mvpn"
    lifetime: int = 300
    """Requested registration lifetime, capped by what the FA advertises."""
    registration_port: int = 434
    """The FA's registration port."""
    solicitation_to: Address | None = None
    """Where to send an Agent Solicitation when looking for agents (None: only listen)."""
    plain_spi: int = 0
    plain_key: bytes = field(default=b"", repr=False)
    control_port: int = DEFAULT_CONTROL_PORT
    """The FA's MVPN control port (docs/protocol.md 2: every node's own): Correspondent
    Responses and Key Transfers go there."""

    def __post_init__(self) -> None:
        if self.mode == "mvpn" and self.credentials is None:
            raise ValueError("an MVPN mobile node needs its credentials (smart card)")
        if self.mode == "rfc5944" and (self.plain_spi < 256 or len(self.plain_key) < 16):
            raise ValueError("a plain RFC 5944 node needs an SPI >= 256 and a 16-byte key")
        if not 0 < self.lifetime <= 0xFFFF:
            raise ValueError(f"lifetime {self.lifetime}: not in 1..65535")

    @classmethod
    def from_credentials(
        cls, credentials: MobileCredentials, **options: object
    ) -> MobileNodeConfig:
        """An MVPN node's configuration from its smart-card credentials."""
        return cls(
            credentials.home_address,
            credentials.ha_address,
            credentials,
            **options,  # type: ignore[arg-type]
        )


@dataclass
class FirstContactAttempt:
    """Data of ``registering``: the FA tried and every request of this round."""

    agent: AgentInfo
    lifetime: int
    attempts: int = 0
    identifications: list[int] = field(default_factory=list)
    secrets: list[FirstContactSecrets] = field(default_factory=list)
    last_code: ReplyCode | int | None = None


@dataclass
class ReRegistrationAttempt:
    """Data of ``reregistering``: the keys in use and every request of this round."""

    keys: RegistrationKeys | None
    lifetime: int
    attempts: int = 0
    identifications: list[int] = field(default_factory=list)
    last_code: ReplyCode | int | None = None


@dataclass
class Registration:
    """The MN's current binding, as far as it knows (what ``status`` shows)."""

    agent: AgentInfo
    lifetime: int
    registered_at: float
    keys: RegistrationKeys | None
    fa_id: int | None = None
    fa_public: PublicKeys | None = None
    """``Ku_FA`` from the first-contact reply (W): checks the FA's session messages."""


class MobileNodeInputs(Protocol):
    """The inputs of the mobile node's machine."""

    def start(self, now: float) -> None:
        """Begin: listen for (and solicit) agents."""

    def advertisement(self, agent: AgentInfo, observation: Observation, now: float) -> None:
        """A foreign agent's advertisement was heard."""

    def reply_received(self, data: bytes, now: float) -> None:
        """A datagram arrived on the registration port."""

    def timer_fired(self, now: float) -> None:
        """The retransmission (or retry) timer fired."""

    def lifetime_due(self, now: float) -> None:
        """80 % of the registration lifetime has passed: re-register."""

    def move_requested(self, target: ipaddress.IPv4Address | None, now: float) -> None:
        """Leave the current FA for ``target`` (any other FA when ``None``)."""

    def agent_lost(self, address: ipaddress.IPv4Address, now: float) -> None:
        """The FA in use stopped advertising (its advertisement lifetime passed)."""

    def agent_chosen(self, agent: AgentInfo, now: float) -> None:
        """Internal: register with ``agent`` (a first contact)."""

    def accepted(self, outcome: RegistrationOutcome, now: float) -> None:
        """Internal: an authenticated accepting reply arrived."""

    def denied(self, code: int, now: float) -> None:
        """Internal: an authenticated denial arrived."""

    def gave_up(self, now: float) -> None:
        """Internal: the retransmission budget ran out."""


INPUT_NAMES = (
    "start",
    "advertisement",
    "reply_received",
    "timer_fired",
    "lifetime_due",
    "move_requested",
    "agent_lost",
    "agent_chosen",
    "accepted",
    "denied",
    "gave_up",
)
"""Every input, in the order the transition table lists them."""


class MobileNodeCore:
    """What the machine's transitions share: configuration, randomness, the agent tracker,
    the current registration, counters and the outbox of effects."""

    def __init__(self, config: MobileNodeConfig, random: RandomSource) -> None:
        self.config = config
        self.random = random
        self.counters = Counters()
        self.tracker = AgentTracker(self.counters)
        self.outbox: list[Effect] = []
        self.state = "idle"
        self.agent: AgentInfo | None = None
        """The FA in use or being tried."""
        self.registration: Registration | None = None
        self.target: ipaddress.IPv4Address | None = None
        self.leaving: ipaddress.IPv4Address | None = None
        self.previous_fa: ipaddress.IPv4Address | None = None
        self.machine: MobileNodeInputs | None = None
        self._last_identification = 0
        self._generations: dict[str, int] = {}
        self.sessions = MobileNodeSessions(
            config.credentials,
            lambda: self.registration,
            random,
            config.control_port,
            self.counters,
        )
        """The MN's correspondent sessions (docs/protocol.md 7.3, 7.4, 7.6)."""

    def emit(self, *effects: Effect) -> None:
        """Queue effects for the shell."""
        self.outbox.extend(effects)

    def inputs(self) -> MobileNodeInputs:
        """The machine (for timer callbacks)."""
        assert self.machine is not None
        return self.machine

    def identification(self, now: float) -> int:
        """A fresh timestamp Identification (RFC 5944 5.7.1), strictly increasing."""
        value = Identification.from_unix_time(now).value
        value = max(value, self._last_identification + 1)
        self._last_identification = value
        return value

    def arm_retransmission(self, name: str, delay: float) -> None:
        """Start the retransmission timer ``name``; a stale firing of an older one is ignored."""
        generation = self._generations.get(name, 0) + 1
        self._generations[name] = generation
        machine = self.inputs()

        def fire(now: float) -> list[Effect]:
            if self._generations.get(name) == generation:
                machine.timer_fired(now)
            return self.drain()

        self.emit(StartTimer(name, delay, fire))

    def disarm(self, *names: str) -> None:
        """Cancel timers and make any stale firing of a retransmission timer harmless."""
        for name in names:
            self._generations[name] = self._generations.get(name, 0) + 1
        self.emit(*(CancelTimer(name) for name in names))

    def drain(self) -> list[Effect]:
        """Hand the queued effects to the caller."""
        effects, self.outbox = self.outbox, []
        return effects

    def send_registration(self, data: bytes, agent: AgentInfo) -> None:
        """Send a request to ``agent``'s registration port."""
        self.emit(
            Send(data, (str(agent.address), self.config.registration_port), Channel.REGISTRATION)
        )

    def lifetime_for(self, agent: AgentInfo) -> int:
        """What to ask for: our configured lifetime, capped by the agent's (RFC 5944 3.6.1.1)."""
        return max(1, min(self.config.lifetime, agent.registration_lifetime))

    def acceptable(self, agent: AgentInfo, now: float) -> bool:
        """Whether ``agent`` can take a first contact now (alive, not busy)."""
        return agent.alive(now) and not agent.busy

    def wanted(self, agent: AgentInfo, now: float) -> bool:
        """While moving: ``agent`` is the target, or (no target) any FA but the one left."""
        if self.target is not None:
            chosen = agent.address == self.target
        else:
            chosen = agent.address != self.leaving
        return chosen and self.acceptable(agent, now)

    def current_agent(self) -> AgentInfo | None:
        """The tracker's latest entry for the FA of the current registration."""
        if self.registration is None:
            return None
        return self.tracker.get(self.registration.agent.address)

    def ignore(self, name: str) -> None:
        """Count an input that means nothing in the current state."""
        self.counters.increment(f"ignored.{name}")


FIRST_CONTACT_TIMER = "retransmit-first-contact"
REREGISTRATION_TIMER = "retransmit-reregistration"
RETRY_TIMER = "retry"
LIFETIME_TIMER = "lifetime"


def _send_first_contact(core: MobileNodeCore, attempt: FirstContactAttempt, now: float) -> None:
    """Build and send one request of a first-contact round (a fresh one per attempt)."""
    # The MN Nonce names the latest advertisement heard (the FA accepts those of 60 s).
    agent = core.tracker.get(attempt.agent.address) or attempt.agent
    identification = core.identification(now)
    config = core.config
    if config.mode == "mvpn":
        assert config.credentials is not None
        data, secrets = build_first_contact(
            config.credentials,
            agent.care_of,
            attempt.lifetime,
            identification,
            agent.sequence,
            core.random,
        )
        core.counters.increment("pk_operations", PK_OPERATIONS["build_first_contact"])
        attempt.secrets.append(secrets)
    else:
        data = build_plain_request(
            config.home_address,
            config.home_agent,
            agent.care_of,
            attempt.lifetime,
            identification,
            config.plain_spi,
            config.plain_key,
        )
    attempt.identifications.append(identification)
    attempt.attempts += 1
    core.counters.increment("requests.first_contact")
    core.send_registration(data, agent)
    core.arm_retransmission(FIRST_CONTACT_TIMER, backoff(attempt.attempts))


def _send_reregistration(core: MobileNodeCore, attempt: ReRegistrationAttempt, now: float) -> None:
    registration = core.registration
    assert registration is not None
    agent = registration.agent
    identification = core.identification(now)
    config = core.config
    if config.mode == "mvpn":
        assert config.credentials is not None and attempt.keys is not None
        data = build_reregistration(
            config.credentials, attempt.keys, agent.care_of, attempt.lifetime, identification
        )
    else:
        data = build_plain_request(
            config.home_address,
            config.home_agent,
            agent.care_of,
            attempt.lifetime,
            identification,
            config.plain_spi,
            config.plain_key,
        )
    attempt.identifications.append(identification)
    attempt.attempts += 1
    core.counters.increment("requests.reregistration")
    core.send_registration(data, agent)
    core.arm_retransmission(REREGISTRATION_TIMER, backoff(attempt.attempts))


def _new_first_contact(
    inputs: MobileNodeInputs, core: MobileNodeCore, agent: AgentInfo, now: float
) -> FirstContactAttempt:
    """Entering ``registering``: the first request of a round goes out at once."""
    core.state = "registering"
    core.agent = agent
    attempt = FirstContactAttempt(agent, core.lifetime_for(agent))
    core.emit(
        info(
            "registering {home_address} through {care_of}",
            home_address=str(core.config.home_address),
            care_of=str(agent.care_of),
        )
    )
    _send_first_contact(core, attempt, now)
    return attempt


def _new_reregistration(
    inputs: MobileNodeInputs, core: MobileNodeCore, now: float
) -> ReRegistrationAttempt:
    """Entering ``reregistering``: the first request goes out at once."""
    core.state = "reregistering"
    registration = core.registration
    assert registration is not None
    attempt = ReRegistrationAttempt(registration.keys, core.lifetime_for(registration.agent))
    _send_reregistration(core, attempt, now)
    return attempt


def _open_reply(
    core: MobileNodeCore,
    data: bytes,
    now: float,
    attempt: FirstContactAttempt | ReRegistrationAttempt,
    secrets: list[FirstContactSecrets] | None,
    keys: RegistrationKeys | None,
) -> RegistrationOutcome | None:
    """Authenticate a reply against every request of the round; ``None`` when it answers
    none of them (counted and logged)."""
    config = core.config
    last_error: RegistrationError | None = None
    for index, identification in enumerate(attempt.identifications):
        try:
            if config.mode == "rfc5944":
                return open_plain_reply(
                    config.home_address,
                    identification,
                    config.plain_spi,
                    config.plain_key,
                    data,
                )
            assert config.credentials is not None
            if secrets is not None:
                outcome = open_first_contact_reply(config.credentials, secrets[index], data, now)
                core.counters.increment("pk_operations", PK_OPERATIONS["open_first_contact_reply"])
                return outcome
            assert keys is not None
            return open_reregistration_reply(config.credentials, keys, identification, data, now)
        except RegistrationError as e:
            last_error = e
            if isinstance(e, UnauthenticatedReply):
                break
    assert last_error is not None
    if isinstance(last_error, UnauthenticatedReply):
        # RFC 5944 3.6.2.1: keep retransmitting; report this code if the round runs out.
        attempt.last_code = last_error.code
        core.counters.increment("replies.unauthenticated")
        core.emit(
            warn(
                "unauthenticated reply with {code} ignored: {reason}",
                code=describe(last_error.code),
                reason=last_error.reason,
            )
        )
    else:
        core.counters.increment("drops.reply_failed_authentication")
        core.emit(warn("reply ignored: {reason}", reason=last_error.reason))
    return None


builder = TypeMachineBuilder(MobileNodeInputs, MobileNodeCore)
idle = builder.state("idle")
discovering = builder.state("discovering")
moving = builder.state("moving")
failed = builder.state("failed")
registered = builder.state("registered")
registering = builder.state("registering", _new_first_contact)
reregistering = builder.state("reregistering", _new_reregistration)


def _enter(core: MobileNodeCore, state: str) -> None:
    core.state = state


# -- idle ------------------------------------------------------------------------------------


@idle.upon(MobileNodeInputs.start).to(discovering)
def _start(inputs: MobileNodeInputs, core: MobileNodeCore, now: float) -> None:
    _enter(core, "discovering")
    core.emit(
        info(
            "mobile node {home_address} started ({mode})",
            home_address=str(core.config.home_address),
            mode=core.config.mode,
        )
    )
    _solicit(core)
    # An advertisement heard before start may already name a usable agent.
    agent = core.tracker.choose(now)
    if agent is not None:
        inputs.agent_chosen(agent, now)


def _solicit(core: MobileNodeCore) -> None:
    if core.config.solicitation_to is not None:
        core.counters.increment("solicitations")
        core.emit(
            Send(AgentSolicitation().encode(), core.config.solicitation_to, Channel.ADVERTISEMENT)
        )


# -- discovering and moving ------------------------------------------------------------------


@discovering.upon(MobileNodeInputs.advertisement).loop()
def _discovering_advertisement(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    agent: AgentInfo,
    observation: Observation,
    now: float,
) -> None:
    if core.acceptable(agent, now):
        inputs.agent_chosen(agent, now)


@moving.upon(MobileNodeInputs.advertisement).loop()
def _moving_advertisement(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    agent: AgentInfo,
    observation: Observation,
    now: float,
) -> None:
    if core.wanted(agent, now):
        inputs.agent_chosen(agent, now)


def _choose(inputs: MobileNodeInputs, core: MobileNodeCore, agent: AgentInfo, now: float) -> None:
    """Leaving a state for ``registering`` (the data factory already sent the request)."""
    core.disarm(REREGISTRATION_TIMER, RETRY_TIMER, LIFETIME_TIMER)


for _state in (discovering, moving, failed, registered):
    _state.upon(MobileNodeInputs.agent_chosen).to(registering)(_choose)


def _to_moving(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    target: ipaddress.IPv4Address | None,
    now: float,
) -> None:
    _enter(core, "moving")
    core.target = target
    if core.agent is not None:
        core.leaving = core.agent.address
        core.previous_fa = core.agent.address
    core.disarm(FIRST_CONTACT_TIMER, REREGISTRATION_TIMER, RETRY_TIMER, LIFETIME_TIMER)
    core.emit(
        info(
            "moving {home_address} to {target}",
            home_address=str(core.config.home_address),
            target=str(target) if target is not None else "another agent",
        )
    )
    # The keys shared with the old FA are not used again (docs/protocol.md 9, step 2).
    core.registration = None
    _solicit(core)
    for candidate in core.tracker.agents():
        if core.wanted(candidate, now):
            inputs.agent_chosen(candidate, now)
            break


for _state in (discovering, moving, failed, registered):
    _state.upon(MobileNodeInputs.move_requested).to(moving)(_to_moving)


# -- registering -----------------------------------------------------------------------------


def _retransmit_or_give_up(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: FirstContactAttempt | ReRegistrationAttempt,
    now: float,
    send: Callable[[MobileNodeCore, Any, float], None],
) -> None:
    """A retransmission timer fired (RFC 5944 3.6.3): send again, or give up after the
    last attempt."""
    core.counters.increment("retransmission_timeouts")
    if attempt.attempts >= MAX_ATTEMPTS:
        inputs.gave_up(now)
        return
    core.counters.increment("retransmissions")
    send(core, attempt, now)


def _conclude(inputs: MobileNodeInputs, outcome: RegistrationOutcome | None, now: float) -> None:
    """Feed an opened reply back as ``accepted`` or ``denied`` (nothing if it was dropped)."""
    if outcome is None:
        return
    if outcome.accepted:
        inputs.accepted(outcome, now)
    else:
        inputs.denied(int(outcome.code), now)


@registering.upon(MobileNodeInputs.timer_fired).loop()
def _first_contact_timeout(
    inputs: MobileNodeInputs, core: MobileNodeCore, attempt: FirstContactAttempt, now: float
) -> None:
    _retransmit_or_give_up(inputs, core, attempt, now, _send_first_contact)


@registering.upon(MobileNodeInputs.reply_received).loop()
def _first_contact_reply(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: FirstContactAttempt,
    data: bytes,
    now: float,
) -> None:
    secrets = attempt.secrets if core.config.mode == "mvpn" else None
    _conclude(inputs, _open_reply(core, data, now, attempt, secrets, None), now)


@registering.upon(MobileNodeInputs.accepted).to(registered)
def _first_contact_accepted(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: FirstContactAttempt,
    outcome: RegistrationOutcome,
    now: float,
) -> None:
    _enter(core, "registered")
    core.disarm(FIRST_CONTACT_TIMER)
    moved_from = core.previous_fa
    core.target = core.leaving = core.previous_fa = None
    _install(core, attempt.agent, outcome, now, first=True)
    if moved_from is not None and moved_from != attempt.agent.address:
        core.counters.increment("moves")
        core.emit(
            Event(
                "moved",
                {
                    "home_address": str(core.config.home_address),
                    "from": str(moved_from),
                    "to": str(attempt.agent.address),
                    "care_of": str(attempt.agent.care_of),
                },
            )
        )


def _install(
    core: MobileNodeCore,
    agent: AgentInfo,
    outcome: RegistrationOutcome,
    now: float,
    first: bool,
) -> None:
    """Record the binding, arm the re-registration timer, tell the world."""
    previous = core.registration
    fa_id = outcome.fa_id if outcome.fa_id is not None else (previous.fa_id if previous else None)
    keys = outcome.keys if outcome.keys is not None else (previous.keys if previous else None)
    fa_public = (
        outcome.fa_public
        if outcome.fa_public is not None
        else (previous.fa_public if previous else None)
    )
    core.registration = Registration(agent, outcome.lifetime, now, keys, fa_id, fa_public)
    core.counters.increment("registrations" if first else "reregistrations")
    if outcome.refreshed:
        core.counters.increment("key_refreshes")
    machine = core.inputs()

    def due(at: float) -> list[Effect]:
        machine.lifetime_due(at)
        return core.drain()

    core.emit(
        StartTimer(LIFETIME_TIMER, outcome.lifetime * REREGISTER_AT, due),
        info(
            "{home_address} registered through {care_of} for {lifetime} s",
            home_address=str(core.config.home_address),
            care_of=str(agent.care_of),
            lifetime=outcome.lifetime,
        ),
        Event(
            "registered" if first else "reregistered",
            {
                "home_address": str(core.config.home_address),
                "care_of": str(agent.care_of),
                "lifetime": outcome.lifetime,
                "fa": str(agent.address),
            },
        ),
    )
    if first:
        # A new visitor entry at the FA (a new FA, or ours after a restart or a failed
        # re-registration): it learns the data sessions from a Key Transfer (draft 3.3).
        core.emit(*core.sessions.first_contact(core.registration, now))


def _arm_retry(core: MobileNodeCore) -> None:
    machine = core.inputs()

    def retry(now: float) -> list[Effect]:
        machine.timer_fired(now)
        return core.drain()

    core.emit(StartTimer(RETRY_TIMER, RETRY_AFTER, retry))


@registering.upon(MobileNodeInputs.denied).to(failed)
def _first_contact_denied(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: FirstContactAttempt,
    code: int,
    now: float,
) -> None:
    _enter(core, "failed")
    core.disarm(FIRST_CONTACT_TIMER)
    core.counters.increment(f"denied.{code}")
    core.emit(
        warn(
            "registration of {home_address} denied with {code}",
            home_address=str(core.config.home_address),
            code=describe(lookup(ReplyCode, code)),
        ),
        Event("denied", {"home_address": str(core.config.home_address), "code": code}),
    )
    _arm_retry(core)


@registering.upon(MobileNodeInputs.gave_up).to(failed)
def _first_contact_gave_up(
    inputs: MobileNodeInputs, core: MobileNodeCore, attempt: FirstContactAttempt, now: float
) -> None:
    _enter(core, "failed")
    core.disarm(FIRST_CONTACT_TIMER)
    core.counters.increment("gave_up")
    core.emit(
        warn(
            "no reply to {attempts} requests of {home_address}",
            attempts=attempt.attempts,
            home_address=str(core.config.home_address),
        ),
        Event(
            "failed",
            {
                "home_address": str(core.config.home_address),
                "reason": "no authenticated reply",
                "code": int(attempt.last_code) if attempt.last_code is not None else None,
            },
        ),
    )
    _arm_retry(core)


def _data_lost(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: object,
    address: ipaddress.IPv4Address,
    now: float,
) -> None:
    _agent_lost(inputs, core, address, now)


def _agent_lost(
    inputs: MobileNodeInputs, core: MobileNodeCore, address: ipaddress.IPv4Address, now: float
) -> None:
    _enter(core, "discovering")
    core.disarm(FIRST_CONTACT_TIMER, REREGISTRATION_TIMER, LIFETIME_TIMER)
    core.registration = None
    core.previous_fa = address
    core.agent = None
    core.counters.increment("agents_lost")
    core.emit(
        warn("foreign agent {fa} lost", fa=str(address)),
        Event("agent-lost", {"home_address": str(core.config.home_address), "fa": str(address)}),
    )
    _solicit(core)
    agent = core.tracker.choose(now, exclude=address)
    if agent is not None:
        inputs.agent_chosen(agent, now)


registering.upon(MobileNodeInputs.agent_lost).to(discovering)(_data_lost)
reregistering.upon(MobileNodeInputs.agent_lost).to(discovering)(_data_lost)
registered.upon(MobileNodeInputs.agent_lost).to(discovering)(_agent_lost)


def _data_move(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: object,
    target: ipaddress.IPv4Address | None,
    now: float,
) -> None:
    _to_moving(inputs, core, target, now)


registering.upon(MobileNodeInputs.move_requested).to(moving)(_data_move)
reregistering.upon(MobileNodeInputs.move_requested).to(moving)(_data_move)


# -- registered ------------------------------------------------------------------------------


@registered.upon(MobileNodeInputs.lifetime_due).to(reregistering)
def _reregister(inputs: MobileNodeInputs, core: MobileNodeCore, now: float) -> None:
    core.emit(debug("re-registering {home_address}", home_address=str(core.config.home_address)))


def _restart_check(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    agent: AgentInfo,
    observation: Observation,
    now: float,
) -> None:
    """RFC 5944 2.4.2: our FA restarted and forgot us: a new first contact."""
    registration = core.registration
    if (
        observation is Observation.RESTARTED
        and registration is not None
        and agent.address == registration.agent.address
    ):
        core.emit(warn("foreign agent {fa} restarted", fa=str(agent.address)))
        inputs.agent_chosen(agent, now)


registered.upon(MobileNodeInputs.advertisement).loop()(_restart_check)


# -- reregistering ---------------------------------------------------------------------------


@reregistering.upon(MobileNodeInputs.timer_fired).loop()
def _reregistration_timeout(
    inputs: MobileNodeInputs, core: MobileNodeCore, attempt: ReRegistrationAttempt, now: float
) -> None:
    _retransmit_or_give_up(inputs, core, attempt, now, _send_reregistration)


@reregistering.upon(MobileNodeInputs.reply_received).loop()
def _reregistration_reply(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: ReRegistrationAttempt,
    data: bytes,
    now: float,
) -> None:
    _conclude(inputs, _open_reply(core, data, now, attempt, None, attempt.keys), now)


@reregistering.upon(MobileNodeInputs.accepted).to(registered)
def _reregistration_accepted(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: ReRegistrationAttempt,
    outcome: RegistrationOutcome,
    now: float,
) -> None:
    _enter(core, "registered")
    core.disarm(REREGISTRATION_TIMER)
    registration = core.registration
    assert registration is not None
    _install(core, registration.agent, outcome, now, first=False)


def _reregistration_failed(
    core: MobileNodeCore, now: float, reason: str, code: int | None
) -> None:
    """Re-registration did not work: the keys may be gone at the HA; start over."""
    _enter(core, "discovering")
    core.disarm(REREGISTRATION_TIMER, LIFETIME_TIMER)
    core.registration = None
    fields: dict[str, object] = {"home_address": str(core.config.home_address), "reason": reason}
    if code is not None:
        fields["code"] = code
        core.counters.increment(f"denied.{code}")
    core.emit(
        warn(
            "re-registration of {home_address} failed: {reason}",
            home_address=str(core.config.home_address),
            reason=reason,
        ),
        Event("denied" if code is not None else "failed", fields),
    )


@reregistering.upon(MobileNodeInputs.denied).to(discovering)
def _reregistration_denied(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: ReRegistrationAttempt,
    code: int,
    now: float,
) -> None:
    agent = core.current_agent()
    _reregistration_failed(core, now, "denied", code)
    if agent is not None and core.acceptable(agent, now):
        inputs.agent_chosen(agent, now)


@reregistering.upon(MobileNodeInputs.gave_up).to(discovering)
def _reregistration_gave_up(
    inputs: MobileNodeInputs, core: MobileNodeCore, attempt: ReRegistrationAttempt, now: float
) -> None:
    agent = core.current_agent()
    _reregistration_failed(core, now, "no reply", None)
    if agent is not None and core.acceptable(agent, now):
        inputs.agent_chosen(agent, now)


def _data_restart_check(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: ReRegistrationAttempt,
    agent: AgentInfo,
    observation: Observation,
    now: float,
) -> None:
    _restart_check(inputs, core, agent, observation, now)


reregistering.upon(MobileNodeInputs.advertisement).loop()(_data_restart_check)


def _rereg_choose(
    inputs: MobileNodeInputs,
    core: MobileNodeCore,
    attempt: ReRegistrationAttempt,
    agent: AgentInfo,
    now: float,
) -> None:
    core.disarm(REREGISTRATION_TIMER, LIFETIME_TIMER)


reregistering.upon(MobileNodeInputs.agent_chosen).to(registering)(_rereg_choose)


# -- failed ----------------------------------------------------------------------------------


@failed.upon(MobileNodeInputs.timer_fired).to(discovering)
def _retry(inputs: MobileNodeInputs, core: MobileNodeCore, now: float) -> None:
    _enter(core, "discovering")
    core.counters.increment("retries")
    _solicit(core)
    agent = core.tracker.choose(now)
    if agent is not None:
        inputs.agent_chosen(agent, now)


# -- everything else: counted and ignored ----------------------------------------------------


def _ignore_for(name: str) -> object:
    def ignore(inputs: MobileNodeInputs, core: MobileNodeCore, *args: object) -> None:
        core.ignore(name)

    ignore.__name__ = f"ignore_{name}"
    return ignore


_DEFINED = {
    ("idle", "start"),
    ("discovering", "advertisement"),
    ("moving", "advertisement"),
    ("registering", "timer_fired"),
    ("registering", "reply_received"),
    ("registering", "accepted"),
    ("registering", "denied"),
    ("registering", "gave_up"),
    ("registering", "agent_lost"),
    ("registering", "move_requested"),
    ("registered", "lifetime_due"),
    ("registered", "advertisement"),
    ("registered", "agent_lost"),
    ("reregistering", "timer_fired"),
    ("reregistering", "reply_received"),
    ("reregistering", "accepted"),
    ("reregistering", "denied"),
    ("reregistering", "gave_up"),
    ("reregistering", "advertisement"),
    ("reregistering", "agent_lost"),
    ("reregistering", "move_requested"),
    ("reregistering", "agent_chosen"),
    ("failed", "timer_fired"),
    *((s, "agent_chosen") for s in ("discovering", "moving", "failed", "registered")),
    *((s, "move_requested") for s in ("discovering", "moving", "failed", "registered")),
}

_ALL_STATES: tuple[Any, ...] = (
    idle,
    discovering,
    moving,
    failed,
    registered,
    registering,
    reregistering,
)
for _any in _ALL_STATES:
    for _name in INPUT_NAMES:
        if (_any.name, _name) in _DEFINED:
            continue
        _any.upon(getattr(MobileNodeInputs, _name)).loop()(_ignore_for(_name))

MobileNodeMachine = builder.build()


class MobileNode:
    """A mobile node (sans-IO): advertisements and replies in, effects out.

    ``start``, ``advertisement_received``, ``datagram_received``, ``move_to`` and
    ``check_agents`` (called by the ``agents`` timer this object arms) return the effects
    the shell performs.
    """

    def __init__(self, config: MobileNodeConfig, random: RandomSource) -> None:
        self.core = MobileNodeCore(config, random)
        self._machine = MobileNodeMachine(self.core)
        self.core.machine = self._machine

    def _run(self, what: str, action: Callable[[], None]) -> list[Effect]:
        """Feed the machine; an unexpected exception becomes an error log and a counter,
        never a raise into the shell."""
        try:
            action()
        except Exception as e:
            self.core.counters.increment("errors.internal")
            self.core.emit(
                Log(
                    "error",
                    "internal error while handling {what}: {reason}",
                    {"what": what, "reason": repr(e)},
                )
            )
        return self.core.drain()

    @property
    def counters(self) -> Counters:
        """The node's counters (``mvpn status``)."""
        return self.core.counters

    @property
    def sessions(self) -> MobileNodeSessions:
        """The correspondent sessions (docs/protocol.md 7.3, 7.4, 7.6)."""
        return self.core.sessions

    @property
    def dataplane(self) -> DataPlane:
        """The MN's endpoint table of data sessions (docs/protocol.md 8.1)."""
        return self.core.sessions.dataplane

    def control_handlers(self) -> dict[int, ControlHandler]:
        """The control Types the MN handles: 2 (Correspondent Information form 1) and 6
        (Key Transfer acknowledgement)."""
        return self.core.sessions.control_handlers()

    def start(self, now: float) -> list[Effect]:
        """Start listening for agents and checking them every second."""
        effects = self._run("start", lambda: self._machine.start(now))
        return [*effects, self._agent_timer()]

    def _agent_timer(self) -> StartTimer:
        return StartTimer("agents", AGENT_CHECK_INTERVAL, self.check_agents)

    def check_agents(self, now: float) -> list[Effect]:
        """Forget agents whose advertisement lifetime passed; if ours is among them, the
        machine hears ``agent_lost`` (RFC 5944 3.6.2.1: move detection by lifetime)."""
        current = self.core.agent.address if self.core.agent is not None else None

        def check() -> None:
            for lost in self.core.tracker.expire(now):
                if lost.address == current:
                    self._machine.agent_lost(lost.address, now)

        return [*self._run("the agent check", check), self._agent_timer()]

    def advertisement_received(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """An advertisement's ICMP bytes (raw socket or UDP 4349) from ``source``."""
        try:
            address = ipaddress.IPv4Address(source[0])
        except ValueError:
            self.core.counters.increment("drops.bad_source")
            return []
        observation, agent = self.core.tracker.observe(data, address, now)
        if agent is None:
            return [
                debug(
                    "ignored an advertisement from {peer}: {reason}",
                    peer=f"{source[0]}:{source[1]}",
                    reason=observation.value,
                )
            ]
        return self._run(
            "an advertisement", lambda: self._machine.advertisement(agent, observation, now)
        )

    def datagram_received(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """A datagram on the MN's registration socket (a reply from its FA)."""
        if len(data) > 8192:
            self.core.counters.increment("drops.oversized")
            return [warn("dropped an oversized datagram from {peer}", peer=source[0])]
        return self._run("a reply", lambda: self._machine.reply_received(data, now))

    def move_to(self, fa_address: ipaddress.IPv4Address | str | None, now: float) -> list[Effect]:
        """Leave the current FA and register through ``fa_address`` (or any other FA).

        :raises ValueError: ``fa_address`` is not an IPv4 address (a caller's mistake, caught
            before the machine is touched).
        """
        target = ipaddress.IPv4Address(fa_address) if fa_address is not None else None
        return self._run("a move", lambda: self._machine.move_requested(target, now))

    @property
    def state(self) -> str:
        """The machine's state name (for ``status`` and logs; send inputs, never branch on it)."""
        return self.core.state

    def status(self, now: float) -> dict[str, object]:
        """What ``mvpn status`` shows for this MN."""
        core = self.core
        registration = core.registration
        keys = registration.keys if registration is not None else None
        return {
            "role": "mn",
            "mode": core.config.mode,
            "home_address": str(core.config.home_address),
            "home_agent": str(core.config.home_agent),
            "state": core.state,
            "fa": str(registration.agent.address) if registration is not None else None,
            "care_of": str(registration.agent.care_of) if registration is not None else None,
            "lifetime_left": (
                max(0.0, registration.registered_at + registration.lifetime - now)
                if registration is not None
                else None
            ),
            "key_age": (now - keys.created_at) if keys is not None else None,
            "spi": keys.spi if keys is not None else None,
            "agents": [str(a.address) for a in core.tracker.agents()],
            "sessions": core.sessions.status(now),
            "counters": core.counters.snapshot(),
        }
