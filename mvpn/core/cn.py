"""The correspondent node (sans-IO): session set-up with a mobile node through its home agent
(draft 3.4, 3.5 and 6; docs/protocol.md 7.2, 7.5, 7.7 and 10).

:class:`Correspondent` asks the home agent of each configured peer (a mobile node's home
address) for a session and installs the end it gets in its own :class:`DataPlane`:

1. :meth:`Correspondent.connect` looks the HA's certificate up (``Ku_HA``, by HA ID), then
   sends a Request Communication (:func:`~mvpn.core.correspondent.build_request_communication`)
   to the HA's control port. Without an answer it sends a *new* request (new CN Nonce, new
   Diffie-Hellman value: the HA refuses a (CN ID, CN Nonce) pair it has seen) after 1, 2, 4, 8
   and 8 s (RFC 5944 3.6.3 backoff, docs/protocol.md 10) and gives up after the fifth.
2. A Communication Reply (Type 5) answering any request of the round: the CN opens L once to
   read the MN ID (:func:`read_reply_mn_id`), looks ``Ku_MN`` up by that ID, checks that the
   certificate is that mobile node's and names the home address asked for, then
   :func:`~mvpn.core.correspondent.open_communication_reply` derives the keys and the CN
   installs :meth:`DataSession.for_cn <mvpn.core.dataplane.DataSession.for_cn>`.
3. An Error (Type 7) whose Reference is the CN Nonce of a pending request ends the round:
   Event ``session-refused``. Any other Error is only logged and counted (draft section 4).

A refused or failed round is tried again after :attr:`CorrespondentConfig.retry_after`
seconds; an established session is renewed (a new round, a new SPI) at 80 % of its key
lifetime, so a fresh session exists before the old one expires (the old one stays usable
until then). Events: ``session-established`` {spi, home_address}, ``session-refused``
{home_address, code, reason}, ``session-failed`` {home_address, reason} (no answer after the
last retransmission), ``session-expired`` {spi, home_address}.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from mvpn.core import correspondent as cor
from mvpn.core.dataplane import DATA_KEY_LIFETIME, DataPlane, DataSession, NodeKind
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
from mvpn.core.messages import AgentIdentity
from mvpn.crypto.dh import DhGroup
from mvpn.crypto.errors import CryptoError
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS
from mvpn.crypto.random import RandomSource
from mvpn.crypto.suite import open_sealed
from mvpn.pki import errors as pki_errors
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.tc_errors import InvalidCertificate, TrustedCentreUnreachable, UnknownNode
from mvpn.wire.codes import MvpnError, describe
from mvpn.wire.control import CommunicationReply, ErrorMessage, decode_control
from mvpn.wire.errors import WireError
from mvpn.wire.plain import CorrespondentResponseForCN, split_signed

__all__ = [
    "INITIAL_BACKOFF",
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "REKEY_AT",
    "RETRY_AFTER",
    "Correspondent",
    "CorrespondentConfig",
    "backoff",
    "certificate_problem",
    "lookup_error",
    "read_reply_mn_id",
]

INITIAL_BACKOFF = 1.0
"""RFC 5944 3.6.3: the first retransmission timeout is at least 1 s (docs/protocol.md 10)."""

MAX_BACKOFF = 8.0
"""The timeout doubles up to 8 s (docs/protocol.md 10)."""

MAX_ATTEMPTS = 5
"""Requests per round before giving up (docs/protocol.md 10)."""

REKEY_AT = 0.8
"""A new session is set up at 80 % of the key lifetime: the whole retransmission budget
(23 s) fits before the old keys expire (docs/protocol.md 10)."""

RETRY_AFTER = 30.0
"""Seconds before a refused or unanswered round is tried again (the MN's retry interval:
continued attempts at a low rate, RFC 5944 3.6.3)."""

EXPIRY_TIMER = "sessions-expiry"


def backoff(attempt: int) -> float:
    """The timeout after the ``attempt``-th request (1-based): 1, 2, 4, 8, 8 s."""
    return min(INITIAL_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF)


def _utc(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, datetime.UTC)


def certificate_problem(
    cert: NodeCertificate,
    role: Role,
    node_id: int,
    now: float,
    address: ipaddress.IPv4Address | None = None,
) -> str | None:
    """Why ``cert`` cannot give the key of ``role`` ``node_id`` (with ``address`` when given)
    at ``now``, or ``None`` when it can."""
    if cert.role is not role or cert.node_id != node_id:
        return f"certificate {cert.describe()} is not {role.name} {node_id:#x}'s"
    if address is not None and cert.address is not None and cert.address != address:
        return f"certificate {cert.describe()} names {cert.address}, not {address}"
    try:
        cert.check_validity(_utc(now))
    except pki_errors.CertificateError as e:
        return f"certificate {cert.describe()}: {e}"
    return None


def lookup_error(answer: Exception, not_found: MvpnError) -> MvpnError:
    """The MVPN error code (draft section 4) for a failed certificate lookup: 6 when the TC
    cannot be reached, ``not_found`` when nobody knows the node, 4 for a revoked or invalid
    certificate, 7 otherwise (the mapping of docs/protocol.md 7.7)."""
    if isinstance(answer, TrustedCentreUnreachable):
        return MvpnError.TRUSTED_CENTRE_NOT_FOUND
    if isinstance(answer, UnknownNode):
        return not_found
    if isinstance(answer, InvalidCertificate | pki_errors.CertificateError):
        return MvpnError.PUBLIC_KEY_NOT_VALID
    return MvpnError.OTHER


def read_reply_mn_id(cn: AgentIdentity, reply: CommunicationReply) -> int:
    """The MN ID inside L of a Communication Reply (docs/protocol.md 7.5), read by opening
    the seal only, so that the CN can look ``Ku_MN`` up before
    :func:`~mvpn.core.correspondent.open_communication_reply` verifies the MN signature.
    Nothing read here is trusted until then. :class:`~mvpn.core.correspondent.
    MobileNodeAuthenticationFailed` when L does not open or decode."""
    try:
        opened = open_sealed(cn.keys, cn.node_id, CorrespondentResponseForCN.LABEL, reply.l)
        l_prime, _ = split_signed(opened, "L")
        return CorrespondentResponseForCN.decode(l_prime).mn_id
    except (CryptoError, WireError):
        raise cor.MobileNodeAuthenticationFailed("L does not open or decode") from None


@dataclass(frozen=True)
class CorrespondentConfig:
    """A correspondent node's session settings (docs/protocol.md 7, 10).

    ``control_port`` is where the HA listens (every node's own control port, docs/protocol.md
    7.7); ``sec_par`` what the CN offers; ``retry_after`` 0 switches retries off.
    """

    control_port: int = DEFAULT_CONTROL_PORT
    sec_par: int = LOCAL_FLAGS
    dh_group: DhGroup = DhGroup.X25519
    key_lifetime: float = DATA_KEY_LIFETIME
    rekey_at: float = REKEY_AT
    retry_after: float = RETRY_AFTER

    def __post_init__(self) -> None:
        if not 0 < self.rekey_at < 1:
            raise ValueError(f"rekey_at {self.rekey_at}: not in (0, 1)")
        if self.key_lifetime <= 0 or self.retry_after < 0:
            raise ValueError("key_lifetime must be positive and retry_after not negative")


@dataclass
class _Peer:
    """One mobile node the CN talks to, and the round of requests in flight for it."""

    home_address: ipaddress.IPv4Address
    ha_address: ipaddress.IPv4Address
    ha_id: int
    state: str = "idle"
    """idle, looking-up, requesting, established, waiting (a retry is armed)."""
    generation: int = 0
    """Bumped per round: late lookup answers and timers of an older round are ignored."""
    ha_public: PublicKeys | None = None
    attempts: list[cor.CnPending] = field(default_factory=list)
    spi: int | None = None
    """The newest established session's SPI."""
    last_refusal: tuple[int, str] | None = None

    @property
    def name(self) -> str:
        return str(self.home_address)


class Correspondent:
    """A correspondent node's sans-IO core: peers in, session set-up effects out.

    :param identity: the CN's ID, keys and address (the CN ADDR it puts into V).
    :param config: :class:`CorrespondentConfig` (``None``: the defaults).
    :param random: where CN Nonces and Diffie-Hellman keys come from.

    ``dataplane`` is the CN's endpoint table (NodeKind.CN); the data shell seals with
    :meth:`session_for` and sends to :meth:`ha_address_for`.
    """

    def __init__(
        self,
        identity: AgentIdentity,
        config: CorrespondentConfig | None,
        random: RandomSource,
    ) -> None:
        self.identity = identity
        self.config = config or CorrespondentConfig()
        self.random = random
        self.counters = Counters()
        self.dataplane = DataPlane(NodeKind.CN)
        self.errors = ErrorReporter(self.config.control_port, self.counters)
        self._peers: dict[ipaddress.IPv4Address, _Peer] = {}
        self._pending: dict[int, tuple[_Peer, cor.CnPending]] = {}
        """CN Nonce -> the peer and the request that carried it (every attempt of a round)."""

    # -- the API -------------------------------------------------------------------------

    def control_handlers(self) -> dict[int, ControlHandler]:
        """The control Types the CN handles: 5 Communication Reply, 7 Error."""
        return {5: self.communication_reply_received, 7: self.error_received}

    def connect(
        self,
        home_address: ipaddress.IPv4Address | str,
        ha_address: ipaddress.IPv4Address | str,
        ha_id: int,
        now: float,
    ) -> list[Effect]:
        """Set up a session with the MN at ``home_address`` through its HA (draft 3.4).

        A peer already being connected keeps its round; an established one starts a new
        round (a new session; the old one lives until it expires).
        """
        home = ipaddress.IPv4Address(home_address)
        ha = ipaddress.IPv4Address(ha_address)
        peer = self._peers.get(home)
        if peer is None or (peer.ha_address, peer.ha_id) != (ha, ha_id):
            if peer is not None:
                self._end_round(peer)
            peer = _Peer(home, ha, ha_id)
            self._peers[home] = peer
        elif peer.state in ("looking-up", "requesting"):
            return [
                debug("session with {home_address} already being set up", home_address=peer.name)
            ]
        return self._guard("a connect", lambda: self._start_round(peer, now))

    def session_for(self, home_address: ipaddress.IPv4Address | str) -> DataSession | None:
        """The newest live session with the MN at ``home_address`` (what to seal with)."""
        home = ipaddress.IPv4Address(home_address)
        sessions = [s for s in self.dataplane if s.mn_addr == home]
        return max(sessions, key=lambda s: s.expires_at, default=None)

    def ha_address_for(
        self, home_address: ipaddress.IPv4Address | str
    ) -> ipaddress.IPv4Address | None:
        """Where the CN sends data for ``home_address``: its HA (docs/protocol.md 8)."""
        peer = self._peers.get(ipaddress.IPv4Address(home_address))
        return peer.ha_address if peer is not None else None

    def status(self, now: float) -> dict[str, object]:
        """What ``mvpn status`` shows for this CN."""
        return {
            "role": "cn",
            "cn_id": self.identity.node_id,
            "address": str(self.identity.address),
            "peers": [
                {
                    "home_address": p.name,
                    "home_agent": str(p.ha_address),
                    "state": p.state,
                    "spi": p.spi,
                    "attempts": len(p.attempts),
                }
                for p in sorted(self._peers.values(), key=lambda p: p.home_address)
            ],
            "sessions": [
                {
                    "spi": s.spi,
                    "home_address": str(s.mn_addr),
                    "expires_in": max(0.0, s.expires_at - now),
                }
                for s in sorted(self.dataplane, key=lambda s: s.spi)
            ],
            "counters": self.counters.snapshot(),
        }

    # -- rounds --------------------------------------------------------------------------

    def _guard(self, what: str, action: Callable[[], list[Effect]]) -> list[Effect]:
        """Run ``action``; an unexpected exception becomes an error log and a counter."""
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

    def _timer(self, kind: str, peer: _Peer) -> str:
        return f"{kind}:{peer.name}"

    def _end_round(self, peer: _Peer) -> list[Effect]:
        """Forget the round's requests and stop its retransmissions."""
        for pending in peer.attempts:
            self._pending.pop(pending.cn_nonce, None)
        peer.attempts = []
        peer.generation += 1
        return [CancelTimer(self._timer("request", peer))]

    def _start_round(self, peer: _Peer, now: float) -> list[Effect]:
        effects = self._end_round(peer)
        peer.state = "looking-up"
        generation = peer.generation
        self.counters.increment("rounds")

        def then(answer: NodeCertificate | Exception) -> list[Effect]:
            return self._guard(
                "a home agent key", lambda: self._ha_key(peer, generation, answer, now)
            )

        return [
            *effects,
            CancelTimer(self._timer("retry", peer)),
            info(
                "setting up a session with {home_address} through home agent {ha}",
                home_address=peer.name,
                ha=str(peer.ha_address),
            ),
            Lookup(peer.ha_id, then),
        ]

    def _ha_key(
        self, peer: _Peer, generation: int, answer: NodeCertificate | Exception, now: float
    ) -> list[Effect]:
        if generation != peer.generation or self._peers.get(peer.home_address) is not peer:
            self.counters.increment("drops.late_lookup")
            return [debug("a home agent certificate arrived for a finished round")]
        if isinstance(answer, Exception):
            code = lookup_error(answer, MvpnError.HOME_AGENT_NOT_FOUND)
            return self._refused(peer, code, f"no key for home agent {peer.ha_id:#x}", now)
        problem = certificate_problem(answer, Role.HA, peer.ha_id, now)
        if problem is not None:
            return self._refused(peer, MvpnError.PUBLIC_KEY_NOT_VALID, problem, now)
        peer.ha_public = answer.public_keys
        peer.state = "requesting"
        return self._send_request(peer, now)

    def _send_request(self, peer: _Peer, now: float) -> list[Effect]:
        """One Request Communication of the round: a fresh CN Nonce and DH value each time."""
        ha_public = peer.ha_public
        assert ha_public is not None
        message, pending = cor.build_request_communication(
            self.identity,
            peer.ha_id,
            ha_public,
            peer.home_address,
            self.config.sec_par,
            self.config.dh_group,
            now,
            self.random,
        )
        self.counters.increment("pk_operations", cor.PK_OPERATIONS["build_request_communication"])
        self.counters.increment("requests")
        peer.attempts.append(pending)
        self._pending[pending.cn_nonce] = (peer, pending)
        generation = peer.generation

        def fire(at: float) -> list[Effect]:
            return self._guard("a retransmission", lambda: self._timeout(peer, generation, at))

        return [
            debug(
                "Request Communication {attempt} for {home_address} to {ha}",
                attempt=len(peer.attempts),
                home_address=peer.name,
                ha=str(peer.ha_address),
            ),
            Send(message, (str(peer.ha_address), self.config.control_port), Channel.CONTROL),
            StartTimer(self._timer("request", peer), backoff(len(peer.attempts)), fire),
        ]

    def _timeout(self, peer: _Peer, generation: int, now: float) -> list[Effect]:
        if generation != peer.generation or peer.state != "requesting":
            return []
        self.counters.increment("retransmission_timeouts")
        if len(peer.attempts) < MAX_ATTEMPTS:
            self.counters.increment("retransmissions")
            return self._send_request(peer, now)
        attempts = len(peer.attempts)
        effects = self._end_round(peer)
        self.counters.increment("gave_up")
        return [
            *effects,
            warn(
                "no Communication Reply for {home_address} after {attempts} requests",
                home_address=peer.name,
                attempts=attempts,
            ),
            Event("session-failed", {"home_address": peer.name, "reason": "no reply"}),
            *self._after_round(peer, now),
        ]

    def _after_round(self, peer: _Peer, now: float) -> list[Effect]:
        """Arm the retry of a round that ended without a new session."""
        peer.state = "established" if self.session_for(peer.home_address) else "waiting"
        if not self.config.retry_after:
            if peer.state == "waiting":
                peer.state = "idle"
            return []

        def retry(at: float) -> list[Effect]:
            return self._guard("a retry", lambda: self._start_round(peer, at))

        return [StartTimer(self._timer("retry", peer), self.config.retry_after, retry)]

    def _refused(
        self, peer: _Peer, code: MvpnError | int, reason: str, now: float
    ) -> list[Effect]:
        effects = self._end_round(peer)
        peer.last_refusal = (int(code), reason)
        self.counters.increment(f"refused.{int(code)}")
        return [
            *effects,
            warn(
                "session with {home_address} refused: {code}: {reason}",
                home_address=peer.name,
                code=describe(code),
                reason=reason,
            ),
            Event(
                "session-refused",
                {"home_address": peer.name, "code": int(code), "reason": reason},
            ),
            *self._after_round(peer, now),
        ]

    # -- Communication Reply (Type 5) ----------------------------------------------------

    def communication_reply_received(
        self, data: bytes, source: Address, now: float
    ) -> list[Effect]:
        """A Communication Reply from the MN's FA (docs/protocol.md 7.5)."""
        return self._guard("a Communication Reply", lambda: self._reply(data, source, now))

    def _drop(self, counter: str, source: Address, reason: str) -> list[Effect]:
        self.counters.increment(f"drops.{counter}")
        return [
            warn(
                "dropped a Communication Reply from {peer}: {reason}",
                peer=f"{source[0]}:{source[1]}",
                reason=reason,
            )
        ]

    def _reject(
        self, error: cor.CorrespondentError, source: Address, spi: int, now: float
    ) -> list[Effect]:
        """A reply that fails a check: logged, counted, answered with an Error (rate
        limited). The round goes on: a genuine reply may still come."""
        return [
            *self._drop(f"reply.{int(error.code)}", source, error.reason),
            *self.errors.report(source[0], error.code, spi, error.reason, now),
        ]

    def _reply(self, data: bytes, source: Address, now: float) -> list[Effect]:
        try:
            reply = CommunicationReply.decode(data)
        except WireError as e:
            return self._drop("malformed", source, str(e))
        found = self._pending.get(reply.cn_nonce)
        if found is None:
            self.counters.increment("drops.unknown_reply")
            return [
                debug(
                    "Communication Reply for SPI {spi} answers no pending request",
                    spi=reply.spi,
                )
            ]
        peer, pending = found
        self.counters.increment("pk_operations")  # read_reply_mn_id opens L
        try:
            mn_id = read_reply_mn_id(self.identity, reply)
        except cor.CorrespondentError as e:
            return self._reject(e, source, reply.spi, now)
        generation = peer.generation

        def then(answer: NodeCertificate | Exception) -> list[Effect]:
            return self._guard(
                "a mobile node key",
                lambda: self._mn_key(peer, generation, pending, data, source, mn_id, answer, now),
            )

        return [Lookup(mn_id, then)]

    def _mn_key(
        self,
        peer: _Peer,
        generation: int,
        pending: cor.CnPending,
        data: bytes,
        source: Address,
        mn_id: int,
        answer: NodeCertificate | Exception,
        now: float,
    ) -> list[Effect]:
        if generation != peer.generation or pending.cn_nonce not in self._pending:
            self.counters.increment("drops.late_lookup")
            return [debug("a mobile node certificate arrived for a finished round")]
        spi = CommunicationReply.decode(data).spi
        if isinstance(answer, Exception):
            code = lookup_error(answer, MvpnError.PUBLIC_KEY_NOT_VALID)
            return self._reject(
                cor.UnknownCorrespondent(f"no key for mobile node {mn_id:#x}", code),
                source,
                spi,
                now,
            )
        problem = certificate_problem(answer, Role.MN, mn_id, now, peer.home_address)
        if problem is not None:
            return self._reject(cor.MobileNodeAuthenticationFailed(problem), source, spi, now)
        try:
            session = cor.open_communication_reply(
                self.identity, pending, data, answer.public_keys
            )
        except cor.CorrespondentError as e:
            return self._reject(e, source, spi, now)
        finally:
            self.counters.increment("pk_operations", cor.PK_OPERATIONS["open_communication_reply"])
        return self._established(peer, session, now)

    def _established(self, peer: _Peer, session: cor.CnSession, now: float) -> list[Effect]:
        keys = session.data_keys
        self.dataplane.install(
            DataSession.for_cn(
                session.spi,
                session.data_auth_key,
                session.encr_sec_par,
                keys.mn_to_cn,
                keys.cn_to_mn,
                now,
                self.config.key_lifetime,
                mn_addr=peer.home_address,
                cn_addr=self.identity.address,
            )
        )
        effects = self._end_round(peer)
        peer.state = "established"
        peer.spi = session.spi
        peer.last_refusal = None
        self.counters.increment("sessions.established")

        def rekey(at: float) -> list[Effect]:
            return self._guard("a session renewal", lambda: self._start_round(peer, at))

        return [
            *effects,
            CancelTimer(self._timer("retry", peer)),
            info(
                "session {spi} with {home_address} established ({encr})",
                spi=session.spi,
                home_address=peer.name,
                encr=session.encr_sec_par.name,
            ),
            Event("session-established", {"spi": session.spi, "home_address": peer.name}),
            StartTimer(
                self._timer("rekey", peer),
                self.config.key_lifetime * self.config.rekey_at,
                rekey,
            ),
            self._expiry_timer(now),
        ]

    # -- expiry --------------------------------------------------------------------------

    def _expiry_timer(self, now: float) -> Effect:
        due = self.dataplane.next_expiry()
        if due is None:
            return CancelTimer(EXPIRY_TIMER)
        return StartTimer(EXPIRY_TIMER, max(0.0, due - now), self.expire)

    def expire(self, now: float) -> list[Effect]:
        """Remove the sessions whose keys expired (docs/protocol.md 10); re-arms itself."""
        homes = {s.spi: s.mn_addr for s in self.dataplane}
        effects: list[Effect] = []
        for spi in self.dataplane.expire(now):
            home = str(homes[spi])
            effects += [
                info("session {spi} with {home_address} expired", spi=spi, home_address=home),
                Event("session-expired", {"spi": spi, "home_address": home}),
            ]
            peer = self._peers.get(ipaddress.IPv4Address(home))
            if peer is not None and peer.state == "established" and not self.session_for(home):
                peer.state = "idle"
        return [*effects, self._expiry_timer(now)]

    # -- Error (Type 7) ------------------------------------------------------------------

    def error_received(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """An MVPN Error (draft section 4): logged and counted like any node does; when its
        Reference is the CN Nonce of a pending request, that round ends as refused."""
        peer_name = f"{source[0]}:{source[1]}"
        try:
            message = decode_control(data)
        except WireError as e:
            self.counters.increment("control.malformed")
            return [
                warn(
                    "dropped a malformed control datagram from {peer}: {reason}",
                    peer=peer_name,
                    reason=str(e),
                )
            ]
        if not isinstance(message, ErrorMessage):
            self.counters.increment("control.malformed")
            return [warn("dropped a non-Error Type 7 datagram from {peer}", peer=peer_name)]
        self.counters.increment(f"mvpn_errors.received.{int(message.code)}")
        effects: list[Effect] = [
            warn(
                "MVPN error {code} from {peer}, reference {reference}: {reason}",
                code=describe(message.code),
                peer=peer_name,
                reference=message.reference,
                reason=message.reason,
            )
        ]
        found = self._pending.get(message.reference)
        if found is None:
            return effects
        peer, _ = found
        return [*effects, *self._refused(peer, message.code, message.reason, now)]
