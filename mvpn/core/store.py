"""The home agent's persistent binding cache (issue 4; docs/protocol.md 10 and 11).

:class:`BindingStore` keeps, in one SQLite database (stdlib :mod:`sqlite3`):

- every binding (home address, care-of address, FA, lifetime, registration keys, the
  previous keys during a key refresh's grace period),
- the last Identification accepted per home address (RFC 5944 5.7), kept after the binding
  ends so that an old request can never be replayed,
- the SPI high-water mark: SPIs are handed out in increasing order and never reused.

The database runs in WAL mode with ``synchronous=FULL`` and every write commits before the
method returns, so that the home agent, which calls the store synchronously before it returns
its reply effect, never lets a reply leave for a binding a ``kill -9`` could lose. A shell
that handles many requests in one reactor turn may open a *group* (:meth:`BindingStore.
begin_group`): writes then join one transaction, committed (one fsync) by
:meth:`BindingStore.end_group`, and the shell holds every reply of the group until that
commit has returned. The guarantee is the same, a reply never leaves before what it
acknowledges is on disk, at one fsync per turn instead of one per registration. After a
restart the bindings are there, and no SPI or Identification the HA accepted is reused.

Times are seconds on the caller's clock (the HA passes Unix time, which Identification
timestamps need anyway). The store holds key material: its file must be private (mode 0600;
the shell creates it).
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from mvpn.crypto.auth import FIRST_REGISTRATION_SA_SPI, MAX_SPI
from mvpn.crypto.session import RegistrationKeys

__all__ = ["Binding", "BindingStore", "SpiExhausted"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    home_address TEXT PRIMARY KEY,
    care_of TEXT NOT NULL,
    fa_id INTEGER,
    fa_address TEXT,
    lifetime INTEGER NOT NULL,
    registered_at REAL NOT NULL,
    identification INTEGER NOT NULL,
    mn_id INTEGER,
    plain_spi INTEGER,
    spi INTEGER,
    ses_key BLOB,
    auth_key BLOB,
    key_created_at REAL,
    key_lifetime REAL,
    prev_spi INTEGER,
    prev_ses_key BLOB,
    prev_auth_key BLOB,
    prev_created_at REAL,
    prev_lifetime REAL,
    prev_valid_until REAL
);
CREATE TABLE IF NOT EXISTS identifications (
    home_address TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_SPI_HIGH_WATER = "spi_high_water"


class SpiExhausted(Exception):
    """Every SPI from 257 to 2**32-1 has been handed out once (never in practice)."""


@dataclass(frozen=True, repr=False)
class Binding:
    """One mobility binding (RFC 5944 4.1, draft 3.2): where the MN is and the keys it shares
    with its FA and HA.

    ``keys`` is the registration SA (``None`` for a plain RFC 5944 node, which has
    ``plain_spi`` instead); ``previous_keys`` is the SA a key refresh replaced, still
    accepted until ``previous_valid_until`` so that a lost refresh does not strand the MN
    (docs/protocol.md 6.2). ``fa_address`` is the address the FA's registration traffic came
    from (``None`` when the MN registered directly).
    """

    home_address: ipaddress.IPv4Address
    care_of: ipaddress.IPv4Address
    lifetime: int
    registered_at: float
    identification: int
    fa_id: int | None = None
    fa_address: str | None = None
    mn_id: int | None = None
    plain_spi: int | None = None
    keys: RegistrationKeys | None = field(default=None)
    previous_keys: RegistrationKeys | None = field(default=None)
    previous_valid_until: float = 0.0

    @property
    def expires_at(self) -> float:
        """When the binding ends unless renewed."""
        return self.registered_at + self.lifetime

    def expired(self, now: float) -> bool:
        """True from :attr:`expires_at` on."""
        return now >= self.expires_at

    def keys_for_spi(self, spi: int, now: float) -> RegistrationKeys | None:
        """The SA a request under ``spi`` uses: the current one, or the previous one during
        its grace period; ``None`` otherwise."""
        if self.keys is not None and self.keys.spi == spi:
            return self.keys
        if (
            self.previous_keys is not None
            and self.previous_keys.spi == spi
            and now < self.previous_valid_until
        ):
            return self.previous_keys
        return None

    def __repr__(self) -> str:
        spi = self.keys.spi if self.keys is not None else self.plain_spi
        return (
            f"<Binding {self.home_address} -> {self.care_of} fa={self.fa_id} "
            f"lifetime={self.lifetime} spi={spi}>"
        )


def _u64_to_sql(value: int | None) -> int | None:
    """SQLite integers are signed 64-bit: store an unsigned 64-bit value's bits as such."""
    if value is None:
        return None
    return value - (1 << 64) if value >= 1 << 63 else value


def _u64_from_sql(value: int | None) -> int | None:
    if value is None:
        return None
    return value + (1 << 64) if value < 0 else value


def _keys(
    spi: int | None,
    ses: bytes | None,
    auth: bytes | None,
    created: float | None,
    lifetime: float | None,
) -> RegistrationKeys | None:
    if spi is None or ses is None or auth is None or created is None or lifetime is None:
        return None
    return RegistrationKeys(spi, bytes(ses), bytes(auth), created, lifetime)


def _key_columns(keys: RegistrationKeys | None) -> tuple[object, ...]:
    if keys is None:
        return (None, None, None, None, None)
    return (keys.spi, keys.ses_key, keys.auth_key, keys.created_at, keys.lifetime)


class BindingStore:
    """Bindings, last Identifications and the SPI high-water mark in SQLite.

    ``path`` is a file path or ``":memory:"`` (tests). Every mutating method commits before
    it returns.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:" and not os.path.exists(self.path):
            # Create the file private before SQLite writes keys into it.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._group = False
        self.commits = 0
        """Transactions committed (each is one fsync): the figure group commit lowers."""

    def close(self) -> None:
        """Close the database; a group still open is committed first."""
        if self._group:
            self.end_group()
        self._db.close()

    @property
    def in_group(self) -> bool:
        """Whether writes are joining a group transaction (see :meth:`begin_group`)."""
        return self._group

    def begin_group(self) -> None:
        """Let the following writes join one transaction until :meth:`end_group`.

        The caller must not let anything that depends on those writes (a reply) leave
        before :meth:`end_group` has returned.
        """
        if self._group:
            raise RuntimeError("a write group is already open")
        self._db.execute("BEGIN IMMEDIATE")
        self._group = True

    def end_group(self) -> None:
        """Commit the group's writes (one fsync). On an error nothing of the group is kept
        and the error propagates: the caller must then drop the replies it held."""
        if not self._group:
            raise RuntimeError("no write group is open")
        self._group = False
        try:
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self.commits += 1

    def _write(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        """Run ``statements`` atomically: committed at once, or, inside a group, as a
        savepoint of the group's transaction (a failing write undoes only itself)."""
        db = self._db
        begin, undo, end = (
            ("SAVEPOINT write", "ROLLBACK TO write", "RELEASE write")
            if self._group
            else ("BEGIN IMMEDIATE", "ROLLBACK", "COMMIT")
        )
        db.execute(begin)
        try:
            for sql, args in statements:
                db.execute(sql, args)
        except BaseException:
            db.execute(undo)
            if self._group:
                db.execute(end)
            raise
        db.execute(end)
        if not self._group:
            self.commits += 1

    # --- bindings -------------------------------------------------------------------------

    def load_bindings(self) -> dict[ipaddress.IPv4Address, Binding]:
        """Every stored binding, by home address (expired ones included: the caller sweeps)."""
        rows = self._db.execute(
            "SELECT home_address, care_of, fa_id, fa_address, lifetime, registered_at, "
            "identification, mn_id, plain_spi, spi, ses_key, auth_key, key_created_at, "
            "key_lifetime, prev_spi, prev_ses_key, prev_auth_key, prev_created_at, "
            "prev_lifetime, prev_valid_until FROM bindings"
        ).fetchall()
        out: dict[ipaddress.IPv4Address, Binding] = {}
        for row in rows:
            home = ipaddress.IPv4Address(row[0])
            out[home] = Binding(
                home_address=home,
                care_of=ipaddress.IPv4Address(row[1]),
                fa_id=_u64_from_sql(row[2]),
                fa_address=row[3],
                lifetime=row[4],
                registered_at=row[5],
                identification=_u64_from_sql(row[6]) or 0,
                mn_id=_u64_from_sql(row[7]),
                plain_spi=row[8],
                keys=_keys(*row[9:14]),
                previous_keys=_keys(*row[14:19]),
                previous_valid_until=row[19] or 0.0,
            )
        return out

    def put_binding(self, binding: Binding) -> None:
        """Store (insert or replace) ``binding`` and record its Identification as the last
        accepted one for its home address; committed on return."""
        home = str(binding.home_address)
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO bindings VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        home,
                        str(binding.care_of),
                        _u64_to_sql(binding.fa_id),
                        binding.fa_address,
                        binding.lifetime,
                        binding.registered_at,
                        _u64_to_sql(binding.identification),
                        _u64_to_sql(binding.mn_id),
                        binding.plain_spi,
                        *_key_columns(binding.keys),
                        *_key_columns(binding.previous_keys),
                        binding.previous_valid_until,
                    ),
                ),
                self._identification_statement(home, binding.identification),
            ]
        )

    def remove_binding(
        self, home_address: ipaddress.IPv4Address, identification: int | None = None
    ) -> None:
        """Delete the binding of ``home_address`` (deregistration, expiry); when the removal
        answers a request, record its ``identification`` in the same transaction."""
        home = str(home_address)
        statements: list[tuple[str, tuple[object, ...]]] = [
            ("DELETE FROM bindings WHERE home_address = ?", (home,))
        ]
        if identification is not None:
            statements.append(self._identification_statement(home, identification))
        self._write(statements)

    # --- Identification (RFC 5944 5.7) ----------------------------------------------------

    @staticmethod
    def _identification_statement(home: str, value: int) -> tuple[str, tuple[object, ...]]:
        return (
            "INSERT OR REPLACE INTO identifications VALUES (?, ?)",
            (home, _u64_to_sql(value)),
        )

    def last_identification(self, home_address: ipaddress.IPv4Address) -> int | None:
        """The last Identification accepted for ``home_address``, or ``None``."""
        row = self._db.execute(
            "SELECT last FROM identifications WHERE home_address = ?", (str(home_address),)
        ).fetchone()
        return None if row is None else _u64_from_sql(int(row[0]))

    def set_last_identification(self, home_address: ipaddress.IPv4Address, value: int) -> None:
        """Record ``value`` as the last Identification accepted for ``home_address``."""
        self._write([self._identification_statement(str(home_address), value)])

    # --- SPIs -----------------------------------------------------------------------------

    def spi_high_water(self) -> int:
        """The highest SPI ever handed out (256 before the first)."""
        row = self._db.execute(
            "SELECT value FROM meta WHERE name = ?", (_SPI_HIGH_WATER,)
        ).fetchone()
        return int(row[0]) if row is not None else FIRST_REGISTRATION_SA_SPI - 1

    def allocate_spi(self) -> int:
        """A registration SA SPI never handed out before (committed before it is returned,
        or with its group: an SPI lost with an uncommitted group was never sent to anyone)."""
        spi = self.spi_high_water() + 1
        if spi > MAX_SPI:
            raise SpiExhausted("every registration SPI has been used")
        self._write([("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_SPI_HIGH_WATER, spi))])
        return spi
