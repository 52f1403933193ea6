"""The ``mvpn`` console script: operator commands, as ``usage.Options`` subcommands.

``mvpn pki ...`` provisions a domain (see :mod:`mvpn.pki.commands` and docs/pki.md);
``mvpn status --socket PATH`` shows what a running daemon's roles hold (bindings, visitors,
mobile node state, counters) through its control socket (:mod:`mvpn.roles.control`), and
``mvpn move --socket PATH [--to FA]`` tells a running mobile node to change foreign agent.
Adding a command is one line in :attr:`MvpnOptions.subCommands` and one in :data:`_RUNNERS`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from twisted.python import usage

from mvpn.pki.commands import PkiOptions, run_pki
from mvpn.pki.errors import PkiError
from mvpn.roles.control import ControlError, format_status, query


class StatusOptions(usage.Options):
    """``mvpn status --socket PATH [--json]``."""

    synopsis = "--socket PATH [--json]"
    optParameters = [
        ["socket", "s", None, "the daemon's control socket (control_socket in its config)"],
        ["timeout", "t", 5.0, "seconds to wait for the answer", float],
    ]
    optFlags = [["json", "j", "print the raw JSON answer"]]

    def postOptions(self) -> None:
        if not self["socket"]:
            raise usage.UsageError("mvpn status needs --socket PATH")


class MoveOptions(usage.Options):
    """``mvpn move --socket PATH [--node NAME] [--to ADDRESS]``."""

    synopsis = "--socket PATH [--node mn:NAME] [--to FA_ADDRESS]"
    optParameters = [
        ["socket", "s", None, "the mobile node's control socket"],
        ["node", "n", None, "which mobile node (mn:NAME) when the process hosts several"],
        ["to", None, None, "the foreign agent to move to (default: any other)"],
        ["timeout", "t", 5.0, "seconds to wait for the answer", float],
    ]

    def postOptions(self) -> None:
        if not self["socket"]:
            raise usage.UsageError("mvpn move needs --socket PATH")


def run_move(options: MoveOptions, out: TextIO) -> None:
    """Tell a running mobile node to change foreign agent (draft 3.3)."""
    arguments = {k: options[k] for k in ("to",) if options[k]}
    if options["node"]:
        arguments["role"] = options["node"]
    try:
        doc = query(Path(options["socket"]), "move", options["timeout"], **arguments)
    except ControlError as e:
        raise ValueError(str(e)) from None
    out.write(f"{doc['moved']}: moving to {doc.get('to') or 'another foreign agent'}\n")


def run_status(options: StatusOptions, out: TextIO) -> None:
    """Ask the daemon and print its roles' status as tables (or JSON)."""
    try:
        doc = query(Path(options["socket"]), "status", options["timeout"])
    except ControlError as e:
        raise ValueError(str(e)) from None
    if options["json"]:
        out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        out.write(format_status(doc))


class MvpnOptions(usage.Options):
    """``mvpn COMMAND [options]``."""

    synopsis = "mvpn COMMAND [options]"
    subCommands = [
        ["pki", None, PkiOptions, "provision a domain: CA, certificates, smart cards"],
        ["status", None, StatusOptions, "show a running daemon's bindings, visitors, counters"],
        ["move", None, MoveOptions, "tell a running mobile node to change foreign agent"],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is needed (mvpn --help lists them)")


_RUNNERS: dict[str, Callable[[usage.Options, TextIO], None]] = {
    "pki": lambda options, out: run_pki(options, out),  # type: ignore[arg-type]
    "status": lambda options, out: run_status(options, out),  # type: ignore[arg-type]
    "move": lambda options, out: run_move(options, out),  # type: ignore[arg-type]
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``mvpn``; returns the exit status (0 done, 1 refused or failed, 2 bad usage)."""
    out = out if out is not None else sys.stdout
    options = MvpnOptions()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        sys.stderr.write(f"{options}\nmvpn: usage error: {e}\n")
        return 2
    command = options.subCommand
    assert command is not None
    try:
        _RUNNERS[command](options.subOptions, out)
    except (PkiError, ValueError) as e:
        sys.stderr.write(f"mvpn {command}: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
