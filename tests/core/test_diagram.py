"""The state diagram in docs/ is the machine that runs."""

from __future__ import annotations

from pathlib import Path

from mvpn.core.diagram import mobile_node_diagram

DOC = Path(__file__).resolve().parents[2] / "docs" / "mn-machine.md"


def test_mobile_node_diagram_matches_docs() -> None:
    """docs/mn-machine.md equals what `python -m mvpn.core.diagram` prints for the MN
    machine (regenerate it with that command after changing the machine)."""
    assert DOC.read_text() == mobile_node_diagram()


def test_diagram_names_every_state() -> None:
    """Every state of the machine appears in the diagram, the initial one first."""
    text = mobile_node_diagram()
    assert "[*] --> idle" in text
    for state in ("discovering", "moving", "registering", "registered", "reregistering"):
        assert f"    {state} -->" in text
