"""Signing and sealing: the draft's E_Kr_X and E_Ku_X (docs/protocol.md section 1)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hpke

from mvpn.crypto import suite
from mvpn.crypto.errors import DecryptionError, VerificationError
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.suite import (
    SEAL_OVERHEAD,
    SIGNATURE_SIZE,
    open_sealed,
    open_then_verify,
    seal,
    seal_info,
    seal_then_sign,
    sign,
    sign_then_seal,
    signed_input,
    verify,
    verify_then_open,
)

RANDOM = SeededRandom("test_suite")
ALICE = PrivateKeys.generate(RANDOM)
BOB = PrivateKeys.generate(RANDOM)
MALLORY = PrivateKeys.generate(RANDOM)
BOB_ID = 0x0102030405060708


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_constants_match_the_profile() -> None:
    """A signature is 64 bytes; a seal adds enc (32), tag (16) and the recipient ID (8)."""
    assert SIGNATURE_SIZE == 64
    assert SEAL_OVERHEAD == 56


def test_signed_input_layout() -> None:
    """The signed bytes are the prefix, the label, NUL, then each part behind its length."""
    assert signed_input("x", b"ab", b"") == (
        b"MVPN-00 sign x\x00" + b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x00"
    )


def test_sign_verify_round_trip() -> None:
    """A signature by Alice over some parts verifies with her public keys."""
    signature = sign(ALICE, "mobile-info", b"header", b"extension")
    assert len(signature) == SIGNATURE_SIZE
    verify(ALICE.public, "mobile-info", signature, b"header", b"extension")


def test_signature_is_ed25519_over_signed_input() -> None:
    """The signature is plain Ed25519 over signed_input(), so other tools can check it."""
    signature = sign(ALICE, "l", b"p")
    ALICE.public.signing.verify(signature, signed_input("l", b"p"))


def test_verify_refuses_flipped_signature() -> None:
    """Changing one bit of the signature makes verification fail, naming the label."""
    signature = sign(ALICE, "foreign-info", b"m")
    with pytest.raises(VerificationError, match="foreign-info"):
        verify(ALICE.public, "foreign-info", _flip(signature, 10), b"m")


def test_verify_refuses_wrong_label() -> None:
    """A signature made for one label does not verify under another."""
    signature = sign(ALICE, "mobile-info", b"m")
    with pytest.raises(VerificationError, match="home-info"):
        verify(ALICE.public, "home-info", signature, b"m")


def test_verify_refuses_shifted_part_boundaries() -> None:
    """Moving a byte from one part to the next changes what is signed."""
    signature = sign(ALICE, "l", b"ab", b"c")
    with pytest.raises(VerificationError):
        verify(ALICE.public, "l", signature, b"a", b"bc")
    with pytest.raises(VerificationError):
        verify(ALICE.public, "l", signature, b"abc")


def test_verify_refuses_other_signer_and_other_message() -> None:
    """Bob's keys do not verify Alice's signature; a changed part fails too."""
    signature = sign(ALICE, "l", b"m")
    with pytest.raises(VerificationError):
        verify(BOB.public, "l", signature, b"m")
    with pytest.raises(VerificationError):
        verify(ALICE.public, "l", signature, b"n")


@pytest.mark.parametrize("size", [0, 63, 65])
def test_verify_refuses_wrong_signature_length(size: int) -> None:
    """A signature of the wrong length fails with a message giving both lengths."""
    with pytest.raises(VerificationError, match=f"got {size}"):
        verify(ALICE.public, "l", bytes(size), b"m")


@pytest.mark.parametrize("label", ["", "a\x00b", "caf\u00e9", "tab\there"])
def test_bad_labels_are_refused(label: str) -> None:
    """Labels are non-empty printable ASCII: a NUL would make two labels collide."""
    with pytest.raises(ValueError, match="label"):
        signed_input(label, b"m")
    with pytest.raises(ValueError, match="label"):
        seal(BOB.public, BOB_ID, label, b"m")


def test_seal_open_round_trip_and_size() -> None:
    """Bob opens what was sealed to him; the seal is 56 bytes longer than the plaintext."""
    blob = seal(BOB.public, BOB_ID, "mobile-info", b"M" * 100)
    assert len(blob) == 100 + SEAL_OVERHEAD
    assert open_sealed(BOB, BOB_ID, "mobile-info", blob) == b"M" * 100


def test_seal_is_hpke_with_the_documented_info_and_id_prefix() -> None:
    """The blob is HPKE base mode with the documented info; the plaintext starts with the ID."""
    blob = seal(BOB.public, BOB_ID, "l", b"hello")
    assert seal_info("l", BOB_ID) == b"MVPN-00 seal l\x00" + BOB_ID.to_bytes(8, "big")
    hpke_suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
    inner = hpke_suite.decrypt(blob, BOB.kem, info=seal_info("l", BOB_ID))
    assert inner == BOB_ID.to_bytes(8, "big") + b"hello"


def test_seals_of_one_plaintext_differ() -> None:
    """Each seal uses a fresh ephemeral key, so equal plaintexts give unrelated blobs."""
    assert seal(BOB.public, BOB_ID, "l", b"m") != seal(BOB.public, BOB_ID, "l", b"m")


def test_open_refuses_wrong_recipient_id() -> None:
    """A blob sealed to ID n does not open as ID n+1, even with the right private key."""
    blob = seal(BOB.public, BOB_ID, "l", b"m")
    with pytest.raises(DecryptionError, match="does not open"):
        open_sealed(BOB, BOB_ID + 1, "l", blob)


def test_open_refuses_wrong_key() -> None:
    """Mallory's key does not open a blob sealed to Bob."""
    blob = seal(BOB.public, BOB_ID, "l", b"m")
    with pytest.raises(DecryptionError):
        open_sealed(MALLORY, BOB_ID, "l", blob)


def test_open_refuses_wrong_label() -> None:
    """A blob sealed for one use does not open as another."""
    blob = seal(BOB.public, BOB_ID, "home-info", b"m")
    with pytest.raises(DecryptionError, match="mobile-reply"):
        open_sealed(BOB, BOB_ID, "mobile-reply", blob)


@pytest.mark.parametrize("cut", [1, 16, 40, 57])
def test_open_refuses_truncated(cut: int) -> None:
    """Cutting bytes off the end fails, whether or not enough remains to look like a seal."""
    blob = seal(BOB.public, BOB_ID, "l", b"m")
    with pytest.raises(DecryptionError):
        open_sealed(BOB, BOB_ID, "l", blob[:-cut])


def test_open_refuses_empty_and_short_with_lengths() -> None:
    """Anything shorter than the overhead is refused with the expected and actual sizes."""
    with pytest.raises(DecryptionError, match="at least 56 bytes, got 55"):
        open_sealed(BOB, BOB_ID, "l", bytes(55))


@pytest.mark.parametrize("index", [0, 31, 32, 40, -16, -1])
def test_open_refuses_flipped_bit(index: int) -> None:
    """A flipped bit in enc, ciphertext or tag fails the open."""
    blob = seal(BOB.public, BOB_ID, "l", b"some plaintext")
    with pytest.raises(DecryptionError):
        open_sealed(BOB, BOB_ID, "l", _flip(blob, index % len(blob)))


def test_open_refuses_mismatched_inner_id() -> None:
    """A sender that puts another ID inside the seal is caught by the second check."""
    hpke_suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
    other = (BOB_ID + 5).to_bytes(8, "big")
    blob = hpke_suite.encrypt(other + b"m", BOB.public.kem, info=seal_info("l", BOB_ID))
    with pytest.raises(DecryptionError, match=f"addressed to node {BOB_ID + 5}"):
        open_sealed(BOB, BOB_ID, "l", blob)


@pytest.mark.parametrize("node_id", [-1, 1 << 64])
def test_ids_must_fit_64_bits(node_id: int) -> None:
    """Node IDs outside 64 bits are refused before anything is sealed."""
    with pytest.raises(ValueError, match="node ID"):
        seal(BOB.public, node_id, "l", b"m")


def test_sign_then_seal_round_trip() -> None:
    """E_Ku_Y[E_Kr_X[m]]: Bob opens Alice's signed value and gets m back."""
    blob = sign_then_seal(ALICE, BOB.public, BOB_ID, "home-info", b"Q", b"P", b"E")
    assert len(blob) == 1 + SIGNATURE_SIZE + SEAL_OVERHEAD
    assert open_then_verify(BOB, BOB_ID, ALICE.public, "home-info", blob, b"P", b"E") == b"Q"


def test_sign_then_seal_hides_a_signature_over_context_then_message() -> None:
    """The sealed value is m || sig(label, *context, m): the documented order."""
    blob = sign_then_seal(ALICE, BOB.public, BOB_ID, "l", b"msg", b"ctx")
    opened = open_sealed(BOB, BOB_ID, "l", blob)
    assert opened[:3] == b"msg"
    verify(ALICE.public, "l", opened[3:], b"ctx", b"msg")


def test_open_then_verify_refuses_wrong_sender_or_context() -> None:
    """The wrong sender key or different context parts fail verification."""
    blob = sign_then_seal(ALICE, BOB.public, BOB_ID, "l", b"m", b"ctx")
    with pytest.raises(VerificationError):
        open_then_verify(BOB, BOB_ID, MALLORY.public, "l", blob, b"ctx")
    with pytest.raises(VerificationError):
        open_then_verify(BOB, BOB_ID, ALICE.public, "l", blob, b"other")


def test_open_then_verify_refuses_unsigned_short_value() -> None:
    """A seal too short to hold a signature is a verification failure, not a crash."""
    blob = seal(BOB.public, BOB_ID, "l", b"short")
    with pytest.raises(VerificationError, match="cannot hold a signature"):
        open_then_verify(BOB, BOB_ID, ALICE.public, "l", blob)


def test_open_then_verify_refuses_other_recipient() -> None:
    """A value signed and sealed to Bob does not open for Mallory."""
    blob = sign_then_seal(ALICE, BOB.public, BOB_ID, "l", b"m")
    with pytest.raises(DecryptionError):
        open_then_verify(MALLORY, BOB_ID, ALICE.public, "l", blob)


def test_seal_then_sign_round_trip_and_relay_check() -> None:
    """E_Kr_X[E_Ku_Y[m]]: a relay verifies without opening; Bob verifies and opens."""
    blob, signature = seal_then_sign(ALICE, BOB.public, BOB_ID, "foreign-info", b"F", b"P")
    verify(ALICE.public, "foreign-info", signature, b"P", blob)
    assert verify_then_open(BOB, BOB_ID, ALICE.public, "foreign-info", blob, signature, b"P") == (
        b"F"
    )


def test_verify_then_open_refuses_tampered_blob_before_opening() -> None:
    """A changed blob fails the signature check (before any decryption is attempted)."""
    blob, signature = seal_then_sign(ALICE, BOB.public, BOB_ID, "l", b"m")
    with pytest.raises(VerificationError):
        verify_then_open(BOB, BOB_ID, ALICE.public, "l", _flip(blob, 40), signature)


def test_verify_then_open_refuses_resigned_blob() -> None:
    """Mallory can strip Alice's signature and sign the blob herself, but not as Alice."""
    blob, _ = seal_then_sign(ALICE, BOB.public, BOB_ID, "l", b"m")
    forged = sign(MALLORY, "l", blob)
    with pytest.raises(VerificationError):
        verify_then_open(BOB, BOB_ID, ALICE.public, "l", blob, forged)


def test_verify_then_open_refuses_other_recipient() -> None:
    """A correctly signed blob still only opens for the recipient it was sealed to."""
    blob, signature = seal_then_sign(ALICE, BOB.public, BOB_ID, "l", b"m")
    with pytest.raises(DecryptionError):
        verify_then_open(MALLORY, BOB_ID, ALICE.public, "l", blob, signature)


def test_module_exports_match_all() -> None:
    """Every name in suite.__all__ exists (other engineers import by these names)."""
    for name in suite.__all__:
        assert hasattr(suite, name), name
