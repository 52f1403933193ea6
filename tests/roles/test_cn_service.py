"""The correspondent node role (``twistd mvpn-cn``): its configuration, and the service
started on loopback against a fake home agent socket (docs/protocol.md 7.2, 7.5, 7.7, 10).

The fake HA is a UDP socket of the test at the HA's address and the CN's control port; it
opens what arrives with the HA's real keys, and answers with messages built by the pure
functions of :mod:`mvpn.core.correspondent` (playing HA, FA and MN).
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.python import usage

from mvpn.core import correspondent as cor
from mvpn.core.effects import Event
from mvpn.core.messages import AgentIdentity
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.negotiation import LOCAL_FLAGS
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.pki.bundle import SmartCard
from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore
from mvpn.pki.files import read_private_keys
from mvpn.roles.cn.config import CnConfig, CnPeer, cn_from_file, cn_from_table, parse_peer
from mvpn.roles.cn.service import build_cn_service, build_cn_site, resolve_peers
from mvpn.roles.cn.tap import Options
from mvpn.roles.config import AgentFiles, ConfigError
from mvpn.wire.codes import MvpnError
from mvpn.wire.control import RequestCommunication
from tests.roles.live import (
    HOME_ADDRESS,
    PASSWORD,
    Link,
    common_free_udp_port,
    maybe,
    now,
    reactor,
    settle,
    wait_for,
)

HA_ADDRESS = "127.0.0.1"
CN_ADDRESS = "127.0.0.20"
FA_ADDRESS = "127.0.0.2"


class Domains:
    """A home domain (HA, one mobile node) and a partner domain (the CN), no TC running:
    the CN knows the HA and the MN from peer certificates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = DomainStore.init(root / "home", "home.example", PASSWORD, now())
        self.partners = DomainStore.init(root / "partners", "partners.example", PASSWORD, now())
        self.ha = self.home.issue(
            Role.HA, "ha", PASSWORD, now(), address=ipaddress.IPv4Address(HA_ADDRESS)
        )
        self.cn = self.partners.issue(
            Role.CN, "cn", PASSWORD, now(), address=ipaddress.IPv4Address(CN_ADDRESS)
        )
        self.card: SmartCard = self.home.issue_mobile_node(
            "alice", "ha", PASSWORD, now(), address=ipaddress.IPv4Address(HOME_ADDRESS)
        )

    def ha_identity(self) -> AgentIdentity:
        """The HA's identity, keys read from its store (the fake HA uses them)."""
        keys = read_private_keys(self.ha.key_path)
        return AgentIdentity(self.ha.certificate.node_id, keys, self.ha.certificate.address)  # type: ignore[arg-type]

    def config(self, control_port: int, **changes: Any) -> CnConfig:
        """The CN's configuration: peer certificates of the HA and the MN, one peer."""
        config = CnConfig(
            files=AgentFiles.from_store(self.partners.path, "cn"),
            interface=CN_ADDRESS,
            control_port=control_port,
            peer_certificates=(
                self.home.certificate_path("ha"),
                self.home.certificate_path("alice"),
            ),
            peer_cas=(self.home.ca_path,),
            peers=(
                CnPeer(
                    ipaddress.IPv4Address(HOME_ADDRESS),
                    ipaddress.IPv4Address(HA_ADDRESS),
                    home_agent_name="ha",
                ),
            ),
        )
        return config.replace(**changes)


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> Domains:
    return Domains(tmp_path_factory.mktemp("cn-domains"))


# --- configuration --------------------------------------------------------------------------


def test_toml_table_with_peers(tmp_path: Path) -> None:
    """The [cn] table: agent files, ports, and [[cn.peers]] by HA ID or HA name."""
    path = tmp_path / "cn.toml"
    path.write_text(
        """
control_socket = "cn.sock"
[cn]
certificate = "cn.pem"
private_key = "cn.key"
ca_certificate = "ca.pem"
address = "127.0.0.20"
control_port = 5350
data_port = 5351
tc = "127.0.0.1:4353"
[[cn.peers]]
home_address = "10.1.0.5"
home_agent = "127.0.0.1"
home_agent_id = "0x4801"
[[cn.peers]]
home_address = "10.1.0.6"
home_agent = "127.0.0.1"
home_agent_name = "ha"
"""
    )
    config = cn_from_file(path)
    assert config.files.certificate == tmp_path / "cn.pem"
    assert (config.control_port, config.data_port) == (5350, 5351)
    assert config.address == ipaddress.IPv4Address(CN_ADDRESS)
    assert config.tc is not None and config.tc.port == 4353
    assert config.control_socket == tmp_path / "cn.sock"
    first, second = config.peers
    assert first.home_agent_id == 0x4801 and first.home_agent_name is None
    assert second.home_agent_name == "ha" and second.home_agent_id is None


@pytest.mark.parametrize(
    "peer",
    [
        {"home_address": "10.1.0.5", "home_agent": "127.0.0.1"},
        {
            "home_address": "10.1.0.5",
            "home_agent": "127.0.0.1",
            "home_agent_id": 1,
            "home_agent_name": "ha",
        },
        {"home_agent": "127.0.0.1", "home_agent_id": 1},
        {"home_address": "10.1.0.5", "home_agent": "127.0.0.1", "home_agent_id": "x"},
        {"home_address": "10.1.0.5", "home_agent": "nowhere", "home_agent_id": 1},
    ],
)
def test_bad_peer_is_a_config_error(tmp_path: Path, peer: dict[str, object]) -> None:
    """A peer needs a home address, an HA address and exactly one of HA ID and HA name."""
    table = {
        "certificate": "c",
        "private_key": "k",
        "ca_certificate": "a",
        "peers": [peer],
    }
    with pytest.raises(ConfigError):
        cn_from_table(table, tmp_path)


def test_unknown_setting_is_a_config_error(tmp_path: Path) -> None:
    """Settings the CN does not know (a registration port, say) are refused."""
    table = {"certificate": "c", "private_key": "k", "ca_certificate": "a", "port": 434}
    with pytest.raises(ConfigError, match="unknown settings"):
        cn_from_table(table, tmp_path)


def test_parse_peer_by_id_or_name() -> None:
    """--peer HOME,HA_ADDRESS,HA takes a node ID (0x... or decimal) or a certificate name."""
    assert parse_peer("10.1.0.5,127.0.0.1,0x10").home_agent_id == 16
    assert parse_peer("10.1.0.5, 127.0.0.1, ha").home_agent_name == "ha"
    with pytest.raises(ConfigError):
        parse_peer("10.1.0.5,127.0.0.1")


def test_options_from_store_and_peers(domains: Domains) -> None:
    """twistd mvpn-cn --store DIR --name cn --peer ...: the config the service is built from."""
    options = Options()
    options.parseOptions(
        [
            "--store",
            str(domains.partners.path),
            "--name",
            "cn",
            "--control-port",
            "5350",
            "--peer",
            f"{HOME_ADDRESS},{HA_ADDRESS},0x99",
            "--peer-certificate",
            str(domains.home.certificate_path("ha")),
        ]
    )
    config = options.config
    assert config.files.certificate == domains.partners.certificate_path("cn")
    assert config.control_port == 5350
    assert config.peers[0].home_agent_id == 0x99
    assert config.peer_certificates == (domains.home.certificate_path("ha"),)
    with pytest.raises(usage.UsageError):
        Options().parseOptions([])


def test_ha_name_resolves_through_peer_certificates(domains: Domains) -> None:
    """home_agent_name finds the HA certificate of that name among peer_certificates; an
    unknown name is a configuration error."""
    config = domains.config(4350)
    (peer,) = resolve_peers(config)
    assert peer.home_agent_id == domains.ha.certificate.node_id
    unknown = config.replace(
        peers=(
            CnPeer(
                ipaddress.IPv4Address(HOME_ADDRESS),
                ipaddress.IPv4Address(HA_ADDRESS),
                home_agent_name="nobody",
            ),
        )
    )
    with pytest.raises(ConfigError, match="nobody"):
        resolve_peers(unknown)


def test_service_needs_a_cn_certificate(domains: Domains) -> None:
    """The CN's certificate must have the CN role (like the agents' checks)."""
    config = domains.config(4350).replace(files=AgentFiles.from_store(domains.home.path, "ha"))
    with pytest.raises(ConfigError, match="not CN"):
        build_cn_service(config, reactor)


def test_site_has_the_cn_and_its_control_socket(domains: Domains, tmp_path: Path) -> None:
    """build_cn_site: the CN role (named by its config) and the status socket; the CN's
    ports open before its core starts."""
    config = domains.config(4350, control_socket=tmp_path / "cn.sock")
    site = build_cn_site(config, reactor)
    assert site.role("cn").core.identity.node_id == domains.cn.certificate.node_id  # type: ignore[attr-defined]
    assert site.getServiceNamed("control") is not None
    names = [s.name for s in site.role("cn")]
    assert names[-3:] == ["control", "data", "core"]


# --- live, against a fake home agent ---------------------------------------------------------


class FakeHa:
    """The HA's control socket, played by the test."""

    def __init__(self, domains: Domains, port: int) -> None:
        self.identity = domains.ha_identity()
        self.link = Link()
        self.link.port = reactor.listenUDP(port, self.link, interface=HA_ADDRESS)
        self.cn_public = domains.cn.certificate.public_keys

    def requests(self) -> list[tuple[bytes, tuple[str, int]]]:
        """The Request Communications received so far."""
        return [(d, a) for d, a in self.link.received if d[:1] == b"\x01"]

    def open(self, data: bytes) -> cor.OpenedRequest:
        """Open a request as the real HA does."""
        return cor.open_request_communication(
            self.identity, data, lambda i: self.cn_public, reactor.seconds()
        )

    async def stop(self) -> None:
        await maybe(self.link.port.stopListening())


async def _start(domains: Domains) -> tuple[Any, FakeHa, list[Event], int]:
    port = common_free_udp_port(HA_ADDRESS, CN_ADDRESS, FA_ADDRESS)
    fake = FakeHa(domains, port)
    service = build_cn_service(domains.config(port), reactor)
    events: list[Event] = []
    service.runner.subscribe(events.append)
    service.privilegedStartService()
    service.startService()
    return service, fake, events, port


@pytest_twisted.ensureDeferred
async def test_request_arrives_is_retransmitted_and_an_error_refuses(domains: Domains) -> None:
    """At start the CN sends the HA a Request Communication from its control port; without
    an answer it sends another (a new CN Nonce) about 1 s later; an Error naming that nonce
    ends the round with "session-refused" and stops the retransmissions."""
    service, fake, events, port = await _start(domains)
    try:
        await wait_for(lambda: len(fake.requests()) >= 1, what="the first request")
        first, source = fake.requests()[0]
        assert source == (CN_ADDRESS, port)
        request = RequestCommunication.decode(first)
        assert request.mn_addr == ipaddress.IPv4Address(HOME_ADDRESS)
        assert request.cn_id == domains.cn.certificate.node_id
        opened_first = fake.open(first)
        await wait_for(lambda: len(fake.requests()) >= 2, timeout=3, what="a retransmission")
        second, _ = fake.requests()[1]
        opened = fake.open(second)
        assert opened.v.cn_nonce != opened_first.v.cn_nonce
        fake.link.send(
            cor.build_error(MvpnError.OTHER, opened.v.cn_nonce, "The MN is not registered."),
            source,
        )
        await wait_for(lambda: events, what="session-refused")
        assert [e.name for e in events] == ["session-refused"]
        assert events[0].fields["code"] == 7
        assert events[0].fields["reason"] == "The MN is not registered."
        count = len(fake.requests())
        await settle(2.5)
        assert len(fake.requests()) == count
        counters = service.counters()
        assert counters["mvpn_errors.received.7"] == 1
        assert counters["shell.sent.control"] == count
    finally:
        await maybe(service.stopService())
        await fake.stop()


@pytest_twisted.ensureDeferred
async def test_communication_reply_establishes_the_session(domains: Domains) -> None:
    """HA, FA and MN (played with their real keys) answer the request; the FA's
    Communication Reply, from another address, gives the CN its session: Ku_MN comes from
    the MN's peer certificate, "session-established" is reported."""
    service, fake, events, _ = await _start(domains)
    fa_link = Link()
    fa_link.port = reactor.listenUDP(0, fa_link, interface=FA_ADDRESS)
    try:
        await wait_for(lambda: fake.requests(), what="the request")
        data, source = fake.requests()[0]
        opened = fake.open(data)
        random = SeededRandom("live cn test")
        card = domains.card
        registration = RegistrationKeys.generate(random, 0x101, reactor.seconds(), 300)
        fa = AgentIdentity(0x4602, PrivateKeys.generate(random), ipaddress.IPv4Address(FA_ADDRESS))
        spi = 0x7001
        m2 = cor.build_correspondent_info(
            fake.identity,
            opened,
            spi,
            cor.new_data_auth_key(random),
            card.user_id,
            card.keys.public,
            fa.node_id,
            fa.public,
            registration.auth_key,
        )
        at_fa = cor.open_correspondent_info_at_fa(
            fa, m2, fake.identity.public, registration.auth_key
        )
        m3 = cor.build_correspondent_info_to_mn(
            fa, at_fa, LOCAL_FLAGS, card.user_id, card.keys.public
        )
        mn = AgentIdentity(card.user_id, card.keys, ipaddress.IPv4Address(HOME_ADDRESS))
        offer = cor.open_correspondent_info_at_mn(
            mn, m3, fa.public, fake.identity.public, lambda i: opened.cn_public
        )
        m4, _ = cor.build_correspondent_response(mn, offer, LOCAL_FLAGS, random)
        reply = cor.build_communication_reply(
            cor.open_correspondent_response_at_fa(fa, m4, card.keys.public, at_fa), at_fa
        )
        fa_link.send(reply, source)
        await wait_for(lambda: events, what="session-established")
        assert [e.name for e in events] == ["session-established"]
        assert events[0].fields == {"spi": spi, "home_address": HOME_ADDRESS}
        session = service.core.session_for(HOME_ADDRESS)
        assert session is not None and session.spi == spi
        assert service.core.ha_address_for(HOME_ADDRESS) == ipaddress.IPv4Address(HA_ADDRESS)
        count = len(fake.requests())
        await settle(2.5)
        assert len(fake.requests()) == count
    finally:
        await maybe(service.stopService())
        await maybe(fa_link.port.stopListening())
        await fake.stop()


def test_twistd_mvpn_cn_process_sends_its_request(tmp_path: Path, domains: Domains) -> None:
    """``twistd -n mvpn-cn --config cn.toml`` as its own process: it answers ``mvpn status``
    as a CN with its peer, and its Request Communication reaches the HA's control port."""
    from tests.roles.test_twistd_live import Daemon, until

    port = common_free_udp_port(HA_ADDRESS, CN_ADDRESS)
    ha_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ha_socket.bind((HA_ADDRESS, port))
    ha_socket.settimeout(30)
    config = tmp_path / "cn.toml"
    config.write_text(
        f"""
control_socket = "cn.sock"
[cn]
store = "{domains.partners.path}"
name = "cn"
interface = "{CN_ADDRESS}"
control_port = {port}
peer_certificates = ["{domains.home.certificate_path("ha")}"]
peer_cas = ["{domains.home.ca_path}"]
[[cn.peers]]
home_address = "{HOME_ADDRESS}"
home_agent = "{HA_ADDRESS}"
home_agent_name = "ha"
"""
    )
    cn = Daemon("mvpn-cn", config, tmp_path / "cn.sock", tmp_path / "cn.log")
    try:
        cn.start()
        data, source = ha_socket.recvfrom(8192)
        assert source == (CN_ADDRESS, port)
        assert RequestCommunication.decode(data).cn_id == domains.cn.certificate.node_id
        role = cn.role("cn")
        assert role["status"]["role"] == "cn"
        until(lambda: cn.role("cn")["status"]["peers"][0]["attempts"] >= 1, "a request", cn)
    finally:
        cn.kill9()
        ha_socket.close()
