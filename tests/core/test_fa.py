"""The foreign agent's sans-IO core against the real MN and HA cores (docs/protocol.md 5, 6).

Every test runs on the in-memory :class:`~tests.core.world.World`: no socket, no sleep, time
is a number the test moves.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from mvpn.core.effects import Channel, Send
from mvpn.core.fa import ForeignAgent
from mvpn.core.ha import HomeAgent, HomeAgentConfig
from mvpn.core.messages import build_first_contact, build_reregistration
from mvpn.crypto.random import SeededRandom
from mvpn.wire.codes import ReplyCode
from mvpn.wire.icmp import AgentAdvertisement, AgentFlags, AgentSolicitation
from mvpn.wire.registration import Identification, RegistrationReply, RegistrationRequest
from tests.core.world import (
    FA_ADDR,
    HA_ADDR,
    HOME,
    MN_LINK,
    PLAIN_HOME,
    Delivery,
    World,
    full_world,
    make_fa,
    make_ha,
    make_mn,
    make_plain_mn,
    pki,
)


def _replies_to_mn(world: World) -> list[RegistrationReply]:
    return [
        RegistrationReply.decode(d.send.data)
        for d in world.registration_messages()
        if d.sender == "fa" and d.send.to == MN_LINK
    ]


def _first_contact_bytes(world: World, sequence: int = 0, lifetime: int = 300) -> bytes:
    data, _ = build_first_contact(
        pki().credentials(),
        FA_ADDR,
        lifetime,
        Identification.from_unix_time(world.now).value,
        sequence,
        SeededRandom(f"fc-{world.now}-{sequence}-{lifetime}"),
    )
    return data


def _fa_world(**fa_options: Any) -> tuple[World, ForeignAgent, HomeAgent]:
    """FA and HA only: the test plays the MN by injecting datagrams."""
    world = World()
    fa = make_fa(**fa_options)
    ha = make_ha()
    world.add_ha("ha", ha)
    world.add_fa("fa", fa)
    world.perform("fa", fa.start(world.now))
    return world, fa, ha


def test_first_contact_is_four_messages_and_adds_a_visitor() -> None:
    """MN -> FA -> HA -> FA -> MN, one TC lookup at the FA (Ku_HA) and one at the HA (Ku_FA);
    the FA adds the visitor with the registration keys and lifetime (doc 5.2-5.4)."""
    world, mn, fa, _ = full_world()
    hops = [(d.sender, d.send.to[0]) for d in world.registration_messages()]
    assert hops == [
        ("mn", str(FA_ADDR)),
        ("fa", str(HA_ADDR)),
        ("ha", str(FA_ADDR)),
        ("fa", MN_LINK[0]),
    ]
    assert sorted(world.lookups) == [("fa", 0x4841), ("ha", 0x4641)]
    visitor = fa.visitor(HOME)
    assert visitor is not None and visitor.keys is not None
    assert visitor.keys.spi >= 257
    assert visitor.expires_at == world.now + 300
    assert mn.state == "registered"
    assert fa.counters.get("accepted") == 1
    # seal+sign of extension 37, open+verify of Q, sign+seal of T.
    assert fa.counters.get("pk_operations") == 6


def test_relayed_request_carries_36_and_37_but_not_32() -> None:
    """The FA relays header and extension 36 unchanged and adds 37; the MN's 32 stays behind
    (doc 5.2)."""
    world, _, _, _ = full_world()
    sent = world.registration_messages()
    original = RegistrationRequest.decode(sent[0].send.data)
    relayed = RegistrationRequest.decode(sent[1].send.data)
    assert [e.raw and e.raw[0] for e in relayed.extensions] == [36, 37]
    assert relayed.extensions[0] == original.extensions[0]
    assert sent[1].send.data.startswith(sent[0].send.data[:24])


def test_reregistration_uses_no_public_key_and_no_lookup() -> None:
    """At 80 % of the lifetime: four messages, no TC lookup, no public-key operation at MN,
    FA or HA, the visitor's lifetime renewed (doc 6.1)."""
    world, mn, fa, ha = full_world(ha_config=HomeAgentConfig(key_refresh_fraction=None))
    before = len(world.registration_messages())
    lookups = list(world.lookups)
    pk = [node.counters.get("pk_operations") for node in (mn, fa, ha)]
    spi = fa.visitor(HOME).keys.spi  # type: ignore[union-attr]
    world.advance(240)
    assert len(world.registration_messages()) == before + 4
    assert world.lookups == lookups
    assert [node.counters.get("pk_operations") for node in (mn, fa, ha)] == pk
    visitor = fa.visitor(HOME)
    assert visitor is not None and visitor.keys is not None and visitor.keys.spi == spi
    assert visitor.expires_at == world.now + 300
    assert fa.counters.get("relayed.reregistration") == 1
    assert world.event_names("mn") == ["registered", "reregistered"]


def test_key_refresh_is_installed_and_used_next_time() -> None:
    """A Key Refresh in the HA's reply gives the FA the new SA, and the next re-registration
    under the new SPI is relayed (doc 6.2)."""
    world, mn, fa, _ = full_world(ha_config=HomeAgentConfig(key_refresh_fraction=0.1))
    old = fa.visitor(HOME).keys  # type: ignore[union-attr]
    world.advance(240)
    new = fa.visitor(HOME).keys  # type: ignore[union-attr]
    assert old is not None and new is not None and new.spi != old.spi
    assert fa.counters.get("key_refreshes") == 1
    world.advance(240)
    assert fa.counters.get("relayed.reregistration") == 2
    assert mn.state == "registered"
    assert world.event_names("mn") == ["registered", "reregistered", "reregistered"]


def test_lifetime_too_long_is_denied_69() -> None:
    """A lifetime over the FA's maximum gets a bare 69 naming the maximum; nothing relayed."""
    world, fa, _ = _fa_world(max_lifetime=600)
    world.inject("fa", _first_contact_bytes(world, lifetime=601), MN_LINK)
    [reply] = _replies_to_mn(world)
    assert reply.code == ReplyCode.FA_LIFETIME_TOO_LONG and reply.lifetime == 600
    assert reply.extensions == ()
    assert fa.counters.get("denied.69") == 1
    assert [d.sender for d in world.registration_messages()] == ["fa"]
    assert world.lookups == []
    assert any("exceeds 600" in w for w in world.warnings("fa"))


def test_nonce_must_name_a_recent_advertisement() -> None:
    """An MN Nonce whose sequence the FA never advertised is refused with 67 (doc 5.2)."""
    world, fa, _ = _fa_world()
    world.inject("fa", _first_contact_bytes(world, sequence=7), MN_LINK)
    [reply] = _replies_to_mn(world)
    assert reply.code == ReplyCode.FA_MN_FAILED_AUTHENTICATION
    assert fa.counters.get("denied.67") == 1
    assert fa.visitor(HOME) is None


def test_replayed_first_contact_is_refused() -> None:
    """The same first contact (same MN Nonce) a second time is refused with 67 and not
    relayed again; the binding the first one made stays."""
    world, fa, ha = _fa_world()
    data = _first_contact_bytes(world)
    world.inject("fa", data, MN_LINK)
    relayed = [
        d
        for d in world.registration_messages()
        if d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    ]
    assert len(relayed) == 1
    binding = ha.bindings()[HOME]
    world.inject("fa", data, MN_LINK)
    relayed_after = [
        d
        for d in world.registration_messages()
        if d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    ]
    assert len(relayed_after) == 1
    assert _replies_to_mn(world)[-1].code == ReplyCode.FA_MN_FAILED_AUTHENTICATION
    assert fa.counters.get("replays") == 1
    assert ha.bindings()[HOME] == binding


def test_pending_request_times_out_with_78() -> None:
    """When the HA never answers, the MN gets 78 after 7 s and the entry is gone."""
    world, fa, _ = _fa_world()
    world.drop = lambda d: d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    assert fa.status(world.now)["pending"] == 1
    world.advance(6.9)
    assert _replies_to_mn(world) == []
    world.advance(0.2)
    [reply] = _replies_to_mn(world)
    assert reply.code == ReplyCode.FA_REGISTRATION_TIMEOUT
    assert fa.status(world.now)["pending"] == 0
    assert fa.counters.get("pending_timeouts") == 1


def test_forged_ha_reply_is_dropped_and_timeout_says_68() -> None:
    """A reply with the right FA Nonce but a broken seal is not obeyed; the pending entry
    stays, no visitor is added, and on timeout the MN hears 68 (doc 5.4)."""
    world, fa, _ = _fa_world()
    captured: list[bytes] = []

    def hold(d: Delivery) -> bool:
        if d.sender == "ha":
            captured.append(d.send.data)
            return True
        return False

    world.drop = hold
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    [genuine] = captured
    forged = genuine[:-1] + bytes([genuine[-1] ^ 1])
    world.inject("fa", forged, (str(HA_ADDR), 434))
    assert fa.visitor(HOME) is None
    assert fa.counters.get("drops.ha_failed_authentication") == 1
    assert _replies_to_mn(world) == []
    world.advance(7.0)
    [reply] = _replies_to_mn(world)
    assert reply.code == ReplyCode.FA_HA_FAILED_AUTHENTICATION


def test_reply_from_wrong_source_is_dropped() -> None:
    """A genuine reply arriving from another address than the HA's is dropped."""
    world, fa, _ = _fa_world()
    captured: list[bytes] = []

    def hold(d: Delivery) -> bool:
        if d.sender == "ha":
            captured.append(d.send.data)
            return True
        return False

    world.drop = hold
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    world.inject("fa", captured[0], ("127.0.0.99", 434))
    assert fa.counters.get("drops.wrong_source") == 1
    assert fa.visitor(HOME) is None
    world.inject("fa", captured[0], (str(HA_ADDR), 434))
    assert fa.visitor(HOME) is not None


def test_garbage_is_dropped_and_counted() -> None:
    """Undecodable, oversized and unknown-type datagrams are dropped with a warning and a
    counter; nothing is sent and the FA keeps serving."""
    world, fa, _ = _fa_world()
    for data in (b"", b"\x01\x00", b"\x07" * 30, b"\x03" + bytes(10), b"\x01" * 9000):
        world.inject("fa", data, MN_LINK)
    assert world.registration_messages() == []
    counters = fa.counters.snapshot()
    assert counters["drops.malformed"] == 4
    assert counters["drops.oversized"] == 1
    assert len(world.warnings("fa")) == 5
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    assert fa.visitor(HOME) is not None


def test_forged_reregistration_is_refused_67() -> None:
    """A re-registration whose authenticator does not verify with the visitor's Auth Key is
    refused with 67 and never reaches the HA; the visitor is unchanged (doc 6.1)."""
    world, _mn, fa, ha = full_world()
    visitor = fa.visitor(HOME)
    assert visitor is not None and visitor.keys is not None
    wrong = dataclasses.replace(visitor.keys, auth_key=bytes(32))
    data = build_reregistration(
        pki().credentials(),
        wrong,
        FA_ADDR,
        300,
        Identification.from_unix_time(world.now + 1).value,
    )
    before = len(world.registration_messages())
    expires = visitor.expires_at
    world.inject("fa", data, MN_LINK)
    sent = world.registration_messages()[before:]
    assert [(d.sender, d.send.to) for d in sent] == [("fa", MN_LINK)]
    assert (
        RegistrationReply.decode(sent[0].send.data).code == ReplyCode.FA_MN_FAILED_AUTHENTICATION
    )
    assert fa.visitor(HOME).expires_at == expires  # type: ignore[union-attr]
    assert ha.counters.get("requests") == 1


def test_replayed_reregistration_is_refused() -> None:
    """A re-registration replayed while the original is pending is refused, not relayed."""
    world, _mn, fa, _ = full_world()
    keys = fa.visitor(HOME).keys  # type: ignore[union-attr]
    assert keys is not None
    world.drop = lambda d: d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    data = build_reregistration(
        pki().credentials(), keys, FA_ADDR, 300, Identification.from_unix_time(world.now + 1).value
    )
    world.inject("fa", data, MN_LINK)
    world.inject("fa", data, MN_LINK)
    assert fa.counters.get("relayed.reregistration") == 1
    assert fa.counters.get("replays") == 1


def test_plain_rfc5944_node_is_relayed() -> None:
    """A plain RFC 5944 MN registers through our FA and HA; the FA relays its bytes
    unchanged and lists it as an rfc5944 visitor without keys (doc 6.3)."""
    world, mn, fa, _ha = full_world(mn=make_plain_mn())
    sent = world.registration_messages()
    assert len(sent) == 4
    assert sent[1].send.data == sent[0].send.data
    assert sent[3].send.data == sent[2].send.data
    visitor = fa.visitor(PLAIN_HOME)
    assert visitor is not None and visitor.keys is None
    assert mn.state == "registered"
    assert fa.counters.get("pk_operations") == 0
    assert fa.status(world.now)["visitors"][0]["mode"] == "rfc5944"  # type: ignore[index]


def test_plain_relay_can_be_switched_off() -> None:
    """With plain Mobile IP off, plain requests get 65 (administratively prohibited)."""
    world, _mn, fa, _ha = full_world(mn=make_plain_mn(), plain_mobile_ip=False)
    assert _replies_to_mn(world)[0].code == ReplyCode.FA_ADMINISTRATIVELY_PROHIBITED
    assert fa.visitor(PLAIN_HOME) is None


def test_visitor_expires_without_reregistration() -> None:
    """A visitor that does not re-register disappears when its lifetime ends."""
    world, _mn, fa, _ = full_world()
    world.drop = lambda d: d.sender == "mn"
    world.advance(299)
    assert fa.visitor(HOME) is not None
    world.advance(1.5)
    assert fa.visitor(HOME) is None
    assert fa.counters.get("visitors.expired") == 1
    assert "visitor-expired" in world.event_names("fa")


def test_lookup_failure_is_denied_88() -> None:
    """When the TC does not know the HA the MN gets 88 and nothing is relayed."""
    world, fa, _ = _fa_world()
    world.certificates.pop(0x4841)
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    [reply] = _replies_to_mn(world)
    assert reply.code == ReplyCode.FA_HA_UNREACHABLE
    assert fa.status(world.now)["pending"] == 0
    assert fa.counters.get("lookup_failures") == 1


def test_wrong_certificate_is_denied_68() -> None:
    """A lookup answered with another node's certificate is refused with 68."""
    world, _fa, _ = _fa_world()
    world.certificates[0x4841] = pki().certificates[0x4641]
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    assert _replies_to_mn(world)[0].code == ReplyCode.FA_HA_FAILED_AUTHENTICATION


def test_pending_table_is_bounded() -> None:
    """With the pending table full a new first contact gets 66 (insufficient resources)."""
    world, fa, _ = _fa_world(max_pending=1)
    world.drop = lambda d: d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    world.now += 0.5
    world.inject("fa", _first_contact_bytes(world), MN_LINK)
    assert _replies_to_mn(world)[0].code == ReplyCode.FA_INSUFFICIENT_RESOURCES
    assert fa.counters.get("pending_full") == 1


def test_home_agent_denial_reaches_the_mn_authenticated() -> None:
    """An HA denial (an MN the HA knows, at another home address) is passed on in an
    extension 39 the MN can authenticate; no visitor is added."""
    world = World()
    mn = make_mn()
    fa = make_fa()
    ha = make_ha(home=ipaddress.IPv4Address("10.0.0.99"))
    world.add_ha("ha", ha)
    world.add_fa("fa", fa)
    world.add_mn("mn", mn)
    world.call("mn", mn.start(world.now))
    world.call("fa", fa.start(world.now))
    [reply] = _replies_to_mn(world)
    assert reply.code == ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED
    assert [e.raw and e.raw[0] for e in reply.extensions] == [39]
    assert fa.visitor(HOME) is None
    assert fa.counters.get("denied.129") == 1
    assert mn.state == "failed"
    assert ("mn", 129) in [(n, e.fields.get("code")) for n, e in world.events]


def test_solicitation_is_answered_and_advertisements_counted() -> None:
    """A solicitation gets an advertisement to its sender; a bad one is dropped (RFC 5944
    2.3.2); every advertisement moves the counter."""
    fa = make_fa()
    effects = fa.solicitation_received(AgentSolicitation().encode(), MN_LINK, 0.0)
    [send] = [e for e in effects if isinstance(e, Send)]
    assert send.to == MN_LINK and send.channel is Channel.ADVERTISEMENT
    assert AgentAdvertisement.decode(send.data).mobility is not None
    assert fa.solicitation_received(b"\x0a\x00", MN_LINK, 0.0)[0].level == "warn"  # type: ignore[union-attr]
    effects = fa.start(1.0)
    assert any(isinstance(e, Send) for e in effects)
    assert fa.counters.get("advertisements") == 2
    assert fa.counters.get("drops.malformed_solicitation") == 1


def test_status_lists_visitors() -> None:
    """status() shows each visitor's home address, care-of, lifetime left and key age."""
    world, _mn, fa, _ = full_world()
    world.advance(10)
    status = fa.status(world.now)
    visitors = status["visitors"]
    assert isinstance(visitors, list)
    [visitor] = visitors
    assert visitor["home_address"] == str(HOME)
    assert visitor["care_of"] == str(FA_ADDR)
    assert visitor["lifetime_left"] == 290
    assert visitor["key_age"] == 10
    assert status["counters"]["accepted"] == 1  # type: ignore[index]


def test_internal_errors_never_escape() -> None:
    """An exception inside a handler becomes an error log and a counter, never a raise."""
    world, fa, _ = _fa_world()

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    fa._request = broken  # type: ignore[assignment]
    effects = fa.datagram_received(_first_contact_bytes(world), MN_LINK, world.now)
    assert [getattr(e, "level", None) for e in effects] == ["error"]
    assert fa.counters.get("errors.internal") == 1


def test_deregistration_removes_the_visitor() -> None:
    """An accepted re-registration with lifetime 0 (deregistration, RFC 5944 3.6.1.2)
    removes the visitor and cancels its expiry timer."""
    world, _mn, fa, ha = full_world()
    keys = fa.visitor(HOME).keys  # type: ignore[union-attr]
    assert keys is not None
    data = build_reregistration(
        pki().credentials(), keys, FA_ADDR, 0, Identification.from_unix_time(world.now + 1).value
    )
    world.inject("fa", data, MN_LINK)
    assert fa.visitor(HOME) is None
    assert fa.counters.get("visitors.deregistered") == 1
    assert ("fa", "visitor:10.0.0.5") not in world.timers
    assert HOME not in ha.bindings()


def test_replaced_sa_still_works_within_its_grace() -> None:
    """After a key refresh the old SA authenticates for one retransmission budget (30 s),
    so a re-registration built before the refresh reply arrived is still relayed (doc 6.2)."""
    world, _mn, fa, _ = full_world(ha_config=HomeAgentConfig(key_refresh_fraction=0.1))
    old = fa.visitor(HOME).keys  # type: ignore[union-attr]
    assert old is not None
    world.advance(240.5)
    assert fa.visitor(HOME).keys.spi != old.spi  # type: ignore[union-attr]
    late = build_reregistration(
        pki().credentials(), old, FA_ADDR, 300, Identification.from_unix_time(world.now + 2).value
    )
    world.inject("fa", late, MN_LINK)
    assert fa.counters.get("relayed.reregistration") == 2
    world.advance(30)
    too_late = build_reregistration(
        pki().credentials(), old, FA_ADDR, 300, Identification.from_unix_time(world.now + 3).value
    )
    before = fa.counters.get("relayed.reregistration")
    world.inject("fa", too_late, MN_LINK)
    assert fa.counters.get("relayed.reregistration") == before


def test_full_visitor_list_sets_busy_and_refuses_66() -> None:
    """With the visitor list full the FA advertises the B flag and refuses new mobile nodes
    with 66; the MN does not even try a busy agent."""
    world, mn, fa, _ = full_world(max_visitors=1)
    advertisement = AgentAdvertisement.decode(fa.schedule.advertisement(world.now))
    assert advertisement.mobility is not None
    assert advertisement.mobility.flags & AgentFlags.B
    data, _ = build_first_contact(
        dataclasses.replace(pki().credentials(), home_address=PLAIN_HOME),
        FA_ADDR,
        300,
        Identification.from_unix_time(world.now).value,
        fa.schedule.last_sequence or 0,
        SeededRandom("second"),
    )
    world.inject("fa", data, ("127.0.0.11", 4000))
    assert fa.counters.get("denied.66") == 1
    assert mn.state == "registered"


def test_bare_ha_denial_of_a_first_contact_is_reported_on_timeout() -> None:
    """A bare reply (no extension 38) for a pending first contact cannot be authenticated:
    it is not obeyed at once (a forgery must not cancel the request), but its code is what
    the MN hears if no authentic reply follows."""
    world, fa, _ = _fa_world()
    world.drop = lambda d: d.sender == "fa" and d.send.to[0] == str(HA_ADDR)
    data = _first_contact_bytes(world)
    world.inject("fa", data, MN_LINK)
    request = RegistrationRequest.decode(data)
    bare = RegistrationReply(
        ReplyCode.HA_POORLY_FORMED_REQUEST, 0, HOME, HA_ADDR, request.identification
    ).encode()
    world.inject("fa", bare, (str(HA_ADDR), 434))
    assert _replies_to_mn(world) == []
    assert fa.counters.get("drops.unauthenticated_reply") == 1
    world.advance(7.0)
    [reply] = _replies_to_mn(world)
    assert reply.code == ReplyCode.HA_POORLY_FORMED_REQUEST
