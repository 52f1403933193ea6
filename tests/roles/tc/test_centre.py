"""The TC's decisions without TLS: who is a caller, who may register, revoke and list."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import cast

import pytest
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore
from mvpn.pki.tc_errors import InvalidCertificate, NotAuthorised, UnknownNode
from mvpn.roles.tc.centre import Caller, TrustedCentre
from mvpn.roles.tc.store import Registry
from tests.pki.domains import NOW, PASSWORD, issue_agent, make_domain


def _centre(store: DomainStore) -> TrustedCentre:
    clock = Clock()
    clock.advance(NOW.timestamp())
    return TrustedCentre(
        Registry(":memory:"), store.ca_certificate(), {}, cast(IReactorTime, clock)
    )


def _caller(centre: TrustedCentre, store: DomainStore, role: Role, name: str) -> Caller:
    cert, _ = issue_agent(store, role, name)
    return centre.authenticate(cert)


def test_unknown_domain_is_not_authorised(tmp_path: Path) -> None:
    """A certificate of a domain that is neither ours nor a peer's earns nothing."""
    corp, other = make_domain(tmp_path, "corp.example"), make_domain(tmp_path, "o.example")
    cert, _ = issue_agent(other, Role.HA, "ha1")
    with pytest.raises(NotAuthorised, match="not trusted"):
        _centre(corp).authenticate(cert)


def test_expired_caller_is_not_authorised(tmp_path: Path) -> None:
    """The TC checks validity with its own clock, not only OpenSSL's."""
    corp = make_domain(tmp_path, "corp.example")
    cert, _ = issue_agent(corp, Role.FA, "fa1", now=NOW - datetime.timedelta(days=3), days=1)
    with pytest.raises(NotAuthorised, match="expired"):
        _centre(corp).authenticate(cert)


def test_home_agent_registers_and_revokes_mobile_nodes_only(tmp_path: Path) -> None:
    """An HA may register and revoke MN certificates, not another agent's."""
    corp = make_domain(tmp_path, "corp.example")
    centre = _centre(corp)
    ha = _caller(centre, corp, Role.HA, "ha1")
    fa_cert, _ = issue_agent(corp, Role.FA, "fa1")
    card = corp.issue_mobile_node(
        "mn", "ha1", PASSWORD, NOW, home_agent_address=ipaddress.IPv4Address("10.1.0.1")
    )
    assert centre.register(ha, card.certificate) is True
    with pytest.raises(NotAuthorised):
        centre.register(ha, fa_cert)
    operator = centre.authenticate(corp.certificate("tc"))
    centre.register(operator, fa_cert)
    with pytest.raises(NotAuthorised):
        centre.revoke(ha, fa_cert.serial, "no")
    revocation = centre.revoke(ha, card.certificate.serial, "lost")
    assert revocation.node_id == card.user_id
    assert centre.registry.is_revoked(card.certificate.serial)
    with pytest.raises(UnknownNode):
        centre.revoke(operator, 0xFFFF, "never registered")


def test_a_node_revokes_itself_and_only_the_operator_lists(tmp_path: Path) -> None:
    """A node may revoke its own certificate; List is for the operator only."""
    corp = make_domain(tmp_path, "corp.example")
    centre = _centre(corp)
    cn = _caller(centre, corp, Role.CN, "cn1")
    centre.register(cn, cn.certificate)
    with pytest.raises(NotAuthorised):
        centre.list(cn, 0, 10)
    centre.revoke(cn, cn.certificate.serial, "decommissioned")
    operator = centre.authenticate(corp.certificate("tc"))
    assert [r.revoked for r in centre.list(operator, 0, 10)] == [True]
    with pytest.raises(NotAuthorised, match="revoked"):
        centre.authenticate(cn.certificate)


def test_ca_and_foreign_certificates_are_not_registered(tmp_path: Path) -> None:
    """The operator cannot register the CA certificate or another domain's certificate."""
    corp, other = make_domain(tmp_path, "corp.example"), make_domain(tmp_path, "o.example")
    centre = _centre(corp)
    operator = centre.authenticate(corp.certificate("tc"))
    with pytest.raises(InvalidCertificate, match="CA certificate"):
        centre.register(operator, corp.ca_certificate())
    foreign, _ = issue_agent(other, Role.HA, "ha1")
    with pytest.raises(InvalidCertificate, match=r"o\.example"):
        centre.register(operator, foreign)
