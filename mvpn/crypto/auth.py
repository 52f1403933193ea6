"""Authenticators: the registration authentication extensions and the data-flow hop tag.

Registration messages (RFC 5944 section 3.5.1) carry an authenticator computed over the
message, all prior extensions and the Type, Length and SPI of the authentication extension.
RFC 5944's default algorithm is HMAC-MD5 (RFC 2104); mvpn uses it only for plain RFC 5944
mobile nodes that speak no MVPN. MVPN security associations (the first-contact SPI and every
registration SA) use HMAC-SHA256 with its full 32-byte output (docs/protocol.md 3.2).

The SPI names the security association; the algorithm belongs to the association, not to the
SPI's value. RFC 5944 section 1.6 reserves SPIs 0 to 255; mvpn gives 256 to the first contact
(the key is inside the Mobile Information extension) and 257 upwards to registration SAs.

Data packets (draft 3.5.1, docs/protocol.md 8.1) end with a hop authenticator:
HMAC-SHA256 truncated to 16 bytes (Auth Sec Par 5, ``HMAC_SHA256_128``), recomputed by each
agent. :class:`HopAuthenticator` keeps the keyed HMAC state so that each packet costs only
the hashing of its own bytes.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from mvpn.crypto.errors import KeyFormatError, VerificationError
from mvpn.wire.codes import AuthSecPar

__all__ = [
    "FIRST_CONTACT_SPI",
    "FIRST_REGISTRATION_SA_SPI",
    "HOP_TAG_SIZE",
    "MAX_SPI",
    "RESERVED_SPI_MAX",
    "AuthenticatorAlgorithm",
    "HopAuthenticator",
    "check_authenticator",
    "compute_authenticator",
    "hmac_md5_authenticator",
    "hmac_sha256_128",
    "hmac_sha256_authenticator",
    "spi_is_reserved",
]

RESERVED_SPI_MAX = 255
"""SPIs 0 to 255 are reserved by RFC 5944 section 1.6; no security association uses them."""

FIRST_CONTACT_SPI = 256
"""The MN-HA SPI of a first contact: "the key is the MN Auth Key in extension 36"
(docs/protocol.md 2)."""

FIRST_REGISTRATION_SA_SPI = 257
"""The lowest SPI the HA assigns to a registration security association."""

MAX_SPI = 0xFFFFFFFF
"""SPIs are 32 bits (RFC 5944 section 3.5.1)."""

HOP_TAG_SIZE = 16
"""The hop authenticator of a data packet: HMAC-SHA256 truncated to 128 bits."""

MIN_KEY_SIZE = 16
"""Shorter HMAC keys are refused: RFC 2104 section 3 recommends at least the output length of
the hash; 16 bytes is the floor RFC 5944 section 3.5.1 gives for its HMAC-MD5 default."""


class AuthenticatorAlgorithm(enum.IntEnum):
    """The algorithm of a registration authentication extension (32, 33, 34).

    The values are mvpn's own configuration numbers: the wire carries only the SPI, and the
    security association named by the SPI holds the algorithm.
    """

    HMAC_MD5 = 1
    HMAC_SHA256 = 2

    @property
    def size(self) -> int:
        """Authenticator length in bytes: 16 for HMAC-MD5, 32 for HMAC-SHA256."""
        return _SIZES[self]


_SIZES = {AuthenticatorAlgorithm.HMAC_MD5: 16, AuthenticatorAlgorithm.HMAC_SHA256: 32}


def spi_is_reserved(spi: int) -> bool:
    """True for the SPIs RFC 5944 reserves (0 to 255), which no association may use."""
    return 0 <= spi <= RESERVED_SPI_MAX


def _check_key(key: bytes, what: str) -> None:
    if len(key) < MIN_KEY_SIZE:
        raise KeyFormatError(f"{what} key: expected at least {MIN_KEY_SIZE} bytes, got {len(key)}")


def hmac_md5_authenticator(key: bytes, protected: bytes) -> bytes:
    """RFC 5944 section 3.5.1's default: HMAC-MD5 (RFC 2104) of ``protected``, 16 bytes.

    Only for plain RFC 5944 mobile nodes; MVPN associations use HMAC-SHA256.
    """
    return hmac.digest(key, protected, hashlib.md5)


def hmac_sha256_authenticator(key: bytes, protected: bytes) -> bytes:
    """mvpn's registration authenticator: HMAC-SHA256 of ``protected``, 32 bytes."""
    return hmac.digest(key, protected, hashlib.sha256)


def hmac_sha256_128(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 truncated to 16 bytes: the Hello value, the Communication Reply and Key
    Transfer acknowledgement tags (docs/protocol.md 7.3, 7.5, 7.6)."""
    return hmac.digest(key, data, hashlib.sha256)[:HOP_TAG_SIZE]


def compute_authenticator(
    algorithm: AuthenticatorAlgorithm, key: bytes, protected: bytes
) -> bytes:
    """The authenticator of ``protected`` under ``algorithm``."""
    if algorithm is AuthenticatorAlgorithm.HMAC_MD5:
        return hmac_md5_authenticator(key, protected)
    if algorithm is AuthenticatorAlgorithm.HMAC_SHA256:
        return hmac_sha256_authenticator(key, protected)
    raise ValueError(f"unknown authenticator algorithm {algorithm!r}")


def check_authenticator(
    algorithm: AuthenticatorAlgorithm, key: bytes, protected: bytes, authenticator: bytes
) -> None:
    """Recompute and compare in constant time; :class:`VerificationError` on a mismatch.

    A wrong length fails the same way (after the computation, so timing does not tell a
    short authenticator from a wrong one).
    """
    expected = compute_authenticator(algorithm, key, protected)
    if not hmac.compare_digest(expected, authenticator):
        raise VerificationError(f"{algorithm.name} authenticator does not verify")


class HopAuthenticator:
    """The hop authenticator of data packets (Auth Sec Par 5, ``HMAC_SHA256_128``).

    Built once per data security association; the keyed HMAC state (the key already hashed
    into the inner and outer pads) is copied per packet instead of re-derived.
    """

    algorithm = AuthSecPar.HMAC_SHA256_128

    def __init__(self, key: bytes) -> None:
        _check_key(key, "data authentication")
        self._base = hmac.HMAC(key, digestmod=hashlib.sha256)

    def tag(self, data: bytes) -> bytes:
        """The 16-byte tag of ``data``."""
        h = self._base.copy()
        h.update(data)
        return h.digest()[:HOP_TAG_SIZE]

    def check(self, data: bytes, tag: bytes) -> None:
        """:class:`VerificationError` unless ``tag`` is the tag of ``data`` (constant time)."""
        if not hmac.compare_digest(self.tag(data), tag):
            raise VerificationError("data packet hop authenticator does not verify")

    def __repr__(self) -> str:
        return f"<HopAuthenticator {self.algorithm.name}>"
