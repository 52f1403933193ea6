"""MVPN deployed in network namespaces (issue 5): every role a separate ``twistd`` process.

MN, FA1, FA2, HA, CN and both Trusted Centres run in namespaces of their own
(:class:`mvpn.lab.deploy.MvpnLab`), with raw ICMP advertisements, port 434 and TUN devices.
A real ``ping`` from the CN reaches the MN's home address through MVPN (draft §3.5.1: CN ->
HA -> tunnel -> FA -> MN), keeps being answered across a handover (draft §3.3), and a TCP
transfer that spans a second handover delivers every byte. Needs root, namespaces and
/dev/net/tun: skipped without them, failed under CI.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mvpn.lab.deploy import MvpnLab
from mvpn.lab.netns import CN, MN, Need, require, run_prefix

NEEDS = (Need.ROOT, Need.NETNS, Need.TUN, Need.PING)

TRANSFER_BYTES = 5 * 1024 * 1024
TRANSFER_PORT = 5001

# Sends TRANSFER_BYTES of random data paced over about four seconds, so that a handover lands
# in the middle of it, then prints the SHA-256 of what it sent.
SERVER = textwrap.dedent(
    """
    import hashlib, os, socket, sys, time
    home, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    listener = socket.create_server((home, port))
    print("listening", flush=True)
    conn, _ = listener.accept()
    digest, sent, chunk = hashlib.sha256(), 0, 64 * 1024
    while sent < total:
        block = os.urandom(min(chunk, total - sent))
        conn.sendall(block)
        digest.update(block)
        sent += len(block)
        time.sleep(0.05)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
    print(digest.hexdigest(), sent, flush=True)
    """
)

# Reads until the end of the stream, printing progress, then its byte count and SHA-256.
CLIENT = textwrap.dedent(
    """
    import hashlib, socket, sys, time
    home, port = sys.argv[1], int(sys.argv[2])
    for _ in range(100):
        try:
            conn = socket.create_connection((home, port), timeout=20)
            break
        except OSError:
            time.sleep(0.1)
    digest, got, reported = hashlib.sha256(), 0, 0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        digest.update(data)
        got += len(data)
        if got - reported >= 256 * 1024:
            print("progress", got, flush=True)
            reported = got
    conn.close()
    print("done", digest.hexdigest(), got, flush=True)
    """
)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[MvpnLab]:
    """The whole deployment, up; stopped (processes, namespaces) whatever the test did."""
    require(needs=NEEDS)
    deployment = MvpnLab(tmp_path / "lab", prefix=run_prefix("e2e"), log=print)
    try:
        deployment.start(timeout=40.0)
        yield deployment
    finally:
        deployment.stop()


@contextlib.contextmanager
def diagnostics(lab: MvpnLab) -> Iterator[None]:
    """On failure, print the tail of every twistd log so a CI failure explains itself."""
    try:
        yield
    except BaseException:
        print(lab.logs(40), file=sys.stderr)
        raise


def other(fa: str) -> str:
    return "fa2" if fa == "fa1" else "fa1"


def test_ping_reaches_the_home_address_and_survives_a_handover(lab: MvpnLab) -> None:
    """A plain ``ping`` from the CN's namespace to the MN's home address is answered through
    the TUN devices and MVPN, and a ping running while the MN moves to the other FA is
    still answered after the move (losses are reported, not asserted)."""
    with diagnostics(lab):
        first = lab.topology.run(CN, ["ping", "-c", "3", "-i", "0.2", "-W", "2", str(lab.mn_home)])
        assert first.returncode == 0, first.stdout + first.stderr
        assert " 0% packet loss" in first.stdout

        start_fa = lab.current_fa()
        ping = lab.topology.exec(
            CN,
            ["ping", "-D", "-i", "0.05", "-c", "200", "-W", "1", str(lab.mn_home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(2.0)
        lab.move(other(start_fa))
        took = lab.wait_moved(other(start_fa))
        moved_at = time.time()
        output, _ = ping.communicate(timeout=30)
        assert lab.current_fa() == other(start_fa)

        replies = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", output, re.M)]
        summary = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        assert summary is not None, output
        sent, received = int(summary[1]), int(summary[2])
        print(
            f"handover {start_fa} -> {other(start_fa)} in {took:.2f} s; ping lost "
            f"{sent - received} of {sent}"
        )
        assert any(t > moved_at for t in replies), "no echo reply after the move"


def test_tcp_transfer_across_a_handover_delivers_every_byte(lab: MvpnLab) -> None:
    """A TCP stream from a server on the MN's home address to a client in the CN's
    namespace, during which the MN changes FA, arrives complete and unaltered (the
    SHA-256 of what was sent equals that of what was received)."""
    with diagnostics(lab):
        home = str(lab.mn_home)
        server = lab.topology.exec(
            MN,
            [sys.executable, "-c", SERVER, home, str(TRANSFER_PORT), str(TRANSFER_BYTES)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        client = lab.topology.exec(
            CN,
            [sys.executable, "-c", CLIENT, home, str(TRANSFER_PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        start_fa = lab.current_fa()
        # Move once a first megabyte has arrived: the handover lands mid-stream.
        line = ""
        while not line.startswith("progress") or int(line.split()[1]) < 1024 * 1024:
            line = client.stdout.readline()
            assert line, "the client ended before a megabyte arrived"
        lab.move(other(start_fa))
        lab.wait_moved(other(start_fa))
        rest = client.stdout.read()
        client.wait(timeout=30)
        server_out, _ = server.communicate(timeout=30)

        done = [ln.split() for ln in rest.splitlines() if ln.startswith("done")]
        assert done, rest
        _, received_digest, received = done[0]
        sent_digest, sent = server_out.split()
        assert int(received) == int(sent) == TRANSFER_BYTES
        assert received_digest == sent_digest
        # Bytes kept arriving after the move completed: the handover was mid-stream.
        assert any(ln.startswith("progress") for ln in rest.splitlines()), rest


# --- the lab script's arithmetic (no root needed) -------------------------------------------


def test_ping_summary_is_parsed() -> None:
    """``make lab`` reads packets and round-trip times from ping's summary lines."""
    from mvpn.lab.__main__ import Ping, parse_ping

    output = (
        "--- 10.77.1.10 ping statistics ---\n"
        "20 packets transmitted, 19 received, 5% packet loss, time 1903ms\n"
        "rtt min/avg/max/mdev = 1.963/2.441/3.070/0.271 ms\n"
    )
    assert parse_ping(output) == Ping(20, 19, 1.963, 2.441, 3.07)


def test_ping_without_any_reply_is_an_error() -> None:
    """A ping with no reply has no rtt line: the lab fails with the output, not a crash."""
    from mvpn.lab.__main__ import MeasurementError, parse_ping

    with pytest.raises(MeasurementError, match="no reply"):
        parse_ping("3 packets transmitted, 0 received, 100% packet loss, time 2ms\n")


def test_handover_gap_is_the_longest_silent_run_near_the_move() -> None:
    """The gap counts consecutive byte-less intervals around the move only: a silent run
    long before it (connection set-up) is not the handover's."""
    from mvpn.lab.__main__ import handover_gap

    intervals = [(i / 10, (i + 1) / 10, 0 if i in {2, 3, 4, 51, 52} else 1000) for i in range(100)]
    assert handover_gap(intervals, move_at=5.0) == pytest.approx(0.2)
    assert handover_gap(intervals, move_at=0.5) == pytest.approx(0.3)
    assert handover_gap([(0.0, 0.1, 5), (0.1, 0.2, 5)], move_at=0.1) == 0.0


def test_longest_silence_between_counter_growths() -> None:
    """The probe's gap is the longest time between two samples where the counter grew; a
    counter that never stalls gives the sampling interval, one that never grows gives 0."""
    from mvpn.lab.__main__ import longest_silence

    samples = [(0.00, 0), (0.01, 10), (0.02, 20), (0.03, 20), (0.07, 20), (0.08, 30), (0.09, 40)]
    assert longest_silence(samples) == pytest.approx(0.06)
    assert longest_silence([(0.0, 5), (1.0, 5)]) == 0.0
