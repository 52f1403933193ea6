"""First-contact and re-registration rates at one home agent on loopback, and the bound its
own public-key work sets.

The HA runs as its own ``twistd -n mvpn-ha`` process (SQLite store, ``synchronous=FULL``:
every accepted registration is committed before its reply leaves). This process plays the
foreign agent for N mobile nodes with :mod:`mvpn.core.messages`: it prepares every datagram
first (untimed), then sends them with a window of requests in flight and times the replies.

``crypto_bound_per_s`` is the bound the HA's own public-key operations set: per first contact
the HA verifies the FA's and the MN's signatures, opens F and M (``open_relayed_first_contact``,
four operations), seals W' and Q and signs W and Q (``build_home_info_reply``, four): see
:data:`HA_FIRST_CONTACT_OPERATIONS`. Each operation is timed alone in this process in the same
run, and the bound is ``1 / sum(count * seconds per operation)``: no HA can accept first
contacts faster than that. ``message_work_per_s`` times the HA's whole message code for one
first contact (the same eight operations plus decoding and encoding), for comparison.

Run: ``make bench-registration`` or ``python -m benchmarks.registration [--nodes N]``.
A benchmark reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mvpn.core import messages as msg
from mvpn.crypto.keys import PublicKeys
from mvpn.crypto.random import system_random
from mvpn.crypto.session import RegistrationKeys
from mvpn.crypto.suite import open_sealed, seal, sign, verify
from mvpn.pki.certificate import Role
from mvpn.pki.domain import DomainStore
from mvpn.wire.codes import ReplyCode
from mvpn.wire.registration import Identification, RegistrationReply

HA_FIRST_CONTACT_OPERATIONS: dict[str, int] = {"verify": 2, "open": 2, "sign": 2, "seal": 2}
"""The HA's public-key operations per accepted first contact (mvpn/core/ha.py
``_first_contact_with_key``): verify the FA signature and open F, open M and verify the MN
signature, then seal W' to the MN, sign W, sign Q and seal it to the FA."""

if sum(HA_FIRST_CONTACT_OPERATIONS.values()) != (
    msg.PK_OPERATIONS["open_relayed_first_contact"] + msg.PK_OPERATIONS["build_home_info_reply"]
):
    raise RuntimeError("HA_FIRST_CONTACT_OPERATIONS disagrees with messages.PK_OPERATIONS")

PASSWORD = b"benchmark"
HA_ADDRESS = "127.0.0.1"
FA_ADDRESS = ipaddress.IPv4Address("127.0.0.2")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HA_ADDRESS, 0))
        port: int = s.getsockname()[1]
        return port


def _blast(
    sock: socket.socket, to: tuple[str, int], datagrams: list[bytes], window: int
) -> tuple[float, list[bytes]]:
    """Send every datagram with at most ``window`` unanswered; return (seconds, replies)."""
    replies: list[bytes] = []
    sent = 0
    start = time.perf_counter()
    while len(replies) < len(datagrams):
        while sent < len(datagrams) and sent - len(replies) < window:
            sock.sendto(datagrams[sent], to)
            sent += 1
        ready, _, _ = select.select([sock], [], [], 10)
        if not ready:
            raise SystemExit(f"the HA stopped answering after {len(replies)} replies")
        replies.append(sock.recv(9000))
    return time.perf_counter() - start, replies


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_serving(sock: socket.socket, to: tuple[str, int], deadline: float) -> None:
    """Poke the HA with a malformed datagram until it is listening (it drops it silently),
    i.e. until the port stops answering with ICMP port-unreachable."""
    while time.monotonic() < deadline:
        try:
            sock.sendto(b"\x01", to)
            time.sleep(0.2)
            sock.sendto(b"\x01", to)  # an ICMP error from the first shows up on this one
            return
        except ConnectionRefusedError:
            time.sleep(0.2)
    raise SystemExit("the HA did not start")


def run(root: Path, nodes: int, window: int) -> dict[str, float]:
    """Provision, start the HA, measure; returns the figures."""
    home = DomainStore.init(root / "home", "home.example", PASSWORD, _now())
    visited = DomainStore.init(root / "visited", "visited.example", PASSWORD, _now())
    ha_issued = home.issue(
        Role.HA, "ha", PASSWORD, _now(), address=ipaddress.IPv4Address(HA_ADDRESS)
    )
    fa_issued = visited.issue(Role.FA, "fa", PASSWORD, _now(), address=FA_ADDRESS)
    first_home = int(ipaddress.IPv4Address("10.1.0.1"))
    cards = [
        home.issue_mobile_node(
            f"mn{i}", "ha", PASSWORD, _now(), address=ipaddress.IPv4Address(first_home + i)
        )
        for i in range(nodes)
    ]
    port = _free_udp_port()
    (root / "ha.toml").write_text(
        f'control_socket = "ha.sock"\n[ha]\nstore = "home"\nname = "ha"\n'
        f'interface = "{HA_ADDRESS}"\nport = {port}\ndatabase = "ha.sqlite"\n'
        f'peer_certificates = ["visited/nodes/fa.pem"]\npeer_cas = ["visited/ca.pem"]\n'
        f"key_refresh = 1.0\n"
    )
    twistd = Path(sys.executable).parent / "twistd"
    command = [str(twistd), "-n", "--pidfile=", f"--logfile={root / 'ha.log'}", "mvpn-ha"]
    ha_process = subprocess.Popen([*command, "--config", str(root / "ha.toml")], cwd=root)
    try:
        fa = msg.AgentIdentity(fa_issued.certificate.node_id, fa_issued.keys, FA_ADDRESS)
        ha_cert = home.certificate("ha")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((str(FA_ADDRESS), 0))
        to = (HA_ADDRESS, port)
        sock.connect(to)
        _wait_until_serving(sock, to, time.monotonic() + 30)
        sock.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((str(FA_ADDRESS), 0))

        prepared = []
        for card in cards:
            creds = msg.MobileCredentials.from_smart_card(card)
            ident = int(Identification.from_unix_time(time.time()))
            data, _ = msg.build_first_contact(creds, FA_ADDRESS, 300, ident, 7, system_random)
            pending = msg.parse_first_contact(data)
            fa_nonce = int.from_bytes(system_random(4), "big")
            relayed = msg.relay_first_contact(
                fa, pending, ha_cert.public_keys, ha_cert.node_id, fa_nonce
            )
            prepared.append((creds, pending, fa_nonce, relayed))
        cpu = _cpu_seconds(ha_process.pid)
        first_s, replies = _blast(sock, to, [p[3] for p in prepared], window)
        first_cpu = _cpu_seconds(ha_process.pid) - cpu
        decoded = [RegistrationReply.decode(r) for r in replies]
        by_ident = {r.identification: raw for r, raw in zip(decoded, replies, strict=True)}
        first_ok = sum(1 for r in decoded if r.code == ReplyCode.ACCEPTED)

        rereg = []
        for creds, pending, fa_nonce, _ in prepared:
            reply = by_ident[pending.request.identification]
            opened = msg.open_home_info(fa, ha_cert.public_keys, reply, pending, fa_nonce)
            q = opened.home_info
            keys = RegistrationKeys(q.spi, q.ses_key, q.auth_key, time.time(), q.key_lifetime)
            ident = int(Identification.from_unix_time(time.time()))
            data = msg.build_reregistration(creds, keys, FA_ADDRESS, 300, ident)
            rereg.append(msg.add_fa_ha_authenticator(data, keys))
        cpu = _cpu_seconds(ha_process.pid)
        rereg_s, replies = _blast(sock, to, rereg, window)
        rereg_cpu = _cpu_seconds(ha_process.pid) - cpu
        rereg_ok = sum(1 for r in replies if RegistrationReply.decode(r).code == 0)
    finally:
        ha_process.terminate()
        ha_process.wait(timeout=30)

    ha = msg.AgentIdentity(ha_cert.node_id, ha_issued.keys, ipaddress.IPv4Address(HA_ADDRESS))
    message_work = _message_work(ha, fa, prepared[0][3], prepared[0][0])
    rates = pk_operation_rates(ha, prepared[0][0].keys.public)
    bound = 1.0 / sum(n / rates[op] for op, n in HA_FIRST_CONTACT_OPERATIONS.items())
    first_rate, rereg_rate = nodes / first_s, nodes / rereg_s
    figures: dict[str, float] = {
        "nodes": nodes,
        "window": window,
        "first_contact_accepted": first_ok,
        "reregistration_accepted": rereg_ok,
        "first_contact_per_s": first_rate,
        "reregistration_per_s": rereg_rate,
        "crypto_bound_per_s": bound,
        "message_work_per_s": message_work,
        "first_contact_vs_bound": first_rate / bound,
        "reregistration_vs_first_contact": rereg_rate / first_rate,
        # How busy the HA process was (CPU seconds / wall seconds) and the rates its CPU
        # time alone allows: below 1.0 busy, the HA waited for this load generator, with
        # which it shares the machine's cores.
        "ha_busy_first_contact": first_cpu / first_s,
        "ha_busy_reregistration": rereg_cpu / rereg_s,
        "first_contact_per_ha_cpu_s": nodes / first_cpu if first_cpu else 0.0,
        "reregistration_per_ha_cpu_s": nodes / rereg_cpu if rereg_cpu else 0.0,
    }
    figures.update({f"pk_{op}_per_s": rate for op, rate in rates.items()})
    return figures


def pk_operation_rates(
    ha: msg.AgentIdentity, peer: PublicKeys, seconds: float = 0.5
) -> dict[str, float]:
    """Operations per second of each public-key operation the HA performs, timed alone with
    the sizes of a first contact (about 128-byte sealed values, 300-byte signed inputs)."""
    plaintext, signed = bytes(128), bytes(300)
    sealed_to_ha = seal(ha.keys.public, ha.node_id, "bench", plaintext)
    signature = sign(ha.keys, "bench", signed)
    work: dict[str, Callable[[], object]] = {
        "verify": lambda: verify(ha.keys.public, "bench", signature, signed),
        "open": lambda: open_sealed(ha.keys, ha.node_id, "bench", sealed_to_ha),
        "sign": lambda: sign(ha.keys, "bench", signed),
        "seal": lambda: seal(peer, 1, "bench", plaintext),
    }
    rates: dict[str, float] = {}
    for name, operation in work.items():
        rounds, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(50):
                operation()
            rounds += 50
        rates[name] = rounds / (time.perf_counter() - start)
    return rates


def _message_work(
    ha: msg.AgentIdentity,
    fa: msg.AgentIdentity,
    relayed_data: bytes,
    creds: msg.MobileCredentials,
) -> float:
    """First contacts per second the HA's own message code allows (open + reply)."""
    mn_public = creds.keys.public
    relayed = msg.parse_relayed_first_contact(relayed_data)
    keys = RegistrationKeys.generate(system_random, 1000, time.time(), 300)
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        opened = msg.open_relayed_first_contact(ha, relayed, fa.keys.public, lambda _: mn_public)
        msg.build_home_info_reply(
            ha,
            opened.request,
            ReplyCode.ACCEPTED,
            300,
            opened.request.identification,
            fa.node_id,
            fa.keys.public,
            opened.foreign_info.fa_nonce,
            opened.mobile_info.mn_nonce,
            keys,
            (creds.user_id, mn_public, opened.mobile_info.mn_auth_key),
        )
        rounds += 1
    return rounds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Measure and print a table; write benchmarks/results/registration.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500, help="simulated mobile nodes")
    parser.add_argument("--window", type=int, default=32, help="requests in flight")
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/registration.json")
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mvpn-bench-") as tmp:
        figures = run(Path(tmp), args.nodes, args.window)
    print("| registration.* | value |")
    print("| --- | ---: |")
    for key, value in figures.items():
        print(f"| {key} | {value:,.2f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"registration": figures}, indent=2, sort_keys=True))
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
