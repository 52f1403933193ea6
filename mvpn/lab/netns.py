"""Network-namespace topologies for the MVPN lab and the namespace tests.

The lab puts each MVPN role (draft §3.1: mobile node, foreign agents, home agent,
correspondent node) in a Linux network namespace of its own, joined by veth pairs through a
router namespace, so the roles talk over real links as separate ``twistd`` processes: real
ICMP agent advertisements on the foreign links, UDP port 434, TUN devices. The topology is
described declaratively (:class:`TopologySpec`), built with the ``ip`` tool
(:class:`Topology`) and removed again, also after a failure, a crash or a signal.

The lab's own layout (:class:`LabLayout`, issue 6)::

    home (HA)  10.77.1.2 --- 10.77.1.1 \\
    fa1 uplink 10.77.2.2 --- 10.77.2.1  \\
    fa2 uplink 10.77.3.2 --- 10.77.3.1  -- rt (router, IP forwarding on)
    cn         10.77.4.2 --- 10.77.4.1  /
    fa1 foreign 10.77.12.1 --- 10.77.12.10 mn
    fa2 foreign 10.77.13.1 --- 10.77.13.10 mn

Every namespace but ``mn`` and ``rt`` has a default route via the router. The mobile node has
no default route: it reaches the world only through MVPN (draft §3.5.1, the data flow goes
MN -> FA -> HA -> CN), and the router has no route to the foreign links, so nothing but MVPN
can carry the MN's traffic.

Safety: every address must lie in :data:`LAB_NETWORK` (10.77.0.0/16), veth pairs are created
directly inside the namespaces (never in the host's), and nothing is routed to the host, so
no packet of the lab leaves the namespaces this module creates.

This module needs no Twisted and no reactor: it drives ``ip``, ``tc`` and ``sysctl`` through
:mod:`subprocess`, and needs root.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from types import FrameType, TracebackType
from typing import Any, Final, Self

LAB_NETWORK: Final = IPv4Network("10.77.0.0/16")
"""Every address of every topology lies here: a private block no real network of ours uses,
checked when a spec is built so a typo cannot send lab traffic anywhere else."""

NAME_PREFIX: Final = "mvpn"
"""First part of every namespace name this module creates (``mvpn-<pid>[-<tag>]-<name>``)."""

IFNAME_MAX: Final = 15
"""Linux's IFNAMSIZ (16) less the terminating NUL."""

KILL_GRACE_S: Final = 5.0
"""How long a process gets between SIGTERM and SIGKILL at :meth:`Topology.down`: enough for a
``twistd`` to stop its services and remove its pid file."""

COMMAND_TIMEOUT_S: Final = 10.0
"""One ``ip``/``tc``/``sysctl`` call takes milliseconds; one that hangs this long means a
broken system, and the build fails instead of hanging the test run."""

_LOGICAL_NAME = re.compile(r"[a-z][a-z0-9]{0,14}")
# No "-" in a logical name: that is what lets cleanup_stale("mvpn-12") tell its own
# "mvpn-12-home" from another run's "mvpn-12-t1-home".
_PREFIX = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_IFNAME = re.compile(rf"[A-Za-z0-9_.-]{{1,{IFNAME_MAX}}}")

# Prefixes whose topology is up in this process: up() cleans leftovers of its prefix, which
# must never be a sibling topology of the same process.
_LIVE_PREFIXES: set[str] = set()


class TopologyError(Exception):
    """A command that builds, changes or removes the topology failed."""

    def __init__(self, argv: Sequence[str], returncode: int | None, detail: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.detail = detail
        super().__init__(f"{' '.join(self.argv)}: {detail} (exit {returncode})")


class SpecError(ValueError):
    """A topology spec that cannot be built as written (names, addresses, routes)."""


# --- the declarative spec -------------------------------------------------------------------


@dataclass(frozen=True)
class Impairment:
    """Loss and delay added to a link's egress with ``tc netem``, on both ends.

    Applied only where the kernel has netem (:func:`netem_available`); a link that could not
    be impaired is listed in :attr:`Topology.unimpaired` instead of failing the build.
    """

    loss_percent: float = 0.0
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss_percent <= 100.0:
            raise SpecError(f"loss must be 0..100 %, not {self.loss_percent}")
        if self.delay_ms < 0.0:
            raise SpecError(f"delay must be >= 0 ms, not {self.delay_ms}")

    def netem_args(self) -> list[str]:
        """The ``tc qdisc ... netem`` arguments for this impairment."""
        return ["delay", f"{self.delay_ms:g}ms", "loss", f"{self.loss_percent:g}%"]


@dataclass(frozen=True)
class Endpoint:
    """One end of a veth pair: the namespace (logical name), interface name and address."""

    namespace: str
    ifname: str
    address: IPv4Interface

    def __post_init__(self) -> None:
        if not _IFNAME.fullmatch(self.ifname) or self.ifname in {"lo", ".", ".."}:
            raise SpecError(f"bad interface name {self.ifname!r} (1..{IFNAME_MAX} characters)")
        if not self.address.network.subnet_of(LAB_NETWORK):
            raise SpecError(f"{self.address} is outside {LAB_NETWORK}")
        if self.address.ip in {self.address.network.network_address, self.address.network[-1]}:
            raise SpecError(f"{self.address} is a network or broadcast address")


@dataclass(frozen=True)
class LinkSpec:
    """A veth pair joining two namespaces on one subnet."""

    a: Endpoint
    b: Endpoint
    impairment: Impairment | None = None

    def __post_init__(self) -> None:
        if self.a.address.network != self.b.address.network:
            raise SpecError(f"{self.a.address} and {self.b.address} are on different subnets")
        if self.a.address.ip == self.b.address.ip:
            raise SpecError(f"both ends of a link have {self.a.address.ip}")
        if self.a.namespace == self.b.namespace:
            raise SpecError(f"a link from {self.a.namespace!r} to itself")

    @property
    def endpoints(self) -> tuple[Endpoint, Endpoint]:
        """Both ends, ``a`` first."""
        return (self.a, self.b)


@dataclass(frozen=True)
class NamespaceSpec:
    """A namespace: its logical name, whether it forwards IPv4, and its default gateway."""

    name: str
    forwarding: bool = False
    default_gateway: IPv4Address | None = None

    def __post_init__(self) -> None:
        if not _LOGICAL_NAME.fullmatch(self.name):
            raise SpecError(f"bad namespace name {self.name!r} ([a-z][a-z0-9]*, at most 15)")


@dataclass(frozen=True)
class TopologySpec:
    """Namespaces and the veth pairs between them, checked for consistency when built."""

    namespaces: tuple[NamespaceSpec, ...]
    links: tuple[LinkSpec, ...]

    def __post_init__(self) -> None:
        names = [ns.name for ns in self.namespaces]
        if len(set(names)) != len(names):
            raise SpecError(f"namespace names repeat: {names}")
        seen_ifnames: set[tuple[str, str]] = set()
        seen_addresses: set[IPv4Address] = set()
        for link in self.links:
            for end in link.endpoints:
                if end.namespace not in names:
                    raise SpecError(f"link end in unknown namespace {end.namespace!r}")
                if (end.namespace, end.ifname) in seen_ifnames:
                    raise SpecError(f"interface {end.ifname!r} twice in {end.namespace!r}")
                if end.address.ip in seen_addresses:
                    raise SpecError(f"address {end.address.ip} used twice")
                seen_ifnames.add((end.namespace, end.ifname))
                seen_addresses.add(end.address.ip)
        for ns in self.namespaces:
            gateway = ns.default_gateway
            if gateway is None:
                continue
            if gateway not in LAB_NETWORK:
                raise SpecError(f"gateway {gateway} of {ns.name!r} is outside {LAB_NETWORK}")
            own = self.endpoints_in(ns.name)
            if not any(gateway in end.address.network for end in own):
                raise SpecError(f"gateway {gateway} of {ns.name!r} is on none of its links")
            if any(gateway == end.address.ip for end in own):
                raise SpecError(f"gateway {gateway} of {ns.name!r} is its own address")

    def namespace(self, name: str) -> NamespaceSpec:
        """The namespace called ``name``; :class:`KeyError` if there is none."""
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        raise KeyError(name)

    def endpoints_in(self, name: str) -> tuple[Endpoint, ...]:
        """Every link end that lies in namespace ``name``."""
        return tuple(end for link in self.links for end in link.endpoints if end.namespace == name)


# --- the lab's layout -----------------------------------------------------------------------

HOME: Final = "home"
"""The home network's namespace: the home agent (and the home domain's TC)."""
FA1: Final = "fa1"
"""The first foreign agent's namespace (uplink to the router, foreign link to the MN)."""
FA2: Final = "fa2"
"""The second foreign agent's namespace, where the MN moves during a handover (draft §3.3)."""
CN: Final = "cn"
"""The correspondent node's namespace."""
MN: Final = "mn"
"""The mobile node's namespace: one link to each FA, no default route."""
ROUTER: Final = "rt"
"""The router joining the uplinks of home, fa1, fa2 and cn."""

UPLINK: Final = "uplink"
"""Interface name, in home, fa1, fa2 and cn, of the link to the router."""
FOREIGN: Final = "foreign"
"""Interface name, in fa1 and fa2, of the foreign link to the mobile node."""
MN_TO_FA1: Final = "fa1"
"""Interface name, in mn, of the foreign link to FA1."""
MN_TO_FA2: Final = "fa2"
"""Interface name, in mn, of the foreign link to FA2."""


def _iface(text: str) -> IPv4Interface:
    return IPv4Interface(text)


@dataclass(frozen=True)
class LabLayout:
    """The lab's addresses, one place for the tests and ``make lab`` to read them from.

    The router's interfaces in ``rt`` are named after the namespace they lead to (``home``,
    ``fa1``, ``fa2``, ``cn``); the other names are :data:`UPLINK`, :data:`FOREIGN`,
    :data:`MN_TO_FA1` and :data:`MN_TO_FA2`.
    """

    ha: IPv4Interface = field(default_factory=lambda: _iface("10.77.1.2/24"))
    home_router: IPv4Interface = field(default_factory=lambda: _iface("10.77.1.1/24"))
    fa1_uplink: IPv4Interface = field(default_factory=lambda: _iface("10.77.2.2/24"))
    fa1_router: IPv4Interface = field(default_factory=lambda: _iface("10.77.2.1/24"))
    fa1_foreign: IPv4Interface = field(default_factory=lambda: _iface("10.77.12.1/24"))
    fa2_uplink: IPv4Interface = field(default_factory=lambda: _iface("10.77.3.2/24"))
    fa2_router: IPv4Interface = field(default_factory=lambda: _iface("10.77.3.1/24"))
    fa2_foreign: IPv4Interface = field(default_factory=lambda: _iface("10.77.13.1/24"))
    cn: IPv4Interface = field(default_factory=lambda: _iface("10.77.4.2/24"))
    cn_router: IPv4Interface = field(default_factory=lambda: _iface("10.77.4.1/24"))
    mn_fa1: IPv4Interface = field(default_factory=lambda: _iface("10.77.12.10/24"))
    mn_fa2: IPv4Interface = field(default_factory=lambda: _iface("10.77.13.10/24"))
    mn_home_address: IPv4Address = field(default_factory=lambda: IPv4Address("10.77.1.10"))
    """The MN's home address on the home network. No link of the topology carries it: the
    MN's daemon puts it on its TUN device and the CN's daemon routes it into its own TUN."""

    def spec(self, foreign_impairment: Impairment | None = None) -> TopologySpec:
        """The topology; ``foreign_impairment`` applies to both foreign links (MN-FA1, MN-FA2),
        the radio links of a real deployment."""
        uplinks = (
            (HOME, self.ha, self.home_router),
            (FA1, self.fa1_uplink, self.fa1_router),
            (FA2, self.fa2_uplink, self.fa2_router),
            (CN, self.cn, self.cn_router),
        )
        links = [
            LinkSpec(Endpoint(name, UPLINK, own), Endpoint(ROUTER, name, router))
            for name, own, router in uplinks
        ]
        links += [
            LinkSpec(
                Endpoint(FA1, FOREIGN, self.fa1_foreign),
                Endpoint(MN, MN_TO_FA1, self.mn_fa1),
                foreign_impairment,
            ),
            LinkSpec(
                Endpoint(FA2, FOREIGN, self.fa2_foreign),
                Endpoint(MN, MN_TO_FA2, self.mn_fa2),
                foreign_impairment,
            ),
        ]
        namespaces = [
            NamespaceSpec(name, default_gateway=router.ip) for name, _own, router in uplinks
        ]
        namespaces += [NamespaceSpec(MN), NamespaceSpec(ROUTER, forwarding=True)]
        return TopologySpec(tuple(namespaces), tuple(links))


LAB: Final = LabLayout()
"""The lab's default layout."""


# --- commands -------------------------------------------------------------------------------


def _command(
    argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run one short administrative command; never raises for a non-zero exit."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise TopologyError(argv, None, f"not installed: {e.filename}") from e
    except subprocess.TimeoutExpired as e:
        raise TopologyError(argv, None, f"no answer within {timeout:g} s") from e


def _checked(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    result = _command(argv)
    if result.returncode != 0:
        raise TopologyError(argv, result.returncode, result.stderr.strip())
    return result


def list_namespaces() -> tuple[str, ...]:
    """Names of every named network namespace on the host (``ip netns list``)."""
    result = _checked(["ip", "netns", "list"])
    return tuple(line.split()[0] for line in result.stdout.splitlines() if line.strip())


def _namespace_pids(name: str) -> list[int]:
    result = _command(["ip", "netns", "pids", name])
    if result.returncode != 0:
        return []
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def _alive(pid: int) -> bool:
    # A zombie still answers kill(pid, 0): it is dead for our purposes, its parent reaps it.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in {"Z", "X"}


def _stop_pids(pids: Iterable[int], grace_s: float) -> None:
    """SIGTERM each pid, SIGKILL the ones still alive after ``grace_s``."""
    pending = list(pids)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if _alive(pid)]
        if pending:
            time.sleep(0.02)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _delete_namespace(name: str, grace_s: float) -> None:
    """Remove one namespace: stop what runs in it, delete its veths, then the name.

    A process left inside would keep the namespace (and its veths) alive after the name is
    gone, and the kernel frees a deleted namespace's veths asynchronously: deleting them
    first makes removal complete when this returns.
    """
    _stop_pids(_namespace_pids(name), grace_s)
    links = _command(["ip", "-n", name, "-o", "link", "show", "type", "veth"])
    if links.returncode == 0:
        for line in links.stdout.splitlines():
            # "7: uplink@if6: <...>": the name ends at "@" (veth peer) or ":".
            ifname = line.split(":", 2)[1].strip().split("@", 1)[0]
            # The peer may have gone with an earlier deletion: a missing device is fine.
            _command(["ip", "-n", name, "link", "del", ifname])
    result = _command(["ip", "netns", "del", name])
    if result.returncode != 0 and name in list_namespaces():
        raise TopologyError(["ip", "netns", "del", name], result.returncode, result.stderr)


def _owned_by(name: str, prefix: str) -> bool:
    head, _, rest = name.partition(prefix + "-")
    return head == "" and _LOGICAL_NAME.fullmatch(rest) is not None


def cleanup_stale(prefix: str, grace_s: float = KILL_GRACE_S) -> list[str]:
    """Remove the namespaces ``<prefix>-<name>`` left by an earlier run that crashed.

    Processes still running in them are stopped (TERM, KILL after ``grace_s``) and their
    veths deleted. Only exact ``<prefix>-<logical name>`` matches go: ``mvpn-12`` never
    touches ``mvpn-123-home`` nor ``mvpn-12-t1-home``. Returns the names removed.
    """
    removed = [name for name in list_namespaces() if _owned_by(name, prefix)]
    for name in removed:
        _delete_namespace(name, grace_s)
    return removed


def run_prefix(tag: str = "") -> str:
    """The per-run prefix ``mvpn-<pid>`` or ``mvpn-<pid>-<tag>`` (several topologies in one
    process need distinct tags)."""
    prefix = f"{NAME_PREFIX}-{os.getpid()}"
    return f"{prefix}-{tag}" if tag else prefix


def netem_available() -> bool:
    """Whether ``tc`` exists and the kernel accepts a netem qdisc (probed in a scratch
    namespace, so the host's own interfaces are never touched)."""
    if shutil.which("tc") is None or shutil.which("ip") is None:
        return False
    probe = f"mvpnprobe-{os.getpid()}-netem"
    _command(["ip", "netns", "del", probe])  # a probe a crash left behind
    if _command(["ip", "netns", "add", probe]).returncode != 0:
        return False
    try:
        result = _command(["tc", "-n", probe, "qdisc", "add", "dev", "lo", "root", "netem"])
        return result.returncode == 0
    finally:
        _command(["ip", "netns", "del", probe])


# --- the topology ---------------------------------------------------------------------------


class Topology:
    """A :class:`TopologySpec` built in the kernel: ``up()``, use, ``down()``.

    Namespaces are named ``<prefix>-<logical name>``; methods take the logical name. As a
    context manager it is up inside the ``with`` block and down after it, whatever happened.
    """

    def __init__(
        self, spec: TopologySpec, prefix: str | None = None, kill_grace_s: float = KILL_GRACE_S
    ) -> None:
        self.spec = spec
        self.prefix = run_prefix() if prefix is None else prefix
        if not _PREFIX.fullmatch(self.prefix):
            raise SpecError(f"bad prefix {self.prefix!r}")
        self.kill_grace_s = kill_grace_s
        self.unimpaired: tuple[str, ...] = ()
        """Links (``ns:ifname``) whose impairment could not be applied (no netem)."""
        self._created: list[str] = []
        self._processes: list[tuple[subprocess.Popen[Any], bool]] = []
        self._up = False

    # names

    def namespace(self, name: str) -> str:
        """The kernel's name of logical namespace ``name``."""
        self.spec.namespace(name)
        return f"{self.prefix}-{name}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The kernel's names of every namespace of the spec."""
        return tuple(self.namespace(ns.name) for ns in self.spec.namespaces)

    @property
    def is_up(self) -> bool:
        """True between a successful :meth:`up` and :meth:`down`."""
        return self._up

    # lifecycle

    def up(self) -> Self:
        """Build every namespace, link, address and route; return self.

        Leftovers of an earlier run with the same prefix are removed first. If any step
        fails, what was built is removed again and the error is raised.
        """
        if self._up:
            return self
        if self.prefix in _LIVE_PREFIXES:
            raise SpecError(f"prefix {self.prefix!r} is already up in this process")
        _LIVE_PREFIXES.add(self.prefix)
        try:
            cleanup_stale(self.prefix, self.kill_grace_s)
            self._build()
        except BaseException:
            self.down()
            raise
        self._up = True
        return self

    def _build(self) -> None:
        for ns in self.spec.namespaces:
            full = self.namespace(ns.name)
            _checked(["ip", "netns", "add", full])
            self._created.append(full)
            # Daemons in the namespace talk to themselves over loopback (twistd, the TC).
            _checked(["ip", "-n", full, "link", "set", "lo", "up"])
            if ns.forwarding:
                _checked(["ip", "netns", "exec", full, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        unimpaired = []
        for link in self.spec.links:
            a, b = link.a, link.b
            # Both ends are born inside their namespaces: no name ever appears in the host's,
            # so parallel runs cannot collide and nothing can leak onto the host.
            veth = ["ip", "link", "add", a.ifname, "netns", self.namespace(a.namespace)]
            veth += ["type", "veth", "peer", "name", b.ifname]
            _checked([*veth, "netns", self.namespace(b.namespace)])
            for end in link.endpoints:
                full = self.namespace(end.namespace)
                _checked(["ip", "-n", full, "addr", "add", str(end.address), "dev", end.ifname])
                _checked(["ip", "-n", full, "link", "set", end.ifname, "up"])
                if link.impairment is not None and not self._impair(end, link.impairment):
                    unimpaired.append(f"{end.namespace}:{end.ifname}")
        self.unimpaired = tuple(unimpaired)
        for ns in self.spec.namespaces:
            if ns.default_gateway is not None:
                route = ["route", "add", "default", "via", str(ns.default_gateway)]
                _checked(["ip", "-n", self.namespace(ns.name), *route])

    def _impair(self, end: Endpoint, impairment: Impairment) -> bool:
        argv = ["tc", "-n", self.namespace(end.namespace), "qdisc", "replace", "dev"]
        argv += [end.ifname, "root", "netem", *impairment.netem_args()]
        try:
            result = _command(argv)
        except TopologyError:
            return False  # no tc at all: impairments are optional
        if result.returncode == 0:
            return True
        if "unknown" in result.stderr.lower():
            return False  # this kernel has no sch_netem
        raise TopologyError(argv, result.returncode, result.stderr.strip())

    def down(self) -> None:
        """Stop the processes started by :meth:`exec`, then remove every namespace and veth.

        Idempotent, and complete after a partial :meth:`up`: anything named with this
        topology's prefix goes. Raises :class:`TopologyError` only if something could not
        be removed, after trying everything else.
        """
        errors: list[TopologyError] = []
        self._stop_processes()
        for full in reversed(self._created):
            try:
                _delete_namespace(full, self.kill_grace_s)
            except TopologyError as e:
                errors.append(e)
        self._created.clear()
        if self.prefix in _LIVE_PREFIXES:
            # A namespace created by a command that failed half-way was never recorded.
            try:
                cleanup_stale(self.prefix, self.kill_grace_s)
            except TopologyError as e:
                errors.append(e)
            _LIVE_PREFIXES.discard(self.prefix)
        self._up = False
        if errors:
            raise errors[0]

    def _stop_processes(self) -> None:
        live = [(p, group) for p, group in self._processes if p.poll() is None]
        for proc, group in live:
            _signal(proc, group, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_s
        for proc, group in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, group, signal.SIGKILL)
                proc.wait(COMMAND_TIMEOUT_S)
            if group:
                # Children the leader left behind in its process group go too.
                _signal(proc, group, signal.SIGKILL)
        self._processes.clear()

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # inside the namespaces

    def _inside(self, name: str, argv: Sequence[str]) -> list[str]:
        if not self._up:
            raise TopologyError(argv, None, "the topology is not up")
        return ["ip", "netns", "exec", self.namespace(name), *argv]

    def exec(self, name: str, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside namespace ``name``; :meth:`down` stops it.

        ``ip netns exec`` replaces itself with ``argv``, so the Popen's pid is the program's.
        It starts in a session of its own (unless ``start_new_session`` says otherwise) so
        that ``down()`` reaches its children too, and a Ctrl-C meant for the lab script
        reaches the script's handler first (:func:`down_on_signals`).
        """
        popen_kw.setdefault("start_new_session", True)
        popen_kw.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(self._inside(name, argv), **popen_kw)
        self._processes.append((proc, bool(popen_kw["start_new_session"])))
        return proc

    def run(
        self, name: str, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside namespace ``name`` and collect its output (text).

        A non-zero exit is returned, not raised: checking that something fails (the MN has no
        route to the CN) is as common here as checking that it works. A command still
        running after ``timeout`` seconds is killed and :class:`subprocess.TimeoutExpired`
        raised.
        """
        return subprocess.run(
            self._inside(name, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def link_down(self, name: str, ifname: str) -> None:
        """Take interface ``ifname`` of namespace ``name`` down: its veth peer loses carrier,
        as when a mobile node leaves a foreign link's radio range."""
        self._set_link(name, ifname, "down")

    def link_up(self, name: str, ifname: str) -> None:
        """Bring interface ``ifname`` of namespace ``name`` back up (its address and connected
        route come back with it)."""
        self._set_link(name, ifname, "up")

    def _set_link(self, name: str, ifname: str, state: str) -> None:
        if not self._up:
            raise TopologyError(["ip", "link", "set", ifname, state], None, "not up")
        _checked(["ip", "-n", self.namespace(name), "link", "set", ifname, state])


def _signal(proc: subprocess.Popen[Any], group: bool, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)


class LabTopology(Topology):
    """The lab's topology (:class:`LabLayout`); its addresses are ``self.layout``."""

    def __init__(
        self,
        prefix: str | None = None,
        *,
        layout: LabLayout = LAB,
        foreign_impairment: Impairment | None = None,
        kill_grace_s: float = KILL_GRACE_S,
    ) -> None:
        super().__init__(layout.spec(foreign_impairment), prefix, kill_grace_s)
        self.layout = layout


# --- signals --------------------------------------------------------------------------------

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextlib.contextmanager
def down_on_signals(
    topology: Topology, signums: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """Inside this block, SIGINT or SIGTERM first takes ``topology`` down, then acts as it
    would have (KeyboardInterrupt for SIGINT, death by SIGTERM by default).

    For scripts (``make lab``): the main thread only, as Python's signal handlers are. A
    second signal during the teardown is ignored so that a hurried second Ctrl-C cannot
    leave half the namespaces behind.
    """
    previous: dict[signal.Signals, _Handler] = {s: signal.getsignal(s) for s in signums}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        try:
            topology.down()
        finally:
            restore()
            # Re-deliver to the previous handler: the default SIGTERM action kills the
            # process with the right status, Python's SIGINT handler raises KeyboardInterrupt.
            signal.raise_signal(signum)

    for signum in signums:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        restore()


# --- what the host must offer ---------------------------------------------------------------


class Need(enum.Enum):
    """Something the namespace tests or the lab need from the host."""

    ROOT = "root"
    NETNS = "ip netns"
    TUN = "/dev/net/tun"
    PING = "ping"
    IPERF3 = "iperf3"


@dataclass(frozen=True)
class Missing:
    """One unmet :class:`Need` and why it is unmet."""

    need: Need
    reason: str

    def __str__(self) -> str:
        return f"{self.need.value}: {self.reason}"


_INSTALL_HINT: Final = "run `make system-packages` as root"


def _probe_netns() -> str | None:
    for tool in ("ip", "sysctl"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed ({_INSTALL_HINT})"
    probe = f"mvpnprobe-{os.getpid()}"
    try:
        _command(["ip", "netns", "del", probe])  # a probe a crash left behind
        added = _command(["ip", "netns", "add", probe])
    except TopologyError as e:
        return e.detail
    if added.returncode != 0:
        return f"cannot create a network namespace: {added.stderr.strip()}"
    _command(["ip", "netns", "del", probe])
    return None


def _probe_tun() -> str | None:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as e:
        return f"cannot open /dev/net/tun: {e.strerror}"
    os.close(fd)
    return None


def requirements(needs: Iterable[Need] = tuple(Need)) -> tuple[Missing, ...]:
    """What of ``needs`` this host lacks: empty when everything is there.

    Without root nothing else that needs root is probed (namespaces, the TUN device).
    """
    wanted = set(needs)
    missing: list[Missing] = []
    root = os.geteuid() == 0
    if not root and wanted & {Need.ROOT, Need.NETNS, Need.TUN}:
        missing.append(Missing(Need.ROOT, "network namespaces and TUN devices need root"))
    if root and Need.NETNS in wanted and (reason := _probe_netns()) is not None:
        missing.append(Missing(Need.NETNS, reason))
    if root and Need.TUN in wanted and (reason := _probe_tun()) is not None:
        missing.append(Missing(Need.TUN, reason))
    for need in (Need.PING, Need.IPERF3):
        if need in wanted and shutil.which(need.value) is None:
            missing.append(Missing(need, f"`{need.value}` is not installed ({_INSTALL_HINT})"))
    return tuple(missing)


def _ci_set(ci: str | bool | None) -> bool:
    if isinstance(ci, bool):
        return ci
    return ci is not None and ci.strip().lower() not in {"", "0", "false", "no"}


def require(ci: str | bool | None = None, needs: Iterable[Need] = tuple(Need)) -> None:
    """In a test: skip it when the host lacks something of ``needs``, but fail it under CI.

    ``ci`` defaults to the ``CI`` environment variable read at call time; CI runs as root
    with namespaces, so a missing resource there is a broken CI, never a reason to skip.
    """
    import pytest  # only tests call this; the lab scripts use requirements()

    if ci is None:
        ci = os.environ.get("CI")
    missing = requirements(needs)
    if not missing:
        return
    reason = "; ".join(str(m) for m in missing)
    if _ci_set(ci):
        pytest.fail(f"CI must provide: {reason}", pytrace=False)
    pytest.skip(f"host lacks: {reason}")
