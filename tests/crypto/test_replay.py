"""The data-flow replay window (docs/protocol.md 8.1): its edges and its update rule."""

from __future__ import annotations

import pytest

from mvpn.crypto.auth import HopAuthenticator
from mvpn.crypto.errors import CryptoError, VerificationError
from mvpn.crypto.replay import ReplayError, ReplayReason, ReplayWindow

SIZE = 2048


def _accept(window: ReplayWindow, *sequences: int) -> None:
    for seq in sequences:
        window.check(seq)
        window.update(seq)


def _refused(window: ReplayWindow, seq: int) -> ReplayReason:
    highest = window.highest
    with pytest.raises(ReplayError) as info:
        window.check(seq)
    assert window.highest == highest
    return info.value.reason


def test_in_order_sequences_are_accepted() -> None:
    """1, 2, 3, ... far beyond the window size are all accepted in order."""
    window = ReplayWindow()
    _accept(window, *range(1, 3 * SIZE))
    assert window.highest == 3 * SIZE - 1


def test_out_of_order_within_window_is_accepted_once() -> None:
    """Late packets inside the window are accepted, each exactly once."""
    window = ReplayWindow()
    _accept(window, 100, 50, 99, 1, 75)
    for seq in (100, 50, 99, 1, 75):
        assert _refused(window, seq) == ReplayReason.DUPLICATE
    _accept(window, 98)


def test_duplicate_is_refused_without_changing_state() -> None:
    """A duplicate raises 'duplicate'; check() leaves the window as it was."""
    window = ReplayWindow()
    _accept(window, 5)
    assert _refused(window, 5) == "duplicate"
    _accept(window, 4, 6)


def test_exactly_at_the_window_edge_and_one_beyond() -> None:
    """highest - (size-1) is the oldest acceptable number; highest - size is too old."""
    window = ReplayWindow()
    _accept(window, 3000)
    _accept(window, 3000 - (SIZE - 1))
    assert _refused(window, 3000 - SIZE) == ReplayReason.TOO_OLD


def test_sliding_forgets_old_bits_correctly() -> None:
    """After the window moves, numbers that fell off are too old, the rest keep their bits."""
    window = ReplayWindow()
    _accept(window, 10, 11)
    _accept(window, 10 + SIZE)
    assert _refused(window, 10) == ReplayReason.TOO_OLD
    assert _refused(window, 11) == ReplayReason.DUPLICATE
    _accept(window, 12)


def test_jump_beyond_whole_window_clears_it() -> None:
    """A jump larger than the window leaves only the new number marked."""
    window = ReplayWindow()
    _accept(window, *range(1, 100))
    _accept(window, 10_000)
    _accept(window, 9_999, 10_000 - (SIZE - 1))
    assert _refused(window, 10_000) == ReplayReason.DUPLICATE


def test_far_ahead_is_refused() -> None:
    """A number more than max_jump beyond the highest is 'too far ahead'; max_jump is not."""
    window = ReplayWindow(max_jump=1 << 20)
    _accept(window, 1)
    assert _refused(window, 2 + (1 << 20)) == ReplayReason.TOO_FAR_AHEAD
    _accept(window, 1 + (1 << 20))


def test_max_jump_is_configurable() -> None:
    """A smaller max_jump refuses smaller jumps."""
    window = ReplayWindow(max_jump=10)
    _accept(window, 1, 11)
    assert _refused(window, 22) == ReplayReason.TOO_FAR_AHEAD


def test_first_packet_of_empty_window_is_not_bound_by_max_jump() -> None:
    """A new FA after a key transfer joins a session at a high number (draft 3.3)."""
    window = ReplayWindow()
    _accept(window, 5_000_000)
    assert _refused(window, 5_000_000 + (1 << 20) + 1) == ReplayReason.TOO_FAR_AHEAD


def test_sequence_zero_is_never_accepted() -> None:
    """Numbers start at 1: 0 is 'too old' in a fresh window and later."""
    window = ReplayWindow()
    assert _refused(window, 0) == ReplayReason.TOO_OLD
    _accept(window, 1)
    assert _refused(window, 0) == ReplayReason.TOO_OLD


def test_top_of_sequence_space() -> None:
    """2**64 - 1 is a valid number; 2**64 is not a sequence number at all."""
    window = ReplayWindow()
    _accept(window, (1 << 64) - 1)
    with pytest.raises(ValueError):
        window.check(1 << 64)


def test_forged_packet_does_not_move_the_window() -> None:
    """A packet whose hop authenticator fails is dropped without moving the window, so the
    genuine packet with the same number is still accepted afterwards."""
    hop = HopAuthenticator(b"k" * 32)
    window = ReplayWindow()

    def receive(seq: int, payload: bytes, tag: bytes) -> None:
        window.check(seq)
        hop.check(payload, tag)
        window.update(seq)

    receive(1, b"one", hop.tag(b"one"))
    with pytest.raises(VerificationError):
        receive(1000, b"forged", b"\x00" * 16)
    assert window.highest == 1
    receive(1000, b"genuine", hop.tag(b"genuine"))
    assert window.highest == 1000


def test_update_rechecks_and_changes_nothing_on_refusal() -> None:
    """update() refuses a duplicate itself and leaves the window unchanged."""
    window = ReplayWindow()
    _accept(window, 7)
    with pytest.raises(ReplayError, match="duplicate"):
        window.update(7)
    assert window.highest == 7
    _accept(window, 6)


def test_replay_error_is_a_crypto_error_with_reason_and_sequence() -> None:
    """ReplayError subclasses CryptoError and carries the number and the rule."""
    window = ReplayWindow()
    _accept(window, 3)
    with pytest.raises(CryptoError) as info:
        window.check(3)
    assert isinstance(info.value, ReplayError)
    assert info.value.sequence == 3
    assert info.value.reason is ReplayReason.DUPLICATE


@pytest.mark.parametrize("size", [0, 64, 1000, 1030, 2050])
def test_window_size_rules(size: int) -> None:
    """The window is at least 1024 and a multiple of 64."""
    with pytest.raises(ValueError, match="multiple of 64"):
        ReplayWindow(size)


def test_minimum_window_works() -> None:
    """A 1024-wide window has its edge at highest - 1023."""
    window = ReplayWindow(1024)
    _accept(window, 2000, 2000 - 1023)
    assert _refused(window, 2000 - 1024) == ReplayReason.TOO_OLD
