"""MVPN error messages (draft section 4; docs/protocol.md 7.7) in the sans-IO cores.

Pins which registration failure makes the FA or the HA send which error code, to whom (the
peer's address, the control port), with which reference; that the RFC 5944 reply code still
goes out beside it; the per-(destination, code) rate limit; and that receiving a control
datagram only logs and counts.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence
from typing import Any

from mvpn.core.effects import Channel, Counters, Effect, Log, Lookup, Send
from mvpn.core.errors import DEFAULT_CONTROL_PORT, ErrorReporter, receive_control
from mvpn.core.fa import ForeignAgent
from mvpn.core.ha import HomeAgent, HomeAgentConfig
from mvpn.core.messages import build_first_contact, build_reregistration
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.pki.certificate import Role, issue_certificate, make_ca_certificate
from mvpn.pki.tc_errors import (
    CertificateRevoked,
    InvalidCertificate,
    NotAuthorised,
    TrustedCentreUnreachable,
    UnknownNode,
)
from mvpn.wire.codes import MvpnError, ReplyCode
from mvpn.wire.control import ErrorMessage, KeyTransferAck
from mvpn.wire.mvpn_extensions import MobileInfoExtension
from mvpn.wire.registration import Identification, RegistrationReply, RegistrationRequest
from tests.core.world import (
    FA_ADDR,
    FA_ID,
    HA_ADDR,
    HA_ID,
    HOME,
    MN_LINK,
    NOW,
    T0,
    World,
    full_world,
    make_fa,
    make_ha,
    make_plain_mn,
    pki,
)

FA_SOURCE = (str(FA_ADDR), 434)
"""Where the HA sees relayed requests come from."""


def _errors(effects: Sequence[Effect]) -> list[tuple[ErrorMessage, tuple[str, int]]]:
    return [
        (ErrorMessage.decode(e.data), e.to)
        for e in effects
        if isinstance(e, Send) and e.channel is Channel.CONTROL
    ]


def _replies(effects: Sequence[Effect]) -> list[RegistrationReply]:
    return [
        RegistrationReply.decode(e.data)
        for e in effects
        if isinstance(e, Send) and e.channel is Channel.REGISTRATION and e.data[0] == 3
    ]


def _first_contact(now: float = T0, sequence: int = 0, seed: str = "fc") -> tuple[bytes, int]:
    """An MN's first contact through FA_ADDR and its clear MN Nonce."""
    data, _ = build_first_contact(
        pki().credentials(),
        FA_ADDR,
        300,
        Identification.from_unix_time(now).value,
        sequence,
        SeededRandom(f"{seed}-{now}"),
    )
    mobile_info = RegistrationRequest.decode(data).extensions[0]
    assert isinstance(mobile_info, MobileInfoExtension)
    return data, mobile_info.mn_nonce


def _started_fa(**options: Any) -> ForeignAgent:
    fa = make_fa(**options)
    fa.start(T0)
    return fa


def _lookup(effects: list[Effect]) -> Lookup:
    [lookup] = [e for e in effects if isinstance(e, Lookup)]
    return lookup


def _fa_lookup_answered(
    answer: object, fa: ForeignAgent | None = None
) -> tuple[list[Effect], int]:
    """A first contact at a fresh FA whose Ku_HA lookup is answered with ``answer``."""
    fa = fa or _started_fa()
    data, nonce = _first_contact()
    lookup = _lookup(fa.datagram_received(data, MN_LINK, T0))
    return lookup.then(answer), nonce  # type: ignore[arg-type]


# -- receiving -----------------------------------------------------------------------------


def test_received_error_is_logged_and_counted_and_nothing_else() -> None:
    """An Error on the control port gives one warning naming the code, reference, reason and
    peer, and moves mvpn_errors.received.<code>; no datagram, timer or event follows."""
    counters = Counters()
    data = ErrorMessage(MvpnError.TRUSTED_CENTRE_NOT_FOUND, 0x00120034, "TC down").encode()
    [log] = receive_control(data, ("127.0.0.2", 4350), counters)
    assert isinstance(log, Log) and log.level == "warn"
    text = log.render()
    assert "TRUSTED_CENTRE_NOT_FOUND (6)" in text
    assert str(0x00120034) in text and "TC down" in text and "127.0.0.2:4350" in text
    assert counters.snapshot() == {"mvpn_errors.received.6": 1}


def test_unknown_error_code_is_still_logged_and_counted() -> None:
    """An error code the draft does not list is logged as unknown and counted under its
    number (the receiver need do nothing, draft 4)."""
    counters = Counters()
    [log] = receive_control(ErrorMessage(300, 1, "").encode(), ("127.0.0.9", 1), counters)
    assert "unknown (300)" in log.render()  # type: ignore[union-attr]
    assert counters.get("mvpn_errors.received.300") == 1


def test_control_messages_without_a_handler_are_unexpected() -> None:
    """A well-formed control message of a type the node has no handler for is counted as
    unexpected and logged at debug level only."""
    counters = Counters()
    ack = KeyTransferAck(ipaddress.IPv4Address("10.0.0.5"), 300, 1, bytes(16)).encode()
    [log] = receive_control(ack, ("127.0.0.3", 4350), counters)
    assert isinstance(log, Log) and log.level == "debug"
    assert counters.snapshot() == {"control.unexpected": 1}


def test_malformed_control_datagrams_are_dropped_counted_and_logged() -> None:
    """Garbage, a Length that lies, an unknown (Type, Form) and a non-UTF-8 reason are each
    dropped with a warning and counted as control.malformed."""
    counters = Counters()
    good = ErrorMessage(MvpnError.OTHER, 0, "x").encode()
    bad_reason = good[:-1] + b"\xff"
    for data in (b"", b"\x07", good + b"\x00", b"\x63\x00\x00\x04", bad_reason):
        [log] = receive_control(data, ("127.0.0.9", 9), counters)
        assert isinstance(log, Log) and log.level == "warn"
        assert "127.0.0.9:9" in log.render()
    assert counters.snapshot() == {"control.malformed": 5}


# -- the rate limit -------------------------------------------------------------------------


def test_rate_limit_is_one_per_second_per_destination_and_code() -> None:
    """A second error of one code to one host within a second is suppressed and counted;
    another code or another host is not; after a second the same pair is sent again."""
    counters = Counters()
    reporter = ErrorReporter(4350, counters)
    six, five = MvpnError.TRUSTED_CENTRE_NOT_FOUND, MvpnError.HOME_AGENT_NOT_FOUND
    assert len(_errors(reporter.report("10.0.0.1", six, 1, "a", 100.0))) == 1
    assert _errors(reporter.report("10.0.0.1", six, 2, "a", 100.5)) == []
    assert len(_errors(reporter.report("10.0.0.1", five, 3, "a", 100.5))) == 1
    assert len(_errors(reporter.report("10.0.0.2", six, 4, "a", 100.9))) == 1
    assert _errors(reporter.report("10.0.0.1", six, 5, "a", 100.99)) == []
    [(message, to)] = _errors(reporter.report("10.0.0.1", six, 6, "a", 101.0))
    assert message.reference == 6 and to == ("10.0.0.1", 4350)
    assert counters.get("mvpn_errors.sent.6") == 3
    assert counters.get("mvpn_errors.sent.5") == 1
    assert counters.get("mvpn_errors.suppressed") == 2
    assert counters.get("mvpn_errors.suppressed.6") == 2


def test_an_older_time_never_sends_more() -> None:
    """A report with a time older than the latest seen (a lookup answer carrying its
    request's arrival time) is judged at the latest time: it cannot open a second slot."""
    reporter = ErrorReporter(4350, Counters())
    six = MvpnError.TRUSTED_CENTRE_NOT_FOUND
    assert _errors(reporter.report("10.0.0.1", six, 1, "a", 200.0))
    assert _errors(reporter.report("10.0.0.1", six, 1, "a", 150.0)) == []
    assert _errors(reporter.report("10.0.0.1", six, 1, "a", 201.0))


def test_limiter_memory_is_bounded() -> None:
    """With every remembered (destination, code) pair used in the last second, errors to
    new destinations are suppressed; once the second passes they go out again."""
    counters = Counters()
    reporter = ErrorReporter(4350, counters, max_destinations=2)
    code = MvpnError.OTHER
    assert _errors(reporter.report("10.0.0.1", code, 0, "", 10.0))
    assert _errors(reporter.report("10.0.0.2", code, 0, "", 10.1))
    assert _errors(reporter.report("10.0.0.3", code, 0, "", 10.2)) == []
    assert counters.get("mvpn_errors.suppressed") == 1
    assert _errors(reporter.report("10.0.0.3", code, 0, "", 11.05))


def test_control_port_zero_sends_nothing_and_reasons_are_clipped() -> None:
    """control_port 0 switches errors off; a reason longer than 200 UTF-8 bytes is cut on a
    character boundary so the message always encodes."""
    assert ErrorReporter(0, Counters()).report("10.0.0.1", MvpnError.OTHER, 0, "x", 0.0) == []
    reporter = ErrorReporter(4350, Counters())
    [(message, _)] = _errors(reporter.report("10.0.0.1", MvpnError.OTHER, 0, "é" * 150, 0.0))
    assert message.reason == "é" * 100


# -- the foreign agent -----------------------------------------------------------------------


def test_fa_tc_unreachable_is_88_and_error_6_to_the_mn() -> None:
    """Ku_HA lookup fails with TrustedCentreUnreachable: the MN still gets the bare 88, and
    Error 6 goes to the MN's address on the control port, naming its MN Nonce."""
    effects, nonce = _fa_lookup_answered(TrustedCentreUnreachable("down"))
    [reply] = _replies(effects)
    assert reply.code == ReplyCode.FA_HA_UNREACHABLE
    [(message, to)] = _errors(effects)
    assert message.code == MvpnError.TRUSTED_CENTRE_NOT_FOUND
    assert message.reference == nonce
    assert to == (MN_LINK[0], DEFAULT_CONTROL_PORT)
    assert message.reason and "down" not in message.reason


def test_fa_unknown_home_agent_is_error_5() -> None:
    """The TC knows no such HA (UnknownNode): 88 as before, and Error 5."""
    effects, nonce = _fa_lookup_answered(UnknownNode("no such node"))
    assert _replies(effects)[0].code == ReplyCode.FA_HA_UNREACHABLE
    [(message, _)] = _errors(effects)
    assert (message.code, message.reference) == (MvpnError.HOME_AGENT_NOT_FOUND, nonce)


def test_fa_revoked_invalid_or_wrong_certificate_is_error_4() -> None:
    """A revoked or invalid certificate (88), another node's certificate or one not valid now
    (68) each add Error 4, public key not valid."""
    expired_ca = make_ca_certificate(
        "corp.example",
        1,
        pki().ca_keys,
        NOW - datetime.timedelta(days=10),
        NOW + datetime.timedelta(days=30),
        1,
    )
    expired = issue_certificate(
        expired_ca,
        pki().ca_keys,
        Role.HA,
        HA_ID,
        "ha1",
        pki().ha_keys.public,
        HA_ADDR,
        NOW - datetime.timedelta(days=5),
        NOW - datetime.timedelta(days=1),
        9,
    )
    for answer, code in (
        (CertificateRevoked("revoked"), ReplyCode.FA_HA_UNREACHABLE),
        (InvalidCertificate("bad"), ReplyCode.FA_HA_UNREACHABLE),
        (pki().certificates[FA_ID], ReplyCode.FA_HA_FAILED_AUTHENTICATION),
        (expired, ReplyCode.FA_HA_FAILED_AUTHENTICATION),
    ):
        effects, _ = _fa_lookup_answered(answer)
        assert _replies(effects)[0].code == code
        [(message, _)] = _errors(effects)
        assert message.code == MvpnError.PUBLIC_KEY_NOT_VALID, answer


def test_fa_other_lookup_failure_is_error_7() -> None:
    """Any other lookup failure (here the TC refusing the FA) keeps 88 and adds Error 7."""
    effects, _ = _fa_lookup_answered(NotAuthorised("no"))
    assert _replies(effects)[0].code == ReplyCode.FA_HA_UNREACHABLE
    assert _errors(effects)[0][0].code == MvpnError.OTHER


def test_fa_flood_with_tc_down_sends_one_error_per_second() -> None:
    """Ten first contacts from one address in the same second with the TC down: ten 88s,
    one Error 6, nine suppressed; the next second another one goes out."""
    fa = _started_fa()
    errors, replies = 0, 0
    for i in range(10):
        data, _ = _first_contact(T0 + i * 0.05, seed=f"flood{i}")
        lookup = _lookup(fa.datagram_received(data, MN_LINK, T0 + i * 0.05))
        effects = lookup.then(TrustedCentreUnreachable("down"))
        errors += len(_errors(effects))
        replies += len(_replies(effects))
    assert (replies, errors) == (10, 1)
    assert fa.counters.get("mvpn_errors.suppressed") == 9
    data, _ = _first_contact(T0 + 1.2, seed="later")
    lookup = _lookup(fa.datagram_received(data, MN_LINK, T0 + 1.2))
    assert len(_errors(lookup.then(TrustedCentreUnreachable("down")))) == 1


def test_fa_pending_timeout_78_is_error_5() -> None:
    """No reply from the HA within 7 s: the MN hears 78 and Error 5 with its MN Nonce."""
    world = World()
    fa = make_fa()
    world.add_fa("fa", fa)
    world.add_ha("ha", make_ha())
    world.perform("fa", fa.start(world.now))
    world.drop = lambda d: d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    data, nonce = _first_contact(world.now)
    world.inject("fa", data, MN_LINK)
    world.advance(7.1)
    sent = [d.send for d in world.sent if d.sender == "fa"]
    assert [RegistrationReply.decode(s.data).code for s in sent if s.to == MN_LINK] == [78]
    [(message, to)] = _errors(list(sent))
    assert (message.code, message.reference) == (MvpnError.HOME_AGENT_NOT_FOUND, nonce)
    assert to == (MN_LINK[0], DEFAULT_CONTROL_PORT)


def test_fa_reregistration_timeout_names_the_spi() -> None:
    """A re-registration the HA never answers: 78 and Error 5 whose reference is the SPI."""
    world, _mn, fa, _ha = full_world()
    visitor = fa.visitor(HOME)
    assert visitor is not None and visitor.keys is not None
    world.drop = lambda d: d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    data = build_reregistration(
        pki().credentials(),
        visitor.keys,
        FA_ADDR,
        300,
        Identification.from_unix_time(world.now + 1).value,
    )
    before = len(world.sent)
    world.inject("fa", data, MN_LINK)
    world.advance(7.1)
    [(message, _)] = _errors([d.send for d in world.sent[before:] if d.sender == "fa"])
    assert (message.code, message.reference) == (
        MvpnError.HOME_AGENT_NOT_FOUND,
        visitor.keys.spi,
    )


def test_fa_plain_node_timeout_sends_no_error() -> None:
    """A plain RFC 5944 node speaks no MVPN: its 78 comes without an error message."""
    world, _mn, _fa, _ha = full_world(mn=make_plain_mn())
    world.drop = lambda d: d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    world.advance(300)
    assert any(
        d.send.channel is Channel.REGISTRATION
        and d.send.to == MN_LINK
        and RegistrationReply.decode(d.send.data).code == ReplyCode.FA_REGISTRATION_TIMEOUT
        for d in world.sent
    )
    assert [d for d in world.sent if d.send.channel is Channel.CONTROL] == []


def test_fa_unknown_suite_is_70_and_error_3() -> None:
    """Extension 36 with a reserved suite (Sub-Type 2): the bare 70 as before and Error 3,
    naming the request by the low 32 bits of its Identification (its layout is unknown)."""
    fa = _started_fa()
    data, _ = _first_contact()
    assert data[24] == 36
    changed = data[:25] + b"\x02" + data[26:]
    effects = fa.datagram_received(changed, MN_LINK, T0)
    assert _replies(effects)[0].code == ReplyCode.FA_POORLY_FORMED_REQUEST
    [(message, to)] = _errors(effects)
    identification = RegistrationRequest.decode(data).identification
    assert message.code == MvpnError.NO_MVPN_SUPPORT
    assert message.reference == identification & 0xFFFFFFFF
    assert to == (MN_LINK[0], DEFAULT_CONTROL_PORT)


def test_fa_original_authenticator_failing_is_67_and_error_1() -> None:
    """The MN's own first-contact authenticator does not verify with the MN Auth Key the HA
    returned: 67 to the MN, no visitor, and Error 1 naming the MN Nonce."""
    world = World()
    fa = make_fa()
    world.add_fa("fa", fa)
    world.add_ha("ha", make_ha())
    world.perform("fa", fa.start(world.now))
    data, nonce = _first_contact(world.now)
    forged = data[:-1] + bytes([data[-1] ^ 1])
    world.inject("fa", forged, MN_LINK)
    sent = [d.send for d in world.sent if d.sender == "fa" and d.send.to[0] == MN_LINK[0]]
    [reply] = [RegistrationReply.decode(s.data) for s in sent if s.channel is Channel.REGISTRATION]
    assert reply.code == ReplyCode.FA_MN_FAILED_AUTHENTICATION
    assert fa.visitor(HOME) is None
    [(message, _)] = _errors(sent)
    assert (message.code, message.reference) == (MvpnError.AUTHENTICATION_KEY_NOT_VALID, nonce)


def test_fa_control_port_is_configurable() -> None:
    """The FA sends to its own configured control port; 0 sends no error at all."""
    effects, _ = _fa_lookup_answered(TrustedCentreUnreachable("x"), _started_fa(control_port=5350))
    assert _errors(effects)[0][1] == (MN_LINK[0], 5350)
    effects, _ = _fa_lookup_answered(TrustedCentreUnreachable("x"), _started_fa(control_port=0))
    assert _errors(effects) == [] and _replies(effects)[0].code == ReplyCode.FA_HA_UNREACHABLE


def test_successful_registration_sends_no_error() -> None:
    """A first contact and a re-registration that succeed send nothing on the control port."""
    world, mn, _fa, _ha = full_world()
    world.advance(240)
    assert mn.state == "registered"
    assert [d for d in world.sent if d.send.channel is Channel.CONTROL] == []


# -- the home agent --------------------------------------------------------------------------


def _relayed(now: float = T0) -> tuple[bytes, int]:
    """A first contact as the FA relays it to the HA, and its MN Nonce."""
    fa = _started_fa()
    data, nonce = _first_contact(now)
    effects = _lookup(fa.datagram_received(data, MN_LINK, now)).then(pki().certificates[HA_ID])
    [send] = [e for e in effects if isinstance(e, Send)]
    return send.data, nonce


def _ha_lookup_answered(answer: object) -> tuple[list[Effect], int]:
    ha = make_ha()
    relayed, nonce = _relayed()
    lookup = _lookup(ha.datagram_received(relayed, FA_SOURCE, T0))
    return lookup.then(answer), nonce  # type: ignore[arg-type]


def test_ha_tc_unreachable_is_132_and_error_6_to_the_fa() -> None:
    """Ku_FA lookup fails with TrustedCentreUnreachable: the bare 132 as before, and Error 6
    to the FA's source address on the control port, naming the MN Nonce."""
    effects, nonce = _ha_lookup_answered(TrustedCentreUnreachable("down"))
    assert _replies(effects)[0].code == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    [(message, to)] = _errors(effects)
    assert (message.code, message.reference) == (MvpnError.TRUSTED_CENTRE_NOT_FOUND, nonce)
    assert to == (str(FA_ADDR), DEFAULT_CONTROL_PORT)


def test_ha_revoked_invalid_unknown_or_wrong_fa_certificate_is_error_4() -> None:
    """A revoked, invalid or unknown FA certificate, or another node's, each give 132 and
    Error 4 to the FA."""
    for answer in (
        CertificateRevoked("revoked"),
        InvalidCertificate("bad"),
        UnknownNode("none"),
        pki().certificates[HA_ID],
    ):
        effects, nonce = _ha_lookup_answered(answer)
        assert _replies(effects)[0].code == ReplyCode.HA_FA_FAILED_AUTHENTICATION
        [(message, _)] = _errors(effects)
        assert (message.code, message.reference) == (MvpnError.PUBLIC_KEY_NOT_VALID, nonce)


def test_ha_unknown_spi_is_bare_131_and_error_2() -> None:
    """A re-registration under an SPI the HA does not know (no binding, or not the
    binding's SA) gets the bare 131 as before and Error 2 naming that SPI, to the FA."""
    world, _mn, _fa, ha = full_world()
    for candidate in (make_ha(), ha):
        stranger = RegistrationKeys.generate(SeededRandom("stranger"), 0x7777, world.now, 300.0)
        data = build_reregistration(
            pki().credentials(),
            stranger,
            FA_ADDR,
            300,
            Identification.from_unix_time(world.now + 1).value,
        )
        effects = candidate.datagram_received(data, FA_SOURCE, world.now)
        [reply] = _replies(effects)
        assert reply.code == ReplyCode.HA_MN_FAILED_AUTHENTICATION and reply.extensions == ()
        [(message, to)] = _errors(effects)
        assert (message.code, message.reference) == (MvpnError.SESSION_KEY_NOT_VALID, 0x7777)
        assert to == (str(FA_ADDR), DEFAULT_CONTROL_PORT)


def test_ha_expired_keys_are_error_2() -> None:
    """A re-registration under the binding's SA after its keys expired: bare 131, Error 2."""
    world, _mn, fa, ha = full_world(ha_config=HomeAgentConfig(key_refresh_fraction=None))
    visitor = fa.visitor(HOME)
    assert visitor is not None and visitor.keys is not None
    binding = ha.bindings()[HOME]
    assert binding.keys is not None
    # Keys that expired while the binding lived on (a binding longer than its keys).
    short = dataclasses.replace(binding.keys, lifetime=1.0)
    ha._bindings[HOME] = dataclasses.replace(binding, keys=short)
    data = build_reregistration(
        pki().credentials(),
        visitor.keys,
        FA_ADDR,
        300,
        Identification.from_unix_time(world.now + 5).value,
    )
    effects = ha.datagram_received(data, FA_SOURCE, world.now + 5)
    assert _replies(effects)[0].code == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    [(message, _)] = _errors(effects)
    assert (message.code, message.reference) == (MvpnError.SESSION_KEY_NOT_VALID, short.spi)


def test_ha_errors_are_rate_limited_per_fa() -> None:
    """Two unknown-SPI re-registrations from one FA within a second: two bare 131s, one
    Error 2; the second is counted as suppressed."""
    ha: HomeAgent = make_ha()
    sent = 0
    for i in range(2):
        keys = RegistrationKeys.generate(SeededRandom(f"s{i}"), 0x8000 + i, T0, 300.0)
        data = build_reregistration(
            pki().credentials(), keys, FA_ADDR, 300, Identification.from_unix_time(T0 + i).value
        )
        effects = ha.datagram_received(data, FA_SOURCE, T0 + i * 0.1)
        assert len(_replies(effects)) == 1
        sent += len(_errors(effects))
    assert sent == 1
    assert ha.counters.get("mvpn_errors.suppressed.2") == 1
