"""State diagrams of the Automat machines, as Mermaid text for docs/.

``python -m mvpn.core.diagram`` prints the mobile node's machine; docs/mn-machine.md holds
its output and a test keeps the two equal, so the diagram in the docs is always the machine
that runs. Self-loops that only ignore an input are left out (they would hide the rest);
they are listed under the diagram instead.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any


def _name(state: Any) -> str:
    return str(getattr(state, "name", state))


def mermaid(machine: Any, title: str) -> str:
    """The Mermaid ``stateDiagram-v2`` of an Automat TypeMachine (or MethodicalMachine)."""
    automaton = machine.__automat_automaton__
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    ignored: dict[str, list[str]] = defaultdict(list)
    for old, symbol, new, outputs in automaton.allTransitions():
        source, target = _name(old), _name(new)
        names = [getattr(getattr(o, "method", None), "__name__", "") for o in outputs]
        if source == target and names and all(n.startswith("ignore") for n in names):
            ignored[source].append(symbol)
        else:
            edges[(source, target)].append(symbol)
    lines = [f"# {title}", "", "```mermaid", "stateDiagram-v2"]
    lines.append(f"    [*] --> {_name(automaton.initialState)}")
    for (source, target), symbols in sorted(edges.items()):
        lines.append(f"    {source} --> {target}: {', '.join(sorted(symbols))}")
    lines += ["```", "", "Inputs each state ignores (it stays where it is):", ""]
    for state in sorted(ignored):
        lines.append(f"- {state}: {', '.join(sorted(ignored[state]))}")
    return "\n".join(lines) + "\n"


def mobile_node_diagram() -> str:
    """The mobile node's registration lifecycle (:mod:`mvpn.core.mn`)."""
    from mvpn.core.mn import MobileNodeMachine

    return mermaid(MobileNodeMachine, "The mobile node's registration lifecycle")


if __name__ == "__main__":
    sys.stdout.write(mobile_node_diagram())
