"""Domain stores made at test time, shared by the PKI and Trusted Centre tests."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.domain import DomainStore
from mvpn.pki.files import read_private_keys

PASSWORD = b"correct horse battery staple"

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
"""A fixed moment for tests that do not go through TLS (OpenSSL reads the real clock)."""


def make_domain(
    root: Path, domain: str, now: datetime.datetime = NOW, tc_id: int | None = None
) -> DomainStore:
    """A fresh domain store under ``root/domain``."""
    return DomainStore.init(root / domain, domain, PASSWORD, now, tc_id=tc_id)


def issue_agent(
    store: DomainStore,
    role: Role,
    name: str,
    now: datetime.datetime = NOW,
    address: str | None = None,
    node_id: int | None = None,
    days: int | None = None,
) -> tuple[NodeCertificate, PrivateKeys]:
    """Issue an agent's certificate; returns it with its private keys."""
    issued = store.issue(
        role,
        name,
        PASSWORD,
        now,
        node_id=node_id,
        address=ipaddress.IPv4Address(address) if address else None,
        days=days,
    )
    return issued.certificate, issued.keys


def credentials(store: DomainStore, name: str) -> tuple[NodeCertificate, PrivateKeys]:
    """A node's certificate and keys as kept in the store."""
    return store.certificate(name), read_private_keys(store.key_path(name))
