"""The benchmark report's pure helpers: how a handover gap is read from probe arrivals, how a
py-spy profile is digested, and how figures are judged against TARGETS.md. They turn raw
measurements into the published numbers, so a wrong one would publish a wrong figure."""

from __future__ import annotations

from benchmarks.handover import gaps
from benchmarks.hotspots import summarize
from benchmarks.report import targets
from benchmarks.tunnels import tunnel_figures


def test_gap_is_the_longest_silence_around_the_move() -> None:
    """Probes every 10 ms with a 120 ms hole inside the move's window: the gap is 120 ms,
    and a silence outside the window does not count."""
    arrivals = [i * 0.01 for i in range(50)] + [0.61 + i * 0.01 for i in range(50)]
    arrivals += [1.5 + i * 0.01 for i in range(10)]  # a 0.4 s hole after the window
    (gap,) = gaps(arrivals, [(0.30, 0.80)])
    assert abs(gap - 0.12) < 1e-9


def test_gap_counts_silence_up_to_the_window_end_when_nothing_arrives_after() -> None:
    """If delivery never resumes within the data, the gap runs to the end of the window."""
    (gap,) = gaps([0.0, 0.01, 0.02], [(0.015, 1.0)])
    assert abs(gap - 0.98) < 1e-9


def test_profile_summary_attributes_own_and_inclusive_samples() -> None:
    """Collapsed stacks: the leaf gets the own time, every mvpn frame the inclusive time,
    and line numbers do not split one function into several rows."""
    run, write = "run (/x/twisted/base.py:10)", "write (/x/twisted/udp.py:9)"
    raw = "\n".join(
        [
            f"{run};recv (/w/mvpn/roles/data.py:5);tag (/w/mvpn/crypto/auth.py:3) 30",
            f"{run};recv (/w/mvpn/roles/data.py:7);{write} 10",
            "run (/x/twisted/base.py:11) 10",
        ]
    )
    summary = summarize(raw, seconds=1.0, rate=100)
    assert summary["samples"] == 50
    assert summary["busy"] == 0.5
    own, inclusive = summary["own"], summary["mvpn_inclusive"]
    assert isinstance(own, list) and isinstance(inclusive, list)
    assert own[0] == ["tag (mvpn/crypto/auth.py)", 60.0]
    assert dict(inclusive) == {
        "recv (mvpn/roles/data.py)": 80.0,
        "tag (mvpn/crypto/auth.py)": 60.0,
    }


def test_tunnel_ratios_only_when_both_sides_were_measured() -> None:
    """MVPN's ratio to a peer is reported only when both were measured; an unmeasured peer
    keeps its reason."""
    figures = tunnel_figures(
        {
            "mvpn": {"mbit_s": 100.0, "runs_mbit_s": [100.0]},
            "openvpn_tcp": {"mbit_s": 250.0, "runs_mbit_s": [250.0]},
            "wireguard_go": {"error": "not installed"},
        }
    )
    assert figures["mvpn_vs_openvpn_tcp"] == 0.4
    assert figures["mvpn_vs_wireguard_go"] is None
    assert figures["wireguard_go_error"] == "not installed"


def test_targets_judge_each_ratio_and_say_when_not_measured() -> None:
    """Verdicts follow TARGETS.md's thresholds; a missing section is 'not measured', never
    met."""
    rows = {
        row[0]: row[3]
        for row in targets(
            {
                "registration": {
                    "first_contact_vs_bound": 0.75,
                    "reregistration_vs_first_contact": 3.0,
                },
                "tunnel": {"mvpn_vs_openvpn_tcp": 1.1},
                "handover": {"error": "lab unusable"},
                "scale": {"memory_growth_ratio": 1.0, "cpu_growth_ratio": 1.3},
            }
        )
    }
    assert rows["MVPN / OpenVPN TCP throughput"] == "met"
    assert rows["MVPN / wireguard-go throughput"] == "not measured"
    assert rows["first contacts / public-key bound"] == "met"
    assert rows["re-registrations / first contacts"] == "**not met**"
    assert rows["handover bytes lost (inner TCP, SHA-256 checked)"] == "not measured"
    assert rows["scale: memory per binding, 10,000 / 1,000 nodes"] == "met"
    assert rows["scale: CPU per re-registration, 10,000 / 1,000 nodes"] == "**not met**"
