"""The foreign agent's sans-IO logic (draft 3.2, 5.2, 5.4; RFC 5944 3.7; docs/protocol.md 5, 6).

:class:`ForeignAgent` takes what arrives (registration datagrams, solicitations, timer
expiries, each with ``now``) and returns :mod:`~mvpn.core.effects` for the shell. It keeps:

- the advertisement schedule and its memory of sequence numbers and used MN Nonces
  (:class:`~mvpn.core.advert.AdvertisementSchedule`);
- the **pending table** (docs/protocol.md 10: at most 4096 entries, 7 s each): requests
  relayed to a home agent and not yet answered. First contacts are keyed by the FA Nonce the
  FA chose (the HA echoes it in clear in extension 38), re-registrations and plain Mobile IP
  requests by (home address, low 32 bits of the Identification), which RFC 5944 5.7 has the
  home agent copy into its reply;
- the **visitor list** (RFC 5944 3.7.2.2; at most 10,000): mobile nodes registered through
  this agent, with their registration keys and lifetimes.

What the FA does per message (docs/protocol.md):

- first contact (5.2): checks the MN Nonce names an advertisement of the last 60 s and was
  never used, the lifetime, the care-of address, the room in the pending table; looks up
  ``Ku_HA`` (a :class:`~mvpn.core.effects.Lookup`); relays header and extension 36 with its
  Foreign Information extension 37;
- the HA's reply (5.4): matches the pending entry by FA Nonce, Home Address and
  Identification, opens and verifies ``Q``, checks the MN's original authenticator with the
  MN Auth Key from ``Q``, adds the visitor and answers the MN with extensions 39 and 33;
- re-registration (6.1): checks the MN's authenticator with the visitor's Auth Key, adds
  extension 34, checks the HA's extension 34 in the reply, installs refreshed keys (6.2),
  strips 34 and forwards;
- plain RFC 5944 requests (6.3): relayed unchanged, replies relayed unchanged.

Correspondent sessions (docs/protocol.md 7.3-7.6) are :class:`~mvpn.core.fa_sessions.
FaSessions`' (:meth:`ForeignAgent.control_handlers`): they install relay sessions in
:attr:`ForeignAgent.dataplane`, and a visitor that goes takes its sessions with it.

Every refusal is a reply code to the mobile node, a warning :class:`~mvpn.core.effects.Log`
with the reason and a counter; every undecodable datagram is dropped and counted. Some
refusals also send the MN an MVPN error message (draft 4) on the control port, rate-limited
by :class:`~mvpn.core.errors.ErrorReporter` (docs/protocol.md 7.7 lists which). No method
raises.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from mvpn.core.advert import (
    ADVERTISEMENT_INTERVAL,
    ADVERTISEMENT_LIFETIME,
    AdvertisementSchedule,
    NonceCheck,
)
from mvpn.core.dataplane import DATA_KEY_LIFETIME, DataPlane, NodeKind
from mvpn.core.effects import (
    Address,
    CancelTimer,
    Channel,
    Counters,
    Effect,
    Event,
    Log,
    Lookup,
    Send,
    StartTimer,
    debug,
    info,
    warn,
)
from mvpn.core.errors import DEFAULT_CONTROL_PORT, ControlHandler, ErrorReporter
from mvpn.core.fa_sessions import FaSessions
from mvpn.core.messages import (
    PK_OPERATIONS,
    AgentIdentity,
    FirstContactRequest,
    HomeInfoOpened,
    RegistrationError,
    RequestKind,
    UnauthenticatedReply,
    UnsupportedSuite,
    add_fa_ha_authenticator,
    build_bare_reply,
    build_mobile_reply,
    check_mn_authenticator,
    check_original_request,
    classify_request,
    open_home_info,
    open_reregistration_reply_at_fa,
    parse_first_contact,
    peek_reply,
    relay_first_contact,
)
from mvpn.crypto.errors import KeyFormatError
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.crypto.random import RandomSource
from mvpn.crypto.session import RegistrationKeys
from mvpn.pki import errors as pki_errors
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.tc_errors import InvalidCertificate, TrustedCentreUnreachable, UnknownNode
from mvpn.wire.codes import MvpnError, ReplyCode, describe
from mvpn.wire.control import ControlType
from mvpn.wire.errors import WireError
from mvpn.wire.extensions import MobileHomeAuthExtension, extension_type, is_skippable
from mvpn.wire.icmp import AgentFlags, AgentSolicitation
from mvpn.wire.mvpn_extensions import MVPN_TYPES, HomeInfoExtension
from mvpn.wire.registration import (
    REGISTRATION_REPLY_TYPE,
    REGISTRATION_REQUEST_TYPE,
    RegistrationReply,
    RegistrationRequest,
)

__all__ = [
    "MAX_DATAGRAM",
    "MAX_PENDING",
    "MAX_VISITORS",
    "OLD_SA_GRACE",
    "PENDING_TIMEOUT",
    "ForeignAgent",
    "ForeignAgentConfig",
    "Visitor",
]

MAX_DATAGRAM = 8192
"""Largest registration datagram accepted (docs/protocol.md 10): the largest legitimate one
is about 1.5 KB."""

MAX_PENDING = 4096
"""Pending table size (docs/protocol.md 10): bounded so that a flood cannot exhaust memory."""

PENDING_TIMEOUT = 7.0
"""Seconds a relayed request waits for the HA (docs/protocol.md 10): one retransmission
window; then the MN is told 78 (registration timeout)."""

MAX_VISITORS = 10_000
"""Visitor list size (docs/protocol.md 10): one FA's subnet."""

OLD_SA_GRACE = 30.0
"""Seconds a replaced registration SA still authenticates (docs/protocol.md 6.2): one
retransmission budget (1 + 2 + 4 + 8 + 8 s, section 10) with margin, as at the HA, so that a
lost refresh reply does not strand the MN."""


@dataclass(frozen=True)
class ForeignAgentConfig:
    """What a foreign agent needs to know about itself (docs/protocol.md 2, 10)."""

    fa_id: int
    """The FA's 64-bit node ID (its certificate's)."""
    keys: PrivateKeys = field(repr=False)
    care_of: ipaddress.IPv4Address
    """The care-of address it advertises and mobile nodes register through."""
    max_lifetime: int = 1800
    """The longest registration lifetime granted (advertised; longer requests get 69)."""
    ha_port: int = 434
    """The home agents' registration port."""
    advertisement_to: Address = ("224.0.0.1", 4349)
    """Where unsolicited advertisements go (RFC 5944 2.3.1: the all-systems group, or the
    UDP form's address on unprivileged setups)."""
    advertisement_interval: float = ADVERTISEMENT_INTERVAL
    advertisement_lifetime: int = ADVERTISEMENT_LIFETIME
    agent_flags: AgentFlags = AgentFlags.F
    plain_mobile_ip: bool = True
    """Relay plain RFC 5944 requests (6.3); when false they are refused with 65."""
    max_pending: int = MAX_PENDING
    pending_timeout: float = PENDING_TIMEOUT
    max_visitors: int = MAX_VISITORS
    control_port: int = DEFAULT_CONTROL_PORT
    """The MVPN control port (docs/protocol.md 2, 7.7): MVPN errors go to this port of the
    mobile node, which is assumed to listen on the same one as this FA; 0 sends none."""
    max_sessions: int = 100_000
    """Data sessions relayed at once (docs/protocol.md 10): one costs well under 1 KB."""
    session_lifetime: float = DATA_KEY_LIFETIME
    """How long a data session lives at the FA (docs/protocol.md 10, data session keys)."""
    ha_key_cache_lifetime: float = 3600.0
    """How long a home agent's key from the TC is reused for session set-up, as the HA
    reuses FA keys (docs/protocol.md 10)."""
    max_ha_keys: int = 1024
    """Bound of the HA key cache: the home agents whose MNs visit this FA."""

    @property
    def identity(self) -> AgentIdentity:
        """The FA as :mod:`mvpn.core.messages` names it."""
        return AgentIdentity(self.fa_id, self.keys, self.care_of)


@dataclass
class Visitor:
    """One entry of the visitor list (RFC 5944 3.7.2.2), with its registration keys."""

    home_address: ipaddress.IPv4Address
    home_agent: ipaddress.IPv4Address
    mn: Address
    """The MN's source address on the foreign link (where replies go)."""
    registered_at: float
    expires_at: float
    keys: RegistrationKeys | None
    """The registration SA shared with MN and HA; ``None`` for a plain RFC 5944 visitor."""
    mn_id: int | None = None
    old_keys: RegistrationKeys | None = None
    old_keys_until: float = 0.0
    ha_id: int | None = None
    """The node ID of the MN's home agent, authenticated by its reply (``None``: a plain
    RFC 5944 visitor); the data shell tunnels the MN's packets to it."""
    mn_public: PublicKeys | None = field(default=None, repr=False)
    """``Ku_MN`` as the HA returned it in Q (docs/protocol.md 5.3): the FA checks the MN's
    Correspondent Response with it and seals Y to it, with no lookup of its own."""

    def sa_for(self, spi: int, now: float) -> RegistrationKeys | None:
        """The SA named ``spi``: the current one, or the replaced one within its grace."""
        if self.keys is not None and self.keys.spi == spi and not self.keys.expired(now):
            return self.keys
        old = self.old_keys
        if old is not None and old.spi == spi and now < self.old_keys_until:
            return old
        return None


class _Kind(enum.Enum):
    FIRST_CONTACT = "first-contact"
    REREGISTRATION = "re-registration"
    PLAIN = "plain"


@dataclass
class _Pending:
    """A request relayed to an HA and not yet answered (docs/protocol.md 5.2, 10)."""

    kind: _Kind
    key: tuple[object, ...]
    request: RegistrationRequest
    mn: Address
    ha: Address
    created_at: float
    first_contact: FirstContactRequest | None = None
    fa_nonce: int = 0
    ku_ha: PublicKeys | None = None
    keys: RegistrationKeys | None = None
    failure: ReplyCode | int = ReplyCode.FA_REGISTRATION_TIMEOUT
    """What the MN is told on timeout: 78, or 68 once a reply failed authentication."""
    failure_reason: str = "the home agent did not answer in time"


class _Refusal(Exception):
    """A check failed: deny with ``code`` and log ``reason`` (internal control flow)."""

    def __init__(self, code: ReplyCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Drop(Exception):
    """Drop the datagram, count it under ``drops.<counter>`` and log ``reason``."""

    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter = counter
        self.reason = reason


def _low32(identification: int) -> int:
    return identification & 0xFFFFFFFF


def _utc(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, datetime.UTC)


def _peer(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


class ForeignAgent:
    """A foreign agent: advertisements, relaying, visitor list (sans-IO).

    ``random`` draws FA Nonces. Public-key operations (seal, sign, open, verify) are counted
    in ``counters["pk_operations"]``: a re-registration never moves it.
    """

    def __init__(self, config: ForeignAgentConfig, random: RandomSource) -> None:
        self.config = config
        self._identity = config.identity
        self._random = random
        self.counters = Counters()
        self.schedule = AdvertisementSchedule(
            config.care_of,
            config.max_lifetime,
            config.agent_flags,
            interval=config.advertisement_interval,
            lifetime=config.advertisement_lifetime,
            counters=self.counters,
        )
        self._pending: dict[tuple[object, ...], _Pending] = {}
        self._first_contact_ids: dict[tuple[object, ...], tuple[object, ...]] = {}
        """(home address, low Identification) -> FA Nonce key of each pending first contact,
        to recognise the HA's bare denials, which carry no FA Nonce."""
        self._visitors: dict[ipaddress.IPv4Address, Visitor] = {}
        self.errors = ErrorReporter(config.control_port, self.counters)
        """MVPN error messages (draft 4) beside the reply codes, rate-limited."""
        self._ha_keys: dict[int, tuple[PublicKeys, float]] = {}
        """HA ID -> (Ku_HA, when its certificate was checked), for session set-up."""
        self.dataplane = DataPlane(NodeKind.FA)
        """The relay sessions of this FA's visitors (docs/protocol.md 8.1)."""
        self.sessions = FaSessions(self)
        """The correspondent-session logic (docs/protocol.md 7.3-7.6)."""

    @property
    def identity(self) -> AgentIdentity:
        """The FA as :mod:`mvpn.core.messages` and :mod:`mvpn.core.correspondent` name it."""
        return self._identity

    def control_handlers(self) -> dict[int, ControlHandler]:
        """The control Types this FA handles itself (docs/protocol.md 7): Correspondent
        Information form 0 from home agents, Correspondent Response and Key Transfer from
        mobile nodes."""
        return {
            int(ControlType.CORRESPONDENT_INFORMATION): self.sessions.correspondent_info,
            int(ControlType.CORRESPONDENT_RESPONSE): self.sessions.correspondent_response,
            int(ControlType.KEY_TRANSFER): self.sessions.key_transfer,
        }

    def ha_key(self, ha_id: int, now: float) -> PublicKeys | None:
        """``Ku_HA`` if a certificate of that HA was checked within
        ``ha_key_cache_lifetime``; ``None`` means a TC lookup is needed."""
        cached = self._ha_keys.get(ha_id)
        if cached is None:
            return None
        if now - cached[1] >= self.config.ha_key_cache_lifetime:
            del self._ha_keys[ha_id]
            return None
        return cached[0]

    def ha_certificate(
        self, ha_id: int, answer: NodeCertificate | Exception, now: float
    ) -> PublicKeys | tuple[MvpnError, str]:
        """Check the TC's answer for ``Ku_HA`` as first contacts do and cache the key: the
        key, or the MVPN error code (docs/protocol.md 7.7) and a reason."""
        refusal = _certificate_refusal(answer, ha_id, now)
        if refusal is not None or isinstance(answer, Exception):
            reason = refusal[1] if refusal is not None else "lookup failed"
            return _lookup_error(answer)[0], reason
        self._remember_ha_key(ha_id, answer.public_keys, now)
        return answer.public_keys

    def _remember_ha_key(self, ha_id: int, public: PublicKeys, now: float) -> None:
        if ha_id not in self._ha_keys and len(self._ha_keys) >= self.config.max_ha_keys:
            # Forget the oldest: a bounded cache, refilled by lookups.
            oldest = min(self._ha_keys, key=lambda k: self._ha_keys[k][1])
            del self._ha_keys[oldest]
        self._ha_keys[ha_id] = (public, now)

    def _guard(self, what: str, action: Callable[[], list[Effect]]) -> list[Effect]:
        """Run ``action``; an unexpected exception becomes an error log and a counter, never
        a raise into the shell, which must go on serving."""
        try:
            return action()
        except Exception as e:
            self.counters.increment("errors.internal")
            return [
                Log(
                    "error",
                    "internal error while handling {what}: {reason}",
                    {"what": what, "reason": repr(e)},
                )
            ]

    def _pk(self, function: str) -> None:
        self.counters.increment("pk_operations", PK_OPERATIONS[function])

    # -- advertisements (RFC 5944 2.3) ----------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Begin advertising: one advertisement now, then one every interval."""
        return self.advertisement_due(now)

    def advertisement_due(self, now: float) -> list[Effect]:
        """Send the next unsolicited advertisement and re-arm the ``advertise`` timer."""
        data = self.schedule.advertisement(now)
        return [
            Send(data, self.config.advertisement_to, Channel.ADVERTISEMENT),
            StartTimer(
                "advertise",
                self.config.advertisement_interval,
                lambda at: self._guard("an advertisement", lambda: self.advertisement_due(at)),
            ),
        ]

    def solicitation_received(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """Answer an Agent Solicitation with an advertisement to its sender (RFC 5944 2.3.2)."""
        try:
            if len(data) != AgentSolicitation.SIZE:
                raise WireError(
                    "Agent Solicitation", f"{AgentSolicitation.SIZE} bytes", f"{len(data)} bytes"
                )
            AgentSolicitation.decode(data)
        except WireError as e:
            self.counters.increment("drops.malformed_solicitation")
            return [
                warn(
                    "dropped a malformed solicitation from {peer}: {reason}",
                    peer=_peer(source),
                    reason=str(e),
                )
            ]
        self.counters.increment("solicitations")
        return [Send(self.schedule.advertisement(now), source, Channel.ADVERTISEMENT)]

    # -- registration channel ---------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """A datagram on the registration port: a request from an MN or a reply from an HA."""
        return self._guard("a registration datagram", lambda: self._datagram(data, source, now))

    def _datagram(self, data: bytes, source: Address, now: float) -> list[Effect]:
        try:
            if len(data) > MAX_DATAGRAM:
                raise _Drop("oversized", f"{len(data)} bytes, more than {MAX_DATAGRAM}")
            if data[:1] == bytes((REGISTRATION_REQUEST_TYPE,)):
                return self._request(data, source, now)
            if data[:1] == bytes((REGISTRATION_REPLY_TYPE,)):
                return self._reply(data, source, now)
            raise _Drop("malformed", f"not a registration message (type {data[:1].hex()})")
        except _Drop as drop:
            self.counters.increment(f"drops.{drop.counter}")
            return [
                warn(
                    "dropped a registration datagram from {peer}: {reason}",
                    peer=_peer(source),
                    reason=drop.reason,
                )
            ]

    def _deny(
        self, request: RegistrationRequest, mn: Address, code: ReplyCode | int, reason: str
    ) -> list[Effect]:
        """A denial the FA cannot authenticate: the bare reply header (doc 5.4, "Denials")."""
        # RFC 5944 3.4: with 69 the Lifetime field says the longest lifetime we grant.
        lifetime = self.config.max_lifetime if code is ReplyCode.FA_LIFETIME_TOO_LONG else 0
        data = build_bare_reply(request, code, lifetime=lifetime)
        return [
            *self._denial_log(request.home_address, code, reason),
            Send(data, mn, Channel.REGISTRATION),
        ]

    def _denial_log(
        self, home_address: ipaddress.IPv4Address, code: ReplyCode | int, reason: str
    ) -> list[Effect]:
        self.counters.increment(f"denied.{int(code)}")
        return [
            warn(
                "denied registration of {home_address} with {code}: {reason}",
                home_address=str(home_address),
                code=describe(code),
                reason=reason,
            ),
            Event("denied", {"home_address": str(home_address), "code": int(code)}),
        ]

    def _request(self, data: bytes, source: Address, now: float) -> list[Effect]:
        try:
            kind, request = classify_request(data)
        except RegistrationError as e:
            raise _Drop("malformed", e.reason) from None
        try:
            if kind is RequestKind.FIRST_CONTACT:
                return self._first_contact(data, request, source, now)
            visitor = self._visitors.get(request.home_address)
            auth = _last_auth(request)
            if (
                kind is RequestKind.AUTHENTICATED
                and visitor is not None
                and auth is not None
                and visitor.sa_for(auth.spi, now) is not None
            ):
                return self._reregistration(data, request, visitor, auth.spi, source, now)
            return self._plain_request(request, source, now)
        except _Refusal as refusal:
            return self._deny(request, source, refusal.code, refusal.reason)
        except UnsupportedSuite as e:
            # The suite's layout is unknown, so is where its MN Nonce sits: the error names
            # the request by its Identification (docs/protocol.md 7.7).
            return [
                *self._deny(request, source, e.code, e.reason),
                *self.errors.report(
                    source[0],
                    MvpnError.NO_MVPN_SUPPORT,
                    _low32(request.identification),
                    "The mobile information extension names a suite this agent does not offer.",
                    now,
                ),
            ]
        except RegistrationError as e:
            return self._deny(request, source, e.code, e.reason)

    def _check_common(self, request: RegistrationRequest) -> None:
        """Checks every relayed request passes (RFC 5944 3.7.1)."""
        if request.care_of_address != self.config.care_of:
            raise _Refusal(
                ReplyCode.FA_INVALID_CARE_OF_ADDRESS,
                f"care-of address {request.care_of_address} is not ours",
            )
        if request.lifetime > self.config.max_lifetime:
            raise _Refusal(
                ReplyCode.FA_LIFETIME_TOO_LONG,
                f"lifetime {request.lifetime} s exceeds {self.config.max_lifetime} s",
            )
        if len(self._pending) >= self.config.max_pending:
            self.counters.increment("pending_full")
            raise _Refusal(ReplyCode.FA_INSUFFICIENT_RESOURCES, "pending table full")

    def _track(self, pending: _Pending) -> StartTimer:
        """Enter ``pending`` in the table and arm its timeout."""
        self._pending[pending.key] = pending
        if pending.kind is _Kind.FIRST_CONTACT:
            self._first_contact_ids[_id_key(pending.request)] = pending.key
        key = pending.key
        return StartTimer(
            _timer_name(key),
            self.config.pending_timeout,
            lambda at: self._guard("a pending timeout", lambda: self._pending_expired(key, at)),
        )

    def _forget(self, key: tuple[object, ...]) -> _Pending | None:
        pending = self._pending.pop(key, None)
        if pending is not None and pending.kind is _Kind.FIRST_CONTACT:
            self._first_contact_ids.pop(_id_key(pending.request), None)
        return pending

    def _finish(self, pending: _Pending) -> CancelTimer:
        self._forget(pending.key)
        return CancelTimer(_timer_name(pending.key))

    def _pending_expired(self, key: tuple[object, ...], now: float) -> list[Effect]:
        pending = self._forget(key)
        if pending is None:
            return []
        self.counters.increment("pending_timeouts")
        effects = self._deny(pending.request, pending.mn, pending.failure, pending.failure_reason)
        if (
            pending.failure == ReplyCode.FA_REGISTRATION_TIMEOUT
            and pending.kind is not _Kind.PLAIN
        ):
            # A plain RFC 5944 node speaks no MVPN and has no control port to tell.
            effects += self.errors.report(
                pending.mn[0],
                MvpnError.HOME_AGENT_NOT_FOUND,
                _reference(pending),
                "The home agent did not answer in time.",
                now,
            )
        return effects

    # -- first contact (doc 5.2) ---------------------------------------------------------

    def _first_contact(
        self, data: bytes, request: RegistrationRequest, source: Address, now: float
    ) -> list[Effect]:
        first = parse_first_contact(data)
        self._check_common(request)
        if (
            len(self._visitors) >= self.config.max_visitors
            and request.home_address not in self._visitors
        ):
            raise _Refusal(ReplyCode.FA_INSUFFICIENT_RESOURCES, "visitor list full")
        nonce = self.schedule.use_nonce(first.mn_nonce, now)
        if nonce is NonceCheck.FULL:
            raise _Refusal(ReplyCode.FA_INSUFFICIENT_RESOURCES, "used-nonce table full")
        if nonce is NonceCheck.UNKNOWN_SEQUENCE:
            raise _Refusal(
                ReplyCode.FA_MN_FAILED_AUTHENTICATION,
                f"MN Nonce names sequence {first.adv_sequence}, not advertised in the last 60 s",
            )
        if nonce is NonceCheck.REPLAYED:
            self.counters.increment("replays")
            raise _Refusal(ReplyCode.FA_MN_FAILED_AUTHENTICATION, "replayed MN Nonce")
        fa_nonce = self._fresh_fa_nonce()
        pending = _Pending(
            _Kind.FIRST_CONTACT,
            ("fa-nonce", fa_nonce),
            request,
            source,
            (str(request.home_agent), self.config.ha_port),
            now,
            first_contact=first,
            fa_nonce=fa_nonce,
        )
        key = pending.key
        self.counters.increment("lookups")
        return [
            debug(
                "first contact of {home_address} from {peer}; looking up home agent {ha_id}",
                home_address=str(request.home_address),
                peer=_peer(source),
                ha_id=first.ha_id,
            ),
            self._track(pending),
            Lookup(
                first.ha_id,
                lambda answer: self._guard("a key lookup", lambda: self._ha_key(key, answer)),
            ),
        ]

    def _fresh_fa_nonce(self) -> int:
        while True:
            nonce = int.from_bytes(self._random(4), "big")
            if ("fa-nonce", nonce) not in self._pending:
                return nonce

    def _ha_key(
        self, key: tuple[object, ...], answer: NodeCertificate | Exception
    ) -> list[Effect]:
        """The Trusted Centre's answer for the HA's certificate: relay (doc 5.2)."""
        pending = self._pending.get(key)
        if pending is None:
            self.counters.increment("drops.late_lookup")
            return [debug("a certificate arrived after its request had expired")]
        first = pending.first_contact
        assert first is not None
        refusal = _certificate_refusal(answer, first.ha_id, pending.created_at)
        if refusal is not None or isinstance(answer, Exception):
            code, reason = refusal or (ReplyCode.FA_HA_UNREACHABLE, "lookup failed")
            self.counters.increment("lookup_failures")
            error, sentence = _lookup_error(answer)
            return [
                self._finish(pending),
                *self._deny(pending.request, pending.mn, code, reason),
                # The answer carries no time: the request's arrival stands for now.
                *self.errors.report(
                    pending.mn[0], error, first.mn_nonce, sentence, pending.created_at
                ),
            ]
        pending.ku_ha = answer.public_keys
        self._remember_ha_key(first.ha_id, answer.public_keys, pending.created_at)
        relayed = relay_first_contact(
            self._identity, first, answer.public_keys, first.ha_id, pending.fa_nonce
        )
        self._pk("relay_first_contact")
        self.counters.increment("relayed.first_contact")
        return [
            info(
                "relaying first contact of {home_address} to {home_agent}",
                home_address=str(pending.request.home_address),
                home_agent=pending.ha[0],
            ),
            Send(relayed, pending.ha, Channel.REGISTRATION),
        ]

    # -- replies from home agents ---------------------------------------------------------

    def _reply(self, data: bytes, source: Address, now: float) -> list[Effect]:
        try:
            reply = peek_reply(data)
        except RegistrationError as e:
            raise _Drop("malformed", e.reason) from None
        home_info = [e for e in reply.extensions if isinstance(e, HomeInfoExtension)]
        if home_info:
            key: tuple[object, ...] = ("fa-nonce", home_info[0].fa_nonce)
        else:
            key = ("id", reply.home_address, _low32(reply.identification))
            key = self._first_contact_ids.get(key, key)
        pending = self._pending.get(key)
        if pending is None:
            raise _Drop("unmatched_reply", f"reply for {reply.home_address} matches no request")
        if source[0] != pending.ha[0]:
            raise _Drop("wrong_source", f"reply for {reply.home_address} came from {source[0]}")
        if pending.kind is _Kind.FIRST_CONTACT and not home_info:
            return self._unauthenticated(
                pending, f"bare reply with code {int(reply.code)}", reply.code
            )
        if pending.kind is _Kind.FIRST_CONTACT:
            if pending.ku_ha is None:
                raise _Drop("unmatched_reply", "reply before the first contact was relayed")
            return self._first_contact_reply(pending, data, now)
        if pending.kind is _Kind.REREGISTRATION:
            return self._reregistration_reply(pending, data, now)
        return self._plain_reply(pending, reply, data, now)

    def _unauthenticated(
        self, pending: _Pending, reason: str, code: ReplyCode | int | None = None
    ) -> list[Effect]:
        """A reply that fails the HA's authentication is dropped, not obeyed: the pending
        entry stays (the real reply may still come) and its timeout says 68, or ``code``,
        that of an HA's bare denial, which the FA cannot authenticate (doc 5.4)."""
        if code is not None:
            pending.failure = code
            pending.failure_reason = f"unauthenticated denial from the home agent ({reason})"
            self.counters.increment("drops.unauthenticated_reply")
        else:
            pending.failure = ReplyCode.FA_HA_FAILED_AUTHENTICATION
            pending.failure_reason = f"no authentic reply from the home agent ({reason})"
            self.counters.increment("drops.ha_failed_authentication")
        return [
            warn(
                "dropped a reply for {home_address}: {reason}",
                home_address=str(pending.request.home_address),
                reason=reason,
            )
        ]

    def _first_contact_reply(self, pending: _Pending, data: bytes, now: float) -> list[Effect]:
        first = pending.first_contact
        assert first is not None and pending.ku_ha is not None
        self._pk("open_home_info")
        try:
            opened = open_home_info(self._identity, pending.ku_ha, data, first, pending.fa_nonce)
        except RegistrationError as e:
            return self._unauthenticated(pending, e.reason)
        effects: list[Effect] = [self._finish(pending)]
        reply = opened.reply
        if not opened.accepted:
            effects += self._denial_log(reply.home_address, reply.code, "denied by the home agent")
            return effects + self._mobile_reply(pending, opened, None)
        try:
            # The draft's "the FA is now able to authenticate the Registration Request": the
            # MN's own authenticator, checked with the MN Auth Key the HA returned in Q.
            check_original_request(first.data, opened.home_info.mn_auth_key)
        except RegistrationError as e:
            code = ReplyCode.FA_MN_FAILED_AUTHENTICATION
            effects += self._denial_log(reply.home_address, code, e.reason)
            return [
                *effects,
                *self._mobile_reply(pending, opened, code),
                *self.errors.report(
                    pending.mn[0],
                    MvpnError.AUTHENTICATION_KEY_NOT_VALID,
                    first.mn_nonce,
                    "The first contact's authenticator does not verify with the MN Auth Key.",
                    now,
                ),
            ]
        q = opened.home_info
        try:
            keys = RegistrationKeys(q.spi, q.ses_key, q.auth_key, now, float(q.key_lifetime))
        except ValueError as e:
            code = ReplyCode.FA_POORLY_FORMED_REPLY
            effects += self._denial_log(reply.home_address, code, f"unusable keys: {e}")
            return effects + self._mobile_reply(pending, opened, code)
        visitor = Visitor(
            pending.request.home_address,
            pending.request.home_agent,
            pending.mn,
            now,
            now + reply.lifetime,
            keys,
            mn_id=q.mn_id,
            ha_id=first.ha_id,
            mn_public=_mn_public(q.ku_mn),
        )
        self.counters.increment("accepted")
        effects += self._add_visitor(visitor)
        return effects + self._mobile_reply(pending, opened, None)

    def _mobile_reply(
        self, pending: _Pending, opened: HomeInfoOpened, ack: ReplyCode | None
    ) -> list[Effect]:
        """The reply to the MN (doc 5.4): header, extension 39 and, when accepted, 33."""
        try:
            data = build_mobile_reply(self._identity, opened, None if ack is None else int(ack))
        except RegistrationError as e:
            return self._deny(
                pending.request, pending.mn, ReplyCode.FA_POORLY_FORMED_REPLY, e.reason
            )
        if opened.extension.home_to_mobile is not None and opened.home_info.ku_mn:
            self._pk("build_mobile_reply")
        self.counters.increment("relayed.replies")
        return [Send(data, pending.mn, Channel.REGISTRATION)]

    # -- visitors --------------------------------------------------------------------------

    def _add_visitor(self, visitor: Visitor) -> list[Effect]:
        home = visitor.home_address
        if home not in self._visitors:
            self.counters.increment("visitors.added")
        self._visitors[home] = visitor
        self._update_busy()
        return [
            info(
                "visitor {home_address} registered at {care_of} for {lifetime} s",
                home_address=str(home),
                care_of=str(self.config.care_of),
                lifetime=round(visitor.expires_at - visitor.registered_at),
            ),
            StartTimer(
                f"visitor:{home}",
                visitor.expires_at - visitor.registered_at,
                lambda at: self._guard(
                    "a visitor expiry", lambda: self._visitor_expired(home, at)
                ),
            ),
            Event("registered", {"home_address": str(home), "care_of": str(self.config.care_of)}),
        ]

    def _visitor_expired(self, home: ipaddress.IPv4Address, now: float) -> list[Effect]:
        visitor = self._visitors.get(home)
        if visitor is None or visitor.expires_at > now:
            return []
        del self._visitors[home]
        self._update_busy()
        self.counters.increment("visitors.expired")
        return [
            info("visitor {home_address} expired", home_address=str(home)),
            Event("visitor-expired", {"home_address": str(home)}),
            *self.sessions.visitor_removed(home, now, "visitor expired"),
        ]

    def _remove_visitor(self, home: ipaddress.IPv4Address, now: float) -> list[Effect]:
        if self._visitors.pop(home, None) is None:
            return []
        self._update_busy()
        self.counters.increment("visitors.deregistered")
        return [
            CancelTimer(f"visitor:{home}"),
            info("visitor {home_address} deregistered", home_address=str(home)),
            Event("deregistered", {"home_address": str(home)}),
            *self.sessions.visitor_removed(home, now, "deregistered"),
        ]

    def _update_busy(self) -> None:
        # RFC 5944 2.1.1: the B bit tells mobile nodes not to try a full agent.
        self.schedule.busy = len(self._visitors) >= self.config.max_visitors

    def visitor(self, home_address: ipaddress.IPv4Address) -> Visitor | None:
        """The visitor entry of ``home_address``, if any."""
        return self._visitors.get(home_address)

    # -- re-registration (doc 6.1, 6.2) ----------------------------------------------------

    def _reregistration(
        self,
        data: bytes,
        request: RegistrationRequest,
        visitor: Visitor,
        spi: int,
        source: Address,
        now: float,
    ) -> list[Effect]:
        keys = visitor.sa_for(spi, now)
        assert keys is not None
        check_mn_authenticator(data, keys)
        self._check_common(request)
        key = _id_key(request)
        if key in self._pending:
            self.counters.increment("replays")
            raise _Refusal(
                ReplyCode.FA_MN_FAILED_AUTHENTICATION, "Identification already pending (replay)"
            )
        pending = _Pending(
            _Kind.REREGISTRATION,
            key,
            request,
            source,
            (str(request.home_agent), self.config.ha_port),
            now,
            keys=keys,
        )
        self.counters.increment("relayed.reregistration")
        return [
            debug(
                "relaying re-registration of {home_address}",
                home_address=str(request.home_address),
            ),
            self._track(pending),
            Send(add_fa_ha_authenticator(data, keys), pending.ha, Channel.REGISTRATION),
        ]

    def _reregistration_reply(self, pending: _Pending, data: bytes, now: float) -> list[Effect]:
        keys = pending.keys
        assert keys is not None
        try:
            to_mn, reply, refreshed = open_reregistration_reply_at_fa(data, keys, now)
        except UnauthenticatedReply as e:
            return self._unauthenticated(pending, e.reason, e.code)
        except RegistrationError as e:
            return self._unauthenticated(pending, e.reason)
        effects: list[Effect] = [self._finish(pending)]
        visitor = self._visitors.get(reply.home_address)
        if not reply.accepted:
            effects += self._denial_log(reply.home_address, reply.code, "denied by the home agent")
        elif visitor is None:
            # The visitor expired while the HA was answering: the MN must start over.
            effects.append(
                warn(
                    "re-registration reply for {home_address}, no longer a visitor",
                    home_address=str(reply.home_address),
                )
            )
        elif reply.lifetime == 0:
            self.counters.increment("accepted")
            effects += self._remove_visitor(reply.home_address, now)
        else:
            self.counters.increment("accepted")
            if refreshed is not None:
                visitor.old_keys = keys
                visitor.old_keys_until = now + OLD_SA_GRACE
                visitor.keys = refreshed
                self.counters.increment("key_refreshes")
            visitor.mn = pending.mn
            visitor.registered_at = now
            visitor.expires_at = now + reply.lifetime
            effects += self._add_visitor(visitor)
        self.counters.increment("relayed.replies")
        effects.append(Send(to_mn, pending.mn, Channel.REGISTRATION))
        return effects

    # -- plain RFC 5944 (doc 6.3) ------------------------------------------------------------

    def _plain_request(
        self, request: RegistrationRequest, source: Address, now: float
    ) -> list[Effect]:
        if not self.config.plain_mobile_ip:
            raise _Refusal(
                ReplyCode.FA_ADMINISTRATIVELY_PROHIBITED, "plain Mobile IP is not relayed here"
            )
        for ext in request.extensions:
            type_ = extension_type(ext)
            if type_ in MVPN_TYPES or not (is_skippable(type_) or 32 <= type_ <= 34):
                raise _Refusal(
                    ReplyCode.FA_POORLY_FORMED_REQUEST, f"extension {type_} not allowed here"
                )
        if _last_auth(request) is None:
            raise _Refusal(
                ReplyCode.FA_POORLY_FORMED_REQUEST, "no Mobile-Home Authentication extension"
            )
        self._check_common(request)
        key = _id_key(request)
        if key in self._pending:
            self.counters.increment("replays")
            raise _Refusal(
                ReplyCode.FA_MN_FAILED_AUTHENTICATION, "Identification already pending (replay)"
            )
        pending = _Pending(
            _Kind.PLAIN,
            key,
            request,
            source,
            (str(request.home_agent), self.config.ha_port),
            now,
        )
        self.counters.increment("relayed.plain")
        assert request.raw is not None
        return [
            debug(
                "relaying plain request of {home_address}", home_address=str(request.home_address)
            ),
            self._track(pending),
            Send(request.raw, pending.ha, Channel.REGISTRATION),
        ]

    def _plain_reply(
        self, pending: _Pending, reply: RegistrationReply, data: bytes, now: float
    ) -> list[Effect]:
        # A plain FA cannot check the HA's MN-HA authenticator (it holds no key); RFC 5944
        # 3.7.3.1 has it relay the reply and trust the lifetime it carries.
        effects: list[Effect] = [self._finish(pending)]
        if reply.accepted:
            self.counters.increment("accepted")
            if reply.lifetime == 0:
                effects += self._remove_visitor(reply.home_address, now)
            else:
                effects += self._add_visitor(
                    Visitor(
                        reply.home_address,
                        reply.home_agent,
                        pending.mn,
                        now,
                        now + reply.lifetime,
                        None,
                    )
                )
        else:
            effects += self._denial_log(reply.home_address, reply.code, "denied by the home agent")
        self.counters.increment("relayed.replies")
        effects.append(Send(data, pending.mn, Channel.REGISTRATION))
        return effects

    # -- status ----------------------------------------------------------------------------

    def status(self, now: float) -> dict[str, object]:
        """What ``mvpn status`` shows: visitors, pending requests and counters."""
        visitors = [
            {
                "home_address": str(v.home_address),
                "home_agent": str(v.home_agent),
                "care_of": str(self.config.care_of),
                "mn": _peer(v.mn),
                "lifetime_left": max(0.0, v.expires_at - now),
                "key_age": (now - v.keys.created_at) if v.keys is not None else None,
                "spi": v.keys.spi if v.keys is not None else None,
                "mode": "mvpn" if v.keys is not None else "rfc5944",
            }
            for v in sorted(self._visitors.values(), key=lambda v: v.home_address)
        ]
        return {
            "role": "fa",
            "fa_id": self.config.fa_id,
            "care_of": str(self.config.care_of),
            "visitors": visitors,
            "pending": len(self._pending),
            "sessions": len(self.dataplane),
            "sessions_pending": self.sessions.pending_count(),
            "counters": self.counters.snapshot(),
        }


def _certificate_refusal(
    answer: NodeCertificate | Exception, ha_id: int, now: float
) -> tuple[ReplyCode, str] | None:
    """Why the TC's answer cannot give us ``Ku_HA`` (88 when the lookup failed, 68 when the
    certificate is not that home agent's or not valid now), or ``None``."""
    if isinstance(answer, Exception):
        return ReplyCode.FA_HA_UNREACHABLE, f"home agent key lookup failed: {answer}"
    if answer.role is not Role.HA or answer.node_id != ha_id:
        return (
            ReplyCode.FA_HA_FAILED_AUTHENTICATION,
            f"certificate {answer.describe()} is not home agent {ha_id}'s",
        )
    try:
        answer.check_validity(_utc(now))
    except Exception as e:
        return ReplyCode.FA_HA_FAILED_AUTHENTICATION, f"home agent certificate: {e}"
    return None


def _mn_public(ku_mn: bytes) -> PublicKeys | None:
    """``Ku_MN`` from Q, or ``None`` when Q carries none (a denial) or an unusable one."""
    if not ku_mn:
        return None
    try:
        return PublicKeys.from_bytes(ku_mn)
    except KeyFormatError:
        return None


def _lookup_error(answer: NodeCertificate | Exception) -> tuple[MvpnError, str]:
    """The MVPN error (draft 4) for a ``Ku_HA`` lookup that gave no usable key
    (docs/protocol.md 7.7): 6 when the TC cannot be reached, 5 when it knows no such HA, 4
    for a revoked, invalid or wrong certificate, 7 for any other failure."""
    if isinstance(answer, TrustedCentreUnreachable):
        return MvpnError.TRUSTED_CENTRE_NOT_FOUND, "The Trusted Centre could not be reached."
    if isinstance(answer, UnknownNode):
        return (
            MvpnError.HOME_AGENT_NOT_FOUND,
            "The Trusted Centre knows no valid certificate for the home agent.",
        )
    if isinstance(answer, InvalidCertificate | pki_errors.CertificateError) or not isinstance(
        answer, Exception
    ):
        return MvpnError.PUBLIC_KEY_NOT_VALID, "The home agent's public key is not valid."
    return MvpnError.OTHER, "The home agent's public key could not be obtained."


def _reference(pending: _Pending) -> int:
    """What an MVPN error about ``pending`` names (docs/protocol.md 7.7): the MN Nonce of a
    first contact, the SPI of a re-registration, else the low half of the Identification."""
    if pending.first_contact is not None:
        return pending.first_contact.mn_nonce
    if pending.keys is not None:
        return pending.keys.spi
    return _low32(pending.request.identification)


def _last_auth(request: RegistrationRequest) -> MobileHomeAuthExtension | None:
    """The request's last MN-HA authenticator (RFC 5944 3.5.2: it follows what it covers)."""
    found = [e for e in request.extensions if isinstance(e, MobileHomeAuthExtension)]
    return found[-1] if found else None


def _id_key(request: RegistrationRequest) -> tuple[object, ...]:
    """How a reply without an FA Nonce names its request (RFC 5944 5.7: the low half of the
    Identification is always echoed)."""
    return ("id", request.home_address, _low32(request.identification))


def _timer_name(key: tuple[object, ...]) -> str:
    return "pending:" + ":".join(str(part) for part in key)
