"""Lookups per second through one Trusted Centre on loopback.

Run with ``python -m benchmarks.tc_lookup``. It provisions a throw-away domain in a temporary
directory, starts ``twistd -n mvpn-tc`` on 127.0.0.1 (a separate process, as in production),
which registers an HA's certificate from the store, and times ``TrustedCentreClient.lookup``
with the client cache off (every lookup crosses TLS and AMP to the TC and reads SQLite) at
several concurrencies, then with the cache on. It prints a Markdown table, asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint

from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore
from mvpn.pki.files import read_private_keys
from mvpn.roles.tc.client import TrustedCentreClient
from mvpn.roles.tc.tls import client_options

PASSWORD = b"benchmark"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_tc(store: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    twistd = Path(sys.executable).parent / "twistd"
    process = subprocess.Popen(
        [
            str(twistd),
            "-n",
            "--pidfile=",
            f"--logfile={log}",
            "mvpn-tc",
            f"--store={store}",
            "--interface=127.0.0.1",
            f"--port={port}",
        ]
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the TC did not start; see {log}")


async def _run(reactor: Any, store: DomainStore, port: int, seconds: float) -> None:
    ha = store.certificate("ha1")
    fa, fa_keys = store.certificate("fa1"), read_private_keys(store.key_path("fa1"))
    ca = store.ca_certificate()

    def client(cache_ttl: float) -> TrustedCentreClient:
        c = TrustedCentreClient(
            reactor,
            cast(IStreamClientEndpoint, TCP4ClientEndpoint(reactor, "127.0.0.1", port)),
            client_options(fa, fa_keys, ca),
            ca,
            cache_ttl=cache_ttl,
        )
        c.startService()
        return c

    async def measure(c: TrustedCentreClient, concurrency: int) -> tuple[int, float]:
        count = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                await c.lookup(ha.node_id)
                count += 1

        start = time.perf_counter()
        await defer.gatherResults(
            [defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)]
        )
        return count, time.perf_counter() - start

    print("| client cache | concurrent lookups | lookups | seconds | lookups/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    uncached = client(cache_ttl=0.0)
    await uncached.lookup(ha.node_id)  # connect and warm up
    for concurrency in (1, 8, 32):
        count, elapsed = await measure(uncached, concurrency)
        print(f"| off | {concurrency} | {count} | {elapsed:.2f} | {count / elapsed:,.0f} |")
        sys.stdout.flush()
    await uncached.stopService()
    cached = client(cache_ttl=300.0)
    await cached.lookup(ha.node_id)
    count, elapsed = await measure(cached, 1)
    print(f"| on | 1 | {count} | {elapsed:.2f} | {count / elapsed:,.0f} |")
    await cached.stopService()


def main(argv: list[str] | None = None) -> int:
    """Provision, start the TC, time lookups, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per row")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        now = datetime.datetime.now(datetime.UTC)
        store = DomainStore.init(root / "bench", "bench.example", PASSWORD, now)
        store.issue(Role.HA, "ha1", PASSWORD, now)
        store.issue(Role.FA, "fa1", PASSWORD, now)
        port = _free_port()
        process = _start_tc(store.path, port, root / "tc.log")
        try:
            cpus = os.cpu_count()
            print(f"# TC lookups on 127.0.0.1 (twistd mvpn-tc, pid {process.pid}, cpus {cpus})")
            task.react(
                lambda reactor: defer.Deferred.fromCoroutine(
                    _run(reactor, store, port, args.seconds)
                ),
                [],
            )
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        finally:
            process.terminate()
            process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
