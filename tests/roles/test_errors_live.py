"""MVPN error messages on loopback with real UDP (draft section 4; docs/protocol.md 7.7).

A foreign agent whose Trusted Centre is down and a real mobile node service: the MN's first
contact gets the RFC 5944 reply 88 as before, and Error 6 ("Trusted Centre not found")
arrives on the MN's control port, from the FA's control port, where the MN logs it as a
warning and counts it without changing anything else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider  # type: ignore[import-untyped]

from mvpn.core.effects import Channel, Send
from mvpn.roles.config import AgentFiles, Endpoint, FaConfig, MnConfig
from mvpn.roles.fa.service import build_fa_service
from mvpn.roles.mn.service import build_mn_service
from mvpn.roles.transport import AdvertisementMode
from mvpn.wire.control import CommunicationReply
from tests.roles.live import (
    FA1_ADDRESS,
    MN_ADDRESS,
    Domains,
    common_free_udp_port,
    free_tcp_port,
    free_udp_port,
    maybe,
    open_link,
    reactor,
    wait_for,
)


class Setup:
    """An FA pointed at a Trusted Centre port nobody listens on, and a mobile node."""

    def __init__(self, root: Path) -> None:
        domains = Domains(root)
        card = domains.smart_card("alice")
        fa_port = free_udp_port(FA1_ADDRESS)
        adv_port = common_free_udp_port(FA1_ADDRESS, MN_ADDRESS)
        # Peers are assumed to listen on the node's own control port (docs/protocol.md 7.7).
        self.control_port = common_free_udp_port(FA1_ADDRESS, MN_ADDRESS)
        self.fa = build_fa_service(
            FaConfig(
                files=AgentFiles.from_store(domains.visited.path, "fa1"),
                port=fa_port,
                interface=FA1_ADDRESS,
                control_port=self.control_port,
                data_port=free_udp_port(FA1_ADDRESS),
                tunnel_port=free_tcp_port(FA1_ADDRESS),
                tc=Endpoint("127.0.0.1", free_tcp_port()),
                advertisement=AdvertisementMode.UDP,
                advertisement_port=adv_port,
                advertise_to=(Endpoint(MN_ADDRESS, adv_port),),
                advertisement_interval=0.3,
            ),
            reactor,
        )
        self.mn = build_mn_service(
            MnConfig(
                smart_card=card,
                name="alice",
                address=MN_ADDRESS,
                advertisement=AdvertisementMode.UDP,
                advertisement_port=adv_port,
                solicit_to=(Endpoint(FA1_ADDRESS, adv_port),),
                agent_port=fa_port,
                control_port=self.control_port,
            ),
            reactor,
        )
        self.events: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            self.events.append(event)

        self.observer = observe

    def start(self) -> None:
        globalLogPublisher.addObserver(self.observer)
        for service in (self.fa, self.mn):
            service.privilegedStartService()
            service.startService()

    async def stop(self) -> None:
        globalLogPublisher.removeObserver(self.observer)
        for service in (self.mn, self.fa):
            if service.running:
                await maybe(service.stopService())

    def mn_warnings(self) -> list[str]:
        """The MN's warnings, rendered."""
        return [
            formatEvent(e)
            for e in self.events
            if e.get("log_namespace") == "mvpn.mn.alice"
            and getattr(e.get("log_level"), "name", None) == "warn"
        ]


@pytest_twisted.async_yield_fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    world = Setup(tmp_path)
    world.start()
    try:
        yield world
    finally:
        await world.stop()


@pytest_twisted.ensureDeferred
async def test_mn_hears_error_6_when_the_fa_cannot_reach_its_tc(setup: Setup) -> None:
    """The FA cannot reach its TC for Ku_HA: the MN's first contact is answered with 88 as
    before (the MN logs the unauthenticated 88 and keeps trying), and Error 6 reaches the
    MN's control port from the FA's, where it is logged as a warning with the code's name,
    the peer and the reason, and counted as mvpn_errors.received.6; the MN stays
    unregistered (the error changes nothing)."""
    mn, fa = setup.mn, setup.fa
    await wait_for(
        lambda: mn.counters().get("mvpn_errors.received.6", 0) >= 1,
        what="Error 6 at the mobile node",
    )
    fa_counters = fa.counters()
    assert fa_counters["denied.88"] >= 1
    assert fa_counters["mvpn_errors.sent.6"] >= 1
    assert fa_counters["shell.sent.control"] >= 1
    assert fa_counters.get("shell.drops.no_transport", 0) == 0
    await wait_for(
        lambda: mn.counters().get("replies.unauthenticated", 0) >= 1,
        what="the 88 at the mobile node",
    )
    warnings = setup.mn_warnings()
    assert any("FA_HA_UNREACHABLE (88)" in w for w in warnings), warnings
    [error, *_] = [w for w in warnings if "TRUSTED_CENTRE_NOT_FOUND (6)" in w]
    assert f"from {FA1_ADDRESS}:{setup.control_port}" in error
    assert "Trusted Centre could not be reached" in error
    counters = mn.counters()
    assert counters["control_port.received"] >= 1
    assert counters.get("control.malformed", 0) == 0
    assert counters.get("registrations", 0) == 0
    assert mn.status()["state"] != "registered"


@pytest_twisted.ensureDeferred
async def test_control_port_drops_garbage_and_counts_other_types(setup: Setup) -> None:
    """The MN's control port is a child service named "control": a malformed datagram is
    dropped and counted (control.malformed), a well-formed control message of a type an MN
    never takes (a Communication Reply, which goes to CNs) is counted as
    control.unexpected, and the node keeps serving."""
    control = setup.mn.getServiceNamed("control")
    assert control.port == setup.control_port
    link = open_link(FA1_ADDRESS)
    try:
        reply = CommunicationReply(1, 1, b"", bytes(16)).encode()
        for data in (b"\x07\x00", b"garbage!", reply):
            link.send(data, (MN_ADDRESS, setup.control_port))
        await wait_for(
            lambda: setup.mn.counters().get("control_port.received", 0) >= 3,
            what="three control datagrams",
        )
        counters = setup.mn.counters()
        assert counters.get("control.malformed") == 2
        assert counters.get("control.unexpected") == 1
        assert counters.get("shell.core_errors", 0) == 0
        assert any("malformed control datagram" in w for w in setup.mn_warnings())
    finally:
        await link.port.stopListening()


def test_control_port_zero_opens_nothing(tmp_path: Path) -> None:
    """control_port = 0 builds no "control" child: errors to send are counted as
    drops.no_transport by the shell, and nothing listens."""
    domains = Domains(tmp_path)
    config = MnConfig(
        smart_card=domains.smart_card("bob"), name="bob", address=MN_ADDRESS, control_port=0
    )
    service = build_mn_service(config, reactor)
    assert [s.name for s in service] == ["registration", "advertisement", "data", "core"]
    service.runner.run([Send(b"x", ("127.0.0.1", 9), Channel.CONTROL)])
    assert service.counters()["shell.drops.no_transport"] == 1
