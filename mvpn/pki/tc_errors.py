"""The Trusted Centre's typed errors, shared by the server, its AMP commands, the client,
and the role cores that turn them into reply codes and MVPN errors (so they live below
mvpn.core, beside the other PKI errors).

Each travels over AMP under a fixed error code (see :mod:`mvpn.roles.tc.protocol`), so a
client's Deferred fails with the same class the TC raised.
"""

from __future__ import annotations

from mvpn.pki import errors as pki_errors


class TrustedCentreError(Exception):
    """Base of every error a Trusted Centre (or the client talking to one) reports."""


class UnknownNode(TrustedCentreError):
    """No valid certificate is registered for that node ID or address (an expired one is
    no better than none)."""


class CertificateRevoked(TrustedCentreError, pki_errors.CertificateRevoked):
    """The node's certificate (or the certificate presented) is revoked."""


class NotAuthorised(TrustedCentreError):
    """The caller's certificate does not allow that command (or is not trusted at all)."""


class InvalidCertificate(TrustedCentreError):
    """A certificate sent for registration, or received from a TC, failed verification."""


class TrustedCentreUnreachable(TrustedCentreError):
    """The TC (or, for a federated lookup, the other domain's TC) could not be reached.

    The roles turn it into MVPN error 06, "Trusted Centre not found" (draft section 4).
    """
