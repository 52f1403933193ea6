"""Sec Par flags and the algorithm choice (draft section 6; docs/protocol.md 7.1)."""

from __future__ import annotations

import pytest

from mvpn.crypto.errors import UnsupportedAlgorithmError
from mvpn.crypto.negotiation import (
    LOCAL_FLAGS,
    check_auth_code,
    check_encr_code,
    decode_flags,
    encode_flags,
    negotiate,
)
from mvpn.wire.codes import BROKEN_AUTH, BROKEN_ENCR, AuthSecPar, EncrSecPar

A, E = AuthSecPar, EncrSecPar


def test_local_flags_bits() -> None:
    """mvpn offers Auth 5 (bit 4) and Encr 6, 7 (bits 13, 14): 0x6010."""
    assert LOCAL_FLAGS == 0x6010
    assert decode_flags(LOCAL_FLAGS) == (
        frozenset({A.HMAC_SHA256_128}),
        frozenset({E.AES_256_GCM, E.CHACHA20_POLY1305}),
    )


def test_bit_positions_follow_the_draft() -> None:
    """Auth n is bit n-1 of the low byte; Encr n is bit 8+(n-1)."""
    assert encode_flags([A.MD4]) == 0x0001
    assert encode_flags([A.DSS]) == 0x0008
    assert encode_flags(encr=[E.DES]) == 0x0100
    assert encode_flags(encr=[E.AES_256_GCM]) == 0x2000


def test_unknown_bits_are_named_by_number() -> None:
    """Bits with no known code point decode as plain integers (Auth 8, Encr 8)."""
    auth, encr = decode_flags(0x8080)
    assert auth == frozenset({8})
    assert encr == frozenset({8})
    assert not isinstance(next(iter(auth)), AuthSecPar)


def test_every_flag_value_round_trips() -> None:
    """decode then encode gives back every one of the 65,536 values."""
    for flags in range(1 << 16):
        auth, encr = decode_flags(flags)
        assert encode_flags(auth, encr) == flags


def test_out_of_range_values_refused() -> None:
    """Code points without a bit, and flags wider than 16 bits, are refused."""
    with pytest.raises(ValueError, match="Auth Sec Par 9"):
        encode_flags([9])
    with pytest.raises(ValueError, match="Encr Sec Par 0"):
        encode_flags(encr=[0])
    with pytest.raises(ValueError, match="16 bits"):
        decode_flags(0x10000)


def test_common_best_is_aes() -> None:
    """When everyone has both ciphers, AES-256-GCM wins."""
    assert negotiate(LOCAL_FLAGS, LOCAL_FLAGS, LOCAL_FLAGS) == (A.HMAC_SHA256_128, E.AES_256_GCM)


def test_chacha_when_one_party_lacks_aes() -> None:
    """The best algorithm *every* party supports: ChaCha20 if one lacks AES."""
    no_aes = encode_flags([A.HMAC_SHA256_128], [E.CHACHA20_POLY1305, E.DES])
    assert negotiate(LOCAL_FLAGS, no_aes, LOCAL_FLAGS) == (
        A.HMAC_SHA256_128,
        E.CHACHA20_POLY1305,
    )


def test_broken_algorithms_are_never_chosen_even_if_common() -> None:
    """Parties that all offer MD5 and DES (and nothing else) get a refusal, not MD5/DES."""
    broken = encode_flags([A.MD5, A.SHA1], [E.DES, E.TRIPLE_DES])
    with pytest.raises(UnsupportedAlgorithmError):
        negotiate(broken, broken)


def test_peer_offering_only_md5_des_refused_with_clear_message() -> None:
    """The refusal names each party's offer, broken ones marked as such."""
    peer = encode_flags([A.MD5], [E.DES])
    with pytest.raises(UnsupportedAlgorithmError) as info:
        negotiate(LOCAL_FLAGS, peer)
    message = str(info.value)
    assert "authentication and encryption" in message
    assert "party 1 offered auth HMAC_SHA256_128 (5)" in message
    assert "party 2 offered auth MD5 (2, broken); encr DES (1, broken)" in message


def test_nothing_common_names_the_missing_family() -> None:
    """Common authentication but no common cipher: the message says 'encryption'."""
    aes_only = encode_flags([A.HMAC_SHA256_128], [E.AES_256_GCM])
    chacha_only = encode_flags([A.HMAC_SHA256_128], [E.CHACHA20_POLY1305])
    with pytest.raises(UnsupportedAlgorithmError, match="no usable encryption algorithm"):
        negotiate(aes_only, chacha_only)


def test_empty_offer_and_no_parties() -> None:
    """A party offering nothing is refused ('none'); negotiate() needs a party."""
    with pytest.raises(UnsupportedAlgorithmError, match="auth none; encr none"):
        negotiate(LOCAL_FLAGS, 0)
    with pytest.raises(ValueError):
        negotiate()


@pytest.mark.parametrize("code", sorted(BROKEN_AUTH))
def test_check_auth_code_refuses_broken_by_name(code: AuthSecPar) -> None:
    """Auth Sec Par 1-4 from a packet are refused with their names."""
    with pytest.raises(UnsupportedAlgorithmError, match=rf"{code.name} \({int(code)}\).*broken"):
        check_auth_code(int(code))


@pytest.mark.parametrize("code", sorted(BROKEN_ENCR))
def test_check_encr_code_refuses_broken_by_name(code: EncrSecPar) -> None:
    """Encr Sec Par 1-5 from a packet are refused with their names."""
    with pytest.raises(UnsupportedAlgorithmError, match=rf"{code.name} \({int(code)}\).*broken"):
        check_encr_code(int(code))


def test_check_codes_accept_ours_and_refuse_unknown() -> None:
    """mvpn's code points come back as enum members; unknown ones are refused by number."""
    assert check_auth_code(5) is A.HMAC_SHA256_128
    assert check_encr_code(6) is E.AES_256_GCM
    assert check_encr_code(7) is E.CHACHA20_POLY1305
    with pytest.raises(UnsupportedAlgorithmError, match=r"unknown \(200\).*not implemented"):
        check_auth_code(200)
    with pytest.raises(UnsupportedAlgorithmError, match=r"unknown \(0\)"):
        check_encr_code(0)
