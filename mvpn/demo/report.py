"""The demo's closing summary table (issue 6: messages per phase, time per phase, bytes sent
and verified, the handover gap, refusals seen)."""

from __future__ import annotations

from mvpn.demo.scenario import DemoSummary

__all__ = ["summary_table"]


def summary_table(summary: DemoSummary) -> list[str]:
    """The summary of a verified run as lines of text."""
    lines = [
        "",
        "Summary",
        f"{'phase':<18}{'time':>10}{'messages':>10}{'data pkts':>11}   signalling by kind",
    ]
    for phase in summary.phases:
        kinds = ", ".join(f"{k} {v}" for k, v in phase.messages_by_kind.items() if v)
        lines.append(
            f"{phase.name:<18}{phase.seconds * 1000:>8.0f} ms{phase.messages:>10}"
            f"{phase.data_packets:>11}   {kinds or '-'}"
        )
    total_messages = sum(p.messages for p in summary.phases)
    total_data = sum(p.data_packets for p in summary.phases)
    lines.append(
        f"{'total':<18}{summary.seconds * 1000:>8.0f} ms{total_messages:>10}{total_data:>11}"
    )
    lines += ["", f"{'transfer':<30}{'bytes':>12}   sha256"]
    for transfer in summary.transfers:
        state = "equal" if transfer.verified else "DIFFERENT"
        name = f"{transfer.phase}: {transfer.direction}"
        lines.append(f"{name:<30}{transfer.bytes:>12,}   {state} ({transfer.sent_sha256[:16]}...)")
    lines.append(
        f"{'bytes sent / verified':<30}{summary.bytes_sent:>12,} / {summary.bytes_verified:,}"
    )
    gap = summary.handover_gap_ms
    overlap = " (the old and the new path overlapped)" if gap < 0 else ""
    lines += [
        "",
        f"handover gap: {gap:.1f} ms{overlap}, {summary.handover_via_old} datagrams via FA1 "
        f"then {summary.handover_via_new} via FA2, none lost",
        f"re-registration: {summary.reregistration_pk_operations} public-key operations, "
        f"{summary.reregistration_tc_requests} Trusted Centre requests",
        "",
        f"refusals seen: {len(summary.refusals)}",
    ]
    for refusal in summary.refusals:
        lines.append(f"  {refusal.attack:<32} refused by {refusal.by:<4} {refusal.how}")
    verdict = "every step verified" if summary.verified else "NOT every step verified"
    lines += ["", f"mvpn demo: {verdict} ({len(summary.steps)} steps)"]
    return lines
