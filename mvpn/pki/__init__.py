"""The PKI of mvpn (draft section 7): node certificates, domain stores, smart-card bundles.

A domain's Trusted Centre owns a CA key (Ed25519) and signs one X.509 certificate per node;
the certificate carries the node's role, 64-bit ID, X25519 key and address in the MVPN node
extension (see :mod:`mvpn.pki.certificate` and docs/pki.md).
"""
