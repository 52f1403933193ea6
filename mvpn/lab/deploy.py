"""MVPN deployed in the lab's network namespaces: every role a ``twistd`` process of its own.

:class:`MvpnLab` builds :class:`~mvpn.lab.netns.LabTopology`, provisions two domains with
:mod:`mvpn.pki` (draft §3.1: the home domain with its HA, the mobile node's smart card and the
correspondent node; the visited domain with FA1 and FA2), writes one TOML file per role and
starts, each in its namespace:

- the two Trusted Centres (draft §7.1), federated: ``home`` runs the home domain's,
  ``fa1`` the visited domain's;
- the HA (``home``), FA1 and FA2 (``fa1``, ``fa2``; their uplink addresses are their care-of
  addresses), the MN (``mn``, one link to each FA) and the CN (``cn``).

Everything runs on the real ports (434, 4350-4353) with raw ICMP agent advertisements
(RFC 5944 §2): the FAs send them unicast to the MN's address on their foreign link (their
periodic group advertisements would follow the default route out of the uplink) and the MN
solicits both FAs. The MN and the CN each own a TUN device ``mvpn0``: the MN's carries the
home address with a route to the CN, the CN's routes the home address into MVPN, so plain
``ping``/``iperf3`` between the ``cn`` and ``mn`` namespaces travel CN -> HA -> HA-FA tunnel
-> FA -> MN (draft §3.5.1) and back.

Each process has a control socket in the work directory: :meth:`MvpnLab.status` is
``mvpn status --json``, :meth:`MvpnLab.move` is ``mvpn move``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from mvpn.lab.netns import CN, FA1, FA2, HOME, MN, LabTopology
from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore
from mvpn.roles.control import ControlError, query

PASSWORD: Final = b"mvpn lab password"
"""The lab domains' CA password: the stores live in a throw-away work directory."""

HOME_DOMAIN: Final = "home.example"
VISITED_DOMAIN: Final = "visited.example"
MN_NAME: Final = "alice"
TC_PORT: Final = 4353
TUN_NAME: Final = "mvpn0"

ROLES: Final = ("ha", "fa1", "fa2", "mn", "cn")
"""The MVPN roles with a control socket, in start order (the TCs start before them)."""

TERM_GRACE_S: Final = 5.0
"""Between SIGTERM and SIGKILL at :meth:`MvpnLab.stop`: a twistd stops its services in
well under a second."""

POLL_S: Final = 0.05


class LabError(Exception):
    """The lab could not be brought up, or a role did not reach the state waited for."""


@dataclass(frozen=True)
class Process:
    """One ``twistd`` of the lab: its name (``ha``, ``tc-home``, ...), namespace and log."""

    name: str
    namespace: str
    log: Path
    popen: subprocess.Popen[bytes]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _twistd() -> str:
    """The ``twistd`` of this interpreter's environment (the venv's when run from it)."""
    candidate = Path(sys.executable).parent / "twistd"
    return str(candidate) if candidate.exists() else "twistd"


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)\n"
    return "".join(text.splitlines(keepends=True)[-lines:])


class MvpnLab:
    """The whole MVPN deployment in network namespaces: ``start()``, use, ``stop()``.

    As a context manager it stops everything on leaving the block, whatever happened.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        prefix: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.workdir = Path(workdir)
        self.topology = LabTopology(prefix)
        self.layout = self.topology.layout
        self.mn_home: IPv4Address = self.layout.mn_home_address
        self.cn_address: IPv4Address = self.layout.cn.ip
        self.log = log
        self.processes: dict[str, Process] = {}
        # Care-of address (uplink) and foreign-link address of each FA.
        self.care_of = {FA1: self.layout.fa1_uplink.ip, FA2: self.layout.fa2_uplink.ip}
        self.foreign = {FA1: self.layout.fa1_foreign.ip, FA2: self.layout.fa2_foreign.ip}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Topology, PKI, configs, every process; return once the MN is registered and the
        CN's session with it is established at both ends. Everything is stopped again when
        anything fails (:class:`LabError` says what)."""
        deadline = time.monotonic() + timeout
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.log(f"building namespaces ({self.topology.prefix}-*)")
            self.topology.up()
            self.log("provisioning the home and visited domains")
            self._provision()
            self._write_configs()
            self.log("starting the Trusted Centres (home in 'home', visited in 'fa1')")
            self._spawn("tc-home", HOME, ["mvpn-tc", "--config", "tc-home.toml"])
            self._spawn("tc-visited", FA1, ["mvpn-tc", "--config", "tc-visited.toml"])
            self._wait_listening(HOME, TC_PORT, "tc-home", deadline)
            self._wait_listening(FA1, TC_PORT, "tc-visited", deadline)
            self.log("starting HA, FA1, FA2")
            for role, ns in (("ha", HOME), ("fa1", FA1), ("fa2", FA2)):
                kind = "ha" if role == "ha" else "fa"
                self._spawn(role, ns, [f"mvpn-{kind}", "--config", f"{role}.toml"])
            for role in ("ha", "fa1", "fa2"):
                self._wait(role, _tc_registered, "registered with its Trusted Centre", deadline)
            self.log("starting the mobile node (ICMP advertisements, TUN mvpn0)")
            self._spawn("mn", MN, ["mvpn-mn", "--config", "mn.toml"])
            self._wait("mn", _mn_registered, "registered", deadline)
            self.log(f"mobile node {self.mn_home} registered through {self.current_fa()}")
            self.log("starting the correspondent node (TUN mvpn0)")
            self._spawn("cn", CN, ["mvpn-cn", "--config", "cn.toml"])
            self._wait("cn", _cn_established, "session established", deadline)
            self._wait("mn", _mn_has_session, "session established", deadline)
            self.log("session between CN and MN established")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """TERM every twistd (KILL after a grace), take the topology down. Idempotent; the
        logs stay in the work directory."""
        for proc in reversed(list(self.processes.values())):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_S
        for proc in self.processes.values():
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        self.topology.down()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queries and moves -----------------------------------------------------------------

    def socket(self, role: str) -> Path:
        """The control socket of ``role`` (``ha``, ``fa1``, ``fa2``, ``mn``, ``cn``)."""
        if role not in ROLES:
            raise ValueError(f"no role {role!r}; one of {ROLES}")
        return self.workdir / f"{role}.sock"

    def status(self, role: str) -> dict[str, object]:
        """``mvpn status --json`` of ``role``: ``{"ok": true, "roles": [{"role", "name",
        "status", "counters"}]}``."""
        return query(self.socket(role))

    def role_status(self, role: str) -> tuple[dict[str, Any], dict[str, int]]:
        """The ``status`` and ``counters`` of ``role``'s (only) entry."""
        entry = self.status(role)["roles"][0]  # type: ignore[index]
        return entry["status"], entry["counters"]

    def current_fa(self) -> str:
        """``fa1`` or ``fa2``: the FA whose care-of address the HA's binding names."""
        status, _ = self.role_status("ha")
        bindings = status.get("bindings") or []
        if not bindings:
            raise LabError("the home agent has no binding")
        care_of = IPv4Address(str(bindings[0]["care_of"]))
        for fa, address in self.care_of.items():
            if address == care_of:
                return fa
        raise LabError(f"the HA's binding names {care_of}, no FA of the lab")

    def move(self, fa: str) -> None:
        """Ask the MN to move to ``fa`` (``mvpn move --to`` its foreign-link address)."""
        if fa not in self.foreign:
            raise ValueError(f"no foreign agent {fa!r}; one of {sorted(self.foreign)}")
        query(self.socket("mn"), "move", to=str(self.foreign[fa]))

    def wait_moved(self, fa: str, timeout: float = 20.0) -> float:
        """Seconds until the HA's binding names ``fa`` and the MN's sessions were transferred
        to it (draft §3.3, docs/protocol.md 9); :class:`LabError` after ``timeout``."""
        started = time.monotonic()
        _, counters = self.role_status("mn")
        transfers = counters.get("key_transfer.acknowledged", 0)

        def moved() -> bool:
            if self.current_fa() != fa:
                return False
            status, counters = self.role_status("mn")
            return (
                status.get("care_of") == str(self.care_of[fa])
                and counters.get("key_transfer.acknowledged", 0) > transfers
            )

        self._poll(moved, f"the move to {fa}", started + timeout)
        return time.monotonic() - started

    # -- running things --------------------------------------------------------------------

    def logs(self, lines: int = 30) -> str:
        """The tail of every twistd log, for a failure report."""
        parts = []
        for proc in self.processes.values():
            parts.append(f"----- {proc.name} ({proc.log}) -----\n{tail(proc.log, lines)}")
        return "".join(parts)

    def _spawn(self, name: str, namespace: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        command = [_twistd(), "-n", "--pidfile=", f"--logfile={log}", *argv]
        # twistd logs to its file; stderr catches what fails before the log is open.
        with (self.workdir / f"{name}.stderr").open("wb") as stderr:
            popen = self.topology.exec(
                namespace,
                command,
                cwd=self.workdir,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.processes[name] = Process(name, namespace, log, popen)

    def _check_alive(self) -> None:
        for proc in self.processes.values():
            code = proc.popen.poll()
            if code is not None:
                stderr = tail(self.workdir / f"{proc.name}.stderr", 10)
                raise LabError(
                    f"{proc.name} exited with status {code}:\n{stderr}{tail(proc.log, 20)}"
                )

    def _poll(self, condition: Callable[[], bool], what: str, deadline: float) -> None:
        while True:
            self._check_alive()
            with contextlib.suppress(ControlError, LabError, KeyError, IndexError):
                if condition():
                    return
            if time.monotonic() >= deadline:
                raise LabError(f"timed out waiting for {what}\n{self.logs(15)}")
            time.sleep(POLL_S)

    def _wait(
        self,
        role: str,
        condition: Callable[[dict[str, Any], dict[str, int]], bool],
        what: str,
        deadline: float,
    ) -> None:
        self._poll(lambda: condition(*self.role_status(role)), f"{role}: {what}", deadline)

    def _wait_listening(self, namespace: str, port: int, name: str, deadline: float) -> None:
        def listening() -> bool:
            result = self.topology.run(namespace, ["ss", "-Htln", f"sport = :{port}"])
            return bool(result.stdout.strip())

        self._poll(listening, f"{name} listening on TCP {port}", deadline)

    # -- provisioning ----------------------------------------------------------------------

    def _provision(self) -> None:
        root, now, lay = self.workdir, _now(), self.layout
        home = DomainStore.init(root / "home", HOME_DOMAIN, PASSWORD, now)
        visited = DomainStore.init(root / "visited", VISITED_DOMAIN, PASSWORD, now)
        home.issue(Role.HA, "ha", PASSWORD, now, address=lay.ha.ip)
        home.issue(Role.CN, "cn", PASSWORD, now, address=lay.cn.ip)
        visited.issue(Role.FA, FA1, PASSWORD, now, address=lay.fa1_uplink.ip)
        visited.issue(Role.FA, FA2, PASSWORD, now, address=lay.fa2_uplink.ip)
        card = home.issue_mobile_node(MN_NAME, "ha", PASSWORD, now, address=self.mn_home)
        card.save(root / f"{MN_NAME}.card")

    def _write_configs(self) -> None:
        lay = self.layout
        home_tc, visited_tc = f"{lay.ha.ip}:{TC_PORT}", f"{lay.fa1_uplink.ip}:{TC_PORT}"
        files = {
            "tc-home.toml": f"""
                store = "home"
                port = {TC_PORT}
                interface = "{lay.ha.ip}"
                [[peers]]
                domain = "{VISITED_DOMAIN}"
                ca_certificate = "visited/ca.pem"
                host = "{lay.fa1_uplink.ip}"
                port = {TC_PORT}
            """,
            "tc-visited.toml": f"""
                store = "visited"
                port = {TC_PORT}
                interface = "{lay.fa1_uplink.ip}"
                [[peers]]
                domain = "{HOME_DOMAIN}"
                ca_certificate = "home/ca.pem"
                host = "{lay.ha.ip}"
                port = {TC_PORT}
            """,
            "ha.toml": f"""
                control_socket = "ha.sock"
                [ha]
                store = "home"
                name = "ha"
                interface = "{lay.ha.ip}"
                database = "ha.sqlite"
                tc = "{home_tc}"
            """,
            "cn.toml": f"""
                control_socket = "cn.sock"
                [cn]
                store = "home"
                name = "cn"
                interface = "{lay.cn.ip}"
                tc = "{home_tc}"
                tun = "{TUN_NAME}"
                [[cn.peers]]
                home_address = "{self.mn_home}"
                home_agent = "{lay.ha.ip}"
                home_agent_name = "ha"
            """,
            "mn.toml": f"""
                control_socket = "mn.sock"
                [mn]
                name = "{MN_NAME}"
                smart_card = "{MN_NAME}.card"
                advertisement = "icmp"
                solicit_to = ["{lay.fa1_foreign.ip}", "{lay.fa2_foreign.ip}"]
                tun = "{TUN_NAME}"
                tun_routes = ["{lay.cn.ip}/32"]
            """,
        }
        for fa, mn_link in ((FA1, lay.mn_fa1.ip), (FA2, lay.mn_fa2.ip)):
            # The FA listens on all its addresses: registrations arrive on the foreign link,
            # tunnel connections and session messages on the uplink.
            files[f"{fa}.toml"] = f"""
                control_socket = "{fa}.sock"
                [fa]
                store = "visited"
                name = "{fa}"
                tc = "{visited_tc}"
                advertisement = "icmp"
                advertise_to = ["{mn_link}"]
                advertisement_interval = 0.5
            """
        for name, text in files.items():
            lines = [line.strip() for line in text.strip().splitlines()]
            (self.workdir / name).write_text("\n".join(lines) + "\n")


def _tc_registered(status: dict[str, Any], counters: dict[str, int]) -> bool:
    return counters.get("tc_registrations", 0) >= 1


def _mn_registered(status: dict[str, Any], counters: dict[str, int]) -> bool:
    return status.get("state") == "registered"


def _mn_has_session(status: dict[str, Any], counters: dict[str, int]) -> bool:
    return bool(status.get("sessions"))


def _cn_established(status: dict[str, Any], counters: dict[str, int]) -> bool:
    peers = status.get("peers") or []
    return bool(peers) and all(p.get("state") == "established" for p in peers)
