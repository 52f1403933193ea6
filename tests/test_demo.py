"""``make demo`` (issue 6): the demo scenario runs in this process and as ``python -m
mvpn.demo``, every step is verified, and nothing is left behind. Nothing here needs root.

The summary's timings are printed by the demo, never asserted here: only what was verified
(sha256 equal, refusals counted, no public-key operation in re-registration) is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor

from mvpn.demo import DemoFailed, DemoSummary, run_demo

reactor: Any = _reactor

PHASES = (
    "set-up",
    "first contact",
    "CN session",
    "data",
    "re-registration",
    "handover",
    "data again",
    "attacks",
    "teardown",
)

ATTACKS = {
    "replayed Registration Request",
    "forged Registration Request",
    "replayed data packet",
    "forged data packet",
}

ROOT = Path(__file__).resolve().parent.parent


def _open_descriptors() -> set[object]:
    return set(reactor.getReaders()) | set(reactor.getWriters())


def _check(summary: DemoSummary) -> None:
    """What every verified run must show, whatever its timing."""
    assert summary.verified
    assert [p.name for p in summary.phases] == list(PHASES)
    assert {s.phase for s in summary.steps} == set(PHASES)
    # Data both ways in each of the three data phases, all intact.
    assert [(t.phase, t.direction) for t in summary.transfers] == [
        (phase, direction)
        for phase in ("data", "handover", "data again")
        for direction in ("CN -> MN", "MN -> CN")
    ]
    for transfer in summary.transfers:
        assert transfer.bytes > 0
        assert transfer.sent_sha256 == transfer.received_sha256
    assert summary.bytes_sent == summary.bytes_verified > 0
    # The stream reached the MN through both FAs around the move.
    assert summary.handover_via_old > 0 and summary.handover_via_new > 0
    assert summary.reregistration_pk_operations == 0
    assert summary.reregistration_tc_requests == 0
    assert {r.attack for r in summary.refusals} == ATTACKS
    by_attack = {r.attack: r for r in summary.refusals}
    assert by_attack["replayed data packet"].how == "data.drops.replay"
    assert by_attack["forged data packet"].how == "data.drops.bad-tag"
    assert by_attack["forged Registration Request"].how.startswith("reply ")
    # The correspondent set-up is the draft's messages: control datagrams were sent.
    session = next(p for p in summary.phases if p.name == "CN session")
    assert session.messages_by_kind["control"] >= 5


@pytest_twisted.ensureDeferred
async def test_demo_in_process_verifies_every_step_and_leaves_nothing(tmp_path: Path) -> None:
    """run_demo plays the whole scenario on this reactor and returns a summary in which every
    step is verified: sha256 equal for every transfer, the four attacks refused and counted,
    a re-registration without public-key operations. It prints one timeline line per step,
    removes its temporary directory (no log copy on success), closes every socket and leaves
    no timer armed."""
    open_before = _open_descriptors()
    calls_before = set(reactor.getDelayedCalls())
    lines: list[str] = []
    summary = await run_demo(reactor, out=lines.append, parent=tmp_path)
    _check(summary)
    step_lines = [line for line in lines if not line.startswith("--")]
    assert len(step_lines) == len(summary.steps)
    for step, line in zip(summary.steps, step_lines, strict=True):
        assert step.who in line and step.what in line
    assert list(tmp_path.iterdir()) == []
    assert _open_descriptors() == open_before
    assert [c for c in reactor.getDelayedCalls() if c not in calls_before and c.active()] == []


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "mvpn.demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_command_exits_0_with_the_summary_table(tmp_path: Path) -> None:
    """``python -m mvpn.demo`` exits 0, prints the timeline and the summary table (phases,
    bytes verified, handover gap, the four refusals), prints nothing on stderr and leaves
    nothing in its temporary directory's parent."""
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert done.stderr == ""
    for heading in ("Summary", "bytes sent / verified", "handover gap:", "refusals seen: 4"):
        assert heading in out
    for phase in PHASES:
        assert f"-- {phase} " in out
    for attack in ATTACKS:
        assert attack in out
    assert "mvpn demo: every step verified" in out
    assert list(tmp_path.iterdir()) == []


def test_command_fails_with_the_step_when_time_runs_out(tmp_path: Path) -> None:
    """With no time to finish, the demo exits non-zero naming the step it was in, prints
    the path of a copy of the roles' log (what the roles logged before the timeout), and
    leaves that copy only: its temporary directory is gone."""
    done = _demo(tmp_path, "--timeout", "0.5")
    assert done.returncode == 1
    assert "mvpn demo FAILED at step [" in done.stderr
    assert "timed out after 0.5 s" in done.stderr
    [kept] = list(tmp_path.iterdir())
    assert kept.is_file() and kept.suffix == ".log"
    assert f"the roles' log: {kept}" in done.stderr
    assert "port open on UDP" in kept.read_text()


def test_demo_failed_names_the_step() -> None:
    """DemoFailed carries the step and the reason, and its message joins both."""
    failure = DemoFailed("attacks: forged data packet", "no drop counted")
    assert failure.step == "attacks: forged data packet"
    assert str(failure) == "attacks: forged data packet: no drop counted"
    assert failure.log is None
