"""Data-plane throughput: the per-packet Python work of mvpn's data flow, and the HA-FA tunnel.

Run with ``python -m benchmarks.dataplane``. For 1400-byte inner packets (the TUN MTU,
docs/protocol.md 10) it times, on one core, :meth:`Endpoint.seal` (CN), :meth:`Relay.forward`
(HA) and :meth:`Endpoint.open` (MN), beside two references measured in the same run (one
AES-256-GCM encryption and one HMAC-SHA256 of 1400 bytes: the cryptography every packet
needs), then frames per second through :class:`~mvpn.tunnel.client.TunnelClient` to a
:class:`~mvpn.tunnel.protocol.TunnelServerFactory` over a loopback TCP connection in this
process (both ends share the one reactor and core). It prints a Markdown table and asserts
nothing: machines are noisy, compare the ratios (TARGETS.md).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import Any, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from mvpn.core.dataplane import DataPlane, DataSession, Endpoint, NodeKind, Relay
from mvpn.crypto.keys import PrivateKeys, PublicKeys
from mvpn.tunnel.client import TunnelClient
from mvpn.tunnel.protocol import TunnelIdentity, TunnelServerFactory
from mvpn.wire.codes import EncrSecPar
from mvpn.wire.data import TunnelRole

INNER_SIZE = 1400
SPI = 0x1000
NOW = 0.0


def _rate(n: int, seconds: float, inner_bytes: int) -> tuple[float, float]:
    return n / seconds, n * inner_bytes * 8 / seconds / 1e6


def _best(repeats: int, run: Callable[[], float]) -> float:
    """The shortest of ``repeats`` timings (the least disturbed by the noisy machine)."""
    return min(run() for _ in range(repeats))


def bench_dataplane(n: int, repeats: int) -> list[tuple[str, float, float]]:
    """Rows of (operation, packets/s, inner Mbit/s)."""
    auth, k1, k2 = os.urandom(32), os.urandom(32), os.urandom(32)
    inner = os.urandom(INNER_SIZE)
    rows: list[tuple[str, float, float]] = []

    aead = AESGCM(k1)
    nonce = bytes(12)

    def aes() -> float:
        t = time.perf_counter()
        for _ in range(n):
            aead.encrypt(nonce, inner, b"")
        return time.perf_counter() - t

    base = hmac.HMAC(auth, digestmod=hashlib.sha256)

    def mac() -> float:
        t = time.perf_counter()
        for _ in range(n):
            h = base.copy()
            h.update(inner)
            h.digest()
        return time.perf_counter() - t

    rows.append(("reference: AES-256-GCM encrypt", *_rate(n, _best(repeats, aes), INNER_SIZE)))
    rows.append(("reference: HMAC-SHA256", *_rate(n, _best(repeats, mac), INNER_SIZE)))

    def chain() -> tuple[Endpoint, Relay, Endpoint]:
        planes = {kind: DataPlane(kind) for kind in NodeKind}
        enc = EncrSecPar.AES_256_GCM
        planes[NodeKind.CN].install(DataSession.for_cn(SPI, auth, enc, k1, k2, NOW))
        planes[NodeKind.HA].install(DataSession.for_relay(SPI, auth, enc, NOW))
        planes[NodeKind.FA].install(DataSession.for_relay(SPI, auth, enc, NOW))
        planes[NodeKind.MN].install(DataSession.for_mn(SPI, auth, enc, k1, k2, NOW))
        return (
            Endpoint(planes[NodeKind.CN]),
            Relay(planes[NodeKind.HA]),
            Endpoint(planes[NodeKind.MN]),
        )

    def seal() -> float:
        cn, _, _ = chain()
        t = time.perf_counter()
        for _ in range(n):
            cn.seal(SPI, inner)
        return time.perf_counter() - t

    rows.append(("Endpoint.seal (CN)", *_rate(n, _best(repeats, seal), INNER_SIZE)))

    def forward() -> float:
        cn, ha, _ = chain()
        packets = [cn.seal(SPI, inner) for _ in range(n)]
        t = time.perf_counter()
        for p in packets:
            ha.forward(p, False)
        return time.perf_counter() - t

    rows.append(("Relay.forward (HA)", *_rate(n, _best(repeats, forward), INNER_SIZE)))

    def open_() -> float:
        cn, ha, mn = chain()
        fa_plane = DataPlane(NodeKind.FA)
        fa_plane.install(DataSession.for_relay(SPI, auth, EncrSecPar.AES_256_GCM, NOW))
        fa = Relay(fa_plane)
        packets = [fa.forward(ha.forward(cn.seal(SPI, inner), False), False) for _ in range(n)]
        t = time.perf_counter()
        for p in packets:
            mn.open(p)
        return time.perf_counter() - t

    rows.append(("Endpoint.open (MN)", *_rate(n, _best(repeats, open_), INNER_SIZE)))
    return rows


async def bench_tunnel(reactor: Any, frames: int) -> tuple[float, float]:
    """(frames/s, Mbit/s of type-55 packets) from a TunnelClient to a server on loopback."""
    ha = TunnelIdentity(1, TunnelRole.HOME_AGENT, PrivateKeys.generate())
    fa = TunnelIdentity(2, TunnelRole.FOREIGN_AGENT, PrivateKeys.generate())
    keys: dict[int, PublicKeys] = {1: ha.keys.public, 2: fa.keys.public}
    received = [0]

    def on_data(addr: bytes, packet: bytes) -> None:
        received[0] += 1

    server = TunnelServerFactory(fa, reactor, lambda i, r: keys[i], on_data)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server)
    client = TunnelClient(
        reactor,
        cast(Any, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)),
        ha,
        2,
        lambda i, r: keys[i],
        lambda a, p: None,
    )
    client.startService()
    await client.when_ready()
    packet = os.urandom(INNER_SIZE + 52)  # a type-55 packet around a 1400-byte inner one
    mn = bytes(4)
    sent = 0
    # The tunnel keeps every frame until the FA acknowledges it, at most 1 MiB (about 700 of
    # these frames): send while there is room, so that none is refused.
    session = client.session
    frame_size = 17 + len(packet)  # Frame Length, Type, Sequence, MN ADDR, packet
    t = time.perf_counter()
    while received[0] < frames:
        room = min(
            (session.max_bytes - session.bytes) // frame_size,
            session.max_frames - len(session),
            512,
            frames - sent,
        )
        for _ in range(room):
            sent += client.send_data(mn, packet)
        await task.deferLater(reactor, 0, lambda: None)
    elapsed = time.perf_counter() - t
    await client.stopService()
    await port.stopListening()
    for protocol in list(server.connections.values()):
        protocol.transport.abortConnection()  # type: ignore[union-attr]
    return frames / elapsed, frames * len(packet) * 8 / elapsed / 1e6


def main(argv: list[str] | None = None) -> int:
    """Time every case and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=50_000, help="packets per timing")
    parser.add_argument("--frames", type=int, default=200_000, help="tunnel frames")
    parser.add_argument("--repeats", type=int, default=3, help="timings per case (best kept)")
    args = parser.parse_args(argv)

    rows = bench_dataplane(args.packets, args.repeats)
    print(f"| operation ({INNER_SIZE}-byte inner packets, one core) | packets/s | Mbit/s |")
    print("| --- | ---: | ---: |")
    for name, pps, mbps in rows:
        print(f"| {name} | {pps:,.0f} | {mbps:,.0f} |")

    async def run(reactor: Any) -> None:
        fps, mbps = await bench_tunnel(reactor, args.frames)
        print()
        print(f"| tunnel over loopback TCP ({INNER_SIZE + 52}-byte packets) | frames/s | Mbit/s |")
        print("| --- | ---: | ---: |")
        print(f"| TunnelClient -> TunnelServerFactory, one process | {fps:,.0f} | {mbps:,.0f} |")

    # task.react runs the reactor and exits the process when run() is done.
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)), [])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
