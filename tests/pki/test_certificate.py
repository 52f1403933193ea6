"""Node certificates: the MVPN extension's bytes, issuing, decoding and verification."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.random import SeededRandom
from mvpn.pki.certificate import (
    NODE_EXTENSION_OID,
    NODE_EXTENSION_UUID,
    NodeCertificate,
    NodeExtension,
    Role,
    issue_certificate,
    make_ca_certificate,
)
from mvpn.pki.errors import (
    BadSignature,
    CertificateExpired,
    CertificateFormatError,
    CertificateNotYetValid,
    WrongIssuer,
)

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def _ca(domain: str = "corp.example", seed: str = "ca") -> tuple[NodeCertificate, PrivateKeys]:
    keys = PrivateKeys.generate(SeededRandom(seed))
    return make_ca_certificate(domain, 0x5C, keys, NOW - DAY, NOW + 100 * DAY, 1), keys


def _node(
    ca: NodeCertificate,
    ca_keys: PrivateKeys,
    role: Role = Role.HA,
    node_id: int = 0x0102030405060708,
    address: str | None = "10.1.0.1",
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + DAY,
) -> tuple[NodeCertificate, PrivateKeys]:
    keys = PrivateKeys.generate(SeededRandom(f"node{node_id}"))
    cert = issue_certificate(
        ca,
        ca_keys,
        role,
        node_id,
        "ha1",
        keys.public,
        ipaddress.IPv4Address(address) if address else None,
        not_before,
        not_after,
        0x1234,
    )
    return cert, keys


def test_oid_is_derived_from_the_fixed_uuid() -> None:
    """The extension's OID is 2.25.<the UUID as an integer> and never changes."""
    assert NODE_EXTENSION_OID.dotted_string == f"2.25.{NODE_EXTENSION_UUID.int}"
    assert NODE_EXTENSION_OID.dotted_string == "2.25.145500822928896607566203098315149766193"


def test_extension_layout_is_role_id_kem_key_address() -> None:
    """The 45 bytes are role, 64-bit big-endian ID, X25519 key, IPv4 address, in that order."""
    ext = NodeExtension(
        Role.FA, 0x0102030405060708, bytes(range(32)), ipaddress.IPv4Address("192.0.2.9")
    )
    data = ext.encode()
    assert data == (
        b"\x02" + bytes.fromhex("0102030405060708") + bytes(range(32)) + bytes([192, 0, 2, 9])
    )
    assert NodeExtension.decode(data) == ext


def test_extension_without_address_is_zero_and_decodes_to_none() -> None:
    """A node with no address carries 0.0.0.0, which decodes back to None."""
    data = NodeExtension(Role.CN, 7, bytes(32), None).encode()
    assert data[-4:] == b"\x00\x00\x00\x00"
    assert NodeExtension.decode(data).address is None


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\x01" * 44, "expected 45 bytes"), (b"\x09" + bytes(44), "unknown role 9")],
)
def test_extension_decode_refuses_bad_input(data: bytes, message: str) -> None:
    """A wrong size or an unknown role is a CertificateFormatError saying which."""
    with pytest.raises(CertificateFormatError, match=message):
        NodeExtension.decode(data)


def test_issued_certificate_carries_identity_and_both_keys() -> None:
    """Decoding an issued certificate gives back role, ID, domain, name, address and keys."""
    ca, ca_keys = _ca()
    cert, keys = _node(ca, ca_keys)
    decoded = NodeCertificate.from_der(cert.der)
    assert decoded == cert
    assert (decoded.role, decoded.node_id, decoded.domain, decoded.name) == (
        Role.HA,
        0x0102030405060708,
        "corp.example",
        "ha1",
    )
    assert decoded.address == ipaddress.IPv4Address("10.1.0.1")
    assert decoded.public_keys == keys.public
    assert decoded.serial == 0x1234 and not decoded.is_ca
    subject = decoded.x509.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "corp.example"
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ha/ha1"
    ext = decoded.x509.extensions.get_extension_for_oid(NODE_EXTENSION_OID)
    assert not ext.critical
    assert NodeCertificate.from_pem(cert.pem) == cert


def test_ca_certificate_is_self_signed_ca_of_the_domain() -> None:
    """The CA certificate is a CA, names the domain, and verifies against itself."""
    ca, _ = _ca()
    assert ca.is_ca and ca.role is Role.TC and ca.domain == "corp.example"
    ca.verify_issued_by(ca, NOW)


def test_verify_accepts_a_good_certificate() -> None:
    """A certificate inside its validity window verifies against its CA."""
    ca, ca_keys = _ca()
    cert, _ = _node(ca, ca_keys)
    cert.verify_issued_by(ca, NOW)


def test_verify_refuses_expired_and_not_yet_valid() -> None:
    """Outside its window a certificate is refused with the matching typed error."""
    ca, ca_keys = _ca()
    cert, _ = _node(ca, ca_keys)
    with pytest.raises(CertificateExpired):
        cert.verify_issued_by(ca, NOW + 2 * DAY)
    with pytest.raises(CertificateNotYetValid):
        cert.verify_issued_by(ca, NOW - 2 * DAY)


def test_verify_refuses_another_domain() -> None:
    """A certificate of domain A does not verify against domain B's CA."""
    ca_a, keys_a = _ca("a.example", "a")
    ca_b, _ = _ca("b.example", "b")
    cert, _ = _node(ca_a, keys_a)
    with pytest.raises(WrongIssuer, match=r"a\.example"):
        cert.verify_issued_by(ca_b, NOW)


def test_verify_refuses_a_rogue_ca_with_the_same_name() -> None:
    """A rogue CA with the same domain and subject cannot pass: the signature fails."""
    ca, _ = _ca("corp.example", "real")
    rogue, rogue_keys = _ca("corp.example", "rogue")
    cert, _ = _node(rogue, rogue_keys)
    with pytest.raises(BadSignature):
        cert.verify_issued_by(ca, NOW)


def test_verify_refuses_a_non_ca_issuer() -> None:
    """A node certificate cannot act as an issuer."""
    ca, ca_keys = _ca()
    cert, _ = _node(ca, ca_keys)
    with pytest.raises(WrongIssuer, match="not a CA"):
        cert.verify_issued_by(cert, NOW)


def test_node_validity_is_clipped_to_the_ca() -> None:
    """A node certificate never outlives the CA that issued it."""
    ca, ca_keys = _ca()
    cert, _ = _node(ca, ca_keys, not_after=NOW + 1000 * DAY)
    assert cert.not_after == ca.not_after


def test_mobile_node_ids_are_48_bits() -> None:
    """A mobile node's ID is its 48-bit USER ID; a larger one is refused."""
    ca, ca_keys = _ca()
    cert, _ = _node(ca, ca_keys, role=Role.MN, node_id=2**48 - 1, address=None)
    assert cert.node_id == 2**48 - 1
    with pytest.raises(ValueError, match="48 bits"):
        _node(ca, ca_keys, role=Role.MN, node_id=2**48)


def test_certificate_without_the_extension_is_refused() -> None:
    """A plain X.509 certificate (no MVPN extension) is not an mvpn certificate."""
    _, ca_keys = _ca()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")])
    plain = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_keys.signing.public_key())
        .serial_number(5)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .sign(ca_keys.signing, None)
    )
    with pytest.raises(CertificateFormatError, match="no MVPN node extension"):
        NodeCertificate.from_der(plain.public_bytes(serialization.Encoding.DER))


def test_garbage_is_a_format_error() -> None:
    """Bytes that are not a certificate raise CertificateFormatError, not a library error."""
    with pytest.raises(CertificateFormatError):
        NodeCertificate.from_der(b"\x30\x03\x02\x01\x00")
    with pytest.raises(CertificateFormatError):
        NodeCertificate.from_pem(b"not pem")


def test_ca_keys_must_match_the_ca_certificate() -> None:
    """Issuing with keys that are not the CA's is refused before anything is signed."""
    ca, _ = _ca()
    other = PrivateKeys.generate(SeededRandom("other"))
    with pytest.raises(ValueError, match="do not match"):
        _node(ca, other)
