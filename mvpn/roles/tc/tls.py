"""Mutual TLS to and from a Trusted Centre, through ``twisted.internet.ssl`` only.

The server requires a client certificate issued by its own domain's CA or by a peer
domain's CA (``PrivateCertificate.options(*cas)``); a client names the TC as
``tc.<domain>`` (the DNS SAN of the TC certificate) and trusts only that domain's CA
(``optionsForClientTLS``). Both sides present Ed25519 certificates; TLS 1.3 is negotiated
with OpenSSL's defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from twisted.internet import ssl
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)

from mvpn.crypto.keys import PrivateKeys
from mvpn.pki.certificate import NodeCertificate, tc_dns_name
from mvpn.pki.errors import CertificateError


def private_certificate(cert: NodeCertificate, keys: PrivateKeys) -> ssl.PrivateCertificate:
    """A Twisted ``PrivateCertificate`` from an mvpn certificate and its Ed25519 key."""
    key_pem = keys.signing.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ssl.PrivateCertificate.loadPEM(cert.pem + key_pem)


def authority(cert: NodeCertificate) -> ssl.Certificate:
    """A CA certificate as a Twisted trust root."""
    return ssl.Certificate.loadPEM(cert.pem)


def server_options(
    cert: NodeCertificate, keys: PrivateKeys, trusted: Sequence[NodeCertificate]
) -> ssl.CertificateOptions:
    """TLS server options that require a client certificate from one of ``trusted`` CAs."""
    return private_certificate(cert, keys).options(*(authority(ca) for ca in trusted))


def client_options(
    cert: NodeCertificate, keys: PrivateKeys, tc_ca: NodeCertificate
) -> IOpenSSLClientConnectionCreator:
    """TLS client options to reach the TC of ``tc_ca``'s domain, presenting ``cert``."""
    return ssl.optionsForClientTLS(
        tc_dns_name(tc_ca.domain), authority(tc_ca), private_certificate(cert, keys)
    )


def tls_endpoint(
    endpoint: IStreamClientEndpoint,
    options: IOpenSSLClientConnectionCreator,
    clock: IReactorTime,
) -> IStreamClientEndpoint:
    """``endpoint`` upgraded to TLS; ``clock`` drives TLS write buffering (tests pass a Clock)."""
    return wrapClientTLS(options, endpoint, clock=clock)


def peer_certificate(transport: object) -> NodeCertificate:
    """The mvpn certificate the peer of a TLS ``transport`` presented.

    :class:`CertificateError` when there is none or it is not an mvpn certificate.
    """
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        raise CertificateError("the connection is not TLS")
    peer = get()
    if peer is None:
        raise CertificateError("the peer presented no certificate")
    return NodeCertificate.from_x509(peer.to_cryptography())
