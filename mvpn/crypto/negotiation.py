"""Sec Par: which algorithms a node supports, and the choice the data flow uses.

The draft (section 6, "Sec Par") carries a node's supported algorithms as 16 flags: bit n-1 of
the low byte set means Auth Sec Par n is supported, bit 8+(n-1) means Encr Sec Par n is
(docs/protocol.md 7.1). The draft's own code points (MD4, MD5, SHA-1, DSS; DES, SkipJack, IDEA,
Blowfish, 3DES) are decoded and named but never chosen: a peer that offers only those gets a
refusal that says so, by name. mvpn's code points are Auth 5 (HMAC-SHA256-128) and Encr 6
(AES-256-GCM, the draft's "AES") and 7 (ChaCha20-Poly1305).
"""

from __future__ import annotations

from collections.abc import Iterable

from mvpn.crypto.errors import UnsupportedAlgorithmError
from mvpn.wire.codes import BROKEN_AUTH, BROKEN_ENCR, AuthSecPar, EncrSecPar, lookup
from mvpn.wire.plain import sec_par_auth, sec_par_encr, sec_par_flags

__all__ = [
    "AUTH_PREFERENCE",
    "ENCR_PREFERENCE",
    "LOCAL_FLAGS",
    "check_auth_code",
    "check_encr_code",
    "decode_flags",
    "describe_offer",
    "encode_flags",
    "negotiate",
]

AUTH_PREFERENCE: tuple[AuthSecPar, ...] = (AuthSecPar.HMAC_SHA256_128,)
"""The Auth Sec Par code points mvpn implements, best first."""

ENCR_PREFERENCE: tuple[EncrSecPar, ...] = (EncrSecPar.AES_256_GCM, EncrSecPar.CHACHA20_POLY1305)
"""The Encr Sec Par code points mvpn implements, best first. AES-256-GCM leads because every
platform mvpn targets has AES instructions; ChaCha20-Poly1305 is there for those without."""


def encode_flags(
    auth: Iterable[AuthSecPar | int] = (), encr: Iterable[EncrSecPar | int] = ()
) -> int:
    """The 16-bit Sec Par naming the given code points; :class:`ValueError` outside 1 to 8.

    The bit layout is the wire's (:func:`mvpn.wire.plain.sec_par_flags`, docs/protocol.md 7.1).
    """
    return sec_par_flags(auth, encr)


def decode_flags(
    flags: int,
) -> tuple[frozenset[AuthSecPar | int], frozenset[EncrSecPar | int]]:
    """The code points set in ``flags``: ``(auth, encr)``.

    A bit with no known code point stays in the set as its plain number, so a log line can
    name it (``unknown (8)``) instead of silently dropping it.
    """
    if not 0 <= flags <= 0xFFFF:
        raise ValueError(f"Sec Par is 16 bits, got {flags:#x}")
    return sec_par_auth(flags), sec_par_encr(flags)


LOCAL_FLAGS = encode_flags(AUTH_PREFERENCE, ENCR_PREFERENCE)
"""What mvpn offers: HMAC_SHA256_128; AES_256_GCM and CHACHA20_POLY1305 (0x6010)."""


def _name(code: AuthSecPar | EncrSecPar | int) -> str:
    # Dispatch on the enum type: AuthSecPar 5 and EncrSecPar 5 are equal as integers, so a
    # plain "in BROKEN_AUTH or in BROKEN_ENCR" test would mix the two families up.
    if isinstance(code, AuthSecPar):
        return f"{code.name} ({int(code)}{', broken' if code in BROKEN_AUTH else ''})"
    if isinstance(code, EncrSecPar):
        return f"{code.name} ({int(code)}{', broken' if code in BROKEN_ENCR else ''})"
    return f"unknown ({code})"


def describe_offer(flags: int) -> str:
    """A readable list of what ``flags`` offers: ``"auth MD5 (2, broken); encr none"``."""
    auth, encr = decode_flags(flags)

    def names(codes: frozenset[AuthSecPar | int] | frozenset[EncrSecPar | int]) -> str:
        return ", ".join(_name(c) for c in sorted(codes, key=int)) or "none"

    return f"auth {names(auth)}; encr {names(encr)}"


def negotiate(*flag_sets: int) -> tuple[AuthSecPar, EncrSecPar]:
    """The best algorithms every party supports, from :data:`AUTH_PREFERENCE` and
    :data:`ENCR_PREFERENCE` (never a broken one).

    Pass one Sec Par per party (CN, FA, MN, and usually :data:`LOCAL_FLAGS` for the node
    itself). :class:`UnsupportedAlgorithmError` lists what each party offered when no usable
    algorithm is common to all.
    """
    if not flag_sets:
        raise ValueError("negotiate needs at least one Sec Par")
    decoded = [decode_flags(f) for f in flag_sets]
    auth = next((a for a in AUTH_PREFERENCE if all(a in d[0] for d in decoded)), None)
    encr = next((e for e in ENCR_PREFERENCE if all(e in d[1] for d in decoded)), None)
    if auth is None or encr is None:
        missing = " and ".join(
            what
            for what, chosen in (("authentication", auth), ("encryption", encr))
            if chosen is None
        )
        offers = "; ".join(
            f"party {i} offered {describe_offer(f)}" for i, f in enumerate(flag_sets, 1)
        )
        raise UnsupportedAlgorithmError(
            f"no usable {missing} algorithm common to all parties ({offers})"
        )
    return auth, encr


def check_auth_code(code: AuthSecPar | int) -> AuthSecPar:
    """The Auth Sec Par of a decoded packet if mvpn uses it; otherwise
    :class:`UnsupportedAlgorithmError` naming it (``"Auth Sec Par MD5 (2) refused: broken"``).
    """
    value = lookup(AuthSecPar, int(code))
    if isinstance(value, AuthSecPar) and value in AUTH_PREFERENCE:
        return value
    reason = "broken" if value in BROKEN_AUTH else "not implemented"
    raise UnsupportedAlgorithmError(f"Auth Sec Par {_plain_name(value)} refused: {reason}")


def check_encr_code(code: EncrSecPar | int) -> EncrSecPar:
    """The Encr Sec Par of a decoded packet if mvpn uses it; otherwise
    :class:`UnsupportedAlgorithmError` naming it (``"Encr Sec Par DES (1) refused: broken"``).
    """
    value = lookup(EncrSecPar, int(code))
    if isinstance(value, EncrSecPar) and value in ENCR_PREFERENCE:
        return value
    reason = "broken" if value in BROKEN_ENCR else "not implemented"
    raise UnsupportedAlgorithmError(f"Encr Sec Par {_plain_name(value)} refused: {reason}")


def _plain_name(code: AuthSecPar | EncrSecPar | int) -> str:
    if isinstance(code, AuthSecPar | EncrSecPar):
        return f"{code.name} ({int(code)})"
    return f"unknown ({code})"
