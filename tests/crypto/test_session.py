"""Registration keys: the draft's Ses Key and Auth Key (docs/protocol.md 11)."""

from __future__ import annotations

import pytest

from mvpn.crypto.errors import KeyFormatError
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.session import RegistrationKeys


def test_generate_is_deterministic_with_seeded_random() -> None:
    """Keys come only from the given source: the same seed gives the same keys."""
    a = RegistrationKeys.generate(SeededRandom(7), 300, 1000.0, 300.0)
    b = RegistrationKeys.generate(SeededRandom(7), spi=300, now=1000.0, lifetime=300.0)
    assert a == b
    assert len(a.ses_key) == len(a.auth_key) == 32
    assert a.ses_key != a.auth_key
    assert a != RegistrationKeys.generate(SeededRandom(8), 300, 1000.0, 300.0)


def test_expiry_edges() -> None:
    """Valid until created_at + lifetime, expired from that instant on."""
    keys = RegistrationKeys.generate(SeededRandom(1), 257, 100.0, 60.0)
    assert keys.expires_at == 160.0
    assert not keys.expired(100.0)
    assert not keys.expired(159.999)
    assert keys.expired(160.0)
    assert keys.expired(1e9)


@pytest.mark.parametrize("spi", [0, 255, 256, 1 << 32])
def test_spi_range(spi: int) -> None:
    """Registration SPIs are 257 to 2**32-1: RFC 5944 reserves 0-255, 256 is first contact."""
    with pytest.raises(ValueError, match="registration SPI"):
        RegistrationKeys.generate(SeededRandom(1), spi, 0.0, 60.0)


def test_key_size_and_lifetime_checked() -> None:
    """Keys of the wrong size and non-positive lifetimes are refused."""
    with pytest.raises(KeyFormatError, match="ses_key"):
        RegistrationKeys(300, b"k" * 16, b"a" * 32, 0.0, 60.0)
    with pytest.raises(KeyFormatError, match="auth_key"):
        RegistrationKeys(300, b"k" * 32, b"a" * 33, 0.0, 60.0)
    with pytest.raises(ValueError, match="lifetime"):
        RegistrationKeys(300, b"k" * 32, b"a" * 32, 0.0, 0.0)
