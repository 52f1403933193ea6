"""Traffic ends for the handover benchmark, run inside the lab's namespaces.

Four commands, each a plain blocking program (no Twisted: it must not share the cost model of
what it measures), writing its result as JSON to ``--out``:

- ``udp-recv``: record the arrival time (``time.monotonic``, the same clock in every
  namespace of the host) and sequence number of every probe datagram;
- ``udp-send``: one datagram (sequence number, 8 bytes) every ``--interval`` seconds;
- ``tcp-recv``: accept one connection, read it to the end, count and hash (SHA-256) the bytes;
- ``tcp-send``: connect and send pseudo-random bytes paced at ``--mbit`` for ``--seconds``,
  then close; count and hash what was sent.

Used by :mod:`benchmarks.handover` as ``python -m benchmarks.probe <command> ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path

_SEQ = struct.Struct("!Q")


def udp_recv(bind: str, port: int, seconds: float, out: Path) -> None:
    """Record ``[sequence, arrival]`` pairs for ``seconds``."""
    arrivals: list[tuple[int, float]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, port))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(2048)
            except TimeoutError:
                break
            if len(data) >= _SEQ.size:
                arrivals.append((_SEQ.unpack_from(data)[0], time.monotonic()))
    out.write_text(json.dumps({"arrivals": arrivals}))


def udp_send(to: str, port: int, seconds: float, interval: float, out: Path) -> None:
    """Send a sequence-numbered datagram every ``interval`` seconds for ``seconds``."""
    sent, errors = 0, 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        while (now := time.monotonic()) - start < seconds:
            try:
                sock.sendto(_SEQ.pack(sent), (to, port))
            except OSError:
                errors += 1  # no route for a moment: the probe is lost, which is the point
            sent += 1
            time.sleep(max(0.0, start + sent * interval - now))
    out.write_text(json.dumps({"sent": sent, "send_errors": errors}))


def tcp_recv(bind: str, port: int, timeout: float, out: Path) -> None:
    """Accept one connection, read it to EOF; count and hash."""
    digest, received = hashlib.sha256(), 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((bind, port))
        server.listen(1)
        server.settimeout(timeout)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(timeout)
            while chunk := conn.recv(65536):
                digest.update(chunk)
                received += len(chunk)
    out.write_text(json.dumps({"bytes": received, "sha256": digest.hexdigest()}))


def tcp_send(to: str, port: int, seconds: float, mbit: float, out: Path) -> None:
    """Send random bytes at ``mbit`` Mbit/s for ``seconds``; count and hash them."""
    digest, sent = hashlib.sha256(), 0
    chunk_size = 16384
    per_chunk = chunk_size * 8 / (mbit * 1e6)
    deadline = time.monotonic() + 10.0
    while True:
        try:
            conn = socket.create_connection((to, port), timeout=30.0)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with conn:
        start = time.monotonic()
        chunks = 0
        while time.monotonic() - start < seconds:
            chunk = os.urandom(chunk_size)
            conn.sendall(chunk)
            digest.update(chunk)
            sent += len(chunk)
            chunks += 1
            time.sleep(max(0.0, start + chunks * per_chunk - time.monotonic()))
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(60.0)
        while conn.recv(4096):
            pass  # wait for the receiver's close: every byte was read
    out.write_text(json.dumps({"bytes": sent, "sha256": digest.hexdigest()}))


def main(argv: list[str] | None = None) -> int:
    """Dispatch one of the four commands."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["udp-recv", "udp-send", "tcp-recv", "tcp-send"])
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--mbit", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "udp-recv":
        udp_recv(args.address, args.port, args.seconds, args.out)
    elif args.command == "udp-send":
        udp_send(args.address, args.port, args.seconds, args.interval, args.out)
    elif args.command == "tcp-recv":
        tcp_recv(args.address, args.port, args.seconds, args.out)
    else:
        tcp_send(args.address, args.port, args.seconds, args.mbit, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
