"""``build_tc_service(config, reactor)``: the Trusted Centre as a ``MultiService``.

Children, by name:

- ``registry``: owns the SQLite registry (closed last, when the service stops);
- ``revocations``: re-reads the domain's ``revoked.json`` every ``revocation_poll`` seconds
  and records new revocations in the registry;
- ``peer:<domain>``: one :class:`TrustedCentreClient` per peer TC (federation);
- ``tls-server``: the mutual-TLS AMP server on ``config.port``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.certificate import NodeCertificate, Role, tc_dns_name
from mvpn.pki.errors import CertificateError, PkiError
from mvpn.pki.files import read_private_keys
from mvpn.pki.revocation import RevocationList
from mvpn.roles.tc.centre import Peer, TrustedCentre, clock_now
from mvpn.roles.tc.client import TrustedCentreClient
from mvpn.roles.tc.config import ConfigError, PeerConfig, TcConfig
from mvpn.roles.tc.protocol import TrustedCentreServerFactory
from mvpn.roles.tc.store import Registry
from mvpn.roles.tc.tls import client_options, server_options


@dataclass(frozen=True, repr=False)
class TcCredentials:
    """The TC's CA certificate, its own certificate and private keys, loaded and checked."""

    ca: NodeCertificate
    certificate: NodeCertificate
    keys: PrivateKeys


def load_credentials(config: TcConfig, reactor: IReactorTime) -> TcCredentials:
    """Read and check the TC's files; :class:`PkiError` saying what is wrong."""
    ca = NodeCertificate.load(config.ca_certificate)
    if not ca.is_ca:
        raise ConfigError(f"{config.ca_certificate}: not a CA certificate")
    cert = NodeCertificate.load(config.certificate)
    try:
        cert.verify_issued_by(ca, clock_now(reactor))
    except CertificateError as e:
        raise ConfigError(f"{config.certificate}: {e}") from e
    if cert.role is not Role.TC or tc_dns_name(ca.domain) not in cert.dns_names:
        raise ConfigError(
            f"{config.certificate}: not the TC certificate of {ca.domain!r} "
            f"(role TC with DNS name {tc_dns_name(ca.domain)})"
        )
    keys = read_private_keys(config.private_key)
    if keys.public != cert.public_keys:
        raise ConfigError(f"{config.private_key}: does not match {config.certificate}")
    return TcCredentials(ca, cert, keys)


def load_peer_ca(peer: PeerConfig, own_domain: str) -> NodeCertificate:
    """A peer's CA certificate, checked to be that domain's CA."""
    ca = NodeCertificate.load(peer.ca_certificate)
    if not ca.is_ca or ca.domain != peer.domain:
        raise ConfigError(
            f"{peer.ca_certificate}: not the CA certificate of domain {peer.domain!r} "
            f"(it is {ca.describe()})"
        )
    if peer.domain == own_domain:
        raise ConfigError(f"peer {peer.domain!r} is this TC's own domain")
    return ca


class TrustedCentreService(MultiService):
    """The TC's ``MultiService``; :attr:`centre` is its decision-maker (tests, benchmarks)."""

    def __init__(self, centre: TrustedCentre) -> None:
        super().__init__()
        self.centre = centre


class _RegistryService(Service):
    """Closes the registry when the TC stops."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.registry.close()
        return succeed(None)


class _StoreImporter:
    """Imports the domain store's certificates (``nodes/*.pem``) into the registry.

    Provisioning with ``mvpn pki`` is the operator registering keys on the nodes' behalf
    (draft 7.1: the home agent creates an MN's keys and registers them; ``issue-mn`` is
    run for it). Certificates that do not verify, have expired or are revoked are skipped.
    """

    log = Logger()

    def __init__(self, centre: TrustedCentre, nodes_dir: Path) -> None:
        self._centre = centre
        self._dir = nodes_dir
        self._seen: float | None = None

    def poll(self) -> None:
        try:
            mtime = self._dir.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._seen:
            return
        self._seen = mtime
        now = self._centre.now()
        new = 0
        for path in sorted(self._dir.glob("*.pem")):
            try:
                cert = NodeCertificate.load(path)
                cert.verify_issued_by(self._centre.ca, now)
                if not self._centre.registry.is_revoked(cert.serial):
                    new += self._centre.registry.register(cert, "domain store", now)
            except PkiError as e:
                self.log.warn("skipped {path}: {reason}", path=str(path), reason=str(e))
        if new:
            self.log.info(
                "{count} certificate(s) registered from {path}", count=new, path=str(self._dir)
            )


class _RevocationPoller:
    """Imports the domain's revoked.json into the registry when it changes."""

    log = Logger()

    def __init__(self, registry: Registry, path: Path) -> None:
        self._registry = registry
        self._path = path
        self._seen: float | None = None

    def poll(self) -> None:
        path = self._path
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._seen:
            return
        try:
            new = self._registry.import_revocations(RevocationList.load(path))
        except PkiError as e:
            self.log.warn("cannot read {path}: {reason}", path=self._path, reason=str(e))
            return
        self._seen = mtime
        if new:
            self.log.info("{count} new revocation(s) from {path}", count=new, path=self._path)


def build_tc_service(
    config: TcConfig,
    reactor: IReactorTime,
    *,
    server_endpoint: IStreamServerEndpoint | None = None,
    peer_endpoint: Callable[[PeerConfig], IStreamClientEndpoint] | None = None,
) -> TrustedCentreService:
    """The TC service. ``server_endpoint`` and ``peer_endpoint`` replace the TCP endpoints
    (plain; TLS is layered on here) in tests."""
    creds = load_credentials(config, reactor)
    peer_cas = [load_peer_ca(peer, creds.ca.domain) for peer in config.peers]
    registry = Registry(config.database)
    clients: list[TrustedCentreClient] = []
    for peer, peer_ca in zip(config.peers, peer_cas, strict=True):
        endpoint = (
            peer_endpoint(peer)
            if peer_endpoint is not None
            else cast(
                IStreamClientEndpoint,
                TCP4ClientEndpoint(cast(IReactorTCP, reactor), peer.host, peer.port),
            )
        )
        client = TrustedCentreClient(
            reactor,
            endpoint,
            client_options(creds.certificate, creds.keys, peer_ca),
            peer_ca,
            cache_ttl=config.peer_cache_ttl,
        )
        client.setName(f"peer:{peer.domain}")
        clients.append(client)
    peers = {ca.domain: Peer(ca, client) for ca, client in zip(peer_cas, clients, strict=True)}
    top = TrustedCentreService(TrustedCentre(registry, creds.ca, peers, reactor))

    registry_service = _RegistryService(registry)
    registry_service.setName("registry")
    registry_service.setServiceParent(top)
    pollers: list[Callable[[], None]] = []
    if config.revocation_list is not None:
        pollers.append(_RevocationPoller(registry, config.revocation_list).poll)
    if config.nodes_dir is not None:
        pollers.append(_StoreImporter(top.centre, config.nodes_dir).poll)
    if pollers:

        def poll() -> None:
            for each in pollers:
                each()

        poll()  # before the server answers anybody
        timer = TimerService(config.revocation_poll, poll)
        timer.clock = reactor
        timer.setName("revocations")
        timer.setServiceParent(top)
    for client in clients:
        client.setServiceParent(top)

    options = server_options(creds.certificate, creds.keys, [creds.ca, *peer_cas])
    factory = TLSMemoryBIOFactory(
        cast(IOpenSSLServerConnectionCreator, options),
        False,
        cast(IProtocolFactory, TrustedCentreServerFactory(top.centre)),
        clock=reactor,
    )
    if server_endpoint is None:
        server_endpoint = cast(
            IStreamServerEndpoint,
            TCP4ServerEndpoint(
                cast(IReactorTCP, reactor), config.port, interface=config.interface
            ),
        )
    server = StreamServerEndpointService(server_endpoint, factory)
    # A port already in use must stop twistd at start, not be logged and ignored.
    server._raiseSynchronously = True
    server.setName("tls-server")
    server.setServiceParent(top)
    return top
