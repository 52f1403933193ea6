"""TUN devices (issue 5, "Applications on top"): mvpn.roles.tun.

Units run the real :class:`TuntapPort` over Twisted's in-memory ``MemoryIOSystem`` with a
recording ``ip`` runner. The live tests (root and ``/dev/net/tun``; CI has both, elsewhere
they skip) create a network namespace, run a helper process inside it (this module run with
``python -m tests.roles.test_tun helper``: a reactor cannot switch namespaces) that owns a
real TUN device and answers ICMP echo requests read from it, and show that ``ping`` through
the device works, that a packet written to it reaches a socket, that twistd exits with
one clear line when the device cannot be opened, and that nothing is left after stop.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import queue
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.pair.testing import MemoryIOSystem, Tunnel
from twisted.pair.tuntap import TuntapPort
from zope.interface.verify import verifyObject  # type: ignore[import-untyped]

from mvpn.roles.config import ConfigError
from mvpn.roles.tun import (
    WRITE_RETRY_DELAY,
    ITunDevice,
    TunService,
    TunUnavailable,
    run_ip,
)
from mvpn.wire import inner
from mvpn.wire.icmp import internet_checksum
from tests.roles.tun_fakes import FakeTunDevice

A = ipaddress.IPv4Address
REPO = Path(__file__).resolve().parents[2]
TUN_NAME = "mvpntun0"
TUN_ADDRESS = ipaddress.IPv4Interface("10.77.0.1/24")
TUN_ROUTE = ipaddress.IPv4Network("10.78.0.0/16")
PEER = A("10.78.0.5")
UDP_PORT = 45000


# ---------------------------------------------------------------------------------------
# Units: the real TuntapPort over MemoryIOSystem


class Recorder:
    """Records ``ip`` commands; fails the one whose arguments contain ``fail_on``."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, args: Sequence[str]) -> None:
        self.commands.append(list(args))
        if self.fail_on is not None and self.fail_on in args:
            raise TunUnavailable(f"'ip {' '.join(args)}' failed: RTNETLINK answers: File exists")


def _service(
    **kwargs: Any,
) -> tuple[TunService, MemoryIOSystem, MemoryReactorClock, Recorder]:
    system = MemoryIOSystem()
    system.registerSpecialDevice(Tunnel._DEVICE_NAME, Tunnel)
    reactor = MemoryReactorClock()
    recorder = kwargs.pop("run", Recorder())
    service = TunService(
        reactor,
        kwargs.pop("name", "mvpn0"),
        kwargs.pop("address", ipaddress.IPv4Interface("10.9.0.2/24")),
        run=recorder,
        system=system,
        **kwargs,
    )
    return service, system, reactor, recorder


def _tunnel(service: TunService, system: MemoryIOSystem) -> Tunnel:
    port: TuntapPort = service._port
    tunnel: Tunnel = system.getTunnel(port)
    return tunnel


def _udp(payload: bytes = b"payload") -> bytes:
    return inner.build_udp(A("10.9.0.2"), A("10.1.0.1"), 1234, 4321, payload)


def test_open_configures_device_in_order() -> None:
    """Start opens a TUN (IFF_TUN | IFF_NO_PI, non-blocking, close-on-exec) and then runs
    mtu, address, link up and one route command per route, in that order."""
    service, system, _, recorder = _service(
        routes=[ipaddress.IPv4Network("10.1.0.0/16"), ipaddress.IPv4Network("10.2.0.0/24")]
    )
    service.privilegedStartService()
    tunnel = _tunnel(service, system)
    assert tunnel.tunnelMode == 0x0001 | 0x1000
    assert not tunnel.blocking and tunnel.closeOnExec
    assert service.name == "mvpn0" and service.is_open
    assert recorder.commands == [
        ["link", "set", "dev", "mvpn0", "mtu", "1400"],
        ["address", "add", "10.9.0.2/24", "dev", "mvpn0"],
        ["link", "set", "dev", "mvpn0", "up"],
        ["route", "add", "10.1.0.0/16", "dev", "mvpn0"],
        ["route", "add", "10.2.0.0/24", "dev", "mvpn0"],
    ]


def test_service_name_is_the_interface_name() -> None:
    """A TunService's service name is its interface name; renaming it is refused, since
    that would rename the device."""
    service, _, _, _ = _service(name="mvpn3")
    assert service.name == "mvpn3"
    service.setName("mvpn3")
    with pytest.raises(ValueError, match="named after its interface"):
        service.setName("tun")
    assert service.name == "mvpn3"


def test_point_to_point_address() -> None:
    """With a peer, the address is set as ``ip address add A peer P`` (no prefix length)."""
    service, _, _, recorder = _service(
        address=ipaddress.IPv4Interface("10.9.0.2/32"), peer=A("10.9.0.1"), mtu=1280
    )
    service.startService()
    assert recorder.commands[:2] == [
        ["link", "set", "dev", "mvpn0", "mtu", "1280"],
        ["address", "add", "10.9.0.2", "peer", "10.9.0.1", "dev", "mvpn0"],
    ]


def test_packets_read_reach_on_packet_and_are_counted() -> None:
    """Every packet the kernel routes into the device is counted; IPv4 ones go to
    on_packet in order, anything else (IPv6 router solicitations) is dropped and counted."""
    seen: list[bytes] = []
    service, system, _, _ = _service(on_packet=seen.append)
    service.startService()
    tunnel = _tunnel(service, system)
    ipv6 = b"\x60" + bytes(39)
    for packet in (_udp(b"one"), ipv6, _udp(b"two")):
        tunnel.addToReadBuffer(packet)
    service._port.doRead()
    assert seen == [_udp(b"one"), _udp(b"two")]
    counters = service.counters.snapshot()
    assert counters["read.packets"] == 3
    assert counters["read.bytes"] == 2 * len(_udp(b"one")) + 40
    assert counters["drops.not_ipv4"] == 1


def test_reader_errors_are_logged_and_counted() -> None:
    """A reader callback that raises is counted; the next packet is still delivered."""
    seen: list[bytes] = []

    def reader(packet: bytes) -> None:
        seen.append(packet)
        if len(seen) == 1:
            raise RuntimeError("application bug")

    service, system, _, _ = _service(on_packet=reader)
    service.startService()
    tunnel = _tunnel(service, system)
    tunnel.addToReadBuffer(_udp(b"a"))
    tunnel.addToReadBuffer(_udp(b"b"))
    service._port.doRead()
    assert len(seen) == 2
    assert service.counters.get("reader_errors") == 1


def test_write_reaches_device_and_counts() -> None:
    """write() hands the packet to the kernel at once and counts packets and bytes."""
    service, system, _, _ = _service()
    service.startService()
    assert service.write(_udp(b"x")) is True
    assert list(_tunnel(service, system).writeBuffer) == [_udp(b"x")]
    assert service.counters.get("written.packets") == 1
    assert service.counters.get("written.bytes") == len(_udp(b"x"))


def test_write_queue_retries_in_order_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write the kernel refuses with EAGAIN waits in the queue; later writes queue behind
    it (order is kept); beyond queue_limit packets are dropped and counted; after
    WRITE_RETRY_DELAY the queue drains in order."""
    service, system, reactor, _ = _service(queue_limit=2)
    service.startService()
    tunnel = _tunnel(service, system)
    real_write = tunnel.write
    refusing = [True]

    def write(datagram: bytes) -> int:
        if refusing[0]:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        result: int = real_write(datagram)
        return result

    monkeypatch.setattr(tunnel, "write", write)
    assert service.write(_udp(b"1")) is True
    assert service.write(_udp(b"2")) is True
    assert service.write(_udp(b"3")) is False
    assert service.queued == 2
    assert service.counters.get("drops.queue_full") == 1
    reactor.advance(WRITE_RETRY_DELAY)
    assert service.queued == 2  # still refused: retried again later
    refusing[0] = False
    reactor.advance(WRITE_RETRY_DELAY)
    assert list(tunnel.writeBuffer) == [_udp(b"1"), _udp(b"2")]
    assert service.queued == 0
    assert service.counters.get("written.packets") == 2


def test_write_errors_oversize_and_closed_are_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write the kernel rejects for good (EIO), a packet over the MTU, and a write to a
    closed device return False and are counted by reason."""
    service, system, _, _ = _service(mtu=100)
    assert service.write(_udp()) is False
    service.startService()
    tunnel = _tunnel(service, system)

    def broken(datagram: bytes) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(tunnel, "write", broken)
    assert service.write(_udp()) is False
    assert service.write(_udp(bytes(100))) is False
    counters = service.counters.snapshot()
    assert counters["drops.closed"] == 1
    assert counters["drops.write_error"] == 1
    assert counters["drops.oversize"] == 1
    assert "written.packets" not in counters


def test_stop_closes_device_and_drops_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """stopService closes the descriptor (the kernel then deletes the interface with its
    addresses and routes) and drops, counting, what still waited."""
    service, system, reactor, _ = _service()
    service.startService()
    tunnel = _tunnel(service, system)

    def refuse(datagram: bytes) -> int:
        raise OSError(errno.ENOBUFS, "No buffer space available")

    monkeypatch.setattr(tunnel, "write", refuse)
    service.write(_udp())
    d = service.stopService()
    reactor.advance(0)
    assert d is not None
    assert system._openFiles == {}
    assert not service.is_open
    assert service.counters.get("drops.stopped") == 1
    reactor.advance(1)
    assert service.queued == 0


def test_failed_ip_command_closes_device() -> None:
    """When an ``ip`` command fails, start raises TunUnavailable with ip's message and the
    half-configured device is closed again."""
    service, system, _, _ = _service(
        routes=[ipaddress.IPv4Network("10.1.0.0/16")], run=Recorder(fail_on="route")
    )
    with pytest.raises(TunUnavailable, match="RTNETLINK answers: File exists"):
        service.open()
    assert system._openFiles == {}
    assert not service.is_open


def test_no_privilege_raises_tun_unavailable_naming_cap_net_admin() -> None:
    """Opening without the privilege (EPERM from the clone device) raises TunUnavailable
    naming /dev/net/tun and CAP_NET_ADMIN; through privilegedStartService it becomes a
    SystemExit with the same message, which twistd prints without a traceback."""
    service, system, _, _ = _service()
    system.permissions = set()
    with pytest.raises(TunUnavailable) as caught:
        service.open()
    message = str(caught.value)
    assert "/dev/net/tun" in message and "CAP_NET_ADMIN" in message and "'mvpn0'" in message
    assert isinstance(caught.value, ConfigError)
    with pytest.raises(SystemExit) as exited:
        service.privilegedStartService()
    assert str(exited.value) == f"mvpn: {message}"


def test_missing_device_raises_tun_unavailable(tmp_path: Path) -> None:
    """A clone device that does not exist gives a TunUnavailable saying so and how to fix
    it (load the module, pass the device to the container); no root needed."""
    missing = str(tmp_path / "no-such-tun")
    service = TunService(
        MemoryReactorClock(), "mvpn0", ipaddress.IPv4Interface("10.9.0.2/24"), device=missing
    )
    with pytest.raises(TunUnavailable, match=f"{missing} does not exist.*'tun' kernel module"):
        service.open()


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"name": "a-name-that-is-too-long"}, "1 to 15 characters"),
        ({"name": ""}, "1 to 15 characters"),
        ({"mtu": 67}, "MTU 67"),
        ({"queue_limit": 0}, "queue_limit"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict[str, Any], text: str) -> None:
    """Names the kernel would refuse, impossible MTUs and an empty queue fail at once."""
    with pytest.raises(ConfigError, match=text):
        _service(**kwargs)


def test_run_ip_reports_ip_errors() -> None:
    """run_ip raises TunUnavailable carrying the command and iproute2's own message."""
    if shutil.which("ip") is None:
        _need("the 'ip' command (iproute2)")
    with pytest.raises(TunUnavailable, match=r"'ip link show dev mvpn-none-xyz' failed: .+"):
        run_ip(["link", "show", "dev", "mvpn-none-xyz"])


def test_fake_and_service_provide_the_interface() -> None:
    """TunService and the tests' FakeTunDevice both provide ITunDevice; the fake records
    writes, refuses them on demand, and hands injected packets to on_packet."""
    service, _, _, _ = _service()
    assert verifyObject(ITunDevice, service)
    fake = FakeTunDevice()
    assert verifyObject(ITunDevice, fake)
    seen: list[bytes] = []
    fake.on_packet = seen.append
    fake.inject(b"\x45packet")
    assert seen == [b"\x45packet"]
    assert fake.write(b"a") is True
    fake.accept = False
    assert fake.write(b"b") is False
    assert fake.written == [b"a"]


# ---------------------------------------------------------------------------------------
# Live: a real TUN device in a network namespace


def _need(what: str) -> None:
    """Skip for lack of ``what``, except in CI, where the suite must not silently shrink."""
    reason = f"needs {what}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set: CI must provide it")
    pytest.skip(reason)


def _require_root_and_tun() -> None:
    if os.geteuid() != 0:
        _need("root (network namespaces and TUN devices)")
    if not os.path.exists("/dev/net/tun"):
        _need("/dev/net/tun")
    if shutil.which("ip") is None:
        _need("the 'ip' command (iproute2)")


def _in_namespace(namespace: str) -> list[str]:
    return ["ip", "netns", "exec", namespace]


_WITHOUT_NET_ADMIN = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"]
_TWISTD = [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile="]


def test_missing_root_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root the live tests skip with a reason, except when CI is set: then they
    fail, so CI can never lose them silently."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        _require_root_and_tun()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"needs root.*CI must provide it"):
        _require_root_and_tun()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh network namespace, deleted afterwards whatever happened."""
    _require_root_and_tun()
    name = f"mvpn-tuntest-{os.getpid()}"
    _ip("netns", "del", name, check=False)
    _ip("netns", "add", name)
    try:
        yield name
    finally:
        _ip("netns", "del", name, check=False)


class Helper:
    """The helper process inside the namespace, with its stdout read by a thread."""

    def __init__(self, namespace: str) -> None:
        self.process = subprocess.Popen(
            [*_in_namespace(namespace), sys.executable, "-m", "tests.roles.test_tun", "helper"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def next(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next JSON line the helper printed."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            _, err = self.process.communicate(timeout=5)
            raise AssertionError(f"helper said nothing for {timeout} s; stderr:\n{err}") from None
        value: dict[str, Any] = json.loads(line)
        return value

    def until(self, key: str) -> dict[str, Any]:
        """Lines up to the first one carrying ``key``; returns that one."""
        while True:
            value = self.next()
            if key in value:
                return value

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


def test_ping_through_a_real_tun_device(namespace: str) -> None:
    """In a namespace: the device comes up with its address, MTU and route; a real ping to
    an address routed into it is read from the device (the helper sees each echo request)
    and the echo replies the helper writes reach the kernel (ping succeeds); a UDP packet
    written to the device reaches a socket; after stop the interface and route are gone."""
    helper = Helper(namespace)
    try:
        assert helper.next() == {"ready": TUN_NAME}
        (link,) = json.loads(_ip("-n", namespace, "-j", "address", "show", "dev", TUN_NAME).stdout)
        assert link["mtu"] == inner.MAX_INNER_PACKET
        assert "UP" in link["flags"]
        assert [
            (a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"
        ] == [("10.77.0.1", 24)]
        routes = _ip("-n", namespace, "route", "show", "dev", TUN_NAME).stdout
        assert "10.78.0.0/16" in routes

        if shutil.which("ping") is not None:
            ping = subprocess.run(
                [
                    *_in_namespace(namespace),
                    "ping",
                    "-n",
                    "-c",
                    "3",
                    "-i",
                    "0.2",
                    "-W",
                    "3",
                    str(PEER),
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert ping.returncode == 0, ping.stdout + ping.stderr
            assert "3 received" in ping.stdout
        else:
            raw = subprocess.run(
                [
                    *_in_namespace(namespace),
                    sys.executable,
                    "-m",
                    "tests.roles.test_tun",
                    "ping",
                    str(PEER),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert raw.returncode == 0, raw.stdout + raw.stderr
        echo = helper.until("echo")
        assert echo["echo"] == {"src": str(TUN_ADDRESS.ip), "dst": str(PEER)}

        helper.send("udp")
        assert helper.until("udp") == {"udp": {"data": "through the tun", "from": "10.78.0.9"}}

        helper.send("stop")
        counters = helper.until("counters")["counters"]
        assert counters["read.packets"] >= 1
        assert counters["written.packets"] >= 2
        assert helper.process.wait(timeout=15) == 0
        gone = _ip("-n", namespace, "link", "show", "dev", TUN_NAME, check=False)
        assert gone.returncode != 0
        assert "10.78.0.0" not in _ip("-n", namespace, "route", "show").stdout
    finally:
        helper.close()


def test_no_cap_net_admin_gives_clear_error(namespace: str) -> None:
    """A root process without CAP_NET_ADMIN (dropped with setpriv) cannot create the
    device: TunUnavailable names CAP_NET_ADMIN, and nothing is created."""
    if shutil.which("setpriv") is None:
        _need("setpriv (util-linux)")
    script = textwrap.dedent(
        """
        import ipaddress
        from twisted.internet import reactor
        from mvpn.roles.tun import TunService, TunUnavailable
        service = TunService(reactor, "mvpnnocap0", ipaddress.IPv4Interface("10.5.0.1/24"))
        try:
            service.open()
        except TunUnavailable as e:
            print(e)
        """
    )
    result = subprocess.run(
        [*_in_namespace(namespace), *_WITHOUT_NET_ADMIN, sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "cannot open TUN device 'mvpnnocap0'" in result.stdout
    assert "CAP_NET_ADMIN" in result.stdout
    assert _ip("-n", namespace, "link", "show", "mvpnnocap0", check=False).returncode != 0


def test_twistd_exits_with_one_line_when_tun_is_missing(tmp_path: Path) -> None:
    """twistd running a service with a TUN device it cannot open exits with status 1 and
    the TunUnavailable message, not a traceback."""
    tac = tmp_path / "tun.tac"
    tac.write_text(
        textwrap.dedent(
            f"""
            import ipaddress
            from twisted.application import service
            from twisted.internet import reactor
            from mvpn.roles.tun import TunService
            application = service.Application("tun-test")
            TunService(
                reactor, "mvpn0", ipaddress.IPv4Interface("10.9.0.2/24"),
                device={str(tmp_path / "missing-tun")!r},
            ).setServiceParent(application)
            """
        )
    )
    result = subprocess.run(
        [*_TWISTD, "-l", str(tmp_path / "log"), "-y", str(tac)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    # twistd sends stderr to its log file, so that is where the line is.
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log + result.stdout + result.stderr
    assert (
        log.strip()
        .splitlines()[-1]
        .endswith(
            f"[stderr#error] mvpn: cannot open TUN device 'mvpn0': {tmp_path / 'missing-tun'} "
            "does not exist (load the 'tun' kernel module; in a container, pass the device, "
            "e.g. --device /dev/net/tun)"
        )
    )


# ---------------------------------------------------------------------------------------
# The processes the live tests start inside the namespace


def _echo_reply(packet: bytes) -> bytes | None:
    """The ICMP echo reply to ``packet`` if it is an echo request, else None."""
    header = inner.IPv4Header.decode(packet)
    start = header.payload_offset
    if header.protocol != inner.IPProtocol.ICMP or packet[start] != 8:
        return None
    icmp = b"\x00" + packet[start + 1 : start + 2] + b"\0\0" + packet[start + 4 :]
    icmp = icmp[:2] + internet_checksum(icmp).to_bytes(2, "big") + icmp[4:]
    ip = bytearray(packet[:start])
    ip[12:16], ip[16:20] = packet[16:20], packet[12:16]
    ip[10:12] = b"\0\0"
    ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
    return bytes(ip) + icmp


def _emit(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _helper_main() -> None:  # pragma: no cover - runs in the namespace's process
    """Own a TUN device; answer echo requests read from it; obey stdin commands."""
    from twisted.internet import reactor as global_reactor
    from twisted.internet import stdio
    from twisted.protocols.basic import LineReceiver

    reactor: Any = global_reactor
    service = TunService(reactor, TUN_NAME, TUN_ADDRESS, routes=[TUN_ROUTE])

    def on_packet(packet: bytes) -> None:
        reply = _echo_reply(packet)
        if reply is not None:
            header = inner.IPv4Header.decode(packet)
            _emit({"echo": {"src": str(header.src), "dst": str(header.dst)}})
            service.write(reply)

    service.on_packet = on_packet

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            command = line.decode().strip()
            if command == "udp":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((str(TUN_ADDRESS.ip), UDP_PORT))
                sock.settimeout(5)
                packet = inner.build_udp(
                    A("10.78.0.9"), TUN_ADDRESS.ip, 4351, UDP_PORT, b"through the tun"
                )
                service.write(packet)
                data, source = sock.recvfrom(2048)
                sock.close()
                _emit({"udp": {"data": data.decode(), "from": source[0]}})
            elif command == "stop":
                d: Any = service.stopService()

                def done(_: object) -> None:
                    _emit({"counters": service.counters.snapshot()})
                    reactor.stop()

                d.addCallback(done)

    service.startService()
    stdio.StandardIO(Commands())
    _emit({"ready": service.name})
    reactor.run()


def _raw_ping_main(target: str) -> None:  # pragma: no cover - runs in the namespace
    """Send three ICMP echo requests with a raw socket; exit 0 when a reply came back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(3)
    for seq in range(1, 4):
        body = struct.pack("!BBHHH", 8, 0, 0, 0x4D56, seq) + b"mvpn"
        body = body[:2] + internet_checksum(body).to_bytes(2, "big") + body[4:]
        sock.sendto(body, (target, 0))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            packet = sock.recv(2048)
            start = (packet[0] & 0x0F) * 4
            if packet[start] == 0 and packet[start + 4 : start + 8] == struct.pack(
                "!HH", 0x4D56, seq
            ):
                print(f"reply {seq}")
                break
        else:
            sys.exit(f"no reply to echo {seq}")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1] == "helper":
        _helper_main()
    elif sys.argv[1] == "ping":
        _raw_ping_main(sys.argv[2])
