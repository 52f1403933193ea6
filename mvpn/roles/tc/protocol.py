"""The Trusted Centre's AMP commands, and the responder that serves them over mutual TLS.

Every command is answered only after :meth:`TrustedCentre.authenticate` has accepted the
certificate the TLS peer presented (checked again on every command, so a certificate
revoked while connected stops working at once). Errors travel as AMP error codes:

============================  ===================================================
``UNKNOWN_NODE``              :class:`~mvpn.pki.tc_errors.UnknownNode`
``REVOKED``                   :class:`~mvpn.pki.tc_errors.CertificateRevoked`
``NOT_AUTHORISED``            :class:`~mvpn.pki.tc_errors.NotAuthorised`
``INVALID_CERTIFICATE``       :class:`~mvpn.pki.tc_errors.InvalidCertificate`
``TC_UNREACHABLE``            :class:`~mvpn.pki.tc_errors.TrustedCentreUnreachable`
============================  ===================================================

Certificates travel DER-encoded. A lookup answer carries the certificate and the CA
certificate that issued it (this domain's, or the peer domain's the TC checked it against).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from mvpn.pki.certificate import NodeCertificate
from mvpn.pki.errors import CertificateError
from mvpn.pki.tc_errors import (
    CertificateRevoked,
    InvalidCertificate,
    NotAuthorised,
    TrustedCentreUnreachable,
    UnknownNode,
)
from mvpn.roles.tc.centre import Answer, Caller, TrustedCentre
from mvpn.roles.tc.tls import peer_certificate

MAX_LIST_PAGE = 40
"""Certificates per ``List`` answer: an AMP value is at most 65,535 bytes and a certificate
with its framing about 800."""

_ERRORS: dict[type[Exception], bytes] = {
    UnknownNode: b"UNKNOWN_NODE",
    CertificateRevoked: b"REVOKED",
    NotAuthorised: b"NOT_AUTHORISED",
    InvalidCertificate: b"INVALID_CERTIFICATE",
    TrustedCentreUnreachable: b"TC_UNREACHABLE",
}


class Register(amp.Command):
    """Register a certificate (an agent's own, or an HA's mobile node's). Draft 7.1."""

    arguments = [(b"certificate", amp.String())]
    response = [(b"new", amp.Boolean())]
    errors = _ERRORS


class Lookup(amp.Command):
    """The certificate of a node by its ID (draft 3.2.1.1: the FA asks for the HA's key).

    ``domain`` optionally names the node's domain (this one or a peer's).
    """

    arguments = [(b"node_id", amp.Integer()), (b"domain", amp.Unicode(optional=True))]
    response = [(b"certificate", amp.String()), (b"issuer", amp.String())]
    errors = _ERRORS


class LookupAddress(amp.Command):
    """The certificate of a node by its IPv4 address (draft 3.5: the HA checks a CN by
    address; the MN is named by its home address in a Request Communication)."""

    arguments = [(b"address", amp.Unicode()), (b"domain", amp.Unicode(optional=True))]
    response = [(b"certificate", amp.String()), (b"issuer", amp.String())]
    errors = _ERRORS


class Revoke(amp.Command):
    """Revoke a registered certificate by serial number."""

    arguments = [(b"serial", amp.Integer()), (b"reason", amp.Unicode())]
    response = []
    errors = _ERRORS


class List(amp.Command):
    """A page of the registry, for operators."""

    arguments = [(b"offset", amp.Integer()), (b"limit", amp.Integer())]
    response = [
        (
            b"entries",
            amp.AmpList([(b"certificate", amp.String()), (b"revoked", amp.Boolean())]),
        ),
        (b"more", amp.Boolean()),
    ]
    errors = _ERRORS


def _answer(answer: Answer) -> dict[str, bytes]:
    return {"certificate": answer.certificate.der, "issuer": answer.issuer.der}


class TrustedCentreServerProtocol(amp.AMP):
    """The TC's side of one TLS connection."""

    log = Logger()

    def __init__(self, centre: TrustedCentre) -> None:
        super().__init__()
        self._centre = centre

    def _caller(self) -> Caller:
        try:
            presented = peer_certificate(self.transport)
        except CertificateError as e:
            raise NotAuthorised(str(e)) from e
        try:
            return self._centre.authenticate(presented)
        except NotAuthorised as e:
            self.log.warn("refused {peer}: {reason}", peer=presented.describe(), reason=str(e))
            raise

    @Register.responder
    def register(self, certificate: bytes) -> dict[str, Any]:
        caller = self._caller()
        try:
            cert = NodeCertificate.from_der(certificate)
        except CertificateError as e:
            raise InvalidCertificate(str(e)) from e
        return {"new": self._centre.register(caller, cert)}

    @Lookup.responder
    def lookup(self, node_id: int, domain: str | None = None) -> Deferred[dict[str, bytes]]:
        caller = self._caller()
        if not 0 <= node_id < 2**64:
            raise UnknownNode(f"node id {node_id}: not a 64-bit node ID")
        return self._centre.lookup(caller, node_id, domain).addCallback(_answer)

    @LookupAddress.responder
    def lookup_address(
        self, address: str, domain: str | None = None
    ) -> Deferred[dict[str, bytes]]:
        caller = self._caller()
        try:
            ipv4 = ipaddress.IPv4Address(address)
        except ValueError as e:
            raise UnknownNode(f"{address!r} is not an IPv4 address") from e
        return self._centre.lookup_address(caller, ipv4, domain).addCallback(_answer)

    @Revoke.responder
    def revoke(self, serial: int, reason: str) -> dict[str, Any]:
        self._centre.revoke(self._caller(), serial, reason)
        return {}

    @List.responder
    def list_certificates(self, offset: int, limit: int) -> dict[str, Any]:
        caller = self._caller()
        limit = max(0, min(limit, MAX_LIST_PAGE))
        rows = self._centre.list(caller, max(0, offset), limit + 1)
        return {
            "entries": [
                {"certificate": r.certificate.der, "revoked": r.revoked} for r in rows[:limit]
            ],
            "more": len(rows) > limit,
        }


class TrustedCentreServerFactory(Factory):
    """Builds a :class:`TrustedCentreServerProtocol` per (TLS-wrapped) connection."""

    def __init__(self, centre: TrustedCentre) -> None:
        self.centre = centre

    def buildProtocol(self, addr: object) -> TrustedCentreServerProtocol:
        return TrustedCentreServerProtocol(self.centre)


@implementer(IHandshakeListener)
class TrustedCentreClientProtocol(amp.AMP):
    """A client's side of a TLS connection to a TC; :attr:`handshake` fires once the TLS
    handshake is complete (and fails if the connection is lost before)."""

    def __init__(self) -> None:
        super().__init__()
        self.handshake: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:
        if not self.handshake.called:
            self.handshake.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.handshake.called:
            self.handshake.errback(reason)
        super().connectionLost(reason)
