"""Role configuration (mvpn.roles.config), the twistd options of each role, and the .tac
files: TOML tables become frozen configs, mistakes are refused with a message naming the
setting, command-line options override the file."""

from __future__ import annotations

import ipaddress
import runpy
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

from mvpn.roles.config import (
    ConfigError,
    Endpoint,
    SiteConfig,
    site_from_toml,
)
from mvpn.roles.fa.tap import Options as FaOptions
from mvpn.roles.ha.tap import Options as HaOptions
from mvpn.roles.mn.tap import Options as MnOptions
from mvpn.roles.site import Options as SiteOptions
from mvpn.roles.transport import AdvertisementMode
from tests.roles.live import Domains

SITE = """
control_socket = "run/site.sock"

[ha]
store = "home"
name = "ha"
port = 4434
database = "state/ha.sqlite"
peer_certificates = ["visited/nodes/fa1.pem"]
peer_cas = ["visited/ca.pem"]
lifetime = 600
key_refresh = 0.25

[[ha.plain_nodes]]
home_address = "10.1.0.9"
spi = 1000
key = "00112233445566778899aabbccddeeff"

[fa]
store = "visited"
name = "fa1"
address = "127.0.0.2"
tc = "127.0.0.1:4353"
advertisement = "udp"
advertisement_port = 5349
advertise_to = ["127.0.0.4", "127.0.0.5:6000"]

[[mn]]
name = "alice"
smart_card = "alice.card"
solicit_to = ["127.0.0.2:5349"]

[[mn]]
name = "plain"
mode = "rfc5944"
home_address = "10.1.0.9"
home_agent = "127.0.0.1"
plain_spi = 1000
plain_key = "00112233445566778899aabbccddeeff"
"""


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    domains = Domains(root)
    domains.smart_card("alice")
    (root / "site.toml").write_text(SITE)
    return root


def test_site_file(site_dir: Path) -> None:
    """One file gives every role: paths relative to the file, store paths filled in by
    node name, defaults where nothing is said, several [[mn]] tables."""
    site = site_from_toml(site_dir / "site.toml")
    assert site.control_socket == site_dir / "run/site.sock"
    assert site.ha is not None and site.fa is not None
    assert site.ha.files.certificate == site_dir / "home/nodes/ha.pem"
    assert site.ha.files.name == "ha"
    assert site.ha.database == site_dir / "state/ha.sqlite"
    assert (site.ha.port, site.ha.lifetime, site.ha.key_refresh) == (4434, 600, 0.25)
    assert site.ha.plain_nodes[0].spi == 1000
    assert site.ha.plain_nodes[0].key == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert site.fa.tc == Endpoint("127.0.0.1", 4353)
    assert site.fa.advertisement is AdvertisementMode.UDP
    assert site.fa.advertise_to == (Endpoint("127.0.0.4", 5349), Endpoint("127.0.0.5", 6000))
    assert site.fa.port == 434
    assert [mn.name for mn in site.mn] == ["alice", "plain"]
    assert site.mn[1].home_agent == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[ha]\nstore = 'home'\nname = 'ha'\n", "database"),
        ("[ha]\nstore = 'home'\nname = 'ha'\ndatabase = 'x'\ncolour = 'red'\n", "colour"),
        ("[fa]\nstore = 'visited'\nname = 'fa1'\nadvertisement = 'smoke'\n", "smoke"),
        ("[fa]\nstore = 'visited'\nname = 'fa1'\nport = 70000\n", "out of range"),
        ("[fa]\nstore = 'visited'\nname = 'fa1'\ntc = 'nowhere:1'\n", "IPv4"),
        ("[fa]\nstore = 'visited'\nname = 'fa1'\nlifetime = 99999\n", "lifetime"),
        ("[fa]\ncertificate = 'a.pem'\n", "private_key"),
        ("[mn]\nmode = 'rfc5944'\n", "plain_spi"),
        ("[mn]\nname = 'x'\n", "smart_card"),
        ("[[mn]]\nsmart_card = 'a'\n[[mn]]\nsmart_card = 'b'\n", "distinct names"),
        ("weather = 1\n", "weather"),
        ("", "no role"),
        ("[ha\n", "site.toml"),
    ],
)
def test_mistakes_are_refused_by_name(site_dir: Path, text: str, message: str) -> None:
    """Each mistake in a file is a ConfigError whose message names what is wrong."""
    path = site_dir / "broken" / "site.toml"
    path.parent.mkdir(exist_ok=True)
    for link in ("home", "visited"):
        if not (path.parent / link).exists():
            (path.parent / link).symlink_to(site_dir / link)
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        site_from_toml(path)


def test_options_override_the_file(site_dir: Path) -> None:
    """Each role's twistd options read its table of the file and override it; the
    file-wide control socket is used when the table has none."""
    config = str(site_dir / "site.toml")
    ha = HaOptions()
    ha.parseOptions(["--config", config, "--port", "5434", "--tc", "127.0.0.1:9"])
    assert (ha.config.port, ha.config.tc) == (5434, Endpoint("127.0.0.1", 9))
    assert ha.config.control_socket == site_dir / "run/site.sock"
    fa = FaOptions()
    fa.parseOptions(["--config", config, "--advertise-to", "127.0.0.9", "--advertisement", "icmp"])
    assert fa.config.advertise_to == (Endpoint("127.0.0.9", 5349),)
    assert fa.config.advertisement is AdvertisementMode.ICMP
    mn = MnOptions()
    mn.parseOptions(["--config", config, "--name", "plain", "--lifetime", "60"])
    assert (mn.config.name, mn.config.mode, mn.config.lifetime) == ("plain", "rfc5944", 60)
    site = SiteOptions()
    site.parseOptions(["--config", config, "--control-socket", "/tmp/x.sock"])
    assert isinstance(site.config, SiteConfig)
    assert site.config.control_socket == Path("/tmp/x.sock")


def test_options_without_configuration_are_refused() -> None:
    """Each plugin says what it needs when started with nothing."""
    for options, needs in (
        (HaOptions(), "--config FILE or --store DIR"),
        (FaOptions(), "--config FILE or --store DIR"),
        (MnOptions(), "--config FILE or --smart-card FILE"),
        (SiteOptions(), "--config FILE"),
    ):
        with pytest.raises(usage.UsageError, match=needs):
            options.parseOptions([])


def test_store_options_without_a_file(site_dir: Path) -> None:
    """``--store DIR --name NAME`` is enough for an FA; an HA also needs --database."""
    fa = FaOptions()
    fa.parseOptions(["--store", str(site_dir / "visited"), "--name", "fa2"])
    assert fa.config.files.certificate == site_dir / "visited/nodes/fa2.pem"
    with pytest.raises(usage.UsageError, match="database"):
        HaOptions().parseOptions(["--store", str(site_dir / "home")])


@pytest.mark.parametrize("role", ["ha", "fa", "mn", "site"])
def test_tac_files_build_the_application(
    site_dir: Path, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tac/<role>.tac builds an Application holding the same service as the plugin,
    from the file named in $MVPN_<ROLE>_CONFIG."""
    from twisted.application.service import IServiceCollection

    tac = Path(__file__).parents[2] / "tac" / f"{role}.tac"
    monkeypatch.setenv(f"MVPN_{role.upper()}_CONFIG", str(site_dir / "site.toml"))
    monkeypatch.chdir(site_dir)
    namespace: dict[str, Any] = runpy.run_path(str(tac))
    services = list(IServiceCollection(namespace["application"]))
    assert len(services) == 1
    names = {s.name for s in services[0]}
    expected = {
        "ha": {"ha"},
        "fa": {"fa"},
        "mn": {"mn:alice"},
        "site": {"ha", "fa", "mn:alice", "mn:plain"},
    }
    assert expected[role] <= names
    assert "control" in names


def test_role_modules_leave_the_reactor_alone() -> None:
    """Importing every role shell module, the plugins' taps and the site does not install or
    import the global reactor (it would break ``twistd --reactor`` and tests)."""
    import subprocess
    import sys

    modules = [
        "mvpn.roles.shell",
        "mvpn.roles.transport",
        "mvpn.roles.control",
        "mvpn.roles.config",
        "mvpn.roles.site",
        *(
            f"mvpn.roles.{r}.{m}"
            for r in ("ha", "fa", "mn")
            for m in ("protocol", "service", "tap")
        ),
        "mvpn.cli",
    ]
    script = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('twisted.internet.reactor' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_control_port_from_files_and_options(site_dir: Path) -> None:
    """``control_port`` (docs/protocol.md 2, 7.7) defaults to 4350 for every role, is read
    from each table (0 closes it), is refused out of range, and ``--control-port``
    overrides the file for HA, FA and MN."""
    site = site_from_toml(site_dir / "site.toml")
    assert site.ha is not None and site.fa is not None
    assert (site.ha.control_port, site.fa.control_port) == (4350, 4350)
    assert [mn.control_port for mn in site.mn] == [4350, 4350]
    path = site_dir / "control" / "site.toml"
    path.parent.mkdir(exist_ok=True)
    for link in ("home", "visited"):
        if not (path.parent / link).exists():
            (path.parent / link).symlink_to(site_dir / link)
    (path.parent / "alice.card").write_bytes((site_dir / "alice.card").read_bytes())
    path.write_text(
        "[ha]\nstore = 'home'\nname = 'ha'\ndatabase = 'ha.sqlite'\ncontrol_port = 5350\n"
        "[fa]\nstore = 'visited'\nname = 'fa1'\ncontrol_port = 0\n"
        "[mn]\nsmart_card = 'alice.card'\ncontrol_port = 6350\n"
    )
    site = site_from_toml(path)
    assert site.ha is not None and site.fa is not None
    assert (site.ha.control_port, site.fa.control_port, site.mn[0].control_port) == (
        5350,
        0,
        6350,
    )
    path.write_text("[fa]\nstore = 'visited'\nname = 'fa1'\ncontrol_port = 65536\n")
    with pytest.raises(ConfigError, match="control_port"):
        site_from_toml(path)
    config = str(site_dir / "site.toml")
    for options, extra in (
        (HaOptions(), []),
        (FaOptions(), []),
        (MnOptions(), ["--name", "alice"]),
    ):
        options.parseOptions(["--config", config, "--control-port", "7350", *extra])
        assert options.config.control_port == 7350
