"""Encode/decode cases for the RFC 5944 wire codecs, for the wire benchmark runner.

Each case is ``(name, encode_once, decode_once)``. The messages are typical of what mvpn
sends: a request with MN-HA (HMAC-SHA256, 32 bytes) and FA-HA authenticators, a reply with
one, an advertisement from a foreign agent, a solicitation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Protocol

from mvpn.wire.codes import ReplyCode
from mvpn.wire.extensions import (
    ForeignHomeAuthExtension,
    MobileHomeAuthExtension,
    decode_extensions,
    encode_extensions,
)
from mvpn.wire.icmp import (
    AdvertisementCode,
    AgentAdvertisement,
    AgentFlags,
    AgentSolicitation,
    MobilityAgentAdvertisementExtension,
    PaddingExtension,
    PrefixLengthsExtension,
    RouterEntry,
)
from mvpn.wire.registration import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    protected_bytes,
)

Case = tuple[str, Callable[[], object], Callable[[], object]]

_A = ipaddress.IPv4Address
_MAC = bytes(32)


class _Encodable(Protocol):
    def encode(self) -> bytes: ...


def _case(name: str, value: _Encodable, decode: Callable[[bytes], object]) -> Case:
    encoded = value.encode()
    return (name, value.encode, lambda: decode(encoded))


def cases() -> list[Case]:
    """One case per RFC 5944 message mvpn codes, plus the extension list and the
    protected-bytes computation an authenticator check performs."""
    request = RegistrationRequest(
        RequestFlags.T,
        1800,
        _A("10.1.0.5"),
        _A("10.1.0.1"),
        _A("192.0.2.10"),
        0xE75A1B2C80000000,
        (MobileHomeAuthExtension(257, _MAC), ForeignHomeAuthExtension(258, _MAC)),
    )
    reply = RegistrationReply(
        ReplyCode.ACCEPTED,
        1800,
        _A("10.1.0.5"),
        _A("10.1.0.1"),
        0xE75A1B2C80000000,
        (MobileHomeAuthExtension(257, _MAC),),
    )
    advertisement = AgentAdvertisement(
        AdvertisementCode.MOBILITY_ONLY,
        1800,
        (RouterEntry(_A("192.0.2.1"), 0),),
        (
            MobilityAgentAdvertisementExtension(
                42, 1800, AgentFlags.F | AgentFlags.T, (_A("192.0.2.1"),)
            ),
            PrefixLengthsExtension((24,)),
            PaddingExtension(),
        ),
    )
    extensions = request.extensions
    extension_bytes = encode_extensions(extensions)
    decoded_request = RegistrationRequest.decode(request.encode())
    last = decoded_request.extensions[-1]
    assert isinstance(last, ForeignHomeAuthExtension)
    return [
        _case("RegistrationRequest", request, RegistrationRequest.decode),
        _case("RegistrationReply", reply, RegistrationReply.decode),
        _case("AgentAdvertisement", advertisement, AgentAdvertisement.decode),
        _case("AgentSolicitation", AgentSolicitation(), AgentSolicitation.decode),
        (
            "extensions (MN-HA + FA-HA)",
            lambda: encode_extensions(extensions),
            lambda: decode_extensions(extension_bytes, 24),
        ),
        (
            "protected_bytes (built / decoded)",
            lambda: protected_bytes(request, request.extensions[-1]),
            lambda: protected_bytes(decoded_request, last),
        ),
    ]
