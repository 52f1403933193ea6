"""Registration end to end on loopback with real UDP, scripted from the mobile node's side:
the messages are built and checked with mvpn.core.messages (what a mobile node does), sent
through a real foreign agent service to a real home agent service, with both domains' Trusted
Centres running in this process.

Pins: first contact (only TC lookups of keys not cached), re-registration (no TC request and
no public-key operation anywhere), replayed and forged requests refused with the binding
unchanged, a plain RFC 5944 node, an FA change, lifetime expiry, garbage dropped.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]

from mvpn.core import messages as msg
from mvpn.crypto.random import system_random
from mvpn.pki.bundle import SmartCard
from mvpn.wire.icmp import AgentAdvertisement
from mvpn.wire.registration import Identification, RegistrationReply
from tests.roles.live import (
    HOME_ADDRESS,
    PLAIN_HOME_ADDRESS,
    Home,
    World,
    settle,
    wait_for,
)

PLAIN_KEY = bytes(range(16))


@pytest_twisted.async_yield_fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    world = World(tmp_path)
    setup = Home(world, plain_key=PLAIN_KEY)
    try:
        await setup.ready()
        yield setup
    finally:
        await world.stop()
        await setup.link.port.stopListening()


def identification() -> int:
    return int(Identification.from_unix_time(time.time()))


class ScriptedMobile:
    """A mobile node driven step by step by the test."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.creds = msg.MobileCredentials.from_smart_card(SmartCard.load(home.card))
        self.keys: Any = None

    async def sequence(self, fa: int) -> int:
        """The Sequence Number of a fresh advertisement of FA ``fa``."""
        source = self.home.fa_advertisement(fa)
        self.home.link.take(source)
        data = await self.home.link.next_from(source)
        mobility = AgentAdvertisement.decode(data).mobility
        assert mobility is not None
        return mobility.sequence_number

    async def exchange(self, fa: int, request: bytes) -> bytes:
        to = self.home.fa_registration(fa)
        self.home.link.send(request, to)
        return await self.home.link.next_from(to)

    async def first_contact(self, fa: int, lifetime: int = 300) -> msg.RegistrationOutcome:
        care_of = ipaddress.IPv4Address(self.home.fa_registration(fa)[0])
        request, secrets = msg.build_first_contact(
            self.creds, care_of, lifetime, identification(), await self.sequence(fa), system_random
        )
        reply = await self.exchange(fa, request)
        outcome = msg.open_first_contact_reply(self.creds, secrets, reply, time.time())
        self.keys = outcome.keys
        return outcome

    def reregistration(self, fa: int, lifetime: int = 300) -> tuple[bytes, int]:
        ident = identification()
        care_of = ipaddress.IPv4Address(self.home.fa_registration(fa)[0])
        return msg.build_reregistration(self.creds, self.keys, care_of, lifetime, ident), ident


def binding(home: Home) -> Any:
    return home.ha.core.bindings().get(ipaddress.IPv4Address(HOME_ADDRESS))


@pytest_twisted.ensureDeferred
async def test_first_contact_then_reregistration(home: Home) -> None:
    """A first contact through FA1 is accepted with registration keys, the HA binds the home
    address to FA1's care-of address and FA1 lists the visitor; the only TC requests are
    FA1's for Ku_HA and the HA's for Ku_FA. A re-registration is then accepted with no TC
    request and no public-key operation at the HA or the FA."""
    mobile = ScriptedMobile(home)
    outcome = await mobile.first_contact(0)
    assert outcome.accepted and outcome.keys is not None
    bound = binding(home)
    assert str(bound.care_of) == "127.0.0.2"
    fa = home.fas[0]
    assert [v["home_address"] for v in fa.status()["visitors"]] == [HOME_ADDRESS]
    ha_counters, fa_counters = home.ha.counters(), fa.counters()
    assert ha_counters["certificates.tc_requests"] == 1
    assert fa_counters["certificates.tc_requests"] == 1

    request, ident = mobile.reregistration(0)
    reply = await mobile.exchange(0, request)
    again = msg.open_reregistration_reply(mobile.creds, mobile.keys, ident, reply, time.time())
    assert again.accepted
    after_ha, after_fa = home.ha.counters(), fa.counters()
    for before, after in ((ha_counters, after_ha), (fa_counters, after_fa)):
        assert after["certificates.tc_requests"] == before["certificates.tc_requests"]
        assert after.get("pk_operations", 0) == before.get("pk_operations", 0)
    assert binding(home).identification == ident


@pytest_twisted.ensureDeferred
async def test_replayed_and_forged_requests_refused(home: Home) -> None:
    """The same re-registration sent twice is refused the second time; a re-registration with
    one authenticator bit flipped is refused (by the FA, which checks the MN's authenticator);
    a replayed first contact is refused; a first contact tampered with in transit is refused
    by the HA; after all of it the binding is the one the genuine requests made."""
    mobile = ScriptedMobile(home)
    await mobile.first_contact(0)
    request, ident = mobile.reregistration(0)
    reply = await mobile.exchange(0, request)
    assert msg.open_reregistration_reply(
        mobile.creds, mobile.keys, ident, reply, time.time()
    ).accepted
    before = binding(home)

    replayed = RegistrationReply.decode(await mobile.exchange(0, request))
    assert replayed.code != 0
    forged_request, _ = mobile.reregistration(0)
    forged = forged_request[:-1] + bytes([forged_request[-1] ^ 1])
    denied = RegistrationReply.decode(await mobile.exchange(0, forged))
    assert denied.code != 0
    assert binding(home) == before

    # A first contact captured and replayed: same MN Nonce, same Identification.
    care_of = ipaddress.IPv4Address(home.fa_registration(0)[0])
    first, _ = msg.build_first_contact(
        mobile.creds, care_of, 300, identification(), await mobile.sequence(0), system_random
    )
    await mobile.exchange(0, first)
    refused = RegistrationReply.decode(await mobile.exchange(0, first))
    assert refused.code != 0

    # A first contact whose sealed mobile information was tampered with on the way: the FA
    # cannot tell, relays it, and the HA (MN signature) refuses it; the FA passes the denial.
    ha_denied = sum(v for k, v in home.ha.counters().items() if k.startswith("denied."))
    before = binding(home)  # the genuine first contact above made a new binding
    tampered, _ = msg.build_first_contact(
        mobile.creds, care_of, 300, identification(), await mobile.sequence(0), system_random
    )
    middle = 24 + 40  # inside extension 36's sealed M, after the header and its clear fields
    tampered = tampered[:middle] + bytes([tampered[middle] ^ 0x80]) + tampered[middle + 1 :]
    assert RegistrationReply.decode(await mobile.exchange(0, tampered)).code != 0
    after = sum(v for k, v in home.ha.counters().items() if k.startswith("denied."))
    assert after == ha_denied + 1
    assert binding(home) == before
    denied_total = sum(v for k, v in home.fas[0].counters().items() if k.startswith("denied."))
    assert denied_total >= 3


@pytest_twisted.ensureDeferred
async def test_plain_rfc5944_node(home: Home) -> None:
    """A plain RFC 5944 mobile node (no MVPN extension, HMAC-MD5 MN-HA authenticator with a
    key the HA holds) registers through the FA and gets a valid, authenticated reply."""
    ident = identification()
    request = msg.build_plain_request(
        ipaddress.IPv4Address(PLAIN_HOME_ADDRESS),
        ipaddress.IPv4Address("127.0.0.1"),
        ipaddress.IPv4Address(home.fa_registration(0)[0]),
        120,
        ident,
        1000,
        PLAIN_KEY,
    )
    mobile = ScriptedMobile(home)
    reply = await mobile.exchange(0, request)
    outcome = msg.open_plain_reply(
        ipaddress.IPv4Address(PLAIN_HOME_ADDRESS), ident, 1000, PLAIN_KEY, reply
    )
    assert outcome.accepted and outcome.lifetime == 120
    bound = home.ha.core.bindings()[ipaddress.IPv4Address(PLAIN_HOME_ADDRESS)]
    assert str(bound.care_of) == "127.0.0.2"


@pytest_twisted.ensureDeferred
async def test_fa_change(home: Home) -> None:
    """After registering through FA1 the mobile node does a first contact through FA2: the
    HA moves the binding to FA2's care-of address and reports the move."""
    moves: list[Any] = []
    home.ha.runner.subscribe(lambda e: moves.append(e) if e.name == "moved" else None)
    mobile = ScriptedMobile(home)
    await mobile.first_contact(0)
    outcome = await mobile.first_contact(1)
    assert outcome.accepted
    assert str(binding(home).care_of) == "127.0.0.3"
    assert [e.fields["previous_care_of"] for e in moves] == ["127.0.0.2"]
    assert home.fas[1].status()["visitors"][0]["home_address"] == HOME_ADDRESS


@pytest_twisted.ensureDeferred
async def test_lifetime_expiry(home: Home) -> None:
    """A registration with a 1-second lifetime is bound, then removed from the HA's binding
    cache and the FA's visitor list when the lifetime ends."""
    mobile = ScriptedMobile(home)
    outcome = await mobile.first_contact(0, lifetime=1)
    assert outcome.accepted and outcome.lifetime == 1
    assert binding(home) is not None
    await wait_for(lambda: binding(home) is None, timeout=5, what="the binding to expire")
    await wait_for(
        lambda: home.fas[0].status()["visitors"] == [], timeout=5, what="the visitor to expire"
    )


@pytest_twisted.ensureDeferred
async def test_garbage_dropped_and_ha_keeps_serving(home: Home) -> None:
    """Garbage sent straight to the HA's registration port is dropped and counted, without a
    core error; a genuine first contact afterwards is accepted."""
    ha_port = home.ha.getServiceNamed("registration").port
    for junk in (b"", b"\x01", b"\x01" + bytes(30), b"\xff" * 100, b"\x01" * 9000):
        home.link.send(junk, ("127.0.0.1", ha_port))
    await settle(0.2)
    counters = home.ha.counters()
    assert sum(v for k, v in counters.items() if "drops." in k) >= 5
    assert counters.get("shell.core_errors", 0) == 0
    assert (await ScriptedMobile(home).first_contact(0)).accepted
