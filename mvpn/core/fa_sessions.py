"""The foreign agent's part of correspondent sessions, sans I/O (draft 3.3, 3.4, 3.5, 6.2-6.4;
docs/protocol.md 7.3-7.7, 9, 10, 11).

:class:`FaSessions` handles three control Types and returns :mod:`~mvpn.core.effects`:

- **Correspondent Information form 0** (Type 2) from a home agent: the MN must be a current
  MVPN visitor whose home agent is the sender's HA ID (the visitor's ``ha_id``, which its
  registration reply authenticated); ``Ku_HA`` comes from the FA's cache of checked HA
  certificates, else a Trusted Centre lookup; the HA signature, X and the Hello value
  (keyed with the visitor's current registration Auth Key) are checked by
  :func:`~mvpn.core.correspondent.open_correspondent_info_at_fa`; the FA narrows Sec Par to
  what it supports (:data:`~mvpn.crypto.negotiation.LOCAL_FLAGS`) and sends form 1 to the
  MN's link address. The session waits for the MN's answer in a pending table keyed by SPI
  (bounded by ``max_pending``, expiring after ``pending_timeout``). Refusals: an Error to
  the HA.
- **Correspondent Response** (Type 4) from the MN: the pending session of its SPI, the MN's
  signature (``Ku_MN`` as the HA gave it in Q, kept on the visitor), Z; then the
  Communication Reply to the CN's control port and a relay
  :class:`~mvpn.core.dataplane.DataSession` in the FA's data plane; event
  ``session-relayed``. Refusals: an Error to the MN. A forged or damaged response leaves
  the pending session alone (the genuine one may still come); the same response again
  within ``pending_timeout`` is answered again with the same Communication Reply.
- **Key Transfer form 0** (Type 6) from an MN that made a first contact here (draft 3.3):
  opened under the visitor's registration SA named by its SPI; every session the MN hands
  over whose code points mvpn uses is installed with fresh replay windows (docs/protocol.md
  9 step 4), unless its SPI is another MN's here; the acknowledgement (form 1) counts the
  sessions accepted; event ``sessions-transferred``. A retransmission is answered again
  and leaves sessions already installed (and their replay windows) as they are.
  Refusals: an Error to the MN.

Every refusal logs a warning with the reason and moves ``sessions.refused`` and
``sessions.refused.<code>``; the Error (rate-limited by the FA's
:class:`~mvpn.core.errors.ErrorReporter`) names the data SPI (Types 2, 4) or the
registration SPI (Type 6). A visitor that goes (expiry, deregistration) takes its sessions,
pending ones included, with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from mvpn.core.correspondent import (
    PK_OPERATIONS,
    CorrespondentError,
    FaSessionInfo,
    KeyTransferFailed,
    MalformedMessage,
    build_communication_reply,
    build_correspondent_info_to_mn,
    build_key_transfer_ack,
    open_correspondent_info_at_fa,
    open_correspondent_response_at_fa,
    open_key_transfer,
    peek_key_transfer,
)
from mvpn.core.dataplane import DataSession
from mvpn.core.effects import (
    Address,
    CancelTimer,
    Channel,
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
from mvpn.core.session_expiry import SessionExpiry
from mvpn.crypto.auth import HopAuthenticator
from mvpn.crypto.errors import UnsupportedAlgorithmError
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS, check_auth_code, check_encr_code
from mvpn.pki.certificate import NodeCertificate
from mvpn.wire.codes import MvpnError, describe
from mvpn.wire.control import (
    MAX_CONTROL_SIZE,
    CorrespondentInfoToFA,
    CorrespondentResponse,
)
from mvpn.wire.errors import WireError

if TYPE_CHECKING:
    from mvpn.core.fa import ForeignAgent, Visitor

__all__ = ["EXPIRY_TIMER", "FaSessions"]

EXPIRY_TIMER = "fa-sessions-expiry"
"""The one timer that expires the FA's data sessions (at the earliest expiry)."""

_PROBE = b"mvpn same data auth key?"
"""Two hop authenticators are keyed alike when they tag this alike (the key is not kept)."""


@dataclass
class _Pending:
    """A session announced to the MN, waiting for its Correspondent Response."""

    info: FaSessionInfo
    received: bytes = field(repr=False)
    """The Correspondent Information as it arrived (a duplicate is answered again)."""
    offer: bytes = field(repr=False)
    """The form 1 sent to the MN."""
    mn: Address


@dataclass
class _Answered:
    """A Correspondent Response accepted lately, to answer its retransmission again."""

    mn_addr: ipaddress.IPv4Address
    response: bytes = field(repr=False)
    reply: bytes = field(repr=False)
    cn: Address


class _Refused(Exception):
    """Internal: refuse with ``error``; the Error goes to ``to`` and names ``reference``."""

    def __init__(self, error: CorrespondentError, to: str, reference: int) -> None:
        super().__init__(error.reason)
        self.error = error
        self.to = to
        self.reference = reference


def _other(reason: str, code: MvpnError = MvpnError.OTHER) -> CorrespondentError:
    return CorrespondentError(reason, code)


def _peer(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _timer(kind: str, spi: int) -> str:
    return f"session-{kind}:{spi}"


T = TypeVar("T")


def _decode_bounded(decoder: Callable[[bytes], T], data: bytes, what: str) -> T:
    """``decoder(data)``, or :class:`MalformedMessage` for a datagram over the control size
    bound or one that does not decode."""
    if len(data) > MAX_CONTROL_SIZE:
        raise MalformedMessage(f"{len(data)} bytes, more than {MAX_CONTROL_SIZE}")
    try:
        return decoder(data)
    except WireError as e:
        raise MalformedMessage(f"{what} does not decode: {e}") from None


class FaSessions:
    """Session set-up and key transfer at the foreign agent (docs/protocol.md 7.3-7.6).

    :param agent: the :class:`~mvpn.core.fa.ForeignAgent` whose visitors, HA key cache,
        counters, error reporter and :attr:`~mvpn.core.fa.ForeignAgent.dataplane` this uses.
    """

    def __init__(self, agent: ForeignAgent) -> None:
        self._agent = agent
        self._counters = agent.counters
        self.plane = agent.dataplane
        self._expiry = SessionExpiry(
            self.plane, self._counters, EXPIRY_TIMER, self._forget_transfers
        )
        self._pending: dict[int, _Pending] = {}
        self._answered: dict[int, _Answered] = {}
        self._transferred_under: dict[int, int] = {}
        """Data SPI -> the registration SPI of the Key Transfer that installed it."""

    def pending_count(self) -> int:
        """Sessions announced to an MN and not yet answered."""
        return len(self._pending)

    # --- common ---------------------------------------------------------------------------

    def _run(
        self,
        what: str,
        source: Address,
        reference: int,
        now: float,
        action: Callable[[], list[Effect]],
    ) -> list[Effect]:
        """Run ``action``: a refusal becomes a warning, counters and an Error; anything
        unexpected an error log. Nothing raises into the shell."""
        try:
            return action()
        except _Refused as refused:
            return self._refuse(what, refused.error, refused.to, refused.reference, now)
        except CorrespondentError as error:
            return self._refuse(what, error, source[0], reference, now)
        except Exception as e:
            self._counters.increment("sessions.internal_error")
            return [
                Log(
                    "error",
                    "internal error on a {what} from {source}: {reason}",
                    {"what": what, "source": _peer(source), "reason": type(e).__name__},
                )
            ]

    def _refuse(
        self, what: str, error: CorrespondentError, to: str, reference: int, now: float
    ) -> list[Effect]:
        self._counters.increment("sessions.refused")
        self._counters.increment(f"sessions.refused.{int(error.code)}")
        return [
            warn(
                "refused a {what} for {peer} with {code}: {reason}",
                what=what,
                peer=to,
                code=describe(error.code),
                reason=error.reason,
                reference=reference,
            ),
            *self._agent.errors.report(to, error.code, reference, error.reason, now),
        ]

    def _control(self, host: str) -> Address:
        return (host, self._agent.config.control_port)

    def _mvpn_visitor(self, home: ipaddress.IPv4Address, now: float) -> Visitor:
        """The current MVPN visitor ``home`` with its keys and ``Ku_MN``, or a refusal."""
        visitor = self._agent.visitor(home)
        if (
            visitor is None
            or visitor.keys is None
            or visitor.expires_at <= now
            or visitor.keys.expired(now)
        ):
            raise _other(f"mobile node {home} is not registered at this foreign agent")
        if visitor.mn_public is None or visitor.mn_id is None:
            raise _other(f"this foreign agent holds no public key for mobile node {home}")
        return visitor

    # --- Type 2: Correspondent Information form 0, HA -> FA (7.3) -------------------------

    def correspondent_info(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """The control handler of Type 2 (form 0 from an HA)."""
        self._counters.increment("sessions.offers_received")
        reference = int.from_bytes(data[16:20], "big") if len(data) >= 20 else 0
        return self._run(
            "Correspondent Information",
            source,
            reference,
            now,
            lambda: self._info(data, source, now),
        )

    def _info(self, data: bytes, source: Address, now: float) -> list[Effect]:
        message = _decode_bounded(CorrespondentInfoToFA.decode, data, "Correspondent Information")
        spi = message.spi
        pending = self._pending.get(spi)
        if pending is not None and pending.received == data:
            # The same datagram again (a duplicate on the way): the same answer again.
            self._counters.increment("sessions.duplicates")
            return [
                debug("Correspondent Information {spi} again; offer resent", spi=spi),
                Send(pending.offer, self._control(pending.mn[0]), Channel.CONTROL),
            ]
        self._check_free(spi)
        visitor = self._mvpn_visitor(message.mn_addr, now)
        if visitor.ha_id != message.ha_id:
            raise _other(
                f"HA {message.ha_id:#x} is not the home agent of mobile node {message.mn_addr}"
            )
        if len(self._pending) >= self._agent.config.max_pending:
            raise _other("too many sessions waiting for their mobile node")
        ha_id = message.ha_id
        ha_public = self._agent.ha_key(ha_id, now)
        if ha_public is not None:
            return self._offer(data, message, ha_public, now)
        self._counters.increment("sessions.tc_lookups")

        def then(answer: NodeCertificate | Exception) -> list[Effect]:
            # The answer carries no time: the message's arrival stands for now.
            return self._run(
                "Correspondent Information",
                source,
                spi,
                now,
                lambda: self._ha_key_arrived(data, message, answer, now),
            )

        return [
            debug("looking up the key of HA {ha_id}", ha_id=f"{ha_id:#x}"),
            Lookup(ha_id, then),
        ]

    def _check_free(self, spi: int) -> None:
        if spi in self._pending or spi in self._answered or self.plane.get(spi) is not None:
            raise _other(f"data SPI {spi} is already in use at this foreign agent")

    def _ha_key_arrived(
        self,
        data: bytes,
        message: CorrespondentInfoToFA,
        answer: NodeCertificate | Exception,
        now: float,
    ) -> list[Effect]:
        result = self._agent.ha_certificate(message.ha_id, answer, now)
        if isinstance(result, tuple):
            code, reason = result
            raise _other(reason, code)
        # The table may have changed during the lookup.
        self._check_free(message.spi)
        if len(self._pending) >= self._agent.config.max_pending:
            raise _other("too many sessions waiting for their mobile node")
        return self._offer(data, message, result, now)

    def _offer(
        self, data: bytes, message: CorrespondentInfoToFA, ha_public: PublicKeys, now: float
    ) -> list[Effect]:
        agent = self._agent
        visitor = self._mvpn_visitor(message.mn_addr, now)
        assert visitor.keys is not None and visitor.mn_public is not None
        assert visitor.mn_id is not None
        self._counters.increment("pk_operations", PK_OPERATIONS["open_correspondent_info_at_fa"])
        opened = open_correspondent_info_at_fa(
            agent.identity, data, ha_public, visitor.keys.auth_key
        )
        self._counters.increment("pk_operations", PK_OPERATIONS["build_correspondent_info_to_mn"])
        offer = build_correspondent_info_to_mn(
            agent.identity, opened, LOCAL_FLAGS, visitor.mn_id, visitor.mn_public
        )
        spi = opened.spi
        self._pending[spi] = _Pending(opened, data, offer, visitor.mn)
        self._counters.increment("sessions.offered")
        return [
            debug(
                "session {spi} for {home_address} with CN {cn} offered to the MN",
                spi=spi,
                home_address=str(opened.mn_addr),
                cn=str(opened.cn_addr),
            ),
            StartTimer(
                _timer("pending", spi),
                agent.config.pending_timeout,
                lambda at: self._pending_expired(spi),
            ),
            Send(offer, self._control(visitor.mn[0]), Channel.CONTROL),
        ]

    def _pending_expired(self, spi: int) -> list[Effect]:
        pending = self._pending.pop(spi, None)
        if pending is None:
            return []
        self._counters.increment("sessions.pending_timeouts")
        return [
            info(
                "session {spi} of {home_address}: no Correspondent Response in time",
                spi=spi,
                home_address=str(pending.info.mn_addr),
            )
        ]

    # --- Type 4: Correspondent Response, MN -> FA (7.4, 7.5) ------------------------------

    def correspondent_response(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """The control handler of Type 4 (from an MN)."""
        self._counters.increment("sessions.responses_received")
        reference = int.from_bytes(data[8:12], "big") if len(data) >= 12 else 0
        return self._run(
            "Correspondent Response",
            source,
            reference,
            now,
            lambda: self._response(data, now),
        )

    def _response(self, data: bytes, now: float) -> list[Effect]:
        message = _decode_bounded(CorrespondentResponse.decode, data, "Correspondent Response")
        spi = message.spi
        answered = self._answered.get(spi)
        if answered is not None and answered.response == data:
            self._counters.increment("sessions.duplicates")
            return [
                debug("Correspondent Response {spi} again; reply resent", spi=spi),
                Send(answered.reply, answered.cn, Channel.CONTROL),
            ]
        pending = self._pending.get(spi)
        if pending is None:
            raise _other(f"no session {spi} is waiting for a Correspondent Response")
        session = pending.info
        visitor = self._mvpn_visitor(session.mn_addr, now)
        assert visitor.mn_public is not None
        if len(self.plane) >= self._agent.config.max_sessions:
            raise _other(f"session table full ({self._agent.config.max_sessions})")
        self._counters.increment(
            "pk_operations", PK_OPERATIONS["open_correspondent_response_at_fa"]
        )
        opened = open_correspondent_response_at_fa(
            self._agent.identity, data, visitor.mn_public, session
        )
        reply = build_communication_reply(opened, session)
        encr = check_encr_code(opened.encr_sec_par)
        del self._pending[spi]
        self._transferred_under.pop(spi, None)
        self.plane.install(
            DataSession.for_relay(
                spi,
                session.data_auth_key,
                encr,
                now,
                self._agent.config.session_lifetime,
                mn_addr=session.mn_addr,
                cn_addr=session.cn_addr,
            )
        )
        cn = self._control(str(session.cn_addr))
        self._answered[spi] = _Answered(session.mn_addr, data, reply, cn)
        self._counters.increment("sessions.relayed")
        fields: dict[str, object] = {
            "spi": spi,
            "home_address": str(session.mn_addr),
            "cn": str(session.cn_addr),
            "cn_id": f"{session.cn_id:#x}",
            "encr": encr.name,
        }
        return [
            CancelTimer(_timer("pending", spi)),
            info("relaying session {spi} between {home_address} and {cn} ({encr})", **fields),
            Event("session-relayed", fields),
            StartTimer(
                _timer("answered", spi),
                self._agent.config.pending_timeout,
                lambda at: self._forget_answer(spi),
            ),
            *self._expiry.timer(now),
            Send(reply, cn, Channel.CONTROL),
        ]

    def _forget_answer(self, spi: int) -> list[Effect]:
        self._answered.pop(spi, None)
        return []

    # --- Type 6: Key Transfer form 0, MN -> new FA (7.6, 9) -------------------------------

    def key_transfer(self, data: bytes, source: Address, now: float) -> list[Effect]:
        """The control handler of Type 6 (form 0 from an MN)."""
        self._counters.increment("sessions.key_transfers_received")
        reference = int.from_bytes(data[8:12], "big") if len(data) >= 12 else 0
        return self._run("Key Transfer", source, reference, now, lambda: self._transfer(data, now))

    def _transfer(self, data: bytes, now: float) -> list[Effect]:
        if len(data) > MAX_CONTROL_SIZE:
            raise MalformedMessage(f"{len(data)} bytes, more than {MAX_CONTROL_SIZE}")
        message = peek_key_transfer(data)
        home = message.mn_addr
        visitor = self._agent.visitor(home)
        if visitor is None or visitor.keys is None or visitor.expires_at <= now:
            raise KeyTransferFailed(f"mobile node {home} is not registered here")
        keys = visitor.sa_for(message.spi, now)
        if keys is None:
            raise KeyTransferFailed(
                f"Key Transfer under SPI {message.spi}, not a registration SA of {home}"
            )
        opened = open_key_transfer(data, keys)
        # SPI -> the new session, or None to keep the one installed (a retransmission).
        chosen: dict[int, DataSession | None] = {}
        effects: list[Effect] = []
        free = self._agent.config.max_sessions - len(self.plane)
        for s in opened.sessions:
            try:
                check_auth_code(s.auth_sec_par)
                encr = check_encr_code(s.encr_sec_par)
            except UnsupportedAlgorithmError as e:
                effects.append(self._skipped(home, s.spi, str(e)))
                continue
            existing = self.plane.get(s.spi)
            if existing is not None and existing.mn_addr != home:
                effects.append(self._skipped(home, s.spi, "the SPI is another mobile node's"))
                continue
            if (
                existing is not None
                and self._transferred_under.get(s.spi) == keys.spi
                and existing.cn_addr == s.cn_addr
                and existing.encr_sec_par is encr
                and existing.auth.tag(_PROBE) == HopAuthenticator(s.data_auth_key).tag(_PROBE)
            ):
                # A retransmission: keep the session and its replay windows. A transfer
                # under another registration SA (the MN came back) starts fresh windows.
                chosen[s.spi] = None
                continue
            if existing is None:
                if free <= 0:
                    effects.append(self._skipped(home, s.spi, "session table full"))
                    continue
                free -= 1
            chosen[s.spi] = DataSession.for_relay(
                s.spi,
                s.data_auth_key,
                encr,
                now,
                self._agent.config.session_lifetime,
                mn_addr=home,
                cn_addr=s.cn_addr,
            )
        # Everything checked: install (nothing half-done if a check above refused).
        for spi, session in chosen.items():
            if session is not None:
                self.plane.install(session)
            self._transferred_under[spi] = keys.spi
        spis = tuple(chosen)
        ack = build_key_transfer_ack(home, keys, len(spis))
        self._counters.increment("sessions.transferred", len(spis))
        fields: dict[str, object] = {"home_address": str(home), "spis": spis}
        return [
            *effects,
            info("{home_address} transferred its data sessions {spis}", **fields),
            Event("sessions-transferred", fields),
            *self._expiry.timer(now),
            Send(ack, self._control(visitor.mn[0]), Channel.CONTROL),
        ]

    def _skipped(self, home: ipaddress.IPv4Address, spi: int, reason: str) -> Log:
        self._counters.increment("sessions.transfer_skipped")
        return warn(
            "Key Transfer of {home_address}: session {spi} not accepted: {reason}",
            home_address=str(home),
            spi=spi,
            reason=reason,
        )

    # --- expiry and removal ---------------------------------------------------------------

    def _forget_transfers(self, spis: list[int]) -> None:
        for spi in spis:
            self._transferred_under.pop(spi, None)

    def visitor_removed(
        self, home_address: ipaddress.IPv4Address, now: float, reason: str
    ) -> list[Effect]:
        """The visitor ``home_address`` went (expiry, deregistration): remove its data
        sessions and forget its pending set-ups."""
        effects: list[Effect] = []
        for spi in [s for s, p in self._pending.items() if p.info.mn_addr == home_address]:
            del self._pending[spi]
            effects.append(CancelTimer(_timer("pending", spi)))
        for spi in [s for s, a in self._answered.items() if a.mn_addr == home_address]:
            del self._answered[spi]
            effects.append(CancelTimer(_timer("answered", spi)))
        spis = tuple(s.spi for s in self.plane if s.mn_addr == home_address)
        for spi in spis:
            self.plane.remove(spi)
            self._transferred_under.pop(spi, None)
        if spis:
            self._counters.increment("sessions.removed", len(spis))
            fields: dict[str, object] = {
                "home_address": str(home_address),
                "spis": spis,
                "reason": reason,
            }
            effects += [
                info("removed the data sessions {spis} of {home_address}: {reason}", **fields),
                Event("sessions-removed", fields),
                *self._expiry.timer(now),
            ]
        return effects
