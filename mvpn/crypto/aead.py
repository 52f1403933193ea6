"""Symmetric encryption: the end-to-end data flow and the symmetric seal.

**Data flow** (draft 3.5.1, docs/protocol.md 8.1). The MN and the CN encrypt the inner packet
with the key of its direction (from the Diffie-Hellman exchange, :mod:`mvpn.crypto.dh`) under
AES-256-GCM (Encr Sec Par 6) or ChaCha20-Poly1305 (Encr Sec Par 7). The 96-bit nonce is four
zero bytes followed by the packet's 64-bit Sequence Number: keys are per direction and a
sender never reuses a sequence number under one key, so (key, nonce) never repeats. The
additional data is the packet header without its Hop byte (the caller builds it,
``mvpn.wire.data.additional_data``).

**Symmetric seal** (docs/protocol.md section 1; used by the key refresh, 6.2, and the key
transfer, 7.6). AES-256-GCM with a random 12-byte nonce:
``nonce (12) || ciphertext || tag (16)``; the additional data is
``"MVPN-00 symmetric " || label || 0x00 || aad``, so a blob made for one use never opens as
another. A key seals at most a handful of messages in its lifetime (one per refresh or
handover), far below the 2**32 random-nonce limit of NIST SP 800-38D section 8.3.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from mvpn.crypto.errors import DecryptionError, KeyFormatError
from mvpn.crypto.negotiation import check_encr_code
from mvpn.crypto.random import RandomSource, system_random
from mvpn.wire.codes import EncrSecPar

__all__ = [
    "AEAD_TAG_SIZE",
    "DATA_KEY_SIZE",
    "MAX_SEQUENCE",
    "NONCE_SIZE",
    "SYMMETRIC_OVERHEAD",
    "DataCipher",
    "data_nonce",
    "open_symmetric",
    "seal_symmetric",
]

DATA_KEY_SIZE = 32
"""Every data-flow and symmetric-seal key is 256 bits."""

NONCE_SIZE = 12
"""Both AEADs take 96-bit nonces."""

AEAD_TAG_SIZE = 16
"""Both AEADs append a 128-bit tag."""

SYMMETRIC_OVERHEAD = NONCE_SIZE + AEAD_TAG_SIZE
"""Bytes :func:`seal_symmetric` adds to its plaintext."""

MAX_SEQUENCE = (1 << 64) - 1
"""The data packet's Sequence Number is 64 bits."""

_SEQ_NONCE = struct.Struct("!4xQ")
_SYMMETRIC_PREFIX = b"MVPN-00 symmetric "


def data_nonce(sequence: int) -> bytes:
    """The data-flow nonce: ``0x00000000 || Sequence Number (64)``."""
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence number must be in [0, 2**64), got {sequence}")
    return _SEQ_NONCE.pack(sequence)


def _check_key(key: bytes, what: str) -> None:
    if len(key) != DATA_KEY_SIZE:
        raise KeyFormatError(f"{what} key: expected {DATA_KEY_SIZE} bytes, got {len(key)}")


class DataCipher:
    """One direction's end-to-end AEAD of the data flow, keyed once.

    ``algorithm`` is an Encr Sec Par; the draft's broken ciphers and unknown code points are
    refused with :class:`~mvpn.crypto.errors.UnsupportedAlgorithmError` naming them.
    """

    def __init__(self, algorithm: EncrSecPar | int, key: bytes) -> None:
        self.algorithm = check_encr_code(algorithm)
        _check_key(key, f"{self.algorithm.name} data")
        self._aead: AESGCM | ChaCha20Poly1305
        if self.algorithm is EncrSecPar.AES_256_GCM:
            self._aead = AESGCM(key)
        else:
            self._aead = ChaCha20Poly1305(key)

    def encrypt(self, seq: int, aad: bytes, plaintext: bytes) -> bytes:
        """``ciphertext || tag`` of ``plaintext`` for the packet with Sequence Number ``seq``."""
        return self._aead.encrypt(data_nonce(seq), plaintext, aad)

    def decrypt(self, seq: int, aad: bytes, ciphertext: bytes) -> bytes:
        """The plaintext, or :class:`DecryptionError` if anything was changed."""
        if len(ciphertext) < AEAD_TAG_SIZE:
            raise DecryptionError(
                f"{self.algorithm.name} data: expected at least {AEAD_TAG_SIZE} bytes, "
                f"got {len(ciphertext)}"
            )
        try:
            return self._aead.decrypt(data_nonce(seq), ciphertext, aad)
        except InvalidTag:
            raise DecryptionError(
                f"{self.algorithm.name} data packet {seq} does not decrypt"
            ) from None

    def __repr__(self) -> str:
        return f"<DataCipher {self.algorithm.name}>"


def _symmetric_aad(label: str, aad: bytes) -> bytes:
    if not label or not label.isascii() or not label.isprintable():
        raise ValueError(f"label must be non-empty printable ASCII, got {label!r}")
    return _SYMMETRIC_PREFIX + label.encode("ascii") + b"\0" + aad


def seal_symmetric(
    key: bytes,
    label: str,
    plaintext: bytes,
    aad: bytes = b"",
    random: RandomSource = system_random,
) -> bytes:
    """AES-256-GCM under ``key``: ``nonce (12) || ciphertext || tag (16)``.

    ``aad`` is authenticated but not carried; ``label`` names the use.
    """
    _check_key(key, "symmetric seal")
    nonce = random(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"random source returned {len(nonce)} bytes, not {NONCE_SIZE}")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _symmetric_aad(label, aad))


def open_symmetric(key: bytes, label: str, blob: bytes, aad: bytes = b"") -> bytes:
    """Undo :func:`seal_symmetric`; :class:`DecryptionError` on the wrong key, label or
    additional data, a changed blob, or one too short to be a seal."""
    _check_key(key, "symmetric seal")
    if len(blob) < SYMMETRIC_OVERHEAD:
        raise DecryptionError(
            f"{label} blob: expected at least {SYMMETRIC_OVERHEAD} bytes, got {len(blob)}"
        )
    try:
        return AESGCM(key).decrypt(
            blob[:NONCE_SIZE], blob[NONCE_SIZE:], _symmetric_aad(label, aad)
        )
    except InvalidTag:
        raise DecryptionError(
            f"{label} blob does not open (wrong key or label, or tampered)"
        ) from None
