"""The domain store on disk: files and modes, issuing, smart cards, revocation, rotation."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest

from mvpn.pki.bundle import SmartCard
from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore
from mvpn.pki.errors import (
    CertificateRevoked,
    MissingFile,
    PkiError,
    StoreError,
    WrongIssuer,
    WrongPassword,
)
from mvpn.pki.files import read_private_keys
from tests.pki.domains import NOW, PASSWORD, issue_agent, make_domain


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_domain_writes_ca_and_tc_with_private_files_0600(tmp_path: Path) -> None:
    """init-domain writes the CA (key 0600, encrypted), the TC certificate and key (0600)."""
    store = make_domain(tmp_path, "corp.example", tc_id=0xABCDEF)
    assert _mode(store.ca_key_path) == 0o600
    assert _mode(store.ca_path) == 0o644
    assert _mode(store.key_path("tc")) == 0o600
    assert b"ENCRYPTED" in store.ca_key_path.read_bytes()
    ca = store.ca_certificate()
    assert ca.is_ca and ca.domain == "corp.example" and ca.node_id == 0xABCDEF
    tc = store.certificate("tc")
    assert tc.role is Role.TC and tc.node_id == 0xABCDEF
    assert tc.dns_names == ("tc.corp.example",)
    tc.verify_issued_by(ca, NOW)
    assert read_private_keys(store.key_path("tc")).public == tc.public_keys


def test_init_refuses_an_existing_store_and_bad_names(tmp_path: Path) -> None:
    """A second init in the same directory, or a domain that is not a DNS name, is refused."""
    make_domain(tmp_path, "corp.example")
    with pytest.raises(StoreError, match="already holds"):
        make_domain(tmp_path, "corp.example")
    with pytest.raises(ValueError, match="DNS name"):
        DomainStore.init(tmp_path / "x", "Not A Domain", PASSWORD, NOW)


def test_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    """Issuing with the wrong CA password raises WrongPassword naming the key file."""
    store = make_domain(tmp_path, "corp.example")
    with pytest.raises(WrongPassword, match=r"ca\.key: wrong password"):
        store.issue(Role.HA, "ha1", b"wrong", NOW)
    with pytest.raises(WrongPassword, match="password is needed"):
        store.issue(Role.HA, "ha1", None, NOW)
    assert not store.certificate_path("ha1").exists()


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    """Opening a directory that holds no store says so and how to make one."""
    with pytest.raises(MissingFile, match="init-domain"):
        DomainStore(tmp_path / "nowhere")


def test_issue_agent_with_id_and_address(tmp_path: Path) -> None:
    """An HA's certificate carries the given ID and address; its key file is 0600."""
    store = make_domain(tmp_path, "corp.example")
    cert, keys = issue_agent(store, Role.HA, "ha1", address="10.1.0.1", node_id=0x42)
    assert (cert.role, cert.node_id, cert.address) == (
        Role.HA,
        0x42,
        ipaddress.IPv4Address("10.1.0.1"),
    )
    assert _mode(store.key_path("ha1")) == 0o600
    assert read_private_keys(store.key_path("ha1")).public == keys.public
    with pytest.raises(StoreError, match="already has a node named"):
        issue_agent(store, Role.FA, "ha1")
    with pytest.raises(StoreError, match="already used"):
        issue_agent(store, Role.FA, "fa1", node_id=0x42)


def test_validity_is_configurable(tmp_path: Path) -> None:
    """--days sets a certificate's validity period."""
    store = make_domain(tmp_path, "corp.example")
    cert, _ = issue_agent(store, Role.FA, "fa1", days=3)
    assert cert.not_after - NOW == datetime.timedelta(days=3)


def test_issue_mobile_node_smart_card(tmp_path: Path) -> None:
    """issue-mn makes a card with every identity field; its private key is nowhere else."""
    store = make_domain(tmp_path, "corp.example")
    issue_agent(store, Role.HA, "ha1", address="10.1.0.1")
    card = store.issue_mobile_node(
        "laptop",
        "ha1",
        PASSWORD,
        NOW,
        user_id=0xA1B2C3D4E5F6,
        dvc_mac_id=0x020000AABBCC,
        sc_id=0x1122334455667788,
        address=ipaddress.IPv4Address("10.1.0.50"),
    )
    path = tmp_path / "laptop.card"
    card.save(path)
    assert _mode(path) == 0o600
    assert not store.key_path("laptop").exists()
    loaded = SmartCard.load(path)
    loaded.verify(NOW)
    assert (loaded.user_id, loaded.dvc_mac_id, loaded.sc_id) == (
        0xA1B2C3D4E5F6,
        0x020000AABBCC,
        0x1122334455667788,
    )
    assert loaded.certificate.node_id == 0xA1B2C3D4E5F6
    assert loaded.certificate.address == ipaddress.IPv4Address("10.1.0.50")
    assert loaded.home_agent == store.certificate("ha1")
    assert loaded.home_agent_address == ipaddress.IPv4Address("10.1.0.1")
    assert loaded.ca == store.ca_certificate()
    assert loaded.keys.public == card.keys.public
    assert "PRIVATE" not in repr(loaded)


def test_smart_card_pin(tmp_path: Path) -> None:
    """A card saved with a PIN needs it; a wrong PIN is WrongPassword."""
    store = make_domain(tmp_path, "corp.example")
    issue_agent(store, Role.HA, "ha1", address="10.1.0.1")
    card = store.issue_mobile_node("laptop", "ha1", PASSWORD, NOW)
    path = tmp_path / "laptop.card"
    card.save(path, pin=b"1234")
    assert SmartCard.load(path, pin=b"1234").keys.public == card.keys.public
    with pytest.raises(WrongPassword):
        SmartCard.load(path, pin=b"9999")
    with pytest.raises(MissingFile):
        SmartCard.load(tmp_path / "none.card")


def test_issue_mobile_node_needs_a_home_agent(tmp_path: Path) -> None:
    """The MN's home agent must be an HA of this store with an address."""
    store = make_domain(tmp_path, "corp.example")
    issue_agent(store, Role.FA, "fa1", address="10.1.0.2")
    issue_agent(store, Role.HA, "ha-noaddr")
    with pytest.raises(StoreError, match="not a home agent"):
        store.issue_mobile_node("mn", "fa1", PASSWORD, NOW)
    with pytest.raises(StoreError, match="has no address"):
        store.issue_mobile_node("mn", "ha-noaddr", PASSWORD, NOW)
    with pytest.raises(StoreError, match="no node named"):
        store.issue_mobile_node("mn", "ha-missing", PASSWORD, NOW)


def test_revoke_and_check(tmp_path: Path) -> None:
    """A revoked certificate is on the list and refused by check_own."""
    store = make_domain(tmp_path, "corp.example")
    cert, _ = issue_agent(store, Role.CN, "cn1")
    store.check_own(cert, NOW)
    store.revoke(cert, NOW, "compromised")
    assert store.revocations().is_revoked(cert.serial)
    with pytest.raises(CertificateRevoked):
        store.check_own(cert, NOW)


def test_revoke_refuses_another_domains_certificate(tmp_path: Path) -> None:
    """A certificate from another domain cannot be put on this domain's list."""
    corp = make_domain(tmp_path, "corp.example")
    other = make_domain(tmp_path, "other.example")
    cert, _ = issue_agent(other, Role.HA, "ha1")
    with pytest.raises(WrongIssuer, match=r"other\.example"):
        corp.revoke(cert, NOW)
    with pytest.raises(WrongIssuer):
        corp.check_own(cert, NOW)


def test_rotate_agent_keeps_identity_and_revokes_old(tmp_path: Path) -> None:
    """rotate gives new keys and serial, same role/ID/address, and revokes the old serial."""
    store = make_domain(tmp_path, "corp.example")
    old, old_keys = issue_agent(store, Role.HA, "ha1", address="10.1.0.1")
    later = NOW + datetime.timedelta(days=10)
    new = store.rotate("ha1", PASSWORD, later)
    assert not isinstance(new, SmartCard)
    cert = new.certificate
    assert (cert.role, cert.node_id, cert.address) == (old.role, old.node_id, old.address)
    assert cert.serial != old.serial and cert.public_keys != old_keys.public
    assert store.revocations().is_revoked(old.serial)
    assert not store.revocations().is_revoked(cert.serial)
    assert store.certificate("ha1") == cert


def test_rotate_mobile_node_makes_a_new_card(tmp_path: Path) -> None:
    """Rotating an MN keeps its USER ID, DVC MAC ID and SC ID in a fresh card."""
    store = make_domain(tmp_path, "corp.example")
    issue_agent(store, Role.HA, "ha1", address="10.1.0.1")
    card = store.issue_mobile_node("laptop", "ha1", PASSWORD, NOW, dvc_mac_id=0x77)
    new = store.rotate("laptop", PASSWORD, NOW)
    assert isinstance(new, SmartCard)
    assert (new.user_id, new.dvc_mac_id, new.sc_id) == (card.user_id, 0x77, card.sc_id)
    assert new.keys.public != card.keys.public
    assert store.revocations().is_revoked(card.certificate.serial)


def test_rotate_with_wrong_password_changes_nothing(tmp_path: Path) -> None:
    """A failed rotation leaves the certificate and the revocation list as they were."""
    store = make_domain(tmp_path, "corp.example")
    old, _ = issue_agent(store, Role.FA, "fa1")
    with pytest.raises(WrongPassword):
        store.rotate("fa1", b"nope", NOW)
    assert store.certificate("fa1") == old
    assert len(store.revocations()) == 0


def test_mobile_nodes_use_issue_mn(tmp_path: Path) -> None:
    """issue() refuses the MN role: mobile nodes get smart cards."""
    store = make_domain(tmp_path, "corp.example")
    with pytest.raises(StoreError, match="smart card"):
        store.issue(Role.MN, "mn", PASSWORD, NOW)


def test_corrupt_private_key_file_is_a_clear_error(tmp_path: Path) -> None:
    """A key file that is not two PEM keys says so."""
    store = make_domain(tmp_path, "corp.example")
    path = store.key_path("tc")
    path.write_bytes(b"garbage")
    with pytest.raises(PkiError, match="expected two PEM private keys"):
        read_private_keys(path)
