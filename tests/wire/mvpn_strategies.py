"""Hypothesis strategies for the MVPN codecs: generated values and mutated encodings."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mvpn.wire import plain
from mvpn.wire.codes import AuthSecPar, EncrSecPar, MvpnError, ReplyCode
from mvpn.wire.errors import WireError


def uint(bits: int) -> st.SearchStrategy[int]:
    """Any unsigned integer of ``bits`` bits, edges included."""
    return st.integers(0, (1 << bits) - 1)


ipv4 = st.builds(ipaddress.IPv4Address, uint(32))
key = st.binary(max_size=plain.MAX_KEY)
dh = st.binary(max_size=64)  # long enough to exercise len16; the 512 limit has its own test
sig = st.binary(min_size=64, max_size=64)
pub = st.binary(min_size=64, max_size=64)
hello = st.binary(min_size=16, max_size=16)
blob = st.binary(max_size=200)
reply_code = st.one_of(st.sampled_from(ReplyCode), uint(8))
auth_par = st.one_of(st.sampled_from(AuthSecPar), uint(8))
encr_par = st.one_of(st.sampled_from(EncrSecPar), uint(8))
mvpn_error = st.one_of(st.sampled_from(MvpnError), uint(16))


Edit = tuple[str, int, int, bytes]
edits: st.SearchStrategy[Edit] = st.tuples(
    st.sampled_from(["flip", "cut", "insert", "delete"]),
    st.integers(0, 1 << 16),
    st.integers(0, 1 << 16),
    st.binary(min_size=1, max_size=8),
)
"""One edit of an encoding, independent of its length: kind, two positions, some bytes."""


def mutate(encoded: bytes, edit: Edit) -> bytes:
    """``encoded`` with one edit: a byte changed, a cut, an insertion or a deletion."""
    kind, a, b, junk = edit
    if not encoded:
        return junk
    i = a % len(encoded)
    if kind == "flip":
        return encoded[:i] + bytes((encoded[i] ^ (junk[0] or 0xFF),)) + encoded[i + 1 :]
    if kind == "cut":
        return encoded[:i]
    if kind == "insert":
        return encoded[:i] + junk + encoded[i:]
    j = i + 1 + b % (len(encoded) - i)
    return encoded[:i] + encoded[j:]


def decodes_or_wire_error(decode: Callable[[bytes], object], data: bytes) -> None:
    """``decode(data)`` returns a value or raises a WireError; nothing else escapes."""
    with contextlib.suppress(WireError):
        decode(data)


def fuzz_tests(
    prefix: str, cases: dict[str, tuple[Callable[[bytes], Any], st.SearchStrategy[Any]]]
) -> dict[str, Callable[..., None]]:
    """One Hypothesis test per decoder, named ``test_fuzz_<prefix>_<case>``.

    ``cases`` maps a case name to ``(decode, values)``; ``values`` generates values whose
    ``encode()`` the decoder reads. One function object per test, rather than
    ``pytest.mark.parametrize`` over one ``@given`` function: pytest-twisted replaces the
    ``hypothesis.inner_test`` of the shared function object for each parametrized item, so
    every item after the first would run the previous item's wrapper.
    """
    return {f"test_fuzz_{prefix}_{case}": _fuzz_test(case, *c) for case, c in cases.items()}


def _fuzz_test(
    case: str, decode: Callable[[bytes], Any], values: st.SearchStrategy[Any]
) -> Callable[..., None]:
    @given(value=values, edit=edits, junk=st.binary(max_size=400))
    def test(value: Any, edit: Edit, junk: bytes) -> None:
        encoded = value.encode()
        decoded = decode(encoded)
        assert decoded == value
        assert decoded.encode() == encoded
        decodes_or_wire_error(decode, mutate(encoded, edit))
        decodes_or_wire_error(decode, junk)

    test.__doc__ = (
        f"{case}: every generated value survives encode/decode unchanged; a one-edit mutation "
        "of its encoding, and arbitrary bytes, decode to a value or raise WireError only."
    )
    return test
