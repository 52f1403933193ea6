"""The data-flow AEAD and the symmetric seal (docs/protocol.md 1, 6.2, 7.6, 8.1)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from mvpn.crypto.aead import (
    SYMMETRIC_OVERHEAD,
    DataCipher,
    data_nonce,
    open_symmetric,
    seal_symmetric,
)
from mvpn.crypto.errors import DecryptionError, KeyFormatError, UnsupportedAlgorithmError
from mvpn.crypto.random import SeededRandom
from mvpn.wire.codes import BROKEN_ENCR, EncrSecPar

KEY = SeededRandom("aead key")(32)
OTHER_KEY = SeededRandom("other key")(32)
AAD = b"\x37\x00\x05\x06\x01\x00" + bytes(12)
PACKET = bytes(range(256)) * 5 + bytes(120)  # 1400 bytes, the TUN MTU
GOOD = [EncrSecPar.AES_256_GCM, EncrSecPar.CHACHA20_POLY1305]


def test_nonce_is_four_zero_bytes_then_sequence() -> None:
    """The data nonce is 0x00000000 followed by the 64-bit Sequence Number."""
    assert data_nonce(0x0102030405060708) == bytes(4) + bytes.fromhex("0102030405060708")
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError, match="sequence"):
            data_nonce(bad)


@pytest.mark.parametrize("algorithm", GOOD)
def test_round_trip(algorithm: EncrSecPar) -> None:
    """A 1400-byte packet encrypts (16 bytes longer) and decrypts back."""
    cipher = DataCipher(algorithm, KEY)
    ciphertext = cipher.encrypt(7, AAD, PACKET)
    assert len(ciphertext) == len(PACKET) + 16
    assert DataCipher(algorithm, KEY).decrypt(7, AAD, ciphertext) == PACKET


@pytest.mark.parametrize(
    ("algorithm", "primitive"),
    [(EncrSecPar.AES_256_GCM, AESGCM), (EncrSecPar.CHACHA20_POLY1305, ChaCha20Poly1305)],
)
def test_code_point_selects_primitive_and_nonce(
    algorithm: EncrSecPar, primitive: type[AESGCM] | type[ChaCha20Poly1305]
) -> None:
    """Encr Sec Par 6 is AES-256-GCM, 7 is ChaCha20-Poly1305, both with the data nonce."""
    expected = primitive(KEY).encrypt(data_nonce(42), b"inner packet", AAD)
    assert DataCipher(algorithm, KEY).encrypt(42, AAD, b"inner packet") == expected


@pytest.mark.parametrize("algorithm", GOOD)
def test_tampering_is_refused(algorithm: EncrSecPar) -> None:
    """A flipped bit, other AAD, another sequence number or another key all fail."""
    cipher = DataCipher(algorithm, KEY)
    ciphertext = cipher.encrypt(9, AAD, PACKET)
    flipped = ciphertext[:100] + bytes([ciphertext[100] ^ 0x80]) + ciphertext[101:]
    with pytest.raises(DecryptionError, match=f"{algorithm.name} data packet 9"):
        cipher.decrypt(9, AAD, flipped)
    with pytest.raises(DecryptionError):
        cipher.decrypt(9, AAD[:-1] + b"\x01", ciphertext)
    with pytest.raises(DecryptionError):
        cipher.decrypt(10, AAD, ciphertext)
    with pytest.raises(DecryptionError):
        DataCipher(algorithm, OTHER_KEY).decrypt(9, AAD, ciphertext)
    with pytest.raises(DecryptionError, match="at least 16 bytes, got 15"):
        cipher.decrypt(9, AAD, ciphertext[:15])


def test_algorithms_do_not_cross() -> None:
    """An AES-GCM ciphertext does not decrypt as ChaCha20-Poly1305 under the same key."""
    ciphertext = DataCipher(EncrSecPar.AES_256_GCM, KEY).encrypt(1, AAD, b"x")
    with pytest.raises(DecryptionError):
        DataCipher(EncrSecPar.CHACHA20_POLY1305, KEY).decrypt(1, AAD, ciphertext)


@pytest.mark.parametrize("code", sorted(BROKEN_ENCR))
def test_broken_code_points_are_refused_by_name(code: EncrSecPar) -> None:
    """The draft's DES, SkipJack, IDEA, Blowfish and 3DES are named and refused."""
    with pytest.raises(UnsupportedAlgorithmError, match=rf"{code.name} \({int(code)}\).*broken"):
        DataCipher(code, KEY)
    with pytest.raises(UnsupportedAlgorithmError, match=code.name):
        DataCipher(int(code), KEY)


def test_unknown_code_point_is_refused() -> None:
    """A code point mvpn does not know is refused by number."""
    with pytest.raises(UnsupportedAlgorithmError, match=r"unknown \(9\)"):
        DataCipher(9, KEY)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_wrong_key_size_is_refused(size: int) -> None:
    """Data keys are exactly 32 bytes."""
    with pytest.raises(KeyFormatError, match=f"expected 32 bytes, got {size}"):
        DataCipher(EncrSecPar.AES_256_GCM, bytes(size))


def test_symmetric_seal_layout_and_determinism() -> None:
    """nonce (12, from the random source) || AES-256-GCM ciphertext || tag (16)."""
    blob = seal_symmetric(KEY, "key-refresh", b"new keys", b"header", SeededRandom(3))
    nonce = SeededRandom(3)(12)
    assert blob[:12] == nonce
    assert len(blob) == len(b"new keys") + SYMMETRIC_OVERHEAD
    aad = b"MVPN-00 symmetric key-refresh\x00header"
    assert AESGCM(KEY).decrypt(nonce, blob[12:], aad) == b"new keys"
    assert blob == seal_symmetric(KEY, "key-refresh", b"new keys", b"header", SeededRandom(3))
    assert blob != seal_symmetric(KEY, "key-refresh", b"new keys", b"header", SeededRandom(4))


def test_symmetric_round_trip() -> None:
    """open_symmetric returns what seal_symmetric sealed."""
    blob = seal_symmetric(KEY, "key-transfer", b"S" * 300, b"ad", SeededRandom(1))
    assert open_symmetric(KEY, "key-transfer", blob, b"ad") == b"S" * 300


def test_symmetric_refusals() -> None:
    """Wrong key, label or AAD, a flipped bit and truncation all fail to open."""
    blob = seal_symmetric(KEY, "key-transfer", b"S", b"ad", SeededRandom(1))
    with pytest.raises(DecryptionError, match="key-transfer"):
        open_symmetric(OTHER_KEY, "key-transfer", blob, b"ad")
    with pytest.raises(DecryptionError):
        open_symmetric(KEY, "key-refresh", blob, b"ad")
    with pytest.raises(DecryptionError):
        open_symmetric(KEY, "key-transfer", blob, b"ae")
    with pytest.raises(DecryptionError):
        open_symmetric(KEY, "key-transfer", blob[:5] + bytes([blob[5] ^ 1]) + blob[6:], b"ad")
    with pytest.raises(DecryptionError, match="at least 28 bytes, got 27"):
        open_symmetric(KEY, "key-transfer", blob[:27], b"ad")


def test_symmetric_refuses_bad_key_and_short_random() -> None:
    """A 16-byte key and a random source that under-delivers are refused."""
    with pytest.raises(KeyFormatError):
        seal_symmetric(bytes(16), "l", b"m", b"", SeededRandom(1))
    with pytest.raises(ValueError, match="random source"):
        seal_symmetric(KEY, "l", b"m", b"", lambda n: bytes(n - 1))
