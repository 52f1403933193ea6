"""Handover in the namespace lab: the delivery gap and the bytes lost while the MN moves.

TARGETS.md (Handover): the MN moves from one FA to another in the middle of a TCP transfer; no
byte of the inner TCP stream is lost and the gap in delivery stays within two registration
round trips plus 20 ms (draft 3.3, docs/protocol.md 9: the key transfer and the new FA's
handover hold).

With the lab running (:class:`mvpn.lab.deploy.MvpnLab`: CN -> HA -> FA -> MN, each a twistd
process in its namespace), at the same time:

- a UDP probe stream, one datagram per millisecond from the CN to the MN's home address
  (:mod:`benchmarks.probe`): the gap of one move is the longest silence between two arrivals
  from the move's request until one second after the lab saw it complete;
- a paced TCP transfer (10 Mbit/s) from the CN to the MN's home address, hashed (SHA-256) at
  both ends: ``bytes_lost`` is what was sent less what arrived, and the hashes must match.

During them the MN moves ``moves`` times, alternating FA2 and FA1 (``mvpn move``).
``move_s`` is how long each move took until the HA's binding and the MN's key transfer named
the new FA (``MvpnLab.wait_moved``, which polls ``mvpn status``: an upper bound of the
registration round trip, with the polling period in it).
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from statistics import median
from typing import Protocol

from mvpn.lab.netns import CN, MN, LabTopology

PROBE_PORT = 5301
TRANSFER_PORT = 5302
TRANSFER_MBIT = 10.0
PROBE_INTERVAL_S = 0.001
AFTER_MOVE_S = 1.0
"""How long after a completed move its gap window extends (in-flight data drains)."""


class Lab(Protocol):
    """What this benchmark needs of :class:`mvpn.lab.deploy.MvpnLab`."""

    topology: LabTopology
    mn_home: IPv4Address

    def current_fa(self) -> str: ...

    def move(self, fa: str) -> None: ...

    def wait_moved(self, fa: str, timeout: float = 20.0) -> float: ...


def _probe(
    topology: LabTopology, ns: str, command: str, out: Path, *args: str
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "benchmarks.probe", command, "--out", str(out), *args]
    return topology.exec(ns, argv, cwd=Path(__file__).resolve().parent.parent)


def gaps(arrivals: list[float], windows: list[tuple[float, float]]) -> list[float]:
    """The longest silence, in seconds, between consecutive ``arrivals`` (sorted) around each
    ``(start, end)`` window: pairs whose later arrival is after ``start`` and whose earlier one
    is before ``end``. A window with no arrival after it counts the silence up to ``end``."""
    result = []
    for start, end in windows:
        i = bisect.bisect_right(arrivals, start)
        previous = arrivals[i - 1] if i > 0 else start
        longest = 0.0
        while i < len(arrivals) and previous <= end:
            longest = max(longest, arrivals[i] - previous)
            previous = arrivals[i]
            i += 1
        if previous <= end and (i == len(arrivals)):
            longest = max(longest, end - previous)
        result.append(longest)
    return result


def measure_handover(
    lab: Lab,
    workdir: Path,
    moves: int = 5,
    interval: float = 2.0,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """Move the MN ``moves`` times during a probe stream and a hashed TCP transfer."""
    topology, home = lab.topology, str(lab.mn_home)
    workdir.mkdir(parents=True, exist_ok=True)
    duration = 1.5 + moves * interval + 1.5
    files = {name: workdir / f"{name}.json" for name in ("urecv", "usend", "trecv", "tsend")}
    receivers = [
        _probe(topology, MN, "udp-recv", files["urecv"], "--address", home,
               "--port", str(PROBE_PORT), "--seconds", f"{duration + 3:g}"),
        _probe(topology, MN, "tcp-recv", files["trecv"], "--address", home,
               "--port", str(TRANSFER_PORT), "--seconds", "60"),
    ]  # fmt: skip
    time.sleep(0.5)  # both listening before the senders start
    senders = [
        _probe(topology, CN, "udp-send", files["usend"], "--address", home,
               "--port", str(PROBE_PORT), "--seconds", f"{duration:g}",
               "--interval", f"{PROBE_INTERVAL_S:g}"),
        _probe(topology, CN, "tcp-send", files["tsend"], "--address", home,
               "--port", str(TRANSFER_PORT), "--seconds", f"{duration:g}",
               "--mbit", f"{TRANSFER_MBIT:g}"),
    ]  # fmt: skip
    start = time.monotonic()
    time.sleep(1.5)
    windows: list[tuple[float, float]] = []
    move_s: list[float] = []
    target = "fa2" if lab.current_fa() == "fa1" else "fa1"
    for i in range(moves):
        asked = time.monotonic()
        lab.move(target)
        took = lab.wait_moved(target)
        move_s.append(took)
        windows.append((asked, asked + took + AFTER_MOVE_S))
        log(f"  move {i + 1}/{moves} to {target}: {took * 1000:,.0f} ms")
        target = "fa1" if target == "fa2" else "fa2"
        time.sleep(max(0.0, start + 1.5 + (i + 1) * interval - time.monotonic()))
    for proc in senders + receivers:
        proc.wait(timeout=duration + 90)
    arrivals_raw = json.loads(files["urecv"].read_text())["arrivals"]
    arrivals = sorted(t for _, t in arrivals_raw)
    probes_sent = int(json.loads(files["usend"].read_text())["sent"])
    sent, received = (json.loads(files[n].read_text()) for n in ("tsend", "trecv"))
    gap_ms = [g * 1000 for g in gaps(arrivals, windows)]
    return {
        "moves": moves,
        "gap_ms_median": median(gap_ms),
        "gap_ms_max": max(gap_ms),
        "gap_ms_runs": gap_ms,
        "move_s_median": median(move_s),
        "move_s_runs": move_s,
        "probes_sent": probes_sent,
        "probes_lost": probes_sent - len({seq for seq, _ in arrivals_raw}),
        "bytes_sent": sent["bytes"],
        "bytes_received": received["bytes"],
        "bytes_lost": sent["bytes"] - received["bytes"],
        "sha256_match": sent["sha256"] == received["sha256"],
    }
