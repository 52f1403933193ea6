"""The namespace topology of the lab (mvpn.lab.netns): built, used, and removed without trace.

The spec and requirement tests run anywhere; the rest need root and network namespaces. They
skip without them, except under CI (which is root), where a missing resource fails them.
Every address is in 10.77.0.0/16 and every packet stays in namespaces these tests create.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from mvpn.lab import netns
from mvpn.lab.netns import (
    CN,
    FA1,
    FA2,
    FOREIGN,
    HOME,
    LAB,
    LAB_NETWORK,
    MN,
    MN_TO_FA1,
    MN_TO_FA2,
    ROUTER,
    Endpoint,
    Impairment,
    LabTopology,
    LinkSpec,
    NamespaceSpec,
    Need,
    SpecError,
    TopologyError,
    TopologySpec,
)

# The whole module stays quick: a topology builds in well under a second, and the only waits
# are one short kill grace and two child interpreters.
pytestmark = pytest.mark.timeout(20)

NETNS_NEEDS = (Need.ROOT, Need.NETNS, Need.PING)


def _ours(prefix: str) -> list[str]:
    """The host's namespaces that belong to ``prefix``."""
    return [name for name in netns.list_namespaces() if name.startswith(prefix + "-")]


def _ping(
    topo: LabTopology, source: str, target: IPv4Interface, wait_s: int = 2
) -> subprocess.CompletedProcess[str]:
    """One ping from namespace ``source``; ``wait_s`` bounds the wait where none may come."""
    return topo.run(source, ["ping", "-c", "1", "-W", str(wait_s), str(target.ip)])


@pytest.fixture(scope="module")
def host() -> None:
    """Root, ``ip netns`` and ping, or skip (fail under CI)."""
    netns.require(needs=NETNS_NEEDS)


@pytest.fixture(scope="module")
def lab(host: None) -> Iterator[LabTopology]:
    """One lab topology shared by the read-mostly tests of this module."""
    with LabTopology(netns.run_prefix("tlab")) as topo:
        yield topo


# --- the spec (no root needed) -------------------------------------------------------------


def test_spec_refuses_addresses_outside_the_lab_network() -> None:
    """An address outside 10.77.0.0/16 is refused when the spec is written, so a typo can
    never put lab traffic on a real network."""
    with pytest.raises(SpecError, match="outside"):
        Endpoint(HOME, "uplink", IPv4Interface("10.78.1.2/24"))
    with pytest.raises(SpecError, match="outside"):
        Endpoint(HOME, "uplink", IPv4Interface("10.77.1.2/8"))


def test_spec_refuses_inconsistent_links_and_routes() -> None:
    """Mismatched subnets, over-long interface names, unknown namespaces and a gateway on no
    link of its namespace are refused before anything touches the kernel."""
    a = Endpoint("x", "left", IPv4Interface("10.77.9.1/24"))
    with pytest.raises(SpecError, match="different subnets"):
        LinkSpec(a, Endpoint("y", "right", IPv4Interface("10.77.10.1/24")))
    with pytest.raises(SpecError, match="interface name"):
        Endpoint("x", "a" * 16, IPv4Interface("10.77.9.1/24"))
    link = LinkSpec(a, Endpoint("y", "right", IPv4Interface("10.77.9.2/24")))
    with pytest.raises(SpecError, match="unknown namespace"):
        TopologySpec((NamespaceSpec("x"),), (link,))
    with pytest.raises(SpecError, match="on none of its links"):
        TopologySpec(
            (NamespaceSpec("x", default_gateway=IPv4Address("10.77.8.1")), NamespaceSpec("y")),
            (link,),
        )
    with pytest.raises(SpecError, match="namespace name"):
        NamespaceSpec("has-dash")


def test_lab_layout_routes() -> None:
    """The lab: home, fa1, fa2 and cn route via the router's address on their uplink; the MN
    has no default route, only its two foreign links; the router forwards."""
    spec = LAB.spec()
    gateways = {ns.name: ns.default_gateway for ns in spec.namespaces}
    assert gateways == {
        HOME: LAB.home_router.ip,
        FA1: LAB.fa1_router.ip,
        FA2: LAB.fa2_router.ip,
        CN: LAB.cn_router.ip,
        MN: None,
        ROUTER: None,
    }
    assert [ns.name for ns in spec.namespaces if ns.forwarding] == [ROUTER]
    assert {e.address for e in spec.endpoints_in(MN)} == {LAB.mn_fa1, LAB.mn_fa2}
    # The router knows the four uplinks only: no route to the MN's foreign links.
    router_nets = {e.address.network for e in spec.endpoints_in(ROUTER)}
    assert LAB.mn_fa1.network not in router_nets
    assert LAB.mn_fa2.network not in router_nets
    assert LAB.mn_home_address in LAB.ha.network
    assert all(e.address.network.subnet_of(LAB_NETWORK) for e in spec.endpoints_in(ROUTER))


def test_require_skips_outside_ci_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A missing tool is a skip with the reason for a developer, and a failure under CI."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no ping, no iperf3
    missing = netns.requirements((Need.PING, Need.IPERF3))
    assert [m.need for m in missing] == [Need.PING, Need.IPERF3]
    with pytest.raises(pytest.skip.Exception, match="ping"):
        netns.require(ci="", needs=(Need.PING,))
    with pytest.raises(pytest.fail.Exception, match="CI must provide: iperf3"):
        netns.require(ci="true", needs=(Need.IPERF3,))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        netns.require(needs=(Need.PING,))


# --- the built topology (root) --------------------------------------------------------------


def test_cn_pings_ha_across_router(lab: LabTopology) -> None:
    """The CN reaches the HA through the router, and the HA reaches both FAs' uplinks (the
    path of the HA-FA tunnel)."""
    reply = _ping(lab, CN, lab.layout.ha)
    assert reply.returncode == 0, reply.stdout + reply.stderr
    assert "1 received" in reply.stdout
    for uplink in (lab.layout.fa1_uplink, lab.layout.fa2_uplink):
        assert _ping(lab, HOME, uplink).returncode == 0


def test_mn_reaches_only_its_foreign_links(lab: LabTopology) -> None:
    """The MN talks to FA1 and FA2 on its foreign links but has no route to the CN or the HA:
    without MVPN it cannot reach the world."""
    assert _ping(lab, MN, lab.layout.fa1_foreign).returncode == 0
    assert _ping(lab, MN, lab.layout.fa2_foreign).returncode == 0
    for target in (lab.layout.cn, lab.layout.ha):
        reply = _ping(lab, MN, target)
        assert reply.returncode != 0
        assert "Network is unreachable" in reply.stderr
    route = lab.run(MN, ["ip", "route", "get", str(lab.layout.cn.ip)])
    assert route.returncode != 0


def test_foreign_link_cut_and_restored(lab: LabTopology) -> None:
    """link_down on the MN's side of the FA1 link cuts it (FA1 loses carrier, pings fail,
    the FA2 link is untouched); link_up restores it."""
    try:
        lab.link_down(MN, MN_TO_FA1)
        state = lab.run(FA1, ["ip", "-o", "link", "show", FOREIGN]).stdout
        assert "NO-CARRIER" in state
        assert _ping(lab, MN, lab.layout.fa1_foreign).returncode != 0
        assert _ping(lab, FA1, lab.layout.mn_fa1, wait_s=1).returncode != 0
        assert _ping(lab, MN, lab.layout.fa2_foreign).returncode == 0
    finally:
        lab.link_up(MN, MN_TO_FA1)
    state = lab.run(FA1, ["ip", "-o", "link", "show", FOREIGN]).stdout
    assert "NO-CARRIER" not in state
    assert "state UP" in state
    assert _ping(lab, MN, lab.layout.fa1_foreign).returncode == 0
    assert lab.run(MN, ["ip", "-o", "link", "show", MN_TO_FA2]).returncode == 0


def test_down_removes_namespaces_veths_and_processes(host: None) -> None:
    """down() stops exec'd processes (TERM, then KILL for one that ignores TERM), deletes
    every veth (checked through a handle that keeps one namespace alive past its name) and
    every namespace; a second down() does nothing."""
    prefix = netns.run_prefix("tdown")
    topo = LabTopology(prefix, kill_grace_s=0.5)
    topo.up()
    held = os.open(f"/run/netns/{topo.namespace(ROUTER)}", os.O_RDONLY)
    try:
        polite = topo.exec(HOME, ["sleep", "60"])
        stubborn = topo.exec(CN, ["sh", "-c", 'trap "" TERM; exec sleep 60'])
        before = topo.run(ROUTER, ["ip", "-o", "link", "show", "type", "veth"]).stdout
        assert len(before.splitlines()) == 4
        topo.down()
        assert polite.returncode == -signal.SIGTERM
        assert stubborn.returncode == -signal.SIGKILL
        assert _ours(prefix) == []
        # The router's namespace still exists through our handle: its veths must be gone.
        left = subprocess.run(
            ["nsenter", f"--net=/proc/self/fd/{held}", "ip", "-o", "link", "show"],
            pass_fds=(held,),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert [line.split(":")[1].strip() for line in left.splitlines()] == ["lo"]
    finally:
        os.close(held)
        topo.down()
    assert not topo.is_up
    with pytest.raises(TopologyError, match="not up"):
        topo.run(HOME, ["true"])


def test_down_after_the_body_raised(host: None) -> None:
    """Leaving the with-block by an exception still removes every namespace."""
    prefix = netns.run_prefix("traise")
    with pytest.raises(RuntimeError, match="body failed"), LabTopology(prefix) as topo:
        assert len(_ours(prefix)) == len(topo.spec.namespaces)
        raise RuntimeError("body failed")
    assert _ours(prefix) == []


def test_failed_up_removes_what_it_built(host: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """When up() fails half-way (here: creating FA2's uplink), what it had built is removed
    and the error reaches the caller; down() afterwards is harmless."""
    real = netns._command

    def failing(argv, timeout=netns.COMMAND_TIMEOUT_S):
        if argv[:3] == ["ip", "link", "add"] and argv[3:6] == ["uplink", "netns", fa2]:
            return subprocess.CompletedProcess(argv, 2, "", "injected failure")
        return real(argv, timeout)

    prefix = netns.run_prefix("tpartial")
    topo = LabTopology(prefix)
    fa2 = topo.namespace(FA2)
    monkeypatch.setattr(netns, "_command", failing)
    with pytest.raises(TopologyError, match="injected failure"):
        topo.up()
    assert _ours(prefix) == []
    assert not topo.is_up
    topo.down()
    monkeypatch.setattr(netns, "_command", real)
    with topo:  # the same object builds fine once nothing fails
        assert len(_ours(prefix)) == len(topo.spec.namespaces)
    assert _ours(prefix) == []


def test_stale_namespaces_of_the_prefix_are_cleaned(host: None) -> None:
    """cleanup_stale removes a crashed run's namespaces with the prefix, their veths and the
    processes in them, and nothing of another prefix; up() does it by itself."""
    prefix = netns.run_prefix("tstale")
    other = netns.run_prefix("tstale-x")  # "<prefix>-x-home": another run, not ours
    stale = [f"{prefix}-{HOME}", f"{prefix}-old"]
    for name in [*stale, f"{other}-{HOME}"]:
        subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(
        ["ip", "-n", stale[0], "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        check=True,
    )
    orphan = subprocess.Popen(["ip", "netns", "exec", stale[0], "sleep", "60"])
    try:
        assert sorted(netns.cleanup_stale(prefix, grace_s=2.0)) == sorted(stale)
        assert orphan.wait(5) == -signal.SIGTERM
        assert _ours(prefix) == [f"{other}-{HOME}"]
        # A leftover with the very name up() needs does not stop a new run.
        subprocess.run(["ip", "netns", "add", f"{prefix}-{HOME}"], check=True)
        with LabTopology(prefix) as topo:
            assert topo.is_up
            assert _ping(topo, CN, topo.layout.ha).returncode == 0
    finally:
        orphan.kill()
        orphan.wait()
        netns.cleanup_stale(prefix)
        netns.cleanup_stale(other)
    assert _ours(prefix) == []


def test_foreign_impairment_applied_where_netem_exists(host: None) -> None:
    """A foreign-link impairment becomes a netem qdisc on all four foreign-link ends where the
    kernel has netem; where it has not, the topology still builds and names those ends."""
    ends = (f"{FA1}:{FOREIGN}", f"{MN}:{MN_TO_FA1}", f"{FA2}:{FOREIGN}", f"{MN}:{MN_TO_FA2}")
    impairment = Impairment(loss_percent=0.0, delay_ms=1.0)
    with LabTopology(netns.run_prefix("tnetem"), foreign_impairment=impairment) as topo:
        qdisc = topo.run(FA1, ["tc", "qdisc", "show", "dev", FOREIGN]).stdout
        uplink_qdisc = topo.run(FA1, ["tc", "qdisc", "show", "dev", "uplink"]).stdout
        if netns.netem_available():
            assert topo.unimpaired == ()
            assert "netem" in qdisc
            assert "delay 1ms" in qdisc
        else:
            assert topo.unimpaired == ends
            assert "netem" not in qdisc
        assert "netem" not in uplink_qdisc
        assert _ping(topo, MN, topo.layout.fa1_foreign).returncode == 0


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from mvpn.lab.netns import LabTopology, down_on_signals
    topo = LabTopology(sys.argv[1]).up()
    with down_on_signals(topo):
        print("up", flush=True)
        time.sleep(15)
    """
)


@pytest.mark.parametrize(
    ("signum", "expected_rc"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)]
)
def test_signal_takes_a_script_topology_down(
    host: None, signum: signal.Signals, expected_rc: int
) -> None:
    """A lab script killed by SIGTERM or interrupted by Ctrl-C (SIGINT) removes its namespaces
    first, then ends as the signal says: killed by SIGTERM; for SIGINT a KeyboardInterrupt,
    after which Python exits with the SIGINT status."""
    prefix = netns.run_prefix(f"tsig{int(signum)}")
    script = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_SCRIPT, prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout is not None
        assert script.stdout.readline() == "up\n"
        assert len(_ours(prefix)) == len(LAB.spec().namespaces)
        script.send_signal(signum)
        _out, err = script.communicate(timeout=10)
        assert script.returncode == expected_rc, err
        if signum == signal.SIGINT:
            assert "KeyboardInterrupt" in err
        assert _ours(prefix) == []
    finally:
        script.kill()
        script.wait()
        netns.cleanup_stale(prefix)
