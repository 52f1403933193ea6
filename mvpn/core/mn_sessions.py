"""The mobile node's correspondent sessions (sans-IO): accepting a session its FA relays, and
handing the sessions to a new FA (draft 3.3, 3.4, 3.5; docs/protocol.md 7.3, 7.4, 7.6, 9).

:class:`MobileNodeSessions` is attached to :class:`~mvpn.core.mn.MobileNode` (its
``sessions``); the MN's control port hands it Types 2 and 6.

**Correspondent Information, form 1 (Type 2)** from the FA of the current registration:

1. decode; the MN must be registered through that FA (its ID and ``Ku_FA`` come from the
   first-contact reply, W), else it refuses;
2. :func:`read_vouched_cn_key` checks the FA signature and opens U to read the CN ID and the
   ``Ku_CN`` the HA vouched for; :func:`~mvpn.core.correspondent.open_correspondent_info_at_mn`
   then checks the whole message with that key;
3. ``Lookup(CN ID)`` cross-checks ``Ku_CN``: a certificate of that CN, valid now, with the
   same key, passes; ``UnknownNode`` (the MN has no Trusted Centre or certificate for the CN)
   leaves the HA's word, which the HA signed and sealed to the MN, as the only one; anything
   else refuses;
4. :func:`~mvpn.core.correspondent.build_correspondent_response` goes to the FA's control
   port; the endpoint session (``DataSession.for_mn``) is installed in :attr:`dataplane`;
   Event ``session-established`` {spi, cn, home_address}.

A refusal is an Error to the FA (rate limited), a warning and a counter
(``refused.<code>``); nothing is kept. A repeated form 1 for an SPI already answered gets the
same Correspondent Response again (a second Diffie-Hellman value would split the keys).

**Key Transfer (Type 6)**: after every accepted first contact (a new FA, or the same FA after
it restarted or after a failed re-registration: either way its visitor entry is new) while
sessions live, the MN sends :func:`~mvpn.core.correspondent.build_key_transfer` with all of
them to that FA's control port, again after 1, 2, 4, 8 and 8 s, until the form 1
acknowledgement arrives: Event ``keys-transferred`` {fa, spis}. After the fifth request it
gives up (Event ``keys-transfer-failed`` {fa, spis}). The MN-CN keys and sequence numbers go
on unchanged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mvpn.core import correspondent as cor
from mvpn.core.cn import MAX_ATTEMPTS, backoff, certificate_problem, lookup_error
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
from mvpn.core.messages import AgentIdentity, MobileCredentials
from mvpn.crypto.errors import CryptoError
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS
from mvpn.crypto.random import RandomSource
from mvpn.crypto.suite import open_then_verify, verify
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.tc_errors import UnknownNode
from mvpn.wire.codes import MvpnError, describe
from mvpn.wire.control import CorrespondentInfoToMN, KeyTransferAck
from mvpn.wire.errors import WireError
from mvpn.wire.plain import CorrespondentInfoForMN

if TYPE_CHECKING:
    from mvpn.core.mn import Registration

__all__ = [
    "EXPIRY_TIMER",
    "KEY_TRANSFER_TIMER",
    "MobileNodeSessions",
    "read_vouched_cn_key",
]

KEY_TRANSFER_TIMER = "key-transfer"
EXPIRY_TIMER = "sessions-expiry"

_OPEN_PK_OPERATIONS = 2 + cor.PK_OPERATIONS["open_correspondent_info_at_mn"]
"""read_vouched_cn_key (verify the FA, open U) and the full check."""


def read_vouched_cn_key(
    mn: AgentIdentity, message: CorrespondentInfoToMN, fa_public: PublicKeys, ha_public: PublicKeys
) -> tuple[int, PublicKeys]:
    """The CN ID and the ``Ku_CN`` the HA vouched for in U (docs/protocol.md 7.3), read after
    checking the FA signature (the cheap check first) and the HA signature inside U, so the
    MN can look the CN up before the full check. :class:`~mvpn.core.correspondent.
    ForeignAgentAuthenticationFailed` or :class:`~mvpn.core.correspondent.
    HomeAgentAuthenticationFailed`."""
    try:
        verify(
            fa_public,
            CorrespondentInfoToMN.SIGNATURE_LABEL,
            message.signature,
            message.signed_part(),
        )
    except CryptoError:
        raise cor.ForeignAgentAuthenticationFailed("FA signature does not verify") from None
    try:
        u = CorrespondentInfoForMN.decode(
            open_then_verify(
                mn.keys, mn.node_id, ha_public, CorrespondentInfoForMN.LABEL, message.u
            )
        )
        return u.request.cn_id, PublicKeys.from_bytes(u.ku_cn)
    except (CryptoError, WireError):
        raise cor.HomeAgentAuthenticationFailed(
            "U does not open, decode or carry a valid HA signature"
        ) from None


@dataclass
class _Transfer:
    """A Key Transfer waiting for its acknowledgement."""

    fa: str
    keys_spi: int
    spis: tuple[int, ...]
    generation: int
    attempts: int = 0


class MobileNodeSessions:
    """The MN's data sessions with correspondent nodes, and their transfer between FAs.

    :param credentials: the MN's smart-card credentials (``None`` for a plain RFC 5944 node,
        which takes part in no session: everything it is sent is dropped and counted).
    :param registration: returns the MN's current registration (or ``None``).
    :param random: for Diffie-Hellman keys and Key Transfer seals.
    :param control_port: the FA's control port (every node's own, docs/protocol.md 7.7).
    :param counters: the MN's counters.
    """

    def __init__(
        self,
        credentials: MobileCredentials | None,
        registration: Callable[[], Registration | None],
        random: RandomSource,
        control_port: int = DEFAULT_CONTROL_PORT,
        counters: Counters | None = None,
        key_lifetime: float = DATA_KEY_LIFETIME,
    ) -> None:
        self.credentials = credentials
        self.identity = (
            AgentIdentity(credentials.user_id, credentials.keys, credentials.home_address)
            if credentials is not None
            else None
        )
        self._registration = registration
        self.random = random
        self.control_port = control_port
        self.counters = counters if counters is not None else Counters()
        self.key_lifetime = key_lifetime
        self.dataplane = DataPlane(NodeKind.MN)
        self.errors = ErrorReporter(control_port, self.counters)
        self._sessions: dict[int, cor.MnSession] = {}
        self._responses: dict[int, tuple[bytes, str]] = {}
        """SPI -> the Correspondent Response sent and the FA it went to (answers repeats)."""
        self._checking: set[int] = set()
        """SPIs whose ``Ku_CN`` lookup is in flight."""
        self._transfer: _Transfer | None = None
        self._generation = 0

    # -- the API -------------------------------------------------------------------------

    def control_handlers(self) -> dict[int, ControlHandler]:
        """Types 2 (Correspondent Information form 1) and 6 (Key Transfer acknowledgement)."""
        return {2: self.correspondent_info_received, 6: self.key_transfer_ack_received}

    def sessions(self) -> list[cor.MnSession]:
        """The live sessions, oldest SPI first."""
        return [self._sessions[spi] for spi in sorted(self._sessions)]

    def session_for(self, cn_addr: ipaddress.IPv4Address | str) -> DataSession | None:
        """The newest live session with the CN at ``cn_addr`` (what to seal with)."""
        cn = ipaddress.IPv4Address(cn_addr)
        found = [s for s in self.dataplane if s.cn_addr == cn]
        return max(found, key=lambda s: s.expires_at, default=None)

    def status(self, now: float) -> list[dict[str, object]]:
        """The sessions as ``mvpn status`` shows them."""
        return [
            {
                "spi": s.spi,
                "cn": str(s.cn_addr),
                "expires_in": max(0.0, s.expires_at - now),
            }
            for s in sorted(self.dataplane, key=lambda s: s.spi)
        ]

    # -- helpers -------------------------------------------------------------------------

    def _guard(self, what: str, action: Callable[[], list[Effect]]) -> list[Effect]:
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

    def _drop(self, counter: str, source: Address | str, reason: str) -> list[Effect]:
        self.counters.increment(f"drops.{counter}")
        peer = source if isinstance(source, str) else f"{source[0]}:{source[1]}"
        return [warn("dropped a session message from {peer}: {reason}", peer=peer, reason=reason)]

    def _refuse(
        self, error: cor.CorrespondentError, fa: str, spi: int, now: float
    ) -> list[Effect]:
        """A session the MN will not take: warning, counter, Error to the FA; nothing kept."""
        self.counters.increment(f"refused.{int(error.code)}")
        return [
            warn(
                "session {spi} refused: {code}: {reason}",
                spi=spi,
                code=describe(error.code),
                reason=error.reason,
            ),
            *self.errors.report(fa, error.code, spi, error.reason, now),
        ]

    # -- Correspondent Information form 1 (Type 2) ---------------------------------------

    def correspondent_info_received(
        self, data: bytes, source: Address, now: float
    ) -> list[Effect]:
        """A Correspondent Information from the FA (docs/protocol.md 7.3)."""
        return self._guard("a Correspondent Information", lambda: self._info(data, source, now))

    def _info(self, data: bytes, source: Address, now: float) -> list[Effect]:
        if self.identity is None or self.credentials is None:
            return self._drop("plain_mode", source, "a plain RFC 5944 node holds no sessions")
        try:
            message = CorrespondentInfoToMN.decode(data)
        except WireError as e:
            return self._drop("malformed", source, str(e))
        registration = self._registration()
        if (
            registration is None
            or registration.keys is None
            or registration.fa_public is None
            or registration.fa_id is None
        ):
            error: cor.CorrespondentError = cor.SessionMismatch(
                "the mobile node is not registered through an FA"
            )
            return self._refuse(error, source[0], message.spi, now)
        fa = str(registration.agent.address)
        if message.fa_id != registration.fa_id:
            error = cor.ForeignAgentAuthenticationFailed(
                f"FA {message.fa_id:#x} is not the FA of the current registration"
            )
            return self._refuse(error, source[0], message.spi, now)
        answered = self._responses.get(message.spi)
        if answered is not None:
            response, to = answered
            self.counters.increment("responses.repeated")
            return [
                debug("repeated Correspondent Information for SPI {spi}", spi=message.spi),
                Send(response, (to, self.control_port), Channel.CONTROL),
            ]
        if message.spi in self._checking or message.spi in self._sessions:
            self.counters.increment("drops.duplicate")
            return [debug("Correspondent Information for SPI {spi} again", spi=message.spi)]
        ha_public = self.credentials.ha_public
        try:
            cn_id, vouched = read_vouched_cn_key(
                self.identity, message, registration.fa_public, ha_public
            )
            offer = cor.open_correspondent_info_at_mn(
                self.identity,
                data,
                registration.fa_public,
                ha_public,
                lambda wanted: vouched if wanted == cn_id else None,
            )
        except cor.CorrespondentError as e:
            return self._refuse(e, fa, message.spi, now)
        finally:
            self.counters.increment("pk_operations", _OPEN_PK_OPERATIONS)
        self._checking.add(offer.spi)
        keys_spi = registration.keys.spi

        def then(answer: NodeCertificate | Exception) -> list[Effect]:
            return self._guard(
                "a correspondent key", lambda: self._cn_key(offer, fa, keys_spi, answer, now)
            )

        return [
            debug(
                "session {spi} offered by CN {cn}; checking its key",
                spi=offer.spi,
                cn=str(offer.cn_addr),
            ),
            Lookup(offer.v.cn_id, then),
        ]

    def _cn_key(
        self,
        offer: cor.MnSessionOffer,
        fa: str,
        keys_spi: int,
        answer: NodeCertificate | Exception,
        now: float,
    ) -> list[Effect]:
        self._checking.discard(offer.spi)
        registration = self._registration()
        if registration is None or registration.keys is None or registration.keys.spi != keys_spi:
            self.counters.increment("drops.late_lookup")
            return [debug("a CN key arrived after the registration changed")]
        cn_id = offer.v.cn_id
        if isinstance(answer, UnknownNode):
            # No TC and no certificate for the CN here: the HA's word (signed, sealed to us).
            self.counters.increment("cn_keys.vouched")
        elif isinstance(answer, Exception):
            code = lookup_error(answer, MvpnError.PUBLIC_KEY_NOT_VALID)
            error: cor.CorrespondentError = cor.UnknownCorrespondent(
                f"no valid key for CN {cn_id:#x}", code
            )
            return self._refuse(error, fa, offer.spi, now)
        else:
            problem = certificate_problem(answer, Role.CN, cn_id, now)
            if problem is not None:
                return self._refuse(cor.UnknownCorrespondent(problem), fa, offer.spi, now)
            if answer.public_keys != offer.cn_public:
                error = cor.CorrespondentAuthenticationFailed("the HA vouched for another CN key")
                return self._refuse(error, fa, offer.spi, now)
            self.counters.increment("cn_keys.checked")
        assert self.identity is not None
        try:
            response, session = cor.build_correspondent_response(
                self.identity, offer, LOCAL_FLAGS, self.random
            )
        except cor.CorrespondentError as e:
            return self._refuse(e, fa, offer.spi, now)
        self.counters.increment("pk_operations", cor.PK_OPERATIONS["build_correspondent_response"])
        keys = session.data_keys
        self.dataplane.install(
            DataSession.for_mn(
                session.spi,
                session.data_auth_key,
                session.encr_sec_par,
                keys.mn_to_cn,
                keys.cn_to_mn,
                now,
                self.key_lifetime,
                mn_addr=session.mn_addr,
                cn_addr=session.cn_addr,
            )
        )
        self._sessions[session.spi] = session
        self._responses[session.spi] = (response, fa)
        self.counters.increment("sessions.established")
        home = str(session.mn_addr)
        return [
            Send(response, (fa, self.control_port), Channel.CONTROL),
            info(
                "session {spi} with CN {cn} established ({encr})",
                spi=session.spi,
                cn=str(session.cn_addr),
                encr=session.encr_sec_par.name,
            ),
            Event(
                "session-established",
                {"spi": session.spi, "cn": str(session.cn_addr), "home_address": home},
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
        """Forget the sessions whose keys expired (docs/protocol.md 10); re-arms itself."""
        effects: list[Effect] = []
        for spi in self.dataplane.expire(now):
            session = self._sessions.pop(spi, None)
            self._responses.pop(spi, None)
            cn = str(session.cn_addr) if session is not None else "?"
            effects += [
                info("session {spi} with CN {cn} expired", spi=spi, cn=cn),
                Event("session-expired", {"spi": spi, "cn": cn}),
            ]
        return [*effects, self._expiry_timer(now)]

    # -- Key Transfer (Type 6) -----------------------------------------------------------

    def first_contact(self, registration: Registration, now: float) -> list[Effect]:
        """A first contact was accepted (:mod:`mvpn.core.mn` calls this): hand the live
        sessions to that FA (draft 3.3; docs/protocol.md 7.6, 9 step 4)."""
        self._generation += 1
        self._transfer = None
        live = [s for s in self.sessions() if s.spi in self.dataplane.sessions]
        if not live or registration.keys is None:
            return [CancelTimer(KEY_TRANSFER_TIMER)]
        self._transfer = _Transfer(
            str(registration.agent.address),
            registration.keys.spi,
            tuple(s.spi for s in live),
            self._generation,
        )
        return self._guard("a Key Transfer", lambda: self._send_transfer(now))

    def _send_transfer(self, now: float) -> list[Effect]:
        transfer = self._transfer
        registration = self._registration()
        if (
            transfer is None
            or registration is None
            or registration.keys is None
            or registration.keys.spi != transfer.keys_spi
            or self.credentials is None
        ):
            self._transfer = None
            self.counters.increment("key_transfer.abandoned")
            return [debug("Key Transfer abandoned: the registration changed")]
        sessions = [self._sessions[spi] for spi in transfer.spis if spi in self._sessions]
        data = cor.build_key_transfer(
            self.credentials.home_address, registration.keys, sessions, self.random
        )
        transfer.attempts += 1
        self.counters.increment("key_transfer.sent")
        generation = transfer.generation

        def fire(at: float) -> list[Effect]:
            return self._guard(
                "a Key Transfer timeout", lambda: self._transfer_timeout(generation, at)
            )

        return [
            debug(
                "Key Transfer {attempt} of {count} session(s) to {fa}",
                attempt=transfer.attempts,
                count=len(sessions),
                fa=transfer.fa,
            ),
            Send(data, (transfer.fa, self.control_port), Channel.CONTROL),
            StartTimer(KEY_TRANSFER_TIMER, backoff(transfer.attempts), fire),
        ]

    def _transfer_timeout(self, generation: int, now: float) -> list[Effect]:
        transfer = self._transfer
        if transfer is None or transfer.generation != generation:
            return []
        if transfer.attempts < MAX_ATTEMPTS:
            self.counters.increment("key_transfer.retransmissions")
            return self._send_transfer(now)
        self._transfer = None
        self.counters.increment("key_transfer.gave_up")
        return [
            warn(
                "FA {fa} acknowledged no Key Transfer after {attempts} requests",
                fa=transfer.fa,
                attempts=transfer.attempts,
            ),
            Event("keys-transfer-failed", {"fa": transfer.fa, "spis": transfer.spis}),
        ]

    def key_transfer_ack_received(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """A Key Transfer acknowledgement (Type 6 form 1) from the FA."""
        return self._guard("a Key Transfer acknowledgement", lambda: self._ack(data, source, now))

    def _ack(self, data: bytes, source: Address, now: float) -> list[Effect]:
        try:
            KeyTransferAck.decode(data)
        except WireError as e:
            return self._drop("malformed", source, str(e))
        transfer = self._transfer
        registration = self._registration()
        if transfer is None or registration is None or registration.keys is None:
            self.counters.increment("drops.unexpected_ack")
            return [debug("a Key Transfer acknowledgement nobody waits for")]
        try:
            count = cor.open_key_transfer_ack(data, registration.keys)
        except cor.CorrespondentError as e:
            return [
                *self._drop(f"ack.{int(e.code)}", source, e.reason),
                *self.errors.report(source[0], e.code, registration.keys.spi, e.reason, now),
            ]
        self._transfer = None
        self.counters.increment("key_transfer.acknowledged")
        effects: list[Effect] = [
            CancelTimer(KEY_TRANSFER_TIMER),
            info(
                "FA {fa} took {count} of {total} session(s)",
                fa=transfer.fa,
                count=count,
                total=len(transfer.spis),
            ),
            Event("keys-transferred", {"fa": transfer.fa, "spis": transfer.spis}),
        ]
        if count < len(transfer.spis):
            self.counters.increment("key_transfer.partial")
            effects.insert(
                1,
                warn(
                    "FA {fa} accepted only {count} of {total} transferred session(s)",
                    fa=transfer.fa,
                    count=count,
                    total=len(transfer.spis),
                ),
            )
        return effects
