"""Encode/decode cases for every MVPN wire structure, for ``benchmarks.wire_crypto``.

Sealed blobs and signatures are dummy bytes of their real suite-1 sizes (HPKE adds 56
bytes, a signature is 64), so the figures reflect the sizes seen on the wire.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Protocol

from mvpn.wire import control, data, mvpn_extensions, plain
from mvpn.wire.codes import AuthSecPar, EncrSecPar, MvpnError, ReplyCode, Suite

Case = tuple[str, Callable[[], object], Callable[[], object]]

_A = ipaddress.IPv4Address
_SUITE = Suite.ED25519_X25519_AES128GCM
_SIG = bytes(64)
_KEY = bytes(32)
_PUB = bytes(64)
_HELLO = bytes(16)
_SEAL_OVERHEAD = 56


def _sealed(plaintext_length: int) -> bytes:
    return bytes(plaintext_length + _SEAL_OVERHEAD)


class _Encodable(Protocol):
    def encode(self) -> bytes: ...


def _case(name: str, value: _Encodable, decode: Callable[[bytes], object]) -> Case:
    encode = value.encode
    encoded = encode()
    return (name, encode, lambda: decode(encoded))


def cases() -> list[Case]:
    """``(name, encode once, decode once)`` for every MVPN plaintext, extension, control
    message, the data packet and the tunnel frames."""
    mn, cn = _A("10.0.0.5"), _A("198.51.100.1")
    v = plain.RequestCommunicationInfo(mn, 204, cn, 0x0BADF00D, 1 << 63, 0x6010, bytes(32))
    q = plain.HomeInfo(1, ReplyCode.ACCEPTED, 2, 257, 300, _KEY, _KEY, _KEY, _PUB, 1234)
    t = plain.MobileReply(ReplyCode.ACCEPTED, 2, 257, 300, _KEY, _KEY, 250)
    session = plain.TransferredSession(258, cn, 204, 5, 6, _KEY)
    w = mvpn_extensions.HomeToMobileBlock(_sealed(plain.HomeToMobile.SIZE), _SIG)
    plaintexts: list[Any] = [
        plain.MobileInfo(0x0007ABCD, 0x02005E102030, 1234, 0, _KEY),
        plain.ForeignInfo(_A("192.0.2.1"), 1, 250),
        q,
        plain.HomeToMobile(2, 3, ReplyCode.ACCEPTED, 250, _PUB, 10),
        t,
        plain.KeyRefresh(_KEY, _KEY),
        v,
        plain.CorrespondentInfoForMN(258, _KEY, v, _SIG, _PUB, cn),
        plain.CorrespondentInfoForFA(_HELLO, 258, _KEY, 204, cn, mn, 0x6010),
        plain.CorrespondentInfoFAToMN(_HELLO, 258, 0x2010),
        plain.CorrespondentResponseForFA(258, 204, cn, 5, 6),
        plain.CorrespondentResponseForCN(258, mn, 1234, 1, _KEY, 0x6010, 5, 6, bytes(32)),
        plain.KeyTransferInfo((session, session)),
    ]
    result = [_case(f"plain.{type(p).__name__}", p, type(p).decode) for p in plaintexts]

    extensions: list[_Encodable] = [
        mvpn_extensions.MobileInfoExtension(_SUITE, 1, 10, 0, _sealed(59), _SIG),
        mvpn_extensions.ForeignInfoExtension(_SUITE, 250, _sealed(16), _SIG),
        mvpn_extensions.HomeInfoExtension(_SUITE, 1, 250, 10, w, _sealed(len(q.encode()) + 64)),
        mvpn_extensions.KeyRefreshExtension(258, 300, bytes(66 + 28)),
        mvpn_extensions.MobileReplyExtension(_SUITE, 2, w, _sealed(len(t.encode()) + 64)),
    ]
    result += [
        _case(f"ext.{type(e).__name__}", e, mvpn_extensions.decode_mvpn_extension)
        for e in extensions
    ]

    messages: list[_Encodable] = [
        control.RequestCommunication(204, mn, _sealed(len(v.encode()) + 64)),
        control.CorrespondentInfoToFA(10, mn, 258, bytes(400), bytes(100), _SIG),
        control.CorrespondentInfoToMN(250, mn, 258, bytes(400), bytes(78), _SIG),
        control.CorrespondentResponse(mn, 258, bytes(74), bytes(200), _SIG),
        control.CommunicationReply(258, 1, bytes(200), bytes(16)),
        control.KeyTransfer(mn, 257, bytes(1 + 2 * 51 + 28)),
        control.KeyTransferAck(mn, 257, 2, bytes(16)),
        control.ErrorMessage(MvpnError.PUBLIC_KEY_NOT_VALID, 257, "unknown key"),
    ]
    result += [_case(f"control.{type(m).__name__}", m, control.decode_control) for m in messages]

    packet = data.DataPacket(
        0,
        AuthSecPar.HMAC_SHA256_128,
        EncrSecPar.AES_256_GCM,
        True,
        258,
        1,
        bytes(1400 + 16),
        bytes(16),
    )
    packet_bytes = packet.encode()
    result.append(_case("data.DataPacket", packet, data.DataPacket.decode))
    # The forwarding hot loop without the HMAC: re-hop (encode side) and the two slices an
    # agent and an endpoint take from received bytes (decode side).
    result.append(
        (
            "data.forward",
            lambda: data.forward(packet_bytes, 1, lambda part: bytes(16)),
            lambda: (
                data.hop_authenticated_part(packet_bytes),
                data.additional_data(packet_bytes),
            ),
        )
    )
    frames: list[_Encodable] = [
        data.TunnelHello(10, data.TunnelRole.HOME_AGENT, 1 << 63, 1, 2, 3, _SIG),
        data.TunnelData(1, mn, packet_bytes),
        data.TunnelAck(1),
        data.TunnelKeepalive(),
    ]
    result += [_case(f"tunnel.{type(f).__name__}", f, data.decode_frame) for f in frames]
    return result
