"""The Trusted Centre's decisions: who may do what, and where a key is looked up.

Separate from the AMP framing (:mod:`.protocol`) as ``twisted.names.server`` is from
``twisted.names.dns``: the responder authenticates the TLS peer's certificate through
:meth:`TrustedCentre.authenticate` and hands the result to the other methods.

Rules (draft sections 3.1 and 7.1, docs/pki.md "Who may do what"):

- Callers are holders of a certificate of this domain (valid now, not revoked), or the TC of
  a peer domain (role TC, issued by that peer's configured CA). Anybody else: NotAuthorised.
- ``register``: a node registers its own certificate (same role and node ID, e.g. after a
  rotation); a home agent registers its mobile nodes' certificates ("the keys [are] created
  by the home agent and registered with the Trusted Centre", 7.1); the domain's operator (a
  TC-role certificate of this domain) registers anything. Peer TCs register nothing.
- ``lookup``/``lookup_address``: answered from the registry; for a caller of this domain a
  node unknown here is asked of the peer TCs (the TC "MAY act as a broker ... for nodes that
  belong to different domains", 3.1). A peer TC's lookups are answered locally only, so
  federated lookups never loop.
- ``revoke``: the operator revokes anything; a home agent revokes mobile nodes; a node
  revokes its own certificates.
- ``list``: the operator only.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mvpn.pki.certificate import NodeCertificate, Role
from mvpn.pki.errors import CertificateError
from mvpn.pki.revocation import Revocation
from mvpn.pki.tc_errors import (
    CertificateRevoked,
    InvalidCertificate,
    NotAuthorised,
    TrustedCentreUnreachable,
    UnknownNode,
)
from mvpn.roles.tc.store import RegisteredCertificate, Registry


class CertificateSource(Protocol):
    """Where a TC asks for another domain's keys: a client of that domain's TC."""

    def lookup(self, node_id: int) -> Deferred[NodeCertificate]:
        """The node's certificate, verified against the peer's CA."""

    def lookup_address(self, address: ipaddress.IPv4Address) -> Deferred[NodeCertificate]:
        """The certificate of the node with that address."""


@dataclass(frozen=True)
class Peer:
    """A peer domain: its CA (what its TC's answers are checked against) and its TC."""

    ca: NodeCertificate
    source: CertificateSource


@dataclass(frozen=True)
class Caller:
    """An authenticated TLS peer."""

    certificate: NodeCertificate
    own_domain: bool

    @property
    def operator(self) -> bool:
        """A TC-role certificate of this domain: the operator's tools and the TC itself."""
        return self.own_domain and self.certificate.role is Role.TC


@dataclass(frozen=True)
class Answer:
    """A lookup's result: the certificate and the CA certificate that issued it."""

    certificate: NodeCertificate
    issuer: NodeCertificate


def utc_from_seconds(seconds: float) -> datetime.datetime:
    """A reactor clock reading as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def clock_seconds(clock: IReactorTime) -> float:
    """``clock.seconds()``, typed (mypy reads zope Interface methods as taking no self)."""
    seconds: float = clock.seconds()  # type: ignore[misc]
    return seconds


def clock_now(clock: IReactorTime) -> datetime.datetime:
    """The clock's current time as an aware UTC datetime."""
    return utc_from_seconds(clock_seconds(clock))


class TrustedCentre:
    """One domain's TC: its registry, its CA, and its peers (by domain name)."""

    log = Logger()

    def __init__(
        self,
        registry: Registry,
        ca: NodeCertificate,
        peers: Mapping[str, Peer],
        clock: IReactorTime,
    ) -> None:
        self.registry = registry
        self.ca = ca
        self.peers = dict(peers)
        self._clock = clock

    @property
    def domain(self) -> str:
        """This TC's domain."""
        return self.ca.domain

    def now(self) -> datetime.datetime:
        """The current time, from the reactor's clock."""
        return clock_now(self._clock)

    def authenticate(self, presented: NodeCertificate) -> Caller:
        """Decide whether the TLS peer's certificate earns an answer at all."""
        now = self.now()
        if presented.domain == self.domain:
            try:
                presented.verify_issued_by(self.ca, now)
            except CertificateError as e:
                raise NotAuthorised(f"your certificate is not accepted: {e}") from e
            if self.registry.is_revoked(presented.serial):
                raise NotAuthorised(f"your certificate {presented.describe()} is revoked")
            return Caller(presented, own_domain=True)
        peer = self.peers.get(presented.domain)
        if peer is None:
            raise NotAuthorised(f"domain {presented.domain!r} is not trusted here")
        if presented.role is not Role.TC:
            raise NotAuthorised(
                f"only the Trusted Centre of domain {presented.domain!r} may ask here"
            )
        try:
            presented.verify_issued_by(peer.ca, now)
        except CertificateError as e:
            raise NotAuthorised(f"your certificate is not accepted: {e}") from e
        return Caller(presented, own_domain=False)

    def register(self, caller: Caller, cert: NodeCertificate) -> bool:
        """Register ``cert``; True if new. Committed to disk before this returns."""
        if not caller.own_domain:
            raise NotAuthorised("a peer domain's TC cannot register certificates here")
        try:
            cert.verify_issued_by(self.ca, self.now())
        except CertificateError as e:
            raise InvalidCertificate(str(e)) from e
        if cert.is_ca:
            raise InvalidCertificate("a CA certificate is not registered as a node")
        by = caller.certificate
        allowed = (
            caller.operator
            or (cert.role is Role.MN and by.role is Role.HA)
            or (cert.role is by.role and cert.node_id == by.node_id and cert.role is not Role.TC)
        )
        if not allowed:
            raise NotAuthorised(f"{by.describe()} may not register {cert.describe()}")
        if self.registry.is_revoked(cert.serial):
            raise CertificateRevoked(f"certificate {cert.describe()} is revoked")
        new = self.registry.register(cert, by.describe(), self.now())
        self.log.info(
            "registered {node} (node id {node_id:#x}) for {caller}, new={new}",
            node=cert.describe(),
            node_id=cert.node_id,
            caller=by.describe(),
            new=new,
        )
        return new

    def lookup(self, caller: Caller, node_id: int, domain: str | None = None) -> Deferred[Answer]:
        """The certificate of node ``node_id``, here or (for our callers) at a peer TC."""
        what = f"node {node_id:#x}"
        return Deferred.fromCoroutine(
            self._lookup(
                caller,
                what,
                domain,
                lambda now: self.registry.lookup(node_id, now),
                lambda source: source.lookup(node_id),
            )
        )

    def lookup_address(
        self, caller: Caller, address: ipaddress.IPv4Address, domain: str | None = None
    ) -> Deferred[Answer]:
        """The certificate of the node whose address is ``address``."""
        return Deferred.fromCoroutine(
            self._lookup(
                caller,
                f"address {address}",
                domain,
                lambda now: self.registry.lookup_address(address, now),
                lambda source: source.lookup_address(address),
            )
        )

    async def _lookup(
        self,
        caller: Caller,
        what: str,
        domain: str | None,
        local: Callable[[datetime.datetime], NodeCertificate],
        remote: Callable[[CertificateSource], Awaitable[NodeCertificate]],
    ) -> Answer:
        if domain is None or domain == self.domain:
            try:
                return Answer(local(self.now()), self.ca)
            except UnknownNode:
                if domain is not None or not caller.own_domain or not self.peers:
                    raise
        if not caller.own_domain:
            raise UnknownNode(f"no valid certificate registered for {what}")
        if domain is not None and domain not in self.peers:
            raise UnknownNode(f"domain {domain!r} is not a peer of {self.domain!r}")
        domains = [domain] if domain is not None else sorted(self.peers)
        unreachable: list[str] = []
        for name in domains:
            peer = self.peers[name]
            try:
                cert = await remote(peer.source)
            except UnknownNode:
                continue
            except TrustedCentreUnreachable:
                unreachable.append(name)
                continue
            try:
                # The peer client has checked already; the TC checks again against the
                # CA it is configured with, which is what it vouches for to its callers.
                cert.verify_issued_by(peer.ca, self.now())
            except CertificateError as e:
                raise InvalidCertificate(f"the TC of {name!r} answered for {what}: {e}") from e
            self.log.info(
                "federated lookup of {what} answered by {domain}", what=what, domain=name
            )
            return Answer(cert, peer.ca)
        if unreachable:
            raise TrustedCentreUnreachable(
                f"{what} is unknown here and the TC of {', '.join(unreachable)} is unreachable"
            )
        raise UnknownNode(f"no valid certificate registered for {what} in any trusted domain")

    def revoke(self, caller: Caller, serial: int, reason: str) -> Revocation:
        """Revoke the certificate with that serial number."""
        if not caller.own_domain:
            raise NotAuthorised("a peer domain's TC cannot revoke certificates here")
        cert = self.registry.certificate_by_serial(serial)
        if cert is None:
            raise UnknownNode(f"no certificate with serial {serial:#x} is registered")
        by = caller.certificate
        allowed = (
            caller.operator
            or (cert.role is Role.MN and by.role is Role.HA)
            or (cert.node_id == by.node_id and cert.role is by.role)
        )
        if not allowed:
            raise NotAuthorised(f"{by.describe()} may not revoke {cert.describe()}")
        revocation = Revocation(serial, cert.node_id, cert.name, self.now(), reason)
        self.registry.revoke(revocation)
        self.log.info(
            "revoked {node} for {caller}: {reason}",
            node=cert.describe(),
            caller=by.describe(),
            reason=reason,
        )
        return revocation

    def list(self, caller: Caller, offset: int, limit: int) -> list[RegisteredCertificate]:
        """A page of the registry, for the operator."""
        if not caller.operator:
            raise NotAuthorised("only the domain's operator (a TC certificate) may list")
        return self.registry.list(offset, limit)
