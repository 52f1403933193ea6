"""The roles as separate ``twistd -n`` processes configured by TOML files, watched through
their control sockets with the real ``mvpn status`` command, killed by a finalizer.

Pins: a mobile node, a foreign agent and a home agent in three processes register end to
end; after ``kill -9`` of the home agent and a restart on the same database, the binding is
still there and the mobile node's next re-registration is accepted; one ``mvpn-site``
process hosting all three roles from one file does the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.roles.live import (
    FA1_ADDRESS,
    HA_ADDRESS,
    HOME_ADDRESS,
    MN_ADDRESS,
    Domains,
    common_free_udp_port,
    free_udp_port,
)

BIN = Path(sys.executable).parent
TIMEOUT = 30.0


@dataclass
class Daemon:
    """One ``twistd -n`` child process with its log file and control socket."""

    plugin: str
    config: Path
    socket: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            f"--logfile={self.log}",
            self.plugin,
            f"--config={self.config}",
        ]
        self.process = subprocess.Popen(command, cwd=self.config.parent)
        until(lambda: self.status_or_none() is not None, f"{self.plugin} to answer status", self)

    def status_or_none(self) -> dict[str, Any] | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.plugin} exited: {self.log.read_text()}")
        done = subprocess.run(
            [str(BIN / "mvpn"), "status", "--socket", str(self.socket), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return None
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def role(self, name: str) -> dict[str, Any]:
        doc = self.status_or_none()
        assert doc is not None, f"{self.plugin} does not answer on {self.socket}"
        for role in doc["roles"]:
            if role["name"] == name:
                return dict(role)
        raise AssertionError(f"no role {name!r} in {doc}")

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


def until(condition: Callable[[], object], what: str, *daemons: Daemon) -> None:
    """Poll ``condition`` until true; on timeout, fail with the daemons' logs."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {d.log}\n{d.log.read_text()}" for d in daemons if d.log.exists())
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill9()


def write_configs(root: Path, lifetime: int) -> dict[str, str]:
    """The TOML tables of an HA, an FA and an MN that find each other on loopback (local
    certificates instead of Trusted Centres)."""
    domains = Domains(root)
    domains.smart_card("alice")
    ha_port = free_udp_port(HA_ADDRESS)
    fa_port = free_udp_port(FA1_ADDRESS)
    adv_port = common_free_udp_port(FA1_ADDRESS, MN_ADDRESS)
    control_port = common_free_udp_port(HA_ADDRESS, FA1_ADDRESS, MN_ADDRESS)
    return {
        "ha": f"""
[ha]
store = "home"
name = "ha"
address = "{HA_ADDRESS}"
interface = "{HA_ADDRESS}"
port = {ha_port}
control_port = {control_port}
database = "ha.sqlite"
peer_certificates = ["visited/nodes/fa1.pem"]
peer_cas = ["visited/ca.pem"]
""",
        "fa": f"""
[fa]
store = "visited"
name = "fa1"
interface = "{FA1_ADDRESS}"
port = {fa_port}
control_port = {control_port}
home_agent_port = {ha_port}
peer_certificates = ["home/nodes/ha.pem"]
peer_cas = ["home/ca.pem"]
advertisement = "udp"
advertisement_port = {adv_port}
advertise_to = ["{MN_ADDRESS}:{adv_port}"]
advertisement_interval = 0.5
""",
        "mn": f"""
[mn]
name = "alice"
smart_card = "alice.card"
address = "{MN_ADDRESS}"
advertisement = "udp"
advertisement_port = {adv_port}
solicit_to = ["{FA1_ADDRESS}:{adv_port}"]
agent_port = {fa_port}
control_port = {control_port}
lifetime = {lifetime}
""",
    }


def daemon(root: Path, plugin: str, name: str, text: str) -> Daemon:
    config = root / f"{name}.toml"
    config.write_text(f'control_socket = "{name}.sock"\n' + text)
    return Daemon(plugin, config, root / f"{name}.sock", root / f"{name}.log")


def test_three_processes_and_kill_9_of_the_home_agent(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """HA, FA and MN as three twistd processes: the MN registers; the HA is killed with
    SIGKILL and restarted on the same database; it still shows the binding at once, and the
    MN's next re-registration is accepted by the restarted HA with no new first contact."""
    tables = write_configs(tmp_path, lifetime=6)
    ha = daemon(tmp_path, "mvpn-ha", "ha", tables["ha"])
    fa = daemon(tmp_path, "mvpn-fa", "fa", tables["fa"])
    mn = daemon(tmp_path, "mvpn-mn", "mn", tables["mn"])
    for d in (ha, fa, mn):
        daemons.append(d)
        d.start()
    until(lambda: mn.role("mn:alice")["status"]["state"] == "registered", "registered", ha, fa, mn)
    bindings = ha.role("ha")["status"]["bindings"]
    assert [(b["home_address"], b["care_of"]) for b in bindings] == [(HOME_ADDRESS, FA1_ADDRESS)]
    assert fa.role("fa")["status"]["visitors"][0]["home_address"] == HOME_ADDRESS
    spi = bindings[0]["spi"]

    ha.kill9()
    ha.start()
    restarted = ha.role("ha")
    assert [b["home_address"] for b in restarted["status"]["bindings"]] == [HOME_ADDRESS]
    assert restarted["status"]["bindings"][0]["spi"] == spi
    registrations = mn.role("mn:alice")["counters"].get("registrations", 0)
    until(
        lambda: ha.role("ha")["counters"].get("accepted.reregistration", 0) >= 1,
        "a re-registration accepted by the restarted HA",
        ha,
        fa,
        mn,
    )
    assert mn.role("mn:alice")["counters"].get("registrations", 0) == registrations
    assert ha.role("ha")["counters"].get("accepted.first_contact", 0) == 0
    readable = subprocess.run(
        [str(BIN / "mvpn"), "status", "--socket", str(ha.socket)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert HOME_ADDRESS in readable and "bindings: 1" in readable
    for d in (mn, fa, ha):
        d.stop()
        # twistd ends by re-raising the SIGTERM it got; a clean stop is in the log.
        assert d.process is not None and d.process.returncode in (0, -signal.SIGTERM)
        text = d.log.read_text()
        assert "Server Shut Down" in text and "Traceback" not in text, text
    assert oct(os.stat(tmp_path / "ha.sqlite").st_mode & 0o777) == oct(0o600)


def test_one_site_process_hosts_every_role(tmp_path: Path, daemons: list[Daemon]) -> None:
    """``twistd mvpn-site`` with one file defining [ha], [fa] and [mn] runs all three in one
    process behind one control socket, and the mobile node registers."""
    tables = write_configs(tmp_path, lifetime=60)
    site = daemon(tmp_path, "mvpn-site", "site", tables["ha"] + tables["fa"] + tables["mn"])
    daemons.append(site)
    site.start()
    until(lambda: site.role("mn:alice")["status"]["state"] == "registered", "registered", site)
    doc = site.status_or_none()
    assert doc is not None
    assert [r["name"] for r in doc["roles"]] == ["ha", "fa", "mn:alice"]
    assert site.role("ha")["status"]["bindings"][0]["care_of"] == FA1_ADDRESS
