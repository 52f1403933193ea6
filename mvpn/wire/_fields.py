"""Field checks and encoders shared by the MVPN codecs (docs/protocol.md sections 5 to 8).

Values check their fields when they are built, so ``encode()`` never meets an integer that
does not fit or a byte string longer than its length prefix, and a decoder that reads an
over-limit field raises the same :class:`~mvpn.wire.errors.WireError` a builder would.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import field

from mvpn.wire.errors import BadValueError, LengthError

U8 = struct.Struct("!B")
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
U64 = struct.Struct("!Q")

SIGNATURE_SIZE = 64
"""An Ed25519 signature (suite 1, docs/protocol.md section 1)."""

PUBLIC_KEYS_SIZE = 64
"""``Ku_X`` on the wire: raw Ed25519 key then raw X25519 key (docs/protocol.md section 1)."""

MAX_LEN8 = 0xFF
MAX_LEN16 = 0xFFFF


def check_uint(what: str, name: str, value: int, bits: int) -> None:
    """Insist that ``value`` is an ``int`` that fits in ``bits`` unsigned bits."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise BadValueError(f"{what} {name}", f"an integer in [0, 2**{bits})", repr(value))


def check_code(what: str, name: str, value: enum.IntEnum | int, bits: int) -> None:
    """Like :func:`check_uint` for a code that may be an ``IntEnum`` member."""
    check_uint(what, name, int(value) if isinstance(value, enum.IntEnum) else value, bits)


def check_bytes(what: str, name: str, value: bytes, limit: int) -> None:
    """Insist that ``value`` is ``bytes`` of at most ``limit`` bytes."""
    if not isinstance(value, bytes):
        raise BadValueError(f"{what} {name}", "bytes", type(value).__name__)
    if len(value) > limit:
        raise LengthError(f"{what} {name}", f"at most {limit} bytes", f"{len(value)} bytes")


def check_size(what: str, name: str, value: bytes, sizes: tuple[int, ...]) -> None:
    """Insist that ``value`` is ``bytes`` whose length is one of ``sizes``."""
    if not isinstance(value, bytes):
        raise BadValueError(f"{what} {name}", "bytes", type(value).__name__)
    if len(value) not in sizes:
        expected = " or ".join(str(s) for s in sizes)
        raise LengthError(f"{what} {name}", f"{expected} bytes", f"{len(value)} bytes")


def check_ipv4(what: str, name: str, value: ipaddress.IPv4Address) -> None:
    """Insist that ``value`` is an :class:`ipaddress.IPv4Address`."""
    if not isinstance(value, ipaddress.IPv4Address):
        raise BadValueError(f"{what} {name}", "an IPv4Address", type(value).__name__)


def len8(value: bytes) -> bytes:
    """``len8 + value`` (the caller has checked the length)."""
    return bytes((len(value),)) + value


def len16(value: bytes) -> bytes:
    """``len16 + value`` (the caller has checked the length)."""
    return U16.pack(len(value)) + value


def raw_field() -> bytes | None:
    """The ``raw`` field every decoded value keeps: the bytes it came from, never compared."""
    value: bytes | None = field(default=None, compare=False, repr=False)
    return value


def offset_field() -> int | None:
    """The ``offset`` field of a decoded extension: where it started in its message."""
    value: int | None = field(default=None, compare=False, repr=False)
    return value
