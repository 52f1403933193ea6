"""The CN-MN Diffie-Hellman exchange and the data encryption keys (draft 3.4, 3.5; docs
protocol.md 7.1 and 11).

The draft's Diffie-Hellman uses 48-bit P and g values, which anyone can break. mvpn's default
is X25519 (RFC 7748): the P and g fields stay empty and Y is 32 bytes. A peer may name an
explicit group only if it is one of the RFC 7919 named groups ffdhe2048, ffdhe3072 or
ffdhe4096, recognised by its exact prime and g = 2; anything else is refused with
:class:`~mvpn.crypto.errors.UnsupportedAlgorithmError`.

The finite-field arithmetic is Python's own modular exponentiation: cryptography 50 deprecates
its FFDH support (``CryptographyDeprecationWarning``, removal announced), and these groups are
here only for peers that insist on them. Each private exponent is used for one exchange, which
limits what timing can reveal about it. X25519 stays on the cryptography library.

The shared secret becomes two 32-byte keys with HKDF-SHA256 (RFC 5869):
``HKDF(salt = SPI (32 bits), ikm = shared secret, info = "MVPN-00 data keys" || transcript)``,
64 bytes; the first 32 are the MN -> CN key, the last 32 the CN -> MN key.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mvpn.crypto.errors import KeyFormatError, UnsupportedAlgorithmError
from mvpn.crypto.random import RandomSource, system_random

__all__ = [
    "DATA_KEYS_INFO",
    "FFDHE_EXPONENT_BYTES",
    "X25519_SIZE",
    "DataKeys",
    "DhGroup",
    "DhKeyPair",
    "data_key_transcript",
    "derive_data_keys",
    "group_from_params",
]

X25519_SIZE = 32
"""An X25519 public value, private scalar and shared secret are 32 bytes (RFC 7748)."""

FFDHE_EXPONENT_BYTES = 64
"""Private exponents are 512 bits, above the 2x-security-strength sizes RFC 7919 section 5.2
asks of every named group up to ffdhe8192."""

DATA_KEYS_INFO = b"MVPN-00 data keys"
"""The fixed start of the HKDF info of :func:`derive_data_keys`."""

_GENERATOR = 2

# RFC 7919 appendix A. Each prime is 2^b - 2^(b-64) + (floor(2^(b-130) e) + X) 2^64 - 1 with
# the group's X; tests/crypto/test_dh.py recomputes them from that formula.
_FFDHE2048_HEX = (
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695"
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A"
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A"
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4"
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005"
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B423861285C97FFFFFFFFFFFFFFFF"
)

_FFDHE3072_HEX = (
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695"
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A"
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A"
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4"
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005"
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B"
    "BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C"
    "AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF"
    "5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E"
    "0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B66C62E37FFFFFFFFFFFFFFFF"
)

_FFDHE4096_HEX = (
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695"
    "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A"
    "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A"
    "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4"
    "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005"
    "C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B"
    "BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C"
    "AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF"
    "5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E"
    "0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB"
    "7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A"
    "7135C886EFB4318AED6A1E012D9E6832A907600A918130C46DC778F971AD0038"
    "092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF"
    "8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E655F6AFFFFFFFFFFFFFFFF"
)


class DhGroup(enum.Enum):
    """The Diffie-Hellman groups mvpn accepts: X25519 (the default) and three RFC 7919 groups."""

    X25519 = "x25519"
    FFDHE2048 = "ffdhe2048"
    FFDHE3072 = "ffdhe3072"
    FFDHE4096 = "ffdhe4096"

    @property
    def prime(self) -> int | None:
        """The group's prime P; ``None`` for X25519."""
        return _PRIMES.get(self)

    @property
    def generator(self) -> int | None:
        """The generator g (2 for every RFC 7919 group); ``None`` for X25519."""
        return None if self is DhGroup.X25519 else _GENERATOR

    @property
    def bits(self) -> int:
        """The size of the group: 255 for X25519, the prime's bit length otherwise."""
        p = self.prime
        return 255 if p is None else p.bit_length()

    @property
    def public_size(self) -> int:
        """Bytes of a public value Y (and of the shared secret): 32, or the prime's length."""
        p = self.prime
        return X25519_SIZE if p is None else (p.bit_length() + 7) // 8

    def params(self) -> tuple[bytes, bytes]:
        """The wire's ``(P, g)`` fields: both empty for X25519, else the prime and ``0x02``."""
        p = self.prime
        if p is None:
            return b"", b""
        return p.to_bytes(self.public_size, "big"), bytes([_GENERATOR])


_PRIMES: dict[DhGroup, int] = {
    DhGroup.FFDHE2048: int(_FFDHE2048_HEX, 16),
    DhGroup.FFDHE3072: int(_FFDHE3072_HEX, 16),
    DhGroup.FFDHE4096: int(_FFDHE4096_HEX, 16),
}
_BY_PRIME = {p: g for g, p in _PRIMES.items()}
_ACCEPTED = "only X25519 (P and g empty) and the RFC 7919 groups ffdhe2048, ffdhe3072, ffdhe4096"


def group_from_params(p: bytes, g: bytes) -> DhGroup:
    """The group named by a message's P and g fields, or
    :class:`~mvpn.crypto.errors.UnsupportedAlgorithmError` saying why it is refused."""
    if not p and not g:
        return DhGroup.X25519
    prime = int.from_bytes(p, "big")
    generator = int.from_bytes(g, "big")
    group = _BY_PRIME.get(prime)
    if group is None:
        raise UnsupportedAlgorithmError(
            f"Diffie-Hellman group of {prime.bit_length()} bits refused; {_ACCEPTED} are accepted"
        )
    if generator != _GENERATOR:
        raise UnsupportedAlgorithmError(
            f"Diffie-Hellman group {group.value} with generator {generator} refused; "
            f"RFC 7919 groups use g = {_GENERATOR}"
        )
    return group


class DhKeyPair:
    """One side's ephemeral Diffie-Hellman key. The private half never appears in a repr."""

    __slots__ = ("_exponent", "_x25519", "group")

    def __init__(
        self,
        group: DhGroup,
        *,
        x25519_key: x25519.X25519PrivateKey | None = None,
        exponent: int | None = None,
    ) -> None:
        if (x25519_key is None) == (exponent is None) or (
            (group is DhGroup.X25519) != (x25519_key is not None)
        ):
            raise ValueError(f"a {group.value} key pair needs exactly its own kind of key")
        self.group = group
        self._x25519 = x25519_key
        self._exponent = exponent

    @classmethod
    def generate(cls, group: DhGroup, random: RandomSource = system_random) -> DhKeyPair:
        """A fresh key pair in ``group`` from ``random``."""
        if group is DhGroup.X25519:
            return cls(
                group, x25519_key=x25519.X25519PrivateKey.from_private_bytes(random(X25519_SIZE))
            )
        # At least 2 (RFC 7919 section 5.2 wants x in [2, q-1]); 512 bits is far below q.
        exponent = max(2, int.from_bytes(random(FFDHE_EXPONENT_BYTES), "big"))
        return cls(group, exponent=exponent)

    def public_bytes(self) -> bytes:
        """Y for the wire: 32 bytes for X25519, ``g^x mod p`` in the prime's length otherwise."""
        if self._x25519 is not None:
            return self._x25519.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        p, x = self._prime_and_exponent()
        return pow(_GENERATOR, x, p).to_bytes(self.group.public_size, "big")

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret with the peer whose Y is ``peer_public``.

        :class:`~mvpn.crypto.errors.KeyFormatError` for a Y of the wrong length, a finite-field
        Y outside ``[2, p-2]`` (RFC 7919 section 5.1) or an X25519 Y of small order (the
        all-zero result RFC 7748 section 6.1 tells us to refuse).
        """
        size = self.group.public_size
        if len(peer_public) != size:
            raise KeyFormatError(
                f"{self.group.value} public value: expected {size} bytes, got {len(peer_public)}"
            )
        if self._x25519 is not None:
            try:
                peer = x25519.X25519PublicKey.from_public_bytes(peer_public)
                return self._x25519.exchange(peer)
            except ValueError:
                # cryptography refuses the all-zero shared secret of a small-order point.
                raise KeyFormatError(
                    "x25519 public value of small order refused (all-zero shared secret)"
                ) from None
        p, x = self._prime_and_exponent()
        y = int.from_bytes(peer_public, "big")
        if not 1 < y < p - 1:
            raise KeyFormatError(f"{self.group.value} public value outside [2, p-2] refused")
        return pow(y, x, p).to_bytes(size, "big")

    def _prime_and_exponent(self) -> tuple[int, int]:
        p = self.group.prime
        if p is None or self._exponent is None:
            raise ValueError(f"{self.group.value} key pair has no finite-field exponent")
        return p, self._exponent

    def __repr__(self) -> str:
        return f"<DhKeyPair {self.group.value}>"


@dataclass(frozen=True, repr=False)
class DataKeys:
    """The two end-to-end data keys of a CN-MN session (docs/protocol.md 11)."""

    mn_to_cn: bytes = field(repr=False)
    cn_to_mn: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "<DataKeys mn_to_cn, cn_to_mn (32 bytes each)>"


_TRANSCRIPT_HEAD = struct.Struct("!QQI")


def data_key_transcript(cn_id: int, mn_id: int, cn_nonce: int, y_cn: bytes, y_mn: bytes) -> bytes:
    """The transcript docs/protocol.md 11 derives the data keys from:
    ``CN ID (64) || MN ID (64) || CN Nonce (32) || Ycn || Ymn``.

    Both Y values have the group's fixed length, so plain concatenation is unambiguous.
    """
    if len(y_cn) != len(y_mn):
        raise ValueError(f"Y values of different lengths: {len(y_cn)} and {len(y_mn)}")
    return _TRANSCRIPT_HEAD.pack(cn_id, mn_id, cn_nonce) + y_cn + y_mn


def derive_data_keys(shared: bytes, transcript: bytes, *, salt: bytes = b"") -> DataKeys:
    """HKDF-SHA256 of the shared secret into :class:`DataKeys`.

    ``info = "MVPN-00 data keys" || transcript``; ``salt`` is the session's SPI (4 bytes) in
    mvpn (docs/protocol.md 11). Distinct transcripts give unrelated keys.
    """
    if not shared or not any(shared):
        raise KeyFormatError("Diffie-Hellman shared secret is empty or all zero")
    okm = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=salt or None, info=DATA_KEYS_INFO + transcript
    ).derive(shared)
    return DataKeys(okm[:32], okm[32:])
