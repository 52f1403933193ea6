"""The only exceptions a decoder in :mod:`mvpn.wire` may raise.

Every error says what the decoder expected and what arrived, so a log line built from it
is enough to understand a dropped datagram.
"""

from __future__ import annotations


class WireError(ValueError):
    """Bytes that do not decode as the message or field they were meant to be.

    :param what: the message or field being decoded (``"Registration Request"``).
    :param expected: what the decoder expected (``"at least 24 bytes"``).
    :param got: what arrived (``"17 bytes"``).
    :param offset: where in the input the problem was found, when known.
    """

    def __init__(self, what: str, expected: str, got: str, offset: int | None = None) -> None:
        self.what = what
        self.expected = expected
        self.got = got
        self.offset = offset
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{what}{where}: expected {expected}, got {got}")


class TruncatedError(WireError):
    """The input ended before a field it must contain."""


class LengthError(WireError):
    """A length field disagrees with the data around it, or exceeds a limit."""


class UnknownTypeError(WireError):
    """A type number that no codec is registered for, where one is required."""


class BadValueError(WireError):
    """A field holds a value the protocol does not allow (a reserved bit set, a bad code)."""


class TrailingDataError(WireError):
    """Bytes left over after a message that defines its own end."""
