"""The home agent at 1,000 to 10,000 mobile nodes: memory per binding, CPU per re-registration.

TARGETS.md (Scale): HA memory per binding and CPU per re-registration stay flat from 1,000
to 10,000 mobile nodes. The HA core (:class:`mvpn.core.ha.HomeAgent`) runs in this process
with its SQLite :class:`~mvpn.core.store.BindingStore` on a file (WAL, ``synchronous=FULL``),
fed in groups of :data:`GROUP` datagrams inside one store group, as the HA's twistd shell
does per reactor turn (mvpn/roles/ha/protocol.py: one commit, one fsync per group). This
process also plays the foreign agent and every mobile node with :mod:`mvpn.core.messages`.

The population grows in steps (:data:`CHECKPOINTS`). At each step, with every node
registered by a first contact:

- ``heap_per_binding_bytes`` (and ``heap_per_added_binding_bytes``, per binding added since
  the previous step): the HA's live Python heap per binding, from :mod:`tracemalloc` in a
  pass of its own (:func:`heap_curve`);
- ``rss_per_binding_bytes``: growth of this process's resident set since the baseline taken
  before the first registration, divided by the bindings (the MN keys this process holds for
  the simulation are all made before the baseline; what grows is the HA: its binding cache,
  its node tables, SQLite's page cache);
- ``db_per_binding_bytes``: the SQLite file (and its WAL) per binding;
- ``cpu_per_reregistration_us`` and ``wall_per_reregistration_us``: one re-registration of
  every node, CPU time of this process (``time.process_time``) and wall time per request,
  including its group commits. Building the requests is not timed.

Run: ``python -m benchmarks.scale [--checkpoints 1000,10000]``. Asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable, Sequence
from pathlib import Path

from mvpn.core import messages as msg
from mvpn.core.effects import Send
from mvpn.core.ha import HomeAgent, HomeAgentConfig, MobileNodeRecord
from mvpn.core.store import BindingStore
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.random import system_random
from mvpn.wire.codes import ReplyCode
from mvpn.wire.registration import Identification, RegistrationReply

CHECKPOINTS = (1_000, 2_500, 5_000, 10_000)
"""Population sizes at which the figures are taken (the curve)."""
GROUP = 32
"""Datagrams per store group: the registration benchmark's window of requests in flight."""
HA_ADDRESS = ipaddress.IPv4Address("127.0.0.1")
FA_ADDRESS = ipaddress.IPv4Address("127.0.0.2")
HA_ID, FA_ID = 0x0A00_0000_0000_0001, 0x0F00_0000_0000_0001
FIRST_HOME = int(ipaddress.IPv4Address("10.1.0.1"))
LIFETIME = 1800


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _identification() -> int:
    return int(Identification.from_unix_time(time.time()))


class Population:
    """The HA under test, the simulated FA and the mobile nodes' credentials."""

    def __init__(self, root: Path, size: int) -> None:
        self.ha_identity = msg.AgentIdentity(HA_ID, PrivateKeys.generate(), HA_ADDRESS)
        self.fa = msg.AgentIdentity(FA_ID, PrivateKeys.generate(), FA_ADDRESS)
        self.nodes = [
            msg.MobileCredentials(
                user_id=i + 1,
                dvc_mac_id=i + 1,
                sc_id=i + 1,
                keys=PrivateKeys.generate(),
                home_address=ipaddress.IPv4Address(FIRST_HOME + i),
                ha_address=HA_ADDRESS,
                ha_id=HA_ID,
                ha_public=self.ha_identity.public,
            )
            for i in range(size)
        ]
        self.store = BindingStore(root / "ha.sqlite")
        self.database = root / "ha.sqlite"
        self.ha = HomeAgent(
            self.ha_identity,
            self.store,
            system_random,
            HomeAgentConfig(max_lifetime=LIFETIME),
            mobile_nodes=[
                MobileNodeRecord(c.home_address, c.user_id, c.keys.public) for c in self.nodes
            ],
            fa_keys={FA_ID: self.fa.public},
        )
        self.registered = 0

    def _feed(self, datagrams: Sequence[bytes]) -> int:
        """Hand ``datagrams`` to the HA in store groups; return how many were accepted."""
        accepted = 0
        source = (str(FA_ADDRESS), 434)
        for start in range(0, len(datagrams), GROUP):
            self.store.begin_group()
            replies: list[bytes] = []
            for data in datagrams[start : start + GROUP]:
                effects = self.ha.datagram_received(data, source, time.time())
                replies += [e.data for e in effects if isinstance(e, Send)]
            self.store.end_group()
            accepted += sum(
                1 for r in replies if RegistrationReply.decode(r).code == ReplyCode.ACCEPTED
            )
        return accepted

    def first_contacts(self, nodes: Iterable[msg.MobileCredentials]) -> int:
        """Register ``nodes`` by first contact, prepared and fed a group at a time (the
        Identification timestamps must stay within the HA's 7 s tolerance)."""
        accepted = 0
        batch: list[bytes] = []
        for creds in [*nodes, None]:
            if creds is not None:
                data, _ = msg.build_first_contact(
                    creds, FA_ADDRESS, LIFETIME, _identification(), 1, system_random
                )
                pending = msg.parse_first_contact(data)
                fa_nonce = int.from_bytes(system_random(4), "big")
                batch.append(
                    msg.relay_first_contact(self.fa, pending, creds.ha_public, HA_ID, fa_nonce)
                )
            if len(batch) == GROUP * 8 or (creds is None and batch):
                accepted += self._feed(batch)
                batch = []
        return accepted

    def reregistrations(self) -> tuple[int, float, float]:
        """Re-register every registered node once; (accepted, CPU s, wall s) of the HA part."""
        datagrams = []
        for creds in self.nodes[: self.registered]:
            binding = self.ha.binding(creds.home_address)
            if binding is None or binding.keys is None:
                raise RuntimeError(f"{creds.home_address} has no binding with keys")
            data = msg.build_reregistration(
                creds, binding.keys, FA_ADDRESS, LIFETIME, _identification()
            )
            datagrams.append(msg.add_fa_ha_authenticator(data, binding.keys))
        cpu, wall = time.process_time(), time.perf_counter()
        accepted = self._feed(datagrams)
        return accepted, time.process_time() - cpu, time.perf_counter() - wall

    def database_bytes(self) -> int:
        """The SQLite file and its write-ahead log."""
        wal = self.database.with_name(self.database.name + "-wal")
        return self.database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def heap_curve(root: Path, checkpoints: Sequence[int]) -> list[tuple[float, float]]:
    """The HA's live Python heap per binding at each checkpoint, and per binding added since
    the previous one: a second population, registered with :mod:`tracemalloc` on.

    Tracing starts after the simulation's own state (the MN keys) is made, and what the
    simulated FA and MNs allocate per request is freed before each reading, so the live
    traced memory is what the HA keeps: bindings, keys, node tables, SQLite's Python side.
    (SQLite's own C allocations are not traced: ``rss_per_binding_bytes`` includes them.)
    A pass of its own because tracing slows everything it watches, which must not reach the
    CPU figures.
    """
    population = Population(root, max(checkpoints))
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        points: list[tuple[float, float]] = []
        previous_size, previous_heap = 0, 0
        for size in sorted(checkpoints):
            population.first_contacts(population.nodes[population.registered : size])
            population.registered = size
            gc.collect()
            heap = tracemalloc.get_traced_memory()[0] - baseline
            points.append((heap / size, (heap - previous_heap) / (size - previous_size)))
            previous_size, previous_heap = size, heap
    finally:
        tracemalloc.stop()
        population.store.close()
    return points


def run(root: Path, checkpoints: Sequence[int]) -> dict[str, object]:
    """Grow the population through ``checkpoints``; the curve and its flatness."""
    (root / "cpu").mkdir()
    (root / "heap").mkdir()
    heap = heap_curve(root / "heap", checkpoints)
    population = Population(root / "cpu", max(checkpoints))
    baseline = _rss_bytes()
    curve: list[dict[str, float]] = []
    previous_size, previous_rss = 0, 0
    for size in sorted(checkpoints):
        new = population.nodes[population.registered : size]
        accepted = population.first_contacts(new)
        if accepted != len(new):
            raise RuntimeError(f"{len(new) - accepted} of {len(new)} first contacts refused")
        population.registered = size
        rss = _rss_bytes() - baseline
        rereg_ok, cpu_s, wall_s = population.reregistrations()
        if rereg_ok != size:
            raise RuntimeError(f"{size - rereg_ok} of {size} re-registrations refused")
        heap_per_binding, heap_per_added = heap[len(curve)]
        point = {
            "nodes": size,
            "bindings": len(population.ha.bindings()),
            "heap_per_binding_bytes": heap_per_binding,
            "heap_per_added_binding_bytes": heap_per_added,
            "rss_per_binding_bytes": rss / size,
            # The growth since the previous step per binding added: fixed costs (SQLite's
            # page cache filling up, the allocator's first arenas) drop out of it.
            "rss_per_added_binding_bytes": (rss - previous_rss) / (size - previous_size),
            "db_per_binding_bytes": population.database_bytes() / size,
            "cpu_per_reregistration_us": cpu_s / size * 1e6,
            "wall_per_reregistration_us": wall_s / size * 1e6,
        }
        curve.append(point)
        previous_size, previous_rss = size, rss
        print(
            f"  {size:>6} nodes: {point['heap_per_binding_bytes']:,.0f} B heap/binding, "
            f"{point['cpu_per_reregistration_us']:,.0f} us CPU/re-registration"
        )
    population.store.close()
    first, last = curve[0], curve[-1]
    return {
        "curve": curve,
        # Flat means a binding added at 10,000 costs what one cost at 1,000.
        "memory_growth_ratio": last["heap_per_added_binding_bytes"]
        / first["heap_per_binding_bytes"],
        "cpu_growth_ratio": last["cpu_per_reregistration_us"] / first["cpu_per_reregistration_us"],
        f"heap_per_binding_bytes_at_{first['nodes']:.0f}": first["heap_per_binding_bytes"],
        f"heap_per_binding_bytes_at_{last['nodes']:.0f}": last["heap_per_binding_bytes"],
        f"cpu_per_reregistration_us_at_{first['nodes']:.0f}": first["cpu_per_reregistration_us"],
        f"cpu_per_reregistration_us_at_{last['nodes']:.0f}": last["cpu_per_reregistration_us"],
    }


def main(argv: list[str] | None = None) -> int:
    """Measure the curve and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoints",
        default=",".join(str(c) for c in CHECKPOINTS),
        help="comma-separated population sizes",
    )
    args = parser.parse_args(argv)
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    with tempfile.TemporaryDirectory(prefix="mvpn-bench-scale-") as tmp:
        figures = run(Path(tmp), checkpoints)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
