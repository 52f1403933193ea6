"""The ``mvpn`` console script: operator commands, as ``usage.Options`` subcommands.

``mvpn pki ...`` provisions a domain (see :mod:`mvpn.pki.commands` and docs/pki.md).
Adding a command is one line in :attr:`MvpnOptions.subCommands` and one in :data:`_RUNNERS`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from twisted.python import usage

from mvpn.pki.commands import PkiOptions, run_pki
from mvpn.pki.errors import PkiError


class MvpnOptions(usage.Options):
    """``mvpn COMMAND [options]``."""

    synopsis = "mvpn COMMAND [options]"
    subCommands = [
        ["pki", None, PkiOptions, "provision a domain: CA, certificates, smart cards"],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is needed (mvpn --help lists them)")


_RUNNERS: dict[str, Callable[[usage.Options, TextIO], None]] = {
    "pki": lambda options, out: run_pki(options, out),  # type: ignore[arg-type]
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
