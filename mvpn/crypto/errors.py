"""Exceptions of the cryptographic layer."""

from __future__ import annotations


class CryptoError(Exception):
    """A cryptographic check failed or an operation was refused. The message says why."""


class VerificationError(CryptoError):
    """A signature or an authenticator did not verify."""


class DecryptionError(CryptoError):
    """A sealed or encrypted blob could not be opened (wrong key, wrong recipient, tampered)."""


class UnsupportedAlgorithmError(CryptoError):
    """A peer asked for an algorithm mvpn refuses (broken) or does not implement."""


class KeyFormatError(CryptoError):
    """Key bytes of the wrong length or form."""
