"""Trusted Centres and their clients on a :class:`MemoryNetwork`, for in-memory TLS tests."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.certificate import NodeCertificate, tc_dns_name
from mvpn.pki.domain import DomainStore
from mvpn.roles.tc.centre import clock_now
from mvpn.roles.tc.client import TrustedCentreClient
from mvpn.roles.tc.config import DEFAULT_PORT, PeerConfig, TcConfig
from mvpn.roles.tc.service import TrustedCentreService, build_tc_service
from mvpn.roles.tc.tls import client_options
from tests.pki.domains import make_domain
from tests.roles.tc.memory import MemoryNetwork


class World:
    """A memory network with TCs on it; everything uses the network's Clock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = MemoryNetwork()
        self.services: list[TrustedCentreService] = []
        self.clients: list[TrustedCentreClient] = []
        self.reactor = cast(IReactorTime, self.net.clock)

    @property
    def now(self) -> datetime.datetime:
        return clock_now(self.reactor)

    def domain(self, name: str) -> DomainStore:
        return make_domain(self.root, name, self.now - datetime.timedelta(minutes=1))

    def start_tc(
        self, store: DomainStore, peers: Sequence[DomainStore] = (), **config: Any
    ) -> TrustedCentreService:
        # Registration over AMP is what these tests are about: no import from the store
        # unless a test asks for it.
        config.setdefault("nodes_dir", None)
        tc_config = TcConfig.from_store(
            store.path,
            peers=tuple(
                PeerConfig(p.domain, p.ca_path, tc_dns_name(p.domain), DEFAULT_PORT) for p in peers
            ),
            **config,
        )
        service = build_tc_service(
            tc_config,
            self.reactor,
            server_endpoint=self.net.server_endpoint(tc_dns_name(store.domain), DEFAULT_PORT),
            peer_endpoint=lambda p: self.net.endpoint(p.host, p.port),
        )
        service.startService()
        self.services.append(service)
        self.net.flush()
        return service

    def client(
        self,
        store: DomainStore,
        cert: NodeCertificate,
        keys: PrivateKeys,
        tc_ca: NodeCertificate | None = None,
        **kwargs: Any,
    ) -> TrustedCentreClient:
        ca = tc_ca or store.ca_certificate()
        client = TrustedCentreClient(
            self.reactor,
            self.net.endpoint(tc_dns_name(ca.domain), DEFAULT_PORT),
            client_options(cert, keys, ca),
            ca,
            **kwargs,
        )
        client.startService()
        self.clients.append(client)
        return client

    def result(self, d: Deferred[Any]) -> Any:
        """Flush the network; return the Deferred's result or raise its failure."""
        self.net.flush()
        box: list[Any] = []
        d.addBoth(box.append)
        if not box:
            raise AssertionError("the Deferred has no result after the network went quiet")
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

    def stop(self) -> None:
        for client in self.clients:
            client.stopService()
        for service in self.services:
            service.stopService()
        self.net.flush()
