"""The mobile node service on loopback with real UDP: it solicits, picks a foreign agent,
registers (first contact), re-registers before its lifetime ends with no TC request and no
public-key operation, moves to another FA when told and when its FA goes quiet, and runs as a
plain RFC 5944 node too. Home agent, foreign agents and both Trusted Centres are real
services in this process."""

from __future__ import annotations

import io
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.threads import deferToThread

from mvpn import cli
from mvpn.roles.control import ControlService
from mvpn.roles.mn.service import MobileNodeService, build_mn_service
from mvpn.roles.transport import AdvertisementMode, may_open_raw_socket
from tests.roles.live import (
    FA1_ADDRESS,
    FA2_ADDRESS,
    HA_ADDRESS,
    HOME_ADDRESS,
    PLAIN_HOME_ADDRESS,
    Home,
    World,
    reactor,
    wait_for,
)

PLAIN_KEY = bytes(range(100, 116))


@pytest_twisted.async_yield_fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    world = World(tmp_path)
    setup = Home(world, plain_key=PLAIN_KEY, advertisement_interval=0.3, advertisement_lifetime=1)
    try:
        await setup.ready()
        yield setup
    finally:
        await world.stop()
        await setup.link.port.stopListening()


def start_mobile(home: Home, **changes: Any) -> MobileNodeService:
    service: MobileNodeService = home.world.start(
        build_mn_service(home.mobile_config(**changes), reactor)
    )
    return service


def bound_care_of(home: Home, address: str = HOME_ADDRESS) -> str | None:
    binding = home.ha.core.bindings().get(ipaddress.IPv4Address(address))
    return str(binding.care_of) if binding is not None else None


@pytest_twisted.ensureDeferred
async def test_registers_and_reregisters_without_tc_or_public_keys(home: Home) -> None:
    """The MN registers on its own (first contact), then re-registers at 80 % of a 3 s
    lifetime: the re-registration moves no TC request and no public-key operation counter at
    the HA, the FA or the MN, and the binding stays with the same care-of address; keys older
    than half their lifetime are refreshed and the next re-registration uses the new SA."""
    mobile = start_mobile(home, lifetime=3)
    registered = await mobile.when("registered")
    fa_address = registered.fields["fa"]
    fa = home.fas[0] if fa_address == FA1_ADDRESS else home.fas[1]
    assert bound_care_of(home) == fa_address
    assert mobile.status()["state"] == "registered"
    before = [s.counters() for s in (home.ha, fa, mobile)]
    await mobile.when("reregistered")
    after = [s.counters() for s in (home.ha, fa, mobile)]
    for b, a in zip(before, after, strict=True):
        assert a.get("certificates.tc_requests", 0) == b.get("certificates.tc_requests", 0)
        assert a.get("pk_operations", 0) == b.get("pk_operations", 0)
    assert after[2]["reregistrations"] >= 1
    assert bound_care_of(home) == fa_address
    # The keys were older than half their life: the HA refreshed them (Key Refresh, 6.2)
    # and the next re-registration, under the new SA, is accepted too.
    assert after[0].get("key_refreshes", 0) >= 1
    spi = mobile.status()["spi"]
    await mobile.when("reregistered")
    assert home.ha.counters()["accepted.reregistration"] >= 2
    assert home.ha.core.bindings()[ipaddress.IPv4Address(HOME_ADDRESS)].keys.spi != spi


@pytest_twisted.ensureDeferred
async def test_moves_when_told(home: Home) -> None:
    """move_to(other FA) makes the MN do a first contact there: the HA's binding follows to
    the new care-of address and the MN reports the move."""
    mobile = start_mobile(home)
    registered = await mobile.when("registered")
    other = FA2_ADDRESS if registered.fields["fa"] == FA1_ADDRESS else FA1_ADDRESS
    moved = mobile.when("moved")
    mobile.move_to(other)
    event = await moved
    assert event.fields["to"] == other
    assert bound_care_of(home) == other
    assert mobile.status()["fa"] == other


@pytest_twisted.ensureDeferred
async def test_moves_when_told_by_the_command(home: Home, tmp_path: Path) -> None:
    """``mvpn move --socket PATH --to FA`` reaches the MN through the control socket and the
    MN re-registers through that FA; a malformed address is refused with exit status 1."""
    mobile = start_mobile(home)
    control = ControlService(reactor, tmp_path / "mn.sock")
    control.add(mobile.report())
    home.world.start(control)
    registered = await mobile.when("registered")
    other = FA2_ADDRESS if registered.fields["fa"] == FA1_ADDRESS else FA1_ADDRESS
    moved = mobile.when("moved")
    out = io.StringIO()
    argv = ["move", "--socket", str(control.path), "--to", other]
    assert await deferToThread(cli.main, argv, out) == 0
    assert "mn:alice" in out.getvalue()
    assert (await moved).fields["to"] == other
    bad = ["move", "--socket", str(control.path), "--to", "not-an-address"]
    assert await deferToThread(cli.main, bad, io.StringIO()) == 1


@pytest_twisted.ensureDeferred
async def test_moves_when_its_fa_goes_quiet(home: Home) -> None:
    """When the FA in use stops advertising (its service is stopped), the MN notices once
    the advertisement lifetime passes and registers through the other FA by itself."""
    mobile = start_mobile(home)
    registered = await mobile.when("registered")
    serving = registered.fields["fa"]
    index = 0 if serving == FA1_ADDRESS else 1
    other = FA2_ADDRESS if index == 0 else FA1_ADDRESS
    again = mobile.when("registered")
    await home.fas[index].stopService()
    event = await again
    assert event.fields["fa"] == other
    await wait_for(lambda: bound_care_of(home) == other, what="the binding to follow")


@pytest_twisted.ensureDeferred
async def test_plain_rfc5944_mode(home: Home) -> None:
    """The MN service in rfc5944 mode registers as a plain Mobile IP node (HMAC-MD5 with the
    key the HA holds for it) and the HA binds its home address."""
    mobile = start_mobile(
        home,
        name="plain",
        mode="rfc5944",
        smart_card=None,
        home_address=ipaddress.IPv4Address(PLAIN_HOME_ADDRESS),
        home_agent=ipaddress.IPv4Address(HA_ADDRESS),
        plain_spi=1000,
        plain_key=PLAIN_KEY,
    )
    await mobile.when("registered")
    assert bound_care_of(home, PLAIN_HOME_ADDRESS) in (FA1_ADDRESS, FA2_ADDRESS)
    assert mobile.status()["mode"] == "rfc5944"


@pytest_twisted.ensureDeferred
async def test_auto_mode_registers_over_whatever_transport_it_may_use(tmp_path: Path) -> None:
    """With advertisement = "auto" everywhere, agents and node pick raw ICMP when the process
    may open a raw socket (root) and UDP otherwise, say which, and the node registers either
    way: over real ICMP types 9 and 10 on loopback when run as root."""
    world = World(tmp_path)
    home = Home(world, advertisement=AdvertisementMode.AUTO)
    try:
        await home.ready()
        mobile = start_mobile(home)
        expected = "icmp" if may_open_raw_socket() else "udp"
        kinds = [s.getServiceNamed("advertisement").kind for s in (*home.fas, mobile)]
        assert kinds == [expected] * 3
        registered = await mobile.when("registered")
        assert bound_care_of(home) == registered.fields["fa"]
        assert mobile.counters()["advertisements_received"] >= 1
    finally:
        await world.stop()
        await home.link.port.stopListening()
