"""iperf3 through tunnels between two network namespaces: the peers MVPN is measured against.

TARGETS.md compares the MVPN data plane (CN -> HA -> FA -> MN, measured by
:mod:`benchmarks.report` through :class:`mvpn.lab.deploy.MvpnLab`) with tunnels users already
know, measured in the same namespace layout (:class:`mvpn.lab.netns.LabTopology`) and in the
same run:

- ``veth``: no tunnel at all, ``cn`` to ``home`` through the router (the plumbing's ceiling);
- ``openvpn_tcp``: OpenVPN 2.6 in TCP mode with AES-256-GCM, TLS mode with a throw-away PKI,
  no data-channel offload (``--disable-dco``): the same TCP-in-TCP shape as MVPN's HA-FA
  tunnel, our first reference;
- ``wireguard_go``: wireguard-go (userspace, UDP), configured with ``wg``.

Each is one iperf3 TCP stream, client in ``cn``, server in ``home``. The Debian packages
(``openvpn``, ``wireguard-go``, ``wireguard-tools``, ``iperf3``) are installed with apt-get
when missing (root only, as the lab). Every tunnel address lies in the lab's 10.77.0.0/16 and
every process runs inside the topology's namespaces, which :meth:`Topology.down` removes.

Run alone: ``python -m benchmarks.tunnels`` (root). A benchmark reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from statistics import median
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mvpn.lab.netns import CN, HOME, LabTopology, requirements, run_prefix

IPERF_PORT = 5201
OPENVPN_PORT = 1194
WIREGUARD_PORTS = (51820, 51821)
OPENVPN_ADDRESSES = (IPv4Address("10.77.100.1"), IPv4Address("10.77.100.2"))
"""Server (home) and client (cn) ends of the OpenVPN point-to-point link."""
WIREGUARD_ADDRESSES = (IPv4Address("10.77.101.1"), IPv4Address("10.77.101.2"))
"""home and cn ends of the wireguard-go link."""

DEBIAN_PACKAGES = {
    "openvpn": "openvpn",
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "iperf3": "iperf3",
}
"""Program -> Debian package that provides it."""

Log = Callable[[str], None]


class BenchSetupError(RuntimeError):
    """A tunnel could not be set up: the figure is reported as not measured, with this."""


def ensure_packages(programs: Sequence[str], log: Log = print) -> None:
    """Install the Debian packages of the missing ``programs`` (apt-get, root only).

    ``--no-install-recommends``: wireguard-tools recommends a kernel image, which a userspace
    benchmark does not need.
    """
    missing = sorted({DEBIAN_PACKAGES[p] for p in programs if shutil.which(p) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchSetupError(f"not installed and not root to install: {', '.join(missing)}")
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(apt, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        result = subprocess.run(apt, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BenchSetupError(f"apt-get install {' '.join(missing)}: {result.stderr[-400:]}")


# --- iperf3 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IperfResult:
    """One iperf3 run: received throughput, sender retransmits, seconds measured."""

    mbit_s: float
    retransmits: int
    seconds: float


def iperf3(
    topology: LabTopology,
    server_ns: str,
    client_ns: str,
    address: IPv4Address,
    seconds: float,
    port: int = IPERF_PORT,
) -> IperfResult:
    """One TCP stream from ``client_ns`` to an iperf3 server on ``address`` in ``server_ns``.

    The server serves exactly one test (``-1``) and exits. The figure is what the receiver
    got (``sum_received``), the TARGETS.md convention.
    """
    server = topology.exec(
        server_ns,
        ["iperf3", "-s", "-1", "-B", str(address), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10.0
        while True:
            argv = ["iperf3", "-c", str(address), "-p", str(port), "-t", f"{seconds:g}", "-J"]
            result = topology.run(client_ns, argv, timeout=seconds + 30.0)
            report: dict[str, Any] = json.loads(result.stdout or "{}")
            error = str(report.get("error", "")) or result.stderr.strip()
            if result.returncode == 0 and "sum_received" in report.get("end", {}):
                break
            # The server may not listen yet: "unable to connect" while it starts.
            if time.monotonic() > deadline or "connect" not in error:
                raise BenchSetupError(f"iperf3 to {address}: {error or 'no report'}")
            time.sleep(0.2)
        end = report["end"]
        received = end["sum_received"]
        return IperfResult(
            float(received["bits_per_second"]) / 1e6,
            int(end.get("sum_sent", {}).get("retransmits", 0)),
            float(received["seconds"]),
        )
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(10)


# --- OpenVPN --------------------------------------------------------------------------------


def _certificate(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=name == issuer[0], path_length=None), True)
    )
    return builder.sign(issuer[1], hashes.SHA256())


def _write_pki(directory: Path) -> None:
    """A throw-away CA, a server and a client certificate (P-256) for OpenVPN's TLS mode."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("bench-ca", ca_key, ("bench-ca", ca_key))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ("bench-ca", ca_key))
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"{name}.key").write_bytes(pem)
        os.chmod(directory / f"{name}.key", 0o600)


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchSetupError(f"{what}: not up within {timeout:g} s")
        time.sleep(0.1)


def _ping(topology: LabTopology, ns: str, address: IPv4Address) -> Callable[[], bool]:
    def check() -> bool:
        argv = ["ping", "-c", "1", "-W", "1", str(address)]
        return topology.run(ns, argv, timeout=5.0).returncode == 0

    return check


def start_openvpn(topology: LabTopology, directory: Path, log: Log = print) -> str:
    """OpenVPN 2.6, TCP, AES-256-GCM, between ``home`` (server) and ``cn`` (client).

    Point-to-point TLS mode (``--tls-server``/``--tls-client`` with ``--ifconfig``), ECDHE
    only (``--dh none``), no DCO. Returns, once a ping crosses the tunnel, the server's
    "Data Channel: cipher ..." log line (the proof that AES-256-GCM was negotiated); the
    processes stay until the topology goes down.
    """
    _write_pki(directory)
    server_ip, client_ip = OPENVPN_ADDRESSES
    common = ["openvpn", "--dev", "ovpnb", "--dev-type", "tun", "--data-ciphers", "AES-256-GCM"]
    common += ["--cipher", "AES-256-GCM", "--disable-dco", "--verb", "3", "--ca", "ca.pem"]
    server = [*common, "--tls-server", "--dh", "none", "--proto", "tcp-server"]
    server += ["--local", str(topology.layout.ha.ip), "--lport", str(OPENVPN_PORT)]
    server += ["--ifconfig", str(server_ip), str(client_ip), "--cert", "server.pem"]
    server += ["--key", "server.key", "--log", str(directory / "server.log")]
    client = [*common, "--tls-client", "--proto", "tcp-client", "--nobind"]
    client += ["--remote", str(topology.layout.ha.ip), str(OPENVPN_PORT)]
    client += ["--ifconfig", str(client_ip), str(server_ip), "--cert", "client.pem"]
    client += ["--key", "client.key", "--log", str(directory / "client.log")]
    client += ["--connect-retry", "1", "1"]
    topology.exec(HOME, server, cwd=directory)
    topology.exec(CN, client, cwd=directory)
    try:
        _wait_for("OpenVPN", _ping(topology, CN, server_ip), 30.0)
    except BenchSetupError:
        for name in ("server", "client"):
            log_file = directory / f"{name}.log"
            if log_file.exists():
                log(f"openvpn {name} log:\n{log_file.read_text()[-1500:]}")
        raise
    for line in (directory / "server.log").read_text().splitlines():
        if "Data Channel: cipher" in line:
            return line.split("Data Channel: ", 1)[1].strip()
    raise BenchSetupError("OpenVPN is up but logged no data-channel cipher")


# --- wireguard-go ---------------------------------------------------------------------------


def _wg_keys() -> tuple[str, str]:
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True)
    public = subprocess.run(
        ["wg", "pubkey"], input=private.stdout, capture_output=True, text=True, check=True
    )
    return private.stdout.strip(), public.stdout.strip()


def start_wireguard_go(topology: LabTopology, directory: Path) -> None:
    """wireguard-go between ``home`` and ``cn``, configured with ``wg``; returns once a ping
    crosses it.

    The interface names differ per end (``wgbh``, ``wgbc``): wireguard-go's control socket
    lives in the host-wide /var/run/wireguard/<ifname>.sock, shared by every namespace.
    ``WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD`` makes it run where the kernel module
    exists too (we measure the userspace implementation on purpose).
    """
    env = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    ends = (
        (HOME, "wgbh", topology.layout.ha.ip, WIREGUARD_ADDRESSES[0], WIREGUARD_PORTS[0]),
        (CN, "wgbc", topology.layout.cn.ip, WIREGUARD_ADDRESSES[1], WIREGUARD_PORTS[1]),
    )
    keys = [_wg_keys() for _ in ends]
    for i, (ns, ifname, _underlay, inner, port) in enumerate(ends):
        topology.exec(
            ns,
            ["wireguard-go", "-f", ifname],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sock = Path(f"/var/run/wireguard/{ifname}.sock")
        _wait_for(f"wireguard-go {ifname}", sock.exists, 10.0)
        peer_ns, _peer_if, peer_underlay, peer_inner, peer_port = ends[1 - i]
        key_file = directory / f"{ifname}.key"
        key_file.write_text(keys[i][0] + "\n")
        os.chmod(key_file, 0o600)
        wg = ["wg", "set", ifname, "listen-port", str(port), "private-key", str(key_file)]
        wg += ["peer", keys[1 - i][1], "allowed-ips", f"{peer_inner}/32"]
        wg += ["endpoint", f"{peer_underlay}:{peer_port}"]
        for argv in (
            wg,
            ["ip", "addr", "add", f"{inner}/24", "dev", ifname],
            ["ip", "link", "set", ifname, "up"],
        ):
            result = topology.run(ns, argv)
            if result.returncode != 0:
                raise BenchSetupError(f"{' '.join(argv)}: {result.stderr.strip()}")
        del peer_ns
    _wait_for("wireguard-go", _ping(topology, CN, WIREGUARD_ADDRESSES[0]), 20.0)


# --- the whole comparison -------------------------------------------------------------------

PeerResult = dict[str, object]


def measure_peers(
    topology: LabTopology,
    workdir: Path,
    seconds: float,
    repeats: int,
    log: Log = print,
    extra: dict[str, Callable[[], IperfResult]] | None = None,
) -> dict[str, PeerResult]:
    """Set up OpenVPN and wireguard-go in ``topology`` (up), then run ``repeats`` rounds of
    one iperf3 per tunnel, interleaved so that machine noise hits every tunnel alike.

    ``extra`` adds tunnels measured by the caller in the same rounds (MVPN). Returns, per
    tunnel, ``mbit_s`` (median), ``runs`` and ``retransmits``, or ``error`` when it could not
    be set up (the others are still measured).
    """
    runs: dict[str, Callable[[], IperfResult]] = {
        "veth": lambda: iperf3(topology, HOME, CN, topology.layout.ha.ip, seconds),
    }
    results: dict[str, PeerResult] = {}
    openvpn_dir = workdir / "openvpn"
    openvpn_dir.mkdir(parents=True, exist_ok=True)
    try:
        ensure_packages(["openvpn", "iperf3"], log)
        data_channel = start_openvpn(topology, openvpn_dir, log)
        if "AES-256-GCM" not in data_channel:
            raise BenchSetupError(f"OpenVPN negotiated {data_channel}, not AES-256-GCM")
        results["openvpn_tcp"] = {"data_channel": data_channel}
        runs["openvpn_tcp"] = lambda: iperf3(topology, HOME, CN, OPENVPN_ADDRESSES[0], seconds)
    except (BenchSetupError, subprocess.SubprocessError, OSError) as e:
        results["openvpn_tcp"] = {"error": str(e)}
    wg_dir = workdir / "wireguard"
    wg_dir.mkdir(parents=True, exist_ok=True)
    try:
        ensure_packages(["wireguard-go", "wg"], log)
        start_wireguard_go(topology, wg_dir)
        runs["wireguard_go"] = lambda: iperf3(topology, HOME, CN, WIREGUARD_ADDRESSES[0], seconds)
    except (BenchSetupError, subprocess.SubprocessError, OSError) as e:
        results["wireguard_go"] = {"error": str(e)}
    runs.update(extra or {})
    samples: dict[str, list[IperfResult]] = {name: [] for name in runs}
    errors: dict[str, str] = {}
    for round_ in range(repeats):
        for name, run in runs.items():
            if name in errors:
                continue
            try:
                result = run()
            except (BenchSetupError, subprocess.SubprocessError) as e:
                errors[name] = str(e)
                continue
            samples[name].append(result)
            log(f"  round {round_ + 1}/{repeats} {name}: {result.mbit_s:,.1f} Mbit/s")
    for name, got in samples.items():
        if got:
            results[name] = {
                **results.get(name, {}),
                "mbit_s": median(r.mbit_s for r in got),
                "runs_mbit_s": [r.mbit_s for r in got],
                "retransmits": sum(r.retransmits for r in got),
            }
        if name in errors:
            results[name] = {**results.get(name, {}), "error": errors[name]}
    return results


def tunnel_figures(peers: dict[str, PeerResult]) -> dict[str, object]:
    """The ``tunnel.*`` keys of latest.json from :func:`measure_peers`' result: each tunnel's
    median Mbit/s (``None`` when not measured, with ``<name>_error``) and MVPN's ratios."""
    figures: dict[str, object] = {}
    for name, result in peers.items():
        value = result.get("mbit_s")
        figures[f"{name}_mbit_s"] = value
        figures[f"{name}_runs_mbit_s"] = result.get("runs_mbit_s", [])
        if "error" in result:
            figures[f"{name}_error"] = result["error"]
        if "data_channel" in result:
            figures[f"{name}_data_channel"] = result["data_channel"]
    mvpn = figures.get("mvpn_mbit_s")
    for peer in ("openvpn_tcp", "wireguard_go", "veth"):
        other = figures.get(f"{peer}_mbit_s")
        ratio = None
        if isinstance(mvpn, float) and isinstance(other, float) and other > 0:
            ratio = mvpn / other
        figures[f"mvpn_vs_{peer}"] = ratio
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure veth, OpenVPN and wireguard-go in a lab topology of our own; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 duration")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per tunnel")
    args = parser.parse_args(argv)
    missing = requirements()
    if missing:
        print("cannot run: " + "; ".join(str(m) for m in missing), file=sys.stderr)
        return 1
    with (
        tempfile.TemporaryDirectory(prefix="mvpn-bench-tunnels-") as tmp,
        LabTopology(run_prefix("tun")) as topology,
    ):
        peers = measure_peers(topology, Path(tmp), args.seconds, args.repeats)
    print(json.dumps(tunnel_figures(peers), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
