"""The client every other role uses to reach its domain's Trusted Centre.

``lookup(node_id)`` and ``lookup_address(ipv4)`` return Deferreds that fire with a
:class:`~mvpn.pki.certificate.NodeCertificate` the client has verified itself:

- a certificate of the client's own domain must verify against the CA certificate the
  client was provisioned with (draft 3.1: every node knows its TC's public key);
- a certificate of another domain must verify against the issuer CA certificate the TC
  sends with it. The client trusts that CA because its own TC, reached over mutually
  authenticated TLS, vouches for it: the TC accepted the answer only after checking it
  against the peer CA it is configured with (the TC "acts as a broker", 3.1). A client may
  also be given ``peer_cas`` for domains it knows; then the issuer must be exactly that CA.

Answers are cached until the certificate's ``not_after`` or ``cache_ttl`` seconds, whichever
comes first (the TTL bounds how long a revocation at the TC goes unnoticed); a revocation
made through this client, or a ``REVOKED`` answer, drops the entry at once.

The connection is a ``ClientService`` (reconnection with exponential backoff). When the TC
cannot be reached, or does not answer within ``timeout`` seconds, calls fail with
:class:`~mvpn.pki.tc_errors.TrustedCentreUnreachable`, which the roles turn into MVPN
error 06, "Trusted Centre not found" (draft section 4).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from mvpn.pki.certificate import NodeCertificate
from mvpn.pki.errors import CertificateError
from mvpn.pki.tc_errors import (
    CertificateRevoked,
    InvalidCertificate,
    TrustedCentreError,
    TrustedCentreUnreachable,
)
from mvpn.roles.tc.centre import clock_now, clock_seconds
from mvpn.roles.tc.protocol import (
    MAX_LIST_PAGE,
    List,
    Lookup,
    LookupAddress,
    Register,
    Revoke,
    TrustedCentreClientProtocol,
)
from mvpn.roles.tc.store import RegisteredCertificate
from mvpn.roles.tc.tls import tls_endpoint

DEFAULT_CACHE_TTL = 300.0
"""Five minutes: long enough to spare the TC most lookups, short enough that a revocation
reaches every cache within minutes."""

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a connection plus an answer before reporting the TC unreachable."""

DEFAULT_CACHE_SIZE = 4096
"""Entries kept (least recently used dropped first): bounded memory whatever peers ask."""


@dataclass(frozen=True)
class _Entry:
    certificate: NodeCertificate
    expires: float


class TrustedCentreClient(Service):
    """A connection to one TC, kept up by a ``ClientService``; start it as a service.

    :param endpoint: plain TCP endpoint of the TC (TLS is layered on here).
    :param tls_options: from :func:`mvpn.roles.tc.tls.client_options`.
    :param trusted_ca: the client's own domain's CA certificate.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint: IStreamClientEndpoint,
        tls_options: IOpenSSLClientConnectionCreator,
        trusted_ca: NodeCertificate,
        *,
        clock: IReactorTime | None = None,
        peer_cas: tuple[NodeCertificate, ...] = (),
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        retry_policy: Callable[[int], float] | None = None,
    ) -> None:
        self._clock = clock if clock is not None else reactor
        self.trusted_ca = trusted_ca
        self._peer_cas = {ca.domain: ca for ca in peer_cas}
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._timeout = timeout
        self._by_id: OrderedDict[int, _Entry] = OrderedDict()
        self._by_address: OrderedDict[ipaddress.IPv4Address, _Entry] = OrderedDict()
        self._connection = ClientService(
            tls_endpoint(endpoint, tls_options, reactor),
            cast(IProtocolFactory, Factory.forProtocol(TrustedCentreClientProtocol)),
            retryPolicy=retry_policy or backoffPolicy(initialDelay=0.5, maxDelay=30.0),
            clock=reactor,
            prepareConnection=_handshake,
        )

    # -- service ----------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._connection.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._connection.stopService()

    # -- the API ----------------------------------------------------------------------

    def lookup(self, node_id: int, domain: str | None = None) -> Deferred[NodeCertificate]:
        """The certificate of node ``node_id`` (verified; cached)."""
        cached = self._cached(self._by_id, node_id)
        if cached is not None:
            return succeed(cached)
        args: dict[str, Any] = {"node_id": node_id}
        if domain is not None:
            args["domain"] = domain
        d = self._call(Lookup, **args)
        return d.addCallback(self._accept, f"node {node_id:#x}").addErrback(
            self._forget_revoked, lambda: self._by_id.pop(node_id, None)
        )

    def lookup_address(
        self, address: ipaddress.IPv4Address, domain: str | None = None
    ) -> Deferred[NodeCertificate]:
        """The certificate of the node with IPv4 address ``address`` (verified; cached)."""
        cached = self._cached(self._by_address, address)
        if cached is not None:
            return succeed(cached)
        args: dict[str, Any] = {"address": str(address)}
        if domain is not None:
            args["domain"] = domain
        d = self._call(LookupAddress, **args)
        return d.addCallback(self._accept, f"address {address}").addErrback(
            self._forget_revoked, lambda: self._by_address.pop(address, None)
        )

    def register(self, certificate: NodeCertificate) -> Deferred[bool]:
        """Register ``certificate`` with the TC; fires True if it was new there."""
        return self._call(Register, certificate=certificate.der).addCallback(
            lambda r: bool(r["new"])
        )

    def revoke(self, serial: int, reason: str) -> Deferred[None]:
        """Revoke the certificate with that serial at the TC, and forget it here."""
        self._forget_serial(serial)
        return self._call(Revoke, serial=serial, reason=reason).addCallback(lambda _: None)

    def list_certificates(self) -> Deferred[list[RegisteredCertificate]]:
        """Every registered certificate (operators only), fetched page by page."""
        return Deferred.fromCoroutine(self._list_all())

    def invalidate(self, node_id: int) -> None:
        """Forget any cached answer about node ``node_id``."""
        self._by_id.pop(node_id, None)
        for address, entry in list(self._by_address.items()):
            if entry.certificate.node_id == node_id:
                del self._by_address[address]

    # -- internals --------------------------------------------------------------------

    async def _list_all(self) -> list[RegisteredCertificate]:
        result: list[RegisteredCertificate] = []
        while True:
            page = await self._call(List, offset=len(result), limit=MAX_LIST_PAGE)
            result.extend(
                RegisteredCertificate(NodeCertificate.from_der(e["certificate"]), e["revoked"])
                for e in page["entries"]
            )
            if not page["more"] or not page["entries"]:
                return result

    def _call(self, command: type[amp.Command], **kwargs: Any) -> Deferred[dict[str, Any]]:
        async def call() -> dict[str, Any]:
            connected = await self._connection.whenConnected(failAfterFailures=1)
            protocol = cast(amp.AMP, connected)
            result: dict[str, Any] = await protocol.callRemote(command, **kwargs)
            return result

        d = Deferred.fromCoroutine(call())
        d.addTimeout(self._timeout, self._clock)
        return d.addErrback(self._unreachable, command)

    def _unreachable(self, failure: Failure, command: type[amp.Command]) -> Failure:
        if failure.check(TrustedCentreError):
            return failure
        if failure.check(
            ConnectError, ConnectionClosed, TimeoutError, CancelledError, amp.ProtocolSwitched
        ) or _is_tls_failure(failure):
            self.log.warn(
                "Trusted Centre unreachable for {command}: {reason}",
                command=command.__name__,
                reason=failure.getErrorMessage(),
            )
            raise TrustedCentreUnreachable(
                f"the Trusted Centre of {self.trusted_ca.domain!r} is unreachable: "
                f"{failure.getErrorMessage() or failure.type}"
            )
        return failure

    def _accept(self, response: dict[str, Any], what: str) -> NodeCertificate:
        try:
            cert = NodeCertificate.from_der(response["certificate"])
            issuer = NodeCertificate.from_der(response["issuer"])
            self._verify(cert, issuer)
        except CertificateError as e:
            self.log.warn("refused the TC's answer for {what}: {reason}", what=what, reason=e)
            raise InvalidCertificate(f"the TC's answer for {what}: {e}") from e
        self._store(cert)
        return cert

    def _verify(self, cert: NodeCertificate, issuer: NodeCertificate) -> None:
        now = clock_now(self._clock)
        if cert.domain == self.trusted_ca.domain:
            expected: NodeCertificate | None = self.trusted_ca
        else:
            expected = self._peer_cas.get(cert.domain)
        if expected is not None and issuer.der != expected.der:
            raise CertificateError(
                f"{cert.describe()} comes with issuer {issuer.describe()}, "
                f"not the CA this client trusts for {cert.domain!r}"
            )
        # For another domain the issuer is the one the TC vouched for (module docstring).
        cert.verify_issued_by(expected or issuer, now)

    def _store(self, cert: NodeCertificate) -> None:
        now = clock_seconds(self._clock)
        expires = min(cert.not_after.timestamp(), now + self._cache_ttl)
        entry = _Entry(cert, expires)
        self._by_id[cert.node_id] = entry
        self._by_id.move_to_end(cert.node_id)
        if cert.address is not None:
            self._by_address[cert.address] = entry
            self._by_address.move_to_end(cert.address)
        for table in (self._by_id, self._by_address):
            while len(table) > self._cache_size:
                table.popitem(last=False)

    def _cached(self, table: OrderedDict[Any, _Entry], key: Any) -> NodeCertificate | None:
        entry = table.get(key)
        if entry is None:
            return None
        if clock_seconds(self._clock) >= entry.expires:
            del table[key]
            return None
        table.move_to_end(key)
        return entry.certificate

    def _forget_revoked(self, failure: Failure, forget: Callable[[], object]) -> Failure:
        if failure.check(CertificateRevoked):
            forget()
        return failure

    def _forget_serial(self, serial: int) -> None:
        for node_id, entry in list(self._by_id.items()):
            if entry.certificate.serial == serial:
                del self._by_id[node_id]
        for address, entry in list(self._by_address.items()):
            if entry.certificate.serial == serial:
                del self._by_address[address]


def _handshake(protocol: IProtocol) -> Deferred[None]:
    # A connection counts only once TLS is up, so that a refused handshake is a failed
    # attempt for ClientService (backoff, failAfterFailures) rather than a dead protocol.
    # (ClientService hands us a proxy of the protocol, hence no isinstance check.)
    handshake: Deferred[None] = cast(TrustedCentreClientProtocol, protocol).handshake
    return handshake


def _is_tls_failure(failure: Failure) -> bool:
    try:
        from OpenSSL.SSL import Error as TLSError
    except ImportError:  # pragma: no cover - pyOpenSSL is a dependency
        return False
    return failure.check(TLSError) is not None
