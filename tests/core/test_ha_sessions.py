"""The home agent's Request Communication handling, in memory (docs/protocol.md 7.2, 7.3, 7.6a).

A registered MN (the real MN, FA and HA cores of :mod:`tests.core.world`), a CN whose
messages are built with :mod:`mvpn.core.correspondent`, and the HA's control handler. Every
refusal must send the right Error to the CN's control port, log a warning, count, and leave
no session, no spent SPI and nothing cached that should not be.
"""

from __future__ import annotations

import ipaddress

import pytest

from mvpn.core import correspondent as cor
from mvpn.core.dataplane import BadCodePoint, Relay
from mvpn.core.effects import Effect, Lookup
from mvpn.core.ha import HomeAgent, HomeAgentConfig
from mvpn.core.ha_sessions import EXPIRY_TIMER
from mvpn.core.messages import AgentIdentity
from mvpn.crypto.auth import HopAuthenticator
from mvpn.crypto.negotiation import encode_flags
from mvpn.pki.tc_errors import TrustedCentreUnreachable
from mvpn.wire.codes import AuthSecPar, EncrSecPar, MvpnError
from mvpn.wire.control import CorrespondentInfoToFA, ErrorMessage, decode_control
from mvpn.wire.data import data_header
from tests.core.world import (
    CN_ADDR,
    CN_ID,
    FA2_ADDR,
    FA2_ID,
    FA_ADDR,
    FA_ID,
    HOME,
    World,
    cn_identity,
    full_world,
    keys,
    make_fa,
    make_ha,
    pki,
    request_communication,
)

CONTROL = 4350


def setup(
    ha_config: HomeAgentConfig | None = None,
) -> tuple[World, HomeAgent]:
    """A world where the MN registered through the FA at the HA."""
    world, mn, _fa, ha = full_world(ha_config=ha_config)
    assert mn.state == "registered"
    return world, ha


def ask(world: World, ha: HomeAgent, data: bytes) -> None:
    """Hand ``data`` to the HA's Type 1 handler as if from the CN's control port."""
    world.call("ha", ha.control_handlers()[1](data, (str(CN_ADDR), CONTROL), world.now))


def errors_to_cn(world: World) -> list[ErrorMessage]:
    """Every Error the HA sent to the CN's control port."""
    out = []
    for d in world.control_messages("ha"):
        if d.send.to == (str(CN_ADDR), CONTROL):
            message = decode_control(d.send.data)
            assert isinstance(message, ErrorMessage)
            out.append(message)
    return out


def infos_to_fa(world: World, host: ipaddress.IPv4Address = FA_ADDR) -> list[bytes]:
    """Every Correspondent Information the HA sent to the FA at ``host``."""
    return [
        d.send.data
        for d in world.control_messages("ha")
        if d.send.to == (str(host), CONTROL) and d.send.data[0] == 2
    ]


def assert_nothing_installed(world: World, ha: HomeAgent, high_water: int) -> None:
    """No session, no Correspondent Information, no SPI spent."""
    assert len(ha.dataplane) == 0
    assert infos_to_fa(world) == []
    assert ha._store.spi_high_water() == high_water
    assert "session-authorised" not in world.event_names("ha")


# --- the accepted request -------------------------------------------------------------------


def test_request_installs_a_relay_session_and_informs_the_fa() -> None:
    """A verified request for a registered MN: one TC lookup of Ku_CN, a never-used SPI, a
    Correspondent Information form 0 to the FA's control port that the FA can open with the
    MN's registration Auth Key, and a relay session (mn_addr, cn_addr set, no cipher)."""
    world, ha = setup()
    high_water = ha._store.spi_high_water()
    data, pending = request_communication(world)
    ask(world, ha, data)
    assert ("ha", CN_ID) in world.lookups
    [info] = infos_to_fa(world)
    message = CorrespondentInfoToFA.decode(info)
    spi = message.spi
    assert spi == high_water + 1 and ha._store.spi_high_water() == spi
    session = ha.dataplane.get(spi)
    assert session is not None
    assert session.mn_addr == HOME and session.cn_addr == CN_ADDR
    assert session.send is None and session.receive is None
    assert session.encr_sec_par is EncrSecPar.AES_256_GCM
    binding = ha.bindings()[HOME]
    assert binding.keys is not None
    fa = AgentIdentity(FA_ID, pki().fa_keys, FA_ADDR)
    at_fa = cor.open_correspondent_info_at_fa(
        fa, info, pki().ha_keys.public, binding.keys.auth_key
    )
    assert at_fa.spi == spi and at_fa.cn_nonce == pending.cn_nonce
    probe = b"probe"
    assert session.auth.tag(probe) == HopAuthenticator(at_fa.data_auth_key).tag(probe)
    [event] = [e for n, e in world.events if n == "ha" and e.name == "session-authorised"]
    assert event.fields["spi"] == spi
    assert event.fields["home_address"] == str(HOME) and event.fields["cn"] == str(CN_ADDR)
    assert ha.counters.get("sessions.authorised") == 1
    assert ha.status(world.now)["sessions"] == 1
    assert ("ha", EXPIRY_TIMER) in world.timers
    assert errors_to_cn(world) == []


def test_second_request_uses_the_cached_key_and_a_new_spi() -> None:
    """A second request of the same CN needs no lookup (Ku_CN is cached) and gets another
    SPI and another data authentication key."""
    world, ha = setup()
    ask(world, ha, request_communication(world)[0])
    lookups = len(world.lookups)
    world.now += 1
    ask(world, ha, request_communication(world)[0])
    assert len(world.lookups) == lookups
    first, second = (CorrespondentInfoToFA.decode(i).spi for i in infos_to_fa(world))
    assert second == first + 1
    a, b = ha.dataplane.get(first), ha.dataplane.get(second)
    assert a is not None and b is not None
    assert a.auth.tag(b"x") != b.auth.tag(b"x")


def test_fa_key_is_looked_up_when_not_cached() -> None:
    """With no cached Ku_FA the HA looks it up (as for first contacts) and goes on."""
    world, ha = setup(HomeAgentConfig(fa_key_cache_lifetime=0.0))
    before = world.lookups.count(("ha", FA_ID))
    ask(world, ha, request_communication(world)[0])
    assert world.lookups.count(("ha", FA_ID)) == before + 1
    assert len(infos_to_fa(world)) == 1 and len(ha.dataplane) == 1


# --- refusals -------------------------------------------------------------------------------


def test_unknown_cn_is_refused_with_4() -> None:
    """No certificate for the CN: Error 4 naming the CN Nonce, a warning, a counter; no
    session, no SPI, no replay-cache entry, no cached key."""
    world, ha = setup()
    del world.certificates[CN_ID]
    high_water = ha._store.spi_high_water()
    data, pending = request_communication(world)
    ask(world, ha, data)
    [error] = errors_to_cn(world)
    assert error.code == MvpnError.PUBLIC_KEY_NOT_VALID and error.reference == pending.cn_nonce
    assert any("refused a session request" in w for w in world.warnings("ha"))
    assert ha.counters.get("sessions.refused.4") == 1
    assert_nothing_installed(world, ha, high_water)
    assert ha.sessions.status() == {"sessions": 0, "cn_keys_cached": 0, "replay_cache": 0}


def test_certificate_of_another_role_is_refused() -> None:
    """The TC's certificate for the CN ID must be a correspondent node's of that ID: an FA's
    certificate is refused with 4."""
    world, ha = setup()
    world.certificates[CN_ID] = world.certificates[FA_ID]
    high_water = ha._store.spi_high_water()
    ask(world, ha, request_communication(world)[0])
    assert [e.code for e in errors_to_cn(world)] == [MvpnError.PUBLIC_KEY_NOT_VALID]
    assert_nothing_installed(world, ha, high_water)


def test_unreachable_tc_is_refused_with_6() -> None:
    """The TC cannot be reached: Error 6 (Trusted Centre not found)."""
    world, ha = setup()
    data, pending = request_communication(world)
    effects = ha.control_handlers()[1](data, (str(CN_ADDR), CONTROL), world.now)
    [lookup] = [e for e in effects if isinstance(e, Lookup)]
    world.call("ha", lookup.then(TrustedCentreUnreachable("down")))
    [error] = errors_to_cn(world)
    assert error.code == MvpnError.TRUSTED_CENTRE_NOT_FOUND
    assert error.reference == pending.cn_nonce
    assert len(ha.dataplane) == 0


def test_bad_cn_signature_is_refused_with_4() -> None:
    """An impostor with the CN's ID but other keys: the signature over V fails, Error 4; the
    nonce does not enter the replay cache (the genuine CN may still use it)."""
    world, ha = setup()
    high_water = ha._store.spi_high_water()
    ask(world, ha, request_communication(world, cn=cn_identity(keys("impostor")))[0])
    assert [e.code for e in errors_to_cn(world)] == [MvpnError.PUBLIC_KEY_NOT_VALID]
    assert_nothing_installed(world, ha, high_water)
    assert ha.sessions.status()["replay_cache"] == 0


def test_replayed_request_is_refused_with_7() -> None:
    """The same request twice: the second is refused (error 7, replay) and installs
    nothing more."""
    world, ha = setup()
    data, pending = request_communication(world)
    ask(world, ha, data)
    ask(world, ha, data)
    [error] = errors_to_cn(world)
    assert error.code == MvpnError.OTHER and "replayed" in error.reason
    assert error.reference == pending.cn_nonce
    assert len(ha.dataplane) == 1 and len(infos_to_fa(world)) == 1
    assert ha.counters.get("sessions.replays") == 1


def test_replay_cache_forgets_pairs_once_their_timestamp_is_stale() -> None:
    """A full replay cache refuses new requests (error 7) until its entries' timestamps left
    the 30 s window; then they are forgotten and requests pass again."""
    world, ha = setup(HomeAgentConfig(replay_cache_size=1))
    ask(world, ha, request_communication(world)[0])
    world.now += 1
    ask(world, ha, request_communication(world)[0])
    assert [e.reason for e in errors_to_cn(world)] == [
        "replay cache full: too many session requests"
    ]
    world.now += 31
    ask(world, ha, request_communication(world)[0])
    assert len(ha.dataplane) == 2


def test_stale_timestamp_is_refused_with_7() -> None:
    """A request stamped more than 30 s off the HA's clock is refused before any lookup."""
    world, ha = setup()
    lookups = len(world.lookups)
    ask(world, ha, request_communication(world, at=world.now - 31)[0])
    assert [e.code for e in errors_to_cn(world)] == [MvpnError.OTHER]
    assert len(world.lookups) == lookups and len(ha.dataplane) == 0


def test_garbage_is_refused_without_a_lookup() -> None:
    """A datagram that does not decode, or is too long, costs no lookup: Error 7,
    Reference 0."""
    world, ha = setup()
    lookups = len(world.lookups)
    ask(world, ha, b"\x01\x00\x00\x08junk")
    world.now += 2  # past the Error rate limit
    ask(world, ha, b"\x01" + bytes(9000))
    assert [(e.code, e.reference) for e in errors_to_cn(world)] == [
        (MvpnError.OTHER, 0),
        (MvpnError.OTHER, 0),
    ]
    assert len(world.lookups) == lookups
    assert ha.counters.get("sessions.refused.7") == 2


def test_unregistered_mn_is_refused_with_7() -> None:
    """An MN with no binding (or an address this HA does not serve): error 7, "mobile node
    not registered"; nothing installed and no SPI spent."""
    world = World()
    ha = make_ha()
    world.add_ha("ha", ha)
    world.call("ha", ha.start(world.now))
    high_water = ha._store.spi_high_water()
    ask(world, ha, request_communication(world)[0])
    world.now += 2
    ask(world, ha, request_communication(world, mn_address=ipaddress.IPv4Address("10.9.9.9"))[0])
    errors = errors_to_cn(world)
    assert [e.code for e in errors] == [MvpnError.OTHER, MvpnError.OTHER]
    assert all(e.reason.startswith("mobile node not registered") for e in errors)
    assert_nothing_installed(world, ha, high_water)


def test_broken_algorithms_are_refused_with_7() -> None:
    """A CN that offers only the draft's broken algorithms is refused (error 7)."""
    world, ha = setup()
    broken = encode_flags([AuthSecPar.MD5], [EncrSecPar.DES])
    ask(world, ha, request_communication(world, sec_par=broken)[0])
    [error] = errors_to_cn(world)
    assert error.code == MvpnError.OTHER and "no usable" in error.reason
    assert len(ha.dataplane) == 0


def test_fa_key_failure_is_refused_and_spends_no_spi() -> None:
    """No valid certificate for the binding's FA: error 4 to the CN, no session, no SPI."""
    world, ha = setup(HomeAgentConfig(fa_key_cache_lifetime=0.0))
    del world.certificates[FA_ID]
    high_water = ha._store.spi_high_water()
    ask(world, ha, request_communication(world)[0])
    assert [e.code for e in errors_to_cn(world)] == [MvpnError.PUBLIC_KEY_NOT_VALID]
    assert_nothing_installed(world, ha, high_water)


def test_refusals_are_rate_limited() -> None:
    """Errors to one CN are rate-limited like every MVPN error (one per second and code);
    the suppressed ones are counted."""
    world, ha = setup()
    del world.certificates[CN_ID]
    for _ in range(3):
        ask(world, ha, request_communication(world)[0])
    assert len(errors_to_cn(world)) == 1
    assert ha.counters.get("mvpn_errors.suppressed.4") == 2
    assert ha.counters.get("sessions.refused.4") == 3


# --- sessions and bindings ------------------------------------------------------------------


def test_sessions_end_with_the_binding() -> None:
    """When the binding expires (the MN's re-registrations are lost) its sessions go, with a
    log and a "sessions-removed" event."""
    world, ha = setup()
    ask(world, ha, request_communication(world)[0])
    spi = CorrespondentInfoToFA.decode(infos_to_fa(world)[0]).spi
    world.drop = lambda d: d.sender == "mn"
    world.advance(301)
    assert HOME not in ha.bindings()
    assert len(ha.dataplane) == 0 and ha.status(world.now)["sessions"] == 0
    removed = [e for n, e in world.events if n == "ha" and e.name == "sessions-removed"]
    assert [e.fields["spis"] for e in removed] == [(spi,)]
    assert ha.counters.get("sessions.removed") == 1


def test_sessions_survive_a_move_to_another_fa() -> None:
    """A move to another FA is not a removal: the HA keeps the session (the data shell
    routes it by the new binding), and a new request goes to the new FA."""
    world, mn, _fa, ha = full_world()
    fa2 = make_fa(FA2_ADDR, FA2_ID, "fa2")
    world.add_fa("fa2", fa2)
    world.call("fa2", fa2.start(world.now))
    ask(world, ha, request_communication(world)[0])
    world.call("mn", mn.move_to(FA2_ADDR, world.now))
    assert ha.bindings()[HOME].care_of == FA2_ADDR
    assert len(ha.dataplane) == 1
    world.now += 1
    ask(world, ha, request_communication(world)[0])
    assert len(infos_to_fa(world, FA2_ADDR)) == 1 and len(ha.dataplane) == 2


def test_sessions_expire_after_their_lifetime() -> None:
    """The expiry timer removes a session when its lifetime ends."""
    world, ha = setup(HomeAgentConfig(session_lifetime=10.0))
    ask(world, ha, request_communication(world)[0])
    world.advance(9)
    assert len(ha.dataplane) == 1
    world.advance(2)
    assert len(ha.dataplane) == 0
    assert ha.counters.get("sessions.expired") == 1
    assert ("ha", EXPIRY_TIMER) not in world.timers


def test_internal_errors_never_escape() -> None:
    """An unexpected exception inside the handler becomes an error log, never a raise."""
    world, ha = setup()
    data, _ = request_communication(world)

    def broken(home: ipaddress.IPv4Address) -> None:
        raise RuntimeError("boom")

    ha.mobile_node = broken  # type: ignore[assignment,method-assign]
    effects: list[Effect] = ha.control_handlers()[1](data, (str(CN_ADDR), CONTROL), world.now)
    world.call("ha", effects)
    assert ha.counters.get("sessions.internal_error") == 1
    assert len(ha.dataplane) == 0


def test_session_cipher_is_the_one_mvpn_would_choose() -> None:
    """The HA cannot see the MN's choice: its relay session takes the best cipher of the CN's
    offer that mvpn offers (ChaCha20-Poly1305 for a CN offering only that)."""
    world, ha = setup()
    chacha = encode_flags([AuthSecPar.HMAC_SHA256_128], [EncrSecPar.CHACHA20_POLY1305])
    ask(world, ha, request_communication(world, sec_par=chacha)[0])
    [session] = list(ha.dataplane)
    assert session.encr_sec_par is EncrSecPar.CHACHA20_POLY1305


def test_relay_passes_every_cipher_the_cn_offered() -> None:
    """The MN may choose any cipher the CN offered (the HA never sees which): the HA's relay
    passes packets of each of them, and still refuses a code point the CN did not offer."""
    world, ha = setup()
    aes_only = encode_flags([AuthSecPar.HMAC_SHA256_128], [EncrSecPar.AES_256_GCM])
    ask(world, ha, request_communication(world)[0])
    ask(world, ha, request_communication(world, sec_par=aes_only)[0])
    both, aes = sorted(ha.dataplane, key=lambda s: s.spi)
    assert both.also_accepted == {EncrSecPar.AES_256_GCM, EncrSecPar.CHACHA20_POLY1305}
    assert aes.also_accepted == {EncrSecPar.AES_256_GCM}
    relay = Relay(ha.dataplane)
    for sequence, (session, encr, passes) in enumerate(
        (
            (both, EncrSecPar.AES_256_GCM, True),
            (both, EncrSecPar.CHACHA20_POLY1305, True),
            (aes, EncrSecPar.CHACHA20_POLY1305, False),
        ),
        start=1,
    ):
        header = data_header(0, AuthSecPar.HMAC_SHA256_128, encr, False, session.spi, sequence, 32)
        body = header + bytes(32)
        packet = body + session.auth.tag(body)
        if passes:
            assert relay.forward(packet, from_mn=False)[1] == 1  # Hop 0 in, 1 out
        else:
            with pytest.raises(BadCodePoint):
                relay.forward(packet, from_mn=False)
