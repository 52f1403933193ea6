"""The home agent's sans-IO core (mvpn/core/ha.py): first contact, re-registration, key
refresh, plain RFC 5944 nodes, deregistration, expiry, persistence, and every denial.

The FA and MN are played by the pure functions of mvpn.core.messages; the Trusted Centre by
a certificate issued at test time; time is a plain float (Unix time) moved by hand.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mvpn.core import messages as msg
from mvpn.core.effects import (
    CancelTimer,
    Channel,
    Effect,
    Event,
    Log,
    Lookup,
    Send,
    StartTimer,
)
from mvpn.core.ha import HomeAgent, HomeAgentConfig, MobileNodeRecord, PlainNodeRecord
from mvpn.core.store import Binding, BindingStore
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.pki.certificate import (
    NodeCertificate,
    Role,
    issue_certificate,
    make_ca_certificate,
)
from mvpn.wire.codes import ReplyCode
from mvpn.wire.registration import Identification, RegistrationReply

IP = ipaddress.IPv4Address
HOME = IP("10.1.0.5")
HOME2 = IP("10.1.0.6")
PLAIN_HOME = IP("10.1.0.9")
HA_ADDR = IP("10.1.0.1")
FA_ADDR = IP("192.0.2.1")
FA2_ADDR = IP("192.0.2.2")
FA_SOURCE = ("127.0.0.2", 434)
T0 = 1_800_000_000.0
PLAIN_KEY = b"plain shared key"
PLAIN_SPI = 0x1234


def ident(now: float) -> int:
    """A timestamp Identification (RFC 5944 5.7.1) for ``now``."""
    return Identification.from_unix_time(now).value


@dataclass
class World:
    """An HA core, its store, two FAs, two MNs, and the TC's certificates."""

    ha: HomeAgent
    store: BindingStore
    ha_id: msg.AgentIdentity
    fa: msg.AgentIdentity
    fa2: msg.AgentIdentity
    mn: msg.MobileCredentials
    mn2: msg.MobileCredentials
    certs: dict[int, NodeCertificate]
    random: SeededRandom
    records: list[MobileNodeRecord] = field(default_factory=list)


def make_world(store: BindingStore | None = None, config: HomeAgentConfig | None = None) -> World:
    random = SeededRandom("ha-tests")
    ha_id = msg.AgentIdentity(0x4801, PrivateKeys.generate(random), HA_ADDR)
    fa = msg.AgentIdentity(0x4602, PrivateKeys.generate(random), FA_ADDR)
    fa2 = msg.AgentIdentity(0x4603, PrivateKeys.generate(random), FA2_ADDR)
    ca_keys = PrivateKeys.generate(random)
    start = datetime.datetime.fromtimestamp(T0 - 86400, datetime.UTC)
    end = datetime.datetime.fromtimestamp(T0 + 86400 * 30, datetime.UTC)
    ca = make_ca_certificate("home.example", 1, ca_keys, start, end, 1)
    certs = {
        agent.node_id: issue_certificate(
            ca, ca_keys, Role.FA, agent.node_id, name, agent.public, agent.address, start, end, n
        )
        for n, (agent, name) in enumerate(((fa, "fa1"), (fa2, "fa2")), start=2)
    }

    def mn(user_id: int, home: IP) -> msg.MobileCredentials:
        return msg.MobileCredentials(
            user_id, 7, 0, PrivateKeys.generate(random), home, HA_ADDR, ha_id.node_id, ha_id.public
        )

    mn1, mn2 = mn(0xAA01, HOME), mn(0xAA02, HOME2)
    records = [MobileNodeRecord(m.home_address, m.user_id, m.keys.public) for m in (mn1, mn2)]
    store = store if store is not None else BindingStore()
    ha = HomeAgent(
        ha_id,
        store,
        random,
        config,
        mobile_nodes=records,
        plain_nodes=[PlainNodeRecord(PLAIN_HOME, PLAIN_SPI, PLAIN_KEY)],
    )
    return World(ha, store, ha_id, fa, fa2, mn1, mn2, certs, random, records)


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def only_send(effects: list[Effect]) -> bytes:
    """The one registration datagram of ``effects`` (MVPN errors beside it go to the
    control port, see tests/core/test_errors.py)."""
    out = [s for s in sends(effects) if s.channel is Channel.REGISTRATION]
    assert len(out) == 1, effects
    assert out[0].channel is Channel.REGISTRATION and out[0].to == FA_SOURCE
    return out[0].data


def resolve(w: World, effects: list[Effect]) -> list[Effect]:
    """Perform Lookups as the shell would, with the test TC's certificates."""
    out: list[Effect] = []
    for e in effects:
        if isinstance(e, Lookup):
            cert = w.certs.get(e.node_id)
            out += resolve(w, e.then(cert if cert else LookupError("unknown node")))
        else:
            out.append(e)
    return out


@dataclass
class Registered:
    """A finished first contact."""

    keys: RegistrationKeys
    pending: msg.FirstContactRequest
    effects: list[Effect]


def relayed_first_contact(
    w: World,
    now: float,
    mn: msg.MobileCredentials | None = None,
    fa: msg.AgentIdentity | None = None,
    identification: int | None = None,
    fa_nonce: int = 0x0F0F,
) -> tuple[bytes, msg.FirstContactSecrets, msg.FirstContactRequest]:
    mn = mn or w.mn
    fa = fa or w.fa
    m1, secrets = msg.build_first_contact(
        mn, fa.address, 300, identification or ident(now), 3, w.random
    )
    pending = msg.parse_first_contact(m1)
    m2 = msg.relay_first_contact(fa, pending, w.ha_id.public, w.ha_id.node_id, fa_nonce)
    return m2, secrets, pending


def first_contact(
    w: World,
    now: float,
    mn: msg.MobileCredentials | None = None,
    fa: msg.AgentIdentity | None = None,
) -> Registered:
    """MN -> FA -> HA -> FA -> MN through the HA core; returns the MN's keys."""
    mn = mn or w.mn
    fa = fa or w.fa
    m2, secrets, pending = relayed_first_contact(w, now, mn, fa)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, now))
    m3 = only_send(effects)
    opened = msg.open_home_info(fa, w.ha_id.public, m3, pending, 0x0F0F)
    msg.check_original_request(pending.data, opened.home_info.mn_auth_key)
    outcome = msg.open_first_contact_reply(mn, secrets, msg.build_mobile_reply(fa, opened), now)
    assert outcome.accepted and outcome.keys is not None
    return Registered(outcome.keys, pending, effects)


def reregister(
    w: World,
    keys: RegistrationKeys,
    now: float,
    lifetime: int = 300,
    identification: int | None = None,
    care_of: IP = FA_ADDR,
) -> tuple[list[Effect], int]:
    identification = identification or ident(now)
    r1 = msg.build_reregistration(w.mn, keys, care_of, lifetime, identification)
    r2 = msg.add_fa_ha_authenticator(r1, keys)
    return w.ha.datagram_received(r2, FA_SOURCE, now), identification


def open_rereg(
    w: World, keys: RegistrationKeys, effects: list[Effect], identification: int, now: float
) -> msg.RegistrationOutcome:
    to_mn, _, _ = msg.open_reregistration_reply_at_fa(only_send(effects), keys, now)
    return msg.open_reregistration_reply(w.mn, keys, identification, to_mn, now)


def events(effects: list[Effect]) -> list[str]:
    return [e.name for e in effects if isinstance(e, Event)]


def warnings(effects: list[Effect]) -> list[str]:
    return [e.render() for e in effects if isinstance(e, Log) and e.level == "warn"]


def denied_code(data: bytes) -> int:
    return int(RegistrationReply.decode(data).code)


# --- first contact ------------------------------------------------------------------------


def test_first_contact_looks_up_the_fa_once() -> None:
    """The first registration through an FA asks the TC for its key; the next one (another
    MN, same FA) uses the cache. Each first contact costs 8 public-key operations."""
    w = make_world()
    m2, _, _ = relayed_first_contact(w, T0)
    effects = w.ha.datagram_received(m2, FA_SOURCE, T0)
    lookups = [e for e in effects if isinstance(e, Lookup)]
    assert [lk.node_id for lk in lookups] == [w.fa.node_id]
    assert not sends(effects)
    done = resolve(w, effects)
    assert "registered" in events(done)
    assert any(isinstance(e, StartTimer) and e.delay == 300 for e in done)
    assert w.ha.counters.get("tc_lookups") == 1
    assert w.ha.counters.get("pk_operations") == 8
    second = first_contact(w, T0 + 1, mn=w.mn2)
    assert not any(isinstance(e, Lookup) for e in second.effects)
    assert w.ha.counters.get("tc_lookups") == 1
    assert w.ha.counters.get("pk_operations") == 16
    assert w.ha.counters.get("accepted.first_contact") == 2
    bindings = w.ha.bindings()
    assert bindings[HOME].care_of == FA_ADDR and bindings[HOME].fa_id == w.fa.node_id
    assert bindings[HOME].fa_address == FA_SOURCE[0]


def test_full_first_contact_gives_the_mn_the_bindings_keys() -> None:
    """The keys the MN ends with are the binding's, under a fresh SPI of 257 or more."""
    w = make_world()
    done = first_contact(w, T0)
    binding = w.ha.bindings()[HOME]
    assert binding.keys is not None
    assert done.keys.spi == binding.keys.spi >= 257
    assert done.keys.auth_key == binding.keys.auth_key
    assert binding.lifetime == 300


def test_replayed_first_contact_is_refused_binding_unchanged() -> None:
    """The same relayed datagram a second time is a replay: 133, authenticated to the FA,
    a warning, a counter, and the binding unchanged."""
    w = make_world()
    m2, _, pending = relayed_first_contact(w, T0)
    resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0))
    before = w.ha.bindings()[HOME]
    effects = w.ha.datagram_received(m2, FA_SOURCE, T0 + 1)
    reply = only_send(effects)
    assert denied_code(reply) == ReplyCode.HA_IDENTIFICATION_MISMATCH
    opened = msg.open_home_info(w.fa, w.ha_id.public, reply, pending, 0x0F0F)
    assert not opened.accepted and opened.home_info.ses_key == b""
    assert w.ha.bindings()[HOME] == before
    assert w.ha.counters.get("denied.133") == 1
    assert any("replay" in text for text in warnings(effects))
    assert "denied" in events(effects)


def test_clock_skew_is_refused_with_the_ha_time() -> None:
    """An Identification 60 s off the HA's clock is 133; the reply's high half is the HA's
    time and the low half the request's (RFC 5944 5.7.1)."""
    w = make_world()
    request_ident = ident(T0 - 60)
    m2, secrets, pending = relayed_first_contact(w, T0, identification=request_ident)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0))
    reply = RegistrationReply.decode(only_send(effects))
    assert reply.code == ReplyCode.HA_IDENTIFICATION_MISMATCH
    assert reply.identification & 0xFFFFFFFF == request_ident & 0xFFFFFFFF
    assert abs(Identification.from_int(reply.identification).unix_time() - T0) < 1
    # The denial reaches the MN authenticated.
    opened = msg.open_home_info(w.fa, w.ha_id.public, only_send(effects), pending, 0x0F0F)
    outcome = msg.open_first_contact_reply(w.mn, secrets, msg.build_mobile_reply(w.fa, opened), T0)
    assert outcome.code == ReplyCode.HA_IDENTIFICATION_MISMATCH
    assert w.ha.bindings() == {}


def test_forged_fa_signature_is_132() -> None:
    """A relayed request whose FA signature does not verify is refused with a bare 132."""
    w = make_world()
    m2, _, _ = relayed_first_contact(w, T0)
    forged = m2[:-1] + bytes([m2[-1] ^ 1])
    effects = resolve(w, w.ha.datagram_received(forged, FA_SOURCE, T0))
    reply = only_send(effects)
    assert len(reply) == 20 and denied_code(reply) == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    assert w.ha.counters.get("denied.132") == 1 and w.ha.bindings() == {}


def test_unknown_fa_and_wrong_certificate_are_132() -> None:
    """A lookup failure, or a certificate of another role or node, is a bare 132; nothing is
    cached, so the next attempt looks up again."""
    w = make_world()
    stranger = msg.AgentIdentity(0x4999, PrivateKeys.generate(w.random), FA_ADDR)
    m2, _, _ = relayed_first_contact(w, T0, fa=stranger)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0))
    assert denied_code(only_send(effects)) == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    assert any("LookupError" in text for text in warnings(effects))
    w.certs[stranger.node_id] = w.certs[w.fa.node_id]  # the TC answers with another FA's cert
    m2, _, _ = relayed_first_contact(w, T0 + 1, fa=stranger)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0 + 1))
    assert denied_code(only_send(effects)) == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    assert w.ha.counters.get("tc_lookups") == 2
    assert w.ha.counters.get("denied.132") == 2


def test_expired_fa_certificate_is_132() -> None:
    """A certificate that is not valid at ``now`` is refused."""
    w = make_world()
    m2, _, _ = relayed_first_contact(w, T0 + 86400 * 60)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0 + 86400 * 60))
    assert denied_code(only_send(effects)) == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    assert any("not valid" in text for text in warnings(effects))


def test_unknown_mn_is_131_and_wrong_home_address_129() -> None:
    """An MN the HA does not serve is 131 (no W: the HA cannot seal to it); an MN asking for
    another MN's home address is 129, authenticated to it."""
    w = make_world()
    outsider = msg.MobileCredentials(
        0xBB01, 7, 0, PrivateKeys.generate(w.random), HOME, HA_ADDR, 0x4801, w.ha_id.public
    )
    m2, _, pending = relayed_first_contact(w, T0, mn=outsider)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0))
    reply = only_send(effects)
    assert denied_code(reply) == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    opened = msg.open_home_info(w.fa, w.ha_id.public, reply, pending, 0x0F0F)
    assert opened.extension.home_to_mobile is None
    thief = msg.MobileCredentials(
        w.mn2.user_id, 7, 0, w.mn2.keys, HOME, HA_ADDR, 0x4801, w.ha_id.public
    )
    m2, secrets, pending = relayed_first_contact(w, T0 + 1, mn=thief)
    effects = w.ha.datagram_received(m2, FA_SOURCE, T0 + 1)
    reply = only_send(effects)
    assert denied_code(reply) == ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED
    opened = msg.open_home_info(w.fa, w.ha_id.public, reply, pending, 0x0F0F)
    outcome = msg.open_first_contact_reply(thief, secrets, msg.build_mobile_reply(w.fa, opened), 0)
    assert outcome.code == ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED
    assert w.ha.bindings() == {}


def test_request_for_another_ha_is_136_and_malformed_relay_134() -> None:
    """Extension 36 naming another HA is 136; a first contact without extension 37 is 134."""
    w = make_world()
    other_ha = msg.AgentIdentity(0x4888, PrivateKeys.generate(w.random), HA_ADDR)
    creds = msg.MobileCredentials(
        w.mn.user_id, 7, 0, w.mn.keys, HOME, HA_ADDR, other_ha.node_id, other_ha.public
    )
    m1, _ = msg.build_first_contact(creds, FA_ADDR, 300, ident(T0), 1, w.random)
    m2 = msg.relay_first_contact(
        w.fa, msg.parse_first_contact(m1), other_ha.public, other_ha.node_id, 1
    )
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0))
    assert denied_code(only_send(effects)) == ReplyCode.HA_UNKNOWN_HOME_AGENT
    effects = w.ha.datagram_received(m1, FA_SOURCE, T0)  # 36 then 32: not relayed
    assert denied_code(only_send(effects)) == ReplyCode.HA_POORLY_FORMED_REQUEST


def test_moving_to_another_fa_emits_moved() -> None:
    """A first contact through another FA replaces the binding and says 'moved'."""
    w = make_world()
    first_contact(w, T0)
    second = first_contact(w, T0 + 10, fa=w.fa2)
    assert "moved" in events(second.effects)
    assert w.ha.bindings()[HOME].care_of == FA2_ADDR
    assert w.ha.counters.get("moves") == 1


def test_binding_cache_limit_is_130() -> None:
    """With the cache full, a new MN gets 130; a known one may still re-register."""
    w = make_world(config=HomeAgentConfig(max_bindings=1))
    done = first_contact(w, T0)
    m2, _, _ = relayed_first_contact(w, T0 + 1, mn=w.mn2)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0 + 1))
    assert denied_code(only_send(effects)) == ReplyCode.HA_INSUFFICIENT_RESOURCES
    effects, i = reregister(w, done.keys, T0 + 2)
    assert open_rereg(w, done.keys, effects, i, T0 + 2).accepted


def test_lookup_backlog_drops() -> None:
    """Beyond the in-flight lookup limit, first contacts from unknown FAs are dropped."""
    w = make_world(config=HomeAgentConfig(max_lookups_in_flight=1))
    m2, _, _ = relayed_first_contact(w, T0)
    first = w.ha.datagram_received(m2, FA_SOURCE, T0)
    assert any(isinstance(e, Lookup) for e in first)
    second = w.ha.datagram_received(m2, FA_SOURCE, T0)
    assert second and not any(isinstance(e, Lookup | Send) for e in second)
    assert w.ha.counters.get("drops.lookup_backlog") == 1
    resolve(w, first)
    assert w.ha.bindings()[HOME].care_of == FA_ADDR


# --- re-registration ----------------------------------------------------------------------


def test_reregistration_is_symmetric_only() -> None:
    """A re-registration is accepted with no Lookup and no public-key operation."""
    w = make_world(config=HomeAgentConfig(key_refresh_fraction=None))
    done = first_contact(w, T0)
    pk = w.ha.counters.get("pk_operations")
    effects, i = reregister(w, done.keys, T0 + 240)
    assert not any(isinstance(e, Lookup) for e in effects)
    assert w.ha.counters.get("pk_operations") == pk
    outcome = open_rereg(w, done.keys, effects, i, T0 + 240)
    assert outcome.accepted and not outcome.refreshed
    assert "reregistered" in events(effects)
    assert w.ha.bindings()[HOME].registered_at == T0 + 240
    assert w.ha.counters.get("accepted.reregistration") == 1


def test_key_refresh_and_lost_refresh_reply() -> None:
    """Old keys are refreshed under a new SPI; if the MN never got the refresh it may use
    the old SA during the grace period and gets the current keys again; after the grace
    period the old SA is refused."""
    w = make_world()
    done = first_contact(w, T0)
    effects, i = reregister(w, done.keys, T0 + 200)
    outcome = open_rereg(w, done.keys, effects, i, T0 + 200)
    assert outcome.refreshed and outcome.keys is not None
    new = outcome.keys
    assert new.spi > done.keys.spi
    assert w.ha.counters.get("key_refreshes") == 1
    # The reply was lost: the MN retries under the old SA.
    effects, i = reregister(w, done.keys, T0 + 201)
    again = open_rereg(w, done.keys, effects, i, T0 + 201)
    assert again.refreshed and again.keys is not None
    assert (again.keys.spi, again.keys.auth_key) == (new.spi, new.auth_key)
    # The new SA works and, for a lifetime the keys still cover, needs no refresh.
    effects, i = reregister(w, new, T0 + 202, lifetime=200)
    assert not open_rereg(w, new, effects, i, T0 + 202).refreshed
    # Keys that would die before the renewed binding are refreshed even when young.
    effects, i = reregister(w, new, T0 + 203)
    assert open_rereg(w, new, effects, i, T0 + 203).refreshed
    # After the grace period the old SA is unknown: bare 131.
    effects, _ = reregister(w, done.keys, T0 + 240)
    assert denied_code(only_send(effects)) == ReplyCode.HA_MN_FAILED_AUTHENTICATION


def test_replayed_and_forged_reregistrations() -> None:
    """A replayed re-registration is 133 (authenticated); a forged MN authenticator 131 and a
    forged or missing FA authenticator 132 (bare); bindings unchanged throughout."""
    w = make_world(config=HomeAgentConfig(key_refresh_fraction=None))
    done = first_contact(w, T0)
    keys = done.keys
    _, i = reregister(w, keys, T0 + 5)
    before = w.ha.bindings()[HOME]
    replay, _ = reregister(w, keys, T0 + 6, identification=i)
    outcome = open_rereg(w, keys, replay, i, T0 + 6)
    assert outcome.code == ReplyCode.HA_IDENTIFICATION_MISMATCH
    r1 = msg.build_reregistration(w.mn, keys, FA_ADDR, 300, ident(T0 + 7))
    r2 = msg.add_fa_ha_authenticator(r1, keys)
    forged_mn = msg.add_fa_ha_authenticator(r1[:-1] + bytes([r1[-1] ^ 1]), keys)
    e1 = w.ha.datagram_received(forged_mn, FA_SOURCE, T0 + 7)
    assert denied_code(only_send(e1)) == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    e2 = w.ha.datagram_received(r2[:-1] + bytes([r2[-1] ^ 1]), FA_SOURCE, T0 + 7)
    assert denied_code(only_send(e2)) == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    e3 = w.ha.datagram_received(r1, FA_SOURCE, T0 + 7)
    assert denied_code(only_send(e3)) == ReplyCode.HA_FA_FAILED_AUTHENTICATION
    assert w.ha.bindings()[HOME] == before
    snap = w.ha.counters.snapshot()
    assert (snap["denied.133"], snap["denied.131"], snap["denied.132"]) == (1, 1, 2)


def test_reregistration_without_binding_or_with_new_care_of() -> None:
    """No binding: bare 131. A re-registration naming another care-of address: 129, since
    changing FA takes a first contact (docs/protocol.md 9)."""
    w = make_world()
    keys = RegistrationKeys.generate(w.random, 999, T0, 300)
    effects, _ = reregister(w, keys, T0)
    assert denied_code(only_send(effects)) == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    done = first_contact(w, T0)
    before = w.ha.bindings()[HOME]
    effects, i = reregister(w, done.keys, T0 + 1, care_of=FA2_ADDR)
    outcome = open_rereg(w, done.keys, effects, i, T0 + 1)
    assert outcome.code == ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED
    assert w.ha.bindings()[HOME] == before


def test_expired_keys_are_refused() -> None:
    """Keys past their lifetime no longer authenticate (the binding also ended)."""
    w = make_world(config=HomeAgentConfig(key_refresh_fraction=None))
    done = first_contact(w, T0)
    effects, _ = reregister(w, done.keys, T0 + 301)
    assert denied_code(only_send(effects)) == ReplyCode.HA_MN_FAILED_AUTHENTICATION
    assert any("expired" in text for text in warnings(effects))


# --- deregistration and expiry ------------------------------------------------------------


def test_deregistration_removes_the_binding() -> None:
    """Lifetime 0 removes the binding, cancels its timer and is acknowledged."""
    w = make_world()
    done = first_contact(w, T0)
    effects, i = reregister(w, done.keys, T0 + 5, lifetime=0)
    outcome = open_rereg(w, done.keys, effects, i, T0 + 5)
    assert outcome.accepted and outcome.lifetime == 0 and outcome.keys is None
    assert CancelTimer("ha-binding-10.1.0.5") in effects
    assert w.ha.bindings() == {} and w.store.load_bindings() == {}
    assert w.store.last_identification(HOME) == i


def test_expiry_timer_removes_the_binding() -> None:
    """The binding's timer fires at the end of its lifetime and removes it; a timer that
    fires after a renewal re-arms instead."""
    w = make_world()
    done = first_contact(w, T0)
    timer = next(e for e in done.effects if isinstance(e, StartTimer))
    assert timer.name == "ha-binding-10.1.0.5" and timer.delay == 300
    early = timer.fire(T0 + 100)
    assert isinstance(early[0], StartTimer) and HOME in w.ha.bindings()
    fired = timer.fire(T0 + 300)
    assert "expired" in events(fired)
    assert w.ha.bindings() == {} and w.store.load_bindings() == {}
    assert timer.fire(T0 + 400) == []
    assert w.ha.counters.get("expired") == 1


def test_lifetime_is_capped() -> None:
    """A request for more than the maximum lifetime gets the maximum."""
    w = make_world(config=HomeAgentConfig(max_lifetime=100))
    first_contact(w, T0)
    assert w.ha.bindings()[HOME].lifetime == 100


# --- plain RFC 5944 nodes ------------------------------------------------------------------


def test_plain_node_registers_and_deregisters() -> None:
    """A plain node's HMAC-MD5 request is accepted with a valid reply; a wrong key is a bare
    131; a replay is an authenticated 133; lifetime 0 deregisters."""
    w = make_world()
    i = ident(T0)
    data = msg.build_plain_request(PLAIN_HOME, HA_ADDR, FA_ADDR, 600, i, PLAIN_SPI, PLAIN_KEY)
    effects = w.ha.datagram_received(data, FA_SOURCE, T0)
    outcome = msg.open_plain_reply(PLAIN_HOME, i, PLAIN_SPI, PLAIN_KEY, only_send(effects))
    assert outcome.accepted and outcome.lifetime == 600
    binding = w.ha.bindings()[PLAIN_HOME]
    assert binding.keys is None and binding.plain_spi == PLAIN_SPI
    assert w.ha.counters.get("accepted.plain") == 1
    replay = w.ha.datagram_received(data, FA_SOURCE, T0 + 1)
    outcome = msg.open_plain_reply(PLAIN_HOME, i, PLAIN_SPI, PLAIN_KEY, only_send(replay))
    assert outcome.code == ReplyCode.HA_IDENTIFICATION_MISMATCH
    bad = msg.build_plain_request(
        PLAIN_HOME, HA_ADDR, FA_ADDR, 600, ident(T0 + 2), PLAIN_SPI, b"wrong shared key"
    )
    assert denied_code(only_send(w.ha.datagram_received(bad, FA_SOURCE, T0 + 2))) == 131
    i3 = ident(T0 + 3)
    dereg = msg.build_plain_request(PLAIN_HOME, HA_ADDR, FA_ADDR, 0, i3, PLAIN_SPI, PLAIN_KEY)
    effects = w.ha.datagram_received(dereg, FA_SOURCE, T0 + 3)
    assert msg.open_plain_reply(PLAIN_HOME, i3, PLAIN_SPI, PLAIN_KEY, only_send(effects)).accepted
    assert PLAIN_HOME not in w.ha.bindings()
    i4 = ident(T0 + 4)
    dereg2 = msg.build_plain_request(PLAIN_HOME, HA_ADDR, FA_ADDR, 0, i4, PLAIN_SPI, PLAIN_KEY)
    effects = w.ha.datagram_received(dereg2, FA_SOURCE, T0 + 4)
    assert msg.open_plain_reply(PLAIN_HOME, i4, PLAIN_SPI, PLAIN_KEY, only_send(effects)).accepted


# --- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_a_request"),
        (b"\x03" + bytes(40), "not_a_request"),
        (b"\x01\x00\x01", "malformed"),
        (b"\x01" + bytes(23) + b"\x20\x40", "malformed"),
        (b"\x01" + bytes(9000), "oversize"),
    ],
)
def test_garbage_is_dropped(data: bytes, reason: str) -> None:
    """Undecodable datagrams produce one warning, a drop counter and nothing sent."""
    w = make_world()
    effects = w.ha.datagram_received(data, FA_SOURCE, T0)
    assert len(effects) == 1 and isinstance(effects[0], Log) and effects[0].level == "warn"
    assert w.ha.counters.get(f"drops.{reason}") == 1


def test_request_without_authenticator_is_134() -> None:
    """A decodable request with no MN-HA authenticator is poorly formed: bare 134."""
    w = make_world()
    data = msg.build_plain_request(HOME, HA_ADDR, FA_ADDR, 600, ident(T0), 300, PLAIN_KEY)[:24]
    effects = w.ha.datagram_received(data, FA_SOURCE, T0)
    assert denied_code(only_send(effects)) == ReplyCode.HA_POORLY_FORMED_REQUEST


# --- persistence --------------------------------------------------------------------------


def test_restart_keeps_bindings_and_never_reuses_spis(tmp_path: Path) -> None:
    """After a crash (the store is never closed) a new HA on the same database still has
    the binding, accepts the MN's next re-registration, refuses a replay of the last
    request, hands out only new SPIs, and drops bindings that expired while it was down."""
    path = tmp_path / "ha.sqlite"
    w = make_world(store=BindingStore(path))
    done = first_contact(w, T0)
    short = first_contact(w, T0, mn=w.mn2)
    effects, last = reregister(w, done.keys, T0 + 10)
    outcome = open_rereg(w, done.keys, effects, last, T0 + 10)
    assert outcome.refreshed and outcome.keys is not None
    keys = outcome.keys
    # mn2's binding ends while the HA is down; mn1's (renewed at T0 + 10) does not.
    restarted = HomeAgent(w.ha_id, BindingStore(path), w.random, mobile_nodes=w.records)
    w.ha = restarted
    start = restarted.start(T0 + 305)
    assert "expired" in events(start)
    assert set(restarted.bindings()) == {HOME}
    timers = [e for e in start if isinstance(e, StartTimer)]
    assert [t.delay for t in timers] == [5.0]
    replay, _ = reregister(w, keys, T0 + 306, identification=last)
    assert open_rereg(w, keys, replay, last, T0 + 306).code == 133
    effects, i = reregister(w, keys, T0 + 307)
    after = open_rereg(w, keys, effects, i, T0 + 307)
    assert after.accepted and after.keys is not None
    again = first_contact(w, T0 + 308, mn=w.mn2)
    used = {done.keys.spi, short.keys.spi, keys.spi, after.keys.spi}
    assert again.keys.spi > max(used)


def test_status_lists_bindings_and_counters() -> None:
    """status() shows each binding's home address, care-of, FA, lifetime left and key age."""
    w = make_world()
    first_contact(w, T0)
    status = w.ha.status(T0 + 100)
    assert status["role"] == "ha"
    rows = status["bindings"]
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert row["home_address"] == "10.1.0.5" and row["care_of"] == "192.0.2.1"
    assert row["fa_id"] == w.fa.node_id and row["lifetime_left"] == 200.0
    assert row["key_age"] == 100.0 and row["mode"] == "mvpn"
    counters = status["counters"]
    assert isinstance(counters, dict) and counters["accepted"] == 1
    assert "key" not in str({k: v for k, v in row.items() if k != "key_age"})


class FailingStore(BindingStore):
    """A store whose disk fails on every binding write."""

    def put_binding(self, binding: Binding) -> None:
        raise OSError("disk full")


def test_store_failure_sends_no_reply() -> None:
    """If the binding cannot be committed, no reply leaves and the cache is unchanged: the
    error is logged and counted and the HA keeps serving."""
    w = make_world(store=FailingStore())
    m2, _, _ = relayed_first_contact(w, T0)
    effects = resolve(w, w.ha.datagram_received(m2, FA_SOURCE, T0))
    assert not sends(effects)
    assert [e.level for e in effects if isinstance(e, Log)] == ["debug", "error"]
    assert w.ha.counters.get("drops.internal_error") == 1
    assert w.ha.bindings() == {}
    garbage = w.ha.datagram_received(b"\x01", FA_SOURCE, T0)
    assert w.ha.counters.get("drops.malformed") == 1 and garbage
