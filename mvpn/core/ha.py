"""The home agent's sans-IO core (draft 3.2, RFC 5944 3.8; docs/protocol.md 5, 6, 10, 11).

:class:`HomeAgent` takes each datagram from the registration port with its source address and
the current time and returns the :mod:`~mvpn.core.effects` to perform: the reply to send, a
Trusted Centre :class:`~mvpn.core.effects.Lookup` of a foreign agent's key it has not cached,
the expiry timer of each binding, log lines and lifecycle events. It handles:

- first contacts relayed by an FA (docs/protocol.md 5.2, 5.3): FA key (cached or looked up),
  FA signature and F, M, the MN's key (the HA created it, draft 7.1, so it holds it locally),
  the MN signature, home address, Identification (RFC 5944 5.7), then fresh registration keys
  under a never-used SPI and the Home Information reply;
- re-registrations (docs/protocol.md 6.1, 6.2): symmetric keys only, no lookup and no
  public-key operation, with a key refresh when the keys are old;
- plain RFC 5944 registrations (6.3): HMAC-MD5 with a configured shared key;
- deregistration (lifetime 0) and expiry;
- correspondent sessions (docs/protocol.md 7.2, 7.3): the Request Communication handler of
  :class:`~mvpn.core.ha_sessions.HaSessions` (:meth:`HomeAgent.control_handlers`), which
  installs relay sessions in :attr:`HomeAgent.dataplane`; a binding that ends takes its
  sessions with it (a move to another FA does not: the data shell routes by the binding).

Every denial sends the right reply code (authenticated where the HA can), logs a warning with
the reason, moves a counter and leaves the binding unchanged. A failed FA key lookup and a
re-registration under an unknown SPI or expired keys also send the FA an MVPN error message
(draft 4) on the control port, rate-limited (docs/protocol.md 7.7). Undecodable datagrams are
dropped, counted and logged. Bindings, keys, the last Identification of every MN and the SPI
high-water mark are committed to the :class:`~mvpn.core.store.BindingStore` before the reply
effect is returned.

``now`` is Unix time in seconds (Identification timestamps are compared with it).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from mvpn.core import messages as msg
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
from mvpn.core.ha_sessions import HaSessions
from mvpn.core.store import Binding, BindingStore, SpiExhausted
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.random import RandomSource
from mvpn.crypto.session import RegistrationKeys
from mvpn.pki import errors as pki_errors
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.tc_errors import InvalidCertificate, TrustedCentreUnreachable, UnknownNode
from mvpn.wire.codes import MvpnError, ReplyCode
from mvpn.wire.control import ControlType
from mvpn.wire.errors import WireError
from mvpn.wire.registration import (
    REGISTRATION_REQUEST_TYPE,
    Identification,
    RegistrationRequest,
)

__all__ = [
    "HomeAgent",
    "HomeAgentConfig",
    "MobileNodeRecord",
    "PlainNodeRecord",
]

INFINITE_LIFETIME = 0xFFFF
"""RFC 5944 3.3: a Lifetime of 0xFFFF means infinity (capped by ``max_lifetime``)."""


@dataclass(frozen=True)
class HomeAgentConfig:
    """The home agent's policy (docs/protocol.md 10)."""

    max_lifetime: int = 1800
    """Longest registration lifetime granted, seconds; longer requests get this."""
    key_refresh_fraction: float | None = 0.5
    """Refresh the registration keys at a re-registration once they are older than this
    fraction of their lifetime (docs/protocol.md 6.2); ``None`` never refreshes."""
    identification_tolerance: float = 7.0
    """RFC 5944 5.7 default: timestamps within this many seconds of the HA's clock."""
    max_bindings: int = 100_000
    """Memory per binding is about 1 KB."""
    max_datagram: int = 8192
    """The largest legitimate registration is about 1.5 KB."""
    previous_keys_grace: float = 30.0
    """How long the SA a refresh replaced stays valid: one retransmission budget (1 + 2 + 4 +
    8 + 8 s) with margin, so that a lost refresh reply does not strand the MN."""
    require_fa_auth: bool = True
    """Re-registrations must carry the FA-HA authenticator (docs/protocol.md 6.1)."""
    fa_key_cache_lifetime: float = 3600.0
    """How long a foreign agent's key from the TC is reused before it is looked up again."""
    max_fa_keys: int = 10_000
    """Bound of the FA key cache."""
    max_lookups_in_flight: int = 256
    """Outstanding TC lookups; first contacts beyond it are dropped (the MN retransmits)."""
    control_port: int = DEFAULT_CONTROL_PORT
    """The MVPN control port (docs/protocol.md 2, 7.7): MVPN errors go to this port of the
    foreign agent, which is assumed to listen on the same one as this HA; 0 sends none."""
    max_sessions: int = 100_000
    """Data sessions relayed at once (docs/protocol.md 10): one costs well under 1 KB (two
    2048-bit replay windows, a 32-byte key); set-ups beyond it are refused with error 7."""
    session_lifetime: float = DATA_KEY_LIFETIME
    """How long a data session lives at the HA (docs/protocol.md 10, data session keys)."""
    cn_key_cache_lifetime: float = 3600.0
    """How long a correspondent node's key from the TC is reused, as for FA keys."""
    max_cn_keys: int = 10_000
    """Bound of the CN key cache."""
    replay_cache_size: int = 4096
    """(CN ID, CN Nonce) pairs remembered (docs/protocol.md 7.2, 10); each is kept until
    its request's timestamp leaves the 30 s window, so a full cache means 4096 requests in
    a minute: further ones are refused (error 7), never let through unchecked."""


@dataclass(frozen=True, repr=False)
class MobileNodeRecord:
    """One of this HA's mobile nodes: its home address, USER ID and public keys (the HA made
    its keys, draft 7.1, so it holds the public half locally)."""

    home_address: ipaddress.IPv4Address
    user_id: int
    public: PublicKeys

    def __repr__(self) -> str:
        return f"<MobileNodeRecord {self.home_address} user_id={self.user_id:#x}>"


@dataclass(frozen=True, repr=False)
class PlainNodeRecord:
    """A plain RFC 5944 mobile node: home address, SPI and HMAC-MD5 shared key (6.3)."""

    home_address: ipaddress.IPv4Address
    spi: int
    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"<PlainNodeRecord {self.home_address} spi={self.spi}>"


@dataclass
class _CachedKey:
    public: PublicKeys
    fetched_at: float


@dataclass(frozen=True)
class _Error:
    """An MVPN error (draft 4) to send to the FA beside a denial (docs/protocol.md 7.7)."""

    code: MvpnError
    reference: int
    reason: str


class _Denied(Exception):
    """Internal: a check failed with ``code``; ``reply`` is what to send (may be None);
    ``error`` the MVPN error to send the FA beside it, if any."""

    def __init__(
        self, code: int, reason: str, reply: bytes | None, error: _Error | None = None
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.reply = reply
        self.error = error


class HomeAgent:
    """The home agent's registration logic, sans I/O.

    :param identity: the HA's node ID, private keys and registration address.
    :param store: the binding store (already open); its bindings are loaded here.
    :param random: the source of keys and seal nonces.
    :param mobile_nodes: the MVPN mobile nodes this HA serves.
    :param plain_nodes: the plain RFC 5944 nodes this HA serves.
    :param fa_keys: FA public keys known in advance (they are never looked up).
    """

    def __init__(
        self,
        identity: msg.AgentIdentity,
        store: BindingStore,
        random: RandomSource,
        config: HomeAgentConfig | None = None,
        mobile_nodes: Iterable[MobileNodeRecord] = (),
        plain_nodes: Iterable[PlainNodeRecord] = (),
        fa_keys: dict[int, PublicKeys] | None = None,
    ) -> None:
        self.identity = identity
        self.config = config or HomeAgentConfig()
        self.counters = Counters()
        self._store = store
        self._random = random
        self._mobiles_by_user: dict[int, MobileNodeRecord] = {}
        self._mobiles_by_home: dict[ipaddress.IPv4Address, MobileNodeRecord] = {}
        for record in mobile_nodes:
            self._mobiles_by_user[record.user_id] = record
            self._mobiles_by_home[record.home_address] = record
        self._plain: dict[ipaddress.IPv4Address, PlainNodeRecord] = {
            p.home_address: p for p in plain_nodes
        }
        self._static_fa_keys: dict[int, PublicKeys] = dict(fa_keys or {})
        self._fa_keys: dict[int, _CachedKey] = {}
        self._lookups_in_flight = 0
        self._bindings: dict[ipaddress.IPv4Address, Binding] = store.load_bindings()
        self.errors = ErrorReporter(self.config.control_port, self.counters)
        """MVPN error messages (draft 4) beside the reply codes, rate-limited."""
        self.dataplane = DataPlane(NodeKind.HA)
        """The relay sessions of the CN sessions this HA authorised (docs/protocol.md 8.1)."""
        self.sessions = HaSessions(self, store, random)
        """The correspondent-session logic (docs/protocol.md 7.2, 7.3)."""

    def control_handlers(self) -> dict[int, ControlHandler]:
        """The control Types this HA handles itself (docs/protocol.md 7): Request
        Communication from correspondent nodes."""
        return {int(ControlType.REQUEST_COMMUNICATION): self.sessions.request_communication}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """After (re)start: drop the bindings that expired while down, arm the others'
        expiry timers."""
        effects: list[Effect] = []
        for home, binding in sorted(self._bindings.items()):
            if binding.expired(now):
                effects += self._remove(home, now, "expired while the home agent was down")
            else:
                effects.append(self._expiry_timer(binding, now))
        effects.append(
            info("home agent serving {bindings} bindings", bindings=len(self._bindings))
        )
        return effects

    def bindings(self) -> dict[ipaddress.IPv4Address, Binding]:
        """A copy of the binding cache."""
        return dict(self._bindings)

    def binding(self, home_address: ipaddress.IPv4Address) -> Binding | None:
        """The current binding of ``home_address``, if any."""
        return self._bindings.get(home_address)

    def mobile_node(self, home_address: ipaddress.IPv4Address) -> MobileNodeRecord | None:
        """The MVPN mobile node with this home address, if it is one of ours."""
        return self._mobiles_by_home.get(home_address)

    def fa_key(self, fa_id: int, now: float) -> PublicKeys | None:
        """``Ku_FA`` when configured or cached and fresh (shared by first contacts and
        session set-up); ``None`` means a TC lookup is needed."""
        return self._cached_fa_key(fa_id, now)

    def fa_certificate(
        self, fa_id: int, answer: NodeCertificate | Exception, now: float, reference: int
    ) -> PublicKeys | tuple[MvpnError, str]:
        """Check the TC's answer for ``Ku_FA`` and cache the key (docs/protocol.md 7.7):
        the key, or the MVPN error code and a reason when it is not usable."""
        if isinstance(answer, Exception):
            error = _lookup_error(answer, reference)
            return error.code, f"no key for FA {fa_id:#x}: {type(answer).__name__}"
        problem = self._certificate_problem(answer, fa_id, now)
        if problem is not None:
            return _lookup_error(answer, reference).code, problem
        self._cache_fa_key(fa_id, answer.public_keys, now)
        return answer.public_keys

    def status(self, now: float) -> dict[str, object]:
        """What ``mvpn status`` shows: every binding (home address, care-of address, FA,
        lifetime left, key age) and the counters."""
        rows: list[dict[str, object]] = []
        for home, b in sorted(self._bindings.items()):
            rows.append(
                {
                    "home_address": str(home),
                    "care_of": str(b.care_of),
                    "fa_id": b.fa_id,
                    "fa_address": b.fa_address,
                    "mode": "mvpn" if b.keys is not None else "rfc5944",
                    "lifetime": b.lifetime,
                    "lifetime_left": max(0.0, round(b.expires_at - now, 1)),
                    "key_age": round(now - b.keys.created_at, 1) if b.keys else None,
                    "spi": b.keys.spi if b.keys else b.plain_spi,
                }
            )
        return {
            "role": "ha",
            "node_id": self.identity.node_id,
            "address": str(self.identity.address),
            "bindings": rows,
            "fa_keys_cached": len(self._fa_keys),
            "sessions": len(self.dataplane),
            "counters": self.counters.snapshot(),
        }

    # --- input ----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """Handle one datagram from the registration port (UDP 434)."""
        self.counters.increment("datagrams")
        if len(data) > self.config.max_datagram:
            return self._drop("oversize", source, f"{len(data)} bytes")
        if not data or data[0] != REGISTRATION_REQUEST_TYPE:
            return self._drop("not_a_request", source, f"type {data[0] if data else 'none'}")
        try:
            request = RegistrationRequest.decode(data)
        except WireError as e:
            return self._drop("malformed", source, str(e))
        self.counters.increment("requests")
        try:
            if msg.is_first_contact(request):
                return self._first_contact(data, source, now)
            return self._symmetric(data, source, now, request)
        except _Denied as denied:
            return self._deny(request, source, denied, now)
        except Exception as e:  # never let one datagram stop the service
            return self._internal_error(source, e)

    # --- first contact (docs/protocol.md 5.2, 5.3) -----------------------------------------

    def _first_contact(self, data: bytes, source: Address, now: float) -> list[Effect]:
        try:
            relayed = msg.parse_relayed_first_contact(data)
        except msg.RegistrationError as e:
            raise _Denied(e.code, e.reason, self._bare(data, e.code)) from None
        fa_public = self._cached_fa_key(relayed.fa_id, now)
        if fa_public is not None:
            return self._first_contact_with_key(relayed, source, fa_public, now)
        if self._lookups_in_flight >= self.config.max_lookups_in_flight:
            return self._drop("lookup_backlog", source, f"FA {relayed.fa_id:#x}")
        self._lookups_in_flight += 1
        self.counters.increment("tc_lookups")

        def then(result: NodeCertificate | Exception) -> list[Effect]:
            self._lookups_in_flight -= 1
            return self._fa_key_arrived(relayed, source, result, now)

        return [
            debug("looking up the key of FA {fa_id}", fa_id=f"{relayed.fa_id:#x}"),
            Lookup(relayed.fa_id, then),
        ]

    def _cached_fa_key(self, fa_id: int, now: float) -> PublicKeys | None:
        if fa_id in self._static_fa_keys:
            return self._static_fa_keys[fa_id]
        cached = self._fa_keys.get(fa_id)
        if cached is None:
            return None
        if now - cached.fetched_at >= self.config.fa_key_cache_lifetime:
            del self._fa_keys[fa_id]
            return None
        return cached.public

    def _fa_key_arrived(
        self,
        relayed: msg.RelayedFirstContact,
        source: Address,
        result: NodeCertificate | Exception,
        now: float,
    ) -> list[Effect]:
        request = relayed.request
        code = ReplyCode.HA_FA_FAILED_AUTHENTICATION
        mn_nonce = relayed.mobile_info.mn_nonce
        try:
            if isinstance(result, Exception):
                raise _Denied(
                    code,
                    f"no key for FA {relayed.fa_id:#x}: {type(result).__name__}: {result}",
                    self._bare(request, code),
                    _lookup_error(result, mn_nonce),
                )
            problem = self._certificate_problem(result, relayed.fa_id, now)
            if problem is not None:
                raise _Denied(
                    code, problem, self._bare(request, code), _lookup_error(result, mn_nonce)
                )
            self._cache_fa_key(relayed.fa_id, result.public_keys, now)
            return self._first_contact_with_key(relayed, source, result.public_keys, now)
        except _Denied as denied:
            # The answer carries no time: the request's arrival stands for now.
            return self._deny(request, source, denied, now)
        except Exception as e:  # never let one lookup result stop the service
            return self._internal_error(source, e)

    def _cache_fa_key(self, fa_id: int, public: PublicKeys, now: float) -> None:
        if fa_id not in self._fa_keys and len(self._fa_keys) >= self.config.max_fa_keys:
            # Forget the oldest entry: a bounded cache, refilled by lookups.
            oldest = min(self._fa_keys, key=lambda k: self._fa_keys[k].fetched_at)
            del self._fa_keys[oldest]
        self._fa_keys[fa_id] = _CachedKey(public, now)

    @staticmethod
    def _certificate_problem(cert: NodeCertificate, fa_id: int, now: float) -> str | None:
        if cert.role is not Role.FA or cert.node_id != fa_id:
            return f"certificate for {fa_id:#x} names {cert.role.name} {cert.node_id:#x}"
        when = datetime.datetime.fromtimestamp(now, datetime.UTC)
        if not cert.not_before <= when <= cert.not_after:
            return f"certificate of FA {fa_id:#x} is not valid now"
        return None

    def _first_contact_with_key(
        self,
        relayed: msg.RelayedFirstContact,
        source: Address,
        fa_public: PublicKeys,
        now: float,
    ) -> list[Effect]:
        request = relayed.request
        try:
            self.counters.increment("pk_operations", 2)
            foreign = msg.open_foreign_info(self.identity, relayed, fa_public)
        except msg.RegistrationError as e:
            raise _Denied(e.code, e.reason, self._bare(request, e.code)) from None
        fa_id, fa_nonce = foreign.fa_id, foreign.fa_nonce
        clear_nonce = relayed.mobile_info.mn_nonce

        def denial(code: int, reason: str, mobile: tuple[int, PublicKeys] | None) -> _Denied:
            identification = self._reply_identification(request, code, now)
            self.counters.increment("pk_operations", 4 if mobile else 2)
            reply = msg.build_home_info_reply(
                self.identity,
                request,
                code,
                0,
                identification,
                fa_id,
                fa_public,
                fa_nonce,
                clear_nonce,
                mobile=(mobile[0], mobile[1], b"") if mobile else None,
            )
            return _Denied(code, reason, reply)

        try:
            self.counters.increment("pk_operations", 2)
            mobile, mn_public = msg.open_mobile_info(self.identity, relayed, self._mn_public)
        except msg.RegistrationError as e:
            raise denial(e.code, e.reason, None) from None
        record = self._mobiles_by_user[mobile.user_id]
        known = (mobile.user_id, mn_public)
        if record.home_address != request.home_address:
            raise denial(
                ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED,
                f"home address {request.home_address} is not MN {mobile.user_id:#x}'s",
                known,
            )
        problem = self._identification_problem(request)
        if problem is None:
            problem = self._timestamp_problem(request, now)
        if problem is not None:
            raise denial(ReplyCode.HA_IDENTIFICATION_MISMATCH, problem, known)
        if request.lifetime == 0:
            raise denial(
                ReplyCode.HA_POORLY_FORMED_REQUEST, "a first contact cannot deregister", known
            )
        home = request.home_address
        previous = self._bindings.get(home)
        if previous is None and len(self._bindings) >= self.config.max_bindings:
            raise denial(
                ReplyCode.HA_INSUFFICIENT_RESOURCES,
                f"binding cache full ({self.config.max_bindings})",
                known,
            )
        lifetime = self._grant(request.lifetime)
        try:
            spi = self._store.allocate_spi()
        except SpiExhausted as e:
            raise denial(ReplyCode.HA_INSUFFICIENT_RESOURCES, str(e), known) from None
        keys = RegistrationKeys.generate(self._random, spi, now, float(lifetime))
        binding = Binding(
            home_address=home,
            care_of=request.care_of_address,
            lifetime=lifetime,
            registered_at=now,
            identification=request.identification,
            fa_id=fa_id,
            fa_address=source[0],
            mn_id=mobile.user_id,
            keys=keys,
        )
        self._store.put_binding(binding)
        self._bindings[home] = binding
        self.counters.increment("pk_operations", 4)
        reply = msg.build_home_info_reply(
            self.identity,
            request,
            ReplyCode.ACCEPTED,
            lifetime,
            request.identification,
            fa_id,
            fa_public,
            fa_nonce,
            mobile.mn_nonce,
            keys,
            (mobile.user_id, mn_public, mobile.mn_auth_key),
        )
        self.counters.increment("accepted")
        self.counters.increment("accepted.first_contact")
        fields = self._fields(binding)
        effects: list[Effect] = [
            info(
                "registered {home_address} at {care_of} through FA {fa_id} for {lifetime} s",
                **fields,
            ),
        ]
        if previous is not None and previous.care_of != binding.care_of:
            self.counters.increment("moves")
            effects.append(Event("moved", {**fields, "previous_care_of": str(previous.care_of)}))
        effects += [
            Event("registered", {**fields, "kind": "first_contact"}),
            self._expiry_timer(binding, now),
            Send(reply, source, Channel.REGISTRATION),
        ]
        return effects

    def _mn_public(self, user_id: int) -> PublicKeys | None:
        record = self._mobiles_by_user.get(user_id)
        return record.public if record is not None else None

    # --- re-registration and plain Mobile IP (docs/protocol.md 6) ---------------------------

    def _symmetric(
        self, data: bytes, source: Address, now: float, request: RegistrationRequest
    ) -> list[Effect]:
        try:
            parsed = msg.parse_reregistration(data, request)
        except msg.RegistrationError as e:
            raise _Denied(e.code, e.reason, self._bare(data, e.code)) from None
        request = parsed.request
        home = request.home_address
        plain = self._plain.get(home)
        if plain is not None:
            return self._plain_registration(parsed, plain, source, now)
        code = ReplyCode.HA_MN_FAILED_AUTHENTICATION
        # The bare 131s below are what MVPN error 2 is for: the FA forwards nothing to the
        # MN (it cannot authenticate a bare reply), so the FA is told why.
        session = _Error(
            MvpnError.SESSION_KEY_NOT_VALID,
            parsed.spi,
            "No valid registration security association under that SPI.",
        )
        binding = self._bindings.get(home)
        if binding is None or binding.keys is None:
            raise _Denied(
                code, f"no registration SA for {home}", self._bare(request, code), session
            )
        keys = binding.keys_for_spi(parsed.spi, now)
        if keys is None:
            raise _Denied(
                code,
                f"SPI {parsed.spi} is not {home}'s registration SA",
                self._bare(request, code),
                session,
            )
        if keys.expired(now):
            raise _Denied(
                code,
                f"registration keys of {home} have expired",
                self._bare(request, code),
                session,
            )
        try:
            msg.check_reregistration(parsed, keys, self.config.require_fa_auth)
        except msg.RegistrationError as e:
            raise _Denied(e.code, e.reason, self._bare(request, e.code)) from None
        fa_auth = parsed.fa_auth is not None

        def denial(reply_code: int, reason: str) -> _Denied:
            identification = self._reply_identification(request, reply_code, now)
            reply = msg.build_reregistration_reply(
                self.identity,
                request,
                reply_code,
                0,
                identification,
                keys,
                self._random,
                fa_auth=fa_auth,
            )
            return _Denied(reply_code, reason, reply)

        problem = self._identification_problem(request) or self._timestamp_problem(request, now)
        if problem is not None:
            raise denial(ReplyCode.HA_IDENTIFICATION_MISMATCH, problem)
        if request.care_of_address != binding.care_of:
            raise denial(
                ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED,
                f"care-of address changed to {request.care_of_address} without a first contact",
            )
        if request.lifetime == 0:
            reply = msg.build_reregistration_reply(
                self.identity,
                request,
                ReplyCode.ACCEPTED,
                0,
                request.identification,
                keys,
                self._random,
                fa_auth=fa_auth,
            )
            return self._deregister(binding, request, reply, source, now)
        lifetime = self._grant(request.lifetime)
        refresh = self._refresh_for(binding, keys, lifetime, now)
        updated = dataclasses.replace(
            binding,
            lifetime=lifetime,
            registered_at=now,
            identification=request.identification,
        )
        if refresh is not None and refresh is not binding.keys:
            updated = dataclasses.replace(
                updated,
                keys=refresh,
                previous_keys=keys,
                previous_valid_until=now + self.config.previous_keys_grace,
            )
        self._store.put_binding(updated)
        self._bindings[home] = updated
        reply = msg.build_reregistration_reply(
            self.identity,
            request,
            ReplyCode.ACCEPTED,
            lifetime,
            request.identification,
            keys,
            self._random,
            refresh=refresh,
            fa_auth=fa_auth,
        )
        self.counters.increment("accepted")
        self.counters.increment("accepted.reregistration")
        fields = self._fields(updated)
        effects: list[Effect] = [
            debug("re-registered {home_address} at {care_of} for {lifetime} s", **fields)
        ]
        if refresh is not None:
            self.counters.increment("key_refreshes")
            effects.append(debug("refreshed the registration keys of {home_address}", **fields))
        effects += [
            Event("reregistered", {**fields, "refreshed": refresh is not None}),
            self._expiry_timer(updated, now),
            Send(reply, source, Channel.REGISTRATION),
        ]
        return effects

    def _refresh_for(
        self, binding: Binding, used: RegistrationKeys, lifetime: int, now: float
    ) -> RegistrationKeys | None:
        """The keys a Key Refresh extension must carry, or ``None``.

        A request under the previous SA means the MN never got the last refresh: send the
        current keys again. Otherwise refresh when the keys are older than the configured
        fraction of their lifetime, or would expire before the renewed binding.
        """
        current = binding.keys
        assert current is not None
        if used is not current:
            return current
        fraction = self.config.key_refresh_fraction
        if fraction is None:
            return None
        old = now - current.created_at >= fraction * current.lifetime
        if not old and current.expires_at >= now + lifetime:
            return None
        spi = self._store.allocate_spi()
        return RegistrationKeys.generate(self._random, spi, now, float(lifetime))

    def _plain_registration(
        self,
        parsed: msg.ReRegistration,
        plain: PlainNodeRecord,
        source: Address,
        now: float,
    ) -> list[Effect]:
        request = parsed.request
        try:
            msg.check_plain_request(parsed, plain.spi, plain.key)
        except msg.RegistrationError as e:
            raise _Denied(e.code, e.reason, self._bare(request, e.code)) from None

        def reply(code: int, lifetime: int, identification: int) -> bytes:
            return msg.build_plain_reply(
                self.identity, request, code, lifetime, identification, plain.spi, plain.key
            )

        problem = self._identification_problem(request) or self._timestamp_problem(request, now)
        if problem is not None:
            code = ReplyCode.HA_IDENTIFICATION_MISMATCH
            raise _Denied(
                code, problem, reply(code, 0, self._reply_identification(request, code, now))
            )
        home = request.home_address
        binding = self._bindings.get(home)
        if request.lifetime == 0:
            data = reply(ReplyCode.ACCEPTED, 0, request.identification)
            if binding is None:
                self._store.set_last_identification(home, request.identification)
                self.counters.increment("accepted")
                self.counters.increment("deregistered")
                return [
                    info("deregistered {home_address} (no binding)", home_address=str(home)),
                    Send(data, source, Channel.REGISTRATION),
                ]
            return self._deregister(binding, request, data, source, now)
        if binding is None and len(self._bindings) >= self.config.max_bindings:
            code = ReplyCode.HA_INSUFFICIENT_RESOURCES
            raise _Denied(code, "binding cache full", reply(code, 0, request.identification))
        lifetime = self._grant(request.lifetime)
        updated = Binding(
            home_address=home,
            care_of=request.care_of_address,
            lifetime=lifetime,
            registered_at=now,
            identification=request.identification,
            fa_address=source[0],
            plain_spi=plain.spi,
        )
        self._store.put_binding(updated)
        self._bindings[home] = updated
        self.counters.increment("accepted")
        self.counters.increment("accepted.plain")
        fields = self._fields(updated)
        return [
            info("registered plain node {home_address} at {care_of} for {lifetime} s", **fields),
            Event("registered", {**fields, "kind": "rfc5944"}),
            self._expiry_timer(updated, now),
            Send(
                reply(ReplyCode.ACCEPTED, lifetime, request.identification),
                source,
                Channel.REGISTRATION,
            ),
        ]

    # --- bindings -------------------------------------------------------------------------

    def _deregister(
        self,
        binding: Binding,
        request: RegistrationRequest,
        reply: bytes,
        source: Address,
        now: float,
    ) -> list[Effect]:
        home = binding.home_address
        self._store.remove_binding(home, request.identification)
        del self._bindings[home]
        self.counters.increment("accepted")
        self.counters.increment("deregistered")
        fields = self._fields(binding)
        return [
            info("deregistered {home_address} (was at {care_of})", **fields),
            Event("deregistered", fields),
            CancelTimer(self._timer_name(home)),
            *self.sessions.binding_removed(home, now, "deregistered"),
            Send(reply, source, Channel.REGISTRATION),
        ]

    def _expiry_timer(self, binding: Binding, now: float) -> StartTimer:
        home = binding.home_address

        def fire(at: float) -> list[Effect]:
            return self._expire(home, at)

        return StartTimer(self._timer_name(home), max(0.0, binding.expires_at - now), fire)

    @staticmethod
    def _timer_name(home: ipaddress.IPv4Address) -> str:
        return f"ha-binding-{home}"

    def _expire(self, home: ipaddress.IPv4Address, now: float) -> list[Effect]:
        binding = self._bindings.get(home)
        if binding is None:
            return []
        if not binding.expired(now):
            # Renewed meanwhile and this timer was not replaced (a shell that fired late).
            return [self._expiry_timer(binding, now)]
        return self._remove(home, now, "lifetime ended")

    def _remove(self, home: ipaddress.IPv4Address, now: float, reason: str) -> list[Effect]:
        binding = self._bindings.pop(home)
        self._store.remove_binding(home)
        self.counters.increment("expired")
        fields = {**self._fields(binding), "reason": reason}
        return [
            info("binding of {home_address} at {care_of} removed: {reason}", **fields),
            Event("expired", fields),
            *self.sessions.binding_removed(home, now, reason),
        ]

    def _grant(self, requested: int) -> int:
        return min(requested, self.config.max_lifetime)

    # --- Identification (RFC 5944 5.7.1, timestamps) ---------------------------------------

    def _identification_problem(self, request: RegistrationRequest) -> str | None:
        last = self._store.last_identification(request.home_address)
        if last is not None and request.identification <= last:
            return "Identification is not newer than the last one accepted (replay)"
        return None

    def _timestamp_problem(self, request: RegistrationRequest, now: float) -> str | None:
        skew = Identification.from_int(request.identification).skew(now)
        if abs(skew) > self.config.identification_tolerance:
            return f"Identification timestamp is {skew:+.1f} s off the home agent's clock"
        return None

    @staticmethod
    def _reply_identification(request: RegistrationRequest, code: int, now: float) -> int:
        """RFC 5944 5.7.1: a 133 carries the HA's time in the high half so that the MN can
        resynchronise; every other reply echoes the request's Identification."""
        if code != ReplyCode.HA_IDENTIFICATION_MISMATCH:
            return request.identification
        mine = Identification.from_unix_time(now)
        return int(Identification.from_int(request.identification).reply(mine.high))

    # --- denials, drops and fields ----------------------------------------------------------

    def _bare(self, request: RegistrationRequest | bytes, code: int) -> bytes | None:
        if isinstance(request, bytes):
            try:
                request = RegistrationRequest.decode(request)
            except WireError:
                return None
        return msg.build_bare_reply(request, code)

    def _deny(
        self, request: RegistrationRequest, source: Address, denied: _Denied, now: float
    ) -> list[Effect]:
        self.counters.increment(f"denied.{int(denied.code)}")
        effects: list[Effect] = [
            warn(
                "denied {home_address} from {source} with {code}: {reason}",
                home_address=str(request.home_address),
                care_of=str(request.care_of_address),
                source=f"{source[0]}:{source[1]}",
                code=int(denied.code),
                reason=denied.reason,
            ),
            Event(
                "denied",
                {"home_address": str(request.home_address), "code": int(denied.code)},
            ),
        ]
        if denied.reply is not None:
            effects.append(Send(denied.reply, source, Channel.REGISTRATION))
        error = denied.error
        if error is not None:
            effects += self.errors.report(
                source[0], error.code, error.reference, error.reason, now
            )
        return effects

    def _drop(self, reason: str, source: Address, detail: str) -> list[Effect]:
        self.counters.increment(f"drops.{reason}")
        return [
            warn(
                "dropped a datagram from {source}: {reason} ({detail})",
                source=f"{source[0]}:{source[1]}",
                reason=reason,
                detail=detail,
            )
        ]

    def _internal_error(self, source: Address, error: Exception) -> list[Effect]:
        self.counters.increment("drops.internal_error")
        return [
            Log(
                "error",
                "internal error on a datagram from {source}: {reason}",
                {"source": f"{source[0]}:{source[1]}", "reason": f"{type(error).__name__}"},
            )
        ]

    @staticmethod
    def _fields(binding: Binding) -> dict[str, object]:
        return {
            "home_address": str(binding.home_address),
            "care_of": str(binding.care_of),
            "fa_id": f"{binding.fa_id:#x}" if binding.fa_id is not None else None,
            "lifetime": binding.lifetime,
        }


def _lookup_error(result: NodeCertificate | Exception, mn_nonce: int) -> _Error:
    """The MVPN error (draft 4) for a ``Ku_FA`` lookup that gave no usable key
    (docs/protocol.md 7.7): 6 when the TC cannot be reached; 4 when it knows no valid
    certificate for the FA (an expired one is no better than none), or the certificate is
    revoked, invalid, another node's or not valid now; 7 for any other failure."""
    if isinstance(result, TrustedCentreUnreachable):
        return _Error(
            MvpnError.TRUSTED_CENTRE_NOT_FOUND,
            mn_nonce,
            "The Trusted Centre could not be reached.",
        )
    if isinstance(
        result, UnknownNode | InvalidCertificate | pki_errors.CertificateError
    ) or not isinstance(result, Exception):
        return _Error(
            MvpnError.PUBLIC_KEY_NOT_VALID,
            mn_nonce,
            "The foreign agent's public key is not valid.",
        )
    return _Error(
        MvpnError.OTHER, mn_nonce, "The foreign agent's public key could not be obtained."
    )
