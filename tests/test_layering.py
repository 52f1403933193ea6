"""The layering rule: the pure layers never import Twisted or touch the reactor."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PURE_PACKAGES = ["mvpn.wire"]
"""Pure codecs: neither Twisted nor the cryptography library."""

SANS_IO_PACKAGES = ["mvpn.wire", "mvpn.crypto", "mvpn.core"]
"""The sans-IO layers: no Twisted (and so no reactor) at all."""


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


def _twisted(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "twisted" or m.startswith("twisted.")}


def test_wire_imports_no_twisted_nor_cryptography() -> None:
    """Importing all of mvpn.wire pulls in neither Twisted nor the cryptography library."""
    for package in PURE_PACKAGES:
        modules = _imported_modules(package)
        assert not _twisted(modules), package
        assert "cryptography" not in modules, package


def test_sans_io_layers_import_no_twisted() -> None:
    """mvpn.wire, mvpn.crypto and mvpn.core never import Twisted, so never the reactor."""
    for package in SANS_IO_PACKAGES:
        assert not _twisted(_imported_modules(package)), package


def test_core_imports_no_role_shell() -> None:
    """Dependencies point one way: nothing in mvpn.wire, mvpn.crypto or mvpn.core imports
    mvpn.roles or mvpn.tunnel (the Twisted shells built on top of them)."""
    for package in SANS_IO_PACKAGES:
        shells = {
            m for m in _imported_modules(package) if m.startswith(("mvpn.roles", "mvpn.tunnel"))
        }
        assert not shells, (package, shells)
