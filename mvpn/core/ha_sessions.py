"""The home agent's part of correspondent sessions, sans I/O (draft 3.4, 3.5, 6.1, 6.2;
docs/protocol.md 7.2, 7.3, 7.6a, 7.7, 10, 11).

:class:`HaSessions` handles a Request Communication (control Type 1) from a correspondent
node and returns :mod:`~mvpn.core.effects`. In order, cheapest and least revealing first:

1. bounded work: at most :data:`~mvpn.wire.control.MAX_CONTROL_SIZE` bytes, decoded without
   cryptography (:func:`~mvpn.core.correspondent.peek_request_communication`);
2. ``Ku_CN``: from the HA's cache, else a Trusted Centre :class:`~mvpn.core.effects.Lookup`
   of the clear CN ID. Before a lookup the request must pass every check that needs no
   ``Ku_CN`` (the seal opens, the clear fields match V, the timestamp is fresh), so that
   garbage never costs a TC round trip; lookups in flight are bounded. The certificate must
   be a correspondent node's (:attr:`~mvpn.pki.certificate.Role.CN`), of that ID, valid now;
3. :func:`~mvpn.core.correspondent.open_request_communication` (signature, group, Sec Par);
4. the replay cache: a (CN ID, CN Nonce) pair seen before is refused. A verified pair stays
   in the cache until its timestamp leaves the window, even when the request is refused
   later, so that it can never be replayed once the refusal's cause is gone;
5. the MN is one of ours and registered: a current MVPN binding through an FA with
   registration keys that have not expired (error 7, "mobile node not registered": the
   draft has no closer code);
6. ``Ku_FA`` of the binding's FA: the HA's FA key cache (shared with first contacts), else a
   TC lookup; after it the binding is read again (the MN may have moved meanwhile);
7. a fresh SPI from the store's high-water mark (shared with registration SAs: never reused,
   not even across restarts), a fresh data authentication key, the Correspondent
   Information form 0 to the FA's control port, and a relay
   :class:`~mvpn.core.dataplane.DataSession` in the HA's data plane.

Every refusal is an Error message (:mod:`mvpn.core.errors`, rate-limited) to the CN's
control port, a warning with the reason, and the counters ``sessions.refused`` and
``sessions.refused.<code>``; nothing is installed and no SPI is spent. The Error's Reference
is the CN Nonce whenever V could be opened (the CN matches errors to its requests by it),
else 0.

The HA cannot learn which cipher the MN chooses (only the FA and the CN see the choice), so
its relay session carries the cipher mvpn itself would choose from the CN's offer: the best
of the CN's Sec Par AND :data:`~mvpn.crypto.negotiation.LOCAL_FLAGS`, which is the MN's
choice whenever the FA and the MN offer what mvpn offers (the default).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mvpn.core.correspondent import (
    PK_OPERATIONS,
    CorrespondentError,
    MalformedMessage,
    OpenedRequest,
    UnknownCorrespondent,
    build_correspondent_info,
    new_data_auth_key,
    open_request_communication,
    peek_request_communication,
)
from mvpn.core.dataplane import DataSession
from mvpn.core.effects import (
    Address,
    Channel,
    Effect,
    Event,
    Log,
    Lookup,
    Send,
    debug,
    info,
    warn,
)
from mvpn.core.session_expiry import SessionExpiry
from mvpn.core.store import BindingStore, SpiExhausted
from mvpn.crypto.errors import CryptoError
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS, decode_flags, negotiate
from mvpn.crypto.random import RandomSource
from mvpn.crypto.suite import open_sealed
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.tc_errors import TrustedCentreUnreachable
from mvpn.wire.codes import EncrSecPar, MvpnError, describe
from mvpn.wire.control import MAX_CONTROL_SIZE
from mvpn.wire.errors import WireError
from mvpn.wire.plain import RequestCommunicationInfo, split_signed
from mvpn.wire.registration import Identification

if TYPE_CHECKING:
    from mvpn.core.ha import HomeAgent

__all__ = ["EXPIRY_TIMER", "HaSessions"]

EXPIRY_TIMER = "ha-sessions-expiry"
"""The one timer that expires the HA's data sessions (at the earliest expiry)."""

_REPLAY_WINDOW = 30.0
"""A request is acceptable while its timestamp is within 30 s of the HA's clock
(docs/protocol.md 7.2, :data:`~mvpn.core.correspondent.TIMESTAMP_WINDOW`): its replay-cache
entry is needed until then and no longer."""


@dataclass
class _CachedKey:
    public: PublicKeys
    fetched_at: float


class _Refused(Exception):
    """Internal: ``error`` refuses the request; ``reference`` is its CN Nonce when known."""

    def __init__(self, error: CorrespondentError, reference: int | None) -> None:
        super().__init__(error.reason)
        self.error = error
        self.reference = reference


def _refusal(reason: str, code: MvpnError = MvpnError.OTHER) -> CorrespondentError:
    return CorrespondentError(reason, code)


def _peer(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


class HaSessions:
    """Request Communication at the home agent (docs/protocol.md 7.2, 7.3).

    :param agent: the :class:`~mvpn.core.ha.HomeAgent` whose bindings, mobile nodes, FA key
        cache, counters, error reporter and :attr:`~mvpn.core.ha.HomeAgent.dataplane` this
        uses.
    :param store: the binding store (SPIs come from its high-water mark).
    :param random: the source of data authentication keys and seal randomness.
    """

    def __init__(self, agent: HomeAgent, store: BindingStore, random: RandomSource) -> None:
        self._agent = agent
        self._store = store
        self._random = random
        self._counters = agent.counters
        self.plane = agent.dataplane
        self._expiry = SessionExpiry(self.plane, self._counters, EXPIRY_TIMER)
        self._cn_keys: dict[int, _CachedKey] = {}
        self._replay: dict[tuple[int, int], float] = {}
        """(CN ID, CN Nonce) -> until when the pair must be remembered."""
        self._lookups_in_flight = 0

    # --- input ----------------------------------------------------------------------------

    def request_communication(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """The control handler of Type 1 (a :data:`~mvpn.core.errors.ControlHandler`)."""
        self._counters.increment("sessions.requests")
        return self._guard(data, source, now, lambda: self._request(data, source, now))

    def _guard(
        self, data: bytes, source: Address, now: float, action: Callable[[], list[Effect]]
    ) -> list[Effect]:
        """Run ``action``: a refusal becomes an Error, anything unexpected an error log; no
        exception reaches the shell."""
        try:
            return action()
        except _Refused as refused:
            return self._refuse(refused.error, data, source, now, refused.reference)
        except CorrespondentError as error:
            return self._refuse(error, data, source, now, None)
        except Exception as e:
            self._counters.increment("sessions.internal_error")
            return [
                Log(
                    "error",
                    "internal error on a session request from {source}: {reason}",
                    {"source": _peer(source), "reason": type(e).__name__},
                )
            ]

    def _request(self, data: bytes, source: Address, now: float) -> list[Effect]:
        if len(data) > MAX_CONTROL_SIZE:
            raise MalformedMessage(f"{len(data)} bytes, more than {MAX_CONTROL_SIZE}")
        request = peek_request_communication(data)
        cn_id = request.cn_id
        cached = self._cached_cn_key(cn_id, now)
        if cached is not None:
            return self._opened(data, source, cn_id, cached, now)
        # Every check that needs no Ku_CN, before a TC round trip: it can only end in
        # UnknownCorrespondent (all passed) or the refusal of an earlier check.
        with contextlib.suppress(UnknownCorrespondent):
            open_request_communication(self._agent.identity, data, lambda _: None, now)
        if self._lookups_in_flight >= self._agent.config.max_lookups_in_flight:
            # Not a refusal: the CN retries, and a flood earns no Error messages.
            self._counters.increment("sessions.drops.lookup_backlog")
            return [
                warn(
                    "dropped a session request from {source}: too many lookups in flight",
                    source=_peer(source),
                )
            ]
        self._lookups_in_flight += 1
        self._counters.increment("sessions.tc_lookups")

        def then(answer: NodeCertificate | Exception) -> list[Effect]:
            self._lookups_in_flight -= 1
            # The answer carries no time: the request's arrival stands for now.
            return self._guard(
                data, source, now, lambda: self._cn_key_arrived(data, source, cn_id, answer, now)
            )

        return [
            debug("looking up the key of CN {cn_id}", cn_id=f"{cn_id:#x}"),
            Lookup(cn_id, then),
        ]

    # --- Ku_CN ------------------------------------------------------------------------------

    def _cached_cn_key(self, cn_id: int, now: float) -> PublicKeys | None:
        cached = self._cn_keys.get(cn_id)
        if cached is None:
            return None
        if now - cached.fetched_at >= self._agent.config.cn_key_cache_lifetime:
            del self._cn_keys[cn_id]
            return None
        return cached.public

    def _cn_key_arrived(
        self,
        data: bytes,
        source: Address,
        cn_id: int,
        answer: NodeCertificate | Exception,
        now: float,
    ) -> list[Effect]:
        if isinstance(answer, TrustedCentreUnreachable):
            raise _refusal(
                "The Trusted Centre could not be reached.", MvpnError.TRUSTED_CENTRE_NOT_FOUND
            )
        if isinstance(answer, Exception):
            raise UnknownCorrespondent(
                f"no valid certificate for CN {cn_id:#x} ({type(answer).__name__})"
            )
        if answer.role is not Role.CN or answer.node_id != cn_id:
            raise UnknownCorrespondent(
                f"certificate for CN {cn_id:#x} names {answer.role.name} {answer.node_id:#x}"
            )
        when = datetime.datetime.fromtimestamp(now, datetime.UTC)
        if not answer.not_before <= when <= answer.not_after:
            raise UnknownCorrespondent(f"certificate of CN {cn_id:#x} is not valid now")
        config = self._agent.config
        if cn_id not in self._cn_keys and len(self._cn_keys) >= config.max_cn_keys:
            oldest = min(self._cn_keys, key=lambda k: self._cn_keys[k].fetched_at)
            del self._cn_keys[oldest]
        self._cn_keys[cn_id] = _CachedKey(answer.public_keys, now)
        return self._opened(data, source, cn_id, answer.public_keys, now)

    # --- the verified request ---------------------------------------------------------------

    def _opened(
        self, data: bytes, source: Address, cn_id: int, cn_public: PublicKeys, now: float
    ) -> list[Effect]:
        self._counters.increment("pk_operations", PK_OPERATIONS["open_request_communication"])
        opened = open_request_communication(
            self._agent.identity, data, lambda i: cn_public if i == cn_id else None, now
        )
        reference = opened.v.cn_nonce
        try:
            self._remember(opened, now)
            return self._authorise(opened, source, now, None)
        except CorrespondentError as error:
            raise _Refused(error, reference) from None

    def _remember(self, opened: OpenedRequest, now: float) -> None:
        """Enter the request's (CN ID, CN Nonce) in the replay cache, or refuse it."""
        key = opened.replay_key
        until = self._replay.get(key)
        if until is not None and until > now:
            self._counters.increment("sessions.replays")
            raise _refusal(f"replayed CN Nonce {opened.v.cn_nonce:#010x} of CN {key[0]:#x}")
        if key not in self._replay and len(self._replay) >= self._agent.config.replay_cache_size:
            for old in [k for k, t in self._replay.items() if t <= now]:
                del self._replay[old]
            if len(self._replay) >= self._agent.config.replay_cache_size:
                raise _refusal("replay cache full: too many session requests")
        stamp = Identification.from_int(opened.v.timestamp).unix_time()
        self._replay[key] = max(stamp, now) + _REPLAY_WINDOW

    def _authorise(
        self,
        opened: OpenedRequest,
        source: Address,
        now: float,
        known_fa: tuple[int, PublicKeys] | None,
    ) -> list[Effect]:
        """Steps 5 to 7; entered again when a ``Ku_FA`` lookup answers (``known_fa``)."""
        agent = self._agent
        v = opened.v
        home = v.mn_addr
        record = agent.mobile_node(home)
        if record is None:
            raise _refusal(f"mobile node not registered: {home} is not served by this HA")
        binding = agent.binding(home)
        if (
            binding is None
            or binding.keys is None
            or binding.fa_id is None
            or binding.expired(now)
            or binding.keys.expired(now)
        ):
            raise _refusal(f"mobile node not registered: {home} has no current MVPN binding")
        if len(self.plane) >= agent.config.max_sessions:
            raise _refusal(f"session table full ({agent.config.max_sessions})")
        fa_id = binding.fa_id
        fa_public = known_fa[1] if known_fa is not None and known_fa[0] == fa_id else None
        if fa_public is None:
            fa_public = agent.fa_key(fa_id, now)
        if fa_public is None:
            return self._look_up_fa(opened, source, fa_id, now)
        try:
            spi = self._store.allocate_spi()
        except SpiExhausted as e:
            raise _refusal(str(e)) from None
        data_auth_key = new_data_auth_key(self._random)
        message = build_correspondent_info(
            agent.identity,
            opened,
            spi,
            data_auth_key,
            record.user_id,
            record.public,
            fa_id,
            fa_public,
            binding.keys.auth_key,
        )
        self._counters.increment("pk_operations", PK_OPERATIONS["build_correspondent_info"])
        _, encr = negotiate(v.sec_par, LOCAL_FLAGS)
        # The MN picks among what the CN and the FA offer; the HA never sees its choice, so
        # it passes every cipher both the CN and mvpn offer (the hop tag still decides).
        offered = decode_flags(v.sec_par)[1] & decode_flags(LOCAL_FLAGS)[1]
        self.plane.install(
            DataSession.for_relay(
                spi,
                data_auth_key,
                encr,
                now,
                agent.config.session_lifetime,
                mn_addr=home,
                cn_addr=v.cn_addr,
                also_accept=[EncrSecPar(e) for e in offered],
            )
        )
        self._counters.increment("sessions.authorised")
        fields: dict[str, object] = {
            "spi": spi,
            "home_address": str(home),
            "cn": str(v.cn_addr),
            "cn_id": f"{v.cn_id:#x}",
            "fa_id": f"{fa_id:#x}",
            "care_of": str(binding.care_of),
        }
        return [
            info(
                "authorised session {spi} between {home_address} and CN {cn_id} at {cn}",
                **fields,
            ),
            Event("session-authorised", fields),
            *self._expiry.timer(now),
            Send(message, (str(binding.care_of), agent.config.control_port), Channel.CONTROL),
        ]

    def _look_up_fa(
        self, opened: OpenedRequest, source: Address, fa_id: int, now: float
    ) -> list[Effect]:
        agent = self._agent
        if self._lookups_in_flight >= agent.config.max_lookups_in_flight:
            raise _refusal("too many key lookups in flight")
        self._lookups_in_flight += 1
        self._counters.increment("sessions.tc_lookups")
        reference = opened.v.cn_nonce

        def arrived(answer: NodeCertificate | Exception) -> list[Effect]:
            result = agent.fa_certificate(fa_id, answer, now, reference)
            if isinstance(result, tuple):
                code, reason = result
                raise _Refused(_refusal(reason, code), reference)
            try:
                return self._authorise(opened, source, now, (fa_id, result))
            except CorrespondentError as error:
                raise _Refused(error, reference) from None

        def then(answer: NodeCertificate | Exception) -> list[Effect]:
            self._lookups_in_flight -= 1
            # Every refusal below carries its reference, so the datagram is not needed.
            return self._guard(b"", source, now, lambda: arrived(answer))

        return [
            debug("looking up the key of FA {fa_id}", fa_id=f"{fa_id:#x}"),
            Lookup(fa_id, then),
        ]

    # --- refusals -------------------------------------------------------------------------

    def _refuse(
        self,
        error: CorrespondentError,
        data: bytes,
        source: Address,
        now: float,
        reference: int | None,
    ) -> list[Effect]:
        if reference is None:
            reference = self._cn_nonce(data)
        self._counters.increment("sessions.refused")
        self._counters.increment(f"sessions.refused.{int(error.code)}")
        return [
            warn(
                "refused a session request from {source} with {code}: {reason}",
                source=_peer(source),
                code=describe(error.code),
                reason=error.reason,
                reference=reference,
            ),
            *self._agent.errors.report(source[0], error.code, reference, error.reason, now),
        ]

    def _cn_nonce(self, data: bytes) -> int:
        """The CN Nonce of a refused request if its V opens (the CN matches Errors to its
        requests by it), else 0. Only refusals pay for this second open."""
        try:
            request = peek_request_communication(data)
            identity = self._agent.identity
            opened = open_sealed(
                identity.keys, identity.node_id, RequestCommunicationInfo.LABEL, request.sealed
            )
            return RequestCommunicationInfo.decode(split_signed(opened, "V")[0]).cn_nonce
        except (CorrespondentError, CryptoError, WireError):
            return 0

    # --- expiry and removal ---------------------------------------------------------------

    def binding_removed(
        self, home_address: ipaddress.IPv4Address, now: float, reason: str
    ) -> list[Effect]:
        """The binding of ``home_address`` ended (expiry, deregistration): remove its data
        sessions. A move to another FA is not a removal: the sessions stay and the data
        shell routes them by the new binding."""
        spis = tuple(s.spi for s in self.plane if s.mn_addr == home_address)
        if not spis:
            return []
        for spi in spis:
            self.plane.remove(spi)
        self._counters.increment("sessions.removed", len(spis))
        fields: dict[str, object] = {
            "home_address": str(home_address),
            "spis": spis,
            "reason": reason,
        }
        return [
            info("removed the data sessions {spis} of {home_address}: {reason}", **fields),
            Event("sessions-removed", fields),
            *self._expiry.timer(now),
        ]

    def status(self) -> dict[str, object]:
        """Sizes of the tables, for ``mvpn status``."""
        return {
            "sessions": len(self.plane),
            "cn_keys_cached": len(self._cn_keys),
            "replay_cache": len(self._replay),
        }
