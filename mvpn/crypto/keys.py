"""A node's key pair under the default suite: Ed25519 to sign, X25519 to be sealed to.

The draft's ``Ku_X`` ("public key of X") is :class:`PublicKeys`; its ``Kr_X`` is
:class:`PrivateKeys`. On the wire (and in the certificate extension, see docs/pki.md) the
public half is 64 bytes: the raw Ed25519 key followed by the raw X25519 key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from mvpn.crypto.errors import KeyFormatError
from mvpn.crypto.random import RandomSource, system_random

RAW_KEY_SIZE = 32
PUBLIC_KEYS_SIZE = 2 * RAW_KEY_SIZE

_RAW_ENC = serialization.Encoding.Raw
_RAW_FMT = serialization.PublicFormat.Raw


@dataclass(frozen=True)
class PublicKeys:
    """A node's public keys: ``signing`` verifies its signatures, ``kem`` seals to it."""

    signing: ed25519.Ed25519PublicKey
    kem: x25519.X25519PublicKey

    def to_bytes(self) -> bytes:
        """64 bytes: raw Ed25519 public key, then raw X25519 public key."""
        return self.signing.public_bytes(_RAW_ENC, _RAW_FMT) + self.kem.public_bytes(
            _RAW_ENC, _RAW_FMT
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKeys:
        """Parse the 64-byte form; :class:`KeyFormatError` on anything else."""
        if len(data) != PUBLIC_KEYS_SIZE:
            raise KeyFormatError(
                f"public keys: expected {PUBLIC_KEYS_SIZE} bytes, got {len(data)}"
            )
        try:
            signing = ed25519.Ed25519PublicKey.from_public_bytes(data[:RAW_KEY_SIZE])
            kem = x25519.X25519PublicKey.from_public_bytes(data[RAW_KEY_SIZE:])
        except ValueError as e:
            raise KeyFormatError(f"public keys: {e}") from e
        return cls(signing, kem)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKeys) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"<PublicKeys {self.to_bytes()[:6].hex()}…>"


@dataclass(frozen=True, repr=False)
class PrivateKeys:
    """A node's private keys. Never logged: the ``repr`` shows only the public half."""

    signing: ed25519.Ed25519PrivateKey
    kem: x25519.X25519PrivateKey

    @classmethod
    def generate(cls, random: RandomSource = system_random) -> PrivateKeys:
        """Fresh keys from ``random`` (64 bytes drawn)."""
        return cls.from_seed(random(PUBLIC_KEYS_SIZE))

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKeys:
        """Keys from 64 secret bytes: the raw Ed25519 then the raw X25519 private key."""
        if len(seed) != PUBLIC_KEYS_SIZE:
            raise KeyFormatError(
                f"private keys: expected {PUBLIC_KEYS_SIZE} bytes, got {len(seed)}"
            )
        return cls(
            ed25519.Ed25519PrivateKey.from_private_bytes(seed[:RAW_KEY_SIZE]),
            x25519.X25519PrivateKey.from_private_bytes(seed[RAW_KEY_SIZE:]),
        )

    @property
    def public(self) -> PublicKeys:
        """The matching :class:`PublicKeys`."""
        return PublicKeys(self.signing.public_key(), self.kem.public_key())

    def __repr__(self) -> str:
        return f"<PrivateKeys for {self.public!r}>"
