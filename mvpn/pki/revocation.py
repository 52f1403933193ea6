"""A domain's revocation list: the serial numbers its CA has withdrawn.

Kept by ``mvpn pki revoke`` / ``rotate`` in the domain store (``revoked.json``) and loaded by
the Trusted Centre at start, which also records revocations it receives over AMP in its
SQLite registry. A revoked certificate is refused everywhere (TLS peers of the TC, lookups,
registrations, the client cache).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mvpn.pki.errors import PkiError
from mvpn.pki.files import PUBLIC_MODE, write_file


@dataclass(frozen=True)
class Revocation:
    """One withdrawn certificate."""

    serial: int
    node_id: int
    name: str
    revoked_at: datetime.datetime
    reason: str

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the serial in hex: it may be 159 bits long)."""
        return {
            "serial": f"{self.serial:#x}",
            "node_id": f"{self.node_id:#018x}",
            "name": self.name,
            "revoked_at": self.revoked_at.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, obj: object) -> Revocation:
        """Parse :meth:`to_json`'s output; :class:`PkiError` on anything else."""
        try:
            if not isinstance(obj, dict):
                raise TypeError("not an object")
            return cls(
                serial=int(obj["serial"], 16),
                node_id=int(obj["node_id"], 16),
                name=str(obj["name"]),
                revoked_at=datetime.datetime.fromisoformat(obj["revoked_at"]),
                reason=str(obj["reason"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise PkiError(f"revocation entry {obj!r}: {e}") from e


@dataclass(frozen=True)
class RevocationList:
    """An immutable set of revocations, keyed by serial number."""

    entries: tuple[Revocation, ...] = ()

    def is_revoked(self, serial: int) -> bool:
        """Whether the certificate with this serial number is withdrawn."""
        return any(e.serial == serial for e in self.entries)

    def add(self, revocation: Revocation) -> RevocationList:
        """A new list with ``revocation`` (unchanged if the serial is already there)."""
        if self.is_revoked(revocation.serial):
            return self
        return RevocationList((*self.entries, revocation))

    def __iter__(self) -> Iterator[Revocation]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def load(cls, path: Path) -> RevocationList:
        """Read ``revoked.json``; an absent file is an empty list."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except ValueError as e:
            raise PkiError(f"{path}: not JSON: {e}") from e
        if not isinstance(data, list):
            raise PkiError(f"{path}: expected a JSON list of revocations")
        return cls.of(Revocation.from_json(item) for item in data)

    @classmethod
    def of(cls, entries: Iterable[Revocation]) -> RevocationList:
        """A list of these revocations (duplicates by serial dropped)."""
        result = cls()
        for entry in entries:
            result = result.add(entry)
        return result

    def save(self, path: Path) -> None:
        """Write ``revoked.json`` atomically (public: it names no secret)."""
        text = json.dumps([e.to_json() for e in self.entries], indent=2) + "\n"
        write_file(path, text.encode(), PUBLIC_MODE)
