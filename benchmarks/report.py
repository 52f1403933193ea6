"""``make bench``: every figure of TARGETS.md in one run, side by side with the peers.

Runs, in this order, and writes ``benchmarks/results/latest.json``, ``latest.md`` and PNG plots
(``benchmarks/results/*.png``):

1. ``registration``: first contacts and re-registrations per second at one HA (a twistd
   process) on loopback, and the bound its own public-key operations set
   (:mod:`benchmarks.registration`);
2. ``dataplane``: the per-packet Python work of each hop on one core, beside AES-256-GCM and
   HMAC-SHA256 of the same packet (:mod:`benchmarks.dataplane`);
3. ``scale``: HA memory per binding and CPU per re-registration from 1,000 to 10,000 mobile
   nodes (:mod:`benchmarks.scale`);
4. as root, in the namespace lab (:class:`mvpn.lab.deploy.MvpnLab`): ``tunnel``, iperf3
   through MVPN, OpenVPN (TCP, AES-256-GCM), wireguard-go and a bare veth, interleaved in
   the same topology (:mod:`benchmarks.tunnels`); ``profile``, py-spy on every MVPN daemon
   during one more transfer (:mod:`benchmarks.hotspots`); ``handover``, the delivery gap and
   the bytes lost over repeated moves (:mod:`benchmarks.handover`).

A part that cannot run (not root, a package that will not install, the lab that does not
start) is reported as not measured with the reason, never faked; the others still run.
Every target is a ratio against a reference of the same run (TARGETS.md). Asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol, cast

from benchmarks import dataplane, registration, scale
from benchmarks.handover import Lab, measure_handover
from benchmarks.hotspots import profile_during
from benchmarks.tunnels import (
    IperfResult,
    PeerResult,
    iperf3,
    measure_peers,
    tunnel_figures,
)
from mvpn.lab.netns import CN, FA1, FA2, HOME, MN, LabTopology, requirements, run_prefix

RESULTS = Path("benchmarks/results")

Figures = dict[str, Any]


class StartableLab(Lab, Protocol):
    """The parts of :class:`mvpn.lab.deploy.MvpnLab` the report drives."""

    def start(self, timeout: float = 60.0) -> None: ...

    def stop(self) -> None: ...


def _log(text: str) -> None:
    print(text, flush=True)


def _section(name: str, run: Callable[[], Figures]) -> Figures:
    """Run one part; a failure becomes ``{"error": ...}`` and the report goes on."""
    _log(f"== {name}")
    start = time.monotonic()
    try:
        figures = run()
    except Exception as e:
        traceback.print_exc()
        figures = {"error": f"{type(e).__name__}: {e}"}
    _log(f"   ({time.monotonic() - start:.0f} s)")
    return figures


def _registration(nodes: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="mvpn-bench-reg-") as tmp:
        return dict(registration.run(Path(tmp), nodes, 32))


def _dataplane() -> Figures:
    rows = dataplane.bench_dataplane(20_000, 3)
    return {name: {"packets_per_s": pps, "mbit_s": mbit} for name, pps, mbit in rows}


def _scale(checkpoints: list[int]) -> Figures:
    with tempfile.TemporaryDirectory(prefix="mvpn-bench-scale-") as tmp:
        return scale.run(Path(tmp), checkpoints)


def _daemon_pids(topology: LabTopology) -> dict[str, int]:
    """The twistd process of each MVPN role, found in its namespace."""
    roles = {"ha": HOME, "fa1": FA1, "fa2": FA2, "mn": MN, "cn": CN}
    pids: dict[str, int] = {}
    for role, ns in roles.items():
        # The TCs run in home and fa1 too: match the role's own twistd plugin.
        plugin = f"mvpn-{role[:2]}".encode()
        listed = subprocess.run(
            ["ip", "netns", "pids", topology.namespace(ns)], capture_output=True, text=True
        )
        for word in listed.stdout.split():
            try:
                cmdline = Path(f"/proc/{word}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(b"twistd" in part for part in cmdline) and plugin in cmdline:
                pids[role] = int(word)
                break
    return pids


def _lab_parts(workdir: Path, seconds: float, repeats: int, moves: int) -> dict[str, Figures]:
    """The tunnel comparison, the profile and the handover, in one lab (root)."""
    missing = requirements()
    if missing:
        reason = "not measured: " + "; ".join(str(m) for m in missing)
        return {"tunnel": {"error": reason}, "handover": {"error": reason}}
    out: dict[str, Figures] = {}
    with ExitStack() as stack:
        lab: StartableLab | None = None
        lab_error = ""
        try:
            deploy = importlib.import_module("mvpn.lab.deploy")
            lab = cast(StartableLab, deploy.MvpnLab(workdir / "lab", log=_log))
            stack.callback(lab.stop)
            _log("starting the MVPN lab (CN -> HA -> FA -> MN)")
            lab.start()
        except Exception as e:
            traceback.print_exc()
            lab_error = f"MVPN lab unusable: {type(e).__name__}: {e}"
            lab = None
        if lab is not None:
            topology = lab.topology
        else:
            topology = stack.enter_context(LabTopology(run_prefix("bench")))
        extra: dict[str, Callable[[], IperfResult]] = {}
        if lab is not None:
            mn_home = lab.mn_home
            extra["mvpn"] = lambda: iperf3(topology, MN, CN, mn_home, seconds)
        _log("tunnels: veth, OpenVPN TCP, wireguard-go" + (", MVPN" if extra else ""))
        peers: dict[str, PeerResult] = measure_peers(
            topology, workdir / "peers", seconds, repeats, _log, extra
        )
        if lab is None:
            peers["mvpn"] = {"error": lab_error}
        out["tunnel"] = tunnel_figures(peers)
        if lab is None:
            out["handover"] = {"error": lab_error}
            out["profile"] = {"error": lab_error}
            return out
        active = lab
        out["profile"] = _section(
            "profile (py-spy)",
            lambda: profile_during(
                _daemon_pids(topology),
                seconds,
                workdir / "profile",
                lambda: iperf3(topology, MN, CN, active.mn_home, seconds),
            ),
        )
        out["handover"] = _section(
            "handover", lambda: measure_handover(active, workdir / "handover", moves, log=_log)
        )
    return out


# --- the report -----------------------------------------------------------------------------


def _fmt(value: object, digits: int = 1) -> str:
    if isinstance(value, bool) or value is None:
        return "not measured" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**not met**")


def _num(section: Figures, key: str) -> float | None:
    value = section.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def targets(result: Figures) -> list[tuple[str, str, str, str]]:
    """(target, measured, required, verdict) rows against TARGETS.md."""
    reg, tun = result.get("registration", {}), result.get("tunnel", {})
    hand, sc = result.get("handover", {}), result.get("scale", {})
    rows = []
    for key, label, need in (
        ("mvpn_vs_openvpn_tcp", "MVPN / OpenVPN TCP throughput", 1.0),
        ("mvpn_vs_wireguard_go", "MVPN / wireguard-go throughput", 1.0),
    ):
        value = _num(tun, key)
        rows.append(
            (
                label,
                _fmt(value, 2),
                f">= {need:g}",
                _verdict(None if value is None else value >= need),
            )
        )
    for key, label, need in (
        ("first_contact_vs_bound", "first contacts / public-key bound", 0.7),
        ("reregistration_vs_first_contact", "re-registrations / first contacts", 10.0),
    ):
        value = _num(reg, key)
        rows.append(
            (
                label,
                _fmt(value, 2),
                f">= {need:g}",
                _verdict(None if value is None else value >= need),
            )
        )
    lost = hand.get("bytes_lost")
    rows.append(
        (
            "handover bytes lost (inner TCP, SHA-256 checked)",
            _fmt(lost),
            "0",
            _verdict(None if lost is None else lost == 0 and bool(hand.get("sha256_match"))),
        )
    )
    gap = hand.get("gap_ms", {}) if isinstance(hand.get("gap_ms"), dict) else {}
    gap_max, move_s = _num(gap, "max"), _num(hand, "move_s_median")
    bound = None if move_s is None else 2 * move_s * 1000 + 20
    rows.append(
        (
            "handover gap, max over moves (ms)",
            _fmt(gap_max),
            "<= 2 x move time + 20 = " + _fmt(bound),
            _verdict(None if gap_max is None or bound is None else gap_max <= bound),
        )
    )
    for key, label in (
        ("memory_growth_ratio", "scale: memory per binding, 10,000 / 1,000 nodes"),
        ("cpu_growth_ratio", "scale: CPU per re-registration, 10,000 / 1,000 nodes"),
    ):
        value = _num(sc, key)
        rows.append(
            (
                label,
                _fmt(value, 2),
                "<= 1.25 (flat)",
                _verdict(None if value is None else value <= 1.25),
            )
        )
    return rows


def markdown(result: Figures) -> str:
    """latest.md: the targets, then every section's keys."""
    lines = [
        f"# mvpn benchmarks, {result['when']}",
        "",
        f"Machine: {result['machine']}. Every target is a ratio against a reference measured "
        "in the same run (../../../shared/TARGETS.md).",
        "",
        "## Targets",
        "",
        "| target | measured | required | verdict |",
        "| --- | ---: | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(result)]
    tun = result.get("tunnel", {})
    lines += ["", "## tunnel (iperf3 TCP, one stream, median Mbit/s)", ""]
    lines += ["| tunnel | Mbit/s | runs | note |", "| --- | ---: | --- | --- |"]
    for name in ("mvpn", "openvpn_tcp", "wireguard_go", "veth"):
        runs = ", ".join(f"{v:,.0f}" for v in tun.get(f"{name}_runs_mbit_s", []))
        note = tun.get(f"{name}_error") or tun.get(f"{name}_data_channel", "")
        lines.append(f"| {name} | {_fmt(tun.get(f'{name}_mbit_s'))} | {runs} | {note} |")
    if "error" in tun:
        lines.append(f"\n{tun['error']}")
    for section in ("registration", "handover", "scale", "dataplane", "profile"):
        figures = result.get(section, {})
        lines += ["", f"## {section}", ""]
        if section == "scale" and "curve" in figures:
            keys = list(figures["curve"][0])
            lines += ["| " + " | ".join(keys) + " |", "|" + " ---: |" * len(keys)]
            lines += [
                "| " + " | ".join(_fmt(p[k], 0) for k in keys) + " |" for p in figures["curve"]
            ]
            figures = {k: v for k, v in figures.items() if k != "curve"}
        if section == "profile":
            lines += _profile_lines(figures)
            continue
        lines += ["| key | value |", "| --- | ---: |"]
        for key, value in figures.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    shown = ", ".join(_fmt(x, 2) for x in v) if isinstance(v, list) else _fmt(v, 2)
                    lines.append(f"| {section}.{key}.{sub} | {shown} |")
            elif isinstance(value, list):
                lines.append(f"| {section}.{key} | {', '.join(_fmt(v, 3) for v in value)} |")
            else:
                lines.append(f"| {section}.{key} | {_fmt(value, 2)} |")
    return "\n".join(lines) + "\n"


def _profile_lines(profile: Figures) -> list[str]:
    lines: list[str] = []
    if "error" in profile:
        return [str(profile["error"])]
    for role, figures in profile.items():
        if not isinstance(figures, dict) or "error" in figures:
            why = figures.get("error") if isinstance(figures, dict) else figures
            lines.append(f"- {role}: not profiled ({why})")
            continue
        lines.append(f"### {role}: busy {figures['busy'] * 100:.0f} % of one core")
        lines += ["", "| own time | % |", "| --- | ---: |"]
        lines += [f"| `{name}` | {pct:.1f} |" for name, pct in figures["own"]]
        lines += ["", "| mvpn code path (inclusive) | % |", "| --- | ---: |"]
        lines += [f"| `{name}` | {pct:.1f} |" for name, pct in figures["mvpn_inclusive"]]
        lines.append("")
    return lines


def plots(result: Figures, directory: Path) -> list[Path]:
    """PNG plots of the tunnels, registration, scale curve and handover gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = directory / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    tun = result.get("tunnel", {})
    names = [n for n in ("mvpn", "openvpn_tcp", "wireguard_go") if tun.get(f"{n}_mbit_s")]
    if names:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(names, [tun[f"{n}_mbit_s"] for n in names], color=["C0", "C1", "C2"][: len(names)])
        ax.set_ylabel("Mbit/s (iperf3 TCP, median)")
        veth = tun.get("veth_mbit_s")
        ax.set_title(f"Tunnels, same run (veth without tunnel: {_fmt(veth, 0)} Mbit/s)")
        save(fig, "tunnels.png")
    reg = result.get("registration", {})
    keys = ["first_contact_per_s", "crypto_bound_per_s", "reregistration_per_s"]
    if all(k in reg for k in keys):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(["first contact", "public-key bound", "re-registration"], [reg[k] for k in keys])
        ax.set_ylabel("per second")
        ax.set_title("Registrations at one HA")
        save(fig, "registration.png")
    curve = result.get("scale", {}).get("curve")
    if curve:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        nodes = [p["nodes"] for p in curve]
        left.plot(
            nodes, [p["heap_per_binding_bytes"] for p in curve], "D-", label="heap / binding"
        )
        left.plot(nodes, [p["rss_per_binding_bytes"] for p in curve], "o-", label="RSS / binding")
        left.plot(
            nodes,
            [p["rss_per_added_binding_bytes"] for p in curve],
            "s--",
            label="RSS / added binding",
        )
        left.plot(
            nodes, [p["db_per_binding_bytes"] for p in curve], "^:", label="SQLite / binding"
        )
        left.set_xlabel("mobile nodes")
        left.set_ylabel("bytes")
        left.set_ylim(bottom=0)
        left.legend()
        right.plot(nodes, [p["cpu_per_reregistration_us"] for p in curve], "o-", label="CPU")
        right.plot(nodes, [p["wall_per_reregistration_us"] for p in curve], "s--", label="wall")
        right.set_xlabel("mobile nodes")
        right.set_ylabel("µs per re-registration")
        right.set_ylim(bottom=0)
        right.legend()
        fig.suptitle("HA scale")
        save(fig, "scale.png")
    hand = result.get("handover", {})
    gap = hand.get("gap_ms")
    if isinstance(gap, dict) and gap.get("runs"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        moves = list(range(1, len(gap["runs"]) + 1))
        ax.bar(moves, gap["runs"], label="delivery gap")
        ax.plot(moves, [s * 1000 for s in hand["move_s_runs"]], "ko-", label="move time")
        ax.set_xlabel("move")
        ax.set_ylabel("ms")
        ax.legend()
        ax.set_title(f"Handover: bytes lost {hand.get('bytes_lost')}")
        save(fig, "handover.png")
    return written


def main(argv: list[str] | None = None) -> int:
    """Run every part, write latest.json, latest.md and the plots."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per iperf3 run")
    parser.add_argument("--repeats", type=int, default=3, help="iperf3 rounds per tunnel")
    parser.add_argument("--moves", type=int, default=5, help="handovers")
    parser.add_argument("--nodes", type=int, default=500, help="registration benchmark nodes")
    parser.add_argument(
        "--checkpoints",
        default=",".join(str(c) for c in scale.CHECKPOINTS),
        help="scale: comma-separated population sizes",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-lab", action="store_true", help="skip the namespace parts")
    args = parser.parse_args(argv)

    def terminated(signum: int, frame: object) -> None:
        # Unwind (lab.stop(), topology down) instead of dying with namespaces left behind.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    result: Figures = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    result["registration"] = _section("registration", lambda: _registration(args.nodes))
    result["dataplane"] = _section("dataplane", _dataplane)
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    result["scale"] = _section("scale", lambda: _scale(checkpoints))
    if args.no_lab:
        reason = "not measured: --no-lab"
        result.update({"tunnel": {"error": reason}, "handover": {"error": reason}})
    else:
        with tempfile.TemporaryDirectory(prefix="mvpn-bench-lab-") as tmp:
            parts = _section(
                "lab", lambda: _lab_parts(Path(tmp), args.seconds, args.repeats, args.moves)
            )
        if "error" in parts:
            parts = {"tunnel": parts, "handover": parts}
        result.update(parts)
    hand = result.get("handover", {})
    if "gap_ms_runs" in hand:
        hand["gap_ms"] = {
            "median": hand.pop("gap_ms_median"),
            "max": hand.pop("gap_ms_max"),
            "runs": hand.pop("gap_ms_runs"),
        }
    result["seconds"] = time.monotonic() - started
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (args.output / "latest.md").write_text(markdown(result))
    written = plots(result, args.output)
    print(markdown(result))
    print(
        f"written: {args.output / 'latest.json'}, {args.output / 'latest.md'}, "
        + ", ".join(str(p) for p in written)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
