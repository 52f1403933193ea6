"""The mobile node's lifecycle machine (draft 3.1-3.3; RFC 5944 3.6; docs/protocol.md 9, 10).

Time is a number the test moves (:class:`~tests.core.world.World`); the FA and HA are the
real sans-IO cores.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from mvpn.core.advert import AgentInfo, Observation
from mvpn.core.effects import Channel, Send
from mvpn.core.fa import ForeignAgent
from mvpn.core.messages import RegistrationOutcome
from mvpn.core.mn import INPUT_NAMES, MobileNode, MobileNodeInputs, backoff
from mvpn.crypto.session import RegistrationKeys
from mvpn.wire.codes import ReplyCode
from mvpn.wire.icmp import AgentFlags, AgentSolicitation
from mvpn.wire.registration import RegistrationRequest
from tests.core.world import (
    ADVERTISE_TO,
    FA2_ADDR,
    FA2_ID,
    FA_ADDR,
    HA_ADDR,
    HOME,
    Delivery,
    World,
    full_world,
    make_fa,
    make_ha,
    make_mn,
    make_plain_mn,
)


def _mn_sends(world: World) -> list[tuple[float, bytes]]:
    return [(0.0, d.send.data) for d in world.registration_messages() if d.sender == "mn"]


# -- reaching every state ------------------------------------------------------------------


def _idle() -> tuple[World, MobileNode]:
    world = World()
    mn = make_mn()
    world.add_mn("mn", mn)
    return world, mn


def _discovering() -> tuple[World, MobileNode]:
    world, mn = _idle()
    world.call("mn", mn.start(world.now))
    return world, mn


def _moving() -> tuple[World, MobileNode]:
    world, mn = _discovering()
    world.call("mn", mn.move_to(None, world.now))
    return world, mn


def _registering() -> tuple[World, MobileNode]:
    world, mn = _discovering()
    fa = make_fa()
    world.add_fa("fa", fa)
    world.drop = lambda d: d.sender == "mn"
    world.call("fa", fa.start(world.now))
    return world, mn


def _registered() -> tuple[World, MobileNode]:
    world, mn, _, _ = full_world()
    return world, mn


def _reregistering() -> tuple[World, MobileNode]:
    world, mn = _registered()
    world.drop = lambda d: d.sender == "mn"
    world.advance(240.5)
    return world, mn


def _failed() -> tuple[World, MobileNode]:
    world, mn = _registering()
    world.advance(23.5)
    return world, mn


REACH: dict[str, Callable[[], tuple[World, MobileNode]]] = {
    "idle": _idle,
    "discovering": _discovering,
    "moving": _moving,
    "registering": _registering,
    "registered": _registered,
    "reregistering": _reregistering,
    "failed": _failed,
}


def _other_agent(now: float) -> AgentInfo:
    return AgentInfo(FA2_ADDR, FA2_ADDR, 5, 1800, AgentFlags.F, now, now + 9)


def _arguments(name: str, now: float) -> tuple[object, ...]:
    keys = RegistrationKeys(4000, bytes(32), bytes(32), now, 300.0)
    return {
        "start": (now,),
        "advertisement": (_other_agent(now), Observation.NEW, now),
        "reply_received": (b"not a reply", now),
        "timer_fired": (now,),
        "lifetime_due": (now,),
        "move_requested": (None, now),
        "agent_lost": (FA_ADDR, now),
        "agent_chosen": (_other_agent(now), now),
        "accepted": (RegistrationOutcome(0, 300, 1, keys=keys), now),
        "denied": (int(ReplyCode.HA_MN_FAILED_AUTHENTICATION), now),
        "gave_up": (now,),
    }[name]


# (state, input) -> state after. Inputs that mean nothing in a state loop.
EXPECTED: dict[str, dict[str, str]] = {
    "idle": {name: "idle" for name in INPUT_NAMES} | {"start": "discovering"},
    "discovering": {name: "discovering" for name in INPUT_NAMES}
    | {"advertisement": "registering", "agent_chosen": "registering", "move_requested": "moving"},
    "moving": {name: "moving" for name in INPUT_NAMES}
    | {"advertisement": "registering", "agent_chosen": "registering"},
    "registering": {name: "registering" for name in INPUT_NAMES}
    | {
        "move_requested": "moving",
        "agent_lost": "discovering",
        "accepted": "registered",
        "denied": "failed",
        "gave_up": "failed",
    },
    "registered": {name: "registered" for name in INPUT_NAMES}
    | {
        "lifetime_due": "reregistering",
        "move_requested": "moving",
        "agent_lost": "discovering",
        "agent_chosen": "registering",
    },
    "reregistering": {name: "reregistering" for name in INPUT_NAMES}
    | {
        "move_requested": "moving",
        "agent_lost": "discovering",
        "agent_chosen": "registering",
        "accepted": "registered",
        # The FA still advertises: the MN starts a first contact there at once.
        "denied": "registering",
        "gave_up": "registering",
    },
    "failed": {name: "failed" for name in INPUT_NAMES}
    | {
        # The retry timer: back to discovering, and the known FA is tried again.
        "timer_fired": "registering",
        "move_requested": "moving",
        "agent_chosen": "registering",
    },
}

PAIRS = [(state, name) for state in REACH for name in INPUT_NAMES]


def test_every_input_is_in_the_protocol() -> None:
    """The table lists exactly the machine's inputs."""
    declared = {n for n in dir(MobileNodeInputs) if not n.startswith("_")}
    assert declared == set(INPUT_NAMES)
    assert len(PAIRS) == 77


@pytest.mark.parametrize(("state", "name"), PAIRS)
def test_state_input_table(state: str, name: str) -> None:
    """Every (state, input) pair of the MN machine leads where the table says, and a pair
    that means nothing is counted as ignored."""
    world, mn = REACH[state]()
    assert mn.state == state
    ignored = mn.counters.get(f"ignored.{name}")
    # Only this input's own transition is observed: nothing the MN sends is answered.
    world.drop = lambda d: True
    getattr(mn._machine, name)(*_arguments(name, world.now))
    world.call("mn", mn.core.drain())
    assert mn.state == EXPECTED[state][name]
    # The name status() reports is the state Automat is really in.
    assert mn._machine.__automat_transitioner__._state.name == mn.state  # type: ignore[attr-defined]
    if EXPECTED[state][name] == state and name not in _LOOPS_WITH_WORK.get(state, ()):
        assert mn.counters.get(f"ignored.{name}") == ignored + 1


_LOOPS_WITH_WORK = {
    "discovering": ("advertisement",),
    "moving": ("advertisement", "move_requested"),
    "registering": ("timer_fired", "reply_received"),
    "registered": ("advertisement",),
    "reregistering": ("timer_fired", "reply_received", "advertisement"),
}


# -- behaviour -----------------------------------------------------------------------------


def test_backoff_schedule() -> None:
    """RFC 5944 3.6.3 / doc 10: 1 s, doubling, capped at 8 s."""
    assert [backoff(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]


def test_retransmits_with_backoff_then_fails_then_retries() -> None:
    """Five fresh requests at 0, 1, 3, 7, 15 s; at 23 s the MN gives up ("failed"); after
    30 s more it tries again."""
    world, mn = _registering()
    start = world.now
    times: list[float] = []

    def record(d: Delivery) -> bool:
        if d.sender == "mn":
            times.append(world.now)
            return True
        return False

    world.drop = record
    times.append(start)  # the first request went out in _registering
    world.advance(22.9)
    assert [t - start for t in times] == [0, 1, 3, 7, 15]
    assert mn.state == "registering"
    world.advance(0.2)
    assert mn.state == "failed"
    assert "failed" in world.event_names("mn")
    world.advance(30)
    assert mn.state == "registering"
    assert len(times) == 6
    assert mn.counters.get("retries") == 1


def test_each_retransmission_is_a_fresh_request() -> None:
    """Retransmissions carry a new Identification and a new MN Nonce (the FA refuses a
    reused nonce)."""
    world, _mn = _registering()
    world.advance(3.5)
    requests = [
        RegistrationRequest.decode(d.send.data)
        for d in world.registration_messages()
        if d.sender == "mn"
    ]
    assert len(requests) == 3
    assert len({r.identification for r in requests}) == 3
    assert len({r.extensions[0].encode()[4:8] for r in requests}) == 3


def test_unauthenticated_denial_keeps_retrying_and_is_reported() -> None:
    """A bare 78 from the FA (the HA never answered) is logged and counted, the MN keeps
    retransmitting, and when the budget ends it reports 78 (doc 5.4)."""
    world, mn, _, _ = full_world_without_ha()
    world.advance(30)
    assert mn.counters.get("replies.unauthenticated") >= 1
    assert mn.state == "failed"
    [failed] = [e for n, e in world.events if n == "mn" and e.name == "failed"]
    assert failed.fields["code"] == ReplyCode.FA_REGISTRATION_TIMEOUT


def full_world_without_ha() -> tuple[World, MobileNode, ForeignAgent, None]:
    """MN and FA, the HA's address unreachable."""
    world = World()
    mn = make_mn()
    fa = make_fa()
    world.add_fa("fa", fa)
    world.add_mn("mn", mn)
    world.call("mn", mn.start(world.now))
    world.call("fa", fa.start(world.now))
    return world, mn, fa, None


def test_reregisters_at_80_percent() -> None:
    """The re-registration goes out at 240 s of a 300 s lifetime, not before."""
    world, mn = _registered()
    sent = len(_mn_sends(world))
    world.advance(239.9)
    assert len(_mn_sends(world)) == sent
    world.advance(0.2)
    assert len(_mn_sends(world)) == sent + 1
    assert mn.state == "registered"
    assert world.event_names("mn") == ["registered", "reregistered"]


def test_lost_agent_leads_to_first_contact_elsewhere() -> None:
    """When the FA's advertisements stop, after their 9 s lifetime the MN reports
    "agent-lost", and registers with the next FA it hears ("moved")."""
    world, mn, _fa, ha = full_world()
    world.timers.pop(("fa", "advertise"))
    world.advance(8.5)
    assert mn.state == "registered"
    world.advance(1.0)
    assert mn.state == "discovering"
    assert "agent-lost" in world.event_names("mn")
    fa2 = make_fa(FA2_ADDR, FA2_ID, "fa2")
    world.add_fa("fa2", fa2)
    world.call("fa2", fa2.start(world.now))
    assert mn.state == "registered"
    assert mn.status(world.now)["fa"] == str(FA2_ADDR)
    assert world.event_names("mn")[-2:] == ["registered", "moved"]
    assert ha.bindings()[HOME].care_of == FA2_ADDR


def test_move_to_another_agent() -> None:
    """move_to(FA2): a first contact at FA2 as soon as it is heard, the keys shared with
    FA1 are dropped, and "moved" is reported (draft 3.3)."""
    world, mn, _fa, ha = full_world()
    fa2 = make_fa(FA2_ADDR, FA2_ID, "fa2")
    world.add_fa("fa2", fa2)
    world.call("fa2", fa2.start(world.now))
    assert mn.status(world.now)["fa"] == str(FA_ADDR)
    old_spi = mn.status(world.now)["spi"]
    world.call("mn", mn.move_to(FA2_ADDR, world.now))
    assert mn.state == "registered"
    status = mn.status(world.now)
    assert status["fa"] == str(FA2_ADDR) and status["spi"] != old_spi
    assert fa2.visitor(HOME) is not None
    assert ha.bindings()[HOME].care_of == FA2_ADDR
    assert world.event_names("mn")[-2:] == ["registered", "moved"]


def test_move_waits_for_the_target() -> None:
    """A move to an FA not yet heard waits in "moving" until its advertisement arrives."""
    world, mn, _fa, _ = full_world()
    world.call("mn", mn.move_to(FA2_ADDR, world.now))
    world.advance(3)
    assert mn.state == "moving"
    fa2 = make_fa(FA2_ADDR, FA2_ID, "fa2")
    world.add_fa("fa2", fa2)
    world.call("fa2", fa2.start(world.now))
    assert mn.state == "registered"
    assert mn.status(world.now)["fa"] == str(FA2_ADDR)


def test_restarted_agent_gets_a_new_first_contact() -> None:
    """An FA whose sequence number falls back below 256 has lost its visitors (RFC 5944
    2.4.2): the MN registers again with a first contact."""
    world, mn, _fa, _ = full_world()
    world.advance(5)
    restarted = make_fa(seed="fa-restarted")
    world.add_fa("fa", restarted)
    world.call("fa", restarted.start(world.now))
    assert mn.state == "registered"
    assert mn.counters.get("registrations") == 2
    assert restarted.visitor(HOME) is not None


def test_plain_mode_registers_and_reregisters() -> None:
    """In rfc5944 mode the MN sends plain requests (HMAC-MD5, no MVPN extension) and
    re-registers the same way."""
    world, mn, _, _ = full_world(mn=make_plain_mn())
    first = RegistrationRequest.decode(_mn_sends(world)[0][1])
    assert [e.raw and e.raw[0] for e in first.extensions] == [32]
    assert len(first.extensions[0].encode()) == 2 + 4 + 16
    assert mn.state == "registered"
    world.advance(240.5)
    assert world.event_names("mn") == ["registered", "reregistered"]
    assert mn.counters.get("pk_operations") == 0


def test_garbage_reply_is_ignored() -> None:
    """A datagram that is not an authentic reply changes nothing; it is counted."""
    world, mn = _registering()
    world.call("mn", mn.datagram_received(b"\x03garbage", ("127.0.0.2", 434), world.now))
    assert mn.state == "registering"
    assert mn.counters.get("drops.reply_failed_authentication") == 1


def test_solicits_when_configured() -> None:
    """With solicitation_to set the MN sends an Agent Solicitation when it starts looking."""
    mn = make_mn(solicitation_to=ADVERTISE_TO)
    effects = mn.start(0.0)
    [send] = [e for e in effects if isinstance(e, Send) and e.channel is Channel.ADVERTISEMENT]
    assert send.data == AgentSolicitation().encode()


def test_status_reports_state_and_binding() -> None:
    """status() gives state, FA, care-of, lifetime left, key age and counters."""
    world, mn = _registered()
    world.advance(10)
    status = mn.status(world.now)
    assert status["state"] == "registered"
    assert status["care_of"] == str(FA_ADDR)
    assert status["lifetime_left"] == 290
    assert status["key_age"] == 10
    assert status["home_agent"] == str(HA_ADDR)
    assert isinstance(status["counters"], dict) and status["counters"]["registrations"] == 1


def test_first_contact_denial_is_reported() -> None:
    """An authenticated HA denial ends the round: "denied" with the code, state failed."""
    world = World()
    mn = make_mn()
    fa = make_fa()
    ha = make_ha(home=ipaddress.IPv4Address("10.0.0.99"))
    world.add_ha("ha", ha)
    world.add_fa("fa", fa)
    world.add_mn("mn", mn)
    world.call("mn", mn.start(world.now))
    world.call("fa", fa.start(world.now))
    assert mn.state == "failed"
    assert mn.counters.get("denied.129") == 1


def test_internal_errors_never_escape() -> None:
    """An exception inside a transition becomes an error log and a counter, never a raise."""
    world, mn = _registering()

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    mn._machine.reply_received = broken  # type: ignore[assignment]
    effects = mn.datagram_received(b"\x03", ("127.0.0.2", 434), world.now)
    assert [getattr(e, "level", None) for e in effects] == ["error"]
    assert mn.counters.get("errors.internal") == 1
