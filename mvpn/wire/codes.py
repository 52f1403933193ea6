"""Every numbered code the protocol uses: reply codes, MVPN errors, Sec Par code points.

Decoders keep an unknown value as a plain ``int`` (see :func:`lookup`), so a new code from a
peer is reported by number rather than rejected.
"""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.IntEnum)


def lookup(enum_type: type[E], value: int) -> E | int:
    """``enum_type(value)`` when the value is known, else the plain integer."""
    try:
        return enum_type(value)
    except ValueError:
        return value


def describe(value: enum.IntEnum | int) -> str:
    """A log-friendly name: ``"MN_FAILED_AUTHENTICATION (131)"`` or ``"unknown (200)"``."""
    if isinstance(value, enum.IntEnum):
        return f"{value.name} ({int(value)})"
    return f"unknown ({value})"


class ReplyCode(enum.IntEnum):
    """Registration Reply codes, RFC 5944 section 3.4 (and RFC 3024 for reverse tunnels)."""

    ACCEPTED = 0
    ACCEPTED_NO_SIMULTANEOUS_BINDINGS = 1
    # Denied by the foreign agent
    FA_REASON_UNSPECIFIED = 64
    FA_ADMINISTRATIVELY_PROHIBITED = 65
    FA_INSUFFICIENT_RESOURCES = 66
    FA_MN_FAILED_AUTHENTICATION = 67
    FA_HA_FAILED_AUTHENTICATION = 68
    FA_LIFETIME_TOO_LONG = 69
    FA_POORLY_FORMED_REQUEST = 70
    FA_POORLY_FORMED_REPLY = 71
    FA_ENCAPSULATION_UNAVAILABLE = 72
    FA_RESERVED_UNAVAILABLE = 73
    FA_REVERSE_TUNNEL_UNAVAILABLE = 74
    FA_REVERSE_TUNNEL_MANDATORY = 75
    FA_MN_TOO_DISTANT = 76
    FA_INVALID_CARE_OF_ADDRESS = 77
    FA_REGISTRATION_TIMEOUT = 78
    FA_DELIVERY_STYLE_UNSUPPORTED = 79
    FA_HOME_NETWORK_UNREACHABLE = 80
    FA_HA_HOST_UNREACHABLE = 81
    FA_HA_PORT_UNREACHABLE = 82
    FA_HA_UNREACHABLE = 88
    # Denied by the home agent
    HA_REASON_UNSPECIFIED = 128
    HA_ADMINISTRATIVELY_PROHIBITED = 129
    HA_INSUFFICIENT_RESOURCES = 130
    HA_MN_FAILED_AUTHENTICATION = 131
    HA_FA_FAILED_AUTHENTICATION = 132
    HA_IDENTIFICATION_MISMATCH = 133
    HA_POORLY_FORMED_REQUEST = 134
    HA_TOO_MANY_BINDINGS = 135
    HA_UNKNOWN_HOME_AGENT = 136
    HA_REVERSE_TUNNEL_UNAVAILABLE = 137
    HA_REVERSE_TUNNEL_MANDATORY = 138
    HA_ENCAPSULATION_UNAVAILABLE = 139

    @property
    def accepted(self) -> bool:
        """Codes 0 and 1 accept the registration; everything else denies it."""
        return self in (ReplyCode.ACCEPTED, ReplyCode.ACCEPTED_NO_SIMULTANEOUS_BINDINGS)


class MvpnError(enum.IntEnum):
    """MVPN error message codes, draft section 4."""

    AUTHENTICATION_KEY_NOT_VALID = 1
    SESSION_KEY_NOT_VALID = 2
    NO_MVPN_SUPPORT = 3
    PUBLIC_KEY_NOT_VALID = 4
    HOME_AGENT_NOT_FOUND = 5
    TRUSTED_CENTRE_NOT_FOUND = 6
    OTHER = 7


class AuthSecPar(enum.IntEnum):
    """Authentication algorithm code points (draft section 3.5.1, "Auth Sec Par").

    1 to 4 are the draft's and are decoded and named but refused (see
    :data:`BROKEN_AUTH`); 5 is ours and the only one mvpn uses for the data flow.
    """

    MD4 = 1
    MD5 = 2
    SHA1 = 3
    DSS = 4
    HMAC_SHA256_128 = 5


class EncrSecPar(enum.IntEnum):
    """Encryption algorithm code points (draft section 3.5.1, "Encr Sec Par").

    1 to 5 are the draft's ciphers, all broken or obsolete, named and refused. The draft's
    6 ("AES") names no mode or key size: mvpn reads it as AES-256-GCM. 7 is ours.
    """

    DES = 1
    SKIPJACK = 2
    IDEA = 3
    BLOWFISH = 4
    TRIPLE_DES = 5
    AES_256_GCM = 6
    CHACHA20_POLY1305 = 7


BROKEN_AUTH = frozenset({AuthSecPar.MD4, AuthSecPar.MD5, AuthSecPar.SHA1, AuthSecPar.DSS})
"""Decoded and named, never used: MD4/MD5/SHA-1 digests and 2000-era DSS."""

BROKEN_ENCR = frozenset(
    {
        EncrSecPar.DES,
        EncrSecPar.SKIPJACK,
        EncrSecPar.IDEA,
        EncrSecPar.BLOWFISH,
        EncrSecPar.TRIPLE_DES,
    }
)
"""64-bit-block and short-key ciphers: decoded and named, never used."""


class Suite(enum.IntEnum):
    """Public-key suites, carried in the Sub-Type byte of extensions 36 to 39.

    Only suite 1 is implemented; the others are reserved so that peers can name them.
    """

    ED25519_X25519_AES128GCM = 1
    RSA3072_PSS_OAEP = 2
    ED25519_MLKEM768X25519_AES256GCM = 3
