"""Property tests: openers only ever raise their own errors; the replay window matches a
plain set-based model of its rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mvpn.crypto.aead import DataCipher, open_symmetric
from mvpn.crypto.errors import DecryptionError, VerificationError
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.replay import ReplayError, ReplayReason, ReplayWindow
from mvpn.crypto.suite import open_sealed, open_then_verify, verify
from mvpn.wire.codes import EncrSecPar

KEYS = PrivateKeys.generate(SeededRandom("properties"))
KEY = SeededRandom("properties key")(32)
CIPHER = DataCipher(EncrSecPar.AES_256_GCM, KEY)


@given(st.binary(max_size=300))
def test_open_sealed_garbage_raises_only_decryption_error(blob: bytes) -> None:
    """Arbitrary bytes never open and never raise anything but DecryptionError."""
    try:
        open_sealed(KEYS, 1, "l", blob)
    except DecryptionError:
        return
    raise AssertionError("garbage opened")


@given(st.binary(max_size=300))
def test_open_then_verify_garbage_raises_only_crypto_errors(blob: bytes) -> None:
    """The layered opener refuses garbage with DecryptionError or VerificationError."""
    try:
        open_then_verify(KEYS, 1, KEYS.public, "l", blob)
    except (DecryptionError, VerificationError):
        return
    raise AssertionError("garbage opened")


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_verify_garbage_raises_only_verification_error(signature: bytes, part: bytes) -> None:
    """Arbitrary signatures fail with VerificationError only."""
    try:
        verify(KEYS.public, "l", signature, part)
    except VerificationError:
        return
    raise AssertionError("garbage verified")


@given(st.binary(max_size=300), st.integers(0, (1 << 64) - 1))
def test_data_decrypt_and_symmetric_open_garbage(blob: bytes, seq: int) -> None:
    """Data decryption and the symmetric opener refuse garbage with DecryptionError only."""
    for attempt in (
        lambda: CIPHER.decrypt(seq, b"", blob),
        lambda: open_symmetric(KEY, "l", blob),
    ):
        try:
            attempt()
        except DecryptionError:
            continue
        raise AssertionError("garbage decrypted")


def _model_reason(accepted: set[int], highest: int, seq: int, size: int, jump: int) -> str | None:
    """The window's rules stated directly on the set of accepted numbers."""
    if seq == 0:
        return "too old"
    if seq > highest:
        return "too far ahead" if accepted and seq - highest > jump else None
    if highest - seq >= size:
        return "too old"
    return "duplicate" if seq in accepted else None


@given(
    st.lists(
        st.tuples(st.integers(0, 6000), st.booleans()),
        max_size=200,
    )
)
def test_replay_window_matches_model(steps: list[tuple[int, bool]]) -> None:
    """For any sequence of arrivals (each authenticated or forged), the bitmap window gives
    the same verdicts as the set model, and forged packets never change it."""
    size, jump = 1024, 3000
    window = ReplayWindow(size, max_jump=jump)
    accepted: set[int] = set()
    highest = 0
    for seq, authentic in steps:
        expected = _model_reason(accepted, highest, seq, size, jump)
        try:
            window.check(seq)
            got = None
        except ReplayError as e:
            got = ReplayReason(e.reason).value
        assert got == expected, (seq, highest)
        if got is None and authentic:
            window.update(seq)
            accepted.add(seq)
            highest = max(highest, seq)
        assert window.highest == highest
