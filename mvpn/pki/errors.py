"""Exceptions of the PKI layer (draft section 7): certificates, domain stores, bundles.

Every message names the file, certificate or node concerned, so that ``mvpn pki`` can print
it as it is and an operator knows what to fix.
"""

from __future__ import annotations


class PkiError(Exception):
    """A certificate, key file or domain store could not be used. The message says why."""


class CertificateError(PkiError):
    """A certificate failed a check: the base of every verification failure."""


class CertificateFormatError(CertificateError):
    """Bytes that are not an mvpn node certificate (bad DER/PEM, missing or bad extension)."""


class CertificateExpired(CertificateError):
    """The certificate's ``not_after`` is in the past."""


class CertificateNotYetValid(CertificateError):
    """The certificate's ``not_before`` is in the future."""


class WrongIssuer(CertificateError):
    """The certificate was issued by another domain's CA, or names another domain."""


class BadSignature(CertificateError):
    """The issuer's signature over the certificate does not verify."""


class CertificateRevoked(CertificateError):
    """The certificate's serial number is on the domain's revocation list."""


class WrongPassword(PkiError):
    """An encrypted private key could not be decrypted with the password given."""


class MissingFile(PkiError):
    """A file the domain store or a bundle needs does not exist."""


class StoreError(PkiError):
    """A domain store or bundle is inconsistent (a name taken, a node unknown, ...)."""
