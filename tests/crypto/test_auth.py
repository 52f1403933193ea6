"""Registration authenticators (RFC 5944 3.5.1) and the data-flow hop authenticator."""

from __future__ import annotations

import pytest

from mvpn.crypto.auth import (
    FIRST_CONTACT_SPI,
    FIRST_REGISTRATION_SA_SPI,
    HOP_TAG_SIZE,
    AuthenticatorAlgorithm,
    HopAuthenticator,
    check_authenticator,
    compute_authenticator,
    hmac_md5_authenticator,
    hmac_sha256_128,
    hmac_sha256_authenticator,
    spi_is_reserved,
)
from mvpn.crypto.errors import KeyFormatError, VerificationError
from mvpn.wire.codes import AuthSecPar

_KEY_25 = bytes(range(1, 26))

# RFC 2202 section 2: HMAC-MD5 test cases 1-7 (cases 1-3 are also RFC 2104's appendix).
RFC2202_MD5 = [
    (b"\x0b" * 16, b"Hi There", "9294727a3638bb1c13f48ef8158bfc9d"),
    (b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
    (b"\xaa" * 16, b"\xdd" * 50, "56be34521d144c88dbb8c733f0e8b3f6"),
    (_KEY_25, b"\xcd" * 50, "697eaf0aca3a3aea3a75164746ffaa79"),
    (b"\x0c" * 16, b"Test With Truncation", "56461ef2342edc00f9bab995690efd4c"),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd",
    ),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
        "6f630fad67cda0ee1fb1f562db3aa53e",
    ),
]

# RFC 4231 section 4: HMAC-SHA-256 test cases 1-4, 6, 7 (case 5 is the truncated one below).
RFC4231_SHA256 = [
    (
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    ),
    (
        _KEY_25,
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data."
        b" The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]

# RFC 4231 test case 5: output truncated to 128 bits, exactly the hop tag's truncation.
RFC4231_CASE5 = (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b")


@pytest.mark.parametrize(("key", "data", "digest"), RFC2202_MD5)
def test_hmac_md5_rfc2202_vectors(key: bytes, data: bytes, digest: str) -> None:
    """HMAC-MD5 (RFC 5944's default authenticator) matches RFC 2202's test cases."""
    assert hmac_md5_authenticator(key, data).hex() == digest


@pytest.mark.parametrize(("key", "data", "digest"), RFC4231_SHA256)
def test_hmac_sha256_rfc4231_vectors(key: bytes, data: bytes, digest: str) -> None:
    """mvpn's registration authenticator is HMAC-SHA256 and matches RFC 4231."""
    assert hmac_sha256_authenticator(key, data).hex() == digest


def test_truncated_hmac_rfc4231_case5() -> None:
    """The 128-bit truncation matches RFC 4231 test case 5, for both helpers."""
    key, data, digest = RFC4231_CASE5
    assert hmac_sha256_128(key, data).hex() == digest
    assert HopAuthenticator(key).tag(data).hex() == digest


@pytest.mark.parametrize("algorithm", list(AuthenticatorAlgorithm))
def test_algorithm_size_matches_output(algorithm: AuthenticatorAlgorithm) -> None:
    """AuthenticatorAlgorithm.size is the length the algorithm really produces."""
    assert len(compute_authenticator(algorithm, b"k" * 16, b"data")) == algorithm.size


@pytest.mark.parametrize("algorithm", list(AuthenticatorAlgorithm))
def test_check_authenticator_accepts_and_refuses(algorithm: AuthenticatorAlgorithm) -> None:
    """The right authenticator passes; another key, other data or a truncation fail."""
    key, protected = b"k" * 32, b"registration request bytes"
    good = compute_authenticator(algorithm, key, protected)
    check_authenticator(algorithm, key, protected, good)
    with pytest.raises(VerificationError, match=algorithm.name):
        check_authenticator(algorithm, b"K" * 32, protected, good)
    with pytest.raises(VerificationError):
        check_authenticator(algorithm, key, protected + b"!", good)
    with pytest.raises(VerificationError):
        check_authenticator(algorithm, key, protected, good[:-1])


def test_check_authenticator_does_not_mix_algorithms() -> None:
    """An HMAC-MD5 authenticator is not accepted where HMAC-SHA256 is expected."""
    md5 = hmac_md5_authenticator(b"k" * 16, b"m")
    with pytest.raises(VerificationError):
        check_authenticator(AuthenticatorAlgorithm.HMAC_SHA256, b"k" * 16, b"m", md5)


def test_spi_conventions() -> None:
    """0-255 are RFC 5944's reserved SPIs; 256 is first contact; SAs start at 257."""
    assert spi_is_reserved(0)
    assert spi_is_reserved(255)
    assert not spi_is_reserved(FIRST_CONTACT_SPI)
    assert FIRST_CONTACT_SPI == 256
    assert FIRST_REGISTRATION_SA_SPI == 257


def test_hop_authenticator_tag_and_check() -> None:
    """tag() gives 16 bytes that check() accepts; a flipped bit or other data fail."""
    hop = HopAuthenticator(b"d" * 32)
    tag = hop.tag(b"packet")
    assert len(tag) == HOP_TAG_SIZE
    assert hop.algorithm is AuthSecPar.HMAC_SHA256_128
    hop.check(b"packet", tag)
    with pytest.raises(VerificationError, match="hop authenticator"):
        hop.check(b"packet", bytes([tag[0] ^ 1]) + tag[1:])
    with pytest.raises(VerificationError):
        hop.check(b"packer", tag)
    with pytest.raises(VerificationError):
        hop.check(b"packet", tag[:8])


def test_hop_authenticator_state_is_not_polluted_by_earlier_packets() -> None:
    """The reused HMAC state is copied: a tag never depends on the packets before it."""
    hop = HopAuthenticator(b"d" * 32)
    for i in range(5):
        hop.tag(bytes([i]) * 100)
    assert hop.tag(b"x") == HopAuthenticator(b"d" * 32).tag(b"x")
    assert hop.tag(b"x") == hmac_sha256_128(b"d" * 32, b"x")


def test_hop_authenticator_refuses_short_key() -> None:
    """A data authentication key shorter than 16 bytes is refused."""
    with pytest.raises(KeyFormatError, match="at least 16 bytes, got 15"):
        HopAuthenticator(b"k" * 15)
