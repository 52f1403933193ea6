"""The TC's SQLite registry: lookups, revocations, persistence."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest

from mvpn.pki.certificate import Role
from mvpn.pki.domain import IssuedNode
from mvpn.pki.revocation import Revocation
from mvpn.pki.tc_errors import CertificateRevoked, UnknownNode
from mvpn.roles.tc.store import Registry
from tests.pki.domains import NOW, PASSWORD, issue_agent, make_domain

DAY = datetime.timedelta(days=1)


def test_register_then_lookup_by_id_and_address(tmp_path: Path) -> None:
    """A registered certificate is found by its node ID and by its address."""
    store = make_domain(tmp_path, "corp.example")
    cert, _ = issue_agent(store, Role.HA, "ha1", address="10.1.0.1", node_id=2**64 - 1)
    registry = Registry(":memory:")
    assert registry.register(cert, "test", NOW) is True
    assert registry.register(cert, "test", NOW) is False
    assert registry.lookup(2**64 - 1, NOW) == cert
    assert registry.lookup_address(ipaddress.IPv4Address("10.1.0.1"), NOW) == cert
    assert registry.count() == 1


def test_unknown_and_expired_are_unknown_node(tmp_path: Path) -> None:
    """No certificate, or only an expired one, is UnknownNode."""
    store = make_domain(tmp_path, "corp.example")
    cert, _ = issue_agent(store, Role.FA, "fa1", days=1)
    registry = Registry(":memory:")
    registry.register(cert, "test", NOW)
    with pytest.raises(UnknownNode):
        registry.lookup(cert.node_id + 1, NOW)
    with pytest.raises(UnknownNode):
        registry.lookup(cert.node_id, NOW + 2 * DAY)


def test_newest_valid_unrevoked_certificate_wins(tmp_path: Path) -> None:
    """After a rotation the new certificate is returned; revoking it leaves nothing valid."""
    store = make_domain(tmp_path, "corp.example")
    old, _ = issue_agent(store, Role.HA, "ha1", address="10.1.0.1")
    rotated = store.rotate("ha1", PASSWORD, NOW + DAY)
    assert isinstance(rotated, IssuedNode)
    new = rotated.certificate
    registry = Registry(":memory:")
    registry.register(old, "test", NOW)
    registry.register(new, "test", NOW)
    assert registry.lookup(old.node_id, NOW + DAY) == new
    registry.import_revocations(store.revocations())
    assert registry.is_revoked(old.serial)
    registry.revoke(Revocation(new.serial, old.node_id, "ha1", NOW, "test"))
    with pytest.raises(CertificateRevoked):
        registry.lookup(old.node_id, NOW + DAY)


def test_revoked_certificate_cannot_be_registered(tmp_path: Path) -> None:
    """Registering a revoked serial is refused with CertificateRevoked."""
    store = make_domain(tmp_path, "corp.example")
    cert, _ = issue_agent(store, Role.CN, "cn1")
    registry = Registry(":memory:")
    assert registry.revoke(Revocation(cert.serial, cert.node_id, "cn1", NOW, "x")) is True
    assert registry.revoke(Revocation(cert.serial, cert.node_id, "cn1", NOW, "x")) is False
    with pytest.raises(CertificateRevoked):
        registry.register(cert, "test", NOW)


def test_registry_survives_reopening(tmp_path: Path) -> None:
    """Registrations and revocations are on disk once the call returns."""
    store = make_domain(tmp_path, "corp.example")
    a, _ = issue_agent(store, Role.FA, "fa1")
    b, _ = issue_agent(store, Role.FA, "fa2")
    path = tmp_path / "tc.sqlite"
    registry = Registry(path)
    registry.register(a, "test", NOW)
    registry.register(b, "test", NOW)
    registry.revoke(Revocation(b.serial, b.node_id, "fa2", NOW, "x"))
    # A second connection sees everything without the first being closed.
    again = Registry(path)
    assert again.lookup(a.node_id, NOW) == a
    assert again.is_revoked(b.serial)
    rows = again.list(0, 10)
    assert [(r.certificate, r.revoked) for r in rows] == [(a, False), (b, True)]
    assert again.list(1, 10)[0].certificate == b
