"""mvpn.crypto is below the Twisted layers: importing it pulls in no Twisted."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import mvpn.crypto


def test_crypto_imports_no_twisted() -> None:
    """Importing every module of mvpn.crypto in a fresh interpreter loads no twisted.*."""
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        pkg = importlib.import_module("mvpn.crypto")
        for info in pkgutil.walk_packages(pkg.__path__, "mvpn.crypto."):
            importlib.import_module(info.name)
        print("\\n".join(sorted(sys.modules)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    assert "mvpn.crypto.suite" in out
    assert not [m for m in out if m == "twisted" or m.startswith("twisted.")]


def test_package_exports_exist() -> None:
    """Every name in mvpn.crypto.__all__ is importable from the package."""
    for name in mvpn.crypto.__all__:
        assert hasattr(mvpn.crypto, name), name
