"""The Trusted Centre (draft sections 3.1 and 7): registers and distributes public keys.

Mutual TLS and AMP (:mod:`.protocol`), an SQLite registry (:mod:`.store`), federation with the
TCs of other domains, the twistd plugin (:mod:`.tap`), and :class:`.client.TrustedCentreClient`
which every other role uses to look keys up.
"""
