"""The CN-MN Diffie-Hellman and the data keys (docs/protocol.md 7.1 and 11)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mvpn.crypto.dh import (
    DhGroup,
    DhKeyPair,
    data_key_transcript,
    derive_data_keys,
    group_from_params,
)
from mvpn.crypto.errors import KeyFormatError, UnsupportedAlgorithmError
from mvpn.crypto.random import RandomSource, SeededRandom

FFDHE = [DhGroup.FFDHE2048, DhGroup.FFDHE3072, DhGroup.FFDHE4096]

# RFC 7919 appendix A: the X of each group's construction.
RFC7919_X = {DhGroup.FFDHE2048: 560316, DhGroup.FFDHE3072: 2625351, DhGroup.FFDHE4096: 5736041}

# RFC 7748 section 6.1: the X25519 Diffie-Hellman example.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def _floor_e_times_2_to(n: int) -> int:
    """floor(2**n * e) from the series sum(1/k!), with 64 guard bits."""
    scale = 1 << (n + 64)
    total, term, k = 0, scale, 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> 64


def _probably_prime(n: int) -> bool:
    """Miller-Rabin with four prime bases: a composite passes with probability below 4**-4,
    and the construction test already pins every bit of the constants."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _fixed(data: bytes) -> RandomSource:
    """A random source that returns ``data`` (for known-answer tests)."""

    def source(n: int) -> bytes:
        assert n == len(data)
        return data

    return source


@pytest.mark.parametrize("group", FFDHE)
def test_rfc7919_prime_shape(group: DhGroup) -> None:
    """Each prime has its nominal bit length and 64 one-bits at the top and the bottom."""
    p = group.prime
    assert p is not None
    bits = int(group.value.removeprefix("ffdhe"))
    assert p.bit_length() == bits == group.bits
    assert p >> (bits - 64) == (1 << 64) - 1
    assert p & ((1 << 64) - 1) == (1 << 64) - 1
    assert group.generator == 2
    assert group.public_size == bits // 8


@pytest.mark.parametrize("group", FFDHE)
def test_rfc7919_prime_matches_construction(group: DhGroup) -> None:
    """p = 2^b - 2^(b-64) + (floor(2^(b-130) e) + X) 2^64 - 1, RFC 7919 appendix A."""
    b = group.bits
    expected = (
        (1 << b)
        - (1 << (b - 64))
        + (_floor_e_times_2_to(b - 130) + RFC7919_X[group]) * (1 << 64)
        - 1
    )
    assert group.prime == expected


@pytest.mark.parametrize("group", FFDHE)
def test_rfc7919_prime_is_safe_and_2_generates_the_q_subgroup(group: DhGroup) -> None:
    """p and q = (p-1)/2 are (probable) primes, and 2 has order q."""
    p = group.prime
    assert p is not None
    q = (p - 1) // 2
    assert _probably_prime(p)
    assert _probably_prime(q)
    assert pow(2, q, p) == 1


def test_x25519_rfc7748_vector() -> None:
    """X25519 key pairs reproduce the RFC 7748 section 6.1 example."""
    alice = DhKeyPair.generate(DhGroup.X25519, _fixed(ALICE_PRIVATE))
    bob = DhKeyPair.generate(DhGroup.X25519, _fixed(BOB_PRIVATE))
    assert alice.public_bytes() == ALICE_PUBLIC
    assert bob.public_bytes() == BOB_PUBLIC
    assert alice.exchange(BOB_PUBLIC) == SHARED
    assert bob.exchange(ALICE_PUBLIC) == SHARED


def test_x25519_agreement_is_deterministic_with_seeded_random() -> None:
    """Two parties agree; the same seeds give the same public values."""
    cn = DhKeyPair.generate(DhGroup.X25519, SeededRandom("cn"))
    mn = DhKeyPair.generate(DhGroup.X25519, SeededRandom("mn"))
    assert cn.exchange(mn.public_bytes()) == mn.exchange(cn.public_bytes())
    assert len(cn.public_bytes()) == 32
    assert (
        cn.public_bytes() == DhKeyPair.generate(DhGroup.X25519, SeededRandom("cn")).public_bytes()
    )


@pytest.mark.parametrize("peer", [bytes(32), b"\x01" + bytes(31)])
def test_x25519_small_order_peer_refused(peer: bytes) -> None:
    """An all-zero or small-order peer value (all-zero shared secret) is refused."""
    mine = DhKeyPair.generate(DhGroup.X25519, SeededRandom(1))
    with pytest.raises(KeyFormatError, match="small order"):
        mine.exchange(peer)


def test_x25519_wrong_length_refused() -> None:
    """A 31- or 33-byte X25519 value is refused."""
    mine = DhKeyPair.generate(DhGroup.X25519, SeededRandom(1))
    for size in (31, 33):
        with pytest.raises(KeyFormatError, match=f"got {size}"):
            mine.exchange(b"\x09" * size)


def test_ffdhe2048_agreement() -> None:
    """Two ffdhe2048 parties agree on a 256-byte secret; public values are 256 bytes."""
    cn = DhKeyPair.generate(DhGroup.FFDHE2048, SeededRandom("cn"))
    mn = DhKeyPair.generate(DhGroup.FFDHE2048, SeededRandom("mn"))
    assert len(cn.public_bytes()) == 256
    shared = cn.exchange(mn.public_bytes())
    assert shared == mn.exchange(cn.public_bytes())
    assert len(shared) == 256


def test_ffdhe_out_of_range_public_refused() -> None:
    """Y must be in [2, p-2] (RFC 7919 section 5.1) and exactly len(p) bytes."""
    group = DhGroup.FFDHE2048
    p = group.prime
    assert p is not None
    mine = DhKeyPair.generate(group, SeededRandom(1))
    for y in (0, 1, p - 1, p, (1 << 2048) - 1):
        with pytest.raises(KeyFormatError, match=r"outside \[2, p-2\]"):
            mine.exchange(y.to_bytes(256, "big"))
    with pytest.raises(KeyFormatError, match="expected 256 bytes"):
        mine.exchange((2).to_bytes(255, "big"))
    mine.exchange((2).to_bytes(256, "big"))


@pytest.mark.parametrize("group", [DhGroup.X25519, *FFDHE])
def test_params_round_trip(group: DhGroup) -> None:
    """A group's (P, g) fields name the same group again; X25519's are empty."""
    p, g = group.params()
    assert group_from_params(p, g) is group
    if group is DhGroup.X25519:
        assert (p, g) == (b"", b"")
    else:
        assert g == b"\x02"


def test_drafts_48_bit_group_refused() -> None:
    """The draft's 48-bit values are refused with their size in the message."""
    p = (0xFFFFFFFFFFC5).to_bytes(6, "big")
    with pytest.raises(UnsupportedAlgorithmError, match="group of 48 bits refused"):
        group_from_params(p, b"\x02")


def test_unnamed_2048_bit_group_refused() -> None:
    """A 2048-bit prime that is not RFC 7919's is refused: only named groups are accepted."""
    p, g = DhGroup.FFDHE2048.params()
    other = (int.from_bytes(p, "big") - 2).to_bytes(256, "big")
    with pytest.raises(UnsupportedAlgorithmError, match=r"2048 bits refused.*ffdhe2048"):
        group_from_params(other, g)


def test_named_prime_with_other_generator_refused() -> None:
    """The right prime with g = 5 (or g missing) is refused."""
    p, _ = DhGroup.FFDHE3072.params()
    with pytest.raises(UnsupportedAlgorithmError, match="generator 5"):
        group_from_params(p, b"\x05")
    with pytest.raises(UnsupportedAlgorithmError, match="generator 0"):
        group_from_params(p, b"")


def test_leading_zero_prime_encoding_still_recognised() -> None:
    """P is compared by value, so a left-padded encoding names the same group."""
    p, g = DhGroup.FFDHE2048.params()
    assert group_from_params(b"\x00" + p, g) is DhGroup.FFDHE2048


def test_data_keys_agree_and_follow_the_documented_hkdf() -> None:
    """Both ends derive the same keys: HKDF-SHA256(salt=SPI, info=label || transcript)."""
    cn = DhKeyPair.generate(DhGroup.X25519, SeededRandom("cn"))
    mn = DhKeyPair.generate(DhGroup.X25519, SeededRandom("mn"))
    transcript = data_key_transcript(1, 2, 3, cn.public_bytes(), mn.public_bytes())
    assert transcript[:20] == bytes.fromhex("0000000000000001000000000000000200000003")
    spi = (300).to_bytes(4, "big")
    at_cn = derive_data_keys(cn.exchange(mn.public_bytes()), transcript, salt=spi)
    at_mn = derive_data_keys(mn.exchange(cn.public_bytes()), transcript, salt=spi)
    assert at_cn == at_mn
    okm = HKDF(hashes.SHA256(), 64, spi, b"MVPN-00 data keys" + transcript).derive(
        cn.exchange(mn.public_bytes())
    )
    assert (at_cn.mn_to_cn, at_cn.cn_to_mn) == (okm[:32], okm[32:])
    assert at_cn.mn_to_cn != at_cn.cn_to_mn


def test_data_keys_depend_on_transcript_and_salt() -> None:
    """Another transcript or another SPI gives unrelated keys."""
    shared = SeededRandom("shared")(32)
    base = derive_data_keys(shared, b"t", salt=b"\x00\x00\x01\x00")
    assert derive_data_keys(shared, b"u", salt=b"\x00\x00\x01\x00") != base
    assert derive_data_keys(shared, b"t", salt=b"\x00\x00\x01\x01") != base


def test_data_keys_refuse_all_zero_secret() -> None:
    """An empty or all-zero shared secret never becomes a key."""
    for shared in (b"", bytes(32)):
        with pytest.raises(KeyFormatError, match="all zero"):
            derive_data_keys(shared, b"t")


def test_key_pair_refuses_mismatched_construction() -> None:
    """A key pair cannot be built with the wrong kind of private key for its group."""
    with pytest.raises(ValueError, match="ffdhe2048"):
        DhKeyPair(DhGroup.FFDHE2048)
    with pytest.raises(ValueError, match="x25519"):
        DhKeyPair(DhGroup.X25519, exponent=5)
