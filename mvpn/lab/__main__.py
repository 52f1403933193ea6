"""``python -m mvpn.lab`` (``make lab``, root): MVPN measured in network namespaces (issue 6).

Deploys every role as its own ``twistd`` process (:class:`mvpn.lab.deploy.MvpnLab`), then
from the correspondent node's namespace to the mobile node's home address, through the TUN
devices and MVPN (draft §3.5.1):

1. a real ``ping``: the round-trip time from its summary;
2. a real ``iperf3`` TCP transfer (server in ``mn`` on the home address, client in ``cn``,
   ``-t 10``), during which the MN moves to the other foreign agent half-way (draft §3.3):
   the throughput from iperf3's receiver, and the handover gap, the longest run of the
   receiver's 0.1 s intervals without a byte around the move.

It prints what it is doing as it goes and the transfer's progress every half second, ends
with the figures and exits 0, or 1 with the reason. Everything it created (processes,
namespaces, its work directory unless ``--keep``; on failure the logs stay) is removed,
also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mvpn.lab.deploy import LabError, MvpnLab
from mvpn.lab.netns import CN, MN, Need, TopologyError, down_on_signals, requirements
from mvpn.roles.control import ControlError

INTERVAL_S: Final = 0.1
"""iperf3's reporting interval: the resolution of the handover gap."""
PING_COUNT: Final = 20
PROGRESS_S: Final = 0.5
PROBE_LEAD_S: Final = 0.3
"""The gap probe starts sampling this long before the move..."""
PROBE_TAIL_S: Final = 1.0
"""...and stops this long after the move completed."""
PROBE_PAUSE_S: Final = 0.002
GAP_WINDOW_S: Final = (1.0, 5.0)
"""The gap is searched from 1 s before the move was asked for to 5 s after."""


class MeasurementError(Exception):
    """A measurement did not produce what it should (no reply, no transfer, no move)."""


@dataclass(frozen=True)
class Ping:
    """``ping``'s summary: packets and round-trip times (ms)."""

    sent: int
    received: int
    rtt_min_ms: float
    rtt_avg_ms: float
    rtt_max_ms: float


@dataclass(frozen=True)
class Transfer:
    """The iperf3 transfer with its handover."""

    mbit_s: float
    bytes_received: int
    retransmits: int
    moved_from: str
    moved_to: str
    move_s: float
    """Seconds from ``mvpn move`` until the HA's binding and the key transfer named the FA."""
    gap_ms: float
    """Longest run of receiver intervals without a byte around the move (0: none had)."""
    gap_resolution_ms: float
    probe_gap_ms: float
    """Longest time without a byte written into the MN's TUN device, sampled as fast as its
    control socket answers from just before the move to just after it."""
    bytes_after_move: int


def parse_ping(output: str) -> Ping:
    """The figures of ``ping``'s summary lines."""
    counts = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    if counts is None:
        raise MeasurementError(f"no ping summary in:\n{output}")
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/[\d.]+ ms", output)
    if rtt is None:
        raise MeasurementError(f"ping got no reply:\n{output}")
    return Ping(int(counts[1]), int(counts[2]), float(rtt[1]), float(rtt[2]), float(rtt[3]))


def handover_gap(intervals: Sequence[tuple[float, float, int]], move_at: float) -> float:
    """Seconds of the longest run of intervals ``(start, end, bytes)`` without a byte that
    overlaps the window around ``move_at`` (seconds since the transfer began)."""
    low, high = move_at - GAP_WINDOW_S[0], move_at + GAP_WINDOW_S[1]
    longest = run = 0.0
    for start, end, count in intervals:
        if end < low or start > high:
            run = 0.0
            continue
        run = run + (end - start) if count == 0 else 0.0
        longest = max(longest, run)
    return longest


def receiver_intervals(report: dict[str, Any]) -> list[tuple[float, float, int]]:
    """``(start, end, bytes)`` of the iperf3 server's (the receiver's) intervals."""
    server = report.get("server_output_json")
    if not isinstance(server, dict):
        raise MeasurementError("iperf3 returned no receiver intervals (--get-server-output)")
    return [
        (float(i["sum"]["start"]), float(i["sum"]["end"]), int(i["sum"]["bytes"]))
        for i in server["intervals"]
    ]


@dataclass(frozen=True)
class Handover:
    """One move during the transfer: when (seconds into it), how long until the HA and the
    key transfer named the new FA, the probe's gap and the bytes delivered before it."""

    at_s: float
    took_s: float
    probe_gap_s: float
    delivered_before: int


class GapProbe(threading.Thread):
    """Samples the MN's ``tun.written.bytes`` counter back to back until :meth:`finish`."""

    def __init__(self, lab: MvpnLab) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(ControlError):
                count = self.lab.role_status("mn")[1].get("tun.written.bytes", 0)
                self.samples.append((time.monotonic(), count))
            # A breath between queries: back-to-back status requests would load the MN's
            # reactor, which also moves the data being measured.
            time.sleep(PROBE_PAUSE_S)

    def finish(self) -> float:
        """Stop sampling; the longest time between two samples where the count grew."""
        self._done.set()
        self.join()
        return longest_silence(self.samples)


def longest_silence(samples: Sequence[tuple[float, int]]) -> float:
    """The longest time between successive growths of a counter sampled as ``(t, value)``."""
    growths = [t for (_, before), (t, v) in itertools.pairwise(samples) if v > before]
    return max((b - a for a, b in itertools.pairwise(growths)), default=0.0)


class Lab:
    """One run of the measurements on a started :class:`MvpnLab`."""

    def __init__(self, lab: MvpnLab, duration: int) -> None:
        self.lab = lab
        self.duration = duration

    def ping(self) -> Ping:
        """``ping`` from ``cn`` to the home address: answered, or :class:`MeasurementError`."""
        say(f"ping: {PING_COUNT} echo requests from cn to {self.lab.mn_home} through MVPN")
        argv = ["ping", "-q", "-c", str(PING_COUNT), "-i", "0.1", "-W", "2"]
        result = self.lab.topology.run(CN, [*argv, str(self.lab.mn_home)], timeout=30)
        ping = parse_ping(result.stdout)
        if ping.received == 0:
            raise MeasurementError("no echo reply from the mobile node's home address")
        return ping

    def transfer(self) -> Transfer:
        """The iperf3 transfer, with progress lines and the move half-way through."""
        lab, home = self.lab, str(self.lab.mn_home)
        say(f"iperf3: server in mn on {home}, client in cn, {self.duration} s of TCP")
        server = lab.topology.exec(
            MN,
            ["iperf3", "-s", "-1", "-B", home, "-i", str(INTERVAL_S), "-J"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_server(server)
        moved_from = lab.current_fa()
        moved_to = "fa2" if moved_from == "fa1" else "fa1"
        client_argv = ["iperf3", "-c", home, "-t", str(self.duration)]
        client_argv += ["-i", str(INTERVAL_S), "-J", "--get-server-output"]
        # A file, not a pipe: the JSON report (with 0.1 s intervals) outgrows a pipe's buffer
        # and iperf3 would block writing it while this loop polls.
        output = lab.workdir / "iperf3.json"
        with output.open("wb") as sink:
            client = lab.topology.exec(CN, client_argv, stdout=sink, stderr=subprocess.STDOUT)
        began = time.monotonic()
        base = self._delivered()
        handover: Handover | None = None
        while client.poll() is None:
            time.sleep(PROGRESS_S)
            elapsed = time.monotonic() - began
            delivered = self._delivered() - base
            fa = lab.current_fa()
            say(f"  {elapsed:4.1f} s  {delivered / 1e6:7.1f} MB into the MN's TUN  via {fa}")
            if handover is None and elapsed >= self.duration / 2:
                handover = self._handover(moved_from, moved_to, began, delivered)
            if elapsed > self.duration + 20:
                client.kill()
                raise MeasurementError("iperf3 did not finish")
        server.wait(timeout=10)
        out = output.read_text(errors="replace")
        if client.returncode != 0:
            raise MeasurementError(f"iperf3 failed ({client.returncode}): {out[-500:]}")
        if handover is None:
            raise MeasurementError("the transfer ended before the move")
        result = json.loads(out)
        received = result["end"]["sum_received"]
        return Transfer(
            mbit_s=float(received["bits_per_second"]) / 1e6,
            bytes_received=int(received["bytes"]),
            retransmits=int(result["end"]["sum_sent"].get("retransmits", 0)),
            moved_from=moved_from,
            moved_to=moved_to,
            move_s=handover.took_s,
            gap_ms=handover_gap(receiver_intervals(result), handover.at_s) * 1000,
            gap_resolution_ms=INTERVAL_S * 1000,
            probe_gap_ms=handover.probe_gap_s * 1000,
            bytes_after_move=self._delivered() - base - handover.delivered_before,
        )

    def _delivered(self) -> int:
        """Bytes the MN's daemon has written into its TUN device so far."""
        return int(self.lab.role_status("mn")[1].get("tun.written.bytes", 0))

    def _handover(self, old: str, new: str, began: float, delivered: int) -> Handover:
        """Move the MN from ``old`` to ``new`` with the gap probe sampling around it."""
        say(f"  moving the MN from {old} to {new} (mvpn move)")
        probe = GapProbe(self.lab)
        probe.start()
        time.sleep(PROBE_LEAD_S)
        at_s = time.monotonic() - began
        try:
            self.lab.move(new)
            took_s = self.lab.wait_moved(new)
            time.sleep(PROBE_TAIL_S)
        finally:
            gap_s = probe.finish()
        say(f"  moved: HA binding and key transfer at {new} after {took_s * 1000:.0f} ms")
        return Handover(at_s, took_s, gap_s, delivered)

    def _wait_server(self, server: subprocess.Popen[Any]) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise MeasurementError(f"the iperf3 server exited ({server.returncode})")
            listening = self.lab.topology.run(MN, ["ss", "-Htln", "sport = :5201"])
            if listening.stdout.strip():
                return
            time.sleep(0.05)
        raise MeasurementError("the iperf3 server did not start listening")


def say(line: str) -> None:
    """One progress line, at once (make's output is a pipe)."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def report(ping: Ping, transfer: Transfer) -> None:
    """The figures, as the last lines of the output."""
    gap = (
        f"{transfer.gap_ms:.0f} ms of {INTERVAL_S:g} s intervals without bytes"
        if transfer.gap_ms
        else f"every {INTERVAL_S:g} s interval had bytes"
    )
    lines = [
        "",
        "MVPN in network namespaces: CN -> HA -> tunnel -> FA -> MN, through TUN devices",
        f"  round-trip time  {ping.rtt_avg_ms:.2f} ms avg ({ping.rtt_min_ms:.2f}"
        f"-{ping.rtt_max_ms:.2f}), {ping.received}/{ping.sent} replies",
        f"  throughput       {transfer.mbit_s:.1f} Mbit/s TCP (iperf3 receiver,"
        f" {transfer.bytes_received / 1e6:.1f} MB, {transfer.retransmits} retransmits)",
        f"  handover         {transfer.moved_from} -> {transfer.moved_to}: binding and key"
        f" transfer in {transfer.move_s * 1000:.0f} ms",
        f"  handover gap     {transfer.probe_gap_ms:.0f} ms without a byte into the MN's TUN"
        f" (sampled); iperf3 receiver: {gap}",
        f"  after the move   {transfer.bytes_after_move / 1e6:.1f} MB delivered",
    ]
    print("\n".join(lines), flush=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the lab; 0 when every measurement worked, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m mvpn.lab", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="iperf3 seconds (default 10)")
    parser.add_argument("--workdir", type=Path, help="keep configs and logs here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    missing = requirements((Need.ROOT, Need.NETNS, Need.TUN, Need.PING, Need.IPERF3))
    if missing:
        for m in missing:
            print(f"mvpn lab: {m}", file=sys.stderr)
        print("mvpn lab: run it as root: sudo make lab", file=sys.stderr)
        return 1
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="mvpn-lab-", dir=args.workdir))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="mvpn-lab-"))
    keep = args.keep or args.workdir is not None
    # SIGTERM as an exception (after down_on_signals took the namespaces down), so that the
    # finally below also removes the work directory.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    lab = MvpnLab(workdir, log=say)
    ok = False
    try:
        with down_on_signals(lab.topology):
            lab.start()
            runner = Lab(lab, args.duration)
            ping = runner.ping()
            say(f"ping: {ping.received}/{ping.sent} replies, {ping.rtt_avg_ms:.2f} ms average")
            transfer = runner.transfer()
            say("stopping every process and removing the namespaces")
            lab.stop()
        if transfer.bytes_after_move <= 0:
            raise MeasurementError("no byte reached the MN after the move")
        report(ping, transfer)
        ok = True
        return 0
    except KeyboardInterrupt:
        print("\nmvpn lab: interrupted; everything it started is removed", file=sys.stderr)
        return 130
    except (LabError, MeasurementError, TopologyError, ControlError) as e:
        print(f"\nmvpn lab: FAILED: {e}", file=sys.stderr)
        print(lab.logs(20), file=sys.stderr)
        keep = True
        return 1
    finally:
        lab.stop()
        if keep:
            print(f"mvpn lab: configs and logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if ok:
            print("mvpn lab: OK", flush=True)


if __name__ == "__main__":
    sys.exit(main())
