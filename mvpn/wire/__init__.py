"""Pure codecs for every message mvpn speaks: bytes in, frozen values out, and back.

Nothing here imports Twisted or touches a socket, a clock or randomness. Decoders raise only
:class:`~mvpn.wire.errors.WireError` subclasses, whatever bytes they are given.
"""

from mvpn.wire.errors import (
    BadValueError,
    LengthError,
    TrailingDataError,
    TruncatedError,
    UnknownTypeError,
    WireError,
)

__all__ = [
    "BadValueError",
    "LengthError",
    "TrailingDataError",
    "TruncatedError",
    "UnknownTypeError",
    "WireError",
]
