"""No object of mvpn.crypto shows key bytes in its repr or str (docs/protocol.md 11)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mvpn.crypto.aead import DataCipher
from mvpn.crypto.auth import HopAuthenticator
from mvpn.crypto.dh import DataKeys, DhGroup, DhKeyPair, derive_data_keys
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys
from mvpn.wire.codes import EncrSecPar

KEY = bytes(range(0xA0, 0xC0))


def _leaks(text: str, secret: bytes) -> bool:
    """Does ``text`` show ``secret`` (or any 4-byte run of it) as hex or as a bytes literal?"""
    runs = [secret[i : i + 4] for i in range(len(secret) - 3)]
    return any(run.hex() in text.lower() or repr(run)[2:-1] in text for run in runs)


def _texts(obj: object) -> list[str]:
    return [repr(obj), str(obj), f"{obj}", repr([obj])]


def test_leak_detector_detects() -> None:
    """The detector itself finds key bytes when they are there (so the tests can fail)."""
    assert _leaks(f"key={KEY!r}", KEY)
    assert _leaks(f"key={KEY.hex()}", KEY)
    assert not _leaks("<DataCipher AES_256_GCM>", KEY)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DataCipher(EncrSecPar.AES_256_GCM, KEY),
        lambda: DataCipher(EncrSecPar.CHACHA20_POLY1305, KEY),
        lambda: HopAuthenticator(KEY),
        lambda: RegistrationKeys(300, KEY, KEY[::-1], 0.0, 60.0),
        lambda: DataKeys(KEY, KEY[::-1]),
    ],
    ids=["aes", "chacha", "hop", "registration", "data-keys"],
)
def test_symmetric_key_holders_hide_keys(make: Callable[[], object]) -> None:
    """Objects built from KEY never show it."""
    obj = make()
    for text in _texts(obj):
        assert not _leaks(text, KEY), text
        assert not _leaks(text, KEY[::-1]), text


def test_derived_data_keys_hidden() -> None:
    """Derived data keys stay out of the repr."""
    keys = derive_data_keys(SeededRandom("s")(32), b"t")
    for text in _texts(keys):
        assert not _leaks(text, keys.mn_to_cn)
        assert not _leaks(text, keys.cn_to_mn)


@pytest.mark.parametrize("group", list(DhGroup))
def test_dh_key_pair_hides_private_half(group: DhGroup) -> None:
    """A DH key pair's repr names its group and nothing secret."""
    seed = SeededRandom("dh")(64 if group is not DhGroup.X25519 else 32)
    pair = DhKeyPair.generate(group, lambda n: seed[:n])
    for text in _texts(pair):
        assert group.value in text
        assert not _leaks(text, seed[:32])


def test_private_keys_show_only_public_half() -> None:
    """PrivateKeys (keys.py) shows a prefix of the public keys, never the seed."""
    seed = SeededRandom("pk")(64)
    keys = PrivateKeys.from_seed(seed)
    for text in _texts(keys):
        assert not _leaks(text, seed[:32])
        assert not _leaks(text, seed[32:])
