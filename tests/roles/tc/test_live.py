"""Live: real ``twistd -n mvpn-tc`` processes on 127.0.0.1, one per domain.

Domains are provisioned with the real ``mvpn pki`` console script; ports are picked free at
test time; every process is killed by a finalizer even when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet.defer import DeferredList

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.certificate import NodeCertificate, Role, issue_certificate
from mvpn.pki.domain import DomainStore
from mvpn.pki.files import read_private_keys
from mvpn.pki.tc_errors import TrustedCentreUnreachable
from mvpn.roles.tc.client import TrustedCentreClient
from mvpn.roles.tc.tls import client_options

BIN = Path(sys.executable).parent
PASSWORD = "live-test-password"
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port nobody listens on right now (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mvpn(*args: str) -> str:
    """Run the ``mvpn`` console script; fail the test on a non-zero status."""
    env = {**os.environ, "MVPN_PKI_PASSWORD": PASSWORD}
    done = subprocess.run(
        [str(BIN / "mvpn"), *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class TcProcess:
    """One ``twistd -n mvpn-tc`` child process."""

    store: Path
    port: int
    log: Path
    peers: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            f"--logfile={self.log}",
            "mvpn-tc",
            f"--store={self.store}",
            "--interface=127.0.0.1",
            f"--port={self.port}",
        ] + [f"--peer={p}" for p in self.peers]
        self.process = subprocess.Popen(command, cwd=self.store.parent)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"twistd did not listen on {self.port}: {self.log.read_text()}")

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


@pytest.fixture
def processes() -> Iterator[list[TcProcess]]:
    started: list[TcProcess] = []
    yield started
    for p in started:
        p.kill9()


@pytest.fixture
def two_domains(tmp_path: Path, processes: list[TcProcess]) -> dict[str, Any]:
    """Domains a.example and b.example, each with its TC running and trusting the other."""
    a, b = tmp_path / "a", tmp_path / "b"
    mvpn("pki", "--store", str(a), "init-domain", "--domain", "a.example")
    mvpn("pki", "--store", str(b), "init-domain", "--domain", "b.example")
    mvpn("pki", "--store", str(a), "issue", "--address", "10.1.0.2", "fa", "fa-a")
    mvpn("pki", "--store", str(b), "issue", "--address", "10.2.0.1", "ha", "ha-b")
    port_a, port_b = free_port(), free_port()
    tc_a = TcProcess(
        a, port_a, tmp_path / "tc-a.log", [f"b.example={b / 'ca.pem'}@127.0.0.1:{port_b}"]
    )
    tc_b = TcProcess(
        b, port_b, tmp_path / "tc-b.log", [f"a.example={a / 'ca.pem'}@127.0.0.1:{port_a}"]
    )
    for p in (tc_a, tc_b):
        processes.append(p)
        p.start()
    return {"a": DomainStore(a), "b": DomainStore(b), "tc_a": tc_a, "tc_b": tc_b}


def client_of(store: DomainStore, name: str, port: int) -> TrustedCentreClient:
    """A started client for node ``name`` of ``store`` to the TC on ``port``."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint

    cert = store.certificate(name)
    keys = read_private_keys(store.key_path(name))
    ca = store.ca_certificate()
    client = TrustedCentreClient(
        reactor,
        TCP4ClientEndpoint(reactor, "127.0.0.1", port),  # type: ignore[arg-type]
        client_options(cert, keys, ca),
        ca,
        timeout=10.0,
    )
    client.startService()
    return client


@pytest_twisted.ensureDeferred
async def test_federated_lookup_between_two_twistd_processes(two_domains: dict[str, Any]) -> None:
    """An FA of a.example gets the certificate of b.example's HA from a.example's TC."""
    a, b = two_domains["a"], two_domains["b"]
    ha = client_of(b, "ha-b", two_domains["tc_b"].port)
    fa = client_of(a, "fa-a", two_domains["tc_a"].port)
    try:
        ha_cert = b.certificate("ha-b")
        # The TC registered it from the domain store at start; registering again is a no-op.
        assert await ha.register(ha_cert) is False
        found = await fa.lookup(ha_cert.node_id)
        assert found == ha_cert and found.domain == "b.example"
        assert found.public_keys == read_private_keys(b.key_path("ha-b")).public
    finally:
        await ha.stopService()
        await fa.stopService()


@pytest_twisted.ensureDeferred
async def test_kill_9_mid_registration_loses_nothing_acknowledged(
    two_domains: dict[str, Any],
) -> None:
    """kill -9 the TC while an HA registers 200 mobile nodes; after a restart every
    registration the TC acknowledged is still there."""
    import datetime

    b: DomainStore = two_domains["b"]
    tc_b: TcProcess = two_domains["tc_b"]
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_keys = b.ca_certificate(), b.ca_keys(PASSWORD.encode())
    certs = [
        issue_certificate(
            ca,
            ca_keys,
            Role.MN,
            0x1000 + i,
            f"mn{i}",
            PrivateKeys.generate().public,
            None,
            now - datetime.timedelta(minutes=5),
            now + datetime.timedelta(days=1),
            0x5000 + i,
        )
        for i in range(200)
    ]
    ha = client_of(b, "ha-b", tc_b.port)
    acknowledged: list[NodeCertificate] = []
    kill_after = 60

    def ack(result: bool, cert: NodeCertificate) -> None:
        acknowledged.append(cert)
        if len(acknowledged) == kill_after:
            tc_b.kill9()

    try:
        await ha.register(certs[0])
        acknowledged.append(certs[0])
        failures: list[Any] = []
        # Batches of ten in flight; the TC is killed inside the batch holding the 60th
        # acknowledgement, and nothing more is sent once it is dead.
        for start in range(1, len(certs), 10):
            batch = [ha.register(c).addCallback(ack, c) for c in certs[start : start + 10]]
            results = await DeferredList(batch, consumeErrors=True)
            failures.extend(r for ok, r in results if not ok)
            if len(acknowledged) >= kill_after:
                break
        assert all(f.check(TrustedCentreUnreachable) for f in failures)
        assert kill_after <= len(acknowledged) < len(certs)
    finally:
        await ha.stopService()

    tc_b.start()
    operator = client_of(b, "tc", tc_b.port)
    try:
        for cert in acknowledged:
            assert await operator.lookup(cert.node_id) == cert
        listed = await operator.list_certificates()
        registered = {r.certificate.serial for r in listed}
        assert {c.serial for c in acknowledged} <= registered
    finally:
        await operator.stopService()
