"""One-shot callables timing the cryptographic suite (``benchmarks/wire_crypto.py`` runs them).

Each case does one operation on fixed inputs prepared once here, so a rate measures that
operation alone: signing and verifying a 100-byte message, sealing and opening it, one X25519
exchange, and the per-packet work of the data flow on a 1400-byte packet (the TUN MTU).
"""

from __future__ import annotations

from collections.abc import Callable

from mvpn.crypto.aead import DataCipher
from mvpn.crypto.auth import HopAuthenticator, hmac_sha256_authenticator
from mvpn.crypto.dh import DhGroup, DhKeyPair
from mvpn.crypto.keys import PrivateKeys
from mvpn.crypto.random import SeededRandom
from mvpn.crypto.suite import open_sealed, seal, sign, verify
from mvpn.wire.codes import EncrSecPar

MESSAGE_SIZE = 100
"""A first-contact plaintext is of this order (docs/protocol.md 5)."""

PACKET_SIZE = 1400
"""The largest inner packet (the TUN MTU, docs/protocol.md 10)."""

_LABEL = "benchmark"
_RECIPIENT_ID = 42


def cases() -> list[tuple[str, Callable[[], object]]]:
    """``(name, operation)`` pairs; each operation is one call of the named primitive."""
    random = SeededRandom("benchmarks")
    sender = PrivateKeys.generate(random)
    recipient = PrivateKeys.generate(random)
    message = random(MESSAGE_SIZE)
    signature = sign(sender, _LABEL, message)
    sealed = seal(recipient.public, _RECIPIENT_ID, _LABEL, message)

    dh_mine = DhKeyPair.generate(DhGroup.X25519, random)
    dh_peer = DhKeyPair.generate(DhGroup.X25519, random).public_bytes()

    key = random(32)
    packet = random(PACKET_SIZE)
    aad = random(19)
    hop = HopAuthenticator(key)
    aes = DataCipher(EncrSecPar.AES_256_GCM, key)
    chacha = DataCipher(EncrSecPar.CHACHA20_POLY1305, key)
    aes_ct = aes.encrypt(1, aad, packet)
    chacha_ct = chacha.encrypt(1, aad, packet)

    return [
        ("sign", lambda: sign(sender, _LABEL, message)),
        ("verify", lambda: verify(sender.public, _LABEL, signature, message)),
        ("seal", lambda: seal(recipient.public, _RECIPIENT_ID, _LABEL, message)),
        ("open", lambda: open_sealed(recipient, _RECIPIENT_ID, _LABEL, sealed)),
        ("x25519_exchange", lambda: dh_mine.exchange(dh_peer)),
        ("hmac_sha256_1400", lambda: hmac_sha256_authenticator(key, packet)),
        ("hop_tag_1400", lambda: hop.tag(packet)),
        ("aes256gcm_encrypt_1400", lambda: aes.encrypt(1, aad, packet)),
        ("aes256gcm_decrypt_1400", lambda: aes.decrypt(1, aad, aes_ct)),
        ("chacha20poly1305_encrypt_1400", lambda: chacha.encrypt(1, aad, packet)),
        ("chacha20poly1305_decrypt_1400", lambda: chacha.decrypt(1, aad, chacha_ct)),
    ]
