"""The Trusted Centre's registry: registered certificates and revocations, in SQLite.

Every change is committed (``synchronous=FULL``, write-ahead log) before the method returns,
and the AMP responder answers only after that: whatever the TC acknowledged survives a
``kill -9`` and a restart (the live test in tests/roles/tc pins this).

SQLite calls block the reactor thread. They are short (an indexed read, or one small
transaction) and the TC serves a domain's agents, not the data flow; a busy TC would move
them to a thread pool.

64-bit node IDs and 159-bit serial numbers do not fit SQLite's signed INTEGER, so they are
stored as fixed-width lower-case hex TEXT (which also sorts and indexes correctly).
"""

from __future__ import annotations

import datetime
import ipaddress
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mvpn.pki.certificate import NodeCertificate
from mvpn.pki.errors import CertificateError
from mvpn.pki.revocation import Revocation
from mvpn.pki.tc_errors import CertificateRevoked, InvalidCertificate, UnknownNode

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial        TEXT PRIMARY KEY,   -- 40 hex digits
    node_id       TEXT NOT NULL,      -- 16 hex digits
    role          INTEGER NOT NULL,
    name          TEXT NOT NULL,
    address       TEXT,               -- dotted quad, NULL when the node has none
    not_before    REAL NOT NULL,      -- POSIX seconds
    not_after     REAL NOT NULL,
    der           BLOB NOT NULL,
    registered_by TEXT NOT NULL,
    registered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_node ON certificates (node_id, not_before);
CREATE INDEX IF NOT EXISTS certificates_address ON certificates (address, not_before);
CREATE TABLE IF NOT EXISTS revocations (
    serial     TEXT PRIMARY KEY,
    node_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    reason     TEXT NOT NULL
);
"""


def _serial_key(serial: int) -> str:
    return f"{serial:040x}"


def _node_key(node_id: int) -> str:
    return f"{node_id:016x}"


@dataclass(frozen=True)
class RegisteredCertificate:
    """A row of the registry, as the ``List`` command reports it."""

    certificate: NodeCertificate
    revoked: bool


class Registry:
    """The registry of one domain's TC. ``path`` may be ``":memory:"`` in tests."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database (everything is already committed)."""
        self._db.close()

    def register(self, cert: NodeCertificate, registered_by: str, now: datetime.datetime) -> bool:
        """Record ``cert``; True if new, False if that serial was already registered.

        :class:`CertificateRevoked` if the serial is revoked. The caller has verified the
        certificate against the domain's CA.
        """
        if self.is_revoked(cert.serial):
            raise CertificateRevoked(f"certificate {cert.describe()} is revoked")
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _serial_key(cert.serial),
                    _node_key(cert.node_id),
                    int(cert.role),
                    cert.name,
                    str(cert.address) if cert.address is not None else None,
                    cert.not_before.timestamp(),
                    cert.not_after.timestamp(),
                    cert.der,
                    registered_by,
                    now.timestamp(),
                ),
            )
        return cursor.rowcount == 1

    def revoke(self, revocation: Revocation) -> bool:
        """Record a revocation; True if new."""
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO revocations VALUES (?, ?, ?, ?, ?)",
                (
                    _serial_key(revocation.serial),
                    _node_key(revocation.node_id),
                    revocation.name,
                    revocation.revoked_at.timestamp(),
                    revocation.reason,
                ),
            )
        return cursor.rowcount == 1

    def import_revocations(self, revocations: Iterable[Revocation]) -> int:
        """Record every revocation of a list (``revoked.json``); returns how many were new."""
        return sum(1 for r in revocations if self.revoke(r))

    def is_revoked(self, serial: int) -> bool:
        """Whether that serial number is revoked."""
        row = self._db.execute(
            "SELECT 1 FROM revocations WHERE serial = ?", (_serial_key(serial),)
        ).fetchone()
        return row is not None

    def certificate_by_serial(self, serial: int) -> NodeCertificate | None:
        """The registered certificate with that serial, if any (revoked or not)."""
        row = self._db.execute(
            "SELECT der FROM certificates WHERE serial = ?", (_serial_key(serial),)
        ).fetchone()
        return NodeCertificate.from_der(row[0]) if row else None

    def lookup(self, node_id: int, now: datetime.datetime) -> NodeCertificate:
        """The node's newest certificate that is valid at ``now`` and not revoked.

        :class:`CertificateRevoked` when every current certificate of the node is revoked,
        :class:`UnknownNode` when there is none (or only expired ones).
        """
        return self._newest("node_id", _node_key(node_id), f"node {node_id:#x}", now)

    def lookup_address(
        self, address: ipaddress.IPv4Address, now: datetime.datetime
    ) -> NodeCertificate:
        """As :meth:`lookup`, by the address in the certificate's node extension."""
        return self._newest("address", str(address), f"address {address}", now)

    def _newest(self, column: str, key: str, what: str, now: datetime.datetime) -> NodeCertificate:
        moment = now.timestamp()
        rows = self._db.execute(
            f"SELECT c.der, r.serial IS NOT NULL FROM certificates c "
            f"LEFT JOIN revocations r ON r.serial = c.serial "
            f"WHERE c.{column} = ? AND c.not_before <= ? AND c.not_after >= ? "
            f"ORDER BY c.not_before DESC",
            (key, moment, moment),
        ).fetchall()
        revoked = False
        for der, is_revoked in rows:
            if is_revoked:
                revoked = True
                continue
            try:
                return NodeCertificate.from_der(der)
            except CertificateError as e:
                raise InvalidCertificate(f"registry: {what}: {e}") from e
        if revoked:
            raise CertificateRevoked(f"{what}: every current certificate is revoked")
        raise UnknownNode(f"no valid certificate registered for {what}")

    def list(self, offset: int, limit: int) -> list[RegisteredCertificate]:
        """Registered certificates, oldest registration first (for operators)."""
        rows = self._db.execute(
            "SELECT c.der, r.serial IS NOT NULL FROM certificates c "
            "LEFT JOIN revocations r ON r.serial = c.serial "
            "ORDER BY c.rowid LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return [RegisteredCertificate(NodeCertificate.from_der(d), bool(r)) for d, r in rows]

    def count(self) -> int:
        """How many certificates are registered."""
        row = self._db.execute("SELECT COUNT(*) FROM certificates").fetchone()
        return int(row[0])
