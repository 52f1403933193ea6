"""The draft's public-key notation as named operations (docs/protocol.md section 1).

draft-sanchez-mvpn-00 writes ``E_Kr_X[m]`` ("encrypt with X's private key") and
``E_Ku_X[m]`` ("encrypt with X's public key"). Following the profile, mvpn reads them as:

- ``E_Kr_X[m]``: X signs m with Ed25519 and m travels beside the signature
  (:func:`sign` / :func:`verify`);
- ``E_Ku_X[m]``: m is sealed to X with HPKE base mode (RFC 9180), DHKEM(X25519, HKDF-SHA256),
  HKDF-SHA256, AES-128-GCM (:func:`seal` / :func:`open_sealed`).

Every signature and every seal carries an ASCII *label* naming its use, so a value signed or
sealed for one message never verifies or opens as another. Signatures cover a list of parts,
each prefixed by its 4-byte length, so bytes cannot be moved from one part to its neighbour.
A seal binds the recipient's 64-bit identity twice: in the HPKE ``info`` (the wrong recipient
or label fails the AEAD tag) and as the first 8 bytes of the sealed plaintext (checked again
on opening).

The two nestings the draft uses have helpers:

- ``E_Ku_Y[E_Kr_X[m]]``: :func:`sign_then_seal` / :func:`open_then_verify`; X signs m (with
  the caller's context parts) and ``m || signature`` is sealed to Y. This is mvpn's default
  wherever a value is both signed and sealed: the signature binds the plaintext and stays
  hidden from observers.
- ``E_Kr_X[E_Ku_Y[m]]``: :func:`seal_then_sign` / :func:`verify_then_open`; m is sealed to Y
  and X signs the sealed blob together with the caller's context parts, so a relay that cannot
  open the blob can still check who sent it.

These functions are pure: no logging, no counters, no state. The only randomness they use is
the HPKE ephemeral key, which the cryptography library draws itself.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke

from mvpn.crypto.errors import DecryptionError, VerificationError
from mvpn.crypto.keys import PrivateKeys, PublicKeys

__all__ = [
    "HPKE_ENC_SIZE",
    "HPKE_TAG_SIZE",
    "ID_SIZE",
    "SEAL_OVERHEAD",
    "SIGNATURE_SIZE",
    "open_sealed",
    "open_then_verify",
    "seal",
    "seal_info",
    "seal_then_sign",
    "sign",
    "sign_then_seal",
    "signed_input",
    "verify",
    "verify_then_open",
]

SIGNATURE_SIZE = 64
"""An Ed25519 signature (RFC 8032 section 5.1.6)."""

HPKE_ENC_SIZE = 32
"""The HPKE encapsulated key of DHKEM(X25519, HKDF-SHA256): an X25519 public value."""

HPKE_TAG_SIZE = 16
"""The AES-128-GCM tag ending every HPKE ciphertext."""

ID_SIZE = 8
"""A node identity: 64 bits, carried in its certificate (docs/pki.md)."""

SEAL_OVERHEAD = HPKE_ENC_SIZE + HPKE_TAG_SIZE + ID_SIZE
"""Bytes a seal adds to its plaintext: enc (32), tag (16) and the recipient ID (8)."""

_SIGN_PREFIX = b"MVPN-00 sign "
_SEAL_PREFIX = b"MVPN-00 seal "
_LEN32 = struct.Struct("!I")
_ID = struct.Struct("!Q")
_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)


def _label(label: str) -> bytes:
    """The label's bytes: printable ASCII without NUL, since NUL ends it in the input."""
    if not label or not label.isascii() or not label.isprintable():
        raise ValueError(f"label must be non-empty printable ASCII, got {label!r}")
    return label.encode("ascii")


def _id(node_id: int) -> bytes:
    """A 64-bit node identity in network byte order."""
    if isinstance(node_id, bool) or not isinstance(node_id, int) or not 0 <= node_id < 1 << 64:
        raise ValueError(f"node ID must be an integer in [0, 2**64), got {node_id!r}")
    return _ID.pack(node_id)


def signed_input(label: str, *parts: bytes) -> bytes:
    """What a signature covers (docs/protocol.md section 1)::

    "MVPN-00 sign " || label || 0x00 || len32(p1) || p1 || len32(p2) || p2 || ...
    """
    out = [_SIGN_PREFIX, _label(label), b"\0"]
    for part in parts:
        out.append(_LEN32.pack(len(part)))
        out.append(part)
    return b"".join(out)


def sign(keys: PrivateKeys, label: str, *parts: bytes) -> bytes:
    """``E_Kr_X``: X's 64-byte Ed25519 signature over ``label`` and ``parts``."""
    return keys.signing.sign(signed_input(label, *parts))


def verify(public: PublicKeys, label: str, signature: bytes, *parts: bytes) -> None:
    """Check a :func:`sign` signature; :class:`VerificationError` naming the label if not."""
    if len(signature) != SIGNATURE_SIZE:
        raise VerificationError(
            f"{label} signature: expected {SIGNATURE_SIZE} bytes, got {len(signature)}"
        )
    try:
        public.signing.verify(signature, signed_input(label, *parts))
    except InvalidSignature:
        raise VerificationError(f"{label} signature does not verify") from None


def seal_info(label: str, recipient_id: int) -> bytes:
    """The HPKE ``info`` of a seal: ``"MVPN-00 seal " || label || 0x00 || ID (8 bytes)``."""
    return _SEAL_PREFIX + _label(label) + b"\0" + _id(recipient_id)


def seal(recipient: PublicKeys, recipient_id: int, label: str, plaintext: bytes) -> bytes:
    """``E_Ku_Y``: seal ``plaintext`` to the node ``recipient_id`` whose keys are ``recipient``.

    Output: ``enc (32) || ciphertext of (recipient ID (8) || plaintext) || tag (16)``, that is
    ``len(plaintext) + SEAL_OVERHEAD`` bytes.
    """
    rid = _id(recipient_id)
    return _HPKE.encrypt(rid + plaintext, recipient.kem, info=seal_info(label, recipient_id))


def open_sealed(keys: PrivateKeys, my_id: int, label: str, blob: bytes) -> bytes:
    """Open a :func:`seal` made for ``my_id`` and ``label``; return the plaintext.

    :class:`DecryptionError` when the blob is too short, was sealed to another key, another
    recipient ID or another label, or was changed on the way.
    """
    if len(blob) < SEAL_OVERHEAD:
        raise DecryptionError(
            f"{label} sealed blob: expected at least {SEAL_OVERHEAD} bytes, got {len(blob)}"
        )
    try:
        opened = _HPKE.decrypt(blob, keys.kem, info=seal_info(label, my_id))
    except (InvalidTag, ValueError):
        raise DecryptionError(
            f"{label} sealed blob does not open (wrong key, recipient or label, or tampered)"
        ) from None
    # The info already binds the ID; this second check catches a sender that put another
    # identity inside, which a recipient must never accept as addressed to it.
    if opened[:ID_SIZE] != _id(my_id):
        inner = int.from_bytes(opened[:ID_SIZE], "big")
        raise DecryptionError(f"{label} sealed blob is addressed to node {inner}, not {my_id}")
    return opened[ID_SIZE:]


def sign_then_seal(
    signer: PrivateKeys,
    recipient: PublicKeys,
    recipient_id: int,
    label: str,
    message: bytes,
    *context: bytes,
) -> bytes:
    """``E_Ku_Y[E_Kr_X[m]]``: X signs ``(*context, m)``; ``m || signature`` is sealed to Y.

    ``context`` are bytes both sides know and that are not sealed (the message header, the
    extension so far, ...); they are signed but not carried. Undo with
    :func:`open_then_verify`.
    """
    signature = sign(signer, label, *context, message)
    return seal(recipient, recipient_id, label, message + signature)


def open_then_verify(
    keys: PrivateKeys,
    my_id: int,
    sender: PublicKeys,
    label: str,
    blob: bytes,
    *context: bytes,
) -> bytes:
    """Undo :func:`sign_then_seal`: open, split off the signature, verify it, return m.

    :class:`DecryptionError` when the blob does not open; :class:`VerificationError` when the
    opened value holds no valid signature of ``sender`` over ``(*context, m)``.
    """
    opened = open_sealed(keys, my_id, label, blob)
    if len(opened) < SIGNATURE_SIZE:
        raise VerificationError(
            f"{label}: sealed value of {len(opened)} bytes cannot hold a signature"
        )
    message, signature = opened[:-SIGNATURE_SIZE], opened[-SIGNATURE_SIZE:]
    verify(sender, label, signature, *context, message)
    return message


def seal_then_sign(
    signer: PrivateKeys,
    recipient: PublicKeys,
    recipient_id: int,
    label: str,
    message: bytes,
    *context: bytes,
) -> tuple[bytes, bytes]:
    """``E_Kr_X[E_Ku_Y[m]]``: seal m to Y, then X signs ``(*context, blob)``.

    Returns ``(blob, signature)``. A relay holding X's public key checks the signature with
    :func:`verify` without opening the blob; Y uses :func:`verify_then_open`. HPKE base mode
    does not authenticate the sender, so a third party could strip the signature and sign the
    blob itself: where that matters, put X's identity inside ``message`` too (docs/protocol.md
    section 1). Where the blob sits inside a larger signed message, callers simply
    :func:`seal` and then :func:`sign` the whole message; this helper is that pattern for a
    blob standing alone.
    """
    blob = seal(recipient, recipient_id, label, message)
    return blob, sign(signer, label, *context, blob)


def verify_then_open(
    keys: PrivateKeys,
    my_id: int,
    sender: PublicKeys,
    label: str,
    blob: bytes,
    signature: bytes,
    *context: bytes,
) -> bytes:
    """Undo :func:`seal_then_sign`: verify X's signature over ``(*context, blob)``, then open.

    The signature is checked first so that the recipient never opens a blob that X did not
    send: nobody can use it to learn whether some blob of theirs opens.
    """
    verify(sender, label, signature, *context, blob)
    return open_sealed(keys, my_id, label, blob)
