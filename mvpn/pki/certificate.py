"""Node certificates: X.509 v3, signed by the domain's Trusted Centre, with the MVPN extension.

The draft (section 7.1) has every node's public key registered with, and only obtained from,
its domain's Trusted Centre (TC), which "should provide a certificate of the key it is
providing". mvpn makes that certificate an X.509 v3 certificate:

- issuer: the domain's CA (the TC's offline Ed25519 key), subject ``O=<domain>,
  CN=<role>/<name>`` (``CN=ha/ha1``); the subject public key is the node's Ed25519 key;
- a non-critical extension, OID :data:`NODE_EXTENSION_OID`, whose value is an OCTET STRING of
  45 bytes (:class:`NodeExtension`)::

      role (1) | node id (8, big endian) | X25519 public key (32) | IPv4 address (4)

  so that one lookup yields both of the node's keys (PROFILE.md, "Cryptography") and the
  address the draft looks nodes up by (sections 3.2.1.1 and 3.5). The address is 0.0.0.0 when
  the node has none.

Everything here is pure: the current time is always an argument, nothing reads the clock.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import re
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.x509 import Certificate as X509Certificate
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.pki.errors import (
    BadSignature,
    CertificateExpired,
    CertificateFormatError,
    CertificateNotYetValid,
    MissingFile,
    WrongIssuer,
)

NODE_EXTENSION_UUID = uuid.UUID("6d76706e-2d6e-4f64-8565-787465736e31")
"""A fixed random UUID (its first bytes spell ``mvpn-nOd``) naming the MVPN node extension."""

NODE_EXTENSION_OID = x509.ObjectIdentifier(f"2.25.{NODE_EXTENSION_UUID.int}")
"""2.25.145500822928896607566203098315149766193: a UUID-derived OID (ITU-T X.667), which needs
no registration and cannot collide with anybody else's."""

_NODE_EXTENSION = struct.Struct("!BQ32s4s")
NODE_EXTENSION_SIZE = _NODE_EXTENSION.size  # 45 bytes

MAX_NODE_ID = 2**64 - 1
"""Node IDs are 64-bit (draft section 5.1: "Mobile node's identification number")."""

MAX_USER_ID = 2**48 - 1
"""A mobile node's node ID is its 48-bit USER ID (draft section 5.1)."""

NO_ADDRESS = ipaddress.IPv4Address("0.0.0.0")

_DOMAIN_RE = re.compile(
    r"^(?=.{1,200}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Role(enum.IntEnum):
    """The role byte of the node extension (the draft's five kinds of node)."""

    MN = 1
    FA = 2
    HA = 3
    CN = 4
    TC = 5


def check_domain_name(domain: str) -> str:
    """Return ``domain`` if it is a lower-case DNS name, else raise :class:`ValueError`.

    The TC's TLS name is ``tc.<domain>`` (a DNS SAN), so the domain must be a DNS name.
    """
    if not _DOMAIN_RE.match(domain):
        raise ValueError(
            f"domain name {domain!r}: expected a lower-case DNS name like 'corp.example'"
        )
    return domain


def check_node_name(name: str) -> str:
    """Return ``name`` if it is usable as a node name and a file name, else :class:`ValueError`."""
    if not _NAME_RE.match(name):
        raise ValueError(
            f"node name {name!r}: expected 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_node_id(role: Role, node_id: int) -> int:
    """Return ``node_id`` if it fits the role (48 bits for a mobile node, 64 otherwise)."""
    limit = MAX_USER_ID if role is Role.MN else MAX_NODE_ID
    if not 0 <= node_id <= limit:
        bits = 48 if role is Role.MN else 64
        raise ValueError(f"node id {node_id}: a {role.name} id must fit in {bits} bits")
    return node_id


@dataclass(frozen=True)
class NodeExtension:
    """The value of the MVPN node extension (45 bytes, see the module docstring)."""

    role: Role
    node_id: int
    kem_key: bytes
    address: ipaddress.IPv4Address | None

    def encode(self) -> bytes:
        """The 45-byte OCTET STRING contents."""
        address = self.address if self.address is not None else NO_ADDRESS
        return _NODE_EXTENSION.pack(int(self.role), self.node_id, self.kem_key, address.packed)

    @classmethod
    def decode(cls, data: bytes) -> NodeExtension:
        """Parse the contents; :class:`CertificateFormatError` on a wrong size or role."""
        if len(data) != NODE_EXTENSION_SIZE:
            raise CertificateFormatError(
                f"MVPN node extension: expected {NODE_EXTENSION_SIZE} bytes, got {len(data)}"
            )
        role, node_id, kem_key, packed = _NODE_EXTENSION.unpack(data)
        try:
            known_role = Role(role)
        except ValueError:
            raise CertificateFormatError(f"MVPN node extension: unknown role {role}") from None
        address = ipaddress.IPv4Address(packed)
        return cls(known_role, node_id, kem_key, None if address == NO_ADDRESS else address)


@dataclass(frozen=True)
class NodeCertificate:
    """An mvpn certificate, decoded: who the node is and its two public keys.

    ``is_ca`` is true for a domain's self-signed CA certificate (which carries the TC's ID and
    X25519 key in its node extension). Equality is by DER encoding.
    """

    role: Role
    node_id: int
    domain: str
    name: str
    address: ipaddress.IPv4Address | None
    public_keys: PublicKeys
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial: int
    is_ca: bool
    dns_names: tuple[str, ...]
    x509: X509Certificate = field(compare=False, repr=False)
    der: bytes = field(repr=False)

    @property
    def pem(self) -> bytes:
        """The certificate in PEM form."""
        return self.x509.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_x509(cls, cert: X509Certificate) -> NodeCertificate:
        """Decode a parsed certificate; :class:`CertificateFormatError` if it is not ours."""
        try:
            ext = cert.extensions.get_extension_for_oid(NODE_EXTENSION_OID)
        except x509.ExtensionNotFound:
            raise CertificateFormatError(
                f"certificate {cert.subject.rfc4514_string()!r} has no MVPN node extension"
            ) from None
        except ValueError as e:
            raise CertificateFormatError(f"certificate extensions do not parse: {e}") from e
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise CertificateFormatError("MVPN node extension: unexpected value type")
        node = NodeExtension.decode(value.value)
        signing = cert.public_key()
        if not isinstance(signing, ed25519.Ed25519PublicKey):
            raise CertificateFormatError("certificate: subject key is not an Ed25519 key")
        try:
            kem = x25519.X25519PublicKey.from_public_bytes(node.kem_key)
        except ValueError as e:
            raise CertificateFormatError(f"MVPN node extension: X25519 key: {e}") from e
        domain = _single_attribute(cert.subject, NameOID.ORGANIZATION_NAME)
        common_name = _single_attribute(cert.subject, NameOID.COMMON_NAME)
        prefix = f"{node.role.name.lower()}/"
        if not common_name.startswith(prefix):
            raise CertificateFormatError(
                f"certificate CN {common_name!r} does not start with {prefix!r}"
            )
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = constraints.ca
        except x509.ExtensionNotFound:
            is_ca = False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns_names = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            dns_names = ()
        check_node_id(node.role, node.node_id)
        return cls(
            role=node.role,
            node_id=node.node_id,
            domain=domain,
            name=common_name[len(prefix) :],
            address=node.address,
            public_keys=PublicKeys(signing, kem),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial=cert.serial_number,
            is_ca=is_ca,
            dns_names=dns_names,
            x509=cert,
            der=cert.public_bytes(serialization.Encoding.DER),
        )

    @classmethod
    def from_der(cls, data: bytes) -> NodeCertificate:
        """Decode DER bytes (as carried by the TC's AMP commands)."""
        try:
            cert = x509.load_der_x509_certificate(data)
        except ValueError as e:
            raise CertificateFormatError(f"certificate: not DER X.509: {e}") from e
        return cls.from_x509(cert)

    @classmethod
    def from_pem(cls, data: bytes) -> NodeCertificate:
        """Decode the first certificate of PEM bytes."""
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError as e:
            raise CertificateFormatError(f"certificate: not PEM X.509: {e}") from e
        return cls.from_x509(cert)

    @classmethod
    def load(cls, path: Path) -> NodeCertificate:
        """Read a PEM certificate file; :class:`MissingFile` if there is none."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MissingFile(f"certificate file {str(path)!r} does not exist") from None
        try:
            return cls.from_pem(data)
        except CertificateFormatError as e:
            raise CertificateFormatError(f"{path}: {e}") from e

    def check_validity(self, now: datetime.datetime) -> None:
        """Raise :class:`CertificateExpired` or :class:`CertificateNotYetValid` at ``now``."""
        if now < self.not_before:
            raise CertificateNotYetValid(
                f"certificate {self.describe()} is not valid before {self.not_before.isoformat()}"
            )
        if now > self.not_after:
            raise CertificateExpired(
                f"certificate {self.describe()} expired at {self.not_after.isoformat()}"
            )

    def verify_issued_by(self, ca: NodeCertificate, now: datetime.datetime) -> None:
        """Check that ``ca`` issued this certificate and both are valid at ``now``.

        Raises :class:`WrongIssuer` (another domain, or ``ca`` is not a CA certificate),
        :class:`BadSignature`, :class:`CertificateExpired` or :class:`CertificateNotYetValid`.
        """
        if not ca.is_ca:
            raise WrongIssuer(f"{ca.describe()} is not a CA certificate")
        if self.domain != ca.domain:
            raise WrongIssuer(
                f"certificate {self.describe()} belongs to domain {self.domain!r}, "
                f"not {ca.domain!r}"
            )
        if self.x509.issuer != ca.x509.subject:
            raise WrongIssuer(
                f"certificate {self.describe()} was issued by "
                f"{self.x509.issuer.rfc4514_string()!r}, not by {ca.describe()}"
            )
        try:
            self.x509.verify_directly_issued_by(ca.x509)
        except (InvalidSignature, ValueError, TypeError) as e:
            raise BadSignature(
                f"certificate {self.describe()}: the signature of {ca.describe()} "
                f"does not verify ({e or type(e).__name__})"
            ) from e
        ca.check_validity(now)
        self.check_validity(now)

    def describe(self) -> str:
        """A short log-friendly label: ``ha/ha1@corp.example #0x1f…``."""
        return f"{self.role.name.lower()}/{self.name}@{self.domain} (serial {self.serial:#x})"


def _single_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise CertificateFormatError(
            f"certificate subject {name.rfc4514_string()!r}: expected one {oid._name}"
        )
    return values[0].value


def _subject(domain: str, role: Role, name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, domain),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{role.name.lower()}/{name}"),
        ]
    )


def tc_dns_name(domain: str) -> str:
    """The DNS name in the TC's certificate that clients name in TLS: ``tc.<domain>``."""
    return f"tc.{domain}"


def make_ca_certificate(
    domain: str,
    tc_id: int,
    keys: PrivateKeys,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    serial: int,
) -> NodeCertificate:
    """A domain's self-signed CA certificate (role TC, the TC's ID and X25519 key)."""
    check_domain_name(domain)
    check_node_id(Role.TC, tc_id)
    subject = _subject(domain, Role.TC, "ca")
    public = keys.signing.public_key()
    builder = (
        _base_builder(subject, subject, keys.public, Role.TC, tc_id, None, not_before, not_after)
        .serial_number(serial)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return NodeCertificate.from_x509(builder.sign(keys.signing, None))


def issue_certificate(
    ca: NodeCertificate,
    ca_keys: PrivateKeys,
    role: Role,
    node_id: int,
    name: str,
    public_keys: PublicKeys,
    address: ipaddress.IPv4Address | None,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    serial: int,
    dns_names: Sequence[str] = (),
) -> NodeCertificate:
    """A node certificate signed by the domain CA ``ca`` with ``ca_keys``.

    The validity window is clipped to the CA's: a node certificate never outlives its issuer.
    """
    check_node_name(name)
    check_node_id(role, node_id)
    if ca_keys.public != ca.public_keys:
        raise ValueError("the CA keys given do not match the CA certificate")
    not_after = min(not_after, ca.not_after)
    subject = _subject(ca.domain, role, name)
    builder = (
        _base_builder(
            subject, ca.x509.subject, public_keys, role, node_id, address, not_before, not_after
        )
        .serial_number(serial)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Every node may be a TLS client of its TC; the TC (and a TC forwarding a
        # federated lookup) is also a TLS server.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_keys.signing),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_keys.signing), critical=False
        )
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    return NodeCertificate.from_x509(builder.sign(ca_keys.signing, None))


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_keys: PublicKeys,
    role: Role,
    node_id: int,
    address: ipaddress.IPv4Address | None,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    if not_after <= not_before:
        raise ValueError("certificate validity: not_after must be later than not_before")
    extension = NodeExtension(role, node_id, public_keys.to_bytes()[32:], address)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_keys.signing)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.UnrecognizedExtension(NODE_EXTENSION_OID, extension.encode()), critical=False
        )
    )
