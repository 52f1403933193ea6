"""The TC's configuration: TOML files, ``twistd mvpn-tc`` options, and the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from mvpn.roles.tc.config import DEFAULT_PORT, ConfigError, PeerConfig, TcConfig
from mvpn.roles.tc.tap import Options
from tests.pki.domains import make_domain


def test_toml_with_store_and_peers(tmp_path: Path) -> None:
    """A TOML file naming a store fills the paths; peers and settings are read; relative
    paths are relative to the file."""
    make_domain(tmp_path, "corp.example")
    (tmp_path / "tc.toml").write_text(
        'store = "corp.example"\nport = 14353\ninterface = "127.0.0.1"\n'
        "revocation_poll = 5\n\n[[peers]]\n"
        'domain = "branch.example"\nca_certificate = "branch.pem"\nhost = "192.0.2.7"\n'
    )
    config = TcConfig.from_toml(tmp_path / "tc.toml")
    assert config.port == 14353 and config.interface == "127.0.0.1"
    assert config.revocation_poll == 5.0
    assert config.ca_certificate == tmp_path / "corp.example" / "ca.pem"
    assert config.certificate == tmp_path / "corp.example" / "nodes" / "tc.pem"
    assert config.nodes_dir == tmp_path / "corp.example" / "nodes"
    assert config.peers == (
        PeerConfig("branch.example", tmp_path / "branch.pem", "192.0.2.7", DEFAULT_PORT),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 70000\n", "out of range"),
        ("colour = 1\n", "unknown settings"),
        ("port = 1\n", "give 'store' or all of"),
        ("port = [", "Invalid value"),
    ],
)
def test_bad_toml_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    """Out-of-range values, unknown keys, missing paths and bad syntax are ConfigErrors."""
    (tmp_path / "tc.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        TcConfig.from_toml(tmp_path / "tc.toml")


def test_peer_option_syntax() -> None:
    """--peer is DOMAIN=CA_PEM@HOST:PORT; anything else is refused with the expected form."""
    peer = PeerConfig.parse("b.example=/etc/b.pem@127.0.0.1:4354")
    assert peer == PeerConfig("b.example", Path("/etc/b.pem"), "127.0.0.1", 4354)
    with pytest.raises(ConfigError, match="DOMAIN=CA_PEM@HOST:PORT"):
        PeerConfig.parse("b.example:4354")


def test_tap_options_override_the_store(tmp_path: Path) -> None:
    """Command-line options build the TcConfig, overriding the store's defaults."""
    make_domain(tmp_path, "corp.example")
    options = Options()
    options.parseOptions(
        [
            "--store",
            str(tmp_path / "corp.example"),
            "--port",
            "5000",
            "--interface",
            "127.0.0.1",
            "--peer",
            f"b.example={tmp_path / 'b.pem'}@h:1",
        ]
    )
    assert options.config.port == 5000 and options.config.interface == "127.0.0.1"
    assert options.config.peers[0].domain == "b.example"
    assert options.config.database == tmp_path / "corp.example" / "tc.sqlite"


def test_tap_needs_a_store_or_config(tmp_path: Path) -> None:
    """Without --store or --config, or with a directory that is no store, usage fails."""
    with pytest.raises(usage.UsageError, match="--config FILE or --store DIR"):
        Options().parseOptions([])
    with pytest.raises(usage.UsageError, match="not a domain store"):
        Options().parseOptions(["--store", str(tmp_path)])


def test_plugin_is_found() -> None:
    """twistd finds the mvpn-tc ServiceMaker through twisted/plugins/mvpn_plugins.py."""
    names = {p.tapname for p in getPlugins(IServiceMaker)}
    assert "mvpn-tc" in names
