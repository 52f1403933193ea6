"""A foreign agent service alone on loopback: advertisements with increasing sequence
numbers to the configured targets, solicitations answered, garbage dropped while it keeps
serving, everything visible in its status and counters."""

from __future__ import annotations

import socket
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]

from mvpn.roles.config import AgentFiles, Endpoint, FaConfig
from mvpn.roles.fa.service import ForeignAgentService, build_fa_service
from mvpn.roles.transport import AdvertisementMode
from mvpn.wire.icmp import AgentAdvertisement, AgentSolicitation
from tests.roles.live import (
    FA1_ADDRESS,
    MN_ADDRESS,
    Domains,
    free_tcp_port,
    free_udp_port,
    reactor,
    settle,
)


@pytest.fixture
def link() -> Iterator[socket.socket]:
    """The mobile node's side of the foreign link: a UDP socket on MN_ADDRESS."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((MN_ADDRESS, 0))
    s.setblocking(False)
    yield s
    s.close()


@pytest.fixture
def fa(tmp_path: Path, link: socket.socket) -> Iterator[ForeignAgentService]:
    domains = Domains(tmp_path)
    config = FaConfig(
        files=AgentFiles.from_store(domains.visited.path, "fa1"),
        port=free_udp_port(FA1_ADDRESS),
        interface=FA1_ADDRESS,
        control_port=free_udp_port(FA1_ADDRESS),
        data_port=free_udp_port(FA1_ADDRESS),
        tunnel_port=free_tcp_port(FA1_ADDRESS),
        advertisement=AdvertisementMode.UDP,
        advertisement_port=free_udp_port(FA1_ADDRESS),
        advertise_to=(Endpoint(*link.getsockname()),),
        advertisement_interval=0.2,
    )
    service = build_fa_service(config, reactor)
    service.privilegedStartService()
    service.startService()
    yield service
    service.stopService()


def drain(s: socket.socket) -> list[tuple[bytes, tuple[str, int]]]:
    got = []
    while True:
        try:
            got.append(s.recvfrom(9000))
        except BlockingIOError:
            return got


@pytest_twisted.inlineCallbacks
def test_advertises_and_answers_solicitations(
    fa: ForeignAgentService, link: socket.socket
) -> Generator[Any, Any, None]:
    """Unsolicited advertisements reach the configured target with sequence numbers 0, 1,
    2 ...; a solicitation from the link is answered to its sender with the next number."""
    yield settle(0.5)
    adverts = [AgentAdvertisement.decode(d) for d, _ in drain(link)]
    assert len(adverts) >= 2
    sequences = [a.mobility.sequence_number for a in adverts if a.mobility]
    assert sequences == list(range(len(sequences)))
    assert str(adverts[0].mobility.care_of_addresses[0]) == FA1_ADDRESS  # type: ignore[union-attr]
    advertisement = fa.getServiceNamed("advertisement")
    link.sendto(AgentSolicitation().encode(), (FA1_ADDRESS, advertisement.port))
    yield settle(0.1)
    answered = [AgentAdvertisement.decode(d) for d, _ in drain(link)]
    assert answered
    assert fa.counters()["solicitations"] == 1


@pytest_twisted.inlineCallbacks
def test_garbage_is_dropped_and_the_agent_keeps_serving(
    fa: ForeignAgentService, link: socket.socket
) -> Generator[Any, Any, None]:
    """Garbage on the registration port and the advertisement port is dropped and counted
    (no reply, no exception); an oversize datagram is dropped by the port; the agent still
    answers a solicitation afterwards."""
    registration = fa.getServiceNamed("registration").port
    advertisement = fa.getServiceNamed("advertisement").port
    for junk in (b"", b"\x01", b"\x01" + bytes(40), b"\x03garbage", bytes(range(256)) * 3):
        link.sendto(junk, (FA1_ADDRESS, registration))
    link.sendto(b"\x0a\x00", (FA1_ADDRESS, advertisement))
    link.sendto(b"x" * 9000, (FA1_ADDRESS, registration))
    yield settle(0.1)
    drain(link)
    counters = fa.counters()
    assert sum(v for k, v in counters.items() if k.startswith("drops.")) >= 5
    assert counters["registration_port.drops.oversize"] == 1
    assert counters.get("shell.core_errors", 0) == 0
    link.sendto(AgentSolicitation().encode(), (FA1_ADDRESS, advertisement))
    yield settle(0.1)
    assert any(
        AgentAdvertisement.decode(d).mobility is not None
        for d, addr in drain(link)
        if addr[1] == advertisement
    )
    status = fa.status()
    assert status["visitors"] == []
    assert status["care_of"] == FA1_ADDRESS
