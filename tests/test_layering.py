"""The layering rule: the pure layers never import Twisted or touch the reactor."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PURE_PACKAGES = ["mvpn.wire"]


def _imported_modules(package: str) -> set[str]:
    """Import every module of ``package`` in a fresh interpreter; list sys.modules."""
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        pkg = importlib.import_module({package!r})
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(info.name)
        print("\\n".join(sorted(sys.modules)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def test_wire_imports_no_twisted() -> None:
    """Importing all of mvpn.wire pulls in neither Twisted nor the cryptography library."""
    for package in PURE_PACKAGES:
        modules = _imported_modules(package)
        assert not {m for m in modules if m == "twisted" or m.startswith("twisted.")}, package
        assert "cryptography" not in modules, package
