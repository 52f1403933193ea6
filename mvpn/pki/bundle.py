"""The mobile node's "smart card" (draft sections 3.1 and 7.1).

The draft has the home agent create a mobile node's keys, register the public key with the
Trusted Centre and hand the private key over "via a floppy disk or any other mechanism that
guarantees confidentiality". mvpn's smart card is one JSON file, mode 0600, holding:

- the MN's private keys (two PEM blocks, encrypted when a PIN is given) and certificate,
- its USER ID (48 bits, also its node ID), DVC MAC ID (64 bits) and SC ID (64 bits),
  the identity fields of the mobile information extension (draft section 5.1),
- its home agent's certificate and address (the MN "MUST know the Public Key of its home
  agent", section 3.1), and the domain's CA certificate (to check what the TC says).

The MN's private key exists nowhere else: the domain store keeps only its certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.certificate import MAX_NODE_ID, MAX_USER_ID, NodeCertificate, Role
from mvpn.pki.errors import PkiError, StoreError
from mvpn.pki.files import (
    PRIVATE_MODE,
    private_keys_from_pem,
    private_keys_to_pem,
    read_file,
    write_file,
)

BUNDLE_FORMAT = "mvpn-smart-card-1"


@dataclass(frozen=True, repr=False)
class SmartCard:
    """A mobile node's credentials. The ``repr`` never shows the private key."""

    user_id: int
    dvc_mac_id: int
    sc_id: int
    keys: PrivateKeys
    certificate: NodeCertificate
    home_agent: NodeCertificate
    home_agent_address: ipaddress.IPv4Address
    ca: NodeCertificate

    def __post_init__(self) -> None:
        if not 0 <= self.user_id <= MAX_USER_ID:
            raise ValueError(f"USER ID {self.user_id}: must fit in 48 bits")
        for label, value in (("DVC MAC ID", self.dvc_mac_id), ("SC ID", self.sc_id)):
            if not 0 <= value <= MAX_NODE_ID:
                raise ValueError(f"{label} {value}: must fit in 64 bits")

    def __repr__(self) -> str:
        return f"<SmartCard user_id={self.user_id:#014x} {self.certificate.describe()}>"

    def verify(self, now: datetime.datetime) -> None:
        """Check the card is coherent: both certificates issued by its CA and valid at ``now``,
        the private keys match the certificate, the certificate is the MN's."""
        self.certificate.verify_issued_by(self.ca, now)
        self.home_agent.verify_issued_by(self.ca, now)
        if self.certificate.role is not Role.MN or self.certificate.node_id != self.user_id:
            raise StoreError("smart card: the certificate is not this mobile node's")
        if self.home_agent.role is not Role.HA:
            raise StoreError("smart card: the home agent certificate is not an HA's")
        if self.keys.public != self.certificate.public_keys:
            raise StoreError("smart card: the private keys do not match the certificate")

    def save(self, path: Path, pin: bytes | None = None) -> None:
        """Write the card as one JSON file, mode 0600 (the PIN encrypts the private keys)."""
        doc = {
            "format": BUNDLE_FORMAT,
            "user_id": f"{self.user_id:#014x}",
            "dvc_mac_id": f"{self.dvc_mac_id:#018x}",
            "sc_id": f"{self.sc_id:#018x}",
            "home_agent_address": str(self.home_agent_address),
            "private_keys": private_keys_to_pem(self.keys, pin).decode(),
            "certificate": self.certificate.pem.decode(),
            "home_agent_certificate": self.home_agent.pem.decode(),
            "ca_certificate": self.ca.pem.decode(),
        }
        write_file(path, (json.dumps(doc, indent=2) + "\n").encode(), PRIVATE_MODE)

    @classmethod
    def load(cls, path: Path, pin: bytes | None = None) -> SmartCard:
        """Read a card; :class:`MissingFile`, :class:`WrongPassword` or :class:`PkiError`."""
        data = read_file(path, "smart card")
        try:
            doc = json.loads(data)
            if doc.get("format") != BUNDLE_FORMAT:
                raise PkiError(f"{path}: not an mvpn smart card (format {doc.get('format')!r})")
            return cls(
                user_id=int(doc["user_id"], 16),
                dvc_mac_id=int(doc["dvc_mac_id"], 16),
                sc_id=int(doc["sc_id"], 16),
                keys=private_keys_from_pem(doc["private_keys"].encode(), pin, str(path)),
                certificate=NodeCertificate.from_pem(doc["certificate"].encode()),
                home_agent=NodeCertificate.from_pem(doc["home_agent_certificate"].encode()),
                home_agent_address=ipaddress.IPv4Address(doc["home_agent_address"]),
                ca=NodeCertificate.from_pem(doc["ca_certificate"].encode()),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise PkiError(f"{path}: malformed smart card: {e}") from e
