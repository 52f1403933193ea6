"""The HA's SQLite binding store (mvpn/core/store.py): durable, and never reusing an SPI or
an Identification."""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from mvpn.core.store import Binding, BindingStore
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys

HOME = ipaddress.IPv4Address("10.1.0.5")
COA = ipaddress.IPv4Address("192.0.2.1")


def make_binding(store: BindingStore, identification: int = 5) -> Binding:
    random = SeededRandom("store")
    keys = RegistrationKeys.generate(random, store.allocate_spi(), 100.0, 300.0)
    old = RegistrationKeys.generate(random, store.allocate_spi(), 50.0, 300.0)
    return Binding(
        home_address=HOME,
        care_of=COA,
        lifetime=300,
        registered_at=100.0,
        identification=identification,
        fa_id=0x4602,
        fa_address="127.0.0.1",
        mn_id=0xAABB,
        keys=keys,
        previous_keys=old,
        previous_valid_until=130.0,
    )


def test_write_reopen_read(tmp_path: Path) -> None:
    """A binding, its keys, the last Identification and the SPI high-water mark survive a
    close and reopen; the file is private."""
    path = tmp_path / "ha.sqlite"
    store = BindingStore(path)
    binding = make_binding(store, identification=(1 << 64) - 2)
    store.put_binding(binding)
    store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = BindingStore(path)
    loaded = again.load_bindings()[HOME]
    assert loaded.care_of == COA and loaded.fa_id == 0x4602 and loaded.mn_id == 0xAABB
    assert loaded.keys is not None and binding.keys is not None
    assert loaded.keys.auth_key == binding.keys.auth_key
    assert loaded.keys.ses_key == binding.keys.ses_key
    assert loaded.keys.spi == binding.keys.spi == 257
    assert loaded.previous_keys is not None and loaded.previous_keys.spi == 258
    assert loaded.previous_valid_until == 130.0
    assert again.last_identification(HOME) == (1 << 64) - 2
    assert again.spi_high_water() == 258
    assert again.allocate_spi() == 259
    again.close()


def test_crash_keeps_committed_data(tmp_path: Path) -> None:
    """Data written by one connection is visible to another opened while the first is still
    open and never closed (as after kill -9): every write is committed before it returns."""
    path = tmp_path / "ha.sqlite"
    store = BindingStore(path)
    store.put_binding(make_binding(store))
    store.allocate_spi()
    # A second, independent connection plays the restarted process.
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM bindings").fetchone() == (1,)
    other.close()
    reopened = BindingStore(path)
    assert HOME in reopened.load_bindings()
    assert reopened.allocate_spi() == 260
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    sync = reopened._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)


def test_remove_keeps_identification() -> None:
    """Removing a binding keeps (and may advance) its last Identification: a deregistered
    MN's old requests stay replays."""
    store = BindingStore()
    store.put_binding(make_binding(store, identification=10))
    store.remove_binding(HOME, identification=11)
    assert store.load_bindings() == {}
    assert store.last_identification(HOME) == 11
    store.remove_binding(HOME)
    assert store.last_identification(HOME) == 11
    store.set_last_identification(HOME, 12)
    assert store.last_identification(HOME) == 12
    assert store.last_identification(COA) is None


def test_binding_keys_for_spi() -> None:
    """The previous SA is accepted only during its grace period; unknown SPIs never."""
    store = BindingStore()
    b = make_binding(store)
    assert b.keys is not None and b.previous_keys is not None
    assert b.keys_for_spi(257, 200.0) is b.keys
    assert b.keys_for_spi(258, 129.0) is b.previous_keys
    assert b.keys_for_spi(258, 130.0) is None
    assert b.keys_for_spi(999, 0.0) is None
    assert b.expires_at == 400.0 and b.expired(400.0) and not b.expired(399.9)
    assert "10.1.0.5" in repr(b) and "key" not in repr(b).replace("keys", "")


def test_plain_binding_round_trip() -> None:
    """A plain RFC 5944 binding has no keys and keeps its SPI."""
    store = BindingStore()
    plain = Binding(HOME, COA, 60, 1.0, 3, plain_spi=0x1234)
    store.put_binding(plain)
    loaded = store.load_bindings()[HOME]
    assert loaded.keys is None and loaded.previous_keys is None
    assert loaded.plain_spi == 0x1234 and loaded.fa_id is None


def test_group_commits_once_and_only_at_its_end(tmp_path: Path) -> None:
    """Writes inside a group are invisible to another connection until end_group, and the
    whole group costs one commit."""
    path = tmp_path / "group.sqlite"
    store = BindingStore(path)
    before = store.commits
    store.begin_group()
    binding = make_binding(store)
    store.put_binding(binding)
    store.set_last_identification(ipaddress.IPv4Address("10.0.0.9"), 77)
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM bindings").fetchone()[0] == 0
    store.end_group()
    assert other.execute("SELECT COUNT(*) FROM bindings").fetchone()[0] == 1
    assert store.commits == before + 1
    other.close()
    store.close()


def test_failing_write_in_group_undoes_only_itself() -> None:
    """A write that fails inside a group leaves the group's earlier writes in place."""
    store = BindingStore()
    store.begin_group()
    binding = make_binding(store)
    store.put_binding(binding)
    with pytest.raises(sqlite3.OperationalError):
        store._write([("INSERT INTO no_such_table VALUES (1)", ())])
    store.end_group()
    assert set(store.load_bindings()) == {binding.home_address}


def test_group_lost_without_commit(tmp_path: Path) -> None:
    """A group that never reaches end_group (the process dies) leaves nothing behind: the
    replies it held were never sent, so nothing acknowledged is lost."""
    path = tmp_path / "lost.sqlite"
    store = BindingStore(path)
    store.begin_group()
    store.put_binding(make_binding(store))
    # Simulate kill -9: drop the connection without committing.
    store._db.close()
    assert BindingStore(path).load_bindings() == {}
