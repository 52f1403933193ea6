"""A bounds-checked cursor over bytes, shared by every decoder.

Each read checks the remaining length first and raises :class:`TruncatedError` naming the
field, so decoders never index past the end or let ``struct.error`` escape.
"""

from __future__ import annotations

import ipaddress
import struct

from mvpn.wire.errors import TrailingDataError, TruncatedError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class Reader:
    """Reads fields in order from ``data``, naming ``what`` in every error."""

    __slots__ = ("data", "offset", "what")

    def __init__(self, data: bytes, what: str, offset: int = 0) -> None:
        self.data = bytes(data)
        self.what = what
        self.offset = offset

    @property
    def remaining(self) -> int:
        """How many bytes are left to read."""
        return len(self.data) - self.offset

    def take(self, n: int, field: str) -> bytes:
        """Return the next ``n`` bytes as ``field``."""
        if n < 0 or self.remaining < n:
            raise TruncatedError(
                f"{self.what} {field}", f"{n} bytes", f"{max(self.remaining, 0)}", self.offset
            )
        start = self.offset
        self.offset += n
        return self.data[start : self.offset]

    def u8(self, field: str) -> int:
        """An unsigned 8-bit integer."""
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        """An unsigned 16-bit integer in network byte order."""
        value: int = _U16.unpack(self.take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        """An unsigned 32-bit integer in network byte order."""
        value: int = _U32.unpack(self.take(4, field))[0]
        return value

    def u64(self, field: str) -> int:
        """An unsigned 64-bit integer in network byte order."""
        value: int = _U64.unpack(self.take(8, field))[0]
        return value

    def ipv4(self, field: str) -> ipaddress.IPv4Address:
        """A 32-bit IPv4 address."""
        return ipaddress.IPv4Address(self.take(4, field))

    def u8_prefixed(self, field: str) -> bytes:
        """A byte string preceded by its 8-bit length."""
        return self.take(self.u8(f"{field} length"), field)

    def u16_prefixed(self, field: str) -> bytes:
        """A byte string preceded by its 16-bit length."""
        return self.take(self.u16(f"{field} length"), field)

    def rest(self) -> bytes:
        """Everything that is left."""
        return self.take(self.remaining, "remainder")

    def end(self) -> None:
        """Insist that nothing is left."""
        if self.remaining:
            raise TrailingDataError(
                self.what, "end of data", f"{self.remaining} more bytes", self.offset
            )


def explain(data: bytes, width: int = 16) -> str:
    """A hex dump with offsets, for logs and failing tests."""
    lines = []
    for start in range(0, len(data), width):
        chunk = data[start : start + width]
        hexed = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:04x}  {hexed:<{width * 3}} {text}")
    return "\n".join(lines)
