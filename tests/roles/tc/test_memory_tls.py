"""The Trusted Centre over real TLS on an in-memory network (iosim): who gets an answer.

Certificates are made at test time; the Clock starts at the real time because OpenSSL
checks validity against the real clock while the TC checks it against the reactor's.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.bundle import SmartCard
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.domain import DomainStore
from mvpn.pki.tc_errors import (
    CertificateRevoked,
    InvalidCertificate,
    NotAuthorised,
    TrustedCentreUnreachable,
    UnknownNode,
)
from tests.pki.domains import PASSWORD, credentials, issue_agent
from tests.roles.tc.world import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.stop()


def _agent(
    world: World, store: DomainStore, role: Role, name: str, address: str | None = None
) -> tuple[NodeCertificate, PrivateKeys]:
    return issue_agent(store, role, name, now=world.now, address=address)


def _mobile(world: World, store: DomainStore, ha: str, name: str) -> SmartCard:
    return store.issue_mobile_node(
        name, ha, PASSWORD, world.now, address=ipaddress.IPv4Address("10.1.0.77")
    )


def test_good_peer_is_answered(world: World) -> None:
    """An HA of the domain registers itself and an MN; an FA looks both up by ID and address."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    ha, ha_keys = _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    fa, fa_keys = _agent(world, corp, Role.FA, "fa1", "10.1.0.2")
    card = _mobile(world, corp, "ha1", "laptop")
    ha_client = world.client(corp, ha, ha_keys)
    assert world.result(ha_client.register(ha)) is True
    assert world.result(ha_client.register(card.certificate)) is True
    assert world.result(ha_client.register(card.certificate)) is False
    fa_client = world.client(corp, fa, fa_keys)
    assert world.result(fa_client.lookup(ha.node_id)) == ha
    assert world.result(fa_client.lookup(card.user_id)) == card.certificate
    found = world.result(fa_client.lookup_address(ipaddress.IPv4Address("10.1.0.77")))
    assert found.public_keys == card.keys.public
    with pytest.raises(UnknownNode):
        world.result(fa_client.lookup(12345))


def test_only_allowed_registrations(world: World) -> None:
    """An FA cannot register another node or an MN; an operator certificate can list."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    fa, fa_keys = _agent(world, corp, Role.FA, "fa1")
    cn, _ = _agent(world, corp, Role.CN, "cn1")
    card = _mobile(world, corp, "ha1", "laptop")
    fa_client = world.client(corp, fa, fa_keys)
    with pytest.raises(NotAuthorised):
        world.result(fa_client.register(cn))
    with pytest.raises(NotAuthorised):
        world.result(fa_client.register(card.certificate))
    with pytest.raises(NotAuthorised):
        world.result(fa_client.list_certificates())
    assert world.result(fa_client.register(fa)) is True
    operator = world.client(corp, *credentials(corp, "tc"))
    assert world.result(operator.register(cn)) is True
    listed = world.result(operator.list_certificates())
    assert [(r.certificate.name, r.revoked) for r in listed] == [("fa1", False), ("cn1", False)]


def test_rogue_certificate_is_refused(world: World) -> None:
    """A certificate from a CA the TC does not trust (same domain name) gets no answer."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    ha, ha_keys = _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    world.result(world.client(corp, ha, ha_keys).register(ha))
    rogue_store = DomainStore.init(
        world.root / "rogue", "corp.example", PASSWORD, world.now - datetime.timedelta(minutes=1)
    )
    fake, fake_keys = _agent(world, rogue_store, Role.FA, "fa-rogue")
    # The rogue trusts the real TC's CA, so only the TC's check can stop it.
    client = world.client(rogue_store, fake, fake_keys, tc_ca=corp.ca_certificate())
    with pytest.raises(TrustedCentreUnreachable):
        world.result(client.lookup(ha.node_id))
    assert world.services[0].centre.registry.count() == 1


def test_revoked_caller_is_refused(world: World) -> None:
    """Once its certificate is revoked (revoked.json), an FA gets NotAuthorised."""
    corp = world.domain("corp.example")
    service = world.start_tc(corp, revocation_poll=5.0)
    ha, ha_keys = _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    fa, fa_keys = _agent(world, corp, Role.FA, "fa1")
    world.result(world.client(corp, ha, ha_keys).register(ha))
    fa_client = world.client(corp, fa, fa_keys)
    assert world.result(fa_client.lookup(ha.node_id)) == ha
    corp.revoke(fa, world.now, "stolen laptop")
    world.net.clock.advance(5.0)  # the TC re-reads revoked.json
    assert service.centre.registry.is_revoked(fa.serial)
    fa_client.invalidate(ha.node_id)
    with pytest.raises(NotAuthorised, match="revoked"):
        world.result(fa_client.lookup(ha.node_id))


def test_revoked_node_is_not_handed_out(world: World) -> None:
    """A lookup of a node whose certificate was revoked over AMP fails with REVOKED."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    ha_client = world.client(corp, *credentials(corp, "ha1"))
    fa_client = world.client(corp, *credentials(corp, "tc"))
    card = _mobile(world, corp, "ha1", "laptop")
    world.result(ha_client.register(card.certificate))
    assert world.result(fa_client.lookup(card.user_id)) == card.certificate
    world.result(ha_client.revoke(card.certificate.serial, "lost"))
    fa_client.invalidate(card.user_id)
    with pytest.raises(CertificateRevoked):
        world.result(fa_client.lookup(card.user_id))
    with pytest.raises(CertificateRevoked):
        world.result(ha_client.register(card.certificate))


def test_expired_certificate_is_refused(world: World) -> None:
    """A client whose certificate has expired is refused in the TLS handshake, and an
    expired certificate cannot be registered."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    ha, ha_keys = _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    world.result(world.client(corp, ha, ha_keys).register(ha))
    two_days_ago = world.now - datetime.timedelta(days=2)
    old, old_keys = issue_agent(corp, Role.FA, "fa-old", now=two_days_ago, days=1)
    client = world.client(corp, old, old_keys)
    with pytest.raises(TrustedCentreUnreachable):
        world.result(client.lookup(ha.node_id))
    operator = world.client(corp, *credentials(corp, "tc"))
    with pytest.raises(InvalidCertificate, match="expired"):
        world.result(operator.register(old))


def test_federation_across_two_domains(world: World) -> None:
    """An FA of domain A looks up an HA of domain B through A's TC, which asks B's TC."""
    a = world.domain("a.example")
    b = world.domain("b.example")
    world.start_tc(b, peers=[a])
    tc_a = world.start_tc(a, peers=[b])
    ha_b, ha_b_keys = _agent(world, b, Role.HA, "ha-b", "10.2.0.1")
    world.result(world.client(b, ha_b, ha_b_keys).register(ha_b))
    fa_a, fa_a_keys = _agent(world, a, Role.FA, "fa-a")
    fa_client = world.client(a, fa_a, fa_a_keys)
    found = world.result(fa_client.lookup(ha_b.node_id))
    assert found == ha_b and found.domain == "b.example"
    by_address = world.result(fa_client.lookup_address(ipaddress.IPv4Address("10.2.0.1")))
    assert by_address == ha_b
    with pytest.raises(UnknownNode):
        world.result(fa_client.lookup(0xDEAD))
    # A's TC cached B's answer: B may go away and A still answers (from a fresh client).
    world.net.down.add(("tc.b.example", 4353))
    for pump in world.net.pumps:
        pump.clientIO.loseConnection()
    world.net.flush()
    other = world.client(a, *credentials(a, "tc"))
    assert world.result(other.lookup(ha_b.node_id)) == ha_b
    # An unknown node while B is unreachable: A's TC answers TC_UNREACHABLE as soon as
    # its next attempt to reach B fails (well before the client's own timeout).
    d = other.lookup(0xBEEF)
    for _ in range(4):
        world.net.clock.advance(1.0)
        world.net.flush()
    with pytest.raises(TrustedCentreUnreachable, match=r"b\.example is unreachable"):
        world.result(d)
    assert tc_a.centre.peers["b.example"].ca == b.ca_certificate()


def test_peer_domain_nodes_other_than_its_tc_are_refused(world: World) -> None:
    """Domain B's HA may not ask A's TC directly: only B's TC is trusted from domain B."""
    a = world.domain("a.example")
    b = world.domain("b.example")
    world.start_tc(a, peers=[b])
    ha_b, ha_b_keys = _agent(world, b, Role.HA, "ha-b", "10.2.0.1")
    client = world.client(b, ha_b, ha_b_keys, tc_ca=a.ca_certificate())
    with pytest.raises(NotAuthorised, match="only the Trusted Centre"):
        world.result(client.lookup(1))


def test_client_cache_honours_validity(world: World) -> None:
    """A cached answer is served without the TC until the TTL or not_after passes."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    ha, ha_keys = _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    client = world.client(corp, ha, ha_keys, cache_ttl=60.0, timeout=5.0)
    world.result(client.register(ha))
    assert world.result(client.lookup(ha.node_id)) == ha
    world.net.down.add(("tc.corp.example", 4353))
    for pump in world.net.pumps:
        pump.clientIO.loseConnection()
    world.net.flush()
    d = client.lookup(ha.node_id)
    assert world.result(d) == ha  # from the cache, no TC needed
    world.net.clock.advance(61)
    d = client.lookup(ha.node_id)
    world.net.clock.advance(6)
    with pytest.raises(TrustedCentreUnreachable):
        world.result(d)


def test_client_refuses_an_answer_its_ca_did_not_sign(world: World) -> None:
    """The client checks the TC's answer itself: its own domain's nodes must verify
    against the CA it was provisioned with."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    ha, ha_keys = _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    world.result(world.client(corp, ha, ha_keys).register(ha))
    # A client provisioned with a different CA for the same domain name (a stale or
    # tampered card) refuses what the TC says. TLS to the real TC uses the real CA.
    other = DomainStore.init(
        world.root / "other", "corp.example", PASSWORD, world.now - datetime.timedelta(minutes=1)
    )
    client = world.client(corp, ha, ha_keys)
    client.trusted_ca = other.ca_certificate()
    with pytest.raises(InvalidCertificate):
        world.result(client.lookup(ha.node_id))


def test_store_certificates_are_registered_at_start_and_on_poll(world: World) -> None:
    """With the store's nodes/ directory configured, the TC registers what ``mvpn pki``
    issued (at start, then on every poll), skipping revoked certificates."""
    corp = world.domain("corp.example")
    ha, _ = _agent(world, corp, Role.HA, "ha1", "10.1.0.1")
    fa, _ = _agent(world, corp, Role.FA, "fa1")
    corp.revoke(fa, world.now, "test")
    world.start_tc(corp, nodes_dir=corp.nodes_dir, revocation_poll=5.0)
    client = world.client(corp, *credentials(corp, "tc"))
    assert world.result(client.lookup(ha.node_id)) == ha
    with pytest.raises(UnknownNode):  # revoked before the TC saw it: never registered
        world.result(client.lookup(fa.node_id))
    cn, _ = _agent(world, corp, Role.CN, "cn1", "10.1.0.9")
    with pytest.raises(UnknownNode):
        world.result(client.lookup(cn.node_id))
    world.net.clock.advance(5.0)
    assert world.result(client.lookup_address(ipaddress.IPv4Address("10.1.0.9"))) == cn


def test_ed25519_certificates_negotiate_tls_1_3(world: World) -> None:
    """The TC and its clients, both with Ed25519 certificates, speak TLS 1.3."""
    corp = world.domain("corp.example")
    world.start_tc(corp)
    client = world.client(corp, *credentials(corp, "tc"))
    world.result(client.list_certificates())
    (pump,) = world.net.pumps
    for side in (pump.server, pump.client):
        assert side.getHandle().get_protocol_version_name() == "TLSv1.3"
